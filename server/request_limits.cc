#include "server/request_limits.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace titand {
namespace {

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

}  // namespace

absl::Status RequestLimits::Validate() const {
  auto range = [](const char* name, int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v < lo || v > hi) return absl::InvalidArgumentError(absl::StrCat(name, " must be in [", lo, ", ", hi, "], got ", v));
    return absl::OkStatus();
  };
  if (auto st = range("max_id_length", max_id_length, 8, 1024); !st.ok()) return st;
  if (auto st = range("max_stop_strings", max_stop_strings, 0, 1024); !st.ok()) return st;
  if (auto st = range("max_stop_string_bytes", max_stop_string_bytes, 1, 65536); !st.ok()) return st;
  if (auto st = range("max_chat_messages", max_chat_messages, 1, 65536); !st.ok()) return st;
  return absl::OkStatus();
}

absl::Status CheckSessionIdField(const std::string& id, const char* field, bool may_be_empty,
                                 const RequestLimits& limits) {
  if (id.empty()) {
    return may_be_empty ? absl::OkStatus() : absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  }
  const int64_t max_len = std::min<int64_t>(128, limits.max_id_length);
  if (static_cast<int64_t>(id.size()) > max_len)
    return absl::InvalidArgumentError(absl::StrCat(field, ": longer than ", max_len, " bytes"));
  if (!std::all_of(id.begin(), id.end(), IsIdChar))
    return absl::InvalidArgumentError(absl::StrCat(field, ": must match [A-Za-z0-9._-]{1,", max_len, "}"));
  return absl::OkStatus();
}

absl::Status CheckRequestIdField(const std::string& id, bool may_be_empty, const RequestLimits& limits) {
  if (id.empty()) {
    return may_be_empty ? absl::OkStatus() : absl::InvalidArgumentError("request_id: required");
  }
  if (static_cast<int64_t>(id.size()) > limits.max_id_length)
    return absl::InvalidArgumentError(absl::StrCat("request_id: longer than ", limits.max_id_length, " bytes"));
  for (char c : id) {
    if (c < 0x20 || c > 0x7e) return absl::InvalidArgumentError("request_id: printable ASCII only");
  }
  return absl::OkStatus();
}

absl::Status CheckGenerateLimits(const GenerateRequest& req, const RequestLimits& limits) {
  if (auto st = CheckSessionIdField(req.session_id, "session_id", true, limits); !st.ok()) return st;
  if (auto st = CheckRequestIdField(req.request_id, true, limits); !st.ok()) return st;
  if (static_cast<int64_t>(req.decode.stop.stop_strings.size()) > limits.max_stop_strings)
    return absl::InvalidArgumentError(absl::StrCat("stopping.stop: more than ", limits.max_stop_strings, " strings"));
  for (const std::string& s : req.decode.stop.stop_strings) {
    if (static_cast<int64_t>(s.size()) > limits.max_stop_string_bytes)
      return absl::InvalidArgumentError(
          absl::StrCat("stopping.stop: a string is longer than ", limits.max_stop_string_bytes, " bytes"));
  }
  if (static_cast<int64_t>(req.messages.size()) > limits.max_chat_messages)
    return absl::InvalidArgumentError(absl::StrCat("chat.messages: more than ", limits.max_chat_messages, " messages"));
  return absl::OkStatus();
}

}  // namespace titand
