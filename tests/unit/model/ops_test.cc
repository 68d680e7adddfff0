// RMSNorm (core/model/ops.h) against the formula as Hugging Face writes it, in double precision:
// y = w * x / sqrt(mean(x^2) + eps). The float32 CPU row kernel and the LibTorch paths (bf16) must both
// agree with it; a row normalises bit-identically alone and inside a batch.
#include "core/model/ops.h"

#include <gtest/gtest.h>

namespace titand {
namespace {

at::Tensor Reference(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor xd = x.to(at::kDouble);
  at::Tensor y = xd / at::sqrt(xd.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return w.defined() ? y * w.to(at::kDouble) : y;
}

double MaxRelErr(const at::Tensor& got, const at::Tensor& want) {
  return ((got.to(at::kDouble) - want).abs().max() / want.abs().max()).item<double>();
}

TEST(RmsNorm, Float32RowKernelMatchesTheFormula) {
  at::manual_seed(3);
  for (int64_t d : {1, 7, 64, 576}) {
    for (int64_t rows : {1, 3, 200}) {
      at::Tensor x = at::randn({rows, d}) * 3;
      at::Tensor w = at::randn({d});
      for (double eps : {1e-6, 1e-5}) {
        EXPECT_LT(MaxRelErr(RmsNorm(x, w, eps), Reference(x, w, eps)), 1e-6) << d << " x " << rows;
        EXPECT_LT(MaxRelErr(RmsNormNoWeight(x, eps), Reference(x, at::Tensor(), eps)), 1e-6) << d;
        EXPECT_EQ(RmsNorm(x, w, eps).scalar_type(), at::kFloat);
      }
    }
  }
  // Tiny rows: eps dominates, no division by zero.
  at::Tensor z = at::zeros({2, 8});
  EXPECT_TRUE(at::equal(RmsNorm(z, at::ones({8}), 1e-6), z));
}

TEST(RmsNorm, NonContiguousAndThreeDimensionalInputs) {
  at::manual_seed(4);
  at::Tensor base = at::randn({4, 9, 64});
  at::Tensor x = base.transpose(0, 1);  // [9, 4, 64], not contiguous
  ASSERT_FALSE(x.is_contiguous());
  at::Tensor w = at::rand({64}) + 0.5;
  at::Tensor y = RmsNorm(x, w, 1e-6);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_LT(MaxRelErr(y, Reference(x, w, 1e-6)), 1e-6);
  EXPECT_LT(MaxRelErr(RmsNormNoWeight(x, 1e-6), Reference(x, at::Tensor(), 1e-6)), 1e-6);
}

TEST(RmsNorm, ARowAloneEqualsTheSameRowInABatch) {
  at::manual_seed(5);
  at::Tensor x = at::randn({64, 576});
  at::Tensor w = at::randn({576});
  at::Tensor batch = RmsNorm(x, w, 1e-5);
  for (int64_t r : {0, 17, 63}) {
    EXPECT_TRUE(at::equal(RmsNorm(x.narrow(0, r, 1), w, 1e-5), batch.narrow(0, r, 1))) << "row " << r;
  }
}

TEST(RmsNorm, Bfloat16KeepsTheLibTorchPathWithinItsPrecision) {
  at::manual_seed(6);
  at::Tensor x = at::randn({5, 128}).to(at::kBFloat16);
  at::Tensor w = at::randn({128}).to(at::kBFloat16);
  at::Tensor y = RmsNorm(x, w, 1e-6);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  EXPECT_LT(MaxRelErr(y, Reference(x, w, 1e-6)), 2e-2);
}

}  // namespace
}  // namespace titand
