// titanctl: command-line client of titand.
//
//   titanctl [--addr HOST:PORT] [--token T] [--tls-ca CA.pem [--tls-cert C.pem --tls-key K.pem]] generate [--session ID] [--max-tokens N] [--temperature T] ... TEXT
//   titanctl chat [--session ID] [TEXT]          interactive, one session, replies stream (TEXT: first message)
//   titanctl sessions list | create [ID] | get ID | delete ID | fork ID [NEW_ID]
//   titanctl info | health
//   titanctl bench [--sessions N] [--turns M] [--open-loop --rate R] ...   (JSON on stdout)
#include <iostream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "core/common/flag_names.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "client/titanctl/bench.h"
#include "client/titanctl/channel.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "titand/v1/inference.grpc.pb.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:50051", "titand address");
ABSL_FLAG(std::string, token, "", "bearer token (API key) of a server with authentication on");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle that signed the server's certificate: use TLS");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (mutual TLS; with --tls-key and --tls-ca)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_server_name, "", "name to check in the server certificate (default: from --addr)");
ABSL_FLAG(std::string, session, "", "session id (generate, chat)");
ABSL_FLAG(int, max_tokens, 128, "tokens to generate at most");
ABSL_FLAG(double, temperature, -1, "sampling temperature (unset: server default, greedy)");
ABSL_FLAG(int, top_k, -1, "top-k (unset: off)");
ABSL_FLAG(double, top_p, -1, "top-p (unset: off)");
ABSL_FLAG(int64_t, seed, -1, "sampling seed (unset: 0)");
ABSL_FLAG(std::string, tokens, "", "comma-separated token ids instead of TEXT");
ABSL_FLAG(bool, logprobs, false, "print token ids and log-probabilities");
ABSL_FLAG(std::string, request_id, "", "request id (for Abort)");
ABSL_FLAG(double, timeout, 0, "call deadline in seconds (0 = none)");
ABSL_FLAG(int, sessions, 4, "bench: concurrent sessions");
ABSL_FLAG(int, turns, 3, "bench: turns per session");
ABSL_FLAG(int, prompt_tokens, 32, "bench: prompt tokens per turn");
ABSL_FLAG(bool, open_loop, false, "bench: open loop (turns on a schedule) instead of closed loop");
ABSL_FLAG(double, rate, 1.0, "bench: turns per second per session (open loop)");
ABSL_FLAG(int, max_requests, 1000, "bench: at most this many requests");
ABSL_FLAG(double, max_seconds, 120, "bench: issue nothing new after this many seconds");

namespace titand {
namespace {

int Fail(const grpc::Status& st) {
  // gRPC and absl share the canonical code space: print the code's name ("error: NOT_FOUND: ...").
  std::cerr << "error: " << absl::StatusCodeToString(static_cast<absl::StatusCode>(st.error_code())) << ": "
            << st.error_message() << "\n";
  return 1;
}

void SetDeadline(grpc::ClientContext* ctx) {
  double t = absl::GetFlag(FLAGS_timeout);
  if (t > 0) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(int64_t(t * 1000)));
}

nlohmann::json SessionJson(const v1::Session& s) {
  return {{"id", s.id()},       {"history_tokens", s.history_tokens()}, {"state_bytes", s.state_bytes()},
          {"tier", v1::SessionTier_Name(s.tier())}, {"busy", s.busy()}, {"idle_seconds", s.idle_seconds()},
          {"created_unix", s.created_unix()}, {"error", s.error()}};
}

// The sampling flags use -1 for "unset" (the server's default); any other negative value is a mistake.
bool CheckSamplingFlags() {
  auto bad = [](const char* name, double v) {
    if (v >= 0 || v == -1) return false;
    std::cerr << "error: --" << name << " must be >= 0 (or left unset), got " << v << "\n";
    return true;
  };
  return !(bad("temperature", absl::GetFlag(FLAGS_temperature)) || bad("top-k", absl::GetFlag(FLAGS_top_k)) ||
           bad("top-p", absl::GetFlag(FLAGS_top_p)) || bad("seed", static_cast<double>(absl::GetFlag(FLAGS_seed))));
}

void FillSampling(v1::GenerateRequest* req) {
  v1::SamplingParams* s = req->mutable_sampling();
  if (absl::GetFlag(FLAGS_temperature) >= 0) s->set_temperature(absl::GetFlag(FLAGS_temperature));
  if (absl::GetFlag(FLAGS_top_k) >= 0) s->set_top_k(absl::GetFlag(FLAGS_top_k));
  if (absl::GetFlag(FLAGS_top_p) >= 0) s->set_top_p(absl::GetFlag(FLAGS_top_p));
  if (absl::GetFlag(FLAGS_seed) >= 0) s->set_seed(absl::GetFlag(FLAGS_seed));
  req->mutable_stopping()->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  req->set_logprobs(absl::GetFlag(FLAGS_logprobs));
  req->set_request_id(absl::GetFlag(FLAGS_request_id));
}

// Streams one request; text to stdout as it comes, the final summary to stderr.
int Stream(v1::Inference::Stub& stub, const v1::GenerateRequest& req) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    std::cout << msg.text() << std::flush;
    if (absl::GetFlag(FLAGS_logprobs)) {
      for (int i = 0; i < msg.token_ids_size(); ++i) {
        std::cerr << "[" << msg.token_ids(i) << " " << (i < msg.logprobs_size() ? msg.logprobs(i) : 0.f) << "]";
      }
    }
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      std::cout << "\n";
      std::cerr << "[" << v1::FinishReason_Name(msg.finish_reason()) << " prompt=" << msg.usage().prompt_tokens()
                << " completion=" << msg.usage().completion_tokens()
                << " session=" << msg.usage().session_tokens() << " ttft=" << msg.timing().time_to_first_token_seconds()
                << "s total=" << msg.timing().total_seconds() << "s]\n";
    }
  }
  grpc::Status st = reader->Finish();
  return st.ok() ? 0 : Fail(st);
}

int Generate(v1::Inference::Stub& stub, const std::vector<std::string>& args) {
  v1::GenerateRequest req;
  req.set_session_id(absl::GetFlag(FLAGS_session));
  if (!absl::GetFlag(FLAGS_tokens).empty()) {
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_tokens), ',', absl::SkipEmpty())) {
      int id;
      if (!absl::SimpleAtoi(part, &id)) {
        std::cerr << "--tokens: not an integer: " << std::string(part) << "\n";
        return 2;
      }
      req.mutable_tokens()->add_ids(id);
    }
  } else {
    std::string text;
    for (size_t i = 1; i < args.size(); ++i) text += (i > 1 ? " " : "") + args[i];
    req.set_text(text);
  }
  FillSampling(&req);
  return Stream(stub, req);
}

// `args` after "chat" (if any) are the first message; then one message per line of stdin. Without
// --session a new session is created at the first message (a chat left before it creates nothing).
int Chat(v1::Inference::Stub& stub, const std::vector<std::string>& args) {
  std::string session = absl::GetFlag(FLAGS_session);
  bool created = false;  // made here and no turn of it has finished yet: removed again if its first turn fails
  std::cerr << (session.empty() ? std::string("new session") : "session " + session)
            << " (empty line or /quit to leave)\n";
  std::string line;
  std::string first;
  for (size_t i = 1; i < args.size(); ++i) first += (i > 1 ? " " : "") + args[i];
  for (bool from_args = !first.empty();; from_args = false) {
    if (from_args) {
      line = first;
    } else {
      std::cerr << "> " << std::flush;
      if (!std::getline(std::cin, line)) break;
    }
    if (line.empty() || line == "/quit") break;
    if (session.empty()) {
      grpc::ClientContext ctx;
      SetDeadline(&ctx);
      v1::Session s;
      grpc::Status st = stub.CreateSession(&ctx, v1::CreateSessionRequest(), &s);
      if (!st.ok()) return Fail(st);
      session = s.id();
      created = true;
      std::cerr << "session " << session << "\n";
    }
    v1::GenerateRequest req;
    req.set_session_id(session);
    v1::ChatMessage* m = req.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(line);
    FillSampling(&req);
    if (int rc = Stream(stub, req); rc != 0) {
      if (created) {  // a refused or failed first turn (bad sampling, too many tokens) leaves no empty session
        grpc::ClientContext ctx;
        SetDeadline(&ctx);
        v1::DeleteSessionRequest del;
        del.set_session_id(session);
        v1::DeleteSessionResponse resp;
        (void)stub.DeleteSession(&ctx, del, &resp);
      }
      return rc;
    }
    created = false;
  }
  return 0;
}

int Sessions(v1::Inference::Stub& stub, const std::vector<std::string>& args) {
  std::string sub = args.size() > 1 ? args[1] : "list";
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status st;
  nlohmann::json out;
  if (sub == "list") {
    // Every page (the server answers at most 1,000 sessions a call, 100 by default).
    out = nlohmann::json::array();
    std::string token;
    do {
      grpc::ClientContext page_ctx;
      SetDeadline(&page_ctx);
      v1::ListSessionsRequest req;
      req.set_page_size(1000);
      req.set_page_token(token);
      v1::ListSessionsResponse resp;
      st = stub.ListSessions(&page_ctx, req, &resp);
      if (!st.ok()) break;
      for (const v1::Session& s : resp.sessions()) out.push_back(SessionJson(s));
      token = resp.next_page_token();
    } while (!token.empty());
  } else if (sub == "create") {
    v1::CreateSessionRequest req;
    if (args.size() > 2) req.set_session_id(args[2]);
    v1::Session s;
    st = stub.CreateSession(&ctx, req, &s);
    out = SessionJson(s);
  } else if ((sub == "get" || sub == "delete" || sub == "fork") && args.size() > 2) {
    if (sub == "get") {
      v1::GetSessionRequest req;
      req.set_session_id(args[2]);
      v1::Session s;
      st = stub.GetSession(&ctx, req, &s);
      out = SessionJson(s);
    } else if (sub == "delete") {
      v1::DeleteSessionRequest req;
      req.set_session_id(args[2]);
      v1::DeleteSessionResponse resp;
      st = stub.DeleteSession(&ctx, req, &resp);
      out = {{"deleted", args[2]}};
    } else {
      v1::ForkSessionRequest req;
      req.set_session_id(args[2]);
      if (args.size() > 3) req.set_new_session_id(args[3]);
      v1::Session s;
      st = stub.ForkSession(&ctx, req, &s);
      out = SessionJson(s);
    }
  } else {
    std::cerr << "usage: titanctl sessions list | create [ID] | get ID | delete ID | fork ID [NEW_ID]\n";
    return 2;
  }
  if (!st.ok()) return Fail(st);
  std::cout << out.dump(2) << "\n";
  return 0;
}

int Info(v1::Inference::Stub& stub) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ModelInfo info;
  grpc::Status st = stub.GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
  if (!st.ok()) return Fail(st);
  std::cout << info.DebugString();
  return 0;
}

int Health(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = stub->Check(&ctx, req, &resp);
  if (!st.ok()) return Fail(st);
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()) << "\n";
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

ChannelOptions ChannelFromFlags() {
  ChannelOptions c;
  c.address = absl::GetFlag(FLAGS_addr);
  c.token = absl::GetFlag(FLAGS_token);
  c.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  c.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  c.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  c.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  return c;
}

int Bench() {
  BenchOptions o;
  o.address = absl::GetFlag(FLAGS_addr);
  o.channel = ChannelFromFlags();
  o.sessions = absl::GetFlag(FLAGS_sessions);
  o.turns = absl::GetFlag(FLAGS_turns);
  o.prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  o.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  o.open_loop = absl::GetFlag(FLAGS_open_loop);
  o.rate = absl::GetFlag(FLAGS_rate);
  o.max_requests = absl::GetFlag(FLAGS_max_requests);
  o.max_seconds = absl::GetFlag(FLAGS_max_seconds);
  if (absl::GetFlag(FLAGS_timeout) > 0) o.timeout_s = absl::GetFlag(FLAGS_timeout);
  absl::StatusOr<nlohmann::json> j = RunBench(o);
  if (!j.ok()) {
    std::cerr << "bench: " << j.status() << "\n";
    return 2;
  }
  std::cout << j->dump(2) << "\n";
  return 0;
}


}  // namespace
}  // namespace titand

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "titanctl [--addr HOST:PORT] generate|chat|sessions|info|health|bench ...");
  std::vector<std::string> norm = titand::NormalizeFlagNames(argc, argv);
  std::vector<char*> cargs;
  for (std::string& a : norm) cargs.push_back(a.data());
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(cargs.size()), cargs.data());
  std::vector<std::string> args(rest.begin() + 1, rest.end());
  if (args.empty()) {
    std::cerr << "usage: titanctl generate|chat|sessions|info|health|bench (--help for flags)\n";
    return 2;
  }
  if (!titand::CheckSamplingFlags()) return 2;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> made = titand::MakeChannel(titand::ChannelFromFlags());
  if (!made.ok()) {
    std::cerr << "error: " << made.status().message() << "\n";
    return 2;
  }
  std::shared_ptr<grpc::Channel> channel = *made;
  auto stub = titand::v1::Inference::NewStub(channel);
  const std::string& cmd = args[0];
  if (cmd == "generate") return titand::Generate(*stub, args);
  if (cmd == "chat") return titand::Chat(*stub, args);
  if (cmd == "sessions") return titand::Sessions(*stub, args);
  if (cmd == "info") return titand::Info(*stub);
  if (cmd == "health") return titand::Health(channel);
  if (cmd == "bench") return titand::Bench();
  std::cerr << "unknown command: " << cmd << "\n";
  return 2;
}
