// Helpers for the session tests: a cursor with mixed layer kinds, bit-level tensor comparison.
#pragma once

#include <cstring>
#include <limits>
#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/model/sequence_state.h"
#include "core/session/snapshot_format.h"

namespace titand::session_test {

inline SnapshotBinding Binding(const std::string& dtype, int64_t layers = 5) {
  return SnapshotBinding{"Tiny Model@0123456789abcdef", "adapter-A@fedcba9876543210", layers, 2, 8, dtype};
}

inline at::ScalarType Dtype(const std::string& d) { return d == "bfloat16" ? at::kBFloat16 : at::kFloat; }

// KV [n_kv=2, cap, D=8] with `len` valid entries; entries past len hold garbage that must not be saved.
inline void FillKv(LayerState* l, int64_t cap, int64_t len, at::ScalarType dtype) {
  l->k = (at::randn({2, cap, 8}) * 3).to(dtype);
  l->v = (at::randn({2, cap, 8}) * 3).to(dtype);
  l->len = len;
}

// Mixed layers: 0 full KV (capacity 16, len 11, with NaN / -0 / inf values), 1 windowed KV (len == cap),
// 2 KV + TPTT memory [3, 8, 8], 3 empty (nothing defined), 4 KV of length 0 + memory.
inline SessionCursor MixedCursor(const std::string& dtype, int pending, int64_t scale = 1) {
  const at::ScalarType dt = Dtype(dtype);
  SessionCursor c;
  c.state.num_tokens = 11 * scale;
  c.state.layers.resize(5);
  FillKv(&c.state.layers[0], 16 * scale, 11 * scale, dt);
  c.state.layers[0].k.index_put_({0, 0, 0}, std::numeric_limits<float>::quiet_NaN());
  c.state.layers[0].k.index_put_({0, 1, 0}, -0.0f);
  c.state.layers[0].v.index_put_({1, 2, 3}, -std::numeric_limits<float>::infinity());
  FillKv(&c.state.layers[1], 4, 4, dt);
  FillKv(&c.state.layers[2], 4, 3, dt);
  c.state.layers[2].memory = at::randn({3, 8, 8});
  FillKv(&c.state.layers[4], 0, 0, dt);
  c.state.layers[4].memory = at::randn({3, 8, 8});
  if (pending) c.pending = {4242};
  return c;
}

// Bytes of a tensor (CPU, contiguous copy).
inline std::string RawBytes(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU).contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

// Valid parts of two cursors are bit-identical (dtype, shape, every byte).
inline void ExpectSameCursor(const SessionCursor& a, const SessionCursor& b) {
  ASSERT_EQ(a.state.layers.size(), b.state.layers.size());
  EXPECT_EQ(a.state.num_tokens, b.state.num_tokens);
  EXPECT_EQ(a.pending, b.pending);
  EXPECT_EQ(a.ByteSize(), b.ByteSize());
  for (size_t i = 0; i < a.state.layers.size(); ++i) {
    const LayerState& x = a.state.layers[i];
    const LayerState& y = b.state.layers[i];
    SCOPED_TRACE(::testing::Message() << "layer " << i);
    EXPECT_EQ(x.len, y.len);
    ASSERT_EQ(x.k.defined(), y.k.defined());
    if (x.k.defined()) {
      for (auto [p, q] : {std::pair{x.k, y.k}, std::pair{x.v, y.v}}) {
        EXPECT_EQ(p.scalar_type(), q.scalar_type());
        EXPECT_EQ(p.size(0), q.size(0));
        EXPECT_EQ(p.size(2), q.size(2));
        EXPECT_TRUE(RawBytes(p.narrow(1, 0, x.len)) == RawBytes(q.narrow(1, 0, y.len)));
      }
    }
    ASSERT_EQ(x.memory.defined(), y.memory.defined());
    if (x.memory.defined()) {
      EXPECT_EQ(x.memory.sizes(), y.memory.sizes());
      EXPECT_EQ(y.memory.scalar_type(), at::kFloat);
      EXPECT_TRUE(RawBytes(x.memory) == RawBytes(y.memory));
    }
  }
}

}  // namespace titand::session_test
