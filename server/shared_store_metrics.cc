#include "server/shared_store_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace titand {
namespace {

prometheus::Gauge& Gauge(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}
prometheus::Counter& Counter(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}
// Counters move by the growth of a total (totals never shrink).
void Bump(prometheus::Counter& c, int64_t now, int64_t before) {
  if (now > before) c.Increment(static_cast<double>(now - before));
}

}  // namespace

SharedStoreMetrics::SharedStoreMetrics(prometheus::Registry& r)
    : up_(Gauge(r, "titand_shared_store_up", "1 when the last call to the shared session store (Redis) succeeded.")),
      pending_(Gauge(r, "titand_shared_store_pending_writes",
                     "Sessions whose latest state is not yet in the shared store (retried).")),
      value_bytes_(Gauge(r, "titand_shared_store_value_bytes", "Bytes of the last session state written.")),
      writes_(prometheus::BuildCounter()
                  .Name("titand_shared_store_writes_total")
                  .Help("Session state writes by result: ok, rejected (stale or lease lost), error (unreachable).")
                  .Register(r)),
      fetches_(Counter(r, "titand_shared_store_fetches_total", "Session states read from the shared store.")),
      bytes_(prometheus::BuildCounter()
                 .Name("titand_shared_store_bytes_total")
                 .Help("Session state bytes moved to/from the shared store.")
                 .Register(r)),
      conflicts_(Counter(r, "titand_shared_store_lease_conflicts_total",
                         "Turns refused because another turn held the session's lease.")),
      lost_(Counter(r, "titand_shared_store_leases_lost_total", "Lease renewals that found the lease gone.")),
      seconds_(prometheus::BuildCounter()
                   .Name("titand_shared_store_seconds_total")
                   .Help("Seconds spent on the shared store by operation: serialize (states for writes), write "
                         "(round trips of writes), fetch (round trips of reads).")
                   .Register(r)) {
  for (const char* k : {"serialize", "write", "fetch"}) seconds_.Add({{"op", k}});
  for (const char* k : {"ok", "rejected", "error"}) writes_.Add({{"result", k}});
  for (const char* k : {"written", "fetched"}) bytes_.Add({{"direction", k}});
}

void SharedStoreMetrics::Update(const SharedStoreStats& s) {
  up_.Set(s.enabled && s.up ? 1 : 0);
  pending_.Set(static_cast<double>(s.pending_writes));
  value_bytes_.Set(static_cast<double>(s.last_value_bytes));
  Bump(writes_.Add({{"result", "ok"}}), s.writes_ok, last_.writes_ok);
  Bump(writes_.Add({{"result", "rejected"}}), s.writes_rejected, last_.writes_rejected);
  Bump(writes_.Add({{"result", "error"}}), s.write_errors, last_.write_errors);
  Bump(fetches_, s.fetches, last_.fetches);
  Bump(bytes_.Add({{"direction", "written"}}), s.bytes_written, last_.bytes_written);
  Bump(bytes_.Add({{"direction", "fetched"}}), s.bytes_fetched, last_.bytes_fetched);
  Bump(conflicts_, s.lease_conflicts, last_.lease_conflicts);
  Bump(lost_, s.leases_lost, last_.leases_lost);
  auto add = [](prometheus::Counter& c, double now, double before) {
    if (now > before) c.Increment(now - before);
  };
  add(seconds_.Add({{"op", "serialize"}}), s.serialize_seconds, last_.serialize_seconds);
  add(seconds_.Add({{"op", "write"}}), s.commit_seconds, last_.commit_seconds);
  add(seconds_.Add({{"op", "fetch"}}), s.fetch_seconds, last_.fetch_seconds);
  last_ = s;
}

}  // namespace titand
