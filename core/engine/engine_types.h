// Value types of the engine API (no gRPC, no torch): requests, stream chunks, session info, stats.
// server/ converts protobuf <-> these types in one place.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/sampling/sampling_params.h"
#include "core/session/session_types.h"
#include "core/tokenizer/chat_format.h"

namespace titand {

using RequestId = uint64_t;

using ChatTurnMessage = ChatMessage;  // role "system" | "user" | "assistant", content
// One finish-reason enum from the decoding core to the proto and the metrics (sampling_params.h).
using EngineFinish = FinishReason;
inline const char* EngineFinishName(EngineFinish f) { return FinishReasonName(f); }

struct GenerateRequest {
  std::string tenant;                  // the caller's tenant ("" = no authentication); scopes both ids
  std::string request_id;              // client-chosen label (Abort by it); may be empty
  std::string session_id;              // empty = stateless (a fresh state, dropped at the end)
  // Exactly one input form:
  std::optional<std::string> text;     // raw text, tokenized as is
  std::vector<int32_t> token_ids;      // already tokenized
  std::vector<ChatTurnMessage> messages;  // chat: the model's template is applied to THIS turn only
  bool parse_special = false;          // control-token spellings in text/contents parsed (prompt_builder.h)
  DecodeParams decode;                 // sampling + stop conditions + logprobs; validated by Enqueue
  int32_t priority = 0;                // higher runs first; FCFS within a priority
  std::optional<SteadyTime> deadline;  // past it the request finishes with kDeadline
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t session_tokens = 0;          // history length of the session after this turn
  // Tokens this turn added to the session's history: its prompt + its reply as committed (chat: the
  // template's assistant message, closed). 0 when the turn was rolled back (cancelled, deadline, error)
  // and for stateless requests.
  int64_t committed_tokens = 0;
};

struct Timing {
  double queue_seconds = 0;            // enqueue -> first scheduled
  double ttft_seconds = 0;             // enqueue -> first token
  double total_seconds = 0;
};


// One piece of a stream. Non-final chunks carry tokens; the final chunk carries finish/usage/timing
// (and may carry the last tokens too). On kError, `error` says why.
struct StreamChunk {
  std::vector<int32_t> token_ids;
  std::string text;                    // text delta (never a broken UTF-8 sequence)
  std::vector<float> logprobs;         // one per token id when requested
  bool final = false;
  EngineFinish finish = EngineFinish::kMaxTokens;
  Usage usage;
  Timing timing;
  absl::Status error;
  SharedWrite shared = SharedWrite::kNone;  // final chunk of a session turn only
};

// Called on the engine thread, except a session turn's final chunk, which comes from a session writer
// thread once the turn's state is written (core/engine/session_writer.h, shared_tier.h): must not block
// (push into a bounded buffer and return).
using ChunkCallback = std::function<void(StreamChunk)>;



struct EngineStats {
  int64_t running = 0;                 // requests in the running batch
  int64_t waiting = 0;                 // queued, not yet scheduled
  int64_t last_batch_size = 0;
  int64_t sessions_device = 0, sessions_host = 0, sessions_disk = 0;
  int64_t resident_state_bytes = 0;    // device tier
  int64_t host_state_bytes = 0;
  int64_t steps = 0;
  bool draining = false;
  SharedStoreStats shared;
  // Session snapshot files written, and failed writes / reads / removes (cumulative).
  int64_t disk_writes = 0, disk_write_errors = 0, disk_read_errors = 0, disk_remove_errors = 0;
  // Ended turns whose snapshot write-through (and so their final message) is queued or running on the
  // session writer (core/engine/session_writer.h).
  int64_t session_writes_pending = 0;
};

}  // namespace titand
