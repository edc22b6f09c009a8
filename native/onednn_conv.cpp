#include "onednn_conv.h"

#include "autocast.h"

#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "onednn_support.h"

namespace xt {

namespace {
std::atomic<bool> onednn_on{true};
}  // namespace

void set_onednn_inference(bool enabled) { onednn_on = enabled; }
bool onednn_inference_enabled() {
#ifdef XT_WITH_ONEDNN
  return onednn_on.load();
#else
  return false;
#endif
}

#ifndef XT_WITH_ONEDNN

struct OnednnConv::Impl {};
OnednnConv::OnednnConv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnednnConv::~OnednnConv() = default;
std::shared_ptr<const OnednnConv> OnednnConv::create(const torch::Tensor&, const torch::Tensor&, at::IntArrayRef,
                                                     at::IntArrayRef, at::IntArrayRef, int64_t) {
  return nullptr;
}
std::optional<torch::Tensor> OnednnConv::run(const torch::Tensor&, bool) const { return std::nullopt; }
std::string onednn_version() { return ""; }

#else

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// What a compiled convolution depends on besides the weights: the input's sizes and strides,
// whether ReLU is fused, and the calling thread's intra-op thread count, which oneDNN fixes when
// it compiles (a split pass's helpers run with one, native/split_pass.h).
struct Key {
  std::vector<int64_t> sizes, strides;
  bool relu;
  int threads;
  bool operator==(const Key& o) const {
    return relu == o.relu && threads == o.threads && sizes == o.sizes && strides == o.strides;
  }
};

struct Compiled {
  dnnl::convolution_forward primitive;
  dnnl::memory::desc src, dst, scratchpad;
  dnnl::memory weights;  // reordered into the layout the primitive wants, shared by compiles that want the same
  std::vector<int64_t> out_sizes;
};

}  // namespace

struct OnednnConv::Impl {
  torch::Tensor weight;  // OIHW, contiguous float32: reordered by each compile (one per input shape)
  torch::Tensor bias;    // [OC] float32, or undefined
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;

  mutable std::mutex mutex;  // guards cache (a model may be run from several threads)
  // One entry per input shape seen, usually one or two; a null Compiled: oneDNN declined it.
  mutable std::vector<std::pair<Key, std::shared_ptr<const Compiled> > > cache;
  // The weights in each blocked layout a compile asked for: usually one for every input shape and
  // thread count, so the copy is made once.
  mutable std::vector<dnnl::memory> reordered;

  dnnl::memory weights_in(const dnnl::memory::desc& layout, const dnnl::memory::desc& plain) const;
  std::shared_ptr<const Compiled> compile(const Key& key) const;
  std::shared_ptr<const Compiled> compiled_for(const torch::Tensor& x, bool relu) const;
};

std::shared_ptr<const Compiled> OnednnConv::Impl::compile(const Key& key) const {
  const int64_t n = key.sizes[0], ic = key.sizes[1], h = key.sizes[2], w = key.sizes[3];
  const int64_t oc = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  if (ic != weight.size(1) * groups) return nullptr;  // libtorch's convolution reports the mismatch
  const int64_t oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  if (oh < 1 || ow < 1) return nullptr;

  auto c = std::make_shared<Compiled>();
  c->out_sizes = {n, oc, oh, ow};
  c->src = dnnl::memory::desc(dims(key.sizes.begin(), key.sizes.end()), dt::f32,
                              dims(key.strides.begin(), key.strides.end()));
  // Channels-last, the layout at::empty(..., ChannelsLast) gives the output tensor.
  c->dst = dnnl::memory::desc({n, oc, oh, ow}, dt::f32, tag::nhwc);
  const bool grouped = groups > 1;
  const dims weight_dims = grouped ? dims{groups, oc / groups, ic / groups, kh, kw} : dims{oc, ic, kh, kw};
  const dnnl::memory::desc weight_any(weight_dims, dt::f32, tag::any);
  // oneDNN counts dilation from 0 (1 means one gap), libtorch from 1.
  const dims strides{stride[0], stride[1]}, dilates{dilation[0] - 1, dilation[1] - 1};
  const dims pad_l{padding[0], padding[1]};
  // The right/bottom padding that makes oneDNN's output size equal to libtorch's floor division.
  const dims pad_r{(oh - 1) * stride[0] + dilation[0] * (kh - 1) + 1 - h - padding[0],
                   (ow - 1) * stride[1] + dilation[1] * (kw - 1) + 1 - w - padding[1]};

  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (key.relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  auto desc =
      bias.defined()
          ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            c->src, weight_any, dnnl::memory::desc({oc}, dt::f32, tag::x), c->dst,
                                            strides, dilates, pad_l, pad_r)
          : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            c->src, weight_any, c->dst, strides, dilates, pad_l, pad_r);
  dnnl::convolution_forward::primitive_desc pd(desc, attr, onednn_cpu_engine());
  c->primitive = dnnl::convolution_forward(pd);
  c->scratchpad = pd.scratchpad_desc();

  c->weights =
      weights_in(pd.weights_desc(), dnnl::memory::desc(weight_dims, dt::f32, grouped ? tag::goihw : tag::oihw));
  return c;
}

// Called with `mutex` held (from compile()).
dnnl::memory OnednnConv::Impl::weights_in(const dnnl::memory::desc& layout, const dnnl::memory::desc& plain) const {
  for (const auto& w : reordered) {
    if (w.get_desc() == layout) return w;
  }
  // The one reorder of the weights into this layout, from libtorch's OIHW.
  dnnl::memory source(plain, onednn_cpu_engine(), weight.data_ptr());
  dnnl::memory target(layout, onednn_cpu_engine());
  dnnl::stream stream(onednn_cpu_engine());
  dnnl::reorder(source, target).execute(stream, source, target);
  stream.wait();
  reordered.push_back(target);
  return target;
}

std::shared_ptr<const Compiled> OnednnConv::Impl::compiled_for(const torch::Tensor& x, bool relu) const {
  Key key{x.sizes().vec(), x.strides().vec(), relu, at::get_num_threads()};
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& entry : cache) {
    if (entry.first == key) return entry.second;
  }
  std::shared_ptr<const Compiled> compiled;
  try {
    compiled = compile(key);
  } catch (const dnnl::error&) {
    compiled = nullptr;  // a shape or setting this oneDNN does not run: libtorch's path takes it
  }
  cache.emplace_back(std::move(key), compiled);
  return compiled;
}

OnednnConv::OnednnConv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnednnConv::~OnednnConv() = default;

std::shared_ptr<const OnednnConv> OnednnConv::create(const torch::Tensor& weight, const torch::Tensor& bias,
                                                     at::IntArrayRef stride, at::IntArrayRef padding,
                                                     at::IntArrayRef dilation, int64_t groups) {
  if (!weight.is_cpu() || weight.scalar_type() != at::kFloat || weight.dim() != 4) return nullptr;
  if (bias.defined() && (!bias.is_cpu() || bias.scalar_type() != at::kFloat)) return nullptr;
  if (stride.size() != 2 || padding.size() != 2 || dilation.size() != 2) return nullptr;
  auto impl = std::make_unique<Impl>();
  impl->weight = weight.contiguous();
  impl->bias = bias.defined() ? bias.contiguous() : bias;
  impl->stride = stride.vec();
  impl->padding = padding.vec();
  impl->dilation = dilation.vec();
  impl->groups = groups;
  return std::shared_ptr<const OnednnConv>(new OnednnConv(std::move(impl)));
}

std::optional<torch::Tensor> OnednnConv::run(const torch::Tensor& input, bool relu) const {
  if (!onednn_inference_enabled() || !input.is_cpu() || input.scalar_type() != at::kFloat || input.dim() != 4 ||
      input.requires_grad() || cpu_autocast_enabled()) {
    return std::nullopt;
  }
  auto x = input.contiguous(at::MemoryFormat::ChannelsLast);
  auto compiled = impl_->compiled_for(x, relu);
  if (!compiled) return std::nullopt;
  auto out = at::empty(compiled->out_sizes, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  auto& engine = onednn_cpu_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(compiled->src, engine, x.data_ptr())},
      {DNNL_ARG_WEIGHTS, compiled->weights},
      {DNNL_ARG_DST, dnnl::memory(compiled->dst, engine, out.data_ptr())},
  };
  if (impl_->bias.defined()) {
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(dnnl::memory::desc({impl_->bias.size(0)}, dt::f32, tag::x), engine,
                                             impl_->bias.data_ptr()));
  }
  onednn_execute(compiled->primitive, std::move(args), compiled->scratchpad);
  return out;
}

std::string onednn_version() {
  const auto* v = dnnl::version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

#endif

}  // namespace xt
