#include "core/tokenizer/bpe_model.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "core/tokenizer/byte_map.h"

namespace titand {

absl::StatusOr<BpeModel> BpeModel::Create(const std::vector<std::string>& tokens,
                                          const std::vector<std::string>& merges,
                                          bool ignore_merges) {
  BpeModel m;
  m.ignore_merges_ = ignore_merges;
  m.byte_token_.fill(-1);
  std::unordered_map<std::string_view, int32_t> spelling_to_id;
  spelling_to_id.reserve(tokens.size() * 2);
  m.bytes_to_id_.reserve(tokens.size() * 2);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t id = static_cast<int32_t>(i);
    spelling_to_id.emplace(tokens[i], id);
    std::string bytes;
    if (tokens[i].empty() || !TokenSpellingToBytes(tokens[i], &bytes)) continue;
    m.bytes_to_id_.emplace(bytes, id);
    if (bytes.size() == 1 && m.byte_token_[static_cast<uint8_t>(bytes[0])] < 0) {
      m.byte_token_[static_cast<uint8_t>(bytes[0])] = id;
    }
  }
  m.merges_.reserve(merges.size() * 2);
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& line = merges[r];
    const size_t sp = line.find(' ', 1);
    if (sp == std::string::npos || sp + 1 >= line.size()) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", r, " ('", line, "') is not 'left right'"));
    }
    const std::string_view left(line.data(), sp), right(line.data() + sp + 1, line.size() - sp - 1);
    const std::string joined = std::string(left) + std::string(right);
    const auto a = spelling_to_id.find(left), b = spelling_to_id.find(right);
    const auto c = spelling_to_id.find(joined);
    if (a == spelling_to_id.end() || b == spelling_to_id.end() || c == spelling_to_id.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", r, " ('", line, "') uses a token missing from the vocabulary"));
    }
    m.merges_.emplace(PairKey(a->second, b->second), Merge{static_cast<int32_t>(r), c->second});
  }
  return m;
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  const size_t n = word.size();
  if (n == 0) return;
  if (ignore_merges_ || n == 1) {
    const auto it = bytes_to_id_.find(std::string(word));
    if (it != bytes_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  struct Sym {
    int32_t id;
    int32_t prev, next;  // linked list over live symbols; -1 at the ends
  };
  struct Cand {
    int32_t rank, pos, left, right, result;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Cand> heap;  // min-heap on (rank, pos) via std::greater
  syms.resize(n);
  for (size_t i = 0; i < n; ++i) {
    syms[i] = {byte_token_[static_cast<uint8_t>(word[i])], static_cast<int32_t>(i) - 1,
               i + 1 < n ? static_cast<int32_t>(i + 1) : -1};
  }
  heap.clear();
  const auto consider = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t nx = syms[pos].next;
    if (nx < 0 || syms[pos].id < 0 || syms[nx].id < 0) return;
    const auto it = merges_.find(PairKey(syms[pos].id, syms[nx].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, syms[pos].id, syms[nx].id, it->second.result});
    std::push_heap(heap.begin(), heap.end(), std::greater<Cand>());
  };
  for (size_t i = 0; i + 1 < n; ++i) consider(static_cast<int32_t>(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Cand>());
    const Cand c = heap.back();
    heap.pop_back();
    Sym& s = syms[c.pos];
    if (s.id != c.left || s.next < 0 || syms[s.next].id != c.right) continue;  // stale entry
    const int32_t gone = s.next;
    s.id = c.result;
    s.next = syms[gone].next;
    syms[gone].id = -2;  // dead
    if (s.next >= 0) syms[s.next].prev = c.pos;
    consider(s.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    if (syms[i].id >= 0) out->push_back(syms[i].id);
  }
}

}  // namespace titand
