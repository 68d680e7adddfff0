// The server's log line, for every module: "<local time, ISO 8601 seconds> titand: <text>\n" on stderr,
// flushed. One fprintf per line, so lines from different threads do not interleave.
#pragma once

#include <string_view>

namespace titand {

void LogLine(std::string_view text);

}  // namespace titand
