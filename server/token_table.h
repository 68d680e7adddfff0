// Bearer tokens (API keys) -> tenants, loaded from a file and reloadable while serving.
//
// File format (a Kubernetes Secret key mounted as a file, or any file): one entry per line,
//   <tenant> <token>
// separated by spaces or tabs; blank lines and lines starting with '#' are ignored. Tenant names match
// [A-Za-z0-9._-]{1,64}; tokens are 16..512 printable non-space ASCII characters and unique. Several tokens
// may map to one tenant (key rotation: add the new key, move clients, remove the old one).
//
// Only SHA-256 digests of the tokens are kept in memory, and a lookup hashes the presented token and
// finds the digest in a hash map, so the time taken does not depend on how much of a token matched.
//
// Reload(): re-reads the file; on any error the current table stays in force (the error is returned
// for the log). ReloadIfChanged(): the same when the file's mtime/size/inode changed (Kubernetes updates a
// mounted Secret by swapping a symlink, which this notices; SIGHUP calls Reload directly).
// Thread-safe: lookups take a shared_ptr snapshot of the table under a mutex.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace titand {

class TokenTable {
 public:
  // Loads `path` (INVALID_ARGUMENT naming the line for a malformed file, NOT_FOUND when unreadable).
  static absl::StatusOr<std::unique_ptr<TokenTable>> Open(const std::string& path);

  // The tenant of a presented token, or nullopt.
  std::optional<std::string> TenantOf(const std::string& token) const;
  // Re-reads the file. OK: the new table is in force; otherwise the old one stays.
  absl::Status Reload();
  // Reloads when the file changed since the last load; returns true when a reload was attempted
  // (its status in *status).
  bool ReloadIfChanged(absl::Status* status);
  size_t size() const;
  size_t tenants() const;

 private:
  using Map = std::unordered_map<std::string, std::string>;  // SHA-256 hex of token -> tenant
  explicit TokenTable(std::string path) : path_(std::move(path)) {}
  static absl::StatusOr<Map> Parse(const std::string& text);

  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Map> map_ ABSL_GUARDED_BY(mu_);
  std::string stamp_ ABSL_GUARDED_BY(mu_);  // mtime/size/inode of the file last loaded
};

}  // namespace titand
