// Status helpers shared by every module. Debian 12's abseil predates its own status macros.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TITAND_CONCAT_INNER(a, b) a##b
#define TITAND_CONCAT(a, b) TITAND_CONCAT_INNER(a, b)

// Returns from the calling function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status _titand_st = (expr);        \
    if (!_titand_st.ok()) return _titand_st;   \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates an absl::StatusOr<T>, returns its status on error,
// otherwise moves the value into `lhs` (which may be a declaration: `auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(TITAND_CONCAT(_titand_sor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
