#include "adam_cpu.h"

#include <ATen/Parallel.h>

#include <cmath>

namespace xt {

namespace {

// The portable build targets baseline x86-64; these clones let the loop use the CPU's vectors
// (AVX-512 or AVX2 with FMA) where it has them. The file is compiled with -ffp-contract=off, so
// only the explicit fmaf() calls fuse, and every clone rounds exactly alike.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define XT_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define XT_VECTOR_CLONES
#endif

XT_VECTOR_CLONES
void adam_range(float* __restrict param, const float* __restrict grad, float* __restrict exp_avg,
                float* __restrict exp_avg_sq, int64_t begin, int64_t end, AdamCpuStep s) {
  for (int64_t i = begin; i < end; ++i) {
    float p = param[i];
    float g = grad[i];
    if (s.decoupled) p = p * s.decoupled_factor;                            // param.mul_(1 - lr * wd)
    if (s.l2_weight_decay != 0.0f) g = std::fmaf(p, s.l2_weight_decay, g);  // grad.add(param, wd)
    // exp_avg.mul_(beta1).add_(grad, 1 - beta1)
    const float m = std::fmaf(g, s.one_minus_beta1, exp_avg[i] * s.beta1);
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2): ATen computes v + (value * g) * g, and
    // its vector kernel, as libtorch is compiled, fuses the last multiply-add.
    const float v = std::fmaf(s.one_minus_beta2 * g, g, exp_avg_sq[i] * s.beta2);
    // (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    const float denom = std::sqrt(v) / s.bias_correction2_sqrt + s.eps;
    // param.addcdiv_(exp_avg, denom, -step_size)
    param[i] = p + s.neg_step_size * m / denom;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

}  // namespace

void adam_step_cpu(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                   const AdamCpuStep& step) {
  // 16K elements (256 KB over the four arrays) a task: at::parallel_for shares the range over the
  // calling thread's intra-op threads (the addon compiles with -fopenmp where libtorch uses OpenMP).
  at::parallel_for(0, n, 16384,
                   [&](int64_t begin, int64_t end) { adam_range(param, grad, exp_avg, exp_avg_sq, begin, end, step); });
}

}  // namespace xt
