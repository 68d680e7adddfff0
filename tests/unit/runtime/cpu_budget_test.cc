// ReadCpuBudget on fake /proc + cgroup trees: cgroup v2 and v1 quotas, nesting (the tightest ancestor wins),
// no limit, malformed files, and a container's namespaced view. Expected values are the quotas written into
// the files (quota / period, floored), i.e. what the kernel's CFS bandwidth control allows (cgroup-v2.rst,
// "cpu.max"; sched-bwc.rst for v1).
#include "core/runtime/cpu_budget.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace titand {
namespace {

namespace fs = std::filesystem;

class FakeRoot {
 public:
  FakeRoot() {
    root_ = fs::temp_directory_path() / ("cpu_budget_" + std::to_string(getpid()) + "_" + std::to_string(n_++));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  ~FakeRoot() { fs::remove_all(root_); }
  void Write(const std::string& rel, const std::string& text) {
    fs::path p = root_ / rel.substr(1);
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string path() const { return root_.string(); }

 private:
  static inline int n_ = 0;
  fs::path root_;
};

int Online() { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

constexpr char kV2Mount[] = "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

// The budget of a process in cgroup v2 group `group` ("/" or "/x") whose cpu.max reads `cpu_max`.
CpuBudget V2Budget(const std::string& group, const std::string& cpu_max) {
  FakeRoot r;
  r.Write("/proc/self/mountinfo", kV2Mount);
  r.Write("/proc/self/cgroup", "0::" + group + "\n");
  r.Write("/sys/fs/cgroup" + (group == "/" ? std::string() : group) + "/cpu.max", cpu_max);
  return ReadCpuBudget(r.path());
}

TEST(CpuBudget, CgroupV2QuotaOfTheProcessCgroup) {
  FakeRoot r;
  r.Write("/proc/self/mountinfo", std::string("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n") + kV2Mount);
  r.Write("/proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
  r.Write("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "150000 100000\n");  // 1.5 CPUs
  CpuBudget b = ReadCpuBudget(r.path());
  ASSERT_TRUE(b.quota.has_value());
  EXPECT_DOUBLE_EQ(*b.quota, 1.5);
  EXPECT_EQ(b.quota_source, "/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max");
  EXPECT_EQ(b.cores, 1);  // floor: a spinning team must fit the quota
  EXPECT_NE(b.ToString().find("cgroup quota 1.50 CPUs"), std::string::npos) << b.ToString();
}

TEST(CpuBudget, TheTightestAncestorBinds) {
  FakeRoot r;
  r.Write("/proc/self/mountinfo", kV2Mount);
  r.Write("/proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
  r.Write("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n");  // none on the container
  r.Write("/sys/fs/cgroup/kubepods/pod1/cpu.max", "100000 100000\n");  // 1 CPU on the pod
  r.Write("/sys/fs/cgroup/kubepods/cpu.max", "800000 100000\n");
  CpuBudget b = ReadCpuBudget(r.path());
  ASSERT_TRUE(b.quota.has_value());
  EXPECT_DOUBLE_EQ(*b.quota, 1.0);
  EXPECT_EQ(b.quota_source, "/sys/fs/cgroup/kubepods/pod1/cpu.max");
  EXPECT_EQ(b.cores, 1);
}

TEST(CpuBudget, NoLimitMeansEveryAllowedCpu) {
  CpuBudget b = V2Budget("/", "max 100000\n");
  EXPECT_FALSE(b.quota.has_value());
  EXPECT_EQ(b.cores, Online());
  // nothing readable at all (no /proc, no cgroup fs) is also "no limit", not an error
  FakeRoot empty;
  EXPECT_EQ(ReadCpuBudget(empty.path()).cores, Online());
}

TEST(CpuBudget, QuotaBelowOneCpuStillGivesOneThread) {
  CpuBudget b = V2Budget("/", "50000 100000\n");
  ASSERT_TRUE(b.quota.has_value());
  EXPECT_DOUBLE_EQ(*b.quota, 0.5);
  EXPECT_EQ(b.cores, 1);
}

TEST(CpuBudget, CgroupV1CpuController) {
  FakeRoot r;
  // v1 with cpu,cpuacct co-mounted; the unified (v2) hierarchy mounted too but without a limit
  r.Write("/proc/self/mountinfo",
          "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
          "32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
          "33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
  r.Write("/proc/self/cgroup", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/docker/abc\n");
  r.Write("/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n");
  r.Write("/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  r.Write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");  // root: unlimited
  r.Write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  r.Write("/sys/fs/cgroup/memory/docker/abc/cpu.cfs_quota_us", "100000\n");  // not the cpu hierarchy: ignored
  CpuBudget b = ReadCpuBudget(r.path());
  ASSERT_TRUE(b.quota.has_value());
  EXPECT_DOUBLE_EQ(*b.quota, 3.0);
  EXPECT_EQ(b.quota_source, "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us");
  EXPECT_EQ(b.cores, std::min(Online(), 3));
}

TEST(CpuBudget, NamespacedContainerViewAndMountRootPrefix) {
  // Inside a container the cgroup namespace shows "0::/" and the mount root "/": the limit is on the mount
  // point itself. With a mount root of "/kubepods/pod1" the process path is made relative to it.
  EXPECT_EQ(V2Budget("/", "200000 100000\n").cores, std::min(Online(), 2));
  FakeRoot b;
  b.Write("/proc/self/mountinfo", "30 25 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
  b.Write("/proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
  b.Write("/sys/fs/cgroup/ctr/cpu.max", "100000 100000\n");
  CpuBudget bb = ReadCpuBudget(b.path());
  ASSERT_TRUE(bb.quota.has_value());
  EXPECT_EQ(bb.quota_source, "/sys/fs/cgroup/ctr/cpu.max");
  EXPECT_EQ(bb.cores, 1);
}

TEST(CpuBudget, MalformedFilesCountAsNoLimit) {
  for (const char* text : {"", "garbage\n", "100000\n", "-5 100000\n", "100000 0\n", "abc 100000\n"}) {
    CpuBudget b = V2Budget("/x", text);
    EXPECT_FALSE(b.quota.has_value()) << "'" << text << "'";
    EXPECT_EQ(b.cores, Online());
  }
  FakeRoot r;  // a mountinfo line without the " - " separator, a cgroup line without fields
  r.Write("/proc/self/mountinfo", "garbage line\n30 25\n");
  r.Write("/proc/self/cgroup", "nonsense\n");
  EXPECT_EQ(ReadCpuBudget(r.path()).cores, Online());
}

TEST(CpuBudget, TheRealProcessIsWithinItsAffinity) {
  // This machine's own budget: never more than its affinity mask, which never exceeds the online CPUs.
  CpuBudget b = ReadCpuBudget();
  EXPECT_GE(b.cores, 1);
  EXPECT_LE(b.cores, b.affinity);
  EXPECT_LE(b.affinity, b.online);
  EXPECT_EQ(AvailableCores(), b.cores);
}

}  // namespace
}  // namespace titand
