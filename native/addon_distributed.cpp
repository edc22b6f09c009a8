// The N-API surface of data-parallel training: createProcessGroup() joins a c10d process group on a
// worker thread (the rendezvous waits for every rank) and resolves to a NativeProcessGroup, which a
// NativeTrainer takes in its config (`group`) to train data-parallel.
#include <memory>

#include "distributed_group.h"
#include "distributed_sampler.h"
#include "napi_support.h"

namespace xt::napi {
namespace {

class NativeProcessGroup : public Napi::ObjectWrap<NativeProcessGroup> {
 public:
  static Napi::Function Define(Napi::Env env) {
    auto constructor = DefineClass(env, "NativeProcessGroup",
                                   {
                                       InstanceAccessor<&NativeProcessGroup::Rank>("rank"),
                                       InstanceAccessor<&NativeProcessGroup::WorldSize>("worldSize"),
                                       InstanceAccessor<&NativeProcessGroup::Backend>("backend"),
                                       InstanceMethod<&NativeProcessGroup::AllReduce>("allReduce"),
                                       InstanceMethod<&NativeProcessGroup::Barrier>("barrier"),
                                       InstanceMethod<&NativeProcessGroup::Dispose>("dispose"),
                                   });
    constructor_ = Napi::Persistent(constructor);
    return constructor;
  }

  // Made only by createProcessGroup, with the joined group in an External.
  NativeProcessGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeProcessGroup>(info) {
    guarded(info.Env(), [&] {
      if (info.Length() < 1 || !info[0].IsExternal()) throw std::invalid_argument("use createProcessGroup(config)");
      group_ = *info[0].As<Napi::External<std::shared_ptr<DistributedGroup>>>().Data();
    });
  }

  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<DistributedGroup> group) {
    std::shared_ptr<DistributedGroup> holder = std::move(group);
    return constructor_.New({Napi::External<std::shared_ptr<DistributedGroup>>::New(env, &holder)});
  }

  static std::shared_ptr<DistributedGroup> of(const Napi::Value& value) {
    auto* wrapped =
        unwrap_instance<NativeProcessGroup>(constructor_, value, "a NativeProcessGroup (from createProcessGroup)");
    return wrapped->group();
  }

 private:
  std::shared_ptr<DistributedGroup> group() const {
    if (!group_) throw std::runtime_error("this process group was disposed");
    return group_;
  }

  Napi::Value Rank(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), group_ ? group_->rank() : -1);
  }
  Napi::Value WorldSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), group_ ? group_->world_size() : 0);
  }
  Napi::Value Backend(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), group_ ? group_->backend() : "");
  }

  // allReduce(values: Float64Array, op: 'sum' | 'max' | 'min') -> Promise<Float64Array>: small
  // agreements between ranks (a decision every rank must take alike).
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto values =
          typed_array_arg<Napi::Float64Array>(info[0], napi_float64_array, "allReduce(values: Float64Array, op)");
      const auto op_name = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
      ReduceOp op = ReduceOp::Sum;
      if (op_name == "max") op = ReduceOp::Max;
      else if (op_name == "min") op = ReduceOp::Min;
      else if (op_name != "sum") throw std::invalid_argument("op must be 'sum', 'max' or 'min'");
      auto tensor =
          torch::from_blob(values.Data(), {static_cast<int64_t>(values.ElementLength())}, torch::kDouble).clone();
      auto group = this->group();
      return AsyncTask::StartOnPool(info.Env(), [group, tensor, op]() -> AsyncTask::Finish {
        auto on_device = group->backend() == "nccl" ? tensor.to(torch::kCUDA) : tensor;
        group->all_reduce(on_device, op);
        auto result = on_device.to(torch::kCPU);
        return [result](Napi::Env env) -> Napi::Value { return typed_array_copy<double>(env, result); };
      });
    });
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto group = this->group();
      return AsyncTask::StartOnPool(info.Env(), [group]() -> AsyncTask::Finish {
        group->barrier();
        return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
      });
    });
  }

  // dispose(): leaves the group once no trainer holds it (the connections close with the last
  // reference).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    group_.reset();
    return info.Env().Undefined();
  }

  static Napi::FunctionReference constructor_;
  std::shared_ptr<DistributedGroup> group_;
};

Napi::FunctionReference NativeProcessGroup::constructor_;

// createProcessGroup({ backend, rank, worldSize, masterAddr, masterPort, isStoreServer, storePrefix,
// timeoutSeconds }) -> Promise<NativeProcessGroup>
Napi::Value CreateProcessGroup(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw std::invalid_argument("createProcessGroup(config)");
    auto o = info[0].As<Napi::Object>();
    DistributedConfig c;
    c.backend = string_option(o, "backend", c.backend);
    c.rank = static_cast<int>(int_option(o, "rank", c.rank));
    c.world_size = static_cast<int>(int_option(o, "worldSize", c.world_size));
    c.master_addr = string_option(o, "masterAddr", c.master_addr);
    c.master_port = static_cast<int>(int_option(o, "masterPort", c.master_port));
    c.is_store_server = bool_option(o, "isStoreServer", c.rank == 0);
    c.store_prefix = string_option(o, "storePrefix", c.store_prefix);
    c.timeout_seconds = number_option(o, "timeoutSeconds", c.timeout_seconds);
    // Argument errors now, on the JS thread; the rendezvous on a worker thread.
    const auto missing = distributed_missing_reason(c.backend);
    if (!missing.empty()) throw std::invalid_argument(missing);
    return AsyncTask::StartOnPool(info.Env(), [c]() -> AsyncTask::Finish {
      auto group = DistributedGroup::create(c);
      return [group](Napi::Env env) -> Napi::Value { return NativeProcessGroup::Wrap(env, group); };
    });
  });
}

// shardIndices(order: Int32Array, rank, worldSize) -> Int32Array: DistributedSampler's split of a
// permutation (for the sampler's parity test; training uses the same function).
Napi::Value ShardIndices(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto order = typed_array_arg<Napi::Int32Array>(info[0], napi_int32_array,
                                                   "shardIndices(order: Int32Array, rank, worldSize)");
    if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber())
      throw std::invalid_argument("shardIndices(order: Int32Array, rank, worldSize)");
    const int64_t rank = info[1].As<Napi::Number>().Int64Value();
    const int64_t world = info[2].As<Napi::Number>().Int64Value();
    if (world < 1 || rank < 0 || rank >= world) throw std::invalid_argument("the rank must be in [0, worldSize)");
    if (order.ElementLength() == 0) throw std::invalid_argument("the permutation is empty");
    auto t =
        torch::from_blob(order.Data(), {static_cast<int64_t>(order.ElementLength())}, torch::kInt).to(torch::kLong);
    return typed_array_copy<int32_t>(info.Env(), shard_indices(t, rank, world));
  });
}

}  // namespace

std::shared_ptr<DistributedGroup> process_group_of(const Napi::Value& value) { return NativeProcessGroup::of(value); }

void define_distributed(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeProcessGroup", NativeProcessGroup::Define(env));
  exports.Set("createProcessGroup", Napi::Function::New(env, CreateProcessGroup));
  exports.Set("shardIndices", Napi::Function::New(env, ShardIndices));
}

}  // namespace xt::napi
