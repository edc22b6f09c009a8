// Batches prepared outside the training thread and handed to it in order: the image-folder data
// path (lib/datasets/folder-feeder.ts) decodes and crops files on libuv's pool and pushes uint8
// batches here, while TrainingSession's epoch loop pops them on its worker thread.
// The queue itself is unbounded: the feeder bounds it (it keeps at most its prefetch depth queued,
// told of each pop through on_pop).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "data.h"
#include "live_objects.h"
#include "torch_includes.h"

namespace xt {

struct FedBatch {
  // Training epoch (>= 0) or kEvaluation, and the batch's number within it: the consumer checks
  // both, so a feeder out of step is an error rather than a silently wrong label.
  int64_t phase = 0;
  int64_t index = 0;
  torch::Tensor images;  // uint8 [B, H, W, 3] on the CPU (HWC pixels, as decoders give them)
  torch::Tensor labels;  // int64 [B]
};

class FedBatches : public LiveCount<FedBatches> {
 public:
  static constexpr int64_t kEvaluation = -1;

  // `size`: the images of the split the batches come from (training: the permutation's length).
  explicit FedBatches(int64_t size);

  int64_t size() const { return size_; }
  // Starts a phase: drops what is queued and any failure of the previous one.
  void reset();
  void push(FedBatch batch);
  // The feeder gave up (a file it could not decode, a disposal): the waiting pop throws `message`.
  void fail(const std::string& message);
  // Blocks until the next batch is there; throws when it is not (phase, index) or after fail().
  FedBatch pop(int64_t phase, int64_t index);
  size_t pending() const;
  // Called after each pop with the batches still queued (from the popping thread).
  void set_on_pop(std::function<void(size_t)> on_pop);

 private:
  const int64_t size_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<FedBatch> queue_;
  std::optional<std::string> failure_;
  std::function<void(size_t)> on_pop_;
};

// A fed batch's pixels as the network takes them: ToTensor's v / 255, then Normalize's
// (x - mean) / std, in float32 as torchvision computes them; [B, 3, H, W] on `device`, in
// channels_last layout (the HWC pixels' own order) when asked, else contiguous.
torch::Tensor normalize_fed_images(const torch::Tensor& images, const Preprocessing& p, torch::Device device,
                                   bool channels_last);

}  // namespace xt
