// Request validation of the sampling parameters (core/sampling/sampling_params.h): arbitrary field
// values (NaN, inf, negative, huge) are validated; every accepted set must sample a valid id from a
// small logits vector without crashing or producing an out-of-range token.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/sampling/sampler.h"
#include "core/sampling/sampling_params.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  titand::SamplingParams p;
  const size_t need = 4 * sizeof(float) + sizeof(int) + sizeof(uint64_t);
  if (size < need) return 0;
  std::memcpy(&p.temperature, data, 4);
  std::memcpy(&p.top_p, data + 4, 4);
  std::memcpy(&p.min_p, data + 8, 4);
  std::memcpy(&p.repetition_penalty, data + 12, 4);
  std::memcpy(&p.top_k, data + 16, sizeof(int));
  std::memcpy(&p.seed, data + 16 + sizeof(int), sizeof(uint64_t));
  if (!p.Validate().ok()) return 0;
  std::vector<float> logits;
  for (size_t i = need; i + 4 <= size && logits.size() < 64; i += 4) {
    float v;
    std::memcpy(&v, data + i, 4);
    logits.push_back(std::isfinite(v) ? v : 0.f);
  }
  if (logits.empty()) logits = {0.f, 1.f, 2.f};
  titand::Sampler s(p);
  const std::vector<int32_t> history = {0, 1};
  const int32_t id = s.Sample(logits.data(), static_cast<int64_t>(logits.size()), history);
  if (id < 0 || id >= static_cast<int32_t>(logits.size())) std::abort();
  return 0;
}
