#include "epoch_metrics.h"

#include <cmath>
#include <limits>

#include "training.h"

namespace xt {

EpochMetrics::EpochMetrics(const EpochPosition& from, torch::Device device, int64_t world_size, bool watch_divergence)
    : world_size_(world_size),
      watch_divergence_(watch_divergence),
      loss_sum_(torch::full({}, from.pending_loss, torch::TensorOptions().dtype(torch::kDouble).device(device))),
      correct_(torch::full({}, from.pending_correct, torch::TensorOptions().dtype(torch::kLong).device(device))),
      first_nonfinite_(torch::full({}, -1, torch::TensorOptions().dtype(torch::kLong).device(device))),
      read_loss_(from.loss_sum),
      read_correct_(from.correct),
      seen_(from.seen) {}

void EpochMetrics::add(const torch::Tensor& loss, const torch::Tensor& logits, const torch::Tensor& labels,
                       int64_t batch) {
  torch::NoGradGuard no_grad;
  const int64_t size = labels.size(0);
  loss_sum_ += loss.detach().to(torch::kDouble) * size;
  correct_ += logits.detach().argmax(1).eq(labels).sum();
  if (watch_divergence_) {
    auto first = (first_nonfinite_ < 0).logical_and(loss.detach().isfinite().logical_not());
    first_nonfinite_.masked_fill_(first, batch);
  }
  seen_ += size * world_size_;
}

bool EpochMetrics::read(DistributedGroup* group, bool stop_requested) {
  bool stopping = stop_requested;
  if (group) {
    // One all-reduce of [loss sum, correct, stop requests, ranks that diverged]; a second one
    // finds the first diverged batch only when some rank did.
    auto flags = torch::tensor({stop_requested ? 1.0 : 0.0, 0.0}, loss_sum_.options());
    if (watch_divergence_) flags[1].copy_((first_nonfinite_ >= 0).to(torch::kDouble));
    auto sums = torch::cat({loss_sum_.reshape({1}), correct_.to(torch::kDouble).reshape({1}), flags});
    group->all_reduce(sums);
    const auto host = sums.to(torch::kCPU);
    const auto values = host.accessor<double, 1>();
    read_loss_ += values[0];
    read_correct_ += static_cast<int64_t>(std::llround(values[1]));
    stopping = values[2] > 0;
    if (values[3] > 0) {
      auto first = first_nonfinite_.masked_fill(first_nonfinite_ < 0, std::numeric_limits<int64_t>::max());
      group->all_reduce(first, ReduceOp::Min);
      diverged_batch_ = first.item<int64_t>();
    }
  } else {
    read_loss_ += loss_sum_.item<double>();
    read_correct_ += correct_.item<int64_t>();
    if (watch_divergence_) diverged_batch_ = first_nonfinite_.item<int64_t>();
  }
  loss_sum_.zero_();
  correct_.zero_();
  return stopping;
}

double EpochMetrics::unread_loss_sum() const { return loss_sum_.item<double>(); }

int64_t EpochMetrics::unread_correct() const { return correct_.item<int64_t>(); }

double EpochMetrics::mean_loss(bool with_unread) const {
  if (!seen_) return 0;
  return (read_loss_ + (with_unread ? unread_loss_sum() : 0.0)) / seen_;
}

double EpochMetrics::accuracy(bool with_unread) const {
  if (!seen_) return 0;
  return static_cast<double>(read_correct_ + (with_unread ? unread_correct() : 0)) / seen_;
}

}  // namespace xt
