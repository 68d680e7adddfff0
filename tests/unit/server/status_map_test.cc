// absl::Status -> grpc::Status: every canonical code, message kept, the codes clients act on.
#include "server/status_map.h"

#include <gtest/gtest.h>

namespace titand {
namespace {

TEST(StatusMap, OkIsOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(ToGrpcCode(absl::StatusCode::kOk), grpc::StatusCode::OK);
}

TEST(StatusMap, ServingCodesAndMessages) {
  struct Case {
    absl::Status in;
    grpc::StatusCode want;
  } cases[] = {
      {absl::InvalidArgumentError("sampling: top_p must be in (0, 1]"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::NotFoundError("session 'x' not found"), grpc::StatusCode::NOT_FOUND},
      {absl::AlreadyExistsError("session 'x' exists"), grpc::StatusCode::ALREADY_EXISTS},
      {absl::FailedPreconditionError("session busy"), grpc::StatusCode::FAILED_PRECONDITION},
      {absl::ResourceExhaustedError("queue full"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::UnavailableError("draining"), grpc::StatusCode::UNAVAILABLE},
      {absl::DeadlineExceededError("late"), grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::CancelledError("gone"), grpc::StatusCode::CANCELLED},
      {absl::OutOfRangeError("prompt too long"), grpc::StatusCode::OUT_OF_RANGE},
      {absl::InternalError("bug"), grpc::StatusCode::INTERNAL},
      {absl::UnimplementedError("no"), grpc::StatusCode::UNIMPLEMENTED},
      {absl::DataLossError("torn snapshot"), grpc::StatusCode::DATA_LOSS},
      {absl::PermissionDeniedError("no"), grpc::StatusCode::PERMISSION_DENIED},
      {absl::UnauthenticatedError("no"), grpc::StatusCode::UNAUTHENTICATED},
      {absl::AbortedError("no"), grpc::StatusCode::ABORTED},
      {absl::UnknownError("?"), grpc::StatusCode::UNKNOWN},
  };
  for (const Case& c : cases) {
    grpc::Status g = ToGrpcStatus(c.in);
    EXPECT_EQ(g.error_code(), c.want) << c.in;
    EXPECT_EQ(g.error_message(), std::string(c.in.message()));
  }
}

TEST(StatusMap, NumericCodesAgree) {
  // absl and gRPC share the canonical code space 0..16: the mapping must be the identity on numbers.
  for (int code = 0; code <= 16; ++code) {
    EXPECT_EQ(static_cast<int>(ToGrpcCode(static_cast<absl::StatusCode>(code))), code);
  }
}

TEST(StatusMap, CodeNames) {
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::UNAVAILABLE), "UNAVAILABLE");
}

}  // namespace
}  // namespace titand
