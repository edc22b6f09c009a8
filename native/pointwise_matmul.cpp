#include "pointwise_matmul.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "autocast.h"
#include "conv_padding.h"
#include "onednn_support.h"
#include "stage.h"

namespace xt {

namespace {
std::atomic<bool> matmul_on{true};
std::atomic<int64_t> matmul_calls{0};
}  // namespace

void set_pointwise_matmul(bool enabled) { matmul_on = enabled; }
int64_t pointwise_matmul_calls() { return matmul_calls.load(); }

bool pointwise_matmul_enabled() {
#ifdef XT_WITH_ONEDNN
  return matmul_on.load();
#else
  return false;
#endif
}

#ifndef XT_WITH_ONEDNN

std::optional<torch::Tensor> pointwise_matmul(const torch::nn::Conv2dImpl&, const torch::Tensor&) {
  return std::nullopt;
}

#else

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// C[m x n] = A[m x k] * B[k x n] in float32, A and B each read as stored (row-major) or transposed.
// Compiled once per shape, transposition and intra-op thread count (oneDNN fixes the thread count
// when it compiles, native/split_pass.h).
struct Product {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c, scratchpad;
};

using ProductKey = std::tuple<int64_t, int64_t, int64_t, bool, bool, int>;

std::shared_ptr<const Product> product_for(int64_t m, int64_t k, int64_t n, bool a_transposed, bool b_transposed) {
  static std::mutex mutex;
  // Never destroyed: no exit-time teardown. Entries are shared: a clear() leaves running products be.
  static auto* cache = new std::map<ProductKey, std::shared_ptr<const Product> >();
  ProductKey key{m, k, n, a_transposed, b_transposed, at::get_num_threads()};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  if (cache->size() >= 512) cache->clear();  // shapes come and go with batch and image sizes
  // A stored transposed is the [k x m] row-major matrix read column by column: format "ba".
  dnnl::memory::desc a({m, k}, dt::f32, a_transposed ? tag::ba : tag::ab);
  dnnl::memory::desc b({k, n}, dt::f32, b_transposed ? tag::ba : tag::ab);
  dnnl::memory::desc c({m, n}, dt::f32, tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, onednn_cpu_engine());
  auto product = std::make_shared<const Product>(Product{dnnl::matmul(pd), a, b, c, pd.scratchpad_desc()});
  cache->emplace(key, product);
  return product;
}

// out = A * B over the tensors' memory (each contiguous in the layout the flags say).
void multiply(const torch::Tensor& a, bool a_transposed, const torch::Tensor& b, bool b_transposed, torch::Tensor& out,
              int64_t m, int64_t k, int64_t n) {
  const auto p = product_for(m, k, n, a_transposed, b_transposed);
  auto& engine = onednn_cpu_engine();
  onednn_execute(p->primitive,
                 {{DNNL_ARG_SRC, dnnl::memory(p->a, engine, a.data_ptr())},
                  {DNNL_ARG_WEIGHTS, dnnl::memory(p->b, engine, b.data_ptr())},
                  {DNNL_ARG_DST, dnnl::memory(p->c, engine, out.data_ptr())}},
                 p->scratchpad);
}

// x: [N, C, H, W] channels-last, i.e. an [N*H*W, C] row-major matrix; w: [O, C, 1, 1] contiguous,
// an [O, C] one. y = x w^T, dx = dy w, dw = dy^T x.
struct PointwiseProducts : public torch::autograd::Function<PointwiseProducts> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({x, w});
    const int64_t rows = x.numel() / x.size(1), in = x.size(1), out = w.size(0);
    auto y =
        at::empty({x.size(0), out, x.size(2), x.size(3)}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    multiply(x, false, w, true, y, rows, in, out);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor()};
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t rows = x.numel() / x.size(1), in = x.size(1), out = w.size(0);
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast));
      multiply(dy, false, w, false, dx, rows, out, in);
    }
    if (ctx->needs_input_grad(1)) {
      dw = at::empty(w.sizes(), w.options());
      multiply(dy, true, x, false, dw, out, rows, in);
    }
    return {dx, dw};
  }
};

bool is_pointwise(const torch::nn::Conv2dImpl& conv) {
  const auto& o = conv.options;
  if (o.groups() != 1 || o.bias() || o.transposed()) return false;
  if ((*o.kernel_size())[0] != 1 || (*o.kernel_size())[1] != 1) return false;
  for (int i = 0; i < 2; i++) {
    if ((*o.stride())[i] != 1 || (*o.dilation())[i] != 1) return false;
  }
  // Explicit zero padding ('same'/'valid' stay on libtorch's path).
  return explicit_padding(o) == std::vector<int64_t>{0, 0};
}

}  // namespace

std::optional<torch::Tensor> pointwise_matmul(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  if (!matmul_on.load() || !torch::GradMode::is_enabled() || cpu_autocast_enabled() || StageRecording::active()) {
    return std::nullopt;
  }
  const auto& w = conv.weight;
  // Channels-last as libtorch tells layouts apart (suggest_memory_format): an NCHW [N, C, 1, 1] tensor is
  // channels-last-contiguous too, but an NCHW run must keep libtorch's kernels, as PyTorch's NCHW run does.
  if (!x.is_cpu() || x.scalar_type() != at::kFloat || x.dim() != 4 || x.size(1) == 0 || x.numel() == 0 ||
      !x.is_contiguous(at::MemoryFormat::ChannelsLast) || x.suggest_memory_format() != at::MemoryFormat::ChannelsLast ||
      !w.is_cpu() || w.scalar_type() != at::kFloat || !w.is_contiguous() || w.size(1) != x.size(1) ||
      !is_pointwise(conv)) {
    return std::nullopt;
  }
  matmul_calls++;
  return PointwiseProducts::apply(x, w);
}

#endif

}  // namespace xt
