// How data-parallel ranks share an epoch, as torch.utils.data.DistributedSampler does: the epoch's
// permutation is padded to a multiple of the world size by repeating its start, and rank r takes
// every world_size-th index from position r. A global batch b is then the same images whatever
// the world size: positions [b * B, (b + 1) * B) of the padded permutation.
#pragma once

#include "torch_includes.h"

namespace xt {

struct ShardPlan {
  int64_t rank = 0, world_size = 1;
  int64_t dataset_size = 0;
  int64_t global_batch = 0;

  int64_t rank_batch() const { return global_batch / world_size; }
  int64_t shard_size() const { return (dataset_size + world_size - 1) / world_size; }
  // Batches per epoch; a last batch of one image per rank is dropped (BatchNorm cannot train on it).
  int64_t batches() const;
  // Images this rank trains on in batch b, and the whole group.
  int64_t rank_batch_size(int64_t b) const;
  // Throws std::invalid_argument when the plan cannot work (batch not divisible, too few images).
  void validate() const;
};

// This rank's indices from the epoch's permutation `order` (int64 [N]).
torch::Tensor shard_indices(const torch::Tensor& order, int64_t rank, int64_t world_size);

}  // namespace xt
