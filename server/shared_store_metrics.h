// Prometheus metrics of the shared session tier (--shared-store), refreshed from EngineStats::shared by
// the StatsPoller thread (Update is called from that one thread only). Registered always (0 without a
// shared store) so dashboards and alerts need no special case:
//   titand_shared_store_up                          gauge   1 = the last Redis call succeeded
//   titand_shared_store_pending_writes              gauge   sessions whose latest state is not in Redis yet
//   titand_shared_store_value_bytes                 gauge   size of the last state written
//   titand_shared_store_writes_total{result}        counter ok | rejected (stale/lease) | error (unreachable)
//   titand_shared_store_fetches_total               counter states read from Redis
//   titand_shared_store_bytes_total{direction}      counter written | fetched
//   titand_shared_store_lease_conflicts_total       counter turns refused: the session's lease was held
//   titand_shared_store_leases_lost_total           counter renewals that found the lease gone
//   titand_shared_store_seconds_total{op}           counter time spent: serialize | write | fetch
#pragma once

#include "core/engine/engine_types.h"

namespace prometheus {
class Registry;
template <typename T> class Family;
class Counter;
class Gauge;
}  // namespace prometheus

namespace titand {

class SharedStoreMetrics {
 public:
  explicit SharedStoreMetrics(prometheus::Registry& registry);
  void Update(const SharedStoreStats& s);

 private:
  prometheus::Gauge& up_;
  prometheus::Gauge& pending_;
  prometheus::Gauge& value_bytes_;
  prometheus::Family<prometheus::Counter>& writes_;
  prometheus::Counter& fetches_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Counter& conflicts_;
  prometheus::Counter& lost_;
  prometheus::Family<prometheus::Counter>& seconds_;
  SharedStoreStats last_;  // totals already added to the counters
};

}  // namespace titand
