#include "fed_batches.h"

#include <stdexcept>
#include <utility>

namespace xt {

FedBatches::FedBatches(int64_t size) : size_(size) {
  if (size < 0) throw std::invalid_argument("the number of images must not be negative");
}

void FedBatches::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  queue_.clear();
  failure_.reset();
}

void FedBatches::push(FedBatch batch) {
  if (batch.images.dim() != 4 || batch.images.size(3) != 3 || batch.images.scalar_type() != torch::kByte)
    throw std::invalid_argument("a fed batch's images must be uint8 [B, H, W, 3]");
  if (batch.labels.dim() != 1 || batch.labels.size(0) != batch.images.size(0))
    throw std::invalid_argument("a fed batch needs one label per image");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(batch));
  }
  ready_.notify_all();
}

void FedBatches::fail(const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    failure_ = message;
  }
  ready_.notify_all();
}

FedBatch FedBatches::pop(int64_t phase, int64_t index) {
  FedBatch batch;
  size_t left = 0;
  std::function<void(size_t)> on_pop;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return failure_.has_value() || !queue_.empty(); });
    if (failure_) throw std::runtime_error(*failure_);
    batch = std::move(queue_.front());
    queue_.pop_front();
    left = queue_.size();
    on_pop = on_pop_;
  }
  if (batch.phase != phase || batch.index != index) {
    throw std::logic_error("the fed batches are out of step: expected batch " + std::to_string(index) + " of phase " +
                           std::to_string(phase) + ", got batch " + std::to_string(batch.index) + " of phase " +
                           std::to_string(batch.phase));
  }
  if (on_pop) on_pop(left);
  return batch;
}

size_t FedBatches::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void FedBatches::set_on_pop(std::function<void(size_t)> on_pop) {
  std::lock_guard<std::mutex> lock(mutex_);
  on_pop_ = std::move(on_pop);
}

torch::Tensor normalize_fed_images(const torch::Tensor& images, const Preprocessing& p, torch::Device device,
                                   bool channels_last) {
  // The 256 values each channel can take, computed by the same float32 ops torchvision applies to
  // every pixel (ToTensor's div(255), then Normalize's sub and div): a table of them gives each
  // pixel exactly its value, in one pass.
  auto mean = torch::tensor({p.mean[0], p.mean[1], p.mean[2]}, torch::kDouble).to(torch::kFloat);
  auto std = torch::tensor({p.std[0], p.std[1], p.std[2]}, torch::kDouble).to(torch::kFloat);
  auto table =
      torch::arange(256, torch::kFloat).div_(255.0f).unsqueeze(1).sub(mean).div_(std).contiguous();  // [256, 3]
  if (!device.is_cpu()) {
    // On a GPU: the uint8 bytes travel (4x fewer than floats), the lookup runs there.
    auto channel = torch::arange(3, torch::TensorOptions().dtype(torch::kLong).device(device));
    auto index = images.to(device).to(torch::kLong).mul_(3).add_(channel);      // table row v, column c
    auto x = table.to(device).view({-1}).index({index}).permute({0, 3, 1, 2});  // [B, 3, H, W]
    return channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x.contiguous();
  }
  const int64_t n = images.size(0), h = images.size(1), w = images.size(2), pixels = h * w;
  auto src = images.contiguous();
  const uint8_t* in = src.data_ptr<uint8_t>();
  const float* lut = table.data_ptr<float>();
  torch::Tensor out;
  if (channels_last) {
    out = torch::empty({n, 3, h, w},
                       torch::TensorOptions().dtype(torch::kFloat).memory_format(at::MemoryFormat::ChannelsLast));
    float* o = out.data_ptr<float>();  // NHWC order in memory
    at::parallel_for(0, n * pixels, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        for (int c = 0; c < 3; ++c) o[i * 3 + c] = lut[in[i * 3 + c] * 3 + c];
      }
    });
  } else {
    out = torch::empty({n, 3, h, w}, torch::kFloat);
    float* o = out.data_ptr<float>();
    at::parallel_for(0, n * pixels, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / pixels, q = i % pixels;
        for (int c = 0; c < 3; ++c) o[(b * 3 + c) * pixels + q] = lut[in[i * 3 + c] * 3 + c];
      }
    });
  }
  return out;
}

}  // namespace xt
