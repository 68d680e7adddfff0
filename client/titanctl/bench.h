// titanctl bench: a load generator against a titand on this machine (loopback only).
//
// N sessions run concurrently, each M turns of `prompt_tokens` token ids + `max_tokens` generated
// (greedy, ignore_eos, so every turn generates exactly max_tokens unless it fails). Closed loop: a
// session's next turn starts when the previous ends. Open loop: session s starts turn k at
// k / rate seconds (rate per session), or at once if it is behind schedule. Bounded: at most
// `max_requests` requests in all and nothing new after `max_seconds`; each request has `timeout_s`.
// Output (JSON): client-side TTFT, inter-token gap and end-to-end latency percentiles (seconds),
// server-reported queue time and TTFT, tokens/s, and error counts by gRPC code.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "client/titanctl/channel.h"

namespace titand {

struct BenchOptions {
  std::string address = "127.0.0.1:50051";
  ChannelOptions channel;      // token / TLS (channel.address is set from `address`)
  int sessions = 4;
  int turns = 3;
  int prompt_tokens = 32;
  int max_tokens = 16;
  bool open_loop = false;
  double rate = 1.0;           // turns per second per session (open loop)
  int max_requests = 1000;
  double max_seconds = 120;
  double timeout_s = 60;
  absl::Status Validate() const;  // also: address must be loopback
};

absl::StatusOr<nlohmann::json> RunBench(const BenchOptions& options);

}  // namespace titand
