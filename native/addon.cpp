// The addon's entry point: the module functions (build and runtime info, threads, seeds, CUDA
// memory) and Init, which gathers the wrapped classes from their files: models (addon_model.cpp),
// datasets (addon_data.cpp), training (addon_training.cpp), process groups (addon_distributed.cpp)
// and the test hooks (addon_test_hooks.cpp).
#include "cuda_support.h"
#include "malloc_tuning.h"
#include "napi_support.h"
#include "network.h"
#include "onednn_conv.h"
#include "pointwise_matmul.h"
#include "split_pass.h"

#include <string>

namespace xt {
class TrainingSession;  // counted by LiveCount (training.h); only its count is read here
}  // namespace xt

namespace xt::napi {
namespace {

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
    o.Set("builtWithCuda", built_with_cuda());
    // Versions as libtorch encodes them: CUDA 12040 = 12.4, cuDNN 90100 = 9.1.0.
    if (cuda) o.Set("cudaRuntimeVersion", static_cast<double>(at::globalContext().versionCUDART()));
    if (cuda && at::globalContext().hasCuDNN())
      o.Set("cudnnVersion", static_cast<double>(at::globalContext().versionCuDNN()));
    if (auto gpu = cuda_device_info(0)) {
      auto g = Napi::Object::New(env);
      g.Set("name", gpu->name);
      g.Set("totalMemory", static_cast<double>(gpu->total_memory));
      g.Set("computeCapability", std::to_string(gpu->major) + "." + std::to_string(gpu->minor));
      o.Set("gpu", g);
    }
    // The oneDNN folded eval passes call directly ("" where the addon was built without it), and
    // whether they do now.
    o.Set("onednnVersion", xt::onednn_version());
    o.Set("onednnInference", xt::onednn_inference_enabled());
    o.Set("splitInference", xt::split_passes_enabled());
    o.Set("splitPasses", static_cast<double>(xt::split_passes_run()));
    o.Set("pointwiseMatmul", xt::pointwise_matmul_enabled());
    o.Set("pointwiseMatmulCalls", static_cast<double>(xt::pointwise_matmul_calls()));
    const auto& heap = xt::tune_malloc();
    auto malloc_settings = Napi::Object::New(env);
    malloc_settings.Set("mode", heap.mode);
    if (heap.mmap_threshold) malloc_settings.Set("mmapThreshold", static_cast<double>(heap.mmap_threshold));
    if (heap.trim_threshold) malloc_settings.Set("trimThreshold", static_cast<double>(heap.trim_threshold));
    if (heap.top_pad) malloc_settings.Set("topPad", static_cast<double>(heap.top_pad));
    o.Set("malloc", malloc_settings);
    o.Set("threads", g_num_threads.load());
    o.Set("hardwareThreads", static_cast<double>(std::thread::hardware_concurrency()));
    o.Set("parallelInfo", at::get_parallel_info());
    auto backends = xt::distributed_backends();
    auto names = Napi::Array::New(env, backends.size());
    for (size_t i = 0; i < backends.size(); ++i) names.Set(static_cast<uint32_t>(i), backends[i]);
    o.Set("distributedBackends", names);
    if (backends.empty()) o.Set("distributedMissing", xt::distributed_missing_reason("gloo"));
    auto live = Napi::Object::New(env);
    live.Set("networks", static_cast<double>(xt::LiveCount<xt::Network>::alive()));
    live.Set("datasets", static_cast<double>(xt::LiveCount<xt::ImageStore>::alive()));
    live.Set("trainingSessions", static_cast<double>(xt::LiveCount<xt::TrainingSession>::alive()));
    live.Set("processGroups", static_cast<double>(xt::LiveCount<xt::DistributedGroup>::alive()));
    o.Set("liveNativeObjects", live);
    return o;
  });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw std::invalid_argument("setNumThreads expects a number");
    const int64_t n = info[0].As<Napi::Number>().Int64Value();
    if (n < 1 || n > 4096) throw std::invalid_argument("thread count must be between 1 and 4096");
    // Applied by the compute thread before its next task; the JS thread keeps one thread
    // (keep_js_thread_single_threaded).
    g_num_threads = static_cast<int>(n);
    return info.Env().Undefined();
  });
}

// Seeds libtorch's default generators (CPU and CUDA): weight initialisation draws from them.
Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw std::invalid_argument("manualSeed expects a number");
    const double seed = info[0].As<Napi::Number>().DoubleValue();
    if (seed < 0 || seed != static_cast<double>(static_cast<int64_t>(seed)))
      throw std::invalid_argument("the seed must be a non-negative integer");
    torch::manual_seed(static_cast<uint64_t>(seed));
    return info.Env().Undefined();
  });
}

int device_index_of(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || info[0].IsUndefined()) return 0;
  if (!info[0].IsNumber()) throw std::invalid_argument("the CUDA device index must be a number");
  const int64_t index = info[0].As<Napi::Number>().Int64Value();
  if (index < 0 || index >= std::max<int64_t>(1, static_cast<int64_t>(torch::cuda::device_count()))) {
    throw std::invalid_argument("no CUDA device " + std::to_string(index));
  }
  return static_cast<int>(index);
}

// cudaMemoryStats(device = 0) -> { allocated, peakAllocated, reserved, peakReserved } in bytes
// (torch.cuda.memory_allocated and friends), or null without CUDA.
Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto stats = cuda_memory_stats(device_index_of(info));
    if (!stats) return info.Env().Null();
    auto o = Napi::Object::New(info.Env());
    o.Set("allocated", static_cast<double>(stats->allocated));
    o.Set("peakAllocated", static_cast<double>(stats->peak_allocated));
    o.Set("reserved", static_cast<double>(stats->reserved));
    o.Set("peakReserved", static_cast<double>(stats->peak_reserved));
    return o;
  });
}

Napi::Value ResetCudaPeakMemory(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    reset_cuda_peak_memory(device_index_of(info));
    return info.Env().Undefined();
  });
}

// Exports `name(on)`, a module function that passes its one boolean argument to `set`.
void export_boolean_setter(Napi::Env env, Napi::Object exports, const char* name, void (*set)(bool)) {
  exports.Set(name, Napi::Function::New(
                        env,
                        [name, set](const Napi::CallbackInfo& info) {
                          return guarded(info.Env(), [&]() -> Napi::Value {
                            if (info.Length() < 1 || !info[0].IsBoolean()) {
                              throw std::invalid_argument(std::string(name) + " expects a boolean");
                            }
                            set(info[0].As<Napi::Boolean>().Value());
                            return info.Env().Undefined();
                          });
                        },
                        name));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  keep_js_thread_single_threaded();
  xt::tune_malloc();  // before the first tensor is allocated
  exports.Set("NativeModel", define_native_model(env));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed));
  exports.Set("cudaMemoryStats", Napi::Function::New(env, CudaMemory));
  exports.Set("resetCudaPeakMemory", Napi::Function::New(env, ResetCudaPeakMemory));
  // TF32 tensor cores for float32 convolutions and matrix products (on by default for cuDNN, as
  // torch.backends.cudnn.allow_tf32). Off gives true float32 arithmetic.
  export_boolean_setter(env, exports, "setAllowTF32", [](bool allow) {
    at::globalContext().setAllowTF32CuDNN(allow);
    at::globalContext().setAllowTF32CuBLAS(allow);
  });
  // Whether folded eval passes run their convolutions on oneDNN directly (native/onednn_conv.h) or
  // through libtorch, for comparisons. No effect in a build without oneDNN.
  export_boolean_setter(env, exports, "setOnednnInference", xt::set_onednn_inference);
  // Whether eval passes on the CPU split by batch over single-threaded helpers (native/split_pass.h)
  // or run whole on the intra-op threads, for comparisons.
  export_boolean_setter(env, exports, "setSplitInference", xt::set_split_passes);
  // Whether training passes on the CPU run 1x1 convolutions as oneDNN matrix products
  // (native/pointwise_matmul.h) or as libtorch's convolutions, for comparisons.
  export_boolean_setter(env, exports, "setPointwiseMatmul", xt::set_pointwise_matmul);
  exports.Set("NativeDataset", define_native_dataset(env));
  exports.Set("NativeBatchFeed", define_native_batch_feed(env));
  define_images(env, exports);
  exports.Set("NativeTrainer", define_native_trainer(env));
  exports.Set("benchmarkSteps", define_benchmark_steps(env));
  define_distributed(env, exports);
  define_test_hooks(env, exports);
  return exports;
}

}  // namespace

}  // namespace xt::napi

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return xt::napi::Init(env, exports); }
NODE_API_MODULE(xception_torch, InitAddon)
