#include "server/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "server/proto_convert.h"

namespace titand {
namespace {

using prometheus::Histogram;

// Latency buckets in seconds: 1 ms .. 60 s, roughly x2.5 per step.
Histogram::BucketBoundaries LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
          0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0};
}

Histogram& MakeHistogram(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, LatencyBuckets());
}

prometheus::Counter& MakeCounter(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

prometheus::Gauge& MakeGauge(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

ServerMetrics::ServerMetrics(prometheus::Registry& r)
    : ttft_(MakeHistogram(r, "titand_time_to_first_token_seconds",
                          "Seconds from admission to the first generated token.")),
      itl_(MakeHistogram(r, "titand_inter_token_latency_seconds",
                         "Seconds between consecutive streamed tokens of one request.")),
      latency_(MakeHistogram(r, "titand_request_latency_seconds",
                             "Seconds from admission to the end of a request.")),
      queue_(MakeHistogram(r, "titand_queue_time_seconds",
                           "Seconds from admission to the first scheduling step.")),
      prompt_tokens_(MakeCounter(r, "titand_prompt_tokens_total", "Prompt tokens processed.")),
      generation_tokens_(MakeCounter(r, "titand_generation_tokens_total", "Tokens generated.")),
      requests_(prometheus::BuildCounter()
                    .Name("titand_requests_total")
                    .Help("Generate requests by finish reason and final gRPC code.")
                    .Register(r)),
      running_(MakeGauge(r, "titand_requests_running", "Requests in the running batch.")),
      waiting_(MakeGauge(r, "titand_requests_waiting", "Requests waiting in the admission queue.")),
      batch_size_(MakeGauge(r, "titand_batch_size", "Sequences in the last engine step.")),
      sessions_(prometheus::BuildGauge().Name("titand_sessions").Help("Sessions by storage tier.").Register(r)),
      state_bytes_(prometheus::BuildGauge()
                       .Name("titand_session_state_bytes")
                       .Help("Bytes of session state by storage tier.")
                       .Register(r)),
      disk_writes_(MakeCounter(r, "titand_session_disk_writes_total", "Session snapshot files written.")),
      writes_pending_(MakeGauge(r, "titand_session_writes_pending",
                                "Ended session turns whose snapshot write-through is queued or running.")),
      disk_errors_(prometheus::BuildCounter()
                       .Name("titand_session_disk_errors_total")
                       .Help("Failed session snapshot file operations by op (write, read, remove).")
                       .Register(r)) {
  // Create the label sets people alert on, so that they exist (at 0) before the first request.
  for (const char* tier : {"device", "host", "disk"}) sessions_.Add({{"tier", tier}});
  for (const char* tier : {"device", "host"}) state_bytes_.Add({{"tier", tier}});
  for (const char* op : {"write", "read", "remove"}) disk_errors_.Add({{"op", op}});
}

void ServerMetrics::RecordTokens(int n, double gap_seconds) {
  if (n <= 0) return;
  generation_tokens_.Increment(n);
  if (gap_seconds < 0) return;
  // n tokens that arrived together after `gap`: spread the gap evenly over them.
  for (int i = 0; i < n; ++i) itl_.Observe(gap_seconds / n);
}

void ServerMetrics::RecordFinished(const StreamChunk& c, const std::string& code) {
  requests_.Add({{"finish_reason", FinishReasonName(c.finish)}, {"code", code}}).Increment();
  prompt_tokens_.Increment(static_cast<double>(c.usage.prompt_tokens));
  latency_.Observe(c.timing.total_seconds);
  queue_.Observe(c.timing.queue_seconds);
  if (c.usage.completion_tokens > 0) ttft_.Observe(c.timing.ttft_seconds);
}

void ServerMetrics::RecordRejected(const std::string& code) {
  requests_.Add({{"finish_reason", "rejected"}, {"code", code}}).Increment();
}

void ServerMetrics::UpdateStats(const EngineStats& s) {
  running_.Set(static_cast<double>(s.running));
  waiting_.Set(static_cast<double>(s.waiting));
  batch_size_.Set(static_cast<double>(s.last_batch_size));
  sessions_.Add({{"tier", "device"}}).Set(static_cast<double>(s.sessions_device));
  sessions_.Add({{"tier", "host"}}).Set(static_cast<double>(s.sessions_host));
  sessions_.Add({{"tier", "disk"}}).Set(static_cast<double>(s.sessions_disk));
  state_bytes_.Add({{"tier", "device"}}).Set(static_cast<double>(s.resident_state_bytes));
  state_bytes_.Add({{"tier", "host"}}).Set(static_cast<double>(s.host_state_bytes));
  writes_pending_.Set(static_cast<double>(s.session_writes_pending));
  // The store's counters are cumulative: add what grew since the last poll.
  auto grow = [](prometheus::Counter& c, int64_t now, int64_t before) {
    if (now > before) c.Increment(static_cast<double>(now - before));
  };
  std::lock_guard<std::mutex> lock(last_mu_);
  grow(disk_writes_, s.disk_writes, last_.disk_writes);
  grow(disk_errors_.Add({{"op", "write"}}), s.disk_write_errors, last_.disk_write_errors);
  grow(disk_errors_.Add({{"op", "read"}}), s.disk_read_errors, last_.disk_read_errors);
  grow(disk_errors_.Add({{"op", "remove"}}), s.disk_remove_errors, last_.disk_remove_errors);
  last_ = s;
}

}  // namespace titand
