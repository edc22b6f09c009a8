// The N-API surface of the addon, and nothing else: argument checks, wrapping of the native
// models, async workers that keep compute off the event loop, and translation of every C++
// exception into a JavaScript error (an exception escaping into N-API would abort Node).
#include <napi.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "inception_v3.h"
#include "xception.h"

namespace {

// ---- errors -------------------------------------------------------------------------------

// User-facing text of an exception: c10 errors without their C++ backtrace.
std::string message_of(const std::exception& e) {
  if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
  return e.what();
}

// Runs `body`, rethrowing any C++ exception as a JavaScript error.
template <typename Body>
auto guarded(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, message_of(e));
  } catch (...) {
    throw Napi::Error::New(env, "unknown native error");
  }
}

// ---- argument helpers ------------------------------------------------------------------------

int64_t int_option(const Napi::Object& o, const char* key, int64_t fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsNumber()) throw std::invalid_argument(std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) throw std::invalid_argument(std::string(key) + " must be an integer");
  return static_cast<int64_t>(d);
}

double number_option(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsNumber()) throw std::invalid_argument(std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool bool_option(const Napi::Object& o, const char* key, bool fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsBoolean()) throw std::invalid_argument(std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string string_option(const Napi::Object& o, const char* key, const std::string& fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsString()) throw std::invalid_argument(std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> shape_of(const Napi::Value& value) {
  if (!value.IsArray()) throw std::invalid_argument("shape must be an array of integers");
  auto arr = value.As<Napi::Array>();
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value d = arr[i];
    if (!d.IsNumber()) throw std::invalid_argument("shape must be an array of integers");
    double v = d.As<Napi::Number>().DoubleValue();
    if (v < 0 || v != static_cast<double>(static_cast<int64_t>(v))) {
      throw std::invalid_argument("shape must hold non-negative integers");
    }
    shape.push_back(static_cast<int64_t>(v));
  }
  return shape;
}

Napi::Array js_shape(Napi::Env env, at::IntArrayRef sizes) {
  auto arr = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(sizes[i])));
  return arr;
}

// safetensors dtype names <-> libtorch scalar types.
at::ScalarType scalar_type_of(const std::string& dtype) {
  if (dtype == "F32") return at::kFloat;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "BF16") return at::kBFloat16;
  if (dtype == "F64") return at::kDouble;
  if (dtype == "I64") return at::kLong;
  throw std::invalid_argument("unsupported tensor dtype '" + dtype + "' (supported: F32, F16, BF16, F64, I64)");
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kDouble: return "F64";
    case at::kLong: return "I64";
    default: throw std::runtime_error(std::string("no safetensors name for dtype ") + c10::toString(t));
  }
}

// ---- threads ---------------------------------------------------------------------------------

std::atomic<int> g_num_threads{static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))};

// libtorch's intra-op thread count is per thread under OpenMP: set it on each worker thread.
void prepare_worker_thread() {
  at::init_num_threads();
  at::set_num_threads(g_num_threads.load());
}

torch::Device parse_device(const std::string& text) {
  if (text == "cpu") return torch::Device(torch::kCPU);
  if (text.rfind("cuda", 0) != 0) throw std::invalid_argument("device must be 'cpu', 'cuda' or 'cuda:N'; got '" + text + "'");
  torch::Device device(torch::kCUDA);
  try {
    device = torch::Device(text);
  } catch (const std::exception&) {
    throw std::invalid_argument("device must be 'cpu', 'cuda' or 'cuda:N'; got '" + text + "'");
  }
  if (!torch::cuda::is_available()) {
    throw std::runtime_error("device '" + text + "' was requested but CUDA is not available: this libtorch (" +
                             std::string(TORCH_VERSION) + ") has no CUDA support or no GPU is visible. Use device 'cpu'.");
  }
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count) {
    throw std::invalid_argument("device '" + text + "' does not exist: " + std::to_string(count) + " CUDA device(s) visible");
  }
  return device;
}

std::string short_type_name(const torch::nn::Module& m) {
  std::string name = m.name();
  const std::string ns = "torch::nn::";
  if (name.rfind(ns, 0) == 0) name = name.substr(ns.size());
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) name.resize(name.size() - 4);
  return name;
}

// ---- the model wrapper -----------------------------------------------------------------------

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {
                           InstanceMethod<&NativeModel::ParameterCount>("parameterCount"),
                           InstanceMethod<&NativeModel::StateDictInfo>("stateDictInfo"),
                           InstanceMethod<&NativeModel::GetState>("getState"),
                           InstanceMethod<&NativeModel::SetState>("setState"),
                           InstanceMethod<&NativeModel::SetTraining>("setTraining"),
                           InstanceMethod<&NativeModel::IsTraining>("isTraining"),
                           InstanceMethod<&NativeModel::To>("to"),
                           InstanceMethod<&NativeModel::DeviceName>("device"),
                           InstanceMethod<&NativeModel::Forward>("forward"),
                           InstanceMethod<&NativeModel::Summary>("summary"),
                           InstanceMethod<&NativeModel::MinInputSize>("minInputSize"),
                           InstanceMethod<&NativeModel::Dispose>("dispose"),
                       });
  }

  NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    guarded(info.Env(), [&] {
      if (info.Length() < 1 || !info[0].IsString()) throw std::invalid_argument("model name must be a string");
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      Napi::Object options = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
      if (name == "xception") {
        xt::XceptionOptions o;
        o.num_classes = int_option(options, "numClasses", o.num_classes);
        o.middle_flow_blocks = int_option(options, "middleFlowBlocks", o.middle_flow_blocks);
        o.dropout = number_option(options, "dropout", o.dropout);
        const auto act = string_option(options, "intermediateActivation", "none");
        if (act == "none") o.intermediate_activation = xt::IntermediateActivation::None;
        else if (act == "relu") o.intermediate_activation = xt::IntermediateActivation::ReLU;
        else if (act == "elu") o.intermediate_activation = xt::IntermediateActivation::ELU;
        else throw std::invalid_argument("intermediateActivation must be 'none', 'relu' or 'elu'; got '" + act + "'");
        const auto variant = string_option(options, "variant", "paper");
        if (variant != "paper" && variant != "notebook") throw std::invalid_argument("variant must be 'paper' or 'notebook'; got '" + variant + "'");
        o.notebook_variant = variant == "notebook";
        net_ = xt::make_xception(o);
      } else if (name == "inception_v3") {
        xt::InceptionV3Options o;
        o.num_classes = int_option(options, "numClasses", o.num_classes);
        o.aux_logits = bool_option(options, "auxLogits", o.aux_logits);
        o.transform_input = bool_option(options, "transformInput", o.transform_input);
        o.dropout = number_option(options, "dropout", o.dropout);
        o.init_weights = bool_option(options, "initWeights", o.init_weights);
        net_ = xt::make_inception_v3(o);
      } else {
        throw std::invalid_argument("unknown model '" + name + "' (expected 'xception' or 'inception_v3')");
      }
    });
  }

 private:
  xt::Network& net() {
    if (!net_) throw std::runtime_error("this model was disposed");
    return *net_;
  }

  // Mutations must not race a forward pass that is running on a worker thread.
  void ensure_idle(const char* what) {
    if (busy_.load() > 0) {
      throw std::runtime_error(std::string("cannot ") + what + " while a forward() is running on this model: await it first");
    }
  }

  Napi::Value ParameterCount(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return Napi::Number::New(info.Env(), static_cast<double>(net().parameter_count())); });
  }

  Napi::Value StateDictInfo(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      auto entries = net().state_dict();
      auto out = Napi::Array::New(env, entries.size());
      for (size_t i = 0; i < entries.size(); ++i) {
        auto o = Napi::Object::New(env);
        o.Set("name", entries[i].first);
        o.Set("shape", js_shape(env, entries[i].second.sizes()));
        o.Set("dtype", dtype_name(entries[i].second.scalar_type()));
        out.Set(static_cast<uint32_t>(i), o);
      }
      return out;
    });
  }

  // Copies of every state-dict tensor: [{ name, shape, dtype, data: ArrayBuffer }].
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ensure_idle("read the weights");
      Napi::Env env = info.Env();
      auto entries = net().state_dict();
      auto out = Napi::Array::New(env, entries.size());
      for (size_t i = 0; i < entries.size(); ++i) {
        torch::Tensor t = entries[i].second.detach().to(torch::kCPU).contiguous();
        const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
        auto buffer = Napi::ArrayBuffer::New(env, bytes);
        if (bytes) std::memcpy(buffer.Data(), t.data_ptr(), bytes);
        auto o = Napi::Object::New(env);
        o.Set("name", entries[i].first);
        o.Set("shape", js_shape(env, t.sizes()));
        o.Set("dtype", dtype_name(t.scalar_type()));
        o.Set("data", buffer);
        out.Set(static_cast<uint32_t>(i), o);
      }
      return out;
    });
  }

  // Copies tensors into the state dict: [{ name, dtype, shape, data: Uint8Array }]. Every entry is
  // checked (known name, same shape, right byte count) before any tensor is changed.
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ensure_idle("load weights");
      if (info.Length() < 1 || !info[0].IsArray()) throw std::invalid_argument("setState expects an array of tensors");
      auto entries = info[0].As<Napi::Array>();
      std::unordered_map<std::string, torch::Tensor> state;
      for (auto& kv : net().state_dict()) state.emplace(kv.first, kv.second);

      struct Pending { torch::Tensor target; torch::Tensor source; };
      std::vector<Pending> pending;
      for (uint32_t i = 0; i < entries.Length(); ++i) {
        Napi::Value item = entries[i];
        if (!item.IsObject()) throw std::invalid_argument("setState: each entry must be an object");
        auto o = item.As<Napi::Object>();
        const std::string name = string_option(o, "name", "");
        auto it = state.find(name);
        if (it == state.end()) throw std::invalid_argument("unexpected key '" + name + "' for " + net().display_name());
        const auto type = scalar_type_of(string_option(o, "dtype", ""));
        const auto shape = shape_of(o.Get("shape"));
        if (!o.Get("data").IsTypedArray()) throw std::invalid_argument("setState: data of '" + name + "' must be a Uint8Array");
        auto data = o.Get("data").As<Napi::Uint8Array>();
        const auto expected = it->second.sizes();
        if (!std::equal(shape.begin(), shape.end(), expected.begin(), expected.end())) {
          throw std::invalid_argument("shape mismatch for '" + name + "'");
        }
        int64_t numel = 1;
        for (auto d : shape) numel *= d;
        if (static_cast<int64_t>(data.ByteLength()) != numel * static_cast<int64_t>(c10::elementSize(type))) {
          throw std::invalid_argument("byte length of '" + name + "' does not match its shape and dtype");
        }
        // Copy out of the JS buffer now: it is only guaranteed alive during this call.
        auto source = torch::from_blob(data.Data(), shape, torch::TensorOptions().dtype(type)).clone();
        pending.push_back({it->second, source});
      }
      torch::NoGradGuard no_grad;
      for (auto& p : pending) p.target.copy_(p.source.to(p.target.device(), p.target.scalar_type()));
      return info.Env().Undefined();
    });
  }

  Napi::Value SetTraining(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ensure_idle("switch train/eval mode");
      if (info.Length() < 1 || !info[0].IsBoolean()) throw std::invalid_argument("setTraining expects a boolean");
      net().train(info[0].As<Napi::Boolean>().Value());
      return info.Env().Undefined();
    });
  }

  Napi::Value IsTraining(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return Napi::Boolean::New(info.Env(), net().is_training()); });
  }

  Napi::Value To(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ensure_idle("move the model");
      if (info.Length() < 1 || !info[0].IsString()) throw std::invalid_argument("to() expects a device string");
      const auto device = parse_device(info[0].As<Napi::String>().Utf8Value());
      net().to(device);
      device_ = device;
      return info.Env().Undefined();
    });
  }

  Napi::Value DeviceName(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return Napi::String::New(info.Env(), device_.str()); });
  }

  Napi::Value MinInputSize(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return Napi::Number::New(info.Env(), static_cast<double>(net().min_input_size())); });
  }

  Napi::Value Forward(const Napi::CallbackInfo& info);

  // One row per top-level stage: { name, type, outputShape, parameters }, from a forward pass of a
  // single zero image in eval mode (the mode is restored afterwards).
  Napi::Value Summary(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ensure_idle("summarise");
      Napi::Env env = info.Env();
      const int64_t size = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int64Value() : 299;
      auto& model = net();
      model.check_input_shape({1, 3, size, size});

      struct Row { std::string name, type; std::vector<int64_t> shape; int64_t params; };
      std::vector<Row> rows;
      std::unordered_map<std::string, std::shared_ptr<torch::nn::Module>> children;
      for (const auto& c : model.named_children()) children.emplace(c.key(), c.value());
      xt::StageRecorder record = [&](const std::string& name, const torch::Tensor& out) {
        Row row{name, name, out.sizes().vec(), 0};
        auto it = children.find(name);
        if (it != children.end()) {
          row.type = short_type_name(*it->second);
          for (const auto& p : it->second->parameters()) row.params += p.numel();
        }
        rows.push_back(std::move(row));
      };

      const bool was_training = model.is_training();
      model.eval();
      at::set_num_threads(g_num_threads.load());
      {
        torch::NoGradGuard no_grad;
        model.forward_all(torch::zeros({1, 3, size, size}, torch::TensorOptions().device(device_)), &record);
      }
      model.train(was_training);

      auto out = Napi::Array::New(env, rows.size());
      for (size_t i = 0; i < rows.size(); ++i) {
        auto o = Napi::Object::New(env);
        o.Set("name", rows[i].name);
        o.Set("type", rows[i].type);
        o.Set("outputShape", js_shape(env, rows[i].shape));
        o.Set("parameters", Napi::Number::New(env, static_cast<double>(rows[i].params)));
        out.Set(static_cast<uint32_t>(i), o);
      }
      return out;
    });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    // A running forward() keeps its own reference, so the weights are freed when it finishes.
    net_.reset();
    return info.Env().Undefined();
  }

  friend class ForwardWorker;
  std::shared_ptr<xt::Network> net_;
  torch::Device device_{torch::kCPU};
  std::atomic<int> busy_{0};
};

// Runs a forward pass on a libuv worker thread; resolves with { shape, data: Float32Array }.
class ForwardWorker : public Napi::AsyncWorker {
 public:
  ForwardWorker(Napi::Env env, NativeModel* owner, std::shared_ptr<xt::Network> net, torch::Device device,
                std::vector<float> input, std::vector<int64_t> shape)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        owner_(owner),
        owner_ref_(Napi::Persistent(owner->Value())),
        net_(std::move(net)),
        device_(device),
        input_(std::move(input)),
        shape_(std::move(shape)) {
    owner_->busy_++;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      prepare_worker_thread();
      torch::NoGradGuard no_grad;
      auto x = torch::from_blob(input_.data(), shape_, torch::kFloat).to(device_);
      auto logits = net_->forward_all(x).logits.to(torch::kCPU, torch::kFloat).contiguous();
      out_shape_ = logits.sizes().vec();
      output_.assign(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
    } catch (const std::exception& e) {
      SetError(message_of(e));
    } catch (...) {
      SetError("unknown native error in forward()");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    owner_->busy_--;
    auto data = Napi::Float32Array::New(env, output_.size());
    if (!output_.empty()) std::memcpy(data.Data(), output_.data(), output_.size() * sizeof(float));
    auto result = Napi::Object::New(env);
    result.Set("shape", js_shape(env, out_shape_));
    result.Set("data", data);
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& error) override {
    owner_->busy_--;
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  NativeModel* owner_;
  Napi::ObjectReference owner_ref_;  // keeps the JS wrapper (and so owner_) alive until we finish
  std::shared_ptr<xt::Network> net_;
  torch::Device device_;
  std::vector<float> input_;
  std::vector<int64_t> shape_;
  std::vector<int64_t> out_shape_;
  std::vector<float> output_;
};

Napi::Value NativeModel::Forward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto& model = net();
    if (info.Length() < 2 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw std::invalid_argument("forward expects (data: Float32Array, shape: number[])");
    }
    auto data = info[0].As<Napi::Float32Array>();
    const auto shape = shape_of(info[1]);
    model.check_input_shape(shape);
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    if (numel != static_cast<int64_t>(data.ElementLength())) {
      throw std::invalid_argument("input data has " + std::to_string(data.ElementLength()) +
                                  " values but its shape needs " + std::to_string(numel));
    }
    std::vector<float> input(data.Data(), data.Data() + data.ElementLength());
    auto* worker = new ForwardWorker(info.Env(), this, net_, device_, std::move(input), shape);
    auto promise = worker->Promise();
    worker->Queue();
    return promise;
  });
}

// ---- module functions ------------------------------------------------------------------------

// What the addon was built against and what it sees: { torchVersion, cudaAvailable, ... }.
Napi::Value Info(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto o = Napi::Object::New(env);
    o.Set("torchVersion", std::string(TORCH_VERSION));
    o.Set("torchVersionMajor", TORCH_VERSION_MAJOR);
    o.Set("torchVersionMinor", TORCH_VERSION_MINOR);
    const bool cuda = torch::cuda::is_available();
    o.Set("cudaAvailable", cuda);
    o.Set("cudnnAvailable", cuda && torch::cuda::cudnn_is_available());
    o.Set("cudaDeviceCount", static_cast<double>(cuda ? torch::cuda::device_count() : 0));
    o.Set("threads", g_num_threads.load());
    o.Set("hardwareThreads", static_cast<double>(std::thread::hardware_concurrency()));
    o.Set("parallelInfo", at::get_parallel_info());
    return o;
  });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw std::invalid_argument("setNumThreads expects a number");
    const int64_t n = info[0].As<Napi::Number>().Int64Value();
    if (n < 1 || n > 4096) throw std::invalid_argument("thread count must be between 1 and 4096");
    g_num_threads = static_cast<int>(n);
    at::set_num_threads(static_cast<int>(n));
    return info.Env().Undefined();
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeModel", NativeModel::Define(env));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  return exports;
}

}  // namespace

NODE_API_MODULE(xception_torch, Init)
