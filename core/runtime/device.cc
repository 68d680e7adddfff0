#include "core/runtime/device.h"

#include <ATen/detail/CUDAHooksInterface.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"

#ifndef TITAND_TORCH_CUDA
#define TITAND_TORCH_CUDA ""
#endif

namespace titand {

bool BuiltWithCuda() { return TITAND_TORCH_CUDA[0] != '\0'; }
const char* TorchCudaVersion() { return TITAND_TORCH_CUDA; }

namespace {

absl::Status NoCuda(const std::string& asked) {
  if (!BuiltWithCuda()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--device ", asked, ": this titand was built against a CPU-only LibTorch (install a CUDA torch wheel "
        "into .venv and rebuild)"));
  }
  const char* vis = std::getenv("CUDA_VISIBLE_DEVICES");
  return absl::FailedPreconditionError(absl::StrCat(
      "--device ", asked, ": LibTorch has CUDA ", TorchCudaVersion(), " but sees no GPU (driver missing or no "
      "device visible", vis != nullptr ? absl::StrCat("; CUDA_VISIBLE_DEVICES=", vis) : std::string(), ")"));
}

}  // namespace

absl::StatusOr<at::Device> ParseDevice(const std::string& name) {
  if (name == "cpu") return at::Device(at::kCPU);
  const bool have = at::hasCUDA();
  if (name == "auto") return have ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (name != "cuda" && !absl::StartsWith(name, "cuda:")) {
    return absl::InvalidArgumentError(absl::StrCat("unknown device '", name, "' (auto | cpu | cuda | cuda:N)"));
  }
  int index = 0;
  if (name.size() > 4) {
    if (!absl::SimpleAtoi(name.substr(5), &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad device '", name, "': expected cuda:N with N >= 0"));
    }
  }
  if (!have) return NoCuda(name);
  const int count = static_cast<int>(at::detail::getCUDAHooks().getNumGPUs());
  if (index >= count) {
    return absl::InvalidArgumentError(absl::StrCat("--device ", name, ": only ", count, " CUDA device(s) visible"));
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name, at::Device device) {
  if (name == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "' (auto | float32 | bfloat16 | float16)"));
}

const char* DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return "float32";
  }
}

}  // namespace titand
