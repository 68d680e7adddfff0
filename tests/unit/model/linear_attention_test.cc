// Linear-attention operators: chunked (WY) form vs per-token recurrence vs an explicit-matrix
// fp64 reference, causality, carried state, feature maps, batched decode.
#include "core/model/linear_attention.h"

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "core/model/feature_map.h"

namespace titand {
namespace {

constexpr LinearOperator kAllOps[] = {LinearOperator::kLinear, LinearOperator::kGated,
                                      LinearOperator::kDelta, LinearOperator::kGatedDelta};

struct Inputs {
  at::Tensor q, k, v, beta, alpha;  // [H, T, d], [H, T, d], [H, T, dv], [H, T], [H, T]
};

// Realistic inputs: q, k after phi = tptt (unit rows), beta and alpha from a sigmoid.
Inputs MakeInputs(int64_t h, int64_t t, int64_t d, int64_t dv, at::ScalarType dtype,
                  uint64_t seed) {
  at::manual_seed(seed);
  Inputs in;
  in.q = ApplyFeatureMap(FeatureMap::kTptt, at::randn({h, t, d})).to(dtype);
  in.k = ApplyFeatureMap(FeatureMap::kTptt, at::randn({h, t, d})).to(dtype);
  in.v = at::randn({h, t, dv}).to(dtype);
  in.beta = at::sigmoid(at::randn({h, t})).to(dtype);
  in.alpha = at::sigmoid(at::randn({h, t}) + 2.0).to(dtype);
  return in;
}

// Explicit-matrix fp64 reference: S_t = a_t (I - b_t k k^T) S_{t-1} + b_t k v^T (and the simpler forms).
std::pair<at::Tensor, at::Tensor> Naive(LinearOperator op, const Inputs& in, at::Tensor s0) {
  const int64_t h = in.q.size(0), t = in.q.size(1), d = in.q.size(2), dv = in.v.size(2);
  at::Tensor q = in.q.to(at::kDouble), k = in.k.to(at::kDouble), v = in.v.to(at::kDouble);
  at::Tensor b = in.beta.to(at::kDouble), a = in.alpha.to(at::kDouble);
  at::Tensor out = at::zeros({h, t, dv}, at::kDouble);
  at::Tensor s_all = s0.to(at::kDouble).clone();
  const at::Tensor eye = at::eye(d, at::kDouble);
  for (int64_t hh = 0; hh < h; ++hh) {
    at::Tensor s = s_all[hh].clone();
    for (int64_t tt = 0; tt < t; ++tt) {
      at::Tensor kt = k[hh][tt].view({d, 1}), vt = v[hh][tt].view({1, dv});
      const double bt = b[hh][tt].item<double>(), at_ = a[hh][tt].item<double>();
      switch (op) {
        case LinearOperator::kLinear: s = s + at::mm(kt, vt); break;
        case LinearOperator::kGated: s = at_ * s + at::mm(kt, vt); break;
        case LinearOperator::kDelta:
          s = at::mm(eye - bt * at::mm(kt, kt.t()), s) + bt * at::mm(kt, vt);
          break;
        case LinearOperator::kGatedDelta:
          s = at_ * at::mm(eye - bt * at::mm(kt, kt.t()), s) + bt * at::mm(kt, vt);
          break;
      }
      out[hh][tt].copy_(at::mv(s.t(), q[hh][tt]));
    }
    s_all[hh].copy_(s);
  }
  return {out, s_all};
}

// max |a - b| / max(1, max |b|).
double RelErr(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor bd = b.to(at::kDouble);
  double scale = std::max(1.0, bd.abs().max().item<double>());
  return (a.to(at::kDouble) - bd).abs().max().item<double>() / scale;
}

TEST(LinearAttentionTest, ParseAndToStringRoundTrip) {
  for (LinearOperator op : kAllOps) {
    auto parsed = ParseLinearOperator(ToString(op));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, op);
  }
  EXPECT_FALSE(ParseLinearOperator("mamba").ok());
  for (FeatureMap m : {FeatureMap::kTptt, FeatureMap::kElu, FeatureMap::kIdentity}) {
    auto parsed = ParseFeatureMap(ToString(m));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_FALSE(ParseFeatureMap("relu").ok());
}

TEST(LinearAttentionTest, RecurrentMatchesExplicitMatrixReference) {
  for (LinearOperator op : kAllOps) {
    Inputs in = MakeInputs(2, 37, 8, 5, at::kFloat, 7);
    at::manual_seed(99);
    at::Tensor s0 = at::randn({2, 8, 5}) * 0.3;
    at::Tensor state = s0.clone();
    at::Tensor o = LinearAttentionRecurrent(op, in.q, in.k, in.v, in.beta, in.alpha, state);
    auto [o_ref, s_ref] = Naive(op, in, s0);
    EXPECT_LT(RelErr(o, o_ref), 1e-5) << ToString(op);
    EXPECT_LT(RelErr(state, s_ref), 1e-5) << ToString(op);
  }
}

class ChunkedVsRecurrent
    : public ::testing::TestWithParam<std::tuple<LinearOperator, at::ScalarType>> {};

TEST_P(ChunkedVsRecurrent, AllLengthsAndChunkSizes) {
  const auto [op, dtype] = GetParam();
  const double tol = dtype == at::kFloat ? 2e-5 : 1.6e-2;  // bf16: output rounding (8-bit mantissa)
  for (int64_t t : {1, 2, 63, 64, 65, 127, 1000}) {
    Inputs in = MakeInputs(2, t, 16, 12, dtype, 1000 + t);
    at::Tensor s_rec = at::zeros({2, 16, 12});
    at::Tensor o_rec = LinearAttentionRecurrent(op, in.q, in.k, in.v, in.beta, in.alpha, s_rec);
    ASSERT_EQ(o_rec.scalar_type(), dtype);
    ASSERT_EQ(o_rec.sizes(), in.v.sizes());
    ASSERT_TRUE(o_rec.isfinite().all().item<bool>());
    for (int64_t c : {1, 16, 64}) {
      at::Tensor s_chk = at::zeros({2, 16, 12});
      at::Tensor o_chk =
          LinearAttentionChunked(op, in.q, in.k, in.v, in.beta, in.alpha, s_chk, c);
      ASSERT_EQ(o_chk.scalar_type(), dtype);
      ASSERT_EQ(o_chk.sizes(), in.v.sizes());
      EXPECT_LT(RelErr(o_chk, o_rec), tol) << ToString(op) << " T=" << t << " C=" << c;
      // The state is fp32 in both paths: only fp32 rounding differs.
      EXPECT_LT(RelErr(s_chk, s_rec), 2e-5) << ToString(op) << " T=" << t << " C=" << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllOps, ChunkedVsRecurrent,
    ::testing::Combine(::testing::ValuesIn(kAllOps), ::testing::Values(at::kFloat, at::kBFloat16)),
    [](const auto& info) {
      return ToString(std::get<0>(info.param)) +
             (std::get<1>(info.param) == at::kFloat ? "_fp32" : "_bf16");
    });

TEST(LinearAttentionTest, ChunkedIsCausal) {
  for (LinearOperator op : kAllOps) {
    Inputs in = MakeInputs(2, 70, 16, 8, at::kFloat, 3);
    at::Tensor s = at::zeros({2, 16, 8});
    at::Tensor o = LinearAttentionChunked(op, in.q, in.k, in.v, in.beta, in.alpha, s, 16);
    const int64_t t0 = 37;  // mid-chunk
    Inputs pert = in;
    pert.k = in.k.clone();
    pert.v = in.v.clone();
    pert.beta = in.beta.clone();
    pert.alpha = in.alpha.clone();
    pert.k.select(1, t0).copy_(ApplyFeatureMap(FeatureMap::kTptt, at::randn({2, 16})));
    pert.v.select(1, t0).add_(3.0);
    pert.beta.select(1, t0).fill_(0.9);
    pert.alpha.select(1, t0).fill_(0.2);
    at::Tensor s2 = at::zeros({2, 16, 8});
    at::Tensor o2 =
        LinearAttentionChunked(op, pert.q, pert.k, pert.v, pert.beta, pert.alpha, s2, 16);
    EXPECT_TRUE(at::equal(o.narrow(1, 0, t0), o2.narrow(1, 0, t0))) << ToString(op);
    EXPECT_GT((o.narrow(1, t0, 70 - t0) - o2.narrow(1, t0, 70 - t0)).abs().max().item<double>(),
              1e-3)
        << ToString(op);
  }
}

TEST(LinearAttentionTest, SplitCallsWithCarriedStateEqualOneCall) {
  for (LinearOperator op : kAllOps) {
    Inputs in = MakeInputs(3, 131, 16, 8, at::kFloat, 11);
    at::Tensor s_full = at::zeros({3, 16, 8});
    at::Tensor o_full =
        LinearAttentionChunked(op, in.q, in.k, in.v, in.beta, in.alpha, s_full, 64);
    // Prefill 53 tokens chunked, then 40 chunked with another chunk size, then decode the rest.
    at::Tensor s = at::zeros({3, 16, 8});
    std::vector<at::Tensor> parts;
    auto slice = [&](const at::Tensor& x, int64_t from, int64_t len) { return x.narrow(1, from, len); };
    parts.push_back(LinearAttentionChunked(op, slice(in.q, 0, 53), slice(in.k, 0, 53),
                                           slice(in.v, 0, 53), slice(in.beta, 0, 53),
                                           slice(in.alpha, 0, 53), s, 16));
    parts.push_back(LinearAttentionChunked(op, slice(in.q, 53, 40), slice(in.k, 53, 40),
                                           slice(in.v, 53, 40), slice(in.beta, 53, 40),
                                           slice(in.alpha, 53, 40), s, 64));
    for (int64_t t = 93; t < 131; ++t) {
      parts.push_back(LinearAttentionRecurrent(op, slice(in.q, t, 1), slice(in.k, t, 1),
                                               slice(in.v, t, 1), slice(in.beta, t, 1),
                                               slice(in.alpha, t, 1), s));
    }
    EXPECT_LT(RelErr(at::cat(parts, 1), o_full), 2e-5) << ToString(op);
    EXPECT_LT(RelErr(s, s_full), 2e-5) << ToString(op);
  }
}

TEST(LinearAttentionTest, NonContiguousStateIsUpdatedInPlace) {
  Inputs in = MakeInputs(2, 20, 8, 6, at::kFloat, 5);
  at::Tensor s_ref = at::zeros({2, 8, 6});
  LinearAttentionRecurrent(LinearOperator::kGatedDelta, in.q, in.k, in.v, in.beta, in.alpha, s_ref);
  at::Tensor storage = at::zeros({2, 6, 8});
  at::Tensor s = storage.transpose(1, 2);  // [2, 8, 6], not contiguous
  LinearAttentionChunked(LinearOperator::kGatedDelta, in.q, in.k, in.v, in.beta, in.alpha, s, 8);
  EXPECT_LT(RelErr(storage.transpose(1, 2), s_ref), 2e-5);
}

// The batched decode step over per-sequence states (in place) == the per-token recurrence of each sequence.
TEST(LinearAttentionTest, DecodeStepMatchesPerSequenceRecurrence) {
  const int64_t b = 3, h = 2, d = 16, dv = 8;
  for (LinearOperator op : kAllOps) {
    at::manual_seed(21);
    std::vector<at::Tensor> states, per_seq;
    for (int64_t i = 0; i < b; ++i) {
      states.push_back(at::randn({h, d, dv}) * 0.5);
      per_seq.push_back(states.back().clone());
    }
    std::vector<at::Tensor*> ptrs;
    for (auto& s : states) ptrs.push_back(&s);
    for (int step = 0; step < 5; ++step) {
      Inputs in = MakeInputs(b * h, 1, d, dv, at::kFloat, 300 + step);
      auto bh = [&](const at::Tensor& x) {  // [b*h, 1, ...] -> [b, h, ...]
        std::vector<int64_t> shape = {b, h};
        for (int64_t i = 2; i < x.dim(); ++i) shape.push_back(x.size(i));
        return x.reshape(shape);
      };
      const bool beta = UsesBeta(op), alpha = UsesAlpha(op);
      at::Tensor o = LinearAttentionDecodeStep(op, bh(in.q), bh(in.k), bh(in.v), beta ? bh(in.beta) : at::Tensor(),
                                               alpha ? bh(in.alpha) : at::Tensor(), ptrs);
      ASSERT_EQ(o.sizes(), at::IntArrayRef({b, h, dv}));
      for (int64_t i = 0; i < b; ++i) {
        auto one = [&](const at::Tensor& x) { return x.reshape({b, h, -1}).select(0, i).unsqueeze(1); };
        at::Tensor oi = LinearAttentionRecurrent(op, one(in.q), one(in.k), one(in.v),
                                                 in.beta.reshape({b, h, 1}).select(0, i),
                                                 in.alpha.reshape({b, h, 1}).select(0, i), per_seq[i]);
        EXPECT_LT(RelErr(o.select(0, i), oi.squeeze(1)), 1e-5) << ToString(op);
        EXPECT_LT(RelErr(states[i], per_seq[i]), 1e-5) << ToString(op);
      }
    }
  }
  // A state of the wrong shape is refused before anything is written.
  at::Tensor bad = at::zeros({2, 16, 4});
  at::Tensor q = at::randn({1, 2, 16}), v = at::randn({1, 2, 8});
  EXPECT_THROW(LinearAttentionDecodeStep(LinearOperator::kLinear, q, q, v, at::Tensor(), at::Tensor(), {&bad}),
               c10::Error);
}

// States that are rows of one block in another order (the model's decode slots, with a row not in the
// step): each equals its own recurrence, the row not in the step is left bit for bit, nothing is copied.
TEST(LinearAttentionTest, DecodeStepOnRowsOfOneBlockInAnyOrder) {
  const int64_t h = 2, d = 16, dv = 8;
  for (LinearOperator op : kAllOps) {
    at::manual_seed(5);
    at::Tensor block = at::randn({3, h, d, dv}) * 0.5;
    const at::Tensor idle = block[1].clone();
    std::vector<at::Tensor> states = {block.select(0, 2), block.select(0, 0)};  // rows 2 and 0
    std::vector<at::Tensor> per_seq = {states[0].clone(), states[1].clone()};
    std::vector<at::Tensor*> ptrs = {&states[0], &states[1]};
    for (int step = 0; step < 3; ++step) {
      Inputs in = MakeInputs(2 * h, 1, d, dv, at::kFloat, 500 + step);
      auto bh = [&](const at::Tensor& x) {
        std::vector<int64_t> shape = {2, h};
        for (int64_t i = 2; i < x.dim(); ++i) shape.push_back(x.size(i));
        return x.reshape(shape);
      };
      const bool beta = UsesBeta(op), alpha = UsesAlpha(op);
      at::Tensor o = LinearAttentionDecodeStep(op, bh(in.q), bh(in.k), bh(in.v), beta ? bh(in.beta) : at::Tensor(),
                                               alpha ? bh(in.alpha) : at::Tensor(), ptrs);
      for (int64_t i = 0; i < 2; ++i) {
        auto one = [&](const at::Tensor& x) { return x.reshape({2, h, -1}).select(0, i).unsqueeze(1); };
        at::Tensor oi = LinearAttentionRecurrent(op, one(in.q), one(in.k), one(in.v),
                                                 in.beta.reshape({2, h, 1}).select(0, i),
                                                 in.alpha.reshape({2, h, 1}).select(0, i), per_seq[i]);
        EXPECT_LT(RelErr(o.select(0, i), oi.squeeze(1)), 1e-5) << ToString(op);
        EXPECT_LT(RelErr(states[i], per_seq[i]), 1e-5) << ToString(op);
      }
      EXPECT_EQ(states[0].data_ptr(), block[2].data_ptr());  // still rows of the block
      EXPECT_TRUE(at::equal(block[1], idle)) << ToString(op);
    }
  }
}

TEST(LinearAttentionTest, UnusedScalarsMayBeUndefinedAndBadInputsThrow) {
  Inputs in = MakeInputs(2, 10, 8, 4, at::kFloat, 1);
  at::Tensor s = at::zeros({2, 8, 4});
  EXPECT_NO_THROW(LinearAttentionChunked(LinearOperator::kLinear, in.q, in.k, in.v, at::Tensor(),
                                         at::Tensor(), s, 4));
  EXPECT_THROW(LinearAttentionChunked(LinearOperator::kDelta, in.q, in.k, in.v, at::Tensor(),
                                      at::Tensor(), s, 4),
               c10::Error);
  EXPECT_THROW(LinearAttentionChunked(LinearOperator::kLinear, in.q, in.k, in.v, in.beta,
                                      in.alpha, s, 0),
               c10::Error);
  at::Tensor bad_state = at::zeros({2, 8, 4}, at::kDouble);
  EXPECT_THROW(LinearAttentionRecurrent(LinearOperator::kLinear, in.q, in.k, in.v, in.beta,
                                        in.alpha, bad_state),
               c10::Error);
}

TEST(FeatureMapTest, MatchesFormulas) {
  at::manual_seed(4);
  at::Tensor x = at::randn({3, 5, 7}, at::kDouble);
  x[0][0].zero_();  // the 1e-6 floor on the norm
  auto acc = x.accessor<double, 3>();
  at::Tensor tptt = ApplyFeatureMap(FeatureMap::kTptt, x);
  at::Tensor elu = ApplyFeatureMap(FeatureMap::kElu, x);
  at::Tensor ident = ApplyFeatureMap(FeatureMap::kIdentity, x);
  auto ta = tptt.accessor<double, 3>(), ea = elu.accessor<double, 3>(), ia = ident.accessor<double, 3>();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 5; ++j) {
      double n_silu = 0, n_x = 0;
      for (int c = 0; c < 7; ++c) {
        const double v = acc[i][j][c], silu = v / (1 + std::exp(-v));
        n_silu += silu * silu;
        n_x += v * v;
      }
      n_silu = std::max(std::sqrt(n_silu), 1e-6);
      n_x = std::max(std::sqrt(n_x), 1e-6);
      for (int c = 0; c < 7; ++c) {
        const double v = acc[i][j][c];
        EXPECT_NEAR(ta[i][j][c], v / (1 + std::exp(-v)) / n_silu, 1e-12);
        EXPECT_NEAR(ea[i][j][c], (v > 0 ? v : std::exp(v) - 1) + 1, 1e-12);
        EXPECT_NEAR(ia[i][j][c], v / n_x, 1e-12);
      }
    }
  }
  at::Tensor xb = x.to(at::kBFloat16);
  EXPECT_EQ(ApplyFeatureMap(FeatureMap::kTptt, xb).scalar_type(), at::kBFloat16);
}

}  // namespace
}  // namespace titand

namespace titand {
namespace {

// The model hands the operator transposed views ([T, H, d] -> [H, T, d]); a length that is an exact
// multiple of the chunk size needs no padding, so the operator must not assume contiguous inputs.
TEST(LinearAttentionTest, ChunkedAcceptsNonContiguousInputsAtChunkMultiples) {
  for (int64_t t : {64, 128}) {
    Inputs in = MakeInputs(3, t, 16, 16, at::kFloat, 77 + t);
    auto tview = [](const at::Tensor& x) { return x.transpose(0, 1).contiguous().transpose(0, 1); };
    ASSERT_FALSE(tview(in.q).is_contiguous());
    for (LinearOperator op : kAllOps) {
      at::Tensor s_ref = at::zeros({3, 16, 16}), s = at::zeros({3, 16, 16});
      at::Tensor ref = LinearAttentionChunked(op, in.q, in.k, in.v, in.beta, in.alpha, s_ref, 64);
      at::Tensor got = LinearAttentionChunked(op, tview(in.q), tview(in.k), tview(in.v), tview(in.beta),
                                              tview(in.alpha), s, 64);
      EXPECT_LT((got - ref).abs().max().item<float>(), 1e-6) << ToString(op) << " T=" << t;
      EXPECT_LT((s - s_ref).abs().max().item<float>(), 1e-6);
    }
  }
}

}  // namespace
}  // namespace titand
