// The one place that converts protobuf messages (titand.v1) <-> engine value types. No torch, no I/O.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "core/engine/engine_types.h"
#include "titand/v1/inference.pb.h"

namespace titand {

// Wire request -> engine request. Checks the shape (one non-empty input, max_tokens >= 1) and runs
// the one validator, DecodeParams::Validate (ranges, NaN/inf, stop strings); INVALID_ARGUMENT names the
// field. The engine checks the rest (roles, UTF-8 of inputs, vocabulary, server limits). Unset optional
// sampling/stopping fields keep the defaults of core/sampling/sampling_params.h. The deadline is set by
// the caller.
absl::Status FromProto(const v1::GenerateRequest& in, GenerateRequest* out);

// Engine chunk -> wire message. Finish reason, usage and timing only when chunk.final.
void ToProto(const StreamChunk& chunk, const std::string& session_id, v1::GenerateResponse* out);
v1::FinishReason ToProto(EngineFinish finish);
v1::SessionTier ToProto(SessionTier tier);
void ToProto(const SessionInfo& info, v1::Session* out);

// A gRPC deadline (system clock) as a steady-clock deadline for the engine: steady_now + (deadline -
// system_now). None when the call has no deadline (gRPC reports "infinite" as a far-future time; anything
// more than ~10 years ahead counts as none).
std::optional<SteadyTime> SteadyDeadline(std::chrono::system_clock::time_point deadline,
                                         std::chrono::system_clock::time_point system_now,
                                         SteadyTime steady_now);

}  // namespace titand
