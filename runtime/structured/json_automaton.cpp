#include "structured/json_automaton.h"

namespace qw {

namespace {

enum Kind : uint8_t { kRoot, kObject, kArray, kString, kNumber, kLiteral };
enum RootMode : uint8_t { R_PREFIX, R_VALUE, R_SUFFIX, R_DONE };
enum ObjMode : uint8_t { O_START, O_KEY, O_COLON, O_VALUE, O_AFTER, O_NEXT };
enum ArrMode : uint8_t { A_START, A_AFTER, A_NEXT };
// S_U1..S_U3: that many UTF-8 continuation bytes (80-BF) to go; S_E0/S_ED/S_F0/S_F4: the
// first continuation byte has a narrower range (no overlongs, no surrogates, <= U+10FFFF).
enum StrMode : uint8_t { S_IN, S_ESC, S_HEX, S_U1, S_U2, S_U3, S_E0, S_ED, S_F0, S_F4 };
// Exponents have at most two digits: 1e999 is valid JSON but overflows a double, and
// common parsers (nlohmann, Python's json to float) refuse or turn it into inf.
enum NumMode : uint8_t { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP, N_EXP2 };

bool is_ws(uint8_t b) { return b == ' ' || b == '\n' || b == '\t' || b == '\r'; }
bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
bool is_hex(uint8_t b) {
  return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
}

void add(JsonState& out, const JsonConfig& c) {
  for (uint32_t i = 0; i < out.n; ++i)
    if (out.c[i] == c) return;
  if (out.n < JsonState::kMax) out.c[out.n++] = c;
}

JsonConfig frame(uint8_t kind, uint32_t node, uint8_t mode) {
  JsonConfig c;
  c.kind = kind;
  c.node = node;
  c.mode = mode;
  return c;
}

bool literal_complete(const SchemaNode& n, const JsonConfig& c, bool* longer) {
  bool complete = false;
  *longer = false;
  for (uint64_t m = c.cands; m; m &= m - 1) {
    const size_t sz = n.literals[size_t(__builtin_ctzll(m))].size();
    if (sz == c.len) complete = true;
    if (sz > c.len) *longer = true;
  }
  return complete;
}

bool number_complete(uint8_t mode) {
  return mode == N_ZERO || mode == N_INT || mode == N_FRAC || mode == N_EXP || mode == N_EXP2;
}

}  // namespace

size_t JsonAutomaton::Hash::operator()(const JsonConfig& c) const {
  uint64_t w[3];
  std::memcpy(w, &c, sizeof w);
  uint64_t h = w[0] * 0x9E3779B97F4A7C15ull;
  h ^= (w[1] + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2));
  h ^= (w[2] + 0x85EBCA77C2B2AE63ull + (h << 6) + (h >> 2));
  return size_t(h);
}

JsonAutomaton::JsonAutomaton(SchemaGraph graph, std::string prefix, std::string suffix)
    : g_(std::move(graph)), prefix_(std::move(prefix)), suffix_(std::move(suffix)) {
  stack_.emplace_back();  // id 0: no parent
}

JsonState JsonAutomaton::initial() const {
  JsonState s;
  s.n = 1;
  s.c[0] = frame(kRoot, g_.root, prefix_.empty() ? R_VALUE : R_PREFIX);
  return s;
}

uint32_t JsonAutomaton::intern(const JsonConfig& c) {
  auto [it, inserted] = intern_.try_emplace(c, uint32_t(stack_.size()));
  if (inserted) stack_.push_back(c);
  return it->second;
}

uint64_t JsonAutomaton::key_candidates(const SchemaNode& n, uint32_t from) const {
  uint64_t m = 0;
  for (size_t p = from; p < n.prop_keys.size(); ++p) {
    m |= uint64_t(1) << p;
    if (n.prop_required[p]) break;  // properties keep their order: no skipping a required one
  }
  return m;
}

void JsonAutomaton::push_child(const JsonConfig& parent, JsonConfig child, JsonState& out) {
  child.parent = intern(parent);
  add(out, child);
}

// The top frame is complete: continue in the parent (whose mode already says "after the
// value"), re-reading byte `reprocess` there when the frame ended by seeing it (numbers,
// literals that are a prefix of a longer one).
void JsonAutomaton::pop(const JsonConfig& c, JsonState& out, int reprocess) {
  const JsonConfig parent = stack_[c.parent];
  if (reprocess < 0) add(out, parent);
  else step_config(parent, uint8_t(reprocess), out);
}

void JsonAutomaton::begin_value(uint32_t node, JsonConfig parent, uint8_t b, JsonState& out) {
  const SchemaNode& n = g_.nodes[node];
  switch (n.kind) {
    case SchemaKind::AnyOf:
      for (uint32_t a : n.alts) begin_value(a, parent, b, out);
      return;
    case SchemaKind::Object:
      if (b == '{') push_child(parent, frame(kObject, node, O_START), out);
      return;
    case SchemaKind::Array:
      if (b == '[') push_child(parent, frame(kArray, node, A_START), out);
      return;
    case SchemaKind::String:
      if (b == '"') push_child(parent, frame(kString, node, S_IN), out);
      return;
    case SchemaKind::Number:
    case SchemaKind::Integer:
      if (b == '-') push_child(parent, frame(kNumber, node, N_MINUS), out);
      else if (b == '0') push_child(parent, frame(kNumber, node, N_ZERO), out);
      else if (b >= '1' && b <= '9') push_child(parent, frame(kNumber, node, N_INT), out);
      return;
    case SchemaKind::Literal: {
      JsonConfig c = frame(kLiteral, node, 0);
      for (size_t i = 0; i < n.literals.size(); ++i)
        if (uint8_t(n.literals[i][0]) == b) c.cands |= uint64_t(1) << i;
      if (!c.cands) return;
      c.len = 1;
      bool longer = false;
      if (literal_complete(n, c, &longer) && !longer) add(out, parent);  // e.g. enum [1]
      else push_child(parent, c, out);
      return;
    }
  }
}

void JsonAutomaton::step_config(const JsonConfig& c0, uint8_t b, JsonState& out) {
  JsonConfig c = c0;
  switch (c.kind) {
    case kRoot:
      switch (c.mode) {
        case R_PREFIX:
          if (uint8_t(prefix_[c.len]) != b) return;
          if (++c.len == prefix_.size()) {
            c.mode = R_VALUE;
            c.len = 0;
          }
          add(out, c);
          return;
        case R_VALUE: {
          JsonConfig after = c;
          after.mode = suffix_.empty() ? R_DONE : R_SUFFIX;
          begin_value(c.node, after, b, out);
          return;
        }
        case R_SUFFIX:
          if (uint8_t(suffix_[c.len]) != b) return;
          if (++c.len == suffix_.size()) {
            c.mode = R_DONE;
            c.len = 0;
          }
          add(out, c);
          return;
        default:
          return;
      }

    case kObject: {
      const SchemaNode& n = g_.nodes[c.node];
      if (c.mode != O_KEY && is_ws(b)) return add(out, c);
      auto open_key = [&] {
        if (n.free_map) {
          JsonConfig after = c;
          after.mode = O_COLON;
          push_child(after, frame(kString, 0, S_IN), out);
          return;
        }
        const uint64_t k = key_candidates(n, c.pos);
        if (!k) return;
        c.mode = O_KEY;
        c.len = 1;
        c.cands = k;
        add(out, c);
      };
      auto may_close = [&] { return n.free_map || required_rest(n, c.pos, true).empty(); };
      switch (c.mode) {
        case O_START:
          if (b == '"') open_key();
          else if (b == '}' && may_close()) pop(c, out, -1);
          return;
        case O_KEY: {
          uint64_t next = 0;
          for (uint64_t m = c.cands; m; m &= m - 1) {
            const int i = __builtin_ctzll(m);
            const std::string& key = n.prop_keys[size_t(i)];
            if (key.size() > c.len && uint8_t(key[c.len]) == b) next |= uint64_t(1) << i;
          }
          if (!next) return;
          c.cands = next;
          ++c.len;
          for (uint64_t m = next; m; m &= m - 1) {
            const int i = __builtin_ctzll(m);
            if (n.prop_keys[size_t(i)].size() == c.len) {  // keys end in '"': unique
              c.mode = O_COLON;
              c.pos = uint32_t(i);
              c.cands = 0;
              c.len = 0;
              break;
            }
          }
          add(out, c);
          return;
        }
        case O_COLON:
          if (b == ':') {
            c.mode = O_VALUE;
            add(out, c);
          }
          return;
        case O_VALUE: {
          JsonConfig after = c;
          after.mode = O_AFTER;
          if (n.free_map) {
            begin_value(n.value_node, after, b, out);
          } else {
            after.pos = c.pos + 1;
            begin_value(n.prop_nodes[c.pos], after, b, out);
          }
          return;
        }
        case O_AFTER:
          if (b == ',' && (n.free_map || key_candidates(n, c.pos))) {
            c.mode = O_NEXT;
            add(out, c);
          } else if (b == '}' && may_close()) {
            pop(c, out, -1);
          }
          return;
        case O_NEXT:
          if (b == '"') open_key();
          return;
        default:
          return;
      }
    }

    case kArray: {
      const SchemaNode& n = g_.nodes[c.node];
      if (is_ws(b)) return add(out, c);
      switch (c.mode) {
        case A_START:
          if (b == ']') {
            if (n.min_items == 0) pop(c, out, -1);
            return;
          }
          if (n.max_items == 0) return;
          [[fallthrough]];
        case A_NEXT: {
          JsonConfig after = c;
          after.mode = A_AFTER;
          after.pos = c.pos + 1;
          begin_value(n.items, after, b, out);
          return;
        }
        case A_AFTER:
          if (b == ',' && c.pos < n.max_items) {
            c.mode = A_NEXT;
            add(out, c);
          } else if (b == ']' && c.pos >= n.min_items) {
            pop(c, out, -1);
          }
          return;
        default:
          return;
      }
    }

    case kString: {
      auto to = [&](uint8_t m) {
        c.mode = m;
        add(out, c);
      };
      const bool cont = b >= 0x80 && b <= 0xBF;
      switch (c.mode) {
        case S_IN:
          if (b == '"') return pop(c, out, -1);
          if (b == '\\') return to(S_ESC);
          if (b < 0x20) return;  // control characters must be escaped
          if (b < 0x80) return to(S_IN);
          if (b >= 0xC2 && b <= 0xDF) return to(S_U1);
          if (b == 0xE0) return to(S_E0);
          if (b == 0xED) return to(S_ED);
          if (b >= 0xE1 && b <= 0xEF) return to(S_U2);
          if (b == 0xF0) return to(S_F0);
          if (b >= 0xF1 && b <= 0xF3) return to(S_U3);
          if (b == 0xF4) return to(S_F4);
          return;
        case S_ESC:
          if (b == 'u') {
            c.len = 4;
            return to(S_HEX);
          }
          if (b == '"' || b == '\\' || b == '/' || b == 'b' || b == 'f' || b == 'n' ||
              b == 'r' || b == 't')
            return to(S_IN);
          return;
        case S_HEX:
          if (!is_hex(b)) return;
          if (--c.len == 0) return to(S_IN);
          return to(S_HEX);
        case S_U1: if (cont) to(S_IN); return;
        case S_U2: if (cont) to(S_U1); return;
        case S_U3: if (cont) to(S_U2); return;
        case S_E0: if (b >= 0xA0 && b <= 0xBF) to(S_U1); return;
        case S_ED: if (b >= 0x80 && b <= 0x9F) to(S_U1); return;
        case S_F0: if (b >= 0x90 && b <= 0xBF) to(S_U2); return;
        case S_F4: if (b >= 0x80 && b <= 0x8F) to(S_U2); return;
        default: return;
      }
    }

    case kNumber: {
      const bool integer = g_.nodes[c.node].kind == SchemaKind::Integer;
      auto to = [&](uint8_t m) {
        c.mode = m;
        add(out, c);
      };
      switch (c.mode) {
        case N_MINUS:
          if (b == '0') to(N_ZERO);
          else if (b >= '1' && b <= '9') to(N_INT);
          return;
        case N_ZERO:
        case N_INT:
        case N_FRAC:
        case N_EXP:
        case N_EXP2:
          if (is_digit(b) && c.mode != N_ZERO && c.mode != N_EXP2)
            return to(c.mode == N_EXP ? uint8_t(N_EXP2) : c.mode);
          if (!integer && b == '.' && (c.mode == N_ZERO || c.mode == N_INT)) return to(N_DOT);
          if (!integer && (b == 'e' || b == 'E') && (c.mode == N_ZERO || c.mode == N_INT ||
                                                     c.mode == N_FRAC))
            return to(N_E);
          return pop(c, out, b);  // the number ended; the byte belongs to the parent
        case N_DOT:
          if (is_digit(b)) to(N_FRAC);
          return;
        case N_E:
          if (b == '+' || b == '-') to(N_ESIGN);
          else if (is_digit(b)) to(N_EXP);
          return;
        case N_ESIGN:
          if (is_digit(b)) to(N_EXP);
          return;
        default:
          return;
      }
    }

    case kLiteral: {
      const SchemaNode& n = g_.nodes[c.node];
      uint64_t next = 0;
      for (uint64_t m = c.cands; m; m &= m - 1) {
        const int i = __builtin_ctzll(m);
        const std::string& lit = n.literals[size_t(i)];
        if (lit.size() > c.len && uint8_t(lit[c.len]) == b) next |= uint64_t(1) << i;
      }
      bool longer = false;
      if (!next) {
        if (literal_complete(n, c, &longer)) pop(c, out, b);
        return;
      }
      c.cands = next;
      ++c.len;
      if (literal_complete(n, c, &longer) && !longer) return pop(c, out, -1);
      add(out, c);
      return;
    }
    default:
      return;
  }
}

void JsonAutomaton::step(const JsonState& in, uint8_t b, JsonState& out) {
  out.n = 0;
  for (uint32_t i = 0; i < in.n; ++i) step_config(in.c[i], b, out);
}

bool JsonAutomaton::config_accepting(const JsonConfig& c0) const {
  JsonConfig c = c0;
  for (;;) {
    if (c.kind == kRoot) return c.mode == R_DONE;
    bool longer = false;
    const bool complete =
        (c.kind == kNumber && number_complete(c.mode)) ||
        (c.kind == kLiteral && literal_complete(g_.nodes[c.node], c, &longer));
    if (!complete) return false;
    c = stack_[c.parent];
  }
}

bool JsonAutomaton::accepting(const JsonState& s) const {
  for (uint32_t i = 0; i < s.n; ++i)
    if (config_accepting(s.c[i])) return true;
  return false;
}

bool JsonAutomaton::done(const JsonState& s) const {
  for (uint32_t i = 0; i < s.n; ++i)
    if (s.c[i].kind != kRoot || s.c[i].mode != R_DONE) return false;
  return s.n > 0;
}

std::string JsonAutomaton::required_rest(const SchemaNode& n, uint32_t from, bool first) const {
  std::string s;
  for (size_t p = from; p < n.prop_keys.size(); ++p) {
    if (!n.prop_required[p]) continue;
    s += (first ? "" : ",") + n.prop_keys[p] + ":" + g_.min_text[n.prop_nodes[p]];
    first = false;
  }
  return s;
}

std::string JsonAutomaton::frame_completion(const JsonConfig& c) const {
  const SchemaNode& n = g_.nodes[c.node];
  switch (c.kind) {
    case kRoot:
      switch (c.mode) {
        case R_PREFIX: return prefix_.substr(c.len) + g_.min_text[c.node] + suffix_;
        case R_VALUE: return g_.min_text[c.node] + suffix_;
        case R_SUFFIX: return suffix_.substr(c.len);
        default: return "";
      }
    case kObject: {
      if (n.free_map) {
        const std::string& v = g_.min_text[n.value_node];
        switch (c.mode) {
          case O_COLON: return ":" + v + "}";
          case O_VALUE: return v + "}";
          case O_NEXT: return "\"\":" + v + "}";
          default: return "}";
        }
      }
      auto via = [&](uint32_t p, size_t key_from) {
        return n.prop_keys[p].substr(key_from) + ":" + g_.min_text[n.prop_nodes[p]] +
               required_rest(n, p + 1, false) + "}";
      };
      auto best_of = [&](uint64_t cands, size_t key_from) {
        std::string best;
        bool have = false;
        for (uint64_t m = cands; m; m &= m - 1) {
          std::string s = via(uint32_t(__builtin_ctzll(m)), key_from);
          if (!have || s.size() < best.size()) best = std::move(s);
          have = true;
        }
        return best;
      };
      switch (c.mode) {
        case O_START: return required_rest(n, c.pos, true) + "}";
        case O_KEY: return best_of(c.cands, c.len);
        case O_COLON: return via(c.pos, n.prop_keys[c.pos].size());
        case O_VALUE:
          return g_.min_text[n.prop_nodes[c.pos]] + required_rest(n, c.pos + 1, false) + "}";
        case O_AFTER: return required_rest(n, c.pos, false) + "}";
        case O_NEXT: return best_of(key_candidates(n, c.pos), 0);
        default: return "";
      }
    }
    case kArray: {
      const std::string& item = g_.min_text[n.items];
      std::string s;
      uint32_t have = c.pos;
      if (c.mode == A_START && n.min_items > 0) {
        s = item;
        have = 1;
      } else if (c.mode == A_NEXT) {
        s = item;
        have = c.pos + 1;
      }
      for (; have < n.min_items; ++have) s += "," + item;
      return s + "]";
    }
    case kString:
      switch (c.mode) {
        case S_ESC: return "\"\"";
        case S_HEX: return std::string(c.len, '0') + "\"";
        case S_U1: return "\x80\"";
        case S_U2: return "\x80\x80\"";
        case S_U3: return "\x80\x80\x80\"";
        case S_E0: return "\xA0\x80\"";
        case S_ED: return "\x80\x80\"";
        case S_F0: return "\x90\x80\x80\"";
        case S_F4: return "\x80\x80\x80\"";
        default: return "\"";
      }
    case kNumber:
      return number_complete(c.mode) ? "" : "0";
    case kLiteral: {
      std::string best;
      bool have = false;
      for (uint64_t m = c.cands; m; m &= m - 1) {
        std::string s = n.literals[size_t(__builtin_ctzll(m))].substr(c.len);
        if (!have || s.size() < best.size()) best = std::move(s);
        have = true;
      }
      return best;
    }
    default:
      return "";
  }
}

std::string JsonAutomaton::completion(const JsonState& s) const {
  std::string best;
  bool have = false;
  for (uint32_t i = 0; i < s.n; ++i) {
    std::string t = frame_completion(s.c[i]);
    for (uint32_t p = s.c[i].parent; p != 0; p = stack_[p].parent) t += frame_completion(stack_[p]);
    if (!have || t.size() < best.size()) best = std::move(t);
    have = true;
  }
  return best;
}

}  // namespace qw
