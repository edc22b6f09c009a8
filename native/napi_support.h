// Shared N-API plumbing of the addon's surface files (addon*.cpp): argument
// helpers, error translation (an exception escaping into N-API would abort Node), and AsyncTask,
// which runs libtorch work on a libuv worker thread and settles a promise on the JS thread.
#pragma once

#include <napi.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <cstring>
#include <vector>

#include "compute_thread.h"
#include "data.h"
#include "distributed_group.h"
#include "error_text.h"
#include "fed_batches.h"
#include "network.h"
#include "torch_includes.h"

namespace xt::napi {

// ---- errors -------------------------------------------------------------------------------

// User-facing text of an exception: c10 errors without their C++ backtrace.
inline std::string message_of(const std::exception& e) { return xt::error_text(e); }

// What went wrong, kept from the throw on a worker thread to the JavaScript error: the caller's
// input (std::invalid_argument -> RangeError, code XT_INVALID_ARGUMENT), the device running out of
// memory (code XT_OUT_OF_MEMORY), or any other failure at run time (code XT_RUNTIME). lib/ maps
// the first to usage errors (exit 2) and the others to runtime failures (exit 1).
enum class ErrorKind { InvalidArgument, OutOfMemory, Runtime };

struct NativeFailure {
  ErrorKind kind = ErrorKind::Runtime;
  std::string message;
};

inline NativeFailure failure_of_current_exception() {
  try {
    throw;
  } catch (const std::invalid_argument& e) {
    return {ErrorKind::InvalidArgument, e.what()};
  } catch (const c10::OutOfMemoryError& e) {
    return {ErrorKind::OutOfMemory, e.what_without_backtrace()};
  } catch (const std::bad_alloc&) {
    return {ErrorKind::OutOfMemory, "out of memory (std::bad_alloc)"};
  } catch (const std::exception& e) {
    // libtorch's CPU allocator reports a failed allocation as a plain c10::Error.
    const auto message = message_of(e);
    if (message.find("not enough memory") != std::string::npos ||
        message.find("can't allocate memory") != std::string::npos) {
      return {ErrorKind::OutOfMemory, message};
    }
    return {ErrorKind::Runtime, message};
  } catch (...) {
    return {ErrorKind::Runtime, "unknown native error"};
  }
}

inline Napi::Error js_error(Napi::Env env, const NativeFailure& f) {
  auto error =
      f.kind == ErrorKind::InvalidArgument ? Napi::RangeError::New(env, f.message) : Napi::Error::New(env, f.message);
  const char* code = f.kind == ErrorKind::InvalidArgument ? "XT_INVALID_ARGUMENT"
                     : f.kind == ErrorKind::OutOfMemory   ? "XT_OUT_OF_MEMORY"
                                                          : "XT_RUNTIME";
  error.Set("code", Napi::String::New(env, code));
  return error;
}

// Runs `body`, rethrowing any C++ exception as a JavaScript error of its kind.
template <typename Body>
auto guarded(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw js_error(env, failure_of_current_exception());
  }
}

// Native memory a wrapped object holds, reported to V8 (napi_adjust_external_memory) for as long
// as this lives, so that a dropped object is collected as soon as its size warrants.
class ExternalMemory {
 public:
  ExternalMemory(Napi::Env env, int64_t bytes) : env_(env), bytes_(bytes) {
    Napi::MemoryManagement::AdjustExternalMemory(env_, bytes_);
  }
  ExternalMemory(const ExternalMemory&) = delete;
  ExternalMemory& operator=(const ExternalMemory&) = delete;
  ~ExternalMemory() { Napi::MemoryManagement::AdjustExternalMemory(env_, -bytes_); }

 private:
  Napi::Env env_;
  int64_t bytes_;
};

inline int64_t tensor_bytes(const torch::Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size()) : 0;
}

// The bytes of named tensors (a state dict, an optimizer's state).
inline int64_t tensor_bytes(const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  int64_t bytes = 0;
  for (const auto& kv : named) bytes += tensor_bytes(kv.second);
  return bytes;
}

// ---- argument helpers ------------------------------------------------------------------------

inline int64_t int_option(const Napi::Object& o, const char* key, int64_t fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsNumber()) throw std::invalid_argument(std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    throw std::invalid_argument(std::string(key) + " must be an integer");
  return static_cast<int64_t>(d);
}

// `v` as a typed array of `type`, or std::invalid_argument(what).
template <typename T>
T typed_array_arg(const Napi::Value& v, napi_typedarray_type type, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) throw std::invalid_argument(what);
  return v.As<T>();
}

inline double number_option(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsNumber()) throw std::invalid_argument(std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline bool bool_option(const Napi::Object& o, const char* key, bool fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsBoolean()) throw std::invalid_argument(std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline std::string string_option(const Napi::Object& o, const char* key, const std::string& fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  auto v = o.Get(key);
  if (!v.IsString()) throw std::invalid_argument(std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

inline std::vector<int64_t> shape_of(const Napi::Value& value) {
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

inline Napi::Array js_shape(Napi::Env env, at::IntArrayRef sizes) {
  auto arr = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(sizes[i])));
  return arr;
}

// safetensors dtype names <-> libtorch scalar types.
inline at::ScalarType scalar_type_of(const std::string& dtype) {
  if (dtype == "F32") return at::kFloat;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "BF16") return at::kBFloat16;
  if (dtype == "F64") return at::kDouble;
  if (dtype == "I64") return at::kLong;
  throw std::invalid_argument("unsupported tensor dtype '" + dtype + "' (supported: F32, F16, BF16, F64, I64)");
}

inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kDouble: return "F64";
    case at::kLong: return "I64";
    default: throw std::runtime_error(std::string("no safetensors name for dtype ") + c10::toString(t));
  }
}

inline torch::Device parse_device(const std::string& text) {
  if (text == "cpu") return torch::Device(torch::kCPU);
  if (text.rfind("cuda", 0) != 0)
    throw std::invalid_argument("device must be 'cpu', 'cuda' or 'cuda:N'; got '" + text + "'");
  torch::Device device(torch::kCUDA);
  try {
    device = torch::Device(text);
  } catch (const std::exception&) {
    throw std::invalid_argument("device must be 'cpu', 'cuda' or 'cuda:N'; got '" + text + "'");
  }
  if (!torch::cuda::is_available()) {
    throw std::runtime_error("device '" + text + "' was requested but CUDA is not available: this libtorch (" +
                             std::string(TORCH_VERSION) +
                             ") has no CUDA support or no GPU is visible. Use device 'cpu'.");
  }
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count) {
    throw std::invalid_argument("device '" + text + "' does not exist: " + std::to_string(count) +
                                " CUDA device(s) visible");
  }
  return device;
}

// ---- async work -------------------------------------------------------------------------------

// Runs `work` off the JS thread: on the compute thread (Start, with libtorch's thread count set
// there) or on a libuv worker (StartOnPool). `work` returns the function that builds the JS result,
// which runs back on the JS thread; a C++ exception rejects the promise with its message. `done`
// runs on the JS thread either way.
class AsyncTask : public Napi::AsyncWorker {
 public:
  using Finish = std::function<Napi::Value(Napi::Env)>;
  using Work = std::function<Finish()>;

  AsyncTask(Napi::Env env, Work work, std::function<void()> done = {})
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)) {}

  // Queues the task and returns its promise; `owner` (a wrapped native object whose members
  // `done` touches) is kept alive until the task settles. Napi::AsyncWorker deletes itself when
  // it completes.
  // `work` runs on the compute thread (native/compute_thread.h), one task at a time: everything
  // that runs libtorch kernels (passes, training, evaluation, batches).
  static Napi::Promise Start(Napi::Env env, Work work, std::function<void()> done = {},
                             Napi::Object owner = Napi::Object()) {
    auto* task = new AsyncTask(env, std::move(work), std::move(done));
    task->on_compute_thread_ = true;
    return queue(task, owner);
  }

  // `work` runs on the libuv thread itself, several at a time: work without libtorch's parallel
  // kernels (image decoding and resizing, the process group's small collectives and rendezvous).
  static Napi::Promise StartOnPool(Napi::Env env, Work work, std::function<void()> done = {},
                                   Napi::Object owner = Napi::Object()) {
    return queue(new AsyncTask(env, std::move(work), std::move(done)), owner);
  }

 protected:
  void Execute() override {
    try {
      if (on_compute_thread_) {
        run_on_compute_thread([this] {
          prepare_worker_thread();
          finish_ = work_();
        });
      } else {
        finish_ = work_();
      }
    } catch (...) {
      failure_ = failure_of_current_exception();
      SetError(failure_.message);
    }
  }

  void OnOK() override {
    if (done_) done_();
    try {
      deferred_.Resolve(finish_(Env()));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(js_error(Env(), failure_of_current_exception()).Value());
    }
  }

  // The error is rebuilt from the failure kept in Execute (AsyncWorker's own keeps only the text).
  void OnError(const Napi::Error&) override {
    if (done_) done_();
    deferred_.Reject(js_error(Env(), failure_).Value());
  }

 private:
  static Napi::Promise queue(AsyncTask* task, Napi::Object owner) {
    if (!owner.IsEmpty()) task->keep_alive_ = Napi::Persistent(owner);
    auto promise = task->deferred_.Promise();
    task->Queue();
    return promise;
  }

  Napi::Promise::Deferred deferred_;
  Work work_;
  std::function<void()> done_;
  bool on_compute_thread_ = false;
  Finish finish_;
  NativeFailure failure_;
  Napi::ObjectReference keep_alive_;
};

// Whether `value` was made by `constructor`.
inline bool is_instance(const Napi::FunctionReference& constructor, const Napi::Value& value) {
  return value.IsObject() && !constructor.IsEmpty() && value.As<Napi::Object>().InstanceOf(constructor.Value());
}

// The wrapped native object behind `value` if it was made by `constructor`; otherwise a clear error
// (napi_unwrap on a foreign object would not be one).
template <typename Wrapped>
Wrapped* unwrap_instance(const Napi::FunctionReference& constructor, const Napi::Value& value, const char* expected) {
  if (!is_instance(constructor, value)) throw std::invalid_argument(std::string("expected ") + expected);
  return Napi::ObjectWrap<Wrapped>::Unwrap(value.As<Napi::Object>());
}

// A typed array (Int32Array for int32_t, Float64Array for double, Uint8Array for uint8_t, ...)
// holding a copy of `t`, converted to T on the CPU.
template <typename T>
Napi::TypedArrayOf<T> typed_array_copy(Napi::Env env, const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, c10::CppTypeToScalarType<T>::value).contiguous();
  auto out = Napi::TypedArrayOf<T>::New(env, static_cast<size_t>(c.numel()));
  if (c.numel()) std::memcpy(out.Data(), c.template data_ptr<T>(), static_cast<size_t>(c.numel()) * sizeof(T));
  return out;
}

// A Float32Array over a float tensor's memory, without a copy: the ArrayBuffer keeps the tensor
// alive and releases it when collected (its size is reported to V8 so GC sees the pressure).
inline Napi::Float32Array float32_array(Napi::Env env, const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kFloat).contiguous();
  const size_t count = static_cast<size_t>(c.numel());
  if (count == 0) return Napi::Float32Array::New(env, 0);
  const auto bytes = static_cast<int64_t>(count * sizeof(float));
  auto* owner = new torch::Tensor(c);
  auto buffer = Napi::ArrayBuffer::New(
      env, c.data_ptr<float>(), static_cast<size_t>(bytes),
      [bytes](Napi::Env finalizer_env, void*, torch::Tensor* tensor) {
        delete tensor;
        Napi::MemoryManagement::AdjustExternalMemory(finalizer_env, -bytes);
      },
      owner);
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::Float32Array::New(env, count, buffer, 0);
}

// A model as the trainer sees it: the network, its device, and the counter that keeps the model
// from being changed while work runs on it (defined in addon_model.cpp).
struct ModelAccess {
  std::shared_ptr<xt::Network> net;
  torch::Device device;
  std::atomic<int>* busy;
};
ModelAccess model_access(const Napi::Value& value);  // throws unless value is a NativeModel
Napi::Function define_native_model(Napi::Env env);

// Defined in addon_data.cpp.
Napi::Function define_native_dataset(Napi::Env env);
std::shared_ptr<xt::ImageStore> image_store_of(const Napi::Value& value);  // throws unless a NativeDataset
// Preprocessing options { resize, evalResize, crop, flip, mean, std, strategy } (undefined: defaults).
xt::Preprocessing preprocessing_of(const Napi::Value& value);

// Defined in addon_feed.cpp: NativeBatchFeed, the hand-off of batches decoded in JavaScript.
Napi::Function define_native_batch_feed(Napi::Env env);
std::shared_ptr<xt::FedBatches> batch_feed_of(const Napi::Value& value);  // throws unless a NativeBatchFeed
bool is_batch_feed(const Napi::Value& value);

// Defined in addon_images.cpp: decodeJpeg, resampleRgb and jpegDecoder (whether libjpeg is built in).
void define_images(Napi::Env env, Napi::Object exports);

// Defined in addon_training.cpp.
Napi::Function define_native_trainer(Napi::Env env);
Napi::Function define_benchmark_steps(Napi::Env env);

// Defined in addon_distributed.cpp: NativeProcessGroup, createProcessGroup, shardIndices.
void define_distributed(Napi::Env env, Napi::Object exports);
std::shared_ptr<xt::DistributedGroup> process_group_of(const Napi::Value& value);  // throws unless a NativeProcessGroup

// Defined in addon_test_hooks.cpp: adamStep and gradScalerStep, for the optimizer parity tests.
void define_test_hooks(Napi::Env env, Napi::Object exports);

}  // namespace xt::napi
