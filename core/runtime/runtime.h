// A loaded model ready to serve: config, weights on the device, tokenizer, optional TPTT adapter.
// The one place that turns a --model argument (a .gguf file, a Hugging Face folder or an alias of a
// bundled model) into a runtime.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "core/model/causal_lm.h"
#include "core/model/tptt_adapter.h"
#include "core/session/snapshot.h"
#include "core/tokenizer/tokenizer.h"

namespace titand {

// The default run-time weight storage of every front end (titand --weights, titan-run, the benches):
// "auto" keeps a GGUF's quantised tensors quantised on CPU (Q4_x -> int4, Q8_0/Q5/Q6 -> int8), as llama.cpp
// serves them; everything else (safetensors floats, CUDA) is dense in the model dtype. Reference comparisons
// that need the file's weights exactly as float ask for "dtype".
inline constexpr char kDefaultWeights[] = "auto";

struct LoadOptions {
  std::string model;        // path to .gguf, a Hugging Face folder, or an alias ("smollm2-135m")
  std::string tptt_dir;     // TPTT adapter folder; empty = plain model
  std::string dtype = "auto";   // "auto" (bfloat16 on CUDA, float32 on CPU) | "float32" | "bfloat16" | "float16"
  std::string device = "auto";  // "auto" (cuda:0 when LibTorch has CUDA and sees a GPU, else CPU) | "cpu" | "cuda[:N]"
  // Linear/embedding weight storage: "dtype" (dense in dtype) | "auto" | "f32" | "bf16" | "int8" | "int4"
  // (core/model/weight_loader.h).
  std::string weights = kDefaultWeights;
  int threads = 0;          // intra-op threads; 0 = AvailableCores() (affinity + cgroup quota, cpu_budget.h)
  // Adapter override (tests, ablations): every mu forced to this value (0 = softmax branch alone).
  std::optional<double> mu_override;
};

struct Runtime {
  std::string model_path;
  std::string format;       // "gguf" | "safetensors"
  ModelConfig config;
  std::unique_ptr<CausalLM> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null for a folder without tokenizer.json
  std::string adapter_id;   // identifies the adapter in session snapshots ("" = none)
  std::string model_id;     // identifies the base weights ("<name>@<hex16>", docs/adapter-format.md)
  std::shared_ptr<const TpttAdapter> adapter;  // null for a plain model
  int intra_op_threads = 1;  // LoadOptions::threads resolved: what the thread running the model should use
};

// Intra-op threads: LibTorch (and our CPU kernels) split an op across an OpenMP pool, and libgomp keeps one
// pool per thread that has run a parallel region. Once a process holds more pool threads than CPUs, libgomp
// stops spin-waiting between regions and puts its workers to sleep and wakes them (a futex) around every
// region: a decode step has thousands of regions, and running the model on a second thread made one stream
// 2.7x slower on 2 cores (BENCHMARKS.md, issue 9, session 7). So one thread computes with n intra-op threads
// and every other thread runs LibTorch serially: UseIntraOpThreads(n) gives the calling thread n (OpenMP
// and MKL) and sets the process default back to 1. LoadRuntime loads on a thread of its own (whose pool ends
// with it) and then calls it for its caller; a server calls it on the thread that runs the model.
void UseIntraOpThreads(int n);

// Host memory of forward steps is kept for reuse instead of being returned to the kernel after every
// step (glibc only; process-wide; LoadRuntime calls it): blocks below 32 MiB come from the heap and up to
// 512 MiB of freed heap top stays mapped, so a step does not page-fault and zero-fill its activations
// again. Cost: resident memory stays up to 512 MiB above the live set after a burst. No-op when the
// operator set MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES.
void RetainStepMemory();

// Resolves aliases of bundled models ($TITAND_MODELS_DIR, else <repo>/models next to the binary).
std::string ResolveModelPath(const std::string& model);
// Loads the model (on a thread of its own, with options.threads intra-op threads) and gives the calling
// thread options.threads intra-op threads (UseIntraOpThreads). Errors: NOT_FOUND (no such model file),
// FAILED_PRECONDITION (an adapter made for another base model), and what the GGUF / safetensors / adapter
// readers return for malformed files, bad flags or mismatched shapes.
absl::StatusOr<std::unique_ptr<Runtime>> LoadRuntime(const LoadOptions& options);
// What a session snapshot made by this runtime is bound to (model, adapter, shapes, dtype).
SnapshotBinding BindingFor(const Runtime& rt);

}  // namespace titand
