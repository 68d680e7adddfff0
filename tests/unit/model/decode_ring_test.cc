// The in-place decode step (issue 9): batch-resident rows (core/model/batch_rows.h) and the ring layout
// of full window caches (core/model/sequence_state.h). The reference for every output is the same
// sequence run alone in one prefill (the per-sequence path, which never sees a ring or a shared block).
#include <gtest/gtest.h>

#include <c10/util/Exception.h>

#include "core/model/batch_rows.h"
#include "core/model/causal_lm.h"
#include "core/model/sink_attention.h"
#include "tests/unit/testing/model_runs.h"
#include "tests/unit/testing/tiny_model.h"

namespace titand {
namespace {

using testing::RunPieces;

constexpr int64_t kWindow = 5, kSinks = 3;

std::unique_ptr<CausalLM> MakeHybrid(int64_t sinks, AttentionImpl impl) {
  return testing::TinyHybridModel(/*seed=*/17, kWindow, sinks, /*mu=*/0.4, impl);
}

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((seed * 31 + i * 7) % 97);
  return t;
}

float MaxDiff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<float>(); }

TEST(BatchRows, StacksOnceThenFindsTheRowsInPlace) {
  at::manual_seed(3);
  std::vector<at::Tensor> t = {at::randn({2, 4, 3}), at::randn({2, 4, 3}), at::randn({2, 4, 3})};
  const std::vector<at::Tensor> want = {t[0].clone(), t[1].clone(), t[2].clone()};
  std::vector<at::Tensor*> p = {&t[0], &t[1], &t[2]};
  BatchBlock bb = BatchRows(p);
  const at::Tensor block = bb.block;
  ASSERT_EQ(block.sizes(), at::IntArrayRef({3, 2, 4, 3}));
  EXPECT_TRUE(bb.identity);
  for (int b = 0; b < 3; ++b) {
    EXPECT_TRUE(at::equal(block[b], want[b]));
    EXPECT_EQ(t[b].data_ptr(), block[b].data_ptr()) << "part " << b << " re-bound to its row";
    EXPECT_TRUE(SharesLargerStorage(t[b]));
  }
  // The same parts again: the block itself, no copy; a write through it reaches the parts.
  BatchBlock again = BatchRows(p);
  EXPECT_EQ(again.block.data_ptr(), block.data_ptr());
  EXPECT_TRUE(again.identity);
  again.block[1].fill_(7.0);
  EXPECT_TRUE(at::equal(t[1], at::full({2, 4, 3}, 7.0)));
  // The first two rows (a sequence left the end of the batch): the first two rows of the block.
  std::vector<at::Tensor*> first_two = {&t[0], &t[1]};
  BatchBlock two = BatchRows(first_two);
  EXPECT_EQ(two.block.data_ptr(), block.data_ptr());
  EXPECT_TRUE(two.identity);
  EXPECT_EQ(two.block.size(0), 2);
  // Other rows in another order (one left from the middle, the batch reordered): the block up to the
  // highest row used, with each part's row, still no copy.
  std::vector<at::Tensor*> swapped = {&t[2], &t[0]};
  BatchBlock other = BatchRows(swapped);
  EXPECT_EQ(other.block.data_ptr(), block.data_ptr());
  EXPECT_FALSE(other.identity);
  EXPECT_EQ(other.rows, (std::vector<int64_t>{2, 0}));
  EXPECT_EQ(other.block.size(0), 3);
  EXPECT_TRUE(at::equal(other.block[other.rows[0]], want[2]));
  // Forced: a fresh stack in the asked order, the parts move to it.
  BatchBlock copied = StackRows(swapped);
  EXPECT_NE(copied.block.data_ptr(), block.data_ptr());
  EXPECT_TRUE(at::equal(copied.block[0], want[2]));
  EXPECT_TRUE(at::equal(copied.block[1], want[0]));
  EXPECT_EQ(t[2].data_ptr(), copied.block[0].data_ptr());
  // A part that is not a row of the others' block: a copy.
  at::Tensor stray = at::randn({2, 4, 3});
  std::vector<at::Tensor*> mixed = {&t[1], &stray};
  EXPECT_NE(BatchRows(mixed).block.data_ptr(), block.data_ptr());
  // A single part is viewed, never copied.
  at::Tensor own = at::randn({2, 4, 3});
  std::vector<at::Tensor*> one = {&own};
  EXPECT_EQ(BatchRows(one).block.data_ptr(), own.data_ptr());
  EXPECT_FALSE(SharesLargerStorage(own));
  // Parts of different shapes are refused.
  at::Tensor small = at::randn({2, 3, 3});
  std::vector<at::Tensor*> bad = {&own, &small};
  EXPECT_THROW(BatchRows(bad), c10::Error);
  EXPECT_THROW(BatchRows({}), c10::Error);
}

// One forward of one token per listed sequence (in the listed order); appends each logits row.
void DecodeStep(CausalLM& m, const std::vector<int>& who, const std::vector<std::vector<int32_t>>& seqs,
                std::vector<SequenceState>& st, std::vector<size_t>& fed, std::vector<at::Tensor>& rows) {
  std::vector<ForwardInput> in;
  for (int s : who) {
    ForwardInput f;
    f.tokens = {seqs[s][fed[s]]};
    f.state = &st[s];
    f.all_logits = true;
    in.push_back(std::move(f));
  }
  auto out = m.Forward(in);
  ASSERT_TRUE(out.ok()) << out.status();
  for (size_t i = 0; i < who.size(); ++i) {
    const int s = who[i];
    rows[s] = at::cat({rows[s], (*out)[i]}, 0);
    ++fed[s];
  }
}

// Sequences decoded together while the batch changes under them: one leaves from the middle, the order
// is reversed, it comes back, a prefill chunk joins. Every logits row equals the sequence alone; once
// the batch is stable, a step writes the caches where they are (no copy) and the ring layout is in use.
// Without decode slots (0), with fewer slots than sequences (2: some steps stack), and with enough (4:
// the states stay in their rows through every change of membership and order).
TEST(DecodeRing, BatchChangesKeepEverySequenceEqualToItselfAlone) {
  for (int64_t slots : {int64_t{0}, int64_t{2}, int64_t{4}})
  for (int64_t sinks : {int64_t{0}, kSinks}) {
    for (AttentionImpl impl : {AttentionImpl::kSdpa, AttentionImpl::kReference}) {
      SCOPED_TRACE(::testing::Message() << "slots " << slots << " sinks " << sinks << " impl "
                                        << static_cast<int>(impl));
      auto m = MakeHybrid(sinks, impl);
      m->EnableDecodeSlots(slots);
      const std::vector<int> prompt = {12, 2, 7, 20};  // full, young, about to fill, long past the window
      const int total = 60;
      std::vector<std::vector<int32_t>> seqs;
      std::vector<SequenceState> st;
      std::vector<size_t> fed(4, 0);
      std::vector<at::Tensor> rows(4);
      for (int s = 0; s < 4; ++s) {
        seqs.push_back(Tokens(total, s + 3));
        st.push_back(m->NewState());
        std::vector<ForwardInput> in(1);
        in[0].tokens.assign(seqs[s].begin(), seqs[s].begin() + prompt[s]);
        in[0].state = &st[s];
        in[0].all_logits = true;
        auto out = m->Forward(in);
        ASSERT_TRUE(out.ok()) << out.status();
        rows[s] = (*out)[0];
        fed[s] = prompt[s];
      }
      for (int k = 0; k < 14; ++k) DecodeStep(*m, {0, 1, 2, 3}, seqs, st, fed, rows);
      // Stable batch: the next step writes in place.
      const void* k0 = st[0].layers[0].k.data_ptr();
      const void* s0 = st[3].layers[1].memory.data_ptr();
      DecodeStep(*m, {0, 1, 2, 3}, seqs, st, fed, rows);
      EXPECT_EQ(st[0].layers[0].k.data_ptr(), k0);
      EXPECT_EQ(st[3].layers[1].memory.data_ptr(), s0);
      for (int s = 0; s < 4; ++s) EXPECT_FALSE(st[s].layers[0].in_order()) << "sequence " << s;
      EXPECT_EQ(m->DecodeSlotsInUse(), std::min<int64_t>(slots, 4));
      const void* k3 = st[3].layers[1].k.data_ptr();
      for (int k = 0; k < 4; ++k) DecodeStep(*m, {0, 2, 3}, seqs, st, fed, rows);  // 1 paused
      for (int k = 0; k < 4; ++k) DecodeStep(*m, {3, 2, 0}, seqs, st, fed, rows);  // reversed
      if (slots == 4) {  // in its slot through both changes: nothing was copied
        EXPECT_EQ(st[3].layers[1].k.data_ptr(), k3);
        EXPECT_EQ(st[3].slot->index, 3);
      }
      for (int k = 0; k < 3; ++k) DecodeStep(*m, {3, 1, 2, 0}, seqs, st, fed, rows);  // 1 is back
      // A prefill chunk of sequence 1 between decode steps of the others (its ring goes back in order).
      {
        std::vector<ForwardInput> in(3);
        in[0].tokens = {seqs[0][fed[0]]};
        in[0].state = &st[0];
        in[1].tokens.assign(seqs[1].begin() + fed[1], seqs[1].begin() + fed[1] + 3);
        in[1].state = &st[1];
        in[2].tokens = {seqs[2][fed[2]]};
        in[2].state = &st[2];
        for (auto& f : in) f.all_logits = true;
        auto out = m->Forward(in);
        ASSERT_TRUE(out.ok()) << out.status();
        for (int s = 0; s < 3; ++s) {  // inputs 0, 1, 2 are sequences 0, 1, 2
          rows[s] = at::cat({rows[s], (*out)[s]}, 0);
          fed[s] += in[s].tokens.size();
        }
      }
      for (int k = 0; k < 3; ++k) DecodeStep(*m, {0, 1, 2, 3}, seqs, st, fed, rows);
      for (int s = 0; s < 4; ++s) {
        ASSERT_LE(fed[s], seqs[s].size());
        std::vector<int32_t> ids(seqs[s].begin(), seqs[s].begin() + fed[s]);
        ASSERT_EQ(rows[s].size(0), static_cast<int64_t>(fed[s]));
        EXPECT_LT(MaxDiff(RunPieces(*m, ids, {1000}), rows[s]), 1e-5) << "sequence " << s;
        for (const LayerState& l : st[s].layers) {
          EXPECT_EQ(l.len, SinkWindowCacheLen({kWindow, sinks}, st[s].num_tokens)) << "sequence " << s;
        }
      }
      // Requests end: compacted states give their slots back and keep their values.
      const at::Tensor before = st[1].layers[0].OrderedKv().first.clone();
      for (auto& x : st) x.Compact();
      EXPECT_EQ(m->DecodeSlotsInUse(), 0);
      EXPECT_TRUE(at::equal(st[1].layers[0].OrderedKv().first, before));
      EXPECT_FALSE(SharesLargerStorage(st[1].layers[0].k));
    }
  }
}

// A state in the ring layout forks (entries in order, own storage), compacts (own storage, layout and
// values kept) and normalizes; each copy continues exactly like the original. The reference path keeps the
// batch's caches as rows of one block; the fused CPU step (kSdpa) writes each sequence's own tensors.
TEST(DecodeRing, ForkCompactAndNormalizeContinueLikeTheOriginal) {
  for (AttentionImpl impl : {AttentionImpl::kReference, AttentionImpl::kSdpa}) {
    SCOPED_TRACE(::testing::Message() << "impl " << static_cast<int>(impl));
    auto m = MakeHybrid(kSinks, impl);
    auto ids = Tokens(30, 9);
    std::vector<SequenceState> st = {m->NewState(), m->NewState()};
    std::vector<std::vector<int32_t>> seqs = {ids, Tokens(30, 10)};
    std::vector<size_t> fed = {0, 0};
    std::vector<at::Tensor> rows = {at::empty({0, 97}), at::empty({0, 97})};
    for (int k = 0; k < 16; ++k) DecodeStep(*m, {0, 1}, seqs, st, fed, rows);
    const LayerState& l0 = st[0].layers[0];
    ASSERT_FALSE(l0.in_order());
    if (impl == AttentionImpl::kReference) {
      ASSERT_TRUE(SharesLargerStorage(l0.k));  // a row of the two-sequence block
    }
    auto [k_before, v_before] = l0.OrderedKv();
    ASSERT_EQ(k_before.size(1), l0.len);

    SequenceState fork = st[0].Fork();
    EXPECT_TRUE(fork.layers[0].in_order());
    EXPECT_FALSE(SharesLargerStorage(fork.layers[0].k));
    EXPECT_TRUE(at::equal(fork.layers[0].k, k_before));
    st[0].Compact();
    EXPECT_FALSE(st[0].layers[0].in_order());  // layout kept
    EXPECT_FALSE(SharesLargerStorage(st[0].layers[0].k));
    EXPECT_FALSE(SharesLargerStorage(st[0].layers[1].memory));
    EXPECT_TRUE(at::equal(st[0].layers[0].OrderedKv().first, k_before));
    EXPECT_TRUE(at::equal(st[0].layers[0].OrderedKv().second, v_before));
    SequenceState compacted = st[0].Fork();
    compacted.layers[0].Normalize();
    EXPECT_EQ(compacted.layers[0].k.size(1), compacted.layers[0].len);

    // The original (ring, compacted), its fork (in order) and the sequence alone see the same next tokens.
    std::vector<at::Tensor> a = {rows[0], at::empty({0, 97})};
    std::vector<SequenceState> pair = {std::move(fork), std::move(compacted)};
    std::vector<std::vector<int32_t>> same = {ids, ids};
    std::vector<size_t> pos = {fed[0], fed[0]};
    std::vector<at::Tensor> fork_rows = {at::empty({0, 97}), at::empty({0, 97})};
    for (int k = 0; k < 8; ++k) {
      DecodeStep(*m, {0}, seqs, st, fed, rows);
      DecodeStep(*m, {0, 1}, same, pair, pos, fork_rows);
    }
    at::Tensor alone = RunPieces(*m, std::vector<int32_t>(ids.begin(), ids.begin() + fed[0]), {1000});
    const int64_t n = fork_rows[0].size(0);
    // 2e-5: float32 logits of the decode path (fused on the CPU) vs the prefill path, two summation orders.
    EXPECT_LT(MaxDiff(rows[0].narrow(0, rows[0].size(0) - n, n), alone.narrow(0, alone.size(0) - n, n)), 2e-5);
    EXPECT_LT(MaxDiff(fork_rows[0], alone.narrow(0, alone.size(0) - n, n)), 2e-5);
    EXPECT_LT(MaxDiff(fork_rows[1], alone.narrow(0, alone.size(0) - n, n)), 2e-5);
  }
}

// Re-shaping the model (SetHybrid) drops its decode slots; states holding old leases take new slots and
// decode on correctly, and the old leases are never mistaken for new ones.
TEST(DecodeRing, SlotsRebuiltAfterSetHybrid) {
  auto m = MakeHybrid(kSinks, AttentionImpl::kSdpa);
  m->EnableDecodeSlots(2);
  std::vector<std::vector<int32_t>> seqs = {Tokens(30, 21), Tokens(30, 22)};
  std::vector<SequenceState> st = {m->NewState(), m->NewState()};
  std::vector<size_t> fed = {0, 0};
  std::vector<at::Tensor> rows = {at::empty({0, 97}), at::empty({0, 97})};
  for (int k = 0; k < 10; ++k) DecodeStep(*m, {0, 1}, seqs, st, fed, rows);
  ASSERT_EQ(m->DecodeSlotsInUse(), 2);
  const ModelConfig& c = m->config();
  m->SetHybrid(1, testing::TinyGatedDeltaLayer(c, 0.4), kWindow, kSinks);  // same layer, new object
  EXPECT_EQ(m->DecodeSlotsInUse(), 0);
  for (int k = 0; k < 10; ++k) DecodeStep(*m, {1, 0}, seqs, st, fed, rows);
  EXPECT_EQ(m->DecodeSlotsInUse(), 2);
  EXPECT_NE(st[0].slot->index, st[1].slot->index);
  for (int s = 0; s < 2; ++s) {
    at::Tensor alone = RunPieces(*m, std::vector<int32_t>(seqs[s].begin(), seqs[s].begin() + fed[s]), {1000});
    EXPECT_LT(MaxDiff(alone, rows[s]), 1e-5) << "sequence " << s;
  }
}

// A state whose entries do not match its position is refused, not read out of bounds.
TEST(DecodeRing, InconsistentStateIsRefused) {
  auto m = MakeHybrid(kSinks, AttentionImpl::kSdpa);
  SequenceState st = m->NewState();
  std::vector<ForwardInput> in(1);
  in[0].tokens = Tokens(9, 1);
  in[0].state = &st;
  ASSERT_TRUE(m->Forward(in).ok());
  st.layers[0].len -= 1;
  in[0].tokens = {4};
  auto out = m->Forward(in);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(out.status().message().find("entries at position"), std::string::npos) << out.status();
}

}  // namespace
}  // namespace titand
