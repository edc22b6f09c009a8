#include "distributed_sampler.h"

#include <stdexcept>
#include <string>

namespace xt {

int64_t ShardPlan::batches() const {
  const int64_t per_rank = rank_batch();
  const int64_t full = shard_size() / per_rank;
  const int64_t rest = shard_size() % per_rank;
  // Each rank's part of a last, partial batch must hold 2 images or more.
  return full + (rest >= 2 ? 1 : 0);
}

int64_t ShardPlan::rank_batch_size(int64_t b) const {
  const int64_t per_rank = rank_batch();
  return std::min(per_rank, shard_size() - b * per_rank);
}

void ShardPlan::validate() const {
  if (world_size < 1 || rank < 0 || rank >= world_size)
    throw std::invalid_argument("the rank must be in [0, world size)");
  if (global_batch < 1) throw std::invalid_argument("the batch size must be positive");
  if (global_batch % world_size != 0) {
    throw std::invalid_argument("the batch size (" + std::to_string(global_batch) + ") must divide evenly across the " +
                                std::to_string(world_size) + " ranks");
  }
  if (shard_size() < 2) {
    throw std::invalid_argument("the training set of " + std::to_string(dataset_size) + " images is too small for " +
                                std::to_string(world_size) + " ranks: each needs at least 2");
  }
}

torch::Tensor shard_indices(const torch::Tensor& order, int64_t rank, int64_t world_size) {
  if (world_size == 1) return order;
  const int64_t n = order.size(0);
  const int64_t total = (n + world_size - 1) / world_size * world_size;
  auto padded = order;
  if (total > n) {
    // DistributedSampler repeats the permutation's start (the whole of it as often as needed).
    const int64_t repeats = (total - n + n - 1) / n;
    padded = torch::cat({order, order.repeat({repeats}).slice(0, 0, total - n)});
  }
  return padded.slice(0, rank, total, world_size);
}

}  // namespace xt
