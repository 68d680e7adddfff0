// Per-request limits checked at the gRPC boundary before anything reaches the engine (no gRPC types:
// unit-testable). Error messages name the field and the limit, never the offending input (a huge or
// binary id must not be echoed back: clients would then fail on their own metadata limit).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "core/engine/engine_types.h"

namespace titand {

struct RequestLimits {
  int64_t max_id_length = 128;          // request_id and session ids, bytes (session ids: <= 128 always)
  int64_t max_stop_strings = 16;        // StoppingCriteria.stop entries
  int64_t max_stop_string_bytes = 256;  // bytes of one stop string
  int64_t max_chat_messages = 256;      // ChatMessages.messages entries
  absl::Status Validate() const;        // INVALID_ARGUMENT naming the field out of range
};

// A session id given by a client: empty allowed when `may_be_empty`; else [A-Za-z0-9._-]{1,L} with
// L = min(128, max_id_length). INVALID_ARGUMENT "<field>: ...".
absl::Status CheckSessionIdField(const std::string& id, const char* field, bool may_be_empty,
                                 const RequestLimits& limits);
// A request_id: printable ASCII (0x20..0x7e), at most max_id_length bytes; empty allowed when asked.
absl::Status CheckRequestIdField(const std::string& id, bool may_be_empty, const RequestLimits& limits);
// Ids, stop strings and chat messages of a converted Generate request.
absl::Status CheckGenerateLimits(const GenerateRequest& req, const RequestLimits& limits);

}  // namespace titand
