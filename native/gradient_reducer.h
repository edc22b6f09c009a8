// DistributedDataParallel's gradient averaging: parameters are grouped into buckets of about
// 25 MB in reverse order (roughly the order backward produces their gradients); a hook on each
// parameter copies its gradient, divided by the world size, into its bucket, and a full bucket is
// all-reduced at once, while backward goes on computing the rest. finish() waits for the buckets
// and writes the averages back as the parameters' gradients.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "distributed_group.h"
#include "torch_includes.h"

namespace xt {

class GradientReducer {
 public:
  GradientReducer(std::vector<torch::Tensor> parameters, std::shared_ptr<DistributedGroup> group,
                  int64_t bucket_bytes = 25 * 1024 * 1024);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before each backward.
  void prepare();
  // After backward: reduces what backward did not (parameters without a gradient count as zeros,
  // and keep none when no rank had one), waits, and sets the averaged gradients.
  void finish();

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Seconds finish() spent waiting for communication that backward did not hide, summed.
  double exposed_seconds() const { return exposed_seconds_; }
  void reset_exposed_seconds() { exposed_seconds_ = 0; }

 private:
  struct Slot {
    int64_t bucket = 0, offset = 0;
  };
  struct Bucket {
    torch::Tensor flat;
    std::vector<int64_t> parameters;  // indices into parameters_
    int64_t pending = 0;              // gradients not yet copied in this step
    std::unique_ptr<DistributedGroup::Pending> work;
  };

  void on_gradient(int64_t index, const torch::Tensor& grad);
  void launch_ready_buckets();  // in bucket order, so every rank issues the same sequence

  std::vector<torch::Tensor> parameters_;
  std::shared_ptr<DistributedGroup> group_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  std::vector<unsigned> hooks_;
  std::vector<bool> has_grad_;
  int64_t next_launch_ = 0;
  int64_t steps_ = 0;  // backward passes reduced so far
  // Fault injection for the tests: XCEPTION_TORCH_TEST_INF_GRADIENT="<rank>:<step>" makes that rank's
  // gradients infinite (the first element of each bucket) in that (0-based) step, before the
  // all-reduce. -1: off.
  int64_t inject_step_ = -1;
  double exposed_seconds_ = 0;
  std::mutex mutex_;  // hooks may run on the autograd engine's threads
};

}  // namespace xt
