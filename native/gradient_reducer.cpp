#include "gradient_reducer.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace xt {

GradientReducer::GradientReducer(std::vector<torch::Tensor> parameters, std::shared_ptr<DistributedGroup> group,
                                 int64_t bucket_bytes)
    : parameters_(std::move(parameters)), group_(std::move(group)) {
  const int64_t n = static_cast<int64_t>(parameters_.size());
  slots_.resize(n);
  has_grad_.assign(n, false);
  // Reverse order, a new bucket when the size cap is reached or the dtype/device changes.
  std::vector<std::vector<int64_t>> members;
  int64_t bytes = 0;
  for (int64_t i = n - 1; i >= 0; --i) {
    const auto& p = parameters_[i];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    const bool fits = !members.empty() && bytes + size <= bucket_bytes &&
                      parameters_[members.back().front()].scalar_type() == p.scalar_type() &&
                      parameters_[members.back().front()].device() == p.device();
    if (!fits) {
      members.emplace_back();
      bytes = 0;
    }
    members.back().push_back(i);
    bytes += size;
  }
  for (size_t b = 0; b < members.size(); ++b) {
    Bucket bucket;
    int64_t offset = 0;
    for (int64_t i : members[b]) {
      slots_[i] = Slot{static_cast<int64_t>(b), offset};
      offset += parameters_[i].numel();
    }
    // The last bucket also carries one "used" flag per parameter (see finish()).
    const int64_t flags = b + 1 == members.size() ? n : 0;
    bucket.flat = torch::zeros({offset + flags}, parameters_[members[b].front()].options());
    bucket.parameters = members[b];
    buckets_.push_back(std::move(bucket));
  }
  if (const char* inject = std::getenv("XCEPTION_TORCH_TEST_INF_GRADIENT")) {
    int rank = -1;
    long long step = -1;
    if (std::sscanf(inject, "%d:%lld", &rank, &step) == 2 && rank == group_->rank()) inject_step_ = step;
  }
  for (int64_t i = 0; i < n; ++i) {
    hooks_.push_back(parameters_[i].register_hook([this, i](torch::Tensor grad) { on_gradient(i, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < hooks_.size(); ++i) {
    try {
      parameters_[i].remove_hook(hooks_[i]);
    } catch (...) {
      // A parameter whose autograd metadata is gone has no hook left to remove.
    }
  }
}

void GradientReducer::prepare() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& bucket : buckets_) {
    bucket.pending = static_cast<int64_t>(bucket.parameters.size());
    bucket.work.reset();
  }
  has_grad_.assign(parameters_.size(), false);
  next_launch_ = 0;
  ++steps_;
}

void GradientReducer::on_gradient(int64_t index, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (has_grad_[index])
    throw std::logic_error("a parameter received two gradients in one backward; DDP does not support that either");
  const auto& slot = slots_[index];
  auto& bucket = buckets_[slot.bucket];
  torch::NoGradGuard no_grad;
  auto view = bucket.flat.slice(0, slot.offset, slot.offset + grad.numel()).view(grad.sizes());
  view.copy_(grad);
  // Divided before the sum, as DDP does, so the all-reduce yields the average.
  view.div_(group_->world_size());
  if (inject_step_ == steps_ - 1 && slot.offset == 0) view.view({-1})[0].fill_(std::numeric_limits<float>::infinity());
  has_grad_[index] = true;
  if (--bucket.pending == 0) launch_ready_buckets();
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < static_cast<int64_t>(buckets_.size()) && buckets_[next_launch_].pending == 0) {
    auto& bucket = buckets_[next_launch_];
    if (next_launch_ + 1 == static_cast<int64_t>(buckets_.size())) {
      // Every gradient this rank will produce is in by now: record which parameters had one.
      const int64_t n = static_cast<int64_t>(parameters_.size());
      std::vector<float> flags(has_grad_.begin(), has_grad_.end());
      bucket.flat.slice(0, bucket.flat.numel() - n).copy_(torch::tensor(flags));
    }
    bucket.work = group_->all_reduce_async(bucket.flat);
    ++next_launch_;
  }
}

void GradientReducer::finish() {
  const auto started = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    torch::NoGradGuard no_grad;
    // Parameters without a gradient this step (unused in the forward) contribute zeros.
    for (size_t i = 0; i < parameters_.size(); ++i) {
      if (has_grad_[i]) continue;
      const auto& slot = slots_[i];
      auto& bucket = buckets_[slot.bucket];
      bucket.flat.slice(0, slot.offset, slot.offset + parameters_[i].numel()).zero_();
      --bucket.pending;
    }
    launch_ready_buckets();
  }
  for (auto& bucket : buckets_) bucket.work->wait();
  exposed_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(parameters_.size());
  const auto& last = buckets_.back().flat;
  auto used = last.slice(0, last.numel() - n).to(torch::kCPU, torch::kFloat);
  auto used_data = used.accessor<float, 1>();
  for (int64_t i = 0; i < n; ++i) {
    auto& p = parameters_[i];
    if (used_data[i] == 0) {
      p.mutable_grad() = torch::Tensor();  // no rank had a gradient: none, as in a single process
      continue;
    }
    const auto& slot = slots_[i];
    auto average = buckets_[slot.bucket].flat.slice(0, slot.offset, slot.offset + p.numel()).view(p.sizes());
    if (p.is_contiguous()) {
      // The gradient is a view of the bucket (DDP's gradient_as_bucket_view): no copy. The view is
      // only read until the next backward, which starts from gradients set to none.
      p.mutable_grad() = average;
    } else if (p.grad().defined()) {
      p.mutable_grad().copy_(average);  // a channels-last parameter keeps its gradient's layout
    } else {
      p.mutable_grad() = average.clone();
    }
  }
}

}  // namespace xt
