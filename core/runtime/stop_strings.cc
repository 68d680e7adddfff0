#include "core/runtime/stop_strings.h"

#include <algorithm>

namespace titand {

size_t FindStop(const std::string& text, size_t emitted, const std::vector<std::string>& stops) {
  size_t stop_at = std::string::npos;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    const size_t p = text.find(s, emitted > s.size() ? emitted - s.size() : 0);
    if (p != std::string::npos) stop_at = std::min(stop_at, p);
  }
  return stop_at;
}

size_t PartialStopSuffix(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    for (size_t n = std::min(s.size() - 1, text.size()); n > best; --n) {
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        best = n;
        break;
      }
    }
  }
  return best;
}

}  // namespace titand
