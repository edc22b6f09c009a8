// What the direct oneDNN calls of folded eval passes share (native/onednn_conv.cpp,
// native/onednn_pool.cpp): the CPU engine, and running a compiled primitive once.
#pragma once

#ifdef XT_WITH_ONEDNN

#include "torch_includes.h"

#include <unordered_map>

#include <dnnl.hpp>

namespace xt {

inline dnnl::engine& onednn_cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Runs `primitive` with `args` on the calling thread and waits; a scratchpad of the primitive's
// `scratchpad` size (it was compiled with a user scratchpad) comes from libtorch's allocator.
inline void onednn_execute(const dnnl::primitive& primitive, std::unordered_map<int, dnnl::memory> args,
                           const dnnl::memory::desc& scratchpad) {
  torch::Tensor buffer;
  if (const size_t bytes = scratchpad.get_size()) {
    buffer = at::empty({static_cast<int64_t>(bytes)}, torch::TensorOptions().dtype(at::kByte));
    args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(scratchpad, onednn_cpu_engine(), buffer.data_ptr()));
  }
  dnnl::stream stream(onednn_cpu_engine());
  primitive.execute(stream, args);
  stream.wait();
}

}  // namespace xt

#endif
