#include "core/runtime/stop_strings.h"

#include <algorithm>

namespace titand {

StopMatch FindStopMatch(const std::string& text, size_t emitted, const std::vector<std::string>& stops) {
  StopMatch best;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    const size_t p = text.find(s, emitted > s.size() ? emitted - s.size() : 0);
    if (p == std::string::npos) continue;
    const bool better = !best.found() || p + s.size() < best.pos + best.len ||
                        (p + s.size() == best.pos + best.len && p < best.pos);
    if (better) best = {p, s.size()};
  }
  return best;
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
