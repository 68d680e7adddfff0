#include "server/token_table.h"

#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/common/sha256.h"

namespace titand {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

bool ValidTenant(const std::string& t) {
  if (t.empty() || t.size() > 64) return false;
  for (char c : t)
    if (!IsNameChar(c)) return false;
  return true;
}

bool ValidToken(const std::string& t) {
  if (t.size() < 16 || t.size() > 512) return false;
  for (char c : t)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

// Identity of the file's current content as far as stat can tell (follows symlinks).
std::string Stamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
}

}  // namespace

absl::StatusOr<TokenTable::Map> TokenTable::Parse(const std::string& text) {
  Map map;
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    std::string line(raw);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<std::string> parts = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.empty() || parts[0][0] == '#') continue;
    // Never echo the line: it holds a secret.
    if (parts.size() != 2) return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": expected '<tenant> <token>'"));
    if (!ValidTenant(parts[0]))
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": tenant must match [A-Za-z0-9._-]{1,64}"));
    if (!ValidToken(parts[1]))
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": token must be 16..512 printable ASCII characters without spaces"));
    if (!map.emplace(Sha256Hex(parts[1].data(), parts[1].size()), parts[0]).second)
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": duplicate token"));
  }
  return map;
}

absl::StatusOr<std::unique_ptr<TokenTable>> TokenTable::Open(const std::string& path) {
  std::unique_ptr<TokenTable> t(new TokenTable(path));
  absl::Status st = t->Reload();
  if (!st.ok()) return st;
  return t;
}

absl::Status TokenTable::Reload() {
  const std::string stamp = Stamp(path_);
  std::ifstream f(path_, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("token file ", path_, ": cannot open"));
  std::ostringstream ss;
  ss << f.rdbuf();
  absl::StatusOr<Map> map = Parse(ss.str());
  absl::MutexLock lock(&mu_);
  stamp_ = stamp;  // a broken file is not retried until it changes again
  if (!map.ok()) return absl::InvalidArgumentError(absl::StrCat("token file ", path_, ": ", map.status().message()));
  if (map->empty()) return absl::InvalidArgumentError(absl::StrCat("token file ", path_, ": no tokens"));
  map_ = std::make_shared<const Map>(std::move(map).value());
  return absl::OkStatus();
}

bool TokenTable::ReloadIfChanged(absl::Status* status) {
  {
    absl::MutexLock lock(&mu_);
    if (Stamp(path_) == stamp_) return false;
  }
  *status = Reload();
  return true;
}

std::optional<std::string> TokenTable::TenantOf(const std::string& token) const {
  std::shared_ptr<const Map> map;
  {
    absl::MutexLock lock(&mu_);
    map = map_;
  }
  if (!map) return std::nullopt;
  auto it = map->find(Sha256Hex(token.data(), token.size()));
  if (it == map->end()) return std::nullopt;
  return it->second;
}

size_t TokenTable::size() const {
  absl::MutexLock lock(&mu_);
  return map_ ? map_->size() : 0;
}

size_t TokenTable::tenants() const {
  absl::MutexLock lock(&mu_);
  std::set<std::string> names;
  if (map_)
    for (const auto& [k, v] : *map_) names.insert(v);
  return names.size();
}

}  // namespace titand
