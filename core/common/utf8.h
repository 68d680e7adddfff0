// UTF-8 well-formedness (Unicode 15, Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace titand {

// Byte offset of the first byte that does not begin a well-formed sequence; npos when all is well-formed.
size_t FirstInvalidUtf8(std::string_view s);

// OK, or INVALID_ARGUMENT "<field>: invalid UTF-8 at byte N".
absl::Status CheckUtf8(std::string_view s, std::string_view field);

}  // namespace titand
