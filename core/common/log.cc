#include "core/common/log.h"

#include <cstdio>
#include <ctime>

namespace titand {

void LogLine(std::string_view text) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &local);
  std::fprintf(stderr, "%s titand: %.*s\n", stamp, static_cast<int>(text.size()), text.data());
  std::fflush(stderr);
}

}  // namespace titand
