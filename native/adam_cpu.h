// Adam's update as one pass over a CPU float32 parameter, for Adam (adam.h) on the CPU. torch.optim's
// single-tensor update is eight ATen operations per parameter, each a pass over memory and some a
// new temporary: 64 ms a step for Xception's 20.8M parameters on 2 threads, against 2.4 ms for one
// read-and-write pass (measured with torch 1.13 on this project's 2-core machine). Here each
// element is read once and written once. The arithmetic is torch.optim's, in the same order and
// float32 rounding (explicit fused multiply-adds where ATen's vectorised add and addcmul kernels
// have them): against torch.optim 1.13 on the same machine every value is bit-identical
// (test/optim.test.ts checks 1e-6, as other libtorch builds may round a multiply-add apart).
#pragma once

#include <cstdint>

namespace xt {

// The scalars of one step, as float32 (ATen casts a step's Python scalars to the tensor's type).
struct AdamCpuStep {
  float beta1 = 0, one_minus_beta1 = 0, beta2 = 0, one_minus_beta2 = 0;
  float bias_correction2_sqrt = 1;
  float eps = 0;
  float neg_step_size = 0;     // -lr / bias_correction1
  float l2_weight_decay = 0;   // Adam: grad + weight_decay * param (0: none)
  bool decoupled = false;      // AdamW: param * decoupled_factor first
  float decoupled_factor = 1;  // 1 - lr * weight_decay
};

// param, grad, exp_avg and exp_avg_sq: `n` float32 values each, in the same layout. Runs on
// libtorch's intra-op threads.
void adam_step_cpu(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                   const AdamCpuStep& step);

}  // namespace xt
