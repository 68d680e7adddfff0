#include "core/session/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace titand {
namespace {

absl::Status Errno(const std::string& what, const std::string& path, int err) {
  const std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write failed", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}


std::string TempName(const std::string& path) {
  std::random_device rd;
  return absl::StrCat(path, ".tmp.", ::getpid(), ".", rd(), rd());
}

// Writes `parts` to a new file `tmp`; fsyncs it when `sync`. The temp file is removed on failure.
absl::Status WriteTemp(const std::string& tmp, const std::vector<std::string_view>& parts, bool sync) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create temp file", tmp, errno);
  absl::Status st;
  for (std::string_view part : parts) {
    st = WriteAll(fd, part, tmp);
    if (!st.ok()) break;
  }
  if (st.ok() && sync && ::fsync(fd) != 0) st = Errno("fsync failed", tmp, errno);
  if (::close(fd) != 0 && st.ok()) st = Errno("close failed", tmp, errno);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

// fsync (sync_fs = false) or syncfs (true) through a descriptor of directory `dir`.
absl::Status SyncDir(const std::string& dir, bool sync_fs) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Errno("cannot open directory for sync", dir, errno);
  const int rc = sync_fs ? ::syncfs(dfd) : ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) return Errno(sync_fs ? "syncfs failed" : "directory fsync failed", dir, err);
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, const std::vector<std::string_view>& parts) {
  const std::string tmp = TempName(path);
  if (absl::Status st = WriteTemp(tmp, parts, /*sync=*/true); !st.ok()) return st;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status st = Errno("rename failed", path, errno);
    ::unlink(tmp.c_str());
    return st;
  }
  return SyncDir(DirOf(path), /*sync_fs=*/false);  // make the rename itself durable
}

int WriteFilesAtomically(const std::string& dir, std::vector<AtomicWrite>& batch) {
  std::vector<std::string> tmps(batch.size());
  bool any = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    tmps[i] = TempName(batch[i].path);
    batch[i].status = WriteTemp(tmps[i], {batch[i].data}, /*sync=*/false);
    any = any || batch[i].status.ok();
  }
  if (!any) return 0;
  absl::Status synced = SyncDir(dir, /*sync_fs=*/true);
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].status.ok()) continue;
    if (synced.ok() && ::rename(tmps[i].c_str(), batch[i].path.c_str()) == 0) continue;
    batch[i].status = synced.ok() ? Errno("rename failed", batch[i].path, errno) : synced;
    ::unlink(tmps[i].c_str());
  }
  if (!synced.ok()) return 1;
  absl::Status dir_synced = SyncDir(dir, /*sync_fs=*/false);
  if (!dir_synced.ok()) {
    for (AtomicWrite& w : batch) {
      if (w.status.ok()) w.status = dir_synced;
    }
  }
  return 2;
}

absl::Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) return absl::OkStatus();
  return Errno("cannot remove", path, errno);
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError("cannot open the session's snapshot file");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return absl::DataLossError("reading the session's snapshot file failed");
  return ss.str();
}

}  // namespace titand
