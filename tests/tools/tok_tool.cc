// Test helper for the tokenizer, driven by tests/py/test_tokenizer.py. Prints one JSON value.
//   tok_tool encode    --model M --file F [--no-parse-special]      -> [ids]
//   tok_tool decode    --model M --ids-json F [--skip-special]      -> {"hex": bytes of the decode}
//   tok_tool roundtrip --model M --file F [--repeat N]              -> {"ok", "n_bytes", "n_tokens", "mb_per_s"}
//   tok_tool stream    --model M (--file F | --ids-json F) [--keep-special]
//                                                                   -> {"ids": [...], "chunks_hex": [...]}
//   tok_tool chat      --model M --messages-json F [--no-generation-prompt] [--not-first-turn]
//                                                                   -> {"format", "text", "ids"}
//   tok_tool info      --model M                                    -> vocab size, bos/eos, stop ids, pre
// M is a .gguf file or a Hugging Face tokenizer directory.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/tokenizer/chat_format.h"
#include "core/tokenizer/prompt_builder.h"
#include "core/tokenizer/incremental_detokenizer.h"
#include "core/tokenizer/tokenizer.h"
#include "core/weights/gguf_file.h"

namespace {

using Json = nlohmann::json;
using titand::Tokenizer;

std::string Hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

int Fail(const std::string& msg) {
  std::cerr << "tok_tool: " << msg << "\n";
  return 1;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model) {
  if (model.size() > 5 && model.compare(model.size() - 5, 5, ".gguf") == 0) {
    auto f = titand::GgufFile::Open(model);
    if (!f.ok()) return f.status();
    return Tokenizer::FromGguf(**f);
  }
  return Tokenizer::FromHfDir(model);
}

Json IdsJson(const std::vector<int32_t>& ids) { return Json(ids); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Fail("usage: tok_tool encode|decode|roundtrip|stream|chat|info --model M ...");
  const std::string cmd = argv[1];
  std::map<std::string, std::string> opt;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) return Fail("unexpected argument " + a);
    const bool has_value = i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0;
    opt[a.substr(2)] = has_value ? argv[++i] : "1";
  }
  if (!opt.count("model")) return Fail("--model is required");
  auto tok_or = Load(opt["model"]);
  if (!tok_or.ok()) return Fail(tok_or.status().ToString());
  const Tokenizer& tok = **tok_or;

  std::string text;
  if (opt.count("file") && !ReadFile(opt["file"], &text)) return Fail("cannot read " + opt["file"]);
  std::vector<int32_t> ids;
  if (opt.count("ids-json")) {
    std::string s;
    if (!ReadFile(opt["ids-json"], &s)) return Fail("cannot read " + opt["ids-json"]);
    const Json j = Json::parse(s, nullptr, false);
    if (!j.is_array()) return Fail("--ids-json must hold a JSON array of ids");
    ids = j.get<std::vector<int32_t>>();
  }

  if (cmd == "encode") {
    std::cout << IdsJson(tok.Encode(text, !opt.count("no-parse-special"))).dump() << "\n";
  } else if (cmd == "decode") {
    std::cout << Json{{"hex", Hex(tok.Decode(ids, opt.count("skip-special") > 0))}}.dump() << "\n";
  } else if (cmd == "roundtrip") {
    const int repeat = opt.count("repeat") ? std::stoi(opt["repeat"]) : 1;
    std::vector<int32_t> enc;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < repeat; ++r) enc = tok.Encode(text, true);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<int32_t> body(enc.begin() + (tok.add_bos() ? 1 : 0), enc.end());
    const bool ok = tok.Decode(body) == text;
    std::cout << Json{{"ok", ok}, {"n_bytes", text.size()}, {"n_tokens", enc.size()},
                      {"seconds", secs / repeat}, {"mb_per_s", text.size() * repeat / 1e6 / secs}}
                     .dump()
              << "\n";
  } else if (cmd == "stream") {
    if (!opt.count("ids-json")) ids = tok.Encode(text, true);
    titand::IncrementalDetokenizer detok(tok, /*skip_special=*/!opt.count("keep-special"));
    Json chunks = Json::array();
    for (int32_t id : ids) {
      const std::string c = detok.Add(id);
      if (!c.empty()) chunks.push_back(Hex(c));
    }
    const std::string last = detok.Finish();
    if (!last.empty()) chunks.push_back(Hex(last));
    std::cout << Json{{"ids", ids}, {"chunks_hex", chunks}}.dump() << "\n";
  } else if (cmd == "chat") {
    std::string s;
    if (!opt.count("messages-json") || !ReadFile(opt["messages-json"], &s)) return Fail("--messages-json F required");
    const Json j = Json::parse(s, nullptr, false);
    if (!j.is_array()) return Fail("--messages-json must hold a JSON array of {role, content}");
    std::vector<titand::ChatMessage> msgs;
    for (const Json& m : j) msgs.push_back({m.value("role", ""), m.value("content", "")});
    auto fmt = titand::DetectChatFormat(tok.chat_template_source());
    if (!fmt.ok()) return Fail(fmt.status().ToString());
    const std::string rendered = titand::RenderChat(*fmt, msgs, !opt.count("no-generation-prompt"),
                                                    tok.chat_template_source(), !opt.count("not-first-turn"));
    const char* names[] = {"chatml", "llama3", "raw"};
    std::cout << Json{{"format", names[static_cast<int>(*fmt)]}, {"text", rendered},
                      {"ids", tok.Encode(rendered, true)}}
                     .dump()
              << "\n";
  } else if (cmd == "prompt") {
    // The server's prompt builder over chat messages (--messages-json) or text (--file).
    titand::PromptInput in;
    if (opt.count("messages-json")) {
      std::string s;
      if (!ReadFile(opt["messages-json"], &s)) return Fail("cannot read " + opt["messages-json"]);
      for (const Json& m : Json::parse(s)) in.messages.push_back({m.value("role", ""), m.value("content", "")});
    } else {
      in.text = text;
    }
    auto p = titand::BuildPrompt(&tok, tok.vocab_size(), in, {!opt.count("not-first-turn"), opt.count("parse-special") > 0});
    if (!p.ok()) return Fail(p.status().ToString());
    std::cout << Json{{"ids", *p}}.dump() << "\n";
  } else if (cmd == "session-chat") {
    // What a session holds after each turn {messages, reply} (ChatTurnTokens, as the engine commits),
    // then the next turn's prompt. --turns-json: a list of {"turns": [...], "next": [messages]}.
    std::string s;
    if (!opt.count("turns-json") || !ReadFile(opt["turns-json"], &s)) return Fail("--turns-json F required");
    const auto msgs = [](const Json& a) {
      std::vector<titand::ChatMessage> out;
      for (const Json& m : a) out.push_back({m.value("role", ""), m.value("content", "")});
      return out;
    };
    Json all = Json::array();
    for (const Json& j : Json::parse(s)) {
      std::vector<int32_t> history;
      Json per_turn = Json::array();
      for (const Json& t : j["turns"]) {
        auto c = titand::ChatTurnTokens(tok, msgs(t["messages"]), t.value("reply", ""), {history.empty(), false});
        if (!c.ok()) return Fail(c.status().ToString());
        history.insert(history.end(), c->begin(), c->end());
        per_turn.push_back(history.size());
      }
      titand::PromptInput in;
      in.messages = msgs(j["next"]);
      auto p = titand::BuildPrompt(&tok, tok.vocab_size(), in, {history.empty(), false});
      if (!p.ok()) return Fail(p.status().ToString());
      all.push_back(Json{{"history", history}, {"prompt", *p}, {"per_turn", per_turn}});
    }
    std::cout << all.dump() << "\n";
  } else if (cmd == "info") {
    std::cout << Json{{"vocab_size", tok.vocab_size()}, {"bos_id", tok.bos_id()}, {"eos_id", tok.eos_id()},
                      {"add_bos", tok.add_bos()}, {"stop_ids", tok.stop_ids()}, {"pre", tok.pre()}}
                     .dump()
              << "\n";
  } else {
    return Fail("unknown command " + cmd);
  }
  return 0;
}
