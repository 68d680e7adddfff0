// The one place that converts protobuf messages (titand.v1) <-> engine value types. No torch, no I/O.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "core/engine/engine_types.h"
#include "titand/v1/inference.pb.h"

namespace titand {

// Wire request -> engine request. Checks the shape only (exactly one non-empty input, max_tokens >= 1,
// sampling ranges via SamplingParams::Validate, chat roles); INVALID_ARGUMENT names the field. Unset
// optional sampling/stopping fields keep the engine defaults. The deadline is set by the caller.
absl::Status FromProto(const v1::GenerateRequest& in, GenerateRequest* out);

// Engine chunk -> wire message. Finish reason, usage and timing only when chunk.final.
void ToProto(const StreamChunk& chunk, const std::string& session_id, v1::GenerateResponse* out);
v1::FinishReason ToProto(EngineFinish finish);
v1::SessionTier ToProto(SessionTier tier);
void ToProto(const SessionInfo& info, v1::Session* out);

// Metric label of a finish reason: "max_tokens", "eos", "stop_sequence", "cancelled", "deadline", "error".
const char* FinishLabel(EngineFinish finish);

// A gRPC deadline (system clock) as a steady-clock deadline for the engine: steady_now + (deadline -
// system_now). None when the call has no deadline (gRPC reports "infinite" as a far-future time; anything
// more than ~10 years ahead counts as none).
std::optional<SteadyTime> SteadyDeadline(std::chrono::system_clock::time_point deadline,
                                         std::chrono::system_clock::time_point system_now,
                                         SteadyTime steady_now);

}  // namespace titand
