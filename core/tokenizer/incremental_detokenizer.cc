#include "core/tokenizer/incremental_detokenizer.h"

#include "core/tokenizer/unicode_text.h"

namespace titand {

std::string IncrementalDetokenizer::Add(int32_t id) {
  if (skip_special_ && tok_.IsSpecial(id)) return "";
  pending_ += tok_.TokenBytes(id);
  std::string out;
  const size_t used = AppendValidUtf8(pending_, /*hold_tail=*/true, &out);
  pending_.erase(0, used);
  return out;
}

std::string IncrementalDetokenizer::Finish() {
  std::string out;
  AppendValidUtf8(pending_, /*hold_tail=*/false, &out);
  pending_.clear();
  return out;
}

}  // namespace titand
