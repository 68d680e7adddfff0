// weights_drift: how far quantised weights move a model's next-token predictions from float32 weights.
//   weights_drift --model M --text-file F [--formats int8,int4,auto] [--threads N] [--chunk 64]
// Scores the text (tokenised without BOS) once per weight format, in pieces of --chunk tokens, and
// prints JSON: tokens, and per format the mean and max |log p - log p_f32| of the actual next tokens,
// the share of positions whose top-1 token equals float32's, and the run-time weight bytes.
// Used by tests/py/test_quantized_weights.py and for the figures in BENCHMARKS.md (issue 9).
#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_split.h"
#include "core/common/status.h"
#include "core/runtime/runtime.h"
#include "nlohmann/json.hpp"

using namespace titand;

namespace {

std::string Arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return def;
}

struct Scored {
  at::Tensor logp;  // [T - 1, vocab] float32 log-softmax at the positions that have a next token
  at::Tensor next;  // [T - 1] int64: the actual next tokens
  int64_t bytes = 0;
  std::string format;
};

// Scores in pieces of `chunk` tokens (the state carries over), so the matmuls see as many rows as a
// chunked prefill or a batched decode step does (int8 switches to a float GEMM from 128 rows).
absl::StatusOr<Scored> Run(LoadOptions lo, const std::string& weights, const std::string& text, int64_t chunk) {
  lo.weights = weights;
  ASSIGN_OR_RETURN(auto rt, LoadRuntime(lo));
  const std::vector<int32_t> toks = rt->tokenizer->EncodeText(text, /*parse_special=*/false);
  const int64_t T = static_cast<int64_t>(toks.size());
  if (T < 2) return absl::InvalidArgumentError("text too short");
  SequenceState st = rt->model->NewState();
  std::vector<at::Tensor> parts;
  for (int64_t off = 0; off < T; off += chunk) {
    std::vector<ForwardInput> in(1);
    in[0].tokens.assign(toks.begin() + off, toks.begin() + std::min(T, off + chunk));
    in[0].state = &st;
    in[0].all_logits = true;
    ASSIGN_OR_RETURN(auto logits, rt->model->Forward(in));
    parts.push_back(logits[0]);
  }
  at::Tensor ids = at::tensor(std::vector<int64_t>(toks.begin(), toks.end()));
  return Scored{at::log_softmax(at::cat(parts, 0).narrow(0, 0, T - 1), -1), ids.narrow(0, 1, T - 1),
                rt->model->WeightBytes(), rt->model->WeightFormatSummary()};
}

}  // namespace

#define ASSIGN_OR_DIE(lhs, expr)                                \
  auto lhs##_or = (expr);                                       \
  if (!lhs##_or.ok()) {                                         \
    std::cerr << "weights_drift: " << lhs##_or.status() << "\n"; \
    return 1;                                                   \
  }                                                             \
  auto& lhs = *lhs##_or;

int main(int argc, char** argv) {
  LoadOptions lo;
  lo.model = Arg(argc, argv, "model", "smollm2-135m");
  lo.device = "cpu";
  lo.dtype = "float32";
  lo.threads = std::stoi(Arg(argc, argv, "threads", "0"));
  std::ifstream f(Arg(argc, argv, "text-file", ""), std::ios::binary);
  if (!f) {
    std::cerr << "weights_drift: --text-file missing or unreadable\n";
    return 2;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const int64_t chunk = std::stoll(Arg(argc, argv, "chunk", "64"));
  ASSIGN_OR_DIE(ref, Run(lo, "f32", ss.str(), chunk));
  const int64_t T = ref.logp.size(0) + 1;
  nlohmann::json out = {{"tokens", T}, {"f32_weight_bytes", ref.bytes}};
  auto at_next = [](const Scored& s) { return s.logp.gather(1, s.next.unsqueeze(1)).squeeze(1); };
  for (absl::string_view fmt : absl::StrSplit(Arg(argc, argv, "formats", "int8,int4"), ',', absl::SkipEmpty())) {
    ASSIGN_OR_DIE(q, Run(lo, std::string(fmt), ss.str(), chunk));
    at::Tensor d = (at_next(q) - at_next(ref)).abs();
    out[std::string(fmt)] = {
        {"format", q.format},
        {"weight_bytes", q.bytes},
        {"mean_abs_dlogp", d.mean().item<double>()},
        {"max_abs_dlogp", d.max().item<double>()},
        {"top1_agreement", ref.logp.argmax(-1).eq(q.logp.argmax(-1)).to(at::kDouble).mean().item<double>()},
    };
  }
  std::cout << out.dump(2) << "\n";
  return 0;
}
