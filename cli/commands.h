#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli/args.h"
#include "nlohmann/json.hpp"
#include "core/runtime/generate.h"
#include "core/runtime/runtime.h"

namespace titand::cli {

absl::Status RunGenerate(const Args& a);
absl::Status RunChat(const Args& a);
absl::Status RunScore(const Args& a);
absl::Status RunTokenize(const Args& a);
absl::Status RunInfo(const Args& a);

// Shared helpers (main.cc).
absl::StatusOr<std::string> ReadText(const Args& a);
absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& s);
absl::StatusOr<std::unique_ptr<Runtime>> LoadFromArgs(const Args& a);
std::string JsonNumber(double v);

// --session FILE: the cursor restored from FILE when it exists, else a fresh one (session_io.cc).
absl::StatusOr<SessionCursor> OpenCursor(const Runtime& rt, const std::string& path);
absl::Status SaveCursor(const Runtime& rt, const SessionCursor& cur, const std::string& path);
// info: session state bytes per token of context and at the window limit.
void AddStateInfo(const Runtime& rt, nlohmann::json* j);

}  // namespace titand::cli
