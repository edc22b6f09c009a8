// The N-API wrapper of a model (NativeModel): argument checks, then one call into the network
// (native/network.h); forward() and summary() run on a worker thread. Model options arrive as the
// JavaScript object lib/models.ts validated.
#include <memory>
#include <unordered_map>

#include "inception_v3.h"
#include "js_data_copy.h"
#include "malloc_tuning.h"
#include "napi_support.h"
#include "tensor_object.h"
#include "xception.h"

namespace xt::napi {
namespace {

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    auto constructor = DefineClass(env, "NativeModel",
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
                                       InstanceMethod<&NativeModel::ClassifierModules>("classifierModules"),
                                       InstanceMethod<&NativeModel::SetFolding>("setFolding"),
                                       InstanceMethod<&NativeModel::FoldingInfo>("foldingInfo"),
                                       InstanceMethod<&NativeModel::Dispose>("dispose"),
                                   });
    constructor_ = Napi::Persistent(constructor);
    return constructor;
  }

  static NativeModel* from(const Napi::Value& value) {
    return unwrap_instance<NativeModel>(constructor_, value, "a model");
  }

  ModelAccess access() {
    if (!net_) throw std::runtime_error("this model was disposed");
    return ModelAccess{net_, device_, &busy_};
  }

  NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    guarded(info.Env(), [&] {
      if (info.Length() < 1 || !info[0].IsString()) throw std::invalid_argument("model name must be a string");
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      Napi::Object options =
          info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
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
        if (variant != "paper" && variant != "notebook")
          throw std::invalid_argument("variant must be 'paper' or 'notebook'; got '" + variant + "'");
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
      memory_ = std::make_unique<ExternalMemory>(info.Env(), tensor_bytes(net_->state_dict()));
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
      throw std::runtime_error(std::string("cannot ") + what +
                               " while a forward() or a training job is running on this model: await it first");
    }
  }

  Napi::Value ParameterCount(const Napi::CallbackInfo& info) {
    return guarded(info.Env(),
                   [&] { return Napi::Number::New(info.Env(), static_cast<double>(net().parameter_count())); });
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

  // Copies of every state-dict tensor: [{ name, shape, dtype, data: ArrayBuffer }]. getState(true)
  // shares the tensors' memory instead (tensor_object), for a file written before the weights change.
  Napi::Value GetState(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ensure_idle("read the weights");
      Napi::Env env = info.Env();
      const bool share = share_requested(info);
      auto entries = net().state_dict();
      auto out = Napi::Array::New(env, entries.size());
      for (size_t i = 0; i < entries.size(); ++i)
        out.Set(static_cast<uint32_t>(i), tensor_object(env, entries[i].first, entries[i].second, share));
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

      struct Pending {
        torch::Tensor target;
        torch::Tensor source;
      };
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
        if (!o.Get("data").IsTypedArray())
          throw std::invalid_argument("setState: data of '" + name + "' must be a Uint8Array");
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

  // classifierModules() -> string[]: the state-dict prefixes of the classifier ('fc', ...).
  Napi::Value ClassifierModules(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const auto modules = net().classifier_modules();
      auto out = Napi::Array::New(info.Env(), modules.size());
      for (size_t i = 0; i < modules.size(); ++i) out.Set(static_cast<uint32_t>(i), modules[i]);
      return out;
    });
  }

  Napi::Value MinInputSize(const Napi::CallbackInfo& info) {
    return guarded(info.Env(),
                   [&] { return Napi::Number::New(info.Env(), static_cast<double>(net().min_input_size())); });
  }

  Napi::Value Forward(const Napi::CallbackInfo& info);

  // setFolding(enabled): whether eval passes fold each BatchNorm into its convolution.
  Napi::Value SetFolding(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ensure_idle("switch BatchNorm folding");
      if (info.Length() < 1 || !info[0].IsBoolean()) throw std::invalid_argument("setFolding expects a boolean");
      net().folding().set_enabled(info[0].As<Napi::Boolean>().Value());
      return info.Env().Undefined();
    });
  }

  // foldingInfo() -> { enabled, pairs, refreshes }: the conv -> BatchNorm pairs eval passes fold
  // and how many times their folded copy was computed.
  Napi::Value FoldingInfo(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto& folding = net().folding();
      auto o = Napi::Object::New(info.Env());
      o.Set("enabled", folding.enabled());
      o.Set("pairs", static_cast<double>(folding.size()));
      o.Set("refreshes", static_cast<double>(folding.refreshes()));
      return o;
    });
  }

  // summary(imageSize) -> Promise<{ layers: [{ name, type, outputShape, parameters, macs,
  // trainingOnly }], parameters, macs }>: Network::summarize() on a worker thread.
  Napi::Value Summary(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ensure_idle("summarise");
      if (info.Length() < 1 || !info[0].IsNumber()) throw std::invalid_argument("summary expects an image size");
      const int64_t size = info[0].As<Napi::Number>().Int64Value();
      net().check_input_shape({1, 3, size, size});
      auto net = net_;
      busy_++;  // summarize() switches the model to eval mode and back
      return AsyncTask::Start(
          info.Env(),
          [net, size]() -> AsyncTask::Finish {
            auto summary = std::make_shared<xt::NetworkSummary>(net->summarize(size));
            return [summary](Napi::Env env) -> Napi::Value {
              auto layers = Napi::Array::New(env, summary->stages.size());
              for (size_t i = 0; i < summary->stages.size(); ++i) {
                const auto& stage = summary->stages[i];
                auto o = Napi::Object::New(env);
                o.Set("name", stage.name);
                o.Set("type", stage.type);
                o.Set("outputShape", js_shape(env, stage.output_shape));
                o.Set("parameters", Napi::Number::New(env, static_cast<double>(stage.parameters)));
                o.Set("macs", Napi::Number::New(env, static_cast<double>(stage.macs)));
                o.Set("trainingOnly", stage.training_only);
                layers.Set(static_cast<uint32_t>(i), o);
              }
              auto result = Napi::Object::New(env);
              result.Set("layers", layers);
              result.Set("parameters", Napi::Number::New(env, static_cast<double>(summary->parameters)));
              result.Set("macs", Napi::Number::New(env, static_cast<double>(summary->eval_macs)));
              return result;
            };
          },
          [this] { busy_--; }, Value());
    });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    // A running forward() keeps its own reference, so the weights are freed when it finishes; a
    // NativeTrainer keeps one until it is disposed.
    net_.reset();
    memory_.reset();
    xt::release_free_memory();
    return info.Env().Undefined();
  }

  static Napi::FunctionReference constructor_;
  std::shared_ptr<xt::Network> net_;
  std::unique_ptr<ExternalMemory> memory_;
  torch::Device device_{torch::kCPU};
  std::atomic<int> busy_{0};
};

Napi::FunctionReference NativeModel::constructor_;

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
    // Copy the input now: the JS buffer may change or be collected while the worker runs. The
    // task holds its own reference to the network, so dispose() cannot free it mid-pass.
    auto input = xt::copy_of_js_data(data.Data(), shape, torch::kFloat);
    auto net = net_;
    const auto device = device_;
    busy_++;
    return AsyncTask::Start(
        info.Env(),
        [net, device, input]() -> AsyncTask::Finish {
          c10::InferenceMode inference;
          auto logits = net->forward_all(input.to(device)).logits.to(torch::kCPU, torch::kFloat).contiguous();
          return [logits](Napi::Env env) -> Napi::Value {
            auto result = Napi::Object::New(env);
            result.Set("shape", js_shape(env, logits.sizes()));
            result.Set("data", float32_array(env, logits));
            return result;
          };
        },
        [this] { busy_--; }, Value());
  });
}

}  // namespace

Napi::Function define_native_model(Napi::Env env) { return NativeModel::Define(env); }

ModelAccess model_access(const Napi::Value& value) { return NativeModel::from(value)->access(); }

}  // namespace xt::napi
