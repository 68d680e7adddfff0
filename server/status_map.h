// The one place that maps absl::Status (engine boundary) to grpc::Status (wire).
//
//   INVALID_ARGUMENT    -> INVALID_ARGUMENT     malformed request
//   NOT_FOUND           -> NOT_FOUND            unknown session / request id
//   ALREADY_EXISTS      -> ALREADY_EXISTS       session id taken
//   FAILED_PRECONDITION -> FAILED_PRECONDITION  session busy
//   RESOURCE_EXHAUSTED  -> RESOURCE_EXHAUSTED   admission queue full (overload: back off)
//   UNAVAILABLE         -> UNAVAILABLE          not ready / draining (go elsewhere)
//   DEADLINE_EXCEEDED   -> DEADLINE_EXCEEDED
//   CANCELLED           -> CANCELLED
//   OUT_OF_RANGE        -> OUT_OF_RANGE         (e.g. prompt longer than the model's context)
//   everything else keeps its numeric code (absl and gRPC share the canonical code space); OK -> OK.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace titand {

grpc::StatusCode ToGrpcCode(absl::StatusCode code);
// Keeps the message; OK maps to grpc::Status::OK.
grpc::Status ToGrpcStatus(const absl::Status& status);
// Name of a gRPC code as used in metric labels ("OK", "RESOURCE_EXHAUSTED", ...).
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace titand
