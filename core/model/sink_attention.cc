#include "core/model/sink_attention.h"

#include <algorithm>
#include <limits>

#include "core/model/ops.h"

namespace titand {
namespace {

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

at::Tensor WindowAttentionDecode(const std::vector<LayerState*>& states, const std::vector<int64_t>& positions,
                                 const at::Tensor& q, const at::Tensor& q_rot, const at::Tensor& k_rot,
                                 const at::Tensor& v, const SinkWindow& sw, const at::Tensor& inv_freq, double scale,
                                 AttentionImpl impl) {
  const int64_t B = q_rot.size(0), H = q_rot.size(1), D = q_rot.size(2);
  const int64_t Hkv = k_rot.size(1), G = H / Hkv;
  TORCH_CHECK(static_cast<int64_t>(states.size()) == B && static_cast<int64_t>(positions.size()) == B,
              "WindowAttentionDecode: ", states.size(), " states and ", positions.size(), " positions for ", B,
              " rows");
  // Per sequence, every key its query sees: the cached entries then the new one (all of them are visible:
  // the cache holds exactly the sinks and the last W - 1 tokens). The new state is a slice of it.
  std::vector<at::Tensor> ks(B), vs(B);
  std::vector<int64_t> lens(B);
  int64_t lmax = 0;
  bool ragged = false;
  for (int64_t b = 0; b < B; ++b) {
    const LayerState& st = *states[b];
    at::Tensor kn = k_rot.select(0, b).unsqueeze(1), vn = v.select(0, b).unsqueeze(1);  // [Hkv, 1, D]
    ks[b] = st.len > 0 ? at::cat({st.k.narrow(1, 0, st.len), kn}, 1) : kn.clone();
    vs[b] = st.len > 0 ? at::cat({st.v.narrow(1, 0, st.len), vn}, 1) : vn.clone();
    lens[b] = st.len + 1;
    if (b > 0 && lens[b] != lmax) ragged = true;
    lmax = std::max(lmax, lens[b]);
  }
  at::Tensor K, V;  // [B, Hkv, Lmax, D]
  if (B == 1) {
    K = ks[0].unsqueeze(0);
    V = vs[0].unsqueeze(0);
  } else if (!ragged) {
    K = at::stack(ks);
    V = at::stack(vs);
  } else {
    K = at::zeros({B, Hkv, lmax, D}, k_rot.options());
    V = at::zeros({B, Hkv, lmax, D}, v.options());
    for (int64_t b = 0; b < B; ++b) {
      K.select(0, b).narrow(1, 0, lens[b]).copy_(ks[b]);
      V.select(0, b).narrow(1, 0, lens[b]).copy_(vs[b]);
    }
  }
  auto lopt = at::TensorOptions().dtype(at::kLong).device(q_rot.device());
  at::Tensor valid;  // [B, 1, 1, Lmax]: padding hidden; undefined when there is none
  if (ragged) {
    at::Tensor len_t = at::tensor(lens, at::TensorOptions().dtype(at::kLong)).to(q_rot.device());
    valid = (at::arange(lmax, lopt).unsqueeze(0) < len_t.unsqueeze(1)).view({B, 1, 1, lmax});
  }
  at::Tensor out;
  if (sw.sinks == 0 && impl == AttentionImpl::kSdpa) {
    out = at::scaled_dot_product_attention(q_rot.unsqueeze(2), K, V,
                                           valid.defined() ? std::optional<at::Tensor>(valid) : std::nullopt,
                                           /*dropout_p=*/0.0, /*is_causal=*/false, scale, /*enable_gqa=*/G > 1);
    out = out.reshape({B, H * D});
  } else {
    at::Tensor kt = K.transpose(-1, -2);                                                 // [B, Hkv, D, L]
    at::Tensor scores = at::matmul(q_rot.view({B, Hkv, G, D}), kt).to(at::kFloat) * scale;  // [B, Hkv, G, L]
    const int64_t sink_cols = std::min(sw.sinks, lmax);
    if (sink_cols > 0) {
      // Sink columns score against the query rotated for min(t, W + N_s - 1) (see SinkWindowAttention).
      at::Tensor pos = at::tensor(positions, at::TensorOptions().dtype(at::kLong)).to(q_rot.device());
      auto [cos, sin] = RopeCosSin(inv_freq, at::clamp_max(pos, sw.window + sw.sinks - 1), q_rot.scalar_type());
      at::Tensor q_sink = ApplyRope(q, cos, sin).view({B, Hkv, G, D});
      at::Tensor sink_scores = at::matmul(q_sink, kt.narrow(-1, 0, sink_cols)).to(at::kFloat) * scale;
      scores = at::cat({sink_scores, scores.narrow(-1, sink_cols, lmax - sink_cols)}, -1);
    }
    if (valid.defined()) scores = scores.masked_fill(valid.logical_not(), -std::numeric_limits<float>::infinity());
    at::Tensor probs = at::softmax(scores, -1).to(V.scalar_type());
    out = at::matmul(probs, V).reshape({B, H * D});  // [B, Hkv, G, D]
  }
  // Advance each state: the sinks prefix and the last W - 1 entries of what its query saw.
  for (int64_t b = 0; b < B; ++b) {
    LayerState& st = *states[b];
    const int64_t L = lens[b];
    const CacheSpan after = SpanAt(sw, positions[b] + 1);
    const int64_t window_len = positions[b] + 1 - after.start;
    if (after.sinks + window_len == L) {
      st.k = ks[b];
      st.v = vs[b];
    } else if (after.sinks == 0) {
      st.k = ks[b].narrow(1, L - window_len, window_len);
      st.v = vs[b].narrow(1, L - window_len, window_len);
    } else {
      st.k = at::cat({ks[b].narrow(1, 0, after.sinks), ks[b].narrow(1, L - window_len, window_len)}, 1);
      st.v = at::cat({vs[b].narrow(1, 0, after.sinks), vs[b].narrow(1, L - window_len, window_len)}, 1);
    }
    st.len = after.sinks + window_len;
  }
  return out;
}

}  // namespace titand
