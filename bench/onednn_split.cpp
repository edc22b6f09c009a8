// Diagnostic, not a benchmark of a user path: the ceiling oneDNN 2.6 sets for our eval passes' heaviest
// 1x1 convolutions on this machine, to hold against their time inside a real pass (ONEDNN_VERBOSE=1 on
// `model.forward()`). Each shape runs as a chain of layers with distinct weights (so the weights come from
// memory, as in a pass, not from a warm cache), channels-last, ReLU fused, three ways:
//   whole:  one batch of 8 over 2 OpenMP threads (what a pass did before native/split_pass.*);
//   split:  two threads side by side, one OpenMP thread and 4 images each, sharing the weights (what an
//           eval pass does now: each figure is one helper's time per layer);
//   alone:  one such helper with the other core idle (what the second busy core costs the first: about 5%
//           on the Zen 5 VM, its clock).
//
//   g++ -O2 -fopenmp bench/onednn_split.cpp -ldnnl -o /tmp/onednn_split && /tmp/onednn_split
#include <dnnl.hpp>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static engine eng(engine::kind::cpu, 0);

// `layers` 1x1 convolutions c -> oc at h x h over a batch of n, each with its own weights unless
// `weights_of` is given (then its weights are shared), compiled for `threads` OpenMP threads: oneDNN fixes a
// primitive's thread count when it is created, whatever the thread that runs it later asks for.
struct Chain {
  std::vector<convolution_forward> layers;
  std::vector<memory> weights, biases;
  memory src, dst;
};

static Chain make_chain(int n, int c, int oc, int h, int layers, int threads, const Chain* weights_of) {
  omp_set_num_threads(threads);
  memory::desc src({n, c, h, h}, dt::f32, tag::nhwc), dst({n, oc, h, h}, dt::f32, tag::nhwc);
  memory::desc w({oc, c, 1, 1}, dt::f32, tag::any), b({oc}, dt::f32, tag::x);
  primitive_attr attr;
  post_ops ops;
  ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  attr.set_post_ops(ops);
  convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct, src, w, b, dst, {1, 1},
                              {0, 0}, {0, 0});
  convolution_forward::primitive_desc pd(d, attr, eng);
  Chain chain;
  for (int i = 0; i < layers; i++) {
    chain.layers.emplace_back(pd);
    if (weights_of) {
      chain.weights.push_back(weights_of->weights[i]);
      chain.biases.push_back(weights_of->biases[i]);
    } else {
      chain.weights.emplace_back(pd.weights_desc(), eng);
      chain.biases.emplace_back(b, eng);
      std::memset(chain.weights.back().get_data_handle(), 0, pd.weights_desc().get_size());
      std::memset(chain.biases.back().get_data_handle(), 0, b.get_size());
    }
  }
  chain.src = memory(pd.src_desc(), eng);
  chain.dst = memory(pd.dst_desc(), eng);
  std::memset(chain.src.get_data_handle(), 0, pd.src_desc().get_size());
  return chain;
}

// Milliseconds per layer over `passes` runs of the chain after 5 untimed ones, on the calling thread
// with `threads` OpenMP threads.
static double ms_per_layer(const Chain& chain, int threads, int passes) {
  omp_set_num_threads(threads);
  stream s(eng);
  auto run = [&] {
    for (size_t i = 0; i < chain.layers.size(); i++) {
      chain.layers[i].execute(s, {{DNNL_ARG_SRC, chain.src},
                                  {DNNL_ARG_WEIGHTS, chain.weights[i]},
                                  {DNNL_ARG_BIAS, chain.biases[i]},
                                  {DNNL_ARG_DST, chain.dst}});
    }
    s.wait();
  };
  for (int i = 0; i < 5; i++) run();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < passes; i++) run();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return ms / passes / static_cast<double>(chain.layers.size());
}

int main() {
  // in channels, out channels, size: Xception's heaviest 1x1 shapes at 96x96.
  const int shapes[][3] = {{728, 728, 6}, {728, 728, 12}, {728, 1024, 6}, {1024, 1536, 3},
                           {1536, 2048, 3}, {128, 128, 45}, {64, 128, 45}};
  const int layers = 8, passes = 20;
  std::printf("| shape (in, out, size) | whole: batch 8, 2 threads, ms | split: 2 x (batch 4, 1 thread), ms | alone, ms |\n");
  std::printf("|---|---|---|---|\n");
  for (const auto& s : shapes) {
    const Chain whole = make_chain(8, s[0], s[1], s[2], layers, 2, nullptr);
    const double whole_ms = ms_per_layer(whole, 2, passes);
    const Chain half1 = make_chain(4, s[0], s[1], s[2], layers, 1, &whole);
    const Chain half2 = make_chain(4, s[0], s[1], s[2], layers, 1, &whole);
    double split1 = 0, split2 = 0, alone = 0;
    std::thread a([&] { split1 = ms_per_layer(half1, 1, passes); });
    std::thread b([&] { split2 = ms_per_layer(half2, 1, passes); });
    a.join();
    b.join();
    std::thread c([&] { alone = ms_per_layer(half1, 1, passes); });
    c.join();
    std::printf("| %d, %d, %dx%d | %.3f | %.3f / %.3f | %.3f |\n", s[0], s[1], s[2], s[2], whole_ms, split1, split2,
                alone);
  }
}
