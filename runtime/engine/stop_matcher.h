// Holds back decoded text that could still turn into a stop string, so streamed text never
// has to be taken back. Used by the single-reply generator and the batching engine.
#pragma once
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace qw {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (const auto& s : stops_) max_len_ = std::max(max_len_, s.size());
  }
  // Appends text; returns true if a stop string now occurs (text is cut before it).
  bool push(const std::string& piece) {
    const size_t search_from = text_.size() > max_len_ ? text_.size() - max_len_ : 0;
    text_ += piece;
    size_t best = std::string::npos;
    for (const auto& s : stops_) {
      if (s.empty()) continue;
      const size_t at = text_.find(s, search_from);
      if (at != std::string::npos) best = std::min(best, at);
    }
    if (best != std::string::npos) {
      text_.resize(best);
      return true;
    }
    return false;
  }
  // Text that can be released now: all of it but the longest tail that is a proper prefix
  // of some stop string (everything when `final`).
  std::string_view releasable(bool final) {
    size_t keep = 0;
    if (!final)
      for (const auto& s : stops_)
        for (size_t n = std::min(s.size() - (s.empty() ? 0 : 1), text_.size()); n > keep; --n)
          if (text_.compare(text_.size() - n, n, s, 0, n) == 0) {
            keep = n;
            break;
          }
    const size_t end = text_.size() - keep;
    std::string_view out(text_.data() + released_, end > released_ ? end - released_ : 0);
    released_ = std::max(released_, end);
    return out;
  }
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  size_t max_len_ = 0;
  std::string text_;
  size_t released_ = 0;
};

}  // namespace qw
