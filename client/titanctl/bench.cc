#include "client/titanctl/bench.h"

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/titanctl/stats.h"
#include "titand/v1/inference.grpc.pb.h"

namespace titand {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

bool IsLoopback(const std::string& address) {
  for (const char* prefix : {"127.", "localhost:", "[::1]:", "ipv4:127.", "ipv6:[::1]"}) {
    if (address.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

struct Results {
  absl::Mutex mu;
  SampleStats ttft, itl, e2e, server_queue, server_ttft;
  int64_t tokens = 0, ok = 0;
  std::map<std::string, int64_t> errors;
};

// One turn: stream the reply, record client-side timings.
void RunTurn(v1::Inference::Stub& stub, const BenchOptions& o, const std::string& session, std::mt19937& rng,
             Results& out) {
  v1::GenerateRequest req;
  req.set_session_id(session);
  std::uniform_int_distribution<int> token(1000, 20000);
  for (int i = 0; i < o.prompt_tokens; ++i) req.mutable_tokens()->add_ids(token(rng));
  req.mutable_stopping()->set_max_tokens(o.max_tokens);
  req.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  Clock::time_point start = Clock::now(), last = start;
  bool first = true;
  SampleStats itl;
  int64_t tokens = 0;
  double server_queue = 0, server_ttft = 0;
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    Clock::time_point now = Clock::now();
    if (msg.token_ids_size() > 0) {
      if (!first) {
        for (int i = 0; i < msg.token_ids_size(); ++i) itl.Add(Seconds(now - last) / msg.token_ids_size());
      }
      if (first) {
        absl::MutexLock lock(&out.mu);
        out.ttft.Add(Seconds(now - start));
      }
      first = false;
      last = now;
      tokens += msg.token_ids_size();
    }
    if (msg.has_timing()) {
      server_queue = msg.timing().queue_seconds();
      server_ttft = msg.timing().time_to_first_token_seconds();
    }
  }
  grpc::Status st = reader->Finish();
  absl::MutexLock lock(&out.mu);
  out.tokens += tokens;
  if (!st.ok()) {
    ++out.errors[absl::StrCat(st.error_code())];
    return;
  }
  ++out.ok;
  out.itl.Merge(itl);
  out.e2e.Add(Seconds(Clock::now() - start));
  out.server_queue.Add(server_queue);
  out.server_ttft.Add(server_ttft);
}

}  // namespace

absl::Status BenchOptions::Validate() const {
  if (!IsLoopback(address)) {
    return absl::InvalidArgumentError(absl::StrCat("bench only targets loopback addresses, got ", address));
  }
  if (sessions < 1 || sessions > 256) return absl::InvalidArgumentError("sessions: 1..256");
  if (turns < 1 || turns > 1000) return absl::InvalidArgumentError("turns: 1..1000");
  if (prompt_tokens < 1 || max_tokens < 1) return absl::InvalidArgumentError("prompt/max tokens: >= 1");
  if (open_loop && rate <= 0) return absl::InvalidArgumentError("rate: > 0");
  if (max_requests < 1 || max_seconds <= 0 || timeout_s <= 0) {
    return absl::InvalidArgumentError("max_requests, max_seconds, timeout: > 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> RunBench(const BenchOptions& o) {
  absl::Status valid = o.Validate();
  if (!valid.ok()) return valid;
  ChannelOptions co = o.channel;
  co.address = o.address;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(co);
  if (!channel.ok()) return channel.status();
  auto stub = v1::Inference::NewStub(*channel);
  Results results;
  std::atomic<int> issued{0};
  Clock::time_point t0 = Clock::now();
  Clock::time_point stop_at = t0 + std::chrono::milliseconds(static_cast<int64_t>(o.max_seconds * 1000));
  std::vector<std::thread> threads;
  for (int s = 0; s < o.sessions; ++s) {
    threads.emplace_back([&, s] {
      std::mt19937 rng(1234 + s);
      grpc::ClientContext ctx;
      v1::Session session;
      grpc::Status st = stub->CreateSession(&ctx, v1::CreateSessionRequest(), &session);
      if (!st.ok()) {
        absl::MutexLock lock(&results.mu);
        ++results.errors[absl::StrCat(st.error_code())];
        return;
      }
      Clock::time_point start = Clock::now();
      for (int k = 0; k < o.turns; ++k) {
        if (o.open_loop) {
          std::this_thread::sleep_until(start + std::chrono::microseconds(static_cast<int64_t>(k / o.rate * 1e6)));
        }
        if (Clock::now() >= stop_at || issued.fetch_add(1) >= o.max_requests) break;
        RunTurn(*stub, o, session.id(), rng, results);
      }
      grpc::ClientContext del;
      v1::DeleteSessionRequest dreq;
      dreq.set_session_id(session.id());
      v1::DeleteSessionResponse dresp;
      stub->DeleteSession(&del, dreq, &dresp);
    });
  }
  for (std::thread& t : threads) t.join();
  double wall = Seconds(Clock::now() - t0);
  absl::MutexLock lock(&results.mu);
  nlohmann::json j;
  j["config"] = {{"sessions", o.sessions},     {"turns", o.turns},         {"prompt_tokens", o.prompt_tokens},
                 {"max_tokens", o.max_tokens}, {"open_loop", o.open_loop}, {"rate", o.rate}};
  j["wall_seconds"] = wall;
  j["requests_ok"] = results.ok;
  j["errors"] = results.errors;
  j["generated_tokens"] = results.tokens;
  j["tokens_per_second"] = wall > 0 ? results.tokens / wall : 0;
  j["ttft_seconds"] = results.ttft.Summary();
  j["inter_token_seconds"] = results.itl.Summary();
  j["request_latency_seconds"] = results.e2e.Summary();
  j["server_queue_seconds"] = results.server_queue.Summary();
  j["server_ttft_seconds"] = results.server_ttft.Summary();
  return j;
}

}  // namespace titand
