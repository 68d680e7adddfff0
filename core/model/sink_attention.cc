#include "core/model/sink_attention.h"

#include <algorithm>
#include <limits>

#include <ATen/TensorIndexing.h>

#include "core/model/batch_rows.h"
#include "core/model/ops.h"

namespace titand {
namespace {

// Windowed caches of at most this many slots (sinks + window) are allocated whole at the first decode step;
// larger ones (long sliding windows of base models) grow by doubling until full.
constexpr int64_t kWholeWindowUpTo = 1024;

// Positions of the cached entries of a state that has processed `tokens` tokens: 0 .. n_s-1, then the
// window start .. tokens-1. Entries are disjoint and sorted; the first min(N_s, len) of them are 0, 1, ...
struct CacheSpan {
  int64_t sinks;  // n_s: leading entries that are sinks outside the window region
  int64_t start;  // position of the first window entry
};

CacheSpan SpanAt(const SinkWindow& sw, int64_t tokens) {
  const int64_t start = std::max<int64_t>(0, tokens - (sw.window - 1));
  return {std::min(sw.sinks, start), start};
}

at::Tensor KeyPositions(const CacheSpan& span, int64_t end, const at::Device& device) {
  auto lopt = at::TensorOptions().dtype(at::kLong).device(device);
  return at::cat({at::arange(0, span.sinks, lopt), at::arange(span.start, end, lopt)});
}

}  // namespace

int64_t SinkWindowCacheLen(const SinkWindow& sw, int64_t tokens) {
  if (tokens <= 0) return 0;
  const CacheSpan s = SpanAt(sw, tokens);
  return s.sinks + (tokens - s.start);
}

at::Tensor SinkWindowAttention(LayerState& st, const at::Tensor& q, const at::Tensor& q_rot, const at::Tensor& k_rot,
                               const at::Tensor& v, int64_t pos0, const SinkWindow& sw, const at::Tensor& inv_freq,
                               double scale) {
  const int64_t T = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t Hkv = k_rot.size(0), G = H / Hkv;
  const int64_t end = pos0 + T;
  st.Normalize();  // a ring left by decode steps, back in order
  // Every key the new queries may see: the cached entries, then the new ones.
  at::Tensor k_all = st.len > 0 ? at::cat({st.k.narrow(1, 0, st.len), k_rot}, 1) : k_rot;
  at::Tensor v_all = st.len > 0 ? at::cat({st.v.narrow(1, 0, st.len), v}, 1) : v;
  const CacheSpan before = SpanAt(sw, pos0);
  at::Tensor k_pos = KeyPositions(before, end, q.device());  // [L]
  const int64_t L = k_all.size(1);

  // Scores: window keys against the query at its own position, sink columns against the query rotated
  // for min(t, W + N_s - 1).
  auto lopt = at::TensorOptions().dtype(at::kLong).device(q.device());
  at::Tensor q_pos = at::arange(pos0, end, lopt);
  auto grouped = [&](const at::Tensor& x) { return x.view({T, Hkv, G, D}).permute({1, 2, 0, 3}); };  // [Hkv,G,T,D]
  at::Tensor kt = k_all.unsqueeze(1).transpose(-1, -2);                                               // [Hkv,1,D,L]
  at::Tensor scores = at::matmul(grouped(q_rot), kt).to(at::kFloat) * scale;                          // [Hkv,G,T,L]
  const int64_t sink_cols = std::min(sw.sinks, L);
  auto [cos, sin] = RopeCosSin(inv_freq, at::clamp_max(q_pos, sw.window + sw.sinks - 1), q_rot.scalar_type());
  at::Tensor q_sink = ApplyRope(q, cos, sin);
  at::Tensor sink_scores = at::matmul(grouped(q_sink), kt.narrow(-1, 0, sink_cols)).to(at::kFloat) * scale;
  scores = at::cat({sink_scores, scores.narrow(-1, sink_cols, L - sink_cols)}, -1);
  at::Tensor qp = q_pos.unsqueeze(1), kp = k_pos.unsqueeze(0);
  at::Tensor visible = (kp <= qp) & ((kp > qp - sw.window) | (kp < sw.sinks));
  scores = scores.masked_fill(visible.logical_not(), -std::numeric_limits<float>::infinity());
  at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
  at::Tensor out = at::matmul(probs, v_all.unsqueeze(1)).permute({2, 0, 1, 3}).reshape({T, H * D});

  // The state after these tokens: the sinks prefix (positions 0 .. n_s' - 1 are the first n_s' entries of
  // k_all) and the last end - start' entries.
  const CacheSpan after = SpanAt(sw, end);
  const int64_t window_len = end - after.start;
  at::Tensor k_keep = at::cat({k_all.narrow(1, 0, after.sinks), k_all.narrow(1, L - window_len, window_len)}, 1);
  at::Tensor v_keep = at::cat({v_all.narrow(1, 0, after.sinks), v_all.narrow(1, L - window_len, window_len)}, 1);
  st.k = k_keep.contiguous();
  st.v = v_keep.contiguous();
  st.len = after.sinks + window_len;
  return out;
}

}  // namespace titand

namespace titand {

DecodeEntry PrepareDecodeEntry(LayerState& st, int64_t index, int64_t position, const SinkWindow& sw,
                               int64_t kv_heads, int64_t head_dim, const at::TensorOptions& k_options,
                               const at::TensorOptions& v_options) {
  const int64_t cap = sw.sinks + sw.window;  // a full cache plus the new entry: every slot of the ring layout
  TORCH_CHECK(st.len == SinkWindowCacheLen(sw, position), "WindowAttentionDecode: sequence ", index, " holds ",
              st.len, " entries at position ", position, ", expected ", SinkWindowCacheLen(sw, position));
  if (!st.in_order()) {
    TORCH_CHECK(st.k.size(1) == cap && st.ring_base == sw.sinks && st.ring_next >= 0 && st.ring_next < sw.window,
                "WindowAttentionDecode: sequence ", index, "'s ring layout does not fit window ", sw.window, " + ",
                sw.sinks, " sinks");
    return {st.ring_base + st.ring_next, cap};
  }
  const int64_t have = st.k.defined() ? st.k.size(1) : 0;
  if (have <= st.len || have > cap) {
    const int64_t want = cap <= kWholeWindowUpTo ? cap : std::min(cap, std::max<int64_t>({2 * have, st.len + 1, 16}));
    at::Tensor k2 = at::zeros({kv_heads, want, head_dim}, k_options);  // zeros: masked slots meet probs of 0
    at::Tensor v2 = at::zeros({kv_heads, want, head_dim}, v_options);
    if (st.len > 0) {
      k2.narrow(1, 0, st.len).copy_(st.k.narrow(1, 0, st.len));
      v2.narrow(1, 0, st.len).copy_(st.v.narrow(1, 0, st.len));
    }
    st.k = k2;
    st.v = v2;
  }
  return {st.len, st.len + 1};
}

void AdvanceDecodeEntry(LayerState& st, const SinkWindow& sw) {
  // The oldest window entry of a cache that just became full (slot N_s) leaves the window at the next step:
  // the ring starts there; a ring moves its stale slot on.
  if (!st.in_order()) {
    st.ring_next = (st.ring_next + 1) % sw.window;
  } else if (st.len + 1 == sw.sinks + sw.window) {
    st.ring_base = sw.sinks;
    st.ring_next = 0;
  } else {
    st.len += 1;
  }
}

at::Tensor WindowAttentionDecode(const std::vector<LayerState*>& states, const std::vector<int64_t>& positions,
                                 const at::Tensor& q, const at::Tensor& q_rot, const at::Tensor& k_rot,
                                 const at::Tensor& v, const SinkWindow& sw, const at::Tensor& inv_freq, double scale,
                                 AttentionImpl impl) {
  const int64_t B = q_rot.size(0), H = q_rot.size(1), D = q_rot.size(2);
  const int64_t Hkv = k_rot.size(1), G = H / Hkv;
  TORCH_CHECK(static_cast<int64_t>(states.size()) == B && static_cast<int64_t>(positions.size()) == B,
              "WindowAttentionDecode: ", states.size(), " states and ", positions.size(), " positions for ", B,
              " rows");
  // 1. Room for the new entry in each sequence's own cache, the slot it goes to, the slots its query sees.
  std::vector<int64_t> slot(B), seen(B);
  bool same_shape = true;
  for (int64_t b = 0; b < B; ++b) {
    const DecodeEntry e = PrepareDecodeEntry(*states[b], b, positions[b], sw, Hkv, D, k_rot.options(), v.options());
    slot[b] = e.slot;
    seen[b] = e.seen;
    if (states[b]->k.sizes() != states[0]->k.sizes()) same_shape = false;
  }
  // 2. The batch's keys/values K, V [N, Hkv, S, D] with the new entries written in place: the caches
  // themselves when they have one shape (rows of one block, core/model/batch_rows.h: the previous step's
  // batch or the model's decode slots; N >= B, sequence b in row rows[b]), else a padded copy (N = B).
  auto lopt = at::TensorOptions().dtype(at::kLong).device(q_rot.device());
  auto longs = [&](const std::vector<int64_t>& x) {  // host int64 list -> [n] on the device
    return at::tensor(x, at::TensorOptions().dtype(at::kLong)).to(q_rot.device());
  };
  at::Tensor K, V;
  std::vector<int64_t> rows(B);
  for (int64_t b = 0; b < B; ++b) rows[b] = b;
  bool identity = true;
  at::Tensor rows_t;  // rows on the device (block rows of the batch's sequences)
  if (same_shape) {
    std::vector<at::Tensor*> kp(B), vp(B);
    for (int64_t b = 0; b < B; ++b) {
      kp[b] = &states[b]->k;
      vp[b] = &states[b]->v;
    }
    BatchBlock kb = BatchRows(kp), vb = BatchRows(vp);
    if (kb.rows != vb.rows || kb.block.size(0) != vb.block.size(0)) {  // k and v laid out apart: one copy
      kb = StackRows(kp);
      vb = StackRows(vp);
    }
    K = kb.block;
    V = vb.block;
    rows = kb.rows;
    identity = kb.identity;
    rows_t = kb.rows_tensor(q_rot.device());
    const at::Tensor si = longs(slot);
    using at::indexing::Slice;
    K.index_put_({rows_t, Slice(), si}, k_rot);  // K[rows[b], :, slot[b], :] = k_rot[b]
    V.index_put_({rows_t, Slice(), si}, v);
  } else {
    const int64_t smax = *std::max_element(seen.begin(), seen.end());
    K = at::zeros({B, Hkv, smax, D}, k_rot.options());
    V = at::zeros({B, Hkv, smax, D}, v.options());
    for (int64_t b = 0; b < B; ++b) {
      LayerState& st = *states[b];
      st.k.select(1, slot[b]).copy_(k_rot.select(0, b));
      st.v.select(1, slot[b]).copy_(v.select(0, b));
      K.select(0, b).narrow(1, 0, seen[b]).copy_(st.k.narrow(1, 0, seen[b]));
      V.select(0, b).narrow(1, 0, seen[b]).copy_(st.v.narrow(1, 0, seen[b]));
    }
  }
  const int64_t N = K.size(0), S = K.size(2);
  // Per block row: its query (zeros for rows not in this batch: their results are dropped), position and
  // the slots it sees.
  at::Tensor qr = q_rot, qs = q;
  std::vector<int64_t> pos_n = positions, seen_n = seen;
  if (!identity) {  // only a found block is not the batch itself: rows_t is set
    qr = at::zeros({N, H, D}, q_rot.options()).index_copy_(0, rows_t, q_rot);
    if (sw.sinks > 0) qs = at::zeros({N, H, D}, q.options()).index_copy_(0, rows_t, q);
    pos_n.assign(N, 0);
    seen_n.assign(N, S);
    for (int64_t b = 0; b < B; ++b) {
      pos_n[rows[b]] = positions[b];
      seen_n[rows[b]] = seen[b];
    }
  }
  at::Tensor valid;  // [N, 1, 1, S]: slots past a young cache's entries hidden; undefined when all are seen
  if (*std::min_element(seen_n.begin(), seen_n.end()) < S) {
    at::Tensor seen_t = longs(seen_n);
    valid = (at::arange(S, lopt).unsqueeze(0) < seen_t.unsqueeze(1)).view({N, 1, 1, S});
  }
  // 3. Attention over the seen slots. Their order does not matter (keys carry their RoPE; softmax is
  // permutation invariant) except that the sinks are the first slots (the ring keeps them in front).
  at::Tensor out;
  if (sw.sinks == 0 && impl == AttentionImpl::kSdpa) {
    out = at::scaled_dot_product_attention(qr.unsqueeze(2), K, V,
                                           valid.defined() ? std::optional<at::Tensor>(valid) : std::nullopt,
                                           /*dropout_p=*/0.0, /*is_causal=*/false, scale, /*enable_gqa=*/G > 1);
    out = out.reshape({N, H * D});
  } else {
    at::Tensor kt = K.transpose(-1, -2);                                                    // [N, Hkv, D, S]
    const int64_t sink_cols = std::min(sw.sinks, S);
    at::Tensor scores = at::matmul(qr.reshape({N, Hkv, G, D}), kt.narrow(-1, sink_cols, S - sink_cols))
                            .to(at::kFloat) * scale;                                        // [N, Hkv, G, S - n]
    if (sink_cols > 0) {
      // Sink columns score against the query rotated for min(t, W + N_s - 1) (see SinkWindowAttention).
      at::Tensor pos = longs(pos_n);
      auto [cos, sin] = RopeCosSin(inv_freq, at::clamp_max(pos, sw.window + sw.sinks - 1), q_rot.scalar_type());
      at::Tensor q_sink = ApplyRope(qs, cos, sin).view({N, Hkv, G, D});
      at::Tensor sink_scores = at::matmul(q_sink, kt.narrow(-1, 0, sink_cols)).to(at::kFloat) * scale;
      scores = at::cat({sink_scores, scores}, -1);
    }
    if (valid.defined()) scores = scores.masked_fill(valid.logical_not(), -std::numeric_limits<float>::infinity());
    at::Tensor probs = at::softmax(scores, -1).to(V.scalar_type());
    out = at::matmul(probs, V).reshape({N, H * D});  // [N, Hkv, G, D]
  }
  if (!identity) out = out.index_select(0, rows_t);
  // 4. Advance (a cache that just became full switches to the ring layout).
  for (int64_t b = 0; b < B; ++b) AdvanceDecodeEntry(*states[b], sw);
  return out;
}

}  // namespace titand
