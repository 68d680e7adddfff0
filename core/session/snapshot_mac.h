// The two digests of a session snapshot (layout in snapshot_format.h), keyed or not:
//   key empty     -> SHA-256(bytes)              (format version 1: detects corruption only)
//   key non-empty -> HMAC-SHA256(key, bytes)     (format version 2: RFC 2104 over SHA-256, computed by
//                                                  OpenSSL's libcrypto; a file written without the key
//                                                  cannot pass as a session)
// The key is the raw bytes of the --snapshot-key-file (at least kMinSnapshotKeyBytes).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace titand {

inline constexpr size_t kMinSnapshotKeyBytes = 32;

using SnapshotDigest = std::array<uint8_t, 32>;

SnapshotDigest ComputeSnapshotDigest(const std::string& key, std::string_view bytes);

// Constant-time comparison of a computed digest with the 32 bytes at `stored` (CRYPTO_memcmp).
bool SnapshotDigestEquals(const SnapshotDigest& computed, const char* stored);

}  // namespace titand
