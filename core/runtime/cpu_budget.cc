#include "core/runtime/cpu_budget.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace titand {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A cgroup hierarchy: where it is mounted and which cgroup path its mount root is (mountinfo fields 4 and 5).
struct Mount {
  std::string root, point;
};

// The cgroup2 mount (v2 == true) or the v1 mount carrying the "cpu" controller, from /proc/self/mountinfo.
std::optional<Mount> FindMount(const std::string& mountinfo, bool v2) {
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    // "36 35 0:30 / /sys/fs/cgroup/cpu rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct"
    const size_t dash = line.find(" - ");
    if (dash == absl::string_view::npos) continue;
    std::vector<absl::string_view> head = absl::StrSplit(line.substr(0, dash), ' ', absl::SkipEmpty());
    std::vector<absl::string_view> tail = absl::StrSplit(line.substr(dash + 3), ' ', absl::SkipEmpty());
    if (head.size() < 5 || tail.size() < 3) continue;
    if (v2 ? tail[0] != "cgroup2" : tail[0] != "cgroup") continue;
    if (!v2) {
      std::vector<absl::string_view> opts = absl::StrSplit(tail[2], ',');
      if (std::find(opts.begin(), opts.end(), "cpu") == opts.end()) continue;
    }
    return Mount{std::string(head[3]), std::string(head[4])};
  }
  return std::nullopt;
}

// This process's cgroup path in the v2 hierarchy (v2 == true: the "0::" line) or in the v1 hierarchy with
// the "cpu" controller, from /proc/self/cgroup.
std::optional<std::string> CgroupPath(const std::string& self_cgroup, bool v2) {
  for (absl::string_view line : absl::StrSplit(self_cgroup, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    if (v2) {
      if (f[0] == "0" && f[1].empty()) return std::string(f[2]);
    } else {
      std::vector<absl::string_view> ctl = absl::StrSplit(f[1], ',');
      if (std::find(ctl.begin(), ctl.end(), "cpu") != ctl.end()) return std::string(f[2]);
    }
  }
  return std::nullopt;
}

// The quota one cgroup directory sets, in CPUs; none when it sets none or its files are unreadable.
std::optional<double> QuotaAt(const std::string& dir, bool v2) {
  if (v2) {
    std::optional<std::string> s = ReadFile(dir + "/cpu.max");
    if (!s) return std::nullopt;
    std::vector<absl::string_view> f = absl::StrSplit(absl::StripAsciiWhitespace(*s), ' ', absl::SkipEmpty());
    double quota, period;
    if (f.size() != 2 || f[0] == "max" || !absl::SimpleAtod(f[0], &quota) || !absl::SimpleAtod(f[1], &period) ||
        quota <= 0 || period <= 0) {
      return std::nullopt;
    }
    return quota / period;
  }
  std::optional<std::string> q = ReadFile(dir + "/cpu.cfs_quota_us");
  std::optional<std::string> p = ReadFile(dir + "/cpu.cfs_period_us");
  double quota, period;
  if (!q || !p || !absl::SimpleAtod(absl::StripAsciiWhitespace(*q), &quota) ||
      !absl::SimpleAtod(absl::StripAsciiWhitespace(*p), &period) || quota <= 0 || period <= 0) {
    return std::nullopt;  // -1 = no quota
  }
  return quota / period;
}

// The tightest quota from the process's cgroup up to the hierarchy's mount root (a parent's limit binds its
// children too). `file` receives the file that set it.
std::optional<double> HierarchyQuota(const std::string& root, const std::string& self_cgroup,
                                     const std::string& mountinfo, bool v2, std::string* file) {
  std::optional<Mount> m = FindMount(mountinfo, v2);
  std::optional<std::string> path = CgroupPath(self_cgroup, v2);
  if (!m || !path) return std::nullopt;
  // The cgroup path relative to the mount: inside a container with a cgroup namespace both are "/"; a path
  // outside the mount's root (e.g. "/../..") means we cannot see our own cgroup: use the mount point.
  std::string rel;
  if (m->root == "/") {
    rel = *path;
  } else if (absl::StartsWith(*path, m->root)) {
    rel = path->substr(m->root.size());
  }
  if (rel.find("..") != std::string::npos) rel.clear();
  std::string dir = root + m->point + (rel == "/" ? "" : rel);
  const std::string top = root + m->point;
  std::optional<double> best;
  while (true) {
    if (std::optional<double> q = QuotaAt(dir, v2); q && (!best || *q < *best)) {
      best = q;
      *file = dir.substr(root.size()) + (v2 ? "/cpu.max" : "/cpu.cfs_quota_us");
    }
    if (dir.size() <= top.size()) break;
    const size_t slash = dir.find_last_of('/');
    if (slash == std::string::npos || slash < top.size()) {
      dir = top;
    } else {
      dir = dir.substr(0, slash);
    }
  }
  return best;
}

}  // namespace

std::string CpuBudget::ToString() const {
  std::string s = absl::StrCat(cores, " (online ", online, ", affinity ", affinity);
  if (quota) absl::StrAppend(&s, absl::StrFormat(", cgroup quota %.2f CPUs from %s", *quota, quota_source));
  return s + ")";
}

CpuBudget ReadCpuBudget(const std::string& root) {
  CpuBudget b;
  b.online = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  b.affinity = b.online;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (root.empty() && sched_getaffinity(0, sizeof(set), &set) == 0) b.affinity = std::max(1, CPU_COUNT(&set));
  const std::string self_cgroup = ReadFile(root + "/proc/self/cgroup").value_or("");
  const std::string mountinfo = ReadFile(root + "/proc/self/mountinfo").value_or("");
  for (bool v2 : {true, false}) {
    std::string file;
    std::optional<double> q = HierarchyQuota(root, self_cgroup, mountinfo, v2, &file);
    if (q && (!b.quota || *q < *b.quota)) {
      b.quota = q;
      b.quota_source = file;
    }
  }
  b.cores = b.affinity;
  if (b.quota) b.cores = std::min(b.cores, std::max(1, static_cast<int>(std::floor(*b.quota + 1e-9))));
  return b;
}

const CpuBudget& ProcessCpuBudget() {
  static const CpuBudget budget = ReadCpuBudget();
  return budget;
}

int AvailableCores() { return ProcessCpuBudget().cores; }

}  // namespace titand
