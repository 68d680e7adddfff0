#include "client/titanctl/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace titand {

void SampleStats::Merge(const SampleStats& other) {
  values_.insert(values_.end(), other.values_.begin(), other.values_.end());
}

double SampleStats::Percentile(double p) const {
  if (values_.empty()) return 0;
  std::vector<double> v = values_;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  if (rank == 0) rank = 1;
  return v[std::min(rank, v.size()) - 1];
}

nlohmann::json SampleStats::Summary() const {
  nlohmann::json j;
  j["count"] = values_.size();
  if (values_.empty()) return j;
  j["mean"] = std::accumulate(values_.begin(), values_.end(), 0.0) / values_.size();
  j["min"] = Percentile(0);
  j["p50"] = Percentile(50);
  j["p90"] = Percentile(90);
  j["p99"] = Percentile(99);
  j["max"] = Percentile(100);
  return j;
}

}  // namespace titand
