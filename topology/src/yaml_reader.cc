#include "gridemu/topology/yaml_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>
#include <utility>

#include "gridemu/common/units.h"
#include "yaml_reader_internal.h"

namespace gridemu::topology {
namespace internal {

std::string Join(std::span<const std::string_view> items) {
  std::string s;
  for (std::string_view item : items) {
    if (!s.empty()) s += ", ";
    s += item;
  }
  return s;
}

bool Contains(std::span<const std::string_view> items, std::string_view x) {
  return std::find(items.begin(), items.end(), x) != items.end();
}

std::string LineCol(const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return "?";
  return std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

// The scalar text of an entry, or nullptr after reporting "expected <desc>".
const std::string* ScalarOf(const YamlEntry& e, std::string_view desc, const YamlContext& ctx) {
  if (e.value.IsScalar()) return &e.value.Scalar();
  ctx.Error(e.at(),
            e.field + ": expected " + std::string(desc) + ", got " + DescribeYamlValue(e.value));
  return nullptr;
}

}  // namespace internal

using internal::Contains;
using internal::Join;
using internal::LineCol;
using internal::ScalarOf;
using internal::Wrap;

// ---------------------------------------------------------------------------
// Context, positions, maps.

void YamlContext::Error(const YAML::Node& at, std::string message) const {
  if (diags == nullptr) return;
  diags->Add(LocOf(at, *this), std::move(message));
}

void YamlContext::Error(SourceLoc at, std::string message) const {
  if (diags == nullptr) return;
  diags->Add(std::move(at), std::move(message));
}

SourceLoc LocOf(const YAML::Node& node, const YamlContext& ctx) {
  SourceLoc loc;
  loc.file = ctx.file;
  const YAML::Mark m = node.Mark();
  if (!m.is_null()) {
    loc.line = m.line + 1;
    loc.column = m.column + 1;
  }
  return loc;
}

std::string DescribeYamlValue(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return "'" + node.Scalar() + "'";
}

const YAML::Node& YamlEntry::at() const { return value.IsNull() ? key_node : value; }

YamlMap::YamlMap(const YAML::Node& node, std::string_view what,
                 std::span<const std::string_view> allowed, const YamlContext& ctx,
                 std::string_view field_prefix, NullMap null) {
  what_ = std::string(what);
  Init(node, nullptr, what, allowed, ctx, field_prefix, null);
}

YamlMap::YamlMap(const YamlEntry& entry, std::string_view what,
                 std::span<const std::string_view> allowed, const YamlContext& ctx,
                 std::string_view field_prefix, NullMap null) {
  what_ = std::string(what);
  Init(entry.value, &entry.key_node, entry.field, allowed, ctx, field_prefix, null);
}

void YamlMap::Init(const YAML::Node& node, const YAML::Node* key_for_errors, std::string_view field,
                   std::span<const std::string_view> allowed, const YamlContext& ctx,
                   std::string_view field_prefix, NullMap null) {
  node_ = node;
  if (what_.empty()) what_ = std::string(field);
  if (!node.IsMap()) {
    if (node.IsNull() && null == NullMap::kEmpty) {
      valid_ = true;
      return;
    }
    const YAML::Node& at = (node.IsNull() && key_for_errors != nullptr) ? *key_for_errors : node;
    ctx.Error(at, std::string(field) + ": expected a mapping, got " + DescribeYamlValue(node));
    return;
  }
  valid_ = true;
  entries_.reserve(node.size());
  const bool big = node.size() > 8;
  std::unordered_map<std::string_view, size_t> seen;
  if (big) seen.reserve(node.size());
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      ctx.Error(key, "expected a plain key in " + what_ + ", got " + DescribeYamlValue(key));
      continue;
    }
    const std::string& k = key.Scalar();  // owned by the node's memory: stable
    if (!allowed.empty() && !Contains(allowed, k)) {
      ctx.Error(key, "unknown key '" + k + "' in " + what_ + "; expected one of " + Join(allowed));
      continue;
    }
    const YamlEntry* first = nullptr;
    if (big) {
      auto [pos, inserted] = seen.emplace(std::string_view(k), entries_.size());
      if (!inserted) first = &entries_[pos->second];
    } else {
      for (const YamlEntry& e : entries_) {
        if (e.key == k) first = &e;
      }
    }
    if (first != nullptr) {
      ctx.Error(key, "duplicate key '" + k + "' in " + what_ + " (first at " +
                         LineCol(first->key_node) + ")");
      continue;
    }
    YamlEntry e;
    e.key = k;
    e.field = field_prefix.empty() ? k : std::string(field_prefix) + "." + k;
    e.key_node = key;
    e.value = it->second;
    entries_.push_back(std::move(e));
  }
  if (big) {
    index_.reserve(entries_.size());
    for (size_t i = 0; i < entries_.size(); ++i) {
      index_.emplace_back(std::string_view(entries_[i].key_node.Scalar()), i);
    }
    std::sort(index_.begin(), index_.end());
  }
}

const YamlEntry* YamlMap::Find(std::string_view key) const {
  if (index_.empty()) {
    for (const YamlEntry& e : entries_) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
  auto it = std::lower_bound(index_.begin(), index_.end(), key,
                             [](const auto& p, std::string_view k) { return p.first < k; });
  if (it == index_.end() || it->first != key) return nullptr;
  return &entries_[it->second];
}

const YamlEntry* YamlMap::Require(std::string_view key, const YamlContext& ctx) const {
  if (!valid_) return nullptr;
  if (const YamlEntry* e = Find(key)) return e;
  ctx.Error(node_, "missing required key '" + std::string(key) + "' in " + what_);
  return nullptr;
}

bool ExpectList(const YamlEntry& e, std::string_view item, const YamlContext& ctx) {
  if (e.value.IsSequence() || e.value.IsNull()) return true;
  ctx.Error(e.at(), e.field + ": expected a list of " + std::string(item) + ", got " +
                        DescribeYamlValue(e.value));
  return false;
}

// ---------------------------------------------------------------------------
// Scalars.

std::optional<std::string> ReadString(const YamlEntry& e, const YamlContext& ctx,
                                      bool allow_empty) {
  const std::string* s = ScalarOf(e, "a string", ctx);
  if (s == nullptr) return std::nullopt;
  if (s->empty() && !allow_empty) {
    ctx.Error(e.at(), e.field + ": expected a non-empty string");
    return std::nullopt;
  }
  return *s;
}

std::optional<bool> ReadBool(const YamlEntry& e, const YamlContext& ctx) {
  const std::string* s = ScalarOf(e, "true or false", ctx);
  if (s == nullptr) return std::nullopt;
  if (*s == "true" || *s == "True" || *s == "TRUE") return true;
  if (*s == "false" || *s == "False" || *s == "FALSE") return false;
  ctx.Error(e.at(), e.field + ": expected true or false, got '" + *s + "'");
  return std::nullopt;
}

std::optional<uint64_t> ReadUint(const YamlEntry& e, uint64_t min, uint64_t max,
                                 const YamlContext& ctx) {
  const std::string_view desc = min >= 1 ? "a positive integer" : "a non-negative integer";
  const std::string* s = ScalarOf(e, desc, ctx);
  if (s == nullptr) return std::nullopt;
  const std::string range = "expected " + std::to_string(min) + " to " + std::to_string(max);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec == std::errc::result_out_of_range) {
    ctx.Error(e.at(), e.field + ": " + *s + " is out of range; " + range);
    return std::nullopt;
  }
  if (ec != std::errc() || p != s->data() + s->size() || s->empty()) {
    ctx.Error(e.at(), e.field + ": expected " + std::string(desc) + ", got '" + *s + "'");
    return std::nullopt;
  }
  if (v < min || v > max) {
    ctx.Error(e.at(), e.field + ": " + *s + " is out of range; " + range);
    return std::nullopt;
  }
  return v;
}

std::optional<double> ReadDouble(const YamlEntry& e, const YamlContext& ctx) {
  const std::string* s = ScalarOf(e, "a number", ctx);
  if (s == nullptr) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || p != s->data() + s->size() || s->empty() || !std::isfinite(v)) {
    ctx.Error(e.at(), e.field + ": expected a number, got '" + *s + "'");
    return std::nullopt;
  }
  return v;
}

std::optional<std::chrono::nanoseconds> ReadTime(const YamlEntry& e, const YamlContext& ctx) {
  const std::string* s = ScalarOf(e, "a time such as 10ms", ctx);
  if (s == nullptr) return std::nullopt;
  return Wrap(e, ParseTime(*s), ctx);
}

std::optional<uint64_t> ReadRate(const YamlEntry& e, const YamlContext& ctx) {
  const std::string* s = ScalarOf(e, "a rate such as 10mbit", ctx);
  if (s == nullptr) return std::nullopt;
  return Wrap(e, ParseRateBps(*s), ctx);
}

std::optional<double> ReadRatio(const YamlEntry& e, const YamlContext& ctx) {
  const std::string* s = ScalarOf(e, "a percentage such as 0.1%", ctx);
  if (s == nullptr) return std::nullopt;
  return Wrap(e, ParseRatio(*s), ctx);
}

std::optional<uint64_t> ReadSize(const YamlEntry& e, const YamlContext& ctx) {
  const std::string* s = ScalarOf(e, "a size such as 256MiB", ctx);
  if (s == nullptr) return std::nullopt;
  return Wrap(e, ParseSizeBytes(*s), ctx);
}

std::optional<std::vector<std::string>> ReadStringList(const YamlEntry& e, std::string_view item,
                                                       const YamlContext& ctx) {
  const std::string expected = e.field + ": expected a list of " + std::string(item) + "s";
  if (!e.value.IsSequence()) {
    ctx.Error(e.at(), expected + ", got " + DescribeYamlValue(e.value));
    return std::nullopt;
  }
  std::vector<std::string> out;
  out.reserve(e.value.size());
  bool ok = true;
  for (const YAML::Node& x : e.value) {
    if (!x.IsScalar() || x.Scalar().empty()) {
      ctx.Error(x.IsNull() ? e.key_node : x, expected + ", got " + DescribeYamlValue(x) + " in it");
      ok = false;
      continue;
    }
    out.push_back(x.Scalar());
  }
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace gridemu::topology
