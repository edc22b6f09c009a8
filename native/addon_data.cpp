// The N-API surface of the datasets: a NativeDataset holds one split's uint8 images on the device
// (native/data.cpp) and produces preprocessed batches off the event loop.
#include <memory>

#include "data.h"
#include "napi_support.h"

namespace xt::napi {
namespace {

std::array<double, 3> triple_option(const Napi::Object& o, const char* key, std::array<double, 3> fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3)
    throw std::invalid_argument(std::string(key) + " must be an array of three numbers");
  std::array<double, 3> out{};
  for (uint32_t i = 0; i < 3; ++i) {
    Napi::Value e = v.As<Napi::Array>()[i];
    if (!e.IsNumber()) throw std::invalid_argument(std::string(key) + " must be an array of three numbers");
    out[i] = e.As<Napi::Number>().DoubleValue();
  }
  return out;
}

}  // namespace

Preprocessing preprocessing_of(const Napi::Value& value) {
  Preprocessing p;
  if (value.IsUndefined()) return p;
  if (!value.IsObject()) throw std::invalid_argument("preprocessing options must be an object");
  auto o = value.As<Napi::Object>();
  p.train_resize = int_option(o, "resize", p.train_resize);
  p.eval_resize = int_option(o, "evalResize", p.eval_resize);
  p.crop = int_option(o, "crop", p.crop);
  p.flip = bool_option(o, "flip", p.flip);
  p.mean = triple_option(o, "mean", p.mean);
  p.std = triple_option(o, "std", p.std);
  const auto strategy = string_option(o, "strategy", "auto");
  if (strategy == "auto") p.strategy = Preprocessing::Strategy::Auto;
  else if (strategy == "per-image") p.strategy = Preprocessing::Strategy::PerImage;
  else if (strategy == "batched") p.strategy = Preprocessing::Strategy::Batched;
  else throw std::invalid_argument("strategy must be 'auto', 'per-image' or 'batched'");
  return p;
}

namespace {

class NativeDataset : public Napi::ObjectWrap<NativeDataset> {
 public:
  static Napi::Function Define(Napi::Env env) {
    auto constructor = DefineClass(env, "NativeDataset",
                                   {
                                       InstanceMethod<&NativeDataset::Size>("size"),
                                       InstanceMethod<&NativeDataset::DeviceName>("device"),
                                       InstanceMethod<&NativeDataset::Batch>("batch"),
                                       InstanceMethod<&NativeDataset::Dispose>("dispose"),
                                   });
    constructor_ = Napi::Persistent(constructor);
    return constructor;
  }

  static std::shared_ptr<ImageStore> store_of(const Napi::Value& value) {
    auto* dataset = unwrap_instance<NativeDataset>(constructor_, value, "a dataset");
    if (!dataset->store_) throw std::invalid_argument("the dataset was disposed");
    return dataset->store_;
  }

  // new NativeDataset(images: Uint8Array, labels: Uint8Array, shape: [N, C, H, W], device)
  NativeDataset(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeDataset>(info) {
    guarded(info.Env(), [&] {
      if (info.Length() < 4) throw std::invalid_argument("NativeDataset(images, labels, shape, device)");
      auto images = typed_array_arg<Napi::Uint8Array>(info[0], napi_uint8_array, "images must be a Uint8Array");
      auto labels = typed_array_arg<Napi::Uint8Array>(info[1], napi_uint8_array, "labels must be a Uint8Array");
      const auto shape = shape_of(info[2]);
      if (shape.size() != 4) throw std::invalid_argument("shape must be [N, C, H, W]");
      if (shape[1] != 3) throw std::invalid_argument("images must have 3 channels");
      if (static_cast<int64_t>(images.ElementLength()) != shape[0] * shape[1] * shape[2] * shape[3]) {
        throw std::invalid_argument("images hold " + std::to_string(images.ElementLength()) +
                                    " bytes, which does not match their shape");
      }
      if (static_cast<int64_t>(labels.ElementLength()) != shape[0])
        throw std::invalid_argument("there must be one label per image");
      if (!info[3].IsString()) throw std::invalid_argument("device must be a string");
      const auto device = parse_device(info[3].As<Napi::String>().Utf8Value());
      auto image_tensor = torch::from_blob(images.Data(), shape, torch::kUInt8);
      auto label_tensor = torch::from_blob(labels.Data(), {shape[0]}, torch::kUInt8);
      // ImageStore copies to the device (a clone on the CPU), so the JS buffers may go.
      store_ = std::make_shared<ImageStore>(image_tensor.clone(), label_tensor.clone(), device);
      memory_ = std::make_unique<ExternalMemory>(info.Env(), tensor_bytes(image_tensor) + tensor_bytes(label_tensor));
    });
  }

  ImageStore& store() {
    if (!store_) throw std::runtime_error("this dataset was disposed");
    return *store_;
  }

 private:
  Napi::Value Size(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return Napi::Number::New(info.Env(), static_cast<double>(store().size())); });
  }

  Napi::Value DeviceName(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return Napi::String::New(info.Env(), store().device().str()); });
  }

  // dispose(): frees the images now (a batch in flight keeps its own reference until it ends).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    store_.reset();
    memory_.reset();
    return info.Env().Undefined();
  }

  // batch(indices: Int32Array, options: { train, resize, evalResize, crop, flip, mean, std },
  //       augment?: { offsets: Int32Array [2B], flips: Uint8Array [B] } | { seed: number })
  //   -> Promise<{ shape, data: Float32Array, labels: Int32Array, offsets?, flips? }>
  Napi::Value Batch(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto indices_js = typed_array_arg<Napi::Int32Array>(info[0], napi_int32_array, "indices must be an Int32Array");
      const int64_t n = static_cast<int64_t>(indices_js.ElementLength());
      const int32_t* index = indices_js.Data();
      for (int64_t i = 0; i < n; ++i) {
        if (index[i] < 0 || index[i] >= store().size()) {
          throw std::invalid_argument("index " + std::to_string(index[i]) + " is outside the dataset (size " +
                                      std::to_string(store().size()) + ")");
        }
      }
      auto indices = torch::from_blob(indices_js.Data(), {n}, torch::kInt).to(torch::kLong);
      if (!info[1].IsObject()) throw std::invalid_argument("batch options must be an object");
      const auto options = info[1].As<Napi::Object>();
      const bool train = bool_option(options, "train", false);
      const Preprocessing p = preprocessing_of(options);
      p.validate(store().image_size());

      Augmentation augment;
      bool seeded = false;
      uint64_t seed = 0;
      if (train) {
        if (info.Length() < 3 || !info[2].IsObject())
          throw std::invalid_argument("a training batch needs augmentation: { offsets, flips } or { seed }");
        auto a = info[2].As<Napi::Object>();
        if (a.Has("seed")) {
          seeded = true;
          seed = static_cast<uint64_t>(int_option(a, "seed", 0));
        } else {
          auto offsets =
              typed_array_arg<Napi::Int32Array>(a.Get("offsets"), napi_int32_array, "offsets must be an Int32Array");
          auto flips =
              typed_array_arg<Napi::Uint8Array>(a.Get("flips"), napi_uint8_array, "flips must be a Uint8Array");
          if (static_cast<int64_t>(offsets.ElementLength()) != 2 * n ||
              static_cast<int64_t>(flips.ElementLength()) != n) {
            throw std::invalid_argument("offsets must hold 2 values and flips 1 value per image");
          }
          augment.offsets = torch::from_blob(offsets.Data(), {n, 2}, torch::kInt).to(torch::kLong);
          augment.flips = torch::from_blob(flips.Data(), {n}, torch::kUInt8).to(torch::kBool);
        }
      }
      auto store = store_;
      return AsyncTask::Start(
          info.Env(),
          [store, indices, train, p, augment, seeded, seed]() mutable -> AsyncTask::Finish {
            torch::NoGradGuard no_grad;
            if (train && seeded) {
              auto generator = at::detail::createCPUGenerator(seed);
              augment = store->sample_augmentation(indices.size(0), p, generator);
            }
            auto batch = train ? store->train_batch(indices, p, augment) : store->eval_batch(indices, p);
            auto labels = store->labels(indices).to(torch::kCPU, torch::kInt).contiguous();
            batch = batch.to(torch::kCPU).contiguous();
            return [batch, labels, augment](Napi::Env env) -> Napi::Value {
              auto result = Napi::Object::New(env);
              result.Set("shape", js_shape(env, batch.sizes()));
              result.Set("data", float32_array(env, batch));
              result.Set("labels", typed_array_copy<int32_t>(env, labels));
              if (augment.offsets.defined()) {
                result.Set("offsets", typed_array_copy<int32_t>(env, augment.offsets));
                result.Set("flips", typed_array_copy<uint8_t>(env, augment.flips));
              }
              return result;
            };
          },
          {}, Value());
    });
  }

  static Napi::FunctionReference constructor_;
  std::shared_ptr<ImageStore> store_;
  std::unique_ptr<ExternalMemory> memory_;
};

Napi::FunctionReference NativeDataset::constructor_;

}  // namespace

Napi::Function define_native_dataset(Napi::Env env) { return NativeDataset::Define(env); }
std::shared_ptr<ImageStore> image_store_of(const Napi::Value& value) { return NativeDataset::store_of(value); }

}  // namespace xt::napi
