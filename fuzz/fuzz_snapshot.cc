// Session snapshot codec (core/session/snapshot.h) on arbitrary bytes. The first byte picks the mode:
//   0: the input as a whole snapshot (header peek + full restore);
//   1: the input as the header JSON, wrapped with a valid prefix and header digest, so the JSON checks
//      are reached past the checksum;
//   2: the input as a whole snapshot whose trailing file digest is recomputed, so the tensor-data path
//      is reached. Restores must answer a status, never crash or over-read.
#include "core/common/sha256.h"
#include "core/session/snapshot.h"
#include "fuzz/fuzz_util.h"

namespace {

titand::SnapshotBinding Binding() {
  titand::SnapshotBinding b;
  b.model_id = "m";
  b.num_layers = 2;
  b.num_kv_heads = 1;
  b.head_dim = 4;
  b.dtype = "float32";
  return b;
}

void Append32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void AppendDigest(std::string* s) {
  titand::Sha256 h;
  h.Update(s->data(), s->size());
  const auto d = h.Final();
  s->append(reinterpret_cast<const char*>(d.data()), d.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string bytes;
  switch (data[0] % 3) {
    case 0:
      bytes = std::string(rest);
      break;
    case 1: {
      bytes = std::string(titand::kSnapshotMagic, 8);
      Append32(&bytes, titand::kSnapshotVersion);
      Append32(&bytes, static_cast<uint32_t>(rest.size()));
      bytes += rest;
      AppendDigest(&bytes);
      auto h = titand::PeekSnapshotHeader(bytes);
      if (!h.ok() || h->data_bytes > (1 << 20)) return 0;
      bytes.append(static_cast<size_t>(h->data_bytes), '\0');  // data of the declared size
      AppendDigest(&bytes);
      break;
    }
    default:
      if (rest.size() < titand::kSnapshotDigestBytes) return 0;
      bytes = std::string(rest.substr(0, rest.size() - titand::kSnapshotDigestBytes));
      AppendDigest(&bytes);
  }
  (void)titand::PeekSnapshotHeader(bytes);
  (void)titand::DeserializeCursor(bytes, Binding(), at::kCPU);
  return 0;
}
