// Private helpers of the checked YAML reader (yaml_reader.cc) that the
// topology parser (yaml.cc) shares. Not part of the topology module's API.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "gridemu/common/status.h"
#include "gridemu/topology/yaml_reader.h"

namespace gridemu::topology::internal {

/// "a, b, c".
std::string Join(std::span<const std::string_view> items);

/// True when `x` is one of `items`.
bool Contains(std::span<const std::string_view> items, std::string_view x);

/// "line:column" of a node, for messages that point elsewhere ("first at 4:7");
/// "?" when yaml-cpp has no mark.
std::string LineCol(const YAML::Node& node);

/// The scalar text of an entry, or nullptr after reporting
/// "<field>: expected <desc>, got <value>" at e.at().
const std::string* ScalarOf(const YamlEntry& e, std::string_view desc, const YamlContext& ctx);

/// The value of `r`, or nullopt after reporting "<field>: <r's message>" at e.at().
template <typename T>
std::optional<T> Wrap(const YamlEntry& e, Result<T> r, const YamlContext& ctx) {
  if (r.ok()) return std::move(r).value();
  ctx.Error(e.at(), e.field + ": " + r.status().message());
  return std::nullopt;
}

}  // namespace gridemu::topology::internal
