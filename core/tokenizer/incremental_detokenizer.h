// Streaming detokenizer: turns ids, one at a time, into text chunks that are each well-formed UTF-8.
// Bytes of a character split across tokens are held back until it is complete; ill-formed bytes become
// U+FFFD (one per maximal ill-formed subpart), so the concatenated chunks equal the "replace"-policy
// decoding of the whole byte string.
#pragma once

#include <cstdint>
#include <string>

#include "core/tokenizer/tokenizer.h"

namespace titand {

class IncrementalDetokenizer {
 public:
  // tok must outlive this object. skip_special: control tokens produce no text.
  explicit IncrementalDetokenizer(const Tokenizer& tok, bool skip_special = true)
      : tok_(tok), skip_special_(skip_special) {}

  // Text completed by this token (possibly empty).
  std::string Add(int32_t id);
  // Whatever is still held back (an unfinished sequence becomes U+FFFD); resets the state.
  std::string Finish();
  // Bytes currently held back (0-3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace titand
