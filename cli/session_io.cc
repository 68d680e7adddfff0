#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "nlohmann/json.hpp"

namespace titand::cli {

absl::StatusOr<SessionCursor> OpenCursor(const Runtime& rt, const std::string& path) {
  SessionCursor cur;
  cur.state = rt.model->NewState();
  if (path.empty()) return cur;
  return absl::UnimplementedError("--session is not available yet");
}

absl::Status SaveCursor(const Runtime& rt, const SessionCursor& cur, const std::string& path) {
  return absl::UnimplementedError("--session is not available yet");
}

}  // namespace titand::cli

namespace titand::cli {
void AddStateInfo(const Runtime& rt, nlohmann::json* j) {}
}  // namespace titand::cli
