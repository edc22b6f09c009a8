// Multiply-accumulates of the convolutions and linear layers run on this thread while a
// MacCounter is alive (as thop and fvcore count them). They are read from ATen's RecordFunction
// callbacks on aten::convolution and aten::linear, as the PyTorch profiler counts FLOPs, so no
// model code counts anything; training never creates one.
#pragma once

#include "torch_includes.h"

#include <ATen/record_function.h>

namespace xt {

class MacCounter {
 public:
  MacCounter();
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;

  int64_t total() const { return total_; }

 private:
  static void on_op_end(const at::RecordFunction& op, at::ObserverContext*);

  MacCounter* previous_;  // counters nest: an op counts in every one alive on the thread
  at::CallbackHandle callback_ = 0;
  int64_t total_ = 0;
};

}  // namespace xt
