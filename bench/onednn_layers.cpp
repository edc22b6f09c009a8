// Diagnostic, not a benchmark of a user path: how fast oneDNN (the library libtorch's CPU convolutions
// and our folded eval passes run on) can run Xception's convolution shapes in isolation, per layout
// it offers. Each shape is compiled for channels-last (nhwc, what our eval passes use), oneDNN's
// blocked layout (nChw16c, what PyTorch's optimize_for_inference and onnxruntime's NCHWc resemble),
// the layout oneDNN picks itself ("any"), and, for 1x1 convolutions, as a matmul; ReLU fused, bias
// added, weights reordered beforehand, and each timed over 50 calls on the same buffers after 5
// warm-up calls. docs/benchmarks.md ("Where the time goes now") quotes it.
//
//   g++ -O2 bench/onednn_layers.cpp -ldnnl -o /tmp/onednn_layers && OMP_NUM_THREADS=2 /tmp/onednn_layers
#include <dnnl.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_map>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static engine eng(engine::kind::cpu, 0);
static stream strm(eng);

static double time_ms(const primitive& p, const std::unordered_map<int, memory>& args) {
  for (int i = 0; i < 5; i++) p.execute(strm, args);
  strm.wait();
  const int n = 50;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; i++) p.execute(strm, args);
  strm.wait();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / n;
}

static post_ops relu() {
  post_ops ops;
  ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  return ops;
}

// A stride-1 convolution of a batch of n images, c -> oc channels, h x h, k x k; depthwise when groups = c.
static double conv(int n, int c, int h, int oc, int k, int groups, tag layout, std::string* impl) {
  const int pad = groups > 1 ? k / 2 : 0, oh = h + 2 * pad - k + 1;
  memory::desc src({n, c, h, h}, dt::f32, layout), dst({n, oc, oh, oh}, dt::f32, layout);
  const memory::dims wdims = groups > 1 ? memory::dims{groups, oc / groups, c / groups, k, k} : memory::dims{oc, c, k, k};
  memory::desc w(wdims, dt::f32, tag::any), b({oc}, dt::f32, tag::x);
  primitive_attr attr;
  attr.set_post_ops(relu());
  convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct, src, w, b, dst, {1, 1},
                              {pad, pad}, {pad, pad});
  convolution_forward::primitive_desc pd(d, attr, eng);
  *impl = pd.impl_info_str();
  memory ms(pd.src_desc(), eng), mw(pd.weights_desc(), eng), mb(b, eng), md(pd.dst_desc(), eng);
  std::memset(ms.get_data_handle(), 0, pd.src_desc().get_size());
  return time_ms(convolution_forward(pd), {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_BIAS, mb}, {DNNL_ARG_DST, md}});
}

// The same 1x1 convolution as [n*h*h, c] x [c, oc].
static double matmul_1x1(int rows, int c, int oc, std::string* impl) {
  memory::desc a({rows, c}, dt::f32, tag::ab), w({c, oc}, dt::f32, tag::any), b({1, oc}, dt::f32, tag::ab),
      out({rows, oc}, dt::f32, tag::ab);
  primitive_attr attr;
  attr.set_post_ops(relu());
  matmul::primitive_desc pd(matmul::desc(a, w, b, out), attr, eng);
  *impl = pd.impl_info_str();
  memory ma(a, eng), mw(pd.weights_desc(), eng), mb(b, eng), mo(out, eng);
  return time_ms(matmul(pd), {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_BIAS, mb}, {DNNL_ARG_DST, mo}});
}

int main() {
  // batch, in channels, size, out channels, kernel, groups: Xception's shapes at 96x96, batch 8.
  const int shapes[][6] = {{8, 64, 45, 128, 1, 1},   {8, 128, 45, 128, 1, 1},  {8, 128, 23, 256, 1, 1},
                           {8, 256, 23, 256, 1, 1},  {8, 256, 12, 728, 1, 1},  {8, 728, 12, 728, 1, 1},
                           {8, 728, 6, 728, 1, 1},   {8, 728, 6, 1024, 1, 1},  {8, 1024, 3, 1536, 1, 1},
                           {8, 1536, 3, 2048, 1, 1}, {8, 728, 6, 728, 3, 728}, {8, 128, 45, 128, 3, 128},
                           {8, 32, 47, 64, 3, 1}};
  std::printf("| shape (batch, in, size, out, kernel, groups) | nhwc ms | nChw16c ms | oneDNN's choice ms | matmul ms |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const auto& s : shapes) {
    std::string i1, i2, i3, i4 = "-";
    const double a = conv(s[0], s[1], s[2], s[3], s[4], s[5], tag::nhwc, &i1);
    const double b = conv(s[0], s[1], s[2], s[3], s[4], s[5], tag::nChw16c, &i2);
    const double c = conv(s[0], s[1], s[2], s[3], s[4], s[5], tag::any, &i3);
    const double d = s[4] == 1 ? matmul_1x1(s[0] * s[2] * s[2], s[1], s[3], &i4) : -1;
    std::printf("| %d, %d, %d, %d, %dx%d, %d | %.2f (%s) | %.2f (%s) | %.2f (%s) | %s |\n", s[0], s[1], s[2], s[3], s[4],
                s[4], s[5], a, i1.c_str(), b, i2.c_str(), c, i3.c_str(),
                d < 0 ? "-" : (std::to_string(d).substr(0, 4) + " (" + i4 + ")").c_str());
  }
}
