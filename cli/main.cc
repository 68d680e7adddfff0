// titan-run: the offline CLI over core/ (no server).
//   generate --model M (--prompt T | --prompt-file F) [--chat] [--system S] [sampling] [--max-tokens N]
//   score    --model M (--text T | --text-file F | --ids 1,2,3)      -> JSON {ids, logprobs}; --batch F -> JSON lines
//   tokenize --model M (--text T | --text-file F)                    -> JSON {ids}
//   info     --model M                                               -> JSON
// Common: --dtype auto|float32|bfloat16|float16, --weights auto|dtype|f32|bf16|int8|int4 (default auto), --device auto|cpu|cuda[:N], --threads N, --tptt DIR, --session FILE.
// Errors: one line on stderr, exit status 1 (2 for usage errors).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/common/status.h"
#include "core/runtime/cpu_budget.h"

namespace titand::cli {
namespace {

const char kUsage[] =
    "usage: titan-run <generate|chat|score|tokenize|info> --model PATH|smollm2-135m [options]\n"
    "  generate  --prompt TEXT | --prompt-file F  [--chat] [--system TEXT] [--max-tokens N]\n"
    "            [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R] [--seed S]\n"
    "            [--stop STR] [--include-stop] [--ignore-eos] [--session FILE] [--json]\n"
    "            text, chat contents and --stop are literal text; --parse-special parses control-token spellings\n"
    "  chat      interactive multi-turn chat on stdin (one user turn per line) [--session FILE]\n"
    "  score     --text TEXT | --text-file F | --ids 1,2,3  [--session FILE]   (JSON: ids, logprobs)\n"
    "            or --batch F: one line per input, [ids] or {prefix, continuations}  (JSON lines)\n"
    "  tokenize  --text TEXT | --text-file F [--parse-special]                 (JSON: ids; bad UTF-8: error)\n"
    "  info                                                                     (JSON)\n"
    "common: --dtype auto|float32|bfloat16|float16  --weights auto|dtype|f32|bf16|int8|int4 (default auto: on CPU GGUF Q4_x -> "
    "int4, Q8_0/Q5/Q6 -> int8, floats -> --dtype; dtype = dense in --dtype)  --device auto|cpu|cuda[:N]  --threads N  --tptt DIR  --mu X (override the adapter's gate)\n";

}  // namespace

absl::StatusOr<std::string> ReadText(const Args& a) {
  if (a.Has("text")) return a.Get("text");
  if (a.Has("prompt")) return a.Get("prompt");
  std::string file = a.Has("text-file") ? a.Get("text-file") : a.Get("prompt-file");
  if (file.empty()) return absl::InvalidArgumentError("give the input with --text/--prompt or --text-file/--prompt-file");
  std::ifstream in(file, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", file));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& s) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipWhitespace())) {
    int32_t v;
    if (!absl::SimpleAtoi(part, &v)) return absl::InvalidArgumentError(absl::StrCat("bad token id '", part, "'"));
    ids.push_back(v);
  }
  return ids;
}

absl::StatusOr<std::unique_ptr<Runtime>> LoadFromArgs(const Args& a) {
  LoadOptions lo;
  ASSIGN_OR_RETURN(lo.model, a.Require("model"));
  lo.dtype = a.Get("dtype", "auto");
  lo.device = a.Get("device", "auto");
  lo.weights = a.Get("weights", titand::kDefaultWeights);
  lo.tptt_dir = a.Get("tptt");
  ASSIGN_OR_RETURN(auto threads, a.GetInt("threads"));
  lo.threads = threads.value_or(0);
  ASSIGN_OR_RETURN(lo.mu_override, a.GetDouble("mu"));
  return LoadRuntime(lo);
}

std::string JsonNumber(double v) {
  if (std::isnan(v)) return "null";
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

}  // namespace titand::cli

int main(int argc, char** argv) {
  using namespace titand::cli;
  std::vector<std::string> rest(argv + 1, argv + argc);
  if (rest.empty() || rest[0] == "--help" || rest[0] == "-h" || rest[0] == "help") {
    std::cout << kUsage;
    return rest.empty() ? 2 : 0;
  }
  const std::string cmd = rest[0];
  rest.erase(rest.begin());
  const std::set<std::string> with_value = {
      "model", "prompt", "prompt-file", "text", "text-file", "ids", "system", "max-tokens", "temperature",
      "top-k", "top-p", "min-p", "repetition-penalty", "seed", "stop", "dtype", "weights", "threads", "tptt", "session", "mu", "device", "batch"};
  const std::set<std::string> flags = {"chat", "no-stream", "json", "parse-special", "include-stop", "ignore-eos"};
  auto args = Args::Parse(rest, with_value, flags);
  if (!args.ok()) {
    std::cerr << "titan-run: error: " << args.status().message() << "\n" << kUsage;
    return 2;
  }
  if (absl::Status w = titand::ParseWeightFormat(args->Get("weights", titand::kDefaultWeights)).status(); !w.ok()) {
    std::cerr << "titan-run: error: --weights: " << w.message() << "\n" << kUsage;
    return 2;
  }
  {  // as titand: 0 = every CPU this process may use, more never help (and oversubscribe OpenMP)
    const int cores = titand::AvailableCores();
    auto threads = args->GetInt("threads");
    if (!threads.ok() || (*threads && (**threads < 0 || **threads > cores))) {
      std::cerr << "titan-run: error: --threads: "
                << (threads.ok() ? absl::StrCat(**threads, " outside [0, ", cores, "]")
                                 : std::string(absl::StripPrefix(threads.status().message(), "--threads: ")))
                << "\n" << kUsage;
      return 2;
    }
  }
  absl::Status st;
  if (cmd == "generate") {
    st = RunGenerate(*args);
  } else if (cmd == "chat") {
    st = RunChat(*args);
  } else if (cmd == "score") {
    st = RunScore(*args);
  } else if (cmd == "tokenize") {
    st = RunTokenize(*args);
  } else if (cmd == "info") {
    st = RunInfo(*args);
  } else {
    std::cerr << "titan-run: error: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  }
  if (!st.ok()) {
    std::cerr << "titan-run: error: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
