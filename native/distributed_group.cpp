#include "distributed_group.h"

#include "error_text.h"

#include <chrono>
#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>

#ifdef XT_WITH_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef XT_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace xt {

void DistributedGroup::fail(const std::string& what) const {
  std::string cause;
  try {
    throw;
  } catch (const std::exception& e) {
    cause = error_text(e);
    cause = cause.substr(0, cause.find('\n'));  // one line: the CLI prints each error on one
  } catch (...) {
    cause = "unknown error";
  }
  std::ostringstream message;
  message << "distributed " << what << " failed on rank " << config_.rank << " of " << config_.world_size << " ("
          << config_.backend << "): " << cause
          << ". Usually another rank stopped (see its error) or did not answer within the timeout of "
          << config_.timeout_seconds << " s";
  throw std::runtime_error(message.str());
}

void DistributedGroup::broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  if (world_size() == 1 || tensors.empty()) return;
  torch::NoGradGuard no_grad;
  // Group by dtype and device, keeping the order, so every rank builds the same flat tensors.
  std::map<std::pair<int, std::string>, std::vector<torch::Tensor>> groups;
  std::vector<std::pair<int, std::string>> order;
  for (const auto& t : tensors) {
    const std::pair<int, std::string> key{static_cast<int>(t.scalar_type()), t.device().str()};
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(t);
  }
  for (const auto& key : order) {
    auto& group = groups[key];
    std::vector<torch::Tensor> flat_parts;
    flat_parts.reserve(group.size());
    for (const auto& t : group) flat_parts.push_back(t.detach().reshape({-1}));
    auto flat = torch::cat(flat_parts);
    broadcast_one(flat, root);
    if (rank() == root) continue;
    int64_t offset = 0;
    for (auto& t : group) {
      const int64_t n = t.numel();
      t.detach().copy_(flat.slice(0, offset, offset + n).view_as(t));
      offset += n;
    }
  }
}

#ifdef XT_WITH_GLOO
namespace {

// The class both backends derive from: c10d::Backend since PyTorch 2.0, c10d::ProcessGroup before.
#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif

c10d::ReduceOp c10d_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max: return c10d::ReduceOp::MAX;
    case ReduceOp::Min: return c10d::ReduceOp::MIN;
    default: return c10d::ReduceOp::SUM;
  }
}

// Gloo's network devices as torch.distributed makes them: one per interface in GLOO_SOCKET_IFNAME,
// else the address this host's name resolves to (loopback when it does not resolve).
std::vector<std::shared_ptr<::gloo::transport::Device>> gloo_devices() {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  if (const char* names = std::getenv("GLOO_SOCKET_IFNAME"); names && *names) {
    std::stringstream list(names);
    std::string name;
    while (std::getline(list, name, ',')) {
      if (!name.empty()) devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    }
  }
  if (devices.empty()) devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return devices;
}

class C10dGroup final : public DistributedGroup {
 public:
  explicit C10dGroup(const DistributedConfig& config) : DistributedGroup(config) {
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.timeout_seconds * 1000));
    try {
      c10d::TCPStoreOptions options;
      options.port = static_cast<std::uint16_t>(config.master_port);
      options.isServer = config.is_store_server;
      options.numWorkers = static_cast<std::size_t>(config.world_size);
      // Every rank checks in (as torch.distributed's TCPStore does by default); the server waits for all.
      options.waitWorkers = true;
      options.timeout = timeout;
      c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(config.master_addr, options);
      if (!config.store_prefix.empty()) store = c10::make_intrusive<c10d::PrefixStore>(config.store_prefix, store);
      store = c10::make_intrusive<c10d::PrefixStore>("xception-torch/" + config.backend, store);
      store_ = store;
#ifdef XT_WITH_NCCL
      if (config.backend == "nccl") {
        auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
        nccl_options->timeout = timeout;
        backend_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, config.rank, config.world_size, nccl_options);
        cuda_tensors_ = true;
        return;
      }
#endif
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
      gloo_options->devices = gloo_devices();
      gloo_options->threads = static_cast<int>(gloo_options->devices.size() * 2);
      backend_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, config.rank, config.world_size, gloo_options);
    } catch (...) {
      std::ostringstream what;
      what << "rendezvous at " << config.master_addr << ":" << config.master_port;
      fail(what.str());
    }
  }

  std::unique_ptr<Pending> all_reduce_async(const torch::Tensor& tensor, ReduceOp op) override {
    std::vector<at::Tensor> tensors{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d_op(op);
    try {
      return std::make_unique<Work>(this, "all-reduce", backend_->allreduce(tensors, options));
    } catch (...) {
      fail("all-reduce");
    }
  }

  void barrier() override {
    try {
      // A barrier is an all-reduce of one number here: the same matching on every backend.
      auto flag = torch::zeros(
          {1}, torch::TensorOptions().device(cuda_tensors_ ? torch::Device(torch::kCUDA, current_cuda_index())
                                                           : torch::Device(torch::kCPU)));
      all_reduce(flag);
    } catch (...) {
      fail("barrier");
    }
  }

 protected:
  void broadcast_one(const torch::Tensor& flat, int root) override {
    std::vector<at::Tensor> tensors{flat};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    try {
      auto work = backend_->broadcast(tensors, options);
      work->wait();
    } catch (...) {
      fail("broadcast");
    }
  }

 private:
  class Work final : public Pending {
   public:
    Work(const C10dGroup* group, const char* what, c10::intrusive_ptr<c10d::Work> work)
        : group_(group), what_(what), work_(std::move(work)) {}
    void wait() override {
      try {
        work_->wait();
      } catch (...) {
        group_->fail(what_);
      }
    }

   private:
    const C10dGroup* group_;
    const char* what_;
    c10::intrusive_ptr<c10d::Work> work_;
  };

  static int current_cuda_index() {
#ifdef XT_WITH_NCCL
    return static_cast<int>(c10::cuda::current_device());
#else
    return 0;
#endif
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Backend> backend_;
  bool cuda_tensors_ = false;
};

}  // namespace
#endif  // XT_WITH_GLOO

std::vector<std::string> distributed_backends() {
  std::vector<std::string> names;
#ifdef XT_WITH_GLOO
  names.push_back("gloo");
#ifdef XT_WITH_NCCL
  names.push_back("nccl");
#endif
#endif
  return names;
}

std::string distributed_missing_reason(const std::string& backend) {
  for (const auto& name : distributed_backends()) {
    if (name == backend) return "";
  }
#ifndef XT_WITH_GLOO
  return "this build of the addon has no c10d: libtorch's torch/csrc/distributed/c10d headers or Gloo's headers "
         "(Debian/Ubuntu: apt-get install libgloo-dev) were missing when it was built; install them and run "
         "`npm run build:native`";
#else
  if (backend == "nccl") {
    return "this build of the addon has no NCCL backend: it needs a CUDA libtorch built with NCCL (and "
           "XT_SAFE_BUILD unset); on the CPU use gloo";
  }
  return "unknown backend '" + backend + "': use gloo (CPU tensors) or nccl (CUDA tensors)";
#endif
}

std::shared_ptr<DistributedGroup> DistributedGroup::create(const DistributedConfig& config) {
  if (config.world_size < 1 || config.rank < 0 || config.rank >= config.world_size) {
    throw std::invalid_argument("the rank must be in [0, world_size); got rank " + std::to_string(config.rank) +
                                " of " + std::to_string(config.world_size));
  }
  if (config.master_port < 1 || config.master_port > 65535) {
    throw std::invalid_argument("the master port must be in [1, 65535]; got " + std::to_string(config.master_port));
  }
  if (config.timeout_seconds <= 0) throw std::invalid_argument("the timeout must be positive");
  const auto missing = distributed_missing_reason(config.backend);
  if (!missing.empty()) throw std::invalid_argument(missing);
#ifdef XT_WITH_GLOO
  return std::make_shared<C10dGroup>(config);
#else
  throw std::logic_error("unreachable");
#endif
}

}  // namespace xt
