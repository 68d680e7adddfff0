// RetainStepMemory (core/runtime/runtime.h): after it, a freed step-sized block stays mapped for the next
// step (resident memory does not drop by the block) and is reused; glibc's defaults unmap such a block
// at free (it is served by mmap), which the first assertion would catch.
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "core/runtime/runtime.h"

namespace titand {
namespace {

int64_t ResidentBytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

TEST(HostMemory, AFreedStepBlockStaysMappedForTheNextStep) {
#ifndef __GLIBC__
  GTEST_SKIP() << "glibc only";
#else
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_") || std::getenv("GLIBC_TUNABLES"))
    GTEST_SKIP() << "the environment sets glibc's allocator: RetainStepMemory leaves it alone";
  RetainStepMemory();
  constexpr size_t kBlock = 24 << 20;  // a large activation, under the 32 MiB threshold
  char* a = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(a, nullptr);
  std::memset(a, 1, kBlock);  // touch every page
  const int64_t touched = ResidentBytes();
  std::free(a);
  const int64_t after_free = ResidentBytes();
  EXPECT_GT(after_free, touched - static_cast<int64_t>(kBlock) / 2)
      << "the freed block was returned to the kernel (resident " << touched << " -> " << after_free << ")";
  char* b = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(b, nullptr);
  std::memset(b, 2, kBlock);
  EXPECT_LT(ResidentBytes(), touched + static_cast<int64_t>(kBlock) / 2) << "the next block was not the kept memory";
  std::free(b);
#endif
}

}  // namespace
}  // namespace titand
