// The N-API surface of fed batches (native/fed_batches.h): NativeBatchFeed is where the image-folder
// data path (lib/datasets/folder-feeder.ts) pushes the uint8 batches it assembled, for a
// NativeTrainer's epoch or evaluation to pop on its worker thread. Each pop is reported back to
// JavaScript through an unreferenced thread-safe function, so the feeder keeps its prefetch depth
// without polling.
#include <chrono>
#include <memory>
#include <mutex>

#include "fed_batches.h"
#include "js_data_copy.h"
#include "napi_support.h"

namespace xt::napi {
namespace {

// The pop notification: usable from any thread until released (N-API forbids calls after release).
class PopSignal {
 public:
  PopSignal(Napi::Env env, Napi::Function callback)
      : tsfn_(Napi::ThreadSafeFunction::New(env, callback, "xception-torch batch feed", 0, 1)) {
    tsfn_.Unref(env);  // a feed waiting for batches must not keep the process alive
  }
  void notify(size_t pending) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (released_) return;
    tsfn_.NonBlockingCall(new size_t(pending), [](Napi::Env env, Napi::Function callback, size_t* left) {
      const double value = static_cast<double>(*left);
      delete left;
      try {
        callback.Call({Napi::Number::New(env, value)});
      } catch (const Napi::Error&) {
        // The feeder's listener does not throw; if it did, the epoch must not die of it here.
      }
    });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (released_) return;
    released_ = true;
    tsfn_.Release();
  }

 private:
  std::mutex mutex_;
  bool released_ = false;
  Napi::ThreadSafeFunction tsfn_;
};

class NativeBatchFeed : public Napi::ObjectWrap<NativeBatchFeed> {
 public:
  static Napi::Function Define(Napi::Env env) {
    auto constructor = DefineClass(env, "NativeBatchFeed",
                                   {
                                       InstanceMethod<&NativeBatchFeed::Size>("size"),
                                       InstanceMethod<&NativeBatchFeed::Reset>("reset"),
                                       InstanceMethod<&NativeBatchFeed::Push>("push"),
                                       InstanceMethod<&NativeBatchFeed::Fail>("fail"),
                                       InstanceMethod<&NativeBatchFeed::Pending>("pending"),
                                       InstanceMethod<&NativeBatchFeed::Drain>("drain"),
                                       InstanceMethod<&NativeBatchFeed::Dispose>("dispose"),
                                   });
    constructor_ = Napi::Persistent(constructor);
    return constructor;
  }

  static std::shared_ptr<FedBatches> of(const Napi::Value& value) {
    auto* feed = unwrap_instance<NativeBatchFeed>(constructor_, value, "a batch feed");
    if (!feed->batches_) throw std::invalid_argument("the batch feed was disposed");
    return feed->batches_;
  }

  static bool is(const Napi::Value& value) { return is_instance(constructor_, value); }

  // new NativeBatchFeed(size: number, onPop?: (pending: number) => void)
  NativeBatchFeed(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeBatchFeed>(info) {
    guarded(info.Env(), [&] {
      if (info.Length() < 1 || !info[0].IsNumber()) throw std::invalid_argument("NativeBatchFeed(size, onPop?)");
      batches_ = std::make_shared<FedBatches>(info[0].As<Napi::Number>().Int64Value());
      if (info.Length() > 1 && info[1].IsFunction()) {
        signal_ = std::make_shared<PopSignal>(info.Env(), info[1].As<Napi::Function>());
        std::weak_ptr<PopSignal> signal = signal_;
        batches_->set_on_pop([signal](size_t pending) {
          if (auto s = signal.lock()) s->notify(pending);
        });
      }
    });
  }

  ~NativeBatchFeed() override { release(); }

 private:
  FedBatches& batches() {
    if (!batches_) throw std::runtime_error("the batch feed was disposed");
    return *batches_;
  }

  void release() {
    if (signal_) signal_->release();
    signal_.reset();
  }

  Napi::Value Size(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return Napi::Number::New(info.Env(), static_cast<double>(batches().size())); });
  }

  Napi::Value Reset(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      batches().reset();
      return info.Env().Undefined();
    });
  }

  // push(phase, index, images: Uint8Array, shape: [B, H, W, 3], labels: Int32Array): copies the batch.
  Napi::Value Push(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsNumber())
        throw std::invalid_argument("push(phase, index, images, shape, labels)");
      auto images = typed_array_arg<Napi::Uint8Array>(info[2], napi_uint8_array, "images must be a Uint8Array");
      auto labels = typed_array_arg<Napi::Int32Array>(info[4], napi_int32_array, "labels must be an Int32Array");
      const auto shape = shape_of(info[3]);
      if (shape.size() != 4 || shape[3] != 3) throw std::invalid_argument("shape must be [B, H, W, 3]");
      if (static_cast<int64_t>(images.ElementLength()) != shape[0] * shape[1] * shape[2] * shape[3])
        throw std::invalid_argument("the images' bytes do not match their shape");
      if (static_cast<int64_t>(labels.ElementLength()) != shape[0])
        throw std::invalid_argument("there must be one label per image");
      FedBatch batch;
      batch.phase = info[0].As<Napi::Number>().Int64Value();
      batch.index = info[1].As<Napi::Number>().Int64Value();
      batch.images = copy_of_js_data(images.Data(), shape, torch::kByte);
      batch.labels = torch::from_blob(labels.Data(), {shape[0]}, torch::kInt).to(torch::kLong);
      batches().push(std::move(batch));
      return info.Env().Undefined();
    });
  }

  Napi::Value Fail(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      const std::string message =
          info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "the batch feed failed";
      batches().fail(message);
      return info.Env().Undefined();
    });
  }

  Napi::Value Pending(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return Napi::Number::New(info.Env(), static_cast<double>(batches().pending())); });
  }

  // drain(phase, batches, preprocessing) -> Promise<{ images, seconds }>: pops and normalises
  // `batches` batches of `phase` on a worker thread, as an epoch does before its model step; the
  // consumer of bench:folder, which times the data path alone.
  Napi::Value Drain(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
        throw std::invalid_argument("drain(phase, batches, preprocessing?)");
      const int64_t phase = info[0].As<Napi::Number>().Int64Value();
      const int64_t batches = info[1].As<Napi::Number>().Int64Value();
      const Preprocessing p = preprocessing_of(info.Length() > 2 ? info[2] : info.Env().Undefined());
      auto fed = batches_;
      if (!fed) throw std::runtime_error("the batch feed was disposed");
      return AsyncTask::Start(
          info.Env(),
          [fed, phase, batches, p]() -> AsyncTask::Finish {
            const auto start = std::chrono::steady_clock::now();
            int64_t images = 0;
            for (int64_t i = 0; i < batches; ++i) {
              auto x = normalize_fed_images(fed->pop(phase, i).images, p, torch::kCPU, /*channels_last=*/false);
              images += x.size(0);
            }
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            return [images, seconds](Napi::Env env) -> Napi::Value {
              auto o = Napi::Object::New(env);
              o.Set("images", static_cast<double>(images));
              o.Set("seconds", seconds);
              return o;
            };
          },
          {}, Value());
    });
  }

  // dispose(): an epoch waiting on this feed fails at once; the queued batches are freed with it.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (batches_) batches_->fail("the batch feed was disposed");
    batches_.reset();
    release();
    return info.Env().Undefined();
  }

  static Napi::FunctionReference constructor_;
  std::shared_ptr<FedBatches> batches_;
  std::shared_ptr<PopSignal> signal_;
};

Napi::FunctionReference NativeBatchFeed::constructor_;

}  // namespace

Napi::Function define_native_batch_feed(Napi::Env env) { return NativeBatchFeed::Define(env); }
std::shared_ptr<FedBatches> batch_feed_of(const Napi::Value& value) { return NativeBatchFeed::of(value); }
bool is_batch_feed(const Napi::Value& value) { return NativeBatchFeed::is(value); }

}  // namespace xt::napi
