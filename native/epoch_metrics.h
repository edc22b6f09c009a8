// The running loss and accuracy of a training epoch. They are summed on the device, batch by
// batch, and read back (one host sync) only at the epoch's read points, so the floating-point
// additions happen in the same order however often the epoch is interrupted and resumed. Across
// data-parallel ranks a read all-reduces the sums together with the ranks' stop requests and
// whether any loss was not finite.
#pragma once

#include "distributed_group.h"
#include "torch_includes.h"

namespace xt {

struct EpochPosition;

class EpochMetrics {
 public:
  // Continues the sums of `from` (a resumed epoch); `world_size` images count per local image.
  EpochMetrics(const EpochPosition& from, torch::Device device, int64_t world_size, bool watch_divergence);

  // One batch: its mean loss, its logits and labels. Notes `batch` as the first diverged one when
  // watching and its loss is not finite.
  void add(const torch::Tensor& loss, const torch::Tensor& logits, const torch::Tensor& labels, int64_t batch);

  // Moves the device sums into the read totals (all-reduced over `group` when given, which also
  // agrees on the stop request). Returns whether this rank, or with a group any rank, asked to stop.
  bool read(DistributedGroup* group, bool stop_requested);

  int64_t seen() const { return seen_; }                      // images of every rank so far
  int64_t diverged_batch() const { return diverged_batch_; }  // -1: none (known after a read)
  // Mean loss and accuracy over the images seen; `with_unread` adds the sums not read yet (a sync).
  double mean_loss(bool with_unread) const;
  double accuracy(bool with_unread) const;

  // What a checkpoint keeps to continue the epoch exactly (EpochPosition's fields).
  double read_loss_sum() const { return read_loss_; }
  int64_t read_correct() const { return read_correct_; }
  double unread_loss_sum() const;
  int64_t unread_correct() const;

 private:
  int64_t world_size_;
  bool watch_divergence_;
  torch::Tensor loss_sum_;         // double, on the device: sum of loss * images since the last read
  torch::Tensor correct_;          // long, on the device
  torch::Tensor first_nonfinite_;  // long, on the device: the first batch whose loss was not finite, or -1
  double read_loss_ = 0;
  int64_t read_correct_ = 0;
  int64_t seen_ = 0;
  int64_t diverged_batch_ = -1;
};

}  // namespace xt
