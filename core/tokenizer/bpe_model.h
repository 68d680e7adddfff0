// Byte-level BPE merge engine. A word (raw bytes) starts as one symbol per byte (the vocabulary token
// spelling that byte); then, repeatedly, the adjacent pair with the lowest merge rank (rank = index in
// the merge list; ties: leftmost pair first) is replaced by its merged token until no pair has a rank.
// With ignore_merges (Llama 3), a word that is itself a vocabulary token is emitted whole first.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace titand {

class BpeModel {
 public:
  // tokens: spellings in the GPT-2 byte alphabet (others, e.g. "<|im_end|>" written outside it, take
  // no part in BPE); merges: "left right" spellings. A merge naming a token not in the vocabulary, or
  // whose concatenation is not in it, is INVALID_ARGUMENT.
  static absl::StatusOr<BpeModel> Create(const std::vector<std::string>& tokens,
                                         const std::vector<std::string>& merges, bool ignore_merges);

  // Appends the token ids of one pre-tokenized word. Bytes with no vocabulary token are dropped.
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;

  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_token_{};                 // byte -> token id, -1 if absent
  std::unordered_map<std::string, int32_t> bytes_to_id_;  // raw bytes -> id (ignore_merges lookup)
  std::unordered_map<uint64_t, Merge> merges_;            // (left id, right id) -> rank, result
};

}  // namespace titand
