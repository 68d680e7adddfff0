// Stop strings over streamed text, used by the decoding core (core/runtime/decoder.h).
#pragma once

#include <string>
#include <vector>

namespace titand {

struct StopMatch {
  size_t pos = std::string::npos;  // where the matched stop string starts in the text
  size_t len = 0;                  // its length
  bool found() const { return pos != std::string::npos; }
};

// The (non-empty) stop string occurrence in `text` that ENDS first (ties: the one starting first), among
// occurrences that could involve text not yet emitted (`emitted` bytes were handed out before).
StopMatch FindStopMatch(const std::string& text, size_t emitted, const std::vector<std::string>& stops);

// Length of the longest suffix of `text` that is a proper prefix of a stop string: those bytes are held
// back until the next token shows whether the stop string completes.
size_t PartialStopSuffix(const std::string& text, const std::vector<std::string>& stops);

}  // namespace titand
