// Percentile summary of a sample (bench output): nearest-rank percentiles over the sorted values.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

namespace titand {

class SampleStats {
 public:
  void Add(double v) { values_.push_back(v); }
  void Merge(const SampleStats& other);
  size_t count() const { return values_.size(); }
  // p in [0, 100]; nearest rank: the ceil(p/100 * n)-th smallest value (p = 0 -> the smallest).
  double Percentile(double p) const;
  // {"count", "mean", "min", "p50", "p90", "p99", "max"} (only "count" when empty).
  nlohmann::json Summary() const;

 private:
  std::vector<double> values_;
};

}  // namespace titand
