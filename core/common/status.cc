#include "core/common/status.h"
// Intentionally small: macros only. This file keeps titand_common a real library target.
namespace titand {
const char* kTitandVersion = "0.1.0";
}  // namespace titand
