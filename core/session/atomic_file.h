// Crash-safe file replacement: the content goes to a temp file in the same directory, which is fsynced,
// renamed over `path` and the directory fsynced. Readers see the old file or the new one, never a part;
// on failure the temp file is removed and an existing `path` is untouched.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace titand {

// Writes the concatenation of `parts` to `path` atomically. INTERNAL (with errno text and the path) on
// I/O failure, NOT_FOUND if the directory does not exist.
absl::Status WriteFileAtomically(const std::string& path, const std::vector<std::string_view>& parts);

}  // namespace titand
