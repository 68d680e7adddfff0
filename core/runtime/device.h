// Device and dtype selection for the runtime (`--device`, `--dtype`), shared by titan-run and titand.
#pragma once

#include <string>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"

namespace titand {

// "auto" -> cuda:0 when this LibTorch has CUDA and a device is visible, else cpu; "cpu"; "cuda" (= cuda:0);
// "cuda:N". Errors: InvalidArgument for a malformed name or N out of range; FailedPrecondition when CUDA is
// asked for but the LibTorch build is CPU-only, or is a CUDA build that sees no device (the message says
// which, and names CUDA_VISIBLE_DEVICES when it is set).
absl::StatusOr<at::Device> ParseDevice(const std::string& name);

// "auto" (bfloat16 on CUDA, float32 on CPU), "float32"|"fp32", "bfloat16"|"bf16", "float16"|"fp16" -> the
// dtype of weights and activations. Session memory S is float32 whatever this is (REFERENCE.md s.1: the
// recurrence accumulates in fp32). InvalidArgument for any other name.
absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name, at::Device device);

// The canonical name of a compute dtype ("float32", "bfloat16", "float16"), as written in snapshots.
const char* DtypeName(at::ScalarType t);

// Whether this binary was compiled against a CUDA build of LibTorch, and its CUDA version ("" if not).
bool BuiltWithCuda();
const char* TorchCudaVersion();

}  // namespace titand
