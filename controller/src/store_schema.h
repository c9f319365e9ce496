// The store's schema as an ordered list of migrations (DESIGN.md §8).
#pragma once

#include <string_view>
#include <vector>

namespace gridemu::controller::store_internal {

/// Migration i (0-based) takes the database from schema version i to i + 1.
/// Each is applied in its own transaction together with the version bump.
/// Append new steps; never edit a released one.
const std::vector<std::string_view>& Migrations();

}  // namespace gridemu::controller::store_internal
