// GML reader (Himsolt, "GML: A portable Graph File Format", Universität
// Passau, 1997) and importer of Internet Topology Zoo graphs.
//
// The grammar is tiny:
//   list  ::= (key value)*
//   value ::= integer | real | string | '[' list ']'
//   key   ::= [A-Za-z_][A-Za-z0-9_]*
// with '#' comments to the end of a line. A hand-written tokenizer tracks the
// line and column of every token; a recursive parser builds a generic tree,
// from which ParseGml() picks the graph, its nodes and its edges. Errors are
// collected (not thrown) and reported in file order.
#include "gridemu/topology/gml.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace gridemu::topology {
namespace {

// Lists nested deeper than this are refused (keeps the recursive parser's
// stack bounded on hostile input; real files nest 2 or 3 levels).
constexpr int kMaxDepth = 64;

// ---------------------------------------------------------------------------
// Errors, collected then reported sorted by position.

struct Error {
  int line = 0;
  int column = 0;
  std::string message;
};

class Errors {
 public:
  void Add(int line, int column, std::string message) {
    items_.push_back({line, column, std::move(message)});
  }
  bool empty() const { return items_.empty(); }
  Status ToStatus(std::string_view file) {
    std::stable_sort(items_.begin(), items_.end(), [](const Error& a, const Error& b) {
      return a.line != b.line ? a.line < b.line : a.column < b.column;
    });
    Diagnostics diags;
    for (auto& e : items_) diags.Add(SourceLoc{std::string(file), e.line, e.column}, e.message);
    return diags.ToStatus();
  }

 private:
  std::vector<Error> items_;
};

// ---------------------------------------------------------------------------
// Tokenizer.

enum class Tok { kKey, kInt, kReal, kString, kOpen, kClose, kEnd };

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;  // key name, decoded string, or the number's spelling
  int64_t i = 0;
  double r = 0;
  int line = 0;
  int column = 0;
};

// Decodes the character entities GML writers use inside strings (&quot;,
// &amp;, &lt;, &gt;, &apos; and numeric &#NN; / &#xNN; in the ASCII range);
// anything else is kept as written.
std::string DecodeEntities(std::string_view s) {
  if (s.find('&') == std::string_view::npos) return std::string(s);
  static constexpr std::pair<std::string_view, char> kNamed[] = {
      {"&quot;", '"'}, {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&apos;", '\''}};
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '&') {
      bool done = false;
      for (const auto& [name, ch] : kNamed) {
        if (s.substr(i, name.size()) == name) {
          out += ch;
          i += name.size();
          done = true;
          break;
        }
      }
      if (!done && s.substr(i, 2) == "&#") {
        const size_t semi = s.find(';', i);
        if (semi != std::string_view::npos && semi - i <= 8) {
          std::string_view num = s.substr(i + 2, semi - i - 2);
          int base = 10;
          if (!num.empty() && (num[0] == 'x' || num[0] == 'X')) {
            base = 16;
            num.remove_prefix(1);
          }
          unsigned code = 0;
          auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), code, base);
          if (ec == std::errc() && p == num.data() + num.size() && code > 0 && code < 128) {
            out += static_cast<char>(code);
            i = semi + 1;
            done = true;
          }
        }
      }
      if (done) continue;
    }
    out += s[i++];
  }
  return out;
}

bool IsKeyStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsKeyChar(char c) { return IsKeyStart(c) || IsDigit(c); }

std::string DescribeChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7f) return std::string("'") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "byte 0x%02X", u);
  return buf;
}

class Lexer {
 public:
  Lexer(std::string_view text, Errors& errors) : text_(text), errors_(errors) {}

  // True once the input ended inside a string: whatever is unclosed after
  // that is a consequence, not a separate error.
  bool hit_fatal() const { return fatal_; }

  Token Next() {
    if (pushed_) {
      pushed_ = false;
      return pushed_tok_;
    }
    for (;;) {
      SkipSpaceAndComments();
      Token t;
      t.line = line_;
      t.column = col_;
      if (pos_ >= text_.size()) return t;
      const char c = text_[pos_];
      if (c == '[') {
        Advance();
        t.kind = Tok::kOpen;
        return t;
      }
      if (c == ']') {
        Advance();
        t.kind = Tok::kClose;
        return t;
      }
      if (c == '"') {
        if (LexString(t)) return t;
        return Token{Tok::kEnd, "", 0, 0, line_, col_};
      }
      if (IsDigit(c) || c == '-' || c == '+' || c == '.') {
        if (LexNumber(t)) return t;
        continue;
      }
      if (IsKeyStart(c)) {
        const size_t start = pos_;
        while (pos_ < text_.size() && IsKeyChar(text_[pos_])) Advance();
        t.kind = Tok::kKey;
        t.text = std::string(text_.substr(start, pos_ - start));
        return t;
      }
      errors_.Add(line_, col_, "unexpected character " + DescribeChar(c));
      Advance();
    }
  }

  void PushBack(Token t) {
    pushed_ = true;
    pushed_tok_ = std::move(t);
  }

 private:
  void Advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    ++pos_;
  }

  void SkipSpaceAndComments() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
        Advance();
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') Advance();
      } else {
        break;
      }
    }
  }

  // Strings run to the next '"' and may span lines; there are no backslash
  // escapes in GML ('"' inside a string is written &quot;).
  bool LexString(Token& t) {
    Advance();  // opening quote
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != '"') Advance();
    if (pos_ >= text_.size()) {
      errors_.Add(t.line, t.column, "unterminated string: no closing '\"'");
      fatal_ = true;
      return false;
    }
    t.kind = Tok::kString;
    t.text = DecodeEntities(text_.substr(start, pos_ - start));
    Advance();  // closing quote
    return true;
  }

  // [+-]? digits* ('.' digits*)? ([eE] [+-]? digits+)?, at least one digit.
  bool LexNumber(Token& t) {
    const size_t start = pos_;
    size_t p = pos_;
    auto digits = [&] {
      size_t n = 0;
      while (p < text_.size() && IsDigit(text_[p])) ++p, ++n;
      return n;
    };
    if (text_[p] == '+' || text_[p] == '-') ++p;
    size_t mantissa = digits();
    bool real = false;
    if (p < text_.size() && text_[p] == '.') {
      ++p;
      real = true;
      mantissa += digits();
    }
    if (mantissa > 0 && p < text_.size() && (text_[p] == 'e' || text_[p] == 'E')) {
      size_t q = p + 1;
      if (q < text_.size() && (text_[q] == '+' || text_[q] == '-')) ++q;
      if (q < text_.size() && IsDigit(text_[q])) {
        p = q;
        digits();
        real = true;
      }
    }
    // A number runs into the next delimiter; "12abc" is one bad token.
    size_t end = p;
    while (end < text_.size() && (IsKeyChar(text_[end]) || text_[end] == '.')) ++end;
    std::string_view spelling = text_.substr(start, end - start);
    while (pos_ < end) Advance();
    if (mantissa == 0 || end != p) {
      errors_.Add(t.line, t.column, "malformed number '" + std::string(spelling) + "'");
      return false;
    }
    t.text = std::string(spelling);
    // from_chars does not take a leading '+'.
    std::string_view digits_view = spelling;
    if (digits_view.front() == '+') digits_view.remove_prefix(1);
    const char* b = digits_view.data();
    const char* e = b + digits_view.size();
    if (!real) {
      auto [ptr, ec] = std::from_chars(b, e, t.i);
      if (ec == std::errc() && ptr == e) {
        t.kind = Tok::kInt;
        return true;
      }
      // Out of int64 range: keep it as a real.
    }
    auto [ptr, ec] = std::from_chars(b, e, t.r);
    if (ec != std::errc() || ptr != e || !std::isfinite(t.r)) {
      errors_.Add(t.line, t.column, "number '" + std::string(spelling) + "' is out of range");
      return false;
    }
    t.kind = Tok::kReal;
    return true;
  }

  std::string_view text_;
  Errors& errors_;
  size_t pos_ = 0;
  int line_ = 1;
  int col_ = 1;
  bool fatal_ = false;
  bool pushed_ = false;
  Token pushed_tok_;
};

// ---------------------------------------------------------------------------
// Generic GML tree.

struct Pair;

struct Value {
  enum class Kind { kInt, kReal, kString, kList } kind = Kind::kInt;
  int64_t i = 0;
  double r = 0;
  std::string s;
  std::vector<Pair> list;
  int line = 0;
  int column = 0;
};

struct Pair {
  std::string key;
  int line = 0;
  int column = 0;
  Value value;
};

std::string Describe(const Token& t) {
  switch (t.kind) {
    case Tok::kKey:
      return "key '" + t.text + "'";
    case Tok::kInt:
    case Tok::kReal:
      return "number " + t.text;
    case Tok::kString:
      return "string \"" + t.text + "\"";
    case Tok::kOpen:
      return "'['";
    case Tok::kClose:
      return "']'";
    case Tok::kEnd:
      return "end of file";
  }
  return "token";
}

class Parser {
 public:
  Parser(std::string_view text, Errors& errors) : lexer_(text, errors), errors_(errors) {}

  std::vector<Pair> ParseTop() {
    std::vector<Pair> out;
    ParseList(out, /*open=*/nullptr, 0);
    return out;
  }

 private:
  // Parses pairs until the matching ']' (open != nullptr) or the end of input.
  // Returns false when the input ended inside this list.
  bool ParseList(std::vector<Pair>& out, const Token* open, int depth) {
    for (;;) {
      Token t = lexer_.Next();
      switch (t.kind) {
        case Tok::kEnd:
          if (open != nullptr) {
            if (!lexer_.hit_fatal() && !eof_reported_) {
              errors_.Add(open->line, open->column, "unterminated list: this '[' is never closed");
            }
            eof_reported_ = true;
            return false;
          }
          return true;
        case Tok::kClose:
          if (open != nullptr) return true;
          errors_.Add(t.line, t.column, "unexpected ']' with no matching '['");
          continue;
        case Tok::kKey: {
          Pair pair;
          pair.key = t.text;
          pair.line = t.line;
          pair.column = t.column;
          Token v = lexer_.Next();
          if (!ParseValue(v, pair.value, depth)) {
            if (v.kind != Tok::kEnd || !lexer_.hit_fatal()) {
              errors_.Add(v.line, v.column,
                          "expected a value after key '" + t.text + "', found " + Describe(v));
            }
            lexer_.PushBack(v);
            continue;
          }
          out.push_back(std::move(pair));
          if (eof_reported_) return false;
          continue;
        }
        default: {
          errors_.Add(t.line, t.column, "expected a key, found " + Describe(t));
          if (t.kind == Tok::kOpen) {  // skip the stray list to stay in step
            Value ignored;
            ParseValue(t, ignored, depth);
            if (eof_reported_) return false;
          }
          continue;
        }
      }
    }
  }

  // Fills `out` from the value starting at `t`; false when `t` cannot start a value.
  bool ParseValue(const Token& t, Value& out, int depth) {
    out.line = t.line;
    out.column = t.column;
    switch (t.kind) {
      case Tok::kInt:
        out.kind = Value::Kind::kInt;
        out.i = t.i;
        return true;
      case Tok::kReal:
        out.kind = Value::Kind::kReal;
        out.r = t.r;
        return true;
      case Tok::kString:
        out.kind = Value::Kind::kString;
        out.s = t.text;
        return true;
      case Tok::kOpen:
        out.kind = Value::Kind::kList;
        if (depth + 1 > kMaxDepth) {
          if (!too_deep_) {
            errors_.Add(t.line, t.column,
                        "lists nested deeper than " + std::to_string(kMaxDepth) + " levels");
          }
          too_deep_ = true;
          SkipList();
          return true;
        }
        ParseList(out.list, &t, depth + 1);
        return true;
      default:
        return false;
    }
  }

  // Skips tokens up to the ']' closing an already-opened list, without recursion.
  void SkipList() {
    int open = 1;
    while (open > 0) {
      Token t = lexer_.Next();
      if (t.kind == Tok::kEnd) {
        eof_reported_ = true;
        return;
      }
      if (t.kind == Tok::kOpen) ++open;
      if (t.kind == Tok::kClose) --open;
    }
  }

  Lexer lexer_;
  Errors& errors_;
  bool eof_reported_ = false;
  bool too_deep_ = false;
};

// ---------------------------------------------------------------------------
// From the tree to a GmlGraph.

std::optional<double> ParseDouble(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  double d = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || !std::isfinite(d)) {
    return std::nullopt;
  }
  return d;
}

// A number value (integer, real, or a string holding a number).
std::optional<double> NumberOf(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kInt:
      return static_cast<double>(v.i);
    case Value::Kind::kReal:
      return v.r;
    case Value::Kind::kString:
      return ParseDouble(v.s);
    case Value::Kind::kList:
      return std::nullopt;
  }
  return std::nullopt;
}

std::string TextOf(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kInt:
      return std::to_string(v.i);
    case Value::Kind::kReal: {
      std::ostringstream os;
      os << v.r;
      return os.str();
    }
    case Value::Kind::kString:
      return v.s;
    case Value::Kind::kList:
      return "";
  }
  return "";
}

const Pair* FindKey(const std::vector<Pair>& list, std::string_view key) {
  for (const Pair& p : list) {
    if (p.key == key) return &p;
  }
  return nullptr;
}

class GraphBuilder {
 public:
  GraphBuilder(std::string_view file, Errors& errors) : file_(file), errors_(errors) {}

  GmlGraph Build(const std::vector<Pair>& top) {
    GmlGraph g;
    const Pair* graph = FindKey(top, "graph");
    if (graph == nullptr) {
      errors_.Add(1, 1, "no 'graph [ ... ]' list in this file");
      return g;
    }
    if (graph->value.kind != Value::Kind::kList) {
      errors_.Add(graph->value.line, graph->value.column, "'graph' must be a list: graph [ ... ]");
      return g;
    }
    std::vector<const Pair*> edges;
    for (const Pair& p : graph->value.list) {
      if (p.key == "directed") {
        if (p.value.kind == Value::Kind::kInt) {
          g.directed = p.value.i != 0;
        } else {
          errors_.Add(p.value.line, p.value.column, "'directed' must be 0 or 1");
        }
      } else if (p.key == "node" || p.key == "edge") {
        if (p.value.kind != Value::Kind::kList) {
          errors_.Add(p.value.line, p.value.column,
                      "'" + p.key + "' must be a list: " + p.key + " [ ... ]");
        } else if (p.key == "node") {
          AddNode(p, g);
        } else {
          edges.push_back(&p);  // after every node: edges may come first
        }
      }
    }
    for (const Pair* p : edges) AddEdge(*p, g);
    return g;
  }

 private:
  SourceLoc Loc(int line, int column) const { return SourceLoc{std::string(file_), line, column}; }

  std::optional<double> Coordinate(const std::vector<Pair>& list, std::string_view key,
                                   double limit) {
    const Pair* p = FindKey(list, key);
    if (p == nullptr) return std::nullopt;
    std::optional<double> d = NumberOf(p->value);
    if (!d) {
      errors_.Add(p->value.line, p->value.column, std::string(key) + " must be a number");
      return std::nullopt;
    }
    if (*d < -limit || *d > limit) {
      std::ostringstream os;
      os << key << " " << *d << " is out of range [-" << limit << ", " << limit << "]";
      errors_.Add(p->value.line, p->value.column, os.str());
      return std::nullopt;
    }
    return d;
  }

  void AddNode(const Pair& node, GmlGraph& g) {
    const auto& list = node.value.list;
    GmlNode n;
    n.loc = Loc(node.line, node.column);
    const Pair* id = FindKey(list, "id");
    bool ok = true;
    if (id == nullptr) {
      errors_.Add(node.line, node.column, "node without id");
      ok = false;
    } else if (id->value.kind != Value::Kind::kInt) {
      errors_.Add(id->value.line, id->value.column, "node id must be an integer");
      ok = false;
    } else {
      n.id = id->value.i;
      auto [it, inserted] = ids_.emplace(n.id, std::make_pair(id->value.line, id->value.column));
      if (!inserted) {
        errors_.Add(id->value.line, id->value.column,
                    "duplicate node id " + std::to_string(n.id) + "; first defined at line " +
                        std::to_string(it->second.first) + ", column " +
                        std::to_string(it->second.second));
        ok = false;
      }
    }
    if (const Pair* label = FindKey(list, "label");
        label != nullptr && label->value.kind != Value::Kind::kList) {
      n.label = TextOf(label->value);
    } else {
      n.label = std::to_string(n.id);
    }
    n.latitude = Coordinate(list, "Latitude", 90);
    n.longitude = Coordinate(list, "Longitude", 180);
    if (ok) g.nodes.push_back(std::move(n));
  }

  // Reads `source` or `target`; nullopt (with an error) when absent or wrong.
  std::optional<int64_t> End(const Pair& edge, std::string_view key) {
    const Pair* p = FindKey(edge.value.list, key);
    if (p == nullptr) {
      errors_.Add(edge.line, edge.column, "edge without " + std::string(key));
      return std::nullopt;
    }
    if (p->value.kind != Value::Kind::kInt) {
      errors_.Add(p->value.line, p->value.column,
                  "edge " + std::string(key) + " must be an integer node id");
      return std::nullopt;
    }
    if (!ids_.count(p->value.i)) {
      errors_.Add(p->value.line, p->value.column,
                  "edge " + std::string(key) + " " + std::to_string(p->value.i) +
                      " is not the id of any node");
      return std::nullopt;
    }
    return p->value.i;
  }

  // LinkSpeedRaw (bits/s) wins; else LinkSpeed x LinkSpeedUnits (K, M, G, T).
  std::optional<uint64_t> LinkSpeed(const std::vector<Pair>& list) {
    auto to_bps = [](double d) {
      return d >= 1.8e19 ? std::numeric_limits<uint64_t>::max()
                         : static_cast<uint64_t>(std::llround(d));
    };
    if (const Pair* raw = FindKey(list, "LinkSpeedRaw")) {
      std::optional<double> d = NumberOf(raw->value);
      if (!d || *d < 0) {
        errors_.Add(raw->value.line, raw->value.column,
                    "LinkSpeedRaw must be a non-negative number (bits/s)");
        return std::nullopt;
      }
      return to_bps(*d);
    }
    const Pair* speed = FindKey(list, "LinkSpeed");
    if (speed == nullptr) return std::nullopt;
    std::optional<double> d = NumberOf(speed->value);
    if (!d || *d < 0) {
      errors_.Add(speed->value.line, speed->value.column,
                  "LinkSpeed must be a non-negative number");
      return std::nullopt;
    }
    double scale = 1;
    if (const Pair* units = FindKey(list, "LinkSpeedUnits")) {
      const std::string u = TextOf(units->value);
      if (u.size() == 1 && (u[0] == 'K' || u[0] == 'k')) {
        scale = 1e3;
      } else if (u.size() == 1 && (u[0] == 'M' || u[0] == 'm')) {
        scale = 1e6;
      } else if (u.size() == 1 && (u[0] == 'G' || u[0] == 'g')) {
        scale = 1e9;
      } else if (u.size() == 1 && (u[0] == 'T' || u[0] == 't')) {
        scale = 1e12;
      } else if (!u.empty()) {
        errors_.Add(units->value.line, units->value.column,
                    "LinkSpeedUnits '" + u + "' is not one of K, M, G, T");
        return std::nullopt;
      }
    }
    return to_bps(*d * scale);
  }

  void AddEdge(const Pair& edge, GmlGraph& g) {
    GmlEdge e;
    e.loc = Loc(edge.line, edge.column);
    std::optional<int64_t> s = End(edge, "source");
    std::optional<int64_t> t = End(edge, "target");
    e.link_speed_bps = LinkSpeed(edge.value.list);
    if (!s || !t) return;
    e.source = *s;
    e.target = *t;
    g.edges.push_back(std::move(e));
  }

  std::string_view file_;
  Errors& errors_;
  std::unordered_map<int64_t, std::pair<int, int>> ids_;  // id -> line, column
};

// Union-find for counting components.
class DisjointSets {
 public:
  explicit DisjointSets(size_t n) : parent_(n) { std::iota(parent_.begin(), parent_.end(), 0); }
  size_t Find(size_t x) {
    while (parent_[x] != x) x = parent_[x] = parent_[parent_[x]];
    return x;
  }
  void Union(size_t a, size_t b) { parent_[Find(a)] = Find(b); }

 private:
  std::vector<size_t> parent_;
};

constexpr size_t kMaxNameLength = 63;

// prefix + label (+ suffix), the label cut so the whole fits in 63 characters.
std::string ComposeName(const std::string& prefix, const std::string& label,
                        const std::string& suffix) {
  std::string base = label;
  const size_t room = kMaxNameLength > prefix.size() + suffix.size()
                          ? kMaxNameLength - prefix.size() - suffix.size()
                          : 0;
  if (base.size() > room) {
    base.resize(room);
    while (!base.empty() && base.back() == '-') base.pop_back();
  }
  return prefix + base + suffix;
}

std::string Plural(size_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

}  // namespace

Result<GmlGraph> ParseGml(std::string_view text, std::string_view filename) {
  Errors errors;
  Parser parser(text, errors);
  std::vector<Pair> top = parser.ParseTop();
  GraphBuilder builder(filename, errors);
  GmlGraph g = builder.Build(top);
  if (!errors.empty()) return errors.ToStatus(filename);
  return g;
}

Result<GmlGraph> LoadGml(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return NotFoundError("cannot read GML file '" + path + "': " + std::strerror(errno));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return NotFoundError("cannot read GML file '" + path + "': read error");
  return ParseGml(buf.str(), path);
}

std::string SanitizeGmlLabel(std::string_view label, int64_t id) {
  std::string out;
  bool gap = false;
  for (char ch : label) {
    const auto c = static_cast<unsigned char>(ch);
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum) {
      gap = true;
      continue;
    }
    if (gap && !out.empty()) out += '-';
    gap = false;
    out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (out.size() >= kMaxNameLength) break;
  }
  if (out.size() > kMaxNameLength) out.resize(kMaxNameLength);
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.empty()) out = "n" + std::to_string(id);
  return out;
}

double GreatCircleMeters(double lat1, double lon1, double lat2, double lon2) {
  // Haversine formula (Sinnott, "Virtues of the haversine", Sky and
  // Telescope 68(2), 1984) on a sphere of the IUGG mean Earth radius.
  constexpr double kEarthRadiusM = 6'371'008.8;
  constexpr double kRad = 3.14159265358979323846 / 180.0;
  const double p1 = lat1 * kRad, p2 = lat2 * kRad;
  const double dp = (lat2 - lat1) * kRad, dl = (lon2 - lon1) * kRad;
  const double s1 = std::sin(dp / 2), s2 = std::sin(dl / 2);
  double a = s1 * s1 + std::cos(p1) * std::cos(p2) * s2 * s2;
  a = std::clamp(a, 0.0, 1.0);
  return 2 * kEarthRadiusM * std::atan2(std::sqrt(a), std::sqrt(1 - a));
}

std::chrono::nanoseconds FibreDelay(double meters) {
  constexpr double kFibreMetersPerSecond = 299'792'458.0 * 2.0 / 3.0;
  if (!(meters > 0)) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(std::llround(meters / kFibreMetersPerSecond * 1e9));
}

Result<GmlImportReport> ImportGml(const GmlGraph& g, const GmlImportOptions& opts, Topology& topo) {
  // 1. Plan every vnode and link without touching `topo`.
  std::unordered_map<int64_t, size_t> index;  // GML id -> position in g.nodes
  index.reserve(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!index.emplace(g.nodes[i].id, i).second) {
      return InvalidArgumentError(g.nodes[i].loc.ToString() + ": duplicate node id " +
                                  std::to_string(g.nodes[i].id));
    }
  }
  std::vector<Vnode> vnodes;
  vnodes.reserve(g.nodes.size());
  std::unordered_set<std::string> taken;
  taken.reserve(g.nodes.size());
  for (const GmlNode& n : g.nodes) {
    const std::string label = SanitizeGmlLabel(n.label, n.id);
    std::string name = ComposeName(opts.prefix, label, "");
    for (int k = 2; taken.count(name) || topo.Find(name); ++k) {
      name = ComposeName(opts.prefix, label, "-" + std::to_string(k));
    }
    if (!IsValidVnodeName(name)) {
      return InvalidArgumentError(n.loc.ToString() + ": node " + std::to_string(n.id) +
                                  " (label \"" + n.label + "\") with prefix '" + opts.prefix +
                                  "' gives '" + name +
                                  "', not a valid vnode name (1-63 characters of a-z, 0-9 and "
                                  "'-', not starting or ending with '-')");
    }
    taken.insert(name);
    Vnode v;
    v.name = std::move(name);
    v.kind = opts.kind;
    v.label = n.label;
    v.latitude = n.latitude;
    v.longitude = n.longitude;
    v.loc = n.loc;
    vnodes.push_back(std::move(v));
  }

  GmlImportReport report;
  struct PlannedLink {
    size_t a, b;
    LinkProfile profile;
    SourceLoc loc;
  };
  std::vector<PlannedLink> planned;
  planned.reserve(g.edges.size());
  size_t self_loops = 0;
  DisjointSets ds(g.nodes.size());
  for (const GmlEdge& e : g.edges) {
    auto ia = index.find(e.source), ib = index.find(e.target);
    if (ia == index.end() || ib == index.end()) {
      return InvalidArgumentError(e.loc.ToString() + ": edge to unknown node id " +
                                  std::to_string(ia == index.end() ? e.source : e.target));
    }
    if (ia->second == ib->second) {
      ++self_loops;
      continue;
    }
    const GmlNode& na = g.nodes[ia->second];
    const GmlNode& nb = g.nodes[ib->second];
    LinkProfile p = opts.extra;
    if (opts.delay_from_geo && na.latitude && na.longitude && nb.latitude && nb.longitude) {
      p.delay =
          FibreDelay(GreatCircleMeters(*na.latitude, *na.longitude, *nb.latitude, *nb.longitude));
      ++report.geo_delay_links;
    } else {
      p.delay = opts.default_delay;
      ++report.default_delay_links;
    }
    // A LinkSpeed of 0 means "unknown" in the zoo data; a zero rate is not shapeable.
    if (opts.use_link_speed && e.link_speed_bps && *e.link_speed_bps > 0) {
      p.rate_bps = e.link_speed_bps;
    } else if (opts.default_rate_bps) {
      p.rate_bps = opts.default_rate_bps;
    }
    ds.Union(ia->second, ib->second);
    planned.push_back({ia->second, ib->second, std::move(p), e.loc});
  }
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (ds.Find(i) == i) ++report.components;
  }

  // 2. Apply. Names were checked above, so AddVnode cannot clash; should it
  // fail anyway, the error is returned with the topology possibly extended,
  // which only a bug in Topology could cause.
  std::vector<VnodeId> ids;
  ids.reserve(vnodes.size());
  for (Vnode& v : vnodes) {
    GRIDEMU_ASSIGN_OR_RETURN(VnodeId id, topo.AddVnode(std::move(v)));
    ids.push_back(id);
  }
  report.vnodes = ids;
  report.links.reserve(planned.size());
  for (PlannedLink& pl : planned) {
    Link l;
    l.a = ids[pl.a];
    l.b = ids[pl.b];
    l.forward = pl.profile;
    l.reverse = std::move(pl.profile);
    l.loc = std::move(pl.loc);
    GRIDEMU_ASSIGN_OR_RETURN(LinkId id, topo.AddLink(std::move(l)));
    report.links.push_back(id);
  }

  if (g.directed) {
    report.notes.push_back("directed graph: every edge became one bidirectional link");
  }
  if (self_loops > 0) {
    report.notes.push_back("skipped " + Plural(self_loops, "self-loop edge", "self-loop edges") +
                           " (a link needs two different vnodes)");
  }
  if (opts.delay_from_geo && report.default_delay_links > 0) {
    report.notes.push_back(Plural(report.default_delay_links, "link", "links") +
                           " got the default delay: an end has no coordinates");
  }
  if (report.components > 1) {
    report.notes.push_back("graph is disconnected: " + std::to_string(report.components) +
                           " components");
  }
  return report;
}

}  // namespace gridemu::topology
