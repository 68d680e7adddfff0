#include "core/sampling/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/common/utf8.h"

namespace titand {
namespace {

// NaN fails every comparison, so `!(lo <= x && x <= hi)` rejects it along with +-inf and out-of-range.
absl::Status InRange(const char* field, double x, double lo, double hi, bool lo_open = false) {
  const bool ok = std::isfinite(x) && (lo_open ? x > lo : x >= lo) && x <= hi;
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": must be in ", lo_open ? "(" : "[", lo, ", ", hi,
                                                 "], got ", x));
}

}  // namespace

absl::Status SamplingParams::Validate() const {
  if (absl::Status s = InRange("sampling.temperature", temperature, 0, kMaxTemperature); !s.ok()) return s;
  if (top_k < 0) return absl::InvalidArgumentError(absl::StrCat("sampling.top_k: must be >= 0, got ", top_k));
  if (absl::Status s = InRange("sampling.top_p", top_p, 0, 1, /*lo_open=*/true); !s.ok()) return s;
  if (absl::Status s = InRange("sampling.min_p", min_p, 0, 1); !s.ok()) return s;
  return InRange("sampling.repetition_penalty", repetition_penalty, kMinRepetitionPenalty, kMaxRepetitionPenalty);
}

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kMaxTokens: return "max_tokens";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStopSequence: return "stop_sequence";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kDeadline: return "deadline";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}

absl::Status StopConditions::Validate(int64_t vocab_size) const {
  if (max_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.max_tokens: must be >= 0, got ", max_tokens));
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    if (stop_strings[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("stopping.stop[", i, "]: empty stop string"));
    }
    if (absl::Status s = CheckUtf8(stop_strings[i], absl::StrCat("stopping.stop[", i, "]")); !s.ok()) return s;
  }
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    const int32_t id = stop_token_ids[i];
    if (id < 0 || (vocab_size > 0 && id >= vocab_size)) {
      return absl::InvalidArgumentError(absl::StrCat("stopping.stop_token_ids[", i, "]: id ", id, " is not a token id",
                                                     vocab_size > 0 ? absl::StrCat(" (vocabulary size ", vocab_size, ")") : ""));
    }
  }
  return absl::OkStatus();
}

absl::Status DecodeParams::Validate(int64_t vocab_size) const {
  if (absl::Status s = sampling.Validate(); !s.ok()) return s;
  return stop.Validate(vocab_size);
}

}  // namespace titand
