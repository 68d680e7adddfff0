// File I/O of the session module (snapshot files of the session store). Crash-safe file replacement: the content goes to a temp file in the same directory, which is fsynced,
// renamed over `path` and the directory fsynced. Readers see the old file or the new one, never a part;
// on failure the temp file is removed and an existing `path` is untouched.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace titand {

// Writes the concatenation of `parts` to `path` atomically. NOT_FOUND if the directory does not exist,
// RESOURCE_EXHAUSTED on a full disk or quota (ENOSPC, EDQUOT), INTERNAL (errno text and the path) on any
// other I/O failure (a read-only file system included).
absl::Status WriteFileAtomically(const std::string& path, const std::vector<std::string_view>& parts);

// One file of a batch: `path` gets `data`; `status` tells how it went.
struct AtomicWrite {
  std::string path;
  std::string_view data;
  absl::Status status;
};

// The same guarantee for many files of ONE directory `dir` at the cost of one sync for the whole batch
// instead of one per file: every temp file is written and closed, then one syncfs(2) on `dir`'s file
// system makes them durable, then each is renamed over its path and `dir` is fsynced once. Each file is
// the old one or the new one after a crash, never a part. Per-file errors land in that file's `status`;
// a failed sync fails every file (their temp files are removed, old files untouched). Returns the number
// of syncs made (1 + 1 for the directory, 0 if no file got as far).
int WriteFilesAtomically(const std::string& dir, std::vector<AtomicWrite>& batch);

// The whole file as bytes: NOT_FOUND when it cannot be opened, DATA_LOSS when reading fails midway. The
// messages carry no path (they may reach clients).
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// unlink(2); an already missing file counts as removed. INTERNAL (errno text and the path) on failure.
absl::Status RemoveFile(const std::string& path);

}  // namespace titand
