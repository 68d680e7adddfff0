// How many CPUs this process may actually use: the fewer of its CPU affinity mask and its cgroup CPU quota.
//
// std::thread::hardware_concurrency() counts the host's online CPUs. In a container (a Kubernetes pod with
// `resources.limits.cpu: 4` on a 64-core node) that is 64, while the kernel lets the pod run 4 CPUs' worth
// per scheduling period; 64 OpenMP threads that spin-wait between parallel regions under a 4-CPU quota are
// throttled for most of every period (decode turns 10-30x slower, docs/operations.md). `--threads 0` therefore
// means "the CPUs this process may use", computed here, and `--threads N` above it is refused.
//
// Sources (read once, no writes): sched_getaffinity(2) (taskset, cpusets, Kubernetes' static CPU manager);
// the CFS quota of the process's cgroup and of every ancestor up to the mount root — cgroup v2 `cpu.max`
// ("max 100000" = none, "400000 100000" = 4 CPUs), cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`
// (-1 = none) — found through /proc/self/cgroup and /proc/self/mountinfo (proc(5)). A quota of q CPUs counts
// as floor(q) (at least 1): a spinning OpenMP team larger than the quota is the case to avoid.
#pragma once

#include <optional>
#include <string>

namespace titand {

struct CpuBudget {
  int online = 1;                    // std::thread::hardware_concurrency()
  int affinity = 1;                  // CPUs in this process's affinity mask (= online if unknown)
  std::optional<double> quota;       // the tightest cgroup CPU quota, in CPUs (quota / period); none = no limit
  std::string quota_source;          // the file that set it ("/sys/fs/cgroup/cpu.max", ...), for logs
  int cores = 1;                     // min(affinity, floor(quota)), at least 1: what `--threads 0` uses

  // "4 (online 64, affinity 64, cgroup quota 4.00 CPUs from /sys/fs/cgroup/cpu.max)"
  std::string ToString() const;
};

// Reads the budget of the calling process. `root` prefixes every path read (/proc/self/..., the cgroup
// mounts) so tests can supply a fake tree; the affinity mask is read only when `root` is empty (with a fake
// tree it counts as every online CPU). Never fails: unreadable or malformed cgroup files count as "no quota".
CpuBudget ReadCpuBudget(const std::string& root = "");

// ReadCpuBudget() of this process, read once (the first call) and kept.
const CpuBudget& ProcessCpuBudget();

// ProcessCpuBudget().cores: what `--threads 0` means.
int AvailableCores();

}  // namespace titand
