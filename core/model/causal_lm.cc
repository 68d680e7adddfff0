#include "core/model/causal_lm.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/common/status.h"
#include "core/model/hybrid_decode_cpu.h"
#include "core/model/hybrid_layer.h"
#include "core/model/ops.h"
#include "core/model/sink_attention.h"
#include "core/model/weight_loader.h"

namespace titand {
namespace {

std::string LayerName(int64_t i, const char* rest) { return absl::StrCat("model.layers.", i, ".", rest); }

}  // namespace

CausalLM::~CausalLM() = default;

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::Create(const ModelConfig& config, WeightSource& weights,
                                                           const ModelOptions& options) {
  RETURN_IF_ERROR(config.Validate());
  if (options.dtype != at::kFloat && options.dtype != at::kBFloat16 && options.dtype != at::kHalf) {
    return absl::InvalidArgumentError("model dtype must be float32, bfloat16 or float16");
  }
  std::unique_ptr<CausalLM> m(new CausalLM(config, options));
  try {
    RETURN_IF_ERROR(m->Load(weights));
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(weights.Describe(), ": ", e.what_without_backtrace()));
  }
  return m;
}

absl::Status CausalLM::Load(WeightSource& w) {
  const ModelConfig& c = config_;
  auto opts = at::TensorOptions().dtype(options_.dtype).device(options_.device);
  const WeightPlan plan{options_.weights, options_.dtype, options_.device};
  // Norm vectors: float tensors in the model dtype, shape-checked (a mismatched file fails here, named).
  auto take = [&](const std::string& name, std::vector<int64_t> shape) -> absl::StatusOr<at::Tensor> {
    ASSIGN_OR_RETURN(at::Tensor t, TakeChecked(w, {name, std::move(shape)}));
    return t.to(opts);
  };
  const int64_t Hd = c.hidden_size;
  const TensorSpec embed{"model.embed_tokens.weight", {c.vocab_size, Hd}};
  tied_head_ = c.tie_embeddings && !w.Has("lm_head.weight");
  ASSIGN_OR_RETURN(embed_, LoadEmbedding(w, plan, embed, tied_head_ ? &lm_head_ : nullptr));
  ASSIGN_OR_RETURN(final_norm_, take("model.norm.weight", {Hd}));
  if (!tied_head_) {
    ASSIGN_OR_RETURN(lm_head_, LoadLinear(w, plan, {{"lm_head.weight", {c.vocab_size, Hd}}}));
  }
  layers_.resize(c.num_layers);
  const int64_t F = c.intermediate_size;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    Layer& L = layers_[i];
    auto spec = [&](const char* rest, std::vector<int64_t> shape) { return TensorSpec{LayerName(i, rest), shape}; };
    ASSIGN_OR_RETURN(L.attn_norm, take(LayerName(i, "input_layernorm.weight"), {Hd}));
    ASSIGN_OR_RETURN(L.ffn_norm, take(LayerName(i, "post_attention_layernorm.weight"), {Hd}));
    std::vector<TensorSpec> qkv_bias;  // one matmul for q, k and v
    if (c.qkv_bias) {
      qkv_bias = {spec("self_attn.q_proj.bias", {c.q_dim()}), spec("self_attn.k_proj.bias", {c.kv_dim()}),
                  spec("self_attn.v_proj.bias", {c.kv_dim()})};
    }
    ASSIGN_OR_RETURN(L.wqkv, LoadLinear(w, plan,
                                        {spec("self_attn.q_proj.weight", {c.q_dim(), Hd}),
                                         spec("self_attn.k_proj.weight", {c.kv_dim(), Hd}),
                                         spec("self_attn.v_proj.weight", {c.kv_dim(), Hd})},
                                        qkv_bias));
    std::vector<TensorSpec> o_bias;
    if (c.o_bias) o_bias = {spec("self_attn.o_proj.bias", {Hd})};
    ASSIGN_OR_RETURN(L.wo, LoadLinear(w, plan, {spec("self_attn.o_proj.weight", {Hd, c.q_dim()})}, o_bias));
    if (c.qk_norm) {
      ASSIGN_OR_RETURN(L.q_norm, take(LayerName(i, "self_attn.q_norm.weight"), {c.head_dim}));
      ASSIGN_OR_RETURN(L.k_norm, take(LayerName(i, "self_attn.k_norm.weight"), {c.head_dim}));
    }
    ASSIGN_OR_RETURN(L.w_gate_up, LoadLinear(w, plan, {spec("mlp.gate_proj.weight", {F, Hd}),  // one matmul
                                                       spec("mlp.up_proj.weight", {F, Hd})}));
    ASSIGN_OR_RETURN(L.w_down, LoadLinear(w, plan, {spec("mlp.down_proj.weight", {Hd, F})}));
  }
  // Loaded-weights check: a tensor the model never asked for means a wrong architecture or file.
  std::vector<std::string> unused = w.Unused();
  if (!unused.empty()) {
    if (unused.size() > 5) unused.resize(5);
    return absl::InvalidArgumentError(absl::StrCat(w.Describe(), ": tensors not used by the ", c.arch,
                                                   " model: ", absl::StrJoin(unused, ", ")));
  }
  inv_freq_ = RopeInvFreq(c.head_dim, c.rope_theta).to(options_.device);
  windows_.assign(c.num_layers, c.sliding_window);
  sinks_.assign(c.num_layers, 0);
  hybrid_.resize(c.num_layers);
  return absl::OkStatus();
}

void CausalLM::SetHybrid(int64_t i, std::unique_ptr<HybridLayer> hybrid, std::optional<int64_t> window,
                         int64_t sinks) {
  if (hybrid) hybrid->MoveTo(options_.device);  // gates and mu live beside the weights
  hybrid_[i] = std::move(hybrid);
  windows_[i] = window;
  sinks_[i] = window ? sinks : 0;
  slots_.reset();  // shaped for the old layers; rebuilt on the next decode step (held leases expire)
}

std::vector<DecodeSlots::LayerSpec> CausalLM::SlotLayers() const {
  std::vector<DecodeSlots::LayerSpec> out;
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    if (!windows_[i]) continue;
    const int64_t entries = *windows_[i] + sinks_[i];
    if (entries > DecodeSlots::kMaxSlotCacheEntries) continue;
    out.push_back({i, entries, hybrid_[i] != nullptr});
  }
  return out;
}

int64_t CausalLM::DecodeSlotBytes() const {
  const int64_t kv = at::elementSize(options_.dtype), D = config_.head_dim;
  int64_t bytes = 0;
  for (const auto& l : SlotLayers()) {
    bytes += 2 * config_.num_kv_heads * l.cache_slots * D * kv;
    if (l.memory) bytes += config_.num_heads * D * D * 4;
  }
  return bytes;
}

void CausalLM::EnableDecodeSlots(int64_t slots) {
  decode_slots_ = std::max<int64_t>(0, slots);
  slots_.reset();
  (void)Slots();
}

DecodeSlots* CausalLM::Slots() {
  if (decode_slots_ == 0) return nullptr;
  if (!slots_) {
    std::vector<DecodeSlots::LayerSpec> layers = SlotLayers();
    if (layers.empty()) return nullptr;
    slots_ = std::make_unique<DecodeSlots>(decode_slots_, std::move(layers), config_.num_kv_heads, config_.num_heads,
                                           config_.head_dim, options_.dtype, options_.device);
  }
  return slots_.get();
}

int64_t CausalLM::DecodeSlotsInUse() const { return slots_ ? slots_->InUse() : 0; }

int64_t CausalLM::ParameterCount() const {
  int64_t n = embed_.numel() + final_norm_.numel();
  if (!tied_head_) n += lm_head_.numel();
  for (const Layer& L : layers_) {
    for (const at::Tensor* t : {&L.attn_norm, &L.q_norm, &L.k_norm, &L.ffn_norm}) {
      if (t->defined()) n += t->numel();
    }
    for (const LinearWeight* l : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) n += l->numel();
  }
  return n;
}

int64_t CausalLM::WeightBytes() const {
  auto size = [](const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; };
  int64_t n = embed_.bytes() + size(final_norm_);
  // A tied dense head shares the table's storage; a tied quantised head is its own copy.
  if (!tied_head_ || embed_.quantized()) n += lm_head_.bytes();
  for (const Layer& L : layers_) {
    n += size(L.attn_norm) + size(L.q_norm) + size(L.k_norm) + size(L.ffn_norm);
    for (const LinearWeight* l : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) n += l->bytes();
  }
  return n;
}

std::string CausalLM::WeightFormatSummary() const {
  const std::string head = WeightFormatName(lm_head_.format());
  std::string f = layers_.empty() ? head : WeightFormatName(layers_[0].wqkv.format());
  for (const Layer& L : layers_) {
    for (const LinearWeight* l : {&L.wqkv, &L.wo, &L.w_gate_up, &L.w_down}) {
      if (f != WeightFormatName(l->format())) f = "mixed";
    }
  }
  // --weights auto stores a GGUF's Q8_0 LM head as int8 beside int4 layers: say so rather than hide it.
  return head == f ? f : f + ", LM head " + head;
}

int64_t CausalLM::StateBytesAt(int64_t tokens) const {
  if (tokens <= 0) return 0;
  const int64_t elem = at::elementSize(options_.dtype);
  const int64_t kv_per_token = 2 * config_.num_kv_heads * config_.head_dim * elem;
  int64_t bytes = 0;
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const int64_t kept = !windows_[i]   ? tokens
                         : sinks_[i] ? SinkWindowCacheLen({*windows_[i], sinks_[i]}, tokens)
                                     : std::min(*windows_[i] - 1, tokens);
    bytes += kept * kv_per_token;
    if (hybrid_[i]) bytes += config_.num_heads * config_.head_dim * config_.head_dim * 4;  // S, fp32
  }
  return bytes;
}

SequenceState CausalLM::NewState() const {
  SequenceState s;
  s.layers.resize(config_.num_layers);
  return s;
}

namespace {

// Appends T new entries [Hkv, T, D] to a layer's cache; full layers grow by doubling, windowed layers keep
// the last window-1 entries. Returns the keys/values the new queries attend to and their first position.
struct KeysView {
  at::Tensor k, v;
  int64_t pos0;
};

KeysView AppendKv(LayerState& st, const at::Tensor& k_new, const at::Tensor& v_new, int64_t pos_new,
                  std::optional<int64_t> window) {
  const int64_t T = k_new.size(1);
  const int64_t old_pos0 = pos_new - st.len;
  if (window) {
    st.Normalize();  // a ring left by decode steps, back in order
    at::Tensor k_all = st.len > 0 ? at::cat({st.k.narrow(1, 0, st.len), k_new}, 1) : k_new;
    at::Tensor v_all = st.len > 0 ? at::cat({st.v.narrow(1, 0, st.len), v_new}, 1) : v_new;
    const int64_t keep = std::min<int64_t>(*window - 1, k_all.size(1));
    st.k = k_all.narrow(1, k_all.size(1) - keep, keep).clone();
    st.v = v_all.narrow(1, v_all.size(1) - keep, keep).clone();
    st.len = keep;
    return {k_all, v_all, old_pos0};
  }
  const int64_t need = st.len + T;
  if (!st.k.defined() || st.k.size(1) < need) {
    const int64_t cap = std::max<int64_t>({need, 2 * (st.k.defined() ? st.k.size(1) : 0), 16});
    at::Tensor k2 = at::empty({k_new.size(0), cap, k_new.size(2)}, k_new.options());
    at::Tensor v2 = at::empty({v_new.size(0), cap, v_new.size(2)}, v_new.options());
    if (st.len > 0) {
      k2.narrow(1, 0, st.len).copy_(st.k.narrow(1, 0, st.len));
      v2.narrow(1, 0, st.len).copy_(st.v.narrow(1, 0, st.len));
    }
    st.k = k2;
    st.v = v2;
  }
  st.k.narrow(1, st.len, T).copy_(k_new);
  st.v.narrow(1, st.len, T).copy_(v_new);
  st.len = need;
  return {st.k.narrow(1, 0, need), st.v.narrow(1, 0, need), old_pos0};
}

}  // namespace

at::Tensor CausalLM::AttentionBlock(int64_t li, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                                    std::vector<ForwardInput>& inputs, const std::vector<int64_t>& offsets,
                                    int64_t num_decode, bool slotted) {
  const ModelConfig& c = config_;
  const Layer& L = layers_[li];
  const int64_t N = h.size(0), H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  at::Tensor qkv = L.wqkv.Forward(h);  // [N, (H + 2 Hkv) D]
  at::Tensor q = qkv.narrow(1, 0, H * D).view({N, H, D});
  at::Tensor k = qkv.narrow(1, H * D, Hkv * D).view({N, Hkv, D});
  at::Tensor v = qkv.narrow(1, (H + Hkv) * D, Hkv * D).view({N, Hkv, D});
  if (c.qk_norm) {
    q = RmsNorm(q, L.q_norm, c.rms_eps);
    k = RmsNorm(k, L.k_norm, c.rms_eps);
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const HybridLayer* hybrid = hybrid_[li].get();
  // Decode rows (inputs [0, num_decode), one token each, rows 0 .. num_decode-1) of a windowed layer go
  // through one batched step; everything else runs per sequence.
  const int64_t B = windows_[li] ? num_decode : 0;
  std::vector<LayerState*> states(B);
  std::vector<int64_t> positions(B);
  std::vector<at::Tensor*> memories(B);
  if (B > 0) {
    if (slotted && slots_->Covers(li)) {  // the states' rows of the decode slots (copied in when elsewhere)
      for (int64_t b = 0; b < B; ++b) slots_->Bind(*inputs[b].state, li);
    }
    for (int64_t b = 0; b < B; ++b) {
      states[b] = &inputs[b].state->layers[li];
      positions[b] = inputs[b].state->num_tokens;
      memories[b] = &states[b]->memory;
    }
  }
  // The fused CPU step rotates its own queries and keys: q_rot, k_rot are only needed by the other rows.
  const bool fused = B > 0 && options_.attention == AttentionImpl::kSdpa && FusedDecodeSupported(states, q, hybrid);
  at::Tensor q_rot, k_rot;
  if (!fused || B < N) {
    if (c.qk_norm) {
      q_rot = ApplyRope(q, cos, sin);
      k_rot = ApplyRope(k, cos, sin);
    } else {  // q and k are adjacent in qkv: one rotation for both
      at::Tensor qk_rot = ApplyRope(qkv.narrow(1, 0, (H + Hkv) * D).view({N, H + Hkv, D}), cos, sin);
      q_rot = qk_rot.narrow(1, 0, H);
      k_rot = qk_rot.narrow(1, H, Hkv);
    }
  }
  std::vector<at::Tensor> outs;
  outs.reserve(inputs.size());
  size_t first = 0;
  if (B > 0) {
    auto rows = [&](const at::Tensor& t) { return B == N ? t : t.narrow(0, 0, B); };
    const SinkWindow sw{*windows_[li], sinks_[li]};
    at::Tensor o;
    if (fused) {
      o = FusedWindowDecodeCpu(states, positions, rows(h), rows(q), rows(k), rows(v), rows(cos), rows(sin), sw,
                               inv_freq_, scale, hybrid);
    } else {
      o = WindowAttentionDecode(states, positions, rows(q), rows(q_rot), rows(k_rot), rows(v), sw, inv_freq_, scale,
                                options_.attention);
      if (hybrid != nullptr) o = hybrid->MixDecode(rows(h), rows(q), rows(k), rows(v), o, memories);
    }
    outs.push_back(o);
    first = static_cast<size_t>(B);
  }
  for (size_t s = first; s < inputs.size(); ++s) {
    const int64_t off = offsets[s], T = offsets[s + 1] - offsets[s];
    SequenceState& st = *inputs[s].state;
    LayerState& ls = st.layers[li];
    at::Tensor o;
    if (sinks_[li] > 0) {
      o = SinkWindowAttention(ls, q.narrow(0, off, T), q_rot.narrow(0, off, T), k_rot.narrow(0, off, T).transpose(0, 1),
                              v.narrow(0, off, T).transpose(0, 1), st.num_tokens, {*windows_[li], sinks_[li]},
                              inv_freq_, scale);
    } else {
      KeysView kv = AppendKv(ls, k_rot.narrow(0, off, T).transpose(0, 1), v.narrow(0, off, T).transpose(0, 1),
                             st.num_tokens, windows_[li]);
      o = CausalAttention(q_rot.narrow(0, off, T), kv.k, kv.v, st.num_tokens, kv.pos0, windows_[li], scale,
                          options_.attention);
    }
    if (hybrid != nullptr) {
      o = hybrid->Mix(h.narrow(0, off, T), q.narrow(0, off, T), k.narrow(0, off, T), v.narrow(0, off, T), o,
                      ls.memory);
    }
    outs.push_back(o);
  }
  at::Tensor attn = outs.size() == 1 ? outs[0] : at::cat(outs, 0);
  return L.wo.Forward(attn);
}

at::Tensor CausalLM::ForwardImpl(std::vector<ForwardInput>& inputs, std::vector<at::Tensor>* logits) {
  const ModelConfig& c = config_;
  // Decode inputs (one token) are ordered first so windowed layers can step them as one batch.
  int64_t num_decode = 0;
  for (const ForwardInput& in : inputs) num_decode += in.tokens.size() == 1 ? 1 : 0;
  std::vector<int64_t> offsets{0};
  std::vector<int64_t> tok, pos;
  for (const ForwardInput& in : inputs) {
    for (size_t i = 0; i < in.tokens.size(); ++i) {
      tok.push_back(in.tokens[i]);
      pos.push_back(in.state->num_tokens + static_cast<int64_t>(i));
    }
    offsets.push_back(static_cast<int64_t>(tok.size()));
  }
  auto lopt = at::TensorOptions().dtype(at::kLong);
  at::Tensor tokens = at::tensor(tok, lopt).to(options_.device);
  at::Tensor positions = at::tensor(pos, lopt).to(options_.device);
  auto [cos, sin] = RopeCosSin(inv_freq_, positions, options_.dtype);

  // Decode rows take decode slots when the model keeps them; when they run out this step stacks instead.
  bool slotted = false;
  if (num_decode > 0) {
    if (DecodeSlots* ds = Slots()) {
      slotted = true;
      for (int64_t b = 0; b < num_decode; ++b) {
        SequenceState& st = *inputs[b].state;
        if (!ds->Holds(st) && !ds->Acquire(st)) slotted = false;
      }
    }
  }
  at::Tensor x = embed_.Lookup(tokens, options_.dtype);  // [N, hidden]
  for (int64_t li = 0; li < c.num_layers; ++li) {
    const Layer& L = layers_[li];
    x = x + AttentionBlock(li, RmsNorm(x, L.attn_norm, c.rms_eps), cos, sin, inputs, offsets, num_decode, slotted);
    at::Tensor gu = L.w_gate_up.Forward(RmsNorm(x, L.ffn_norm, c.rms_eps));  // [N, 2F]
    const int64_t F = c.intermediate_size;
    x = x + L.w_down.Forward(at::silu(gu.narrow(1, 0, F)) * gu.narrow(1, F, F));
  }
  // Only the rows whose logits are wanted go through the (vocab-sized) head.
  std::vector<at::Tensor> rows;
  for (size_t s = 0; s < inputs.size(); ++s) {
    const int64_t T = offsets[s + 1] - offsets[s];
    rows.push_back(inputs[s].all_logits ? x.narrow(0, offsets[s], T) : x.narrow(0, offsets[s + 1] - 1, 1));
  }
  at::Tensor sel = RmsNorm(rows.size() == 1 ? rows[0] : at::cat(rows, 0), final_norm_, c.rms_eps);
  at::Tensor all = lm_head_.Forward(sel).to(at::kFloat).to(at::kCPU);
  int64_t r = 0;
  for (size_t s = 0; s < inputs.size(); ++s) {
    const int64_t n = rows[s].size(0);
    logits->push_back(all.narrow(0, r, n));
    r += n;
    inputs[s].state->num_tokens += offsets[s + 1] - offsets[s];
  }
  return all;
}

absl::StatusOr<std::vector<at::Tensor>> CausalLM::Forward(std::vector<ForwardInput>& inputs) {
  for (const ForwardInput& in : inputs) {
    if (in.state == nullptr) return absl::InvalidArgumentError("forward: input without a state");
    if (in.tokens.empty()) return absl::InvalidArgumentError("forward: input without tokens");
    if (static_cast<int64_t>(in.state->layers.size()) != config_.num_layers) {
      return absl::InvalidArgumentError("forward: state was made for another model");
    }
    for (int32_t t : in.tokens) {
      if (t < 0 || t >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("forward: token id ", t, " outside [0, ",
                                                       config_.vocab_size, ")"));
      }
    }
  }
  std::vector<const SequenceState*> seen;
  for (const ForwardInput& in : inputs) seen.push_back(in.state);
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
    return absl::InvalidArgumentError("forward: two inputs share one state");
  }
  // Decode inputs first (stable), as ForwardImpl expects; logits are returned in the caller's order.
  std::vector<size_t> order;
  order.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].tokens.size() == 1) order.push_back(i);
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].tokens.size() != 1) order.push_back(i);
  }
  bool identity = true;
  for (size_t i = 0; i < order.size(); ++i) identity = identity && order[i] == i;
  std::vector<ForwardInput> permuted;
  if (!identity) {
    permuted.reserve(inputs.size());
    for (size_t i : order) permuted.push_back(inputs[i]);
  }
  std::vector<at::Tensor> logits;
  try {
    at::NoGradGuard no_grad;
    ForwardImpl(identity ? inputs : permuted, &logits);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward failed: ", e.what_without_backtrace()));
  }
  if (identity) return logits;
  std::vector<at::Tensor> out(inputs.size());
  for (size_t i = 0; i < order.size(); ++i) out[order[i]] = std::move(logits[i]);
  return out;
}

}  // namespace titand
