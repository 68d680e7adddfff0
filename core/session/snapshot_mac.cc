#include "core/session/snapshot_mac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/common/sha256.h"

namespace titand {

SnapshotDigest ComputeSnapshotDigest(const std::string& key, std::string_view bytes) {
  SnapshotDigest out{};
  if (key.empty()) {
    Sha256 sha;
    sha.Update(bytes.data(), bytes.size());
    return sha.Final();
  }
  unsigned int len = 0;
  // One-shot HMAC (not deprecated in OpenSSL 3); SHA-256 output is exactly 32 bytes.
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(bytes.data()),
       bytes.size(), out.data(), &len);
  return out;
}

bool SnapshotDigestEquals(const SnapshotDigest& computed, const char* stored) {
  return CRYPTO_memcmp(computed.data(), stored, computed.size()) == 0;
}

}  // namespace titand
