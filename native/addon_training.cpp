// The N-API surface of training: NativeTrainer runs epochs and evaluations of a model on a
// dataset on a worker thread, reports progress through a thread-safe function, and exposes the
// optimizer, scaler and position state that checkpoints save; benchmarkSteps times a model's
// steps (TrainingSession::benchmark). The optimizer's test hooks are in addon_test_hooks.cpp.
#include <cmath>
#include <memory>

#include "malloc_tuning.h"
#include "napi_support.h"
#include "tensor_object.h"
#include "training.h"
#include "training_js.h"

namespace xt::napi {
namespace {

// What an epoch or evaluation reads: a NativeDataset's images (which must be on `device`), or a
// NativeBatchFeed's batches.
struct TrainingImages {
  std::shared_ptr<ImageStore> store;
  std::shared_ptr<FedBatches> fed;
  int64_t size() const { return fed ? fed->size() : store->size(); }
};

TrainingImages training_images_of(const Napi::Value& value, const torch::Device& device) {
  if (is_batch_feed(value)) return {nullptr, batch_feed_of(value)};
  auto store = image_store_of(value);
  if (store->device() != device) {
    throw std::invalid_argument("the dataset is on " + store->device().str() + " but the model is on " + device.str());
  }
  return {store, nullptr};
}

class NativeTrainer : public Napi::ObjectWrap<NativeTrainer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeTrainer",
                       {
                           InstanceMethod<&NativeTrainer::TrainEpoch>("trainEpoch"),
                           InstanceMethod<&NativeTrainer::Stop>("stop"),
                           InstanceMethod<&NativeTrainer::Evaluate>("evaluate"),
                           InstanceMethod<&NativeTrainer::BatchesPerEpoch>("batchesPerEpoch"),
                           InstanceMethod<&NativeTrainer::EpochIndices>("epochIndices"),
                           InstanceMethod<&NativeTrainer::GetState>("getState"),
                           InstanceMethod<&NativeTrainer::GetCounters>("getCounters"),
                           InstanceMethod<&NativeTrainer::SetState>("setState"),
                           InstanceMethod<&NativeTrainer::Dispose>("dispose"),
                       });
  }

  // new NativeTrainer(model: NativeModel, train: NativeDataset | NativeBatchFeed, config)
  NativeTrainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTrainer>(info) {
    guarded(info.Env(), [&] {
      if (info.Length() < 3 || !info[2].IsObject())
        throw std::invalid_argument("NativeTrainer(model, trainDataset, config)");
      auto model = model_access(info[0]);
      train_ = training_images_of(info[1], model.device);
      model_ = Napi::Persistent(info[0].As<Napi::Object>());
      busy_ = model.busy;
      device_ = model.device;
      auto config = info[2].As<Napi::Object>();
      std::shared_ptr<DistributedGroup> group;
      if (config.Has("group") && !config.Get("group").IsUndefined()) group = process_group_of(config.Get("group"));
      session_ =
          std::make_shared<TrainingSession>(model.net, train_config_of(config), model.device, train_.size(), group);
      // The optimizer's moments: two tensors the size of each trained parameter.
      memory_ = std::make_unique<ExternalMemory>(info.Env(), tensor_bytes(session_->optimizer().state()));
    });
  }

 private:
  TrainingSession& session() {
    if (!session_) throw std::runtime_error("this trainer was disposed");
    return *session_;
  }

  // dispose(): drops the session (optimizer state, and its references to the model's network and
  // the training images). An epoch or evaluation in flight keeps its own reference and frees them
  // when it ends; it is asked to stop at its next batch.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    stop_ = true;
    session_.reset();
    train_ = {};
    memory_.reset();
    xt::release_free_memory();
    return info.Env().Undefined();
  }

  void begin_work() {
    session();  // throws once disposed
    if (running_)
      throw std::runtime_error("this trainer is already running: await the current epoch or evaluation first");
    if (busy_->load() > 0)
      throw std::runtime_error("the model is busy with another job: one training job per model at a time");
    running_ = true;
    (*busy_)++;
    stop_ = false;
  }

  void end_work() {
    running_ = false;
    (*busy_)--;
  }

  // trainEpoch(onProgress?: (p) => void) -> Promise<EpochResult>
  Napi::Value TrainEpoch(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      begin_work();
      std::shared_ptr<Napi::ThreadSafeFunction> tsfn;
      if (info.Length() > 0 && info[0].IsFunction()) {
        tsfn = std::make_shared<Napi::ThreadSafeFunction>(
            Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "xception-torch progress", 0, 1));
      }
      auto session = session_;
      auto train = train_;
      auto* stop = &stop_;
      return AsyncTask::Start(
          env,
          [session, train, stop, tsfn]() -> AsyncTask::Finish {
            auto report = [&](const TrainProgress& p) {
              if (!tsfn) return;
              tsfn->BlockingCall(new TrainProgress(p), [](Napi::Env env, Napi::Function callback, TrainProgress* p) {
                auto o = Napi::Object::New(env);
                o.Set("epoch", static_cast<double>(p->epoch));
                o.Set("batch", static_cast<double>(p->batch));
                o.Set("batches", static_cast<double>(p->batches));
                o.Set("images", static_cast<double>(p->images));
                o.Set("loss", p->loss);
                o.Set("accuracy", p->accuracy);
                o.Set("seconds", p->seconds);
                o.Set("lr", p->lr);
                o.Set("lossScale", p->scale);
                delete p;
                try {
                  callback.Call({o});
                } catch (const Napi::Error&) {
                  // A throwing progress listener must not take the training down.
                }
              });
            };
            EpochResult result;
            try {
              result = train.fed ? session->train_epoch(*train.fed, report, *stop)
                                 : session->train_epoch(*train.store, report, *stop);
            } catch (...) {
              if (tsfn) tsfn->Release();
              throw;
            }
            if (tsfn) tsfn->Release();
            return [result](Napi::Env env) -> Napi::Value { return epoch_object(env, result); };
          },
          [this] { end_work(); }, Value());
    });
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    stop_ = true;
    return info.Env().Undefined();
  }

  // evaluate(dataset: NativeDataset | NativeBatchFeed, batchSize, numClasses)
  //   -> Promise<{ loss, accuracy, images, confusion }>
  Napi::Value Evaluate(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const auto data = training_images_of(info[0], device_);
      const int64_t batch_size = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 128;
      const int64_t classes = info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : 10;
      if (batch_size < 1 || classes < 1) throw std::invalid_argument("batchSize and numClasses must be positive");
      begin_work();
      auto session = session_;
      return AsyncTask::Start(
          info.Env(),
          [session, data, batch_size, classes]() -> AsyncTask::Finish {
            auto r = data.fed ? session->evaluate(*data.fed, batch_size, classes)
                              : session->evaluate(*data.store, batch_size, classes);
            return [r, classes](Napi::Env env) -> Napi::Value {
              auto o = Napi::Object::New(env);
              o.Set("loss", r.loss);
              o.Set("accuracy", r.accuracy);
              o.Set("images", static_cast<double>(r.images));
              o.Set("confusion", typed_array_copy<double>(env, r.confusion.reshape({-1})));
              return o;
            };
          },
          [this] { end_work(); }, Value());
    });
  }

  Napi::Value BatchesPerEpoch(const Napi::CallbackInfo& info) {
    return guarded(info.Env(),
                   [&] { return Napi::Number::New(info.Env(), static_cast<double>(session().batches_per_epoch())); });
  }

  // epochIndices(epoch) -> Int32Array: this rank's training images of that epoch, in order.
  Napi::Value EpochIndices(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsNumber()) throw std::invalid_argument("epochIndices(epoch)");
      return typed_array_copy<int32_t>(info.Env(), session().epoch_indices(info[0].As<Napi::Number>().Int64Value()));
    });
  }

  // { position, optimizerSteps, scaler }: getState() without copying the optimizer's tensors.
  Napi::Object counters_object(Napi::Env env) {
    auto o = Napi::Object::New(env);
    o.Set("position", position_object(env, session().position()));
    o.Set("optimizerSteps", static_cast<double>(session().optimizer().steps()));
    auto s = Napi::Object::New(env);
    s.Set("scale", session().scaler().scale_value());
    s.Set("growthTracker", static_cast<double>(session().scaler().growth_tracker()));
    s.Set("skippedSteps", static_cast<double>(session().scaler().skipped_steps()));
    o.Set("scaler", s);
    return o;
  }

  Napi::Value GetCounters(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (running_) throw std::runtime_error("cannot read the training state while an epoch runs");
      return counters_object(info.Env());
    });
  }

  // { position: {...}, optimizerSteps, scaler: { scale, growthTracker, skippedSteps }, optimizer: [tensors] }
  // The tensors are copies; getState(true) shares their memory (tensor_object), for a checkpoint
  // written before the next epoch changes them.
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (running_) throw std::runtime_error("cannot read the training state while an epoch runs");
      Napi::Env env = info.Env();
      const bool share = share_requested(info);
      auto o = counters_object(env);
      auto state = session().optimizer().state();
      auto tensors = Napi::Array::New(env, state.size());
      for (size_t i = 0; i < state.size(); ++i)
        tensors.Set(static_cast<uint32_t>(i), tensor_object(env, state[i].first, state[i].second, share));
      o.Set("optimizer", tensors);
      return o;
    });
  }

  // setState({ position, optimizerSteps, scaler, optimizer: [{ name, dtype, shape, data: Uint8Array }] })
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (running_) throw std::runtime_error("cannot change the training state while an epoch runs");
      if (info.Length() < 1 || !info[0].IsObject()) throw std::invalid_argument("setState expects an object");
      auto o = info[0].As<Napi::Object>();
      std::map<std::string, torch::Tensor> tensors;
      if (!o.Get("optimizer").IsArray()) throw std::invalid_argument("setState: optimizer must be an array of tensors");
      auto list = o.Get("optimizer").As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); ++i) {
        if (!list.Get(i).IsObject()) throw std::invalid_argument("setState: each optimizer tensor must be an object");
        auto e = list.Get(i).As<Napi::Object>();
        auto data = typed_array_arg<Napi::Uint8Array>(e.Get("data"), napi_uint8_array,
                                                      "setState: optimizer tensor data must be a Uint8Array");
        const auto type = scalar_type_of(string_option(e, "dtype", ""));
        const auto shape = shape_of(e.Get("shape"));
        int64_t numel = 1;
        for (auto d : shape) numel *= d;
        if (static_cast<int64_t>(data.ByteLength()) != numel * static_cast<int64_t>(c10::elementSize(type))) {
          throw std::invalid_argument("optimizer tensor '" + string_option(e, "name", "") +
                                      "' has the wrong byte length");
        }
        tensors[string_option(e, "name", "")] =
            torch::from_blob(data.Data(), shape, torch::TensorOptions().dtype(type)).to(device_, torch::kFloat);
      }
      if (!o.Get("position").IsObject()) throw std::invalid_argument("setState: position must be an object");
      // A saved position is checked against this session before anything is applied.
      const EpochPosition pos = position_of(o.Get("position").As<Napi::Object>(), session().batches_per_epoch());
      if (!o.Get("scaler").IsObject()) throw std::invalid_argument("setState: scaler must be an object");
      auto s = o.Get("scaler").As<Napi::Object>();
      const double scale = number_option(s, "scale", 65536.0);
      const int64_t growth_tracker = int_option(s, "growthTracker", 0), skipped = int_option(s, "skippedSteps", 0);
      const int64_t steps = int_option(o, "optimizerSteps", 0);
      if (!(scale > 0) || !std::isfinite(scale) || growth_tracker < 0 || skipped < 0 || steps < 0) {
        throw std::invalid_argument(
            "setState: the scaler state and optimizerSteps must be finite and non-negative (scale > 0)");
      }
      session().optimizer().load_state(tensors, steps);
      session().scaler().set_state(scale, growth_tracker, skipped);
      session().position() = pos;
      return info.Env().Undefined();
    });
  }

  Napi::ObjectReference model_;
  std::atomic<int>* busy_ = nullptr;
  torch::Device device_{torch::kCPU};
  TrainingImages train_;
  std::shared_ptr<TrainingSession> session_;
  std::atomic<bool> stop_{false};
  bool running_ = false;
  std::unique_ptr<ExternalMemory> memory_;
};

// benchmarkSteps(model, { batch, size, warmup, steps, train, amp, channelsLast })
//   -> Promise<{ seconds, images, peakMemory? }>: TrainingSession::benchmark on a worker thread
// (timed training steps or eval forward passes on one fixed random batch, for side-by-side
// comparisons with PyTorch in bench/). On CUDA, peakMemory is the caching allocator's peak over
// the timed and warm-up steps.
Napi::Value BenchmarkSteps(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto model = model_access(info[0]);
    if (info.Length() < 2 || !info[1].IsObject())
      throw std::invalid_argument("benchmarkSteps(model, { batch, size, warmup, steps, train })");
    auto o = info[1].As<Napi::Object>();
    const int64_t batch = int_option(o, "batch", 8);
    BenchmarkOptions options;
    options.image_size = int_option(o, "size", options.image_size);
    options.warmup = int_option(o, "warmup", options.warmup);
    options.steps = int_option(o, "steps", options.steps);
    options.train = bool_option(o, "train", options.train);
    if (batch < 2 || options.steps < 1 || options.warmup < 0)
      throw std::invalid_argument("batch must be at least 2, steps positive, warmup >= 0");
    TrainConfig config;
    config.batch_size = batch;
    config.amp = amp_of(string_option(o, "amp", "off"));
    config.scaler.enabled = config.amp == AmpMode::FP16;
    config.channels_last = bool_option(o, "channelsLast", false);
    model.net->check_input_shape({batch, 3, options.image_size, options.image_size});
    if (config.amp == AmpMode::FP16 && model.device.is_cpu())
      throw std::invalid_argument("fp16 mixed precision needs CUDA; on the CPU use bf16 or off");
    if (model.busy->load() > 0) throw std::runtime_error("the model is busy with another job");
    (*model.busy)++;
    auto* busy = model.busy;
    auto net = model.net;
    const auto device = model.device;
    return AsyncTask::Start(
        info.Env(),
        [net, device, config, options]() -> AsyncTask::Finish {
          // The session converts the weights to channels_last when asked, as training does.
          const auto r = TrainingSession(net, config, device, config.batch_size).benchmark(options);
          return [r](Napi::Env env) -> Napi::Value {
            auto o = Napi::Object::New(env);
            o.Set("seconds", r.seconds);
            o.Set("images", static_cast<double>(r.images));
            if (r.peak_memory) o.Set("peakMemory", static_cast<double>(*r.peak_memory));
            return o;
          };
        },
        [busy] { (*busy)--; }, info[0].As<Napi::Object>());
  });
}

}  // namespace

Napi::Function define_native_trainer(Napi::Env env) { return NativeTrainer::Define(env); }

Napi::Function define_benchmark_steps(Napi::Env env) { return Napi::Function::New(env, BenchmarkSteps); }

}  // namespace xt::napi
