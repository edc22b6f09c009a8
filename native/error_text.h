// The user-facing text of an exception: a c10 error without its C++ backtrace. Shared by the N-API
// error translation (napi_support.h) and by code that rewraps errors with context
// (distributed_group.cpp).
#pragma once

#include <exception>
#include <string>

#include "torch_includes.h"

namespace xt {

inline std::string error_text(const std::exception& e) {
  if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
  return e.what();
}

}  // namespace xt
