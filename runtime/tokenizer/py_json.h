// Python-compatible text forms of JSON values, for byte-exact chat templates:
// transformers' `tojson` filter is json.dumps(x, ensure_ascii=False, indent=None,
// separators=None, sort_keys=False), and Jinja's {{ x }} prints str(x).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace qw {

// json.dumps(value, ensure_ascii=False): ", " / ": " separators, keys in stored order,
// floats as Python's repr (shortest round trip, exponent outside 1e-4 <= |x| < 1e16).
std::string python_json_dumps(const nlohmann::ordered_json& value);

// Python repr() of a float (what json.dumps and str() print for it).
std::string python_float_repr(double x);

// str(value) for scalars as Jinja prints them: strings as is, None / True / False, numbers.
// Lists and dicts (Python repr territory) are refused: `what` names the field.
Expected<std::string> python_str(const nlohmann::ordered_json& value, const std::string& what);

}  // namespace qw
