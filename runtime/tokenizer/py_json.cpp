#include "tokenizer/py_json.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace qw {
namespace {

// Python's float repr switches to exponent notation when the decimal point position
// (value = 0.DIGITS x 10^decpt) is at most -4 or above 16 (format_float_short, mode 'r').
constexpr int kReprMinDecpt = -4;
constexpr int kReprMaxDecpt = 16;
constexpr size_t kDoubleCharsMax = 64;

void dumps_string(const std::string& s, std::string& out) {
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);  // json.dumps uses lowercase hex
          out += buf;
        } else {
          out += ch;  // ensure_ascii=False: UTF-8 passes through
        }
    }
  }
  out += '"';
}

void dumps(const nlohmann::ordered_json& v, std::string& out) {
  using V = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case V::null:
      out += "null";
      break;
    case V::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case V::number_integer:
      out += std::to_string(v.get<int64_t>());
      break;
    case V::number_unsigned:
      out += std::to_string(v.get<uint64_t>());
      break;
    case V::number_float:
      out += python_float_repr(v.get<double>());
      break;
    case V::string:
      dumps_string(v.get_ref<const std::string&>(), out);
      break;
    case V::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        dumps(e, out);
      }
      out += ']';
      break;
    }
    case V::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        dumps_string(k, out);
        out += ": ";
        dumps(e, out);
      }
      out += '}';
      break;
    }
    default:
      out += "null";
      break;  // binary / discarded: not produced by JSON parsing
  }
}

}  // namespace

std::string python_float_repr(double x) {
  if (x != x) return "NaN";  // json.dumps spellings; JSON input cannot produce them
  if (x == std::numeric_limits<double>::infinity()) return "Infinity";
  if (x == -std::numeric_limits<double>::infinity()) return "-Infinity";
  char buf[kDoubleCharsMax];
  const auto res = std::to_chars(buf, buf + sizeof(buf), x, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // shortest round trip: [-]d[.ddd]e[+-]XX
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp10 = std::stoi(sci.substr(e + 1));
  const int decpt = exp10 + 1;
  std::string out = sign;
  if (decpt > kReprMinDecpt && decpt <= kReprMaxDecpt) {
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
    } else if (static_cast<size_t>(decpt) >= digits.size()) {
      out += digits + std::string(decpt - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  const std::string exp_digits = std::to_string(std::abs(exp10));
  out += exp10 < 0 ? "e-" : "e+";
  if (exp_digits.size() < 2) out += '0';  // Python pads the exponent to two digits
  return out + exp_digits;
}

std::string python_json_dumps(const nlohmann::ordered_json& value) {
  std::string out;
  dumps(value, out);
  return out;
}

Expected<std::string> python_str(const nlohmann::ordered_json& v, const std::string& what) {
  using V = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case V::string:
      return v.get<std::string>();
    case V::null:
      return std::string("None");
    case V::boolean:
      return std::string(v.get<bool>() ? "True" : "False");
    case V::number_integer:
    case V::number_unsigned:
    case V::number_float:
      return python_json_dumps(v);
    default:
      return Status::Error(what +
                           ": a list or object here would print as a Python repr, "
                           "which is not supported (pass a string)");
  }
}

}  // namespace qw
