// A Conv2d module's padding as numbers, across libtorch versions: its options hold a variant of explicit
// sizes, 'valid' and 'same' (c10::variant on libtorch 1.13, std::variant on 2.x).
#pragma once

#include "torch_includes.h"

#include <type_traits>
#include <vector>

namespace xt {

// The explicit padding {height, width}; empty for 'valid' and 'same', which callers that need
// numbers leave to libtorch's path. `visit` by argument-dependent lookup: c10::visit on 1.13's
// c10::variant, std::visit where 2.x uses std::variant.
inline std::vector<int64_t> explicit_padding(const torch::nn::detail::ConvNdOptions<2>& options) {
  std::vector<int64_t> padding;
  visit(
      [&](const auto& alternative) {
        if constexpr (std::is_same_v<std::decay_t<decltype(alternative)>, torch::ExpandingArray<2>>) {
          padding.assign(alternative->begin(), alternative->end());
        }
      },
      options.padding());
  return padding;
}

}  // namespace xt
