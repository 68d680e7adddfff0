// A Llama-family decoder (llama, mistral, qwen2, qwen3) on LibTorch. The model owns only weights; each
// sequence's state is passed in by the caller. One Forward runs any mix of prefill chunks and decode
// steps of independent sequences: the projections and MLPs run on all tokens packed together
// ([N, hidden]), attention runs per sequence against that sequence's own state.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "core/model/embedding_table.h"
#include "core/model/decode_slots.h"
#include "core/model/hybrid_layer.h"
#include "core/model/linear_weight.h"
#include "core/model/model_config.h"
#include "core/model/ops.h"
#include "core/model/sequence_state.h"
#include "core/model/weight_source.h"

namespace titand {

// TPTT linear-memory branch of a converted layer.

struct ModelOptions {
  at::ScalarType dtype = at::kFloat;  // weights + activations: kFloat, kBFloat16 or kHalf (memory S is fp32)
  at::Device device = at::kCPU;       // where weights, states and activations live
  // Attention: the fast kernels (SDPA; on the CPU in float32 the fused decode step of windowed layers,
  // core/model/hybrid_decode_cpu.h), or kReference: LibTorch's exact step by step path (what tests compare with).
  AttentionImpl attention = AttentionImpl::kSdpa;
  // Storage of the linear weights and the embedding table (core/model/weight_loader.h): kDtype = dense
  // `dtype`; kAuto keeps a GGUF tensor's precision class on CPU (Q4 -> int4, Q8_0 -> int8, floats -> dtype).
  WeightFormat weights = WeightFormat::kDtype;
};

struct ForwardInput {
  std::vector<int32_t> tokens;   // new tokens of this sequence (>= 1)
  SequenceState* state = nullptr;
  bool all_logits = false;       // logits for every new token (scoring) or only the last (generation)
};

class CausalLM {
 public:
  static absl::StatusOr<std::unique_ptr<CausalLM>> Create(const ModelConfig& config, WeightSource& weights,
                                                          const ModelOptions& options);
  ~CausalLM();

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  int64_t ParameterCount() const;
  // Bytes held by the weights as stored at run time (packed int4/int8 + scales, or dense).
  int64_t WeightBytes() const;
  // The format of the layer linears ("int4", "int8", "f32", ...; "mixed" if they differ), followed by
  // ", LM head <format>" when the LM head is stored differently ("int4, LM head int8"), for reports.
  std::string WeightFormatSummary() const;

  // Bytes of a SequenceState that has processed `tokens` tokens (equals SequenceState::ByteSize()).
  int64_t StateBytesAt(int64_t tokens) const;
  // A fresh state shaped for this model (every layer empty).
  SequenceState NewState() const;
  // Per input: fp32 logits [T, vocab] (all_logits) or [1, vocab]. States advance by their tokens.
  // Decode inputs (one token each) of windowed/TPTT layers are stepped as one batch (WindowAttentionDecode,
  // HybridLayer::MixDecode); prefill chunks run per sequence. Two inputs must not share a state.
  absl::StatusOr<std::vector<at::Tensor>> Forward(std::vector<ForwardInput>& inputs);

  // Sliding window (keys a query sees, itself included) of layer i; nullopt = full causal range.
  std::optional<int64_t> LayerWindow(int64_t i) const { return windows_[i]; }
  // Attention sinks of layer i (first tokens kept by its softmax branch, core/model/sink_attention.h); 0 = none.
  int64_t LayerSinks(int64_t i) const { return sinks_[i]; }
  // Turns layer i into a TPTT hybrid layer (softmax over `window` plus `sinks` attention sinks + linear
  // memory, mixed by MaG). sinks > 0 needs a window.
  void SetHybrid(int64_t i, std::unique_ptr<HybridLayer> hybrid, std::optional<int64_t> window, int64_t sinks = 0);
  const HybridLayer* hybrid(int64_t i) const { return hybrid_[i].get(); }

  // Keeps the window caches and linear memories of up to `slots` decoding sequences in batch-resident
  // rows (core/model/decode_slots.h), allocated now: slots x DecodeSlotBytes(). A batch whose membership
  // changes then copies only the sequences that join. 0 turns it off (the default: states are stacked per
  // batch, core/model/batch_rows.h). Called by the engine with its max_running.
  void EnableDecodeSlots(int64_t slots);
  // Bytes one decode slot holds (0 when no layer is covered: no windowed layer, or windows too long).
  int64_t DecodeSlotBytes() const;
  // Slots currently held by sequences (0 when off).
  int64_t DecodeSlotsInUse() const;

 private:
  struct Layer {
    at::Tensor attn_norm, q_norm, k_norm, ffn_norm;
    LinearWeight wqkv, wo, w_gate_up, w_down;  // q|k|v and gate|up fused by rows; biases inside
  };
  CausalLM(ModelConfig config, ModelOptions options) : config_(std::move(config)), options_(options) {}
  absl::Status Load(WeightSource& weights);
  at::Tensor AttentionBlock(int64_t li, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                            std::vector<ForwardInput>& inputs, const std::vector<int64_t>& offsets,
                            int64_t num_decode, bool slotted);
  std::vector<DecodeSlots::LayerSpec> SlotLayers() const;
  DecodeSlots* Slots();  // built on first use after EnableDecodeSlots / SetHybrid; null when off
  at::Tensor ForwardImpl(std::vector<ForwardInput>& inputs, std::vector<at::Tensor>* logits);

  ModelConfig config_;
  ModelOptions options_;
  EmbeddingTable embed_;
  LinearWeight lm_head_;
  bool tied_head_ = false;
  at::Tensor final_norm_, inv_freq_;
  std::vector<Layer> layers_;
  std::vector<std::optional<int64_t>> windows_;
  std::vector<int64_t> sinks_;
  std::vector<std::unique_ptr<HybridLayer>> hybrid_;
  int64_t decode_slots_ = 0;
  std::unique_ptr<DecodeSlots> slots_;
};

}  // namespace titand
