// Ways of feeding token sequences through a CausalLM that the model tests compare against each other
// (header-only). Each returns the fp32 logits of every fed token, [tokens, vocab].
#pragma once

#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/model/causal_lm.h"
#include "core/model/weight_source.h"
#include "tests/unit/testing/tiny_model.h"

namespace titand::testing {

// A 2-layer tiny Llama (vocab 97, random weights from `seed`, scale 0.3) whose layers are both gated-delta
// TPTT layers (TinyGatedDeltaLayer) with the given window, sinks and mu.
inline std::unique_ptr<CausalLM> TinyHybridModel(uint64_t seed, int64_t window, int64_t sinks, double mu,
                                                 AttentionImpl impl = AttentionImpl::kSdpa) {
  ModelConfig c = TinyLlamaConfig(/*vocab_size=*/97, /*num_layers=*/2);
  auto src = MakeMapWeights(RandomLlamaWeights(c, seed, /*scale=*/0.3));
  ModelOptions opts;
  opts.attention = impl;
  auto m = CausalLM::Create(c, *src, opts);
  EXPECT_TRUE(m.ok()) << m.status();
  for (int64_t i = 0; i < c.num_layers; ++i) (*m)->SetHybrid(i, TinyGatedDeltaLayer(c, mu), window, sinks);
  return std::move(m).value();
}

// One sequence alone, fed in pieces of the given sizes (the last size repeats until the end): {1000} is
// "at once" for short sequences, {1} is token by token.
inline at::Tensor RunPieces(CausalLM& m, const std::vector<int32_t>& ids, std::vector<size_t> pieces) {
  SequenceState st = m.NewState();
  std::vector<at::Tensor> rows;
  size_t off = 0, k = 0;
  while (off < ids.size()) {
    const size_t n = std::min(ids.size() - off, pieces[std::min(k++, pieces.size() - 1)]);
    std::vector<ForwardInput> in(1);
    in[0].tokens.assign(ids.begin() + off, ids.begin() + off + n);
    in[0].state = &st;
    in[0].all_logits = true;
    auto out = m.Forward(in);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return at::Tensor();
    rows.push_back((*out)[0]);
    off += n;
  }
  return at::cat(rows, 0);
}

// Several sequences together: the first prompt_len[s] tokens of every sequence prefilled in one forward,
// then the rest decoded together one token per sequence per forward (all sequences the same length beyond
// their prompts). `states` receives the final states. Returns each sequence's logits rows.
inline std::vector<at::Tensor> PrefillThenDecodeTogether(CausalLM& m, const std::vector<std::vector<int32_t>>& seqs,
                                                         const std::vector<int>& prompt_len,
                                                         std::vector<SequenceState>* states) {
  const size_t n = seqs.size();
  states->clear();
  for (size_t s = 0; s < n; ++s) states->push_back(m.NewState());
  std::vector<at::Tensor> rows(n);
  std::vector<ForwardInput> in(n);
  for (size_t s = 0; s < n; ++s) {
    in[s].tokens.assign(seqs[s].begin(), seqs[s].begin() + prompt_len[s]);
    in[s].state = &(*states)[s];
    in[s].all_logits = true;
  }
  auto out = m.Forward(in);
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok()) return {};
  for (size_t s = 0; s < n; ++s) rows[s] = (*out)[s];
  const size_t steps = seqs[0].size() - prompt_len[0];
  for (size_t k = 0; k < steps; ++k) {
    std::vector<ForwardInput> dec(n);
    for (size_t s = 0; s < n; ++s) {
      dec[s].tokens = {seqs[s][prompt_len[s] + k]};
      dec[s].state = &(*states)[s];
    }
    auto o = m.Forward(dec);
    EXPECT_TRUE(o.ok()) << o.status();
    if (!o.ok()) return {};
    for (size_t s = 0; s < n; ++s) rows[s] = at::cat({rows[s], (*o)[s]}, 0);
  }
  return rows;
}

}  // namespace titand::testing
