// Minimal `--name value` / `--flag` parser for titan-run's subcommands. Unknown flags are errors.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace titand::cli {

class Args {
 public:
  // `flags` take no value; every other allowed name takes exactly one.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv, const std::set<std::string>& with_value,
                                    const std::set<std::string>& flags);
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& def = "") const;
  absl::StatusOr<std::string> Require(const std::string& name) const;
  absl::StatusOr<std::optional<double>> GetDouble(const std::string& name) const;
  absl::StatusOr<std::optional<int64_t>> GetInt(const std::string& name) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace titand::cli
