// Command-line helper shared by the binaries that use absl flags (titand, titanctl).
#pragma once

#include <string>
#include <vector>

namespace titand {

// absl flag names are identifiers: rewrites --max-queue[=v] as --max_queue[=v] (stops at "--").
std::vector<std::string> NormalizeFlagNames(int argc, char** argv);

}  // namespace titand
