#include "onednn_pool.h"

#include "autocast.h"
#include "folded_inference.h"
#include "onednn_conv.h"

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "onednn_support.h"

namespace xt {

#ifndef XT_WITH_ONEDNN

std::optional<torch::Tensor> folded_pool(const torch::Tensor&, PoolKind, at::IntArrayRef, at::IntArrayRef,
                                         at::IntArrayRef) {
  return std::nullopt;
}

#else

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// Everything a compiled pooling depends on, the calling thread's intra-op thread count included
// (oneDNN fixes it when it compiles).
struct Key {
  PoolKind kind;
  std::vector<int64_t> sizes, strides, geometry;  // geometry: kernel, stride, padding
  int threads;
  bool operator==(const Key& o) const {
    return kind == o.kind && threads == o.threads && sizes == o.sizes && strides == o.strides && geometry == o.geometry;
  }
};

struct Compiled {
  dnnl::pooling_forward primitive;
  dnnl::memory::desc src, dst, scratchpad;
  std::vector<int64_t> out_sizes;
};

// Compiled poolings, one per key seen (a model has a handful of pooling shapes); null: declined.
std::mutex cache_mutex;
std::vector<std::pair<Key, std::shared_ptr<const Compiled> > > cache;

std::shared_ptr<const Compiled> compile(const Key& key) {
  const int64_t n = key.sizes[0], c = key.sizes[1], h = key.sizes[2], w = key.sizes[3];
  const int64_t kh = key.geometry[0], kw = key.geometry[1], sh = key.geometry[2], sw = key.geometry[3];
  const int64_t ph = key.geometry[4], pw = key.geometry[5];
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0 || 2 * ph > kh || 2 * pw > kw) return nullptr;
  const int64_t oh = (h + 2 * ph - kh) / sh + 1, ow = (w + 2 * pw - kw) / sw + 1;
  if (oh < 1 || ow < 1 || h + 2 * ph < kh || w + 2 * pw < kw) return nullptr;
  auto p = std::make_shared<Compiled>();
  p->out_sizes = {n, c, oh, ow};
  p->src = dnnl::memory::desc(dims(key.sizes.begin(), key.sizes.end()), dt::f32,
                              dims(key.strides.begin(), key.strides.end()));
  p->dst = dnnl::memory::desc({n, c, oh, ow}, dt::f32, tag::nhwc);
  // The right/bottom padding that makes oneDNN's output size libtorch's floor division.
  const dims pad_l{ph, pw}, pad_r{(oh - 1) * sh + kh - h - ph, (ow - 1) * sw + kw - w - pw};
  const auto algorithm =
      key.kind == PoolKind::Max ? dnnl::algorithm::pooling_max : dnnl::algorithm::pooling_avg_include_padding;
  dnnl::pooling_forward::desc desc(dnnl::prop_kind::forward_inference, algorithm, p->src, p->dst, {sh, sw}, {kh, kw},
                                   pad_l, pad_r);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::pooling_forward::primitive_desc pd(desc, attr, onednn_cpu_engine());
  p->primitive = dnnl::pooling_forward(pd);
  p->scratchpad = pd.scratchpad_desc();
  return p;
}

std::shared_ptr<const Compiled> compiled_for(Key key) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  for (const auto& entry : cache) {
    if (entry.first == key) return entry.second;
  }
  std::shared_ptr<const Compiled> compiled;
  try {
    compiled = compile(key);
  } catch (const dnnl::error&) {
    compiled = nullptr;  // a shape this oneDNN does not pool: libtorch's kernel takes it
  }
  if (cache.size() >= 256) cache.clear();  // inputs of ever-new shapes must not grow it without bound
  cache.emplace_back(std::move(key), compiled);
  return compiled;
}

}  // namespace

std::optional<torch::Tensor> folded_pool(const torch::Tensor& input, PoolKind kind, at::IntArrayRef kernel,
                                         at::IntArrayRef stride, at::IntArrayRef padding) {
  if (!in_folded_pass() || !onednn_inference_enabled() || !input.is_cpu() || input.scalar_type() != at::kFloat ||
      input.dim() != 4 || input.requires_grad() || cpu_autocast_enabled() || kernel.size() != 2 || stride.size() != 2 ||
      padding.size() != 2) {
    return std::nullopt;
  }
  auto x = input.contiguous(at::MemoryFormat::ChannelsLast);
  auto compiled = compiled_for(Key{kind,
                                   x.sizes().vec(),
                                   x.strides().vec(),
                                   {kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]},
                                   at::get_num_threads()});
  if (!compiled) return std::nullopt;
  auto out = at::empty(compiled->out_sizes, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  auto& engine = onednn_cpu_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(compiled->src, engine, x.data_ptr())},
      {DNNL_ARG_DST, dnnl::memory(compiled->dst, engine, out.data_ptr())},
  };
  onednn_execute(compiled->primitive, std::move(args), compiled->scratchpad);
  return out;
}

#endif

}  // namespace xt
