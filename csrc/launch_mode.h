#pragma once
// The environment switches that force a fused path on or off (tests reach both paths on small tensors
// with them; users may rule one out): unset, "" or "auto" leave the choice to the backend's
// heuristic, "always" takes the path wherever it can run, "never" never.
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>

namespace dsa_ops {

enum class LaunchMode { kAuto, kAlways, kNever };

inline LaunchMode launch_mode(const char* variable) {
  const char* value = std::getenv(variable);
  if (value == nullptr || std::strcmp(value, "") == 0 || std::strcmp(value, "auto") == 0) return LaunchMode::kAuto;
  if (std::strcmp(value, "always") == 0) return LaunchMode::kAlways;
  if (std::strcmp(value, "never") == 0) return LaunchMode::kNever;
  TORCH_CHECK_VALUE(false, variable, " must be auto, always or never, got '", value, "'");
}

}  // namespace dsa_ops
