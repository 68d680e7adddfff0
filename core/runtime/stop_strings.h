// Stop strings over streamed text, shared by Generate() and the engine's per-turn decoder.
#pragma once

#include <string>
#include <vector>

namespace titand {

// Earliest position of any (non-empty) stop string in `text`, searching only where a match could
// involve text not yet emitted (`emitted` bytes were handed out before). npos if none.
size_t FindStop(const std::string& text, size_t emitted, const std::vector<std::string>& stops);

// Length of the longest suffix of `text` that is a proper prefix of a stop string: those bytes are held
// back until the next token shows whether the stop string completes.
size_t PartialStopSuffix(const std::string& text, const std::vector<std::string>& stops);

}  // namespace titand
