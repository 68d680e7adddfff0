#include "core/runtime/runtime.h"

#include "core/runtime/cpu_budget.h"
#include "core/runtime/device.h"

#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <cstdlib>
#include <exception>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/common/status.h"
#include "core/model/tptt_adapter.h"
#include "core/weights/gguf_file.h"
#include "core/weights/model_identity.h"

namespace titand {
namespace {

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}
bool IsDir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string ExeDir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, n);
  return p.substr(0, p.find_last_of('/'));
}

struct Alias {
  const char* name;
  const char* file;
};
const Alias kAliases[] = {
    {"smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf"},
    {"smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"},
};

// LibTorch parallelises with OpenMP; an OpenBLAS that also starts its own threads oversubscribes the
// cores (measured: decode 3.8 -> 9.7 tokens/s on 2 cores with OpenBLAS held to one thread). OpenBLAS reads
// OPENBLAS_NUM_THREADS when it loads, before main, so the setting is made through its API if present.
void KeepBlasSingleThreaded() {
  using SetThreads = void (*)(int);
  if (auto fn = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(1);
}

}  // namespace

// A forward step allocates large activations (a 512-token prefill chunk: several MB per tensor, per
// layer) and frees them at once. glibc's defaults serve such blocks with fresh mmap()s (its threshold
// adapts between 128 KiB and 32 MiB) and give a freed heap top above 128 KiB back to the kernel, so the
// next step page-faults and zero-fills the same memory again. 32 MiB is glibc's maximum for
// M_MMAP_THRESHOLD (a larger value is refused). Measured: BENCHMARKS.md, issue 9 "host allocator".
void RetainStepMemory() {
#ifdef __GLIBC__
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_") ||
      std::getenv("GLIBC_TUNABLES")) {
    return;
  }
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}

std::string ResolveModelPath(const std::string& model) {
  for (const Alias& a : kAliases) {
    if (model != a.name) continue;
    std::vector<std::string> dirs;
    if (const char* env = std::getenv("TITAND_MODELS_DIR")) dirs.push_back(env);
    dirs.push_back(ExeDir() + "/../../models");  // build/bin/<tool> -> <repo>/models
    dirs.push_back(ExeDir() + "/../models");
    dirs.push_back("models");
    for (const std::string& d : dirs) {
      std::string p = d + "/" + a.file;
      if (Exists(p)) return p;
    }
    return dirs.front() + "/" + a.file;
  }
  return model;
}

SnapshotBinding BindingFor(const Runtime& rt) {
  SnapshotBinding b;
  b.model_id = rt.model_id;
  b.adapter_id = rt.adapter_id;
  b.num_layers = rt.config.num_layers;
  b.num_kv_heads = rt.config.num_kv_heads;
  b.head_dim = rt.config.head_dim;
  b.dtype = DtypeName(rt.model->options().dtype);
  return b;
}

void UseIntraOpThreads(int n) {
  n = std::max(1, n);
  // LibTorch sets a thread's OpenMP count to its process default on the thread's first parallel call (a
  // per-thread "lazy init", one copy in LibTorch and one in this binary): run both now, so neither resets
  // the count chosen here later.
  at::internal::lazy_init_num_threads();
  (void)at::get_num_threads();
  at::set_num_threads(n);  // this thread's OpenMP and MKL thread counts
  // at::set_num_threads also made n the process default that every other thread picks up on its first
  // parallel call: put it back to 1 from a throwaway thread (which never runs a parallel region).
  std::thread([] { at::set_num_threads(1); }).join();
}

namespace {

absl::StatusOr<std::unique_ptr<Runtime>> LoadOnThisThread(const LoadOptions& opt, int threads);

}  // namespace

absl::StatusOr<std::unique_ptr<Runtime>> LoadRuntime(const LoadOptions& opt) {
  // 0 = the CPUs this process may use (affinity and cgroup quota, core/runtime/cpu_budget.h), not the host's.
  const int threads = std::max(1, opt.threads > 0 ? opt.threads : AvailableCores());
  KeepBlasSingleThreaded();
  // Loading runs on a thread of its own with `threads` intra-op threads: its OpenMP pool ends with it, so the
  // only pool left is the one of the thread that runs the model (the caller here; titand's engine thread).
  absl::StatusOr<std::unique_ptr<Runtime>> rt;
  std::thread([&] {
    UseIntraOpThreads(threads);
    try {  // an exception must not escape a thread (std::terminate): a LibTorch error becomes a status
      rt = LoadOnThisThread(opt, threads);
    } catch (const std::exception& e) {
      rt = absl::InvalidArgumentError(absl::StrCat("cannot load ", opt.model, ": ", e.what()));
    }
  }).join();
  UseIntraOpThreads(threads);
  return rt;
}

namespace {

absl::StatusOr<std::unique_ptr<Runtime>> LoadOnThisThread(const LoadOptions& opt, int threads) {
  auto rt = std::make_unique<Runtime>();
  rt->intra_op_threads = threads;
  rt->model_path = ResolveModelPath(opt.model);
  if (!Exists(rt->model_path)) return absl::NotFoundError(absl::StrCat("model not found: ", rt->model_path));
  ModelOptions mo;
  ASSIGN_OR_RETURN(mo.device, ParseDevice(opt.device));
  ASSIGN_OR_RETURN(mo.dtype, ParseDtype(opt.dtype, mo.device));
  ASSIGN_OR_RETURN(mo.weights, ParseWeightFormat(opt.weights));

  std::unique_ptr<WeightSource> weights;
  if (IsDir(rt->model_path)) {
    rt->format = "safetensors";
    ASSIGN_OR_RETURN(rt->config, ConfigFromHfJson(rt->model_path + "/config.json"));
    ASSIGN_OR_RETURN(weights, OpenSafetensorsWeights(rt->model_path));
    ASSIGN_OR_RETURN(rt->model_id, SafetensorsBaseModelId(rt->model_path));
    if (Exists(rt->model_path + "/tokenizer.json")) {
      ASSIGN_OR_RETURN(rt->tokenizer, Tokenizer::FromHfDir(rt->model_path));
    }
  } else {
    rt->format = "gguf";
    ASSIGN_OR_RETURN(auto gguf, GgufFile::Open(rt->model_path));
    ASSIGN_OR_RETURN(rt->config, ConfigFromGguf(*gguf));
    ASSIGN_OR_RETURN(rt->tokenizer, Tokenizer::FromGguf(*gguf));
    ASSIGN_OR_RETURN(weights, OpenGgufWeights(rt->model_path, rt->config));
    ASSIGN_OR_RETURN(rt->model_id, GgufBaseModelId(*gguf));
  }
  std::optional<TpttAdapter> adapter;
  if (!opt.tptt_dir.empty()) {
    ASSIGN_OR_RETURN(adapter, ReadTpttAdapter(opt.tptt_dir, rt->config));
    if (adapter->base_model != rt->model_id) {
      return absl::FailedPreconditionError(absl::StrCat(opt.tptt_dir, ": adapter was made for base model '",
                                                        adapter->base_model, "', but ", rt->model_path, " is '",
                                                        rt->model_id, "'"));
    }
    weights = WithLora(std::move(weights), *adapter);
    rt->adapter_id = adapter->adapter_id;
  } else if (opt.mu_override) {
    return absl::InvalidArgumentError("--mu needs --tptt");
  }
  ASSIGN_OR_RETURN(rt->model, CausalLM::Create(rt->config, *weights, mo));
  weights.reset();  // unmaps the file
#ifdef __GLIBC__
  // Loading made and freed float copies of every tensor (dequantised, then packed); glibc keeps such
  // freed heap memory by default. Returning it makes resident memory reflect the packed weights.
  malloc_trim(0);
#endif
  RetainStepMemory();
  if (adapter) {
    RETURN_IF_ERROR(ApplyTptt(*rt->model, *adapter, opt.mu_override));
    rt->adapter = std::make_shared<TpttAdapter>(std::move(*adapter));
  }
  return rt;
}

}  // namespace

}  // namespace titand
