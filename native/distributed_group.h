// A process group of PyTorch's distributed engine (c10d): the TCPStore rendezvous and a Gloo (CPU
// tensors) or NCCL (CUDA tensors) backend, behind a small interface so that no other file needs the
// c10d or Gloo headers. What training asks of it: broadcast from rank 0, all-reduce (async for the
// gradient buckets), and a barrier.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "live_objects.h"
#include "torch_includes.h"

namespace xt {

struct DistributedConfig {
  std::string backend = "gloo";  // "gloo" or "nccl"
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool is_store_server = true;  // this process hosts the TCPStore (rank 0, unless torchrun's agent does)
  std::string store_prefix;     // torchrun's "/worker/attempt_<n>" when its agent hosts the store
  double timeout_seconds = 1800;
};

enum class ReduceOp { Sum, Max, Min };

class DistributedGroup : public LiveCount<DistributedGroup> {
 public:
  // A collective in flight; wait() blocks until it completes and throws if it failed.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };

  virtual ~DistributedGroup() = default;
  // Joins the group (blocks until every rank has joined, or the timeout); throws a clear error
  // when this build has no such backend or the rendezvous fails.
  static std::shared_ptr<DistributedGroup> create(const DistributedConfig& config);

  int rank() const { return config_.rank; }
  int world_size() const { return config_.world_size; }
  const std::string& backend() const { return config_.backend; }
  const DistributedConfig& config() const { return config_; }

  virtual std::unique_ptr<Pending> all_reduce_async(const torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  void all_reduce(const torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) { all_reduce_async(tensor, op)->wait(); }
  // Broadcasts `tensors` in place from `root`, coalesced into one flat tensor per dtype and device
  // (as DDP's broadcast_coalesced does).
  void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);
  virtual void barrier() = 0;

 protected:
  explicit DistributedGroup(DistributedConfig config) : config_(std::move(config)) {}
  virtual void broadcast_one(const torch::Tensor& flat, int root) = 0;
  // Rethrows the current exception with the rank and a hint of what usually causes it.
  [[noreturn]] void fail(const std::string& what) const;

 private:
  DistributedConfig config_;
};

// The backends this build of the addon can create, e.g. {"gloo"} or {"gloo", "nccl"}.
std::vector<std::string> distributed_backends();
// Why a backend is missing from this build ("" when present).
std::string distributed_missing_reason(const std::string& backend);

}  // namespace xt
