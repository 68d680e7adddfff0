// SHA-256 (FIPS 180-4), incremental. Used for snapshot checksums and the base-model identity.
//   Sha256 h; h.Update(p, n); ...; auto digest = h.Final();   // 32 bytes, big-endian words
// After Final() the object is reset and may be reused for a new message.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace titand {

class Sha256 {
 public:
  Sha256() { Reset(); }
  void Reset();
  void Update(const void* data, size_t n);
  std::array<uint8_t, 32> Final();

 private:
  void Compress(const uint8_t block[64]);

  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;    // bytes waiting in buf_, < 64
  uint64_t total_ = 0;    // message length in bytes so far
};

// Lowercase hex of a digest (64 characters).
std::string DigestHex(const std::array<uint8_t, 32>& digest);
// One-shot: lowercase hex of SHA-256(data[0, n)).
std::string Sha256Hex(const void* data, size_t n);

}  // namespace titand
