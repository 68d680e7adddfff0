// Prometheus metrics of the server. The registry is passed in (no global); the HTTP exposer lives in
// main. Every method is thread-safe and cheap (prometheus-cpp counters/histograms: atomics and one short
// lock), so the engine callback may record per-token metrics; gauges come from EngineStats, refreshed by
// a StatsPoller thread (never the engine thread).
//
//   titand_time_to_first_token_seconds   histogram  admission -> first token
//   titand_inter_token_latency_seconds   histogram  gap between consecutive streamed tokens
//   titand_request_latency_seconds       histogram  admission -> end (end to end, as the engine sees it)
//   titand_queue_time_seconds            histogram  admission -> first scheduled
//   titand_prompt_tokens_total           counter
//   titand_generation_tokens_total       counter
//   titand_requests_total{finish_reason, code}   counter; finish_reason "rejected" when never admitted
//   titand_requests_running / _waiting / titand_batch_size            gauges
//   titand_sessions{tier}, titand_session_state_bytes{tier}          gauges (tier: device|host|disk)
//   titand_session_disk_writes_total                 counter  session snapshot files written
//   titand_session_writes_pending                    gauge    ended turns waiting for their write-through
//   titand_session_disk_errors_total{op}             counter  failed snapshot write | read | remove
#pragma once

#include <mutex>
#include <string>

#include "core/engine/engine_types.h"

namespace prometheus {
class Registry;
template <typename T> class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace titand {

class ServerMetrics {
 public:
  explicit ServerMetrics(prometheus::Registry& registry);

  // `n` tokens streamed; `gap_seconds` since the previous tokens of the same request (< 0: first tokens).
  void RecordTokens(int n, double gap_seconds);
  // The final chunk of an admitted request and the gRPC code its stream ends with.
  void RecordFinished(const StreamChunk& final_chunk, const std::string& code);
  // A request refused before admission (bad argument, queue full, draining ...).
  void RecordRejected(const std::string& code);
  void UpdateStats(const EngineStats& stats);

 private:
  prometheus::Histogram& ttft_;
  prometheus::Histogram& itl_;
  prometheus::Histogram& latency_;
  prometheus::Histogram& queue_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& batch_size_;
  prometheus::Family<prometheus::Gauge>& sessions_;
  prometheus::Family<prometheus::Gauge>& state_bytes_;
  prometheus::Counter& disk_writes_;
  prometheus::Gauge& writes_pending_;
  prometheus::Family<prometheus::Counter>& disk_errors_;
  std::mutex last_mu_;
  EngineStats last_;  // cumulative store counters already added to the Prometheus counters
};

}  // namespace titand
