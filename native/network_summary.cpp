// Network::summarize(): a forward pass that records what each top-level stage produces and costs,
// through StageRecording (stage.h) and MacCounter (mac_counter.h), so that the models' own
// forward passes stay free of instrumentation.
#include "mac_counter.h"
#include "network.h"

#include <algorithm>
#include <unordered_map>

namespace xt {
namespace {

thread_local StageRecording* current_recording = nullptr;

// "torch::nn::Conv2dImpl" -> "Conv2d", "XceptionBlock" -> "XceptionBlock".
std::string short_type_name(const torch::nn::Module& m) {
  std::string name = m.name();
  const std::string ns = "torch::nn::";
  if (name.rfind(ns, 0) == 0) name = name.substr(ns.size());
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) name.resize(name.size() - 4);
  return name;
}

// Puts the module back in the mode it was in, even when the pass throws.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(torch::nn::Module& module) : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~EvalModeGuard() { module_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

}  // namespace

StageRecording::StageRecording(Callback callback) : callback_(std::move(callback)), previous_(current_recording) {
  current_recording = this;
}

StageRecording::~StageRecording() { current_recording = previous_; }

bool StageRecording::active() { return current_recording != nullptr; }

void StageRecording::report(const torch::nn::Module& stage, const torch::Tensor& output) {
  if (current_recording) current_recording->callback_(stage, output);
}

NetworkSummary Network::summarize(int64_t image_size) {
  check_input_shape({1, 3, image_size, image_size});
  std::unordered_map<const torch::nn::Module*, std::string> names;
  for (const auto& child : named_children()) names.emplace(child.value().get(), child.key());
  const auto training_only = training_only_stages();

  NetworkSummary summary;
  MacCounter counter;
  int64_t counted_before = 0;
  StageRecording recording([&](const torch::nn::Module& stage, const torch::Tensor& output) {
    auto name = names.find(&stage);
    if (name == names.end()) return;  // a Stage inside a child: only top-level ones are rows
    StageSummary row;
    row.name = name->second;
    row.type = short_type_name(stage);
    row.output_shape = output.sizes().vec();
    for (const auto& p : stage.parameters()) row.parameters += p.numel();
    row.macs = counter.total() - counted_before;
    counted_before = counter.total();
    row.training_only = std::find(training_only.begin(), training_only.end(), row.name) != training_only.end();
    if (!row.training_only) summary.eval_macs += row.macs;
    summary.stages.push_back(std::move(row));
  });

  const auto parameters_now = this->parameters();
  const auto device = parameters_now.empty() ? torch::Device(torch::kCPU) : parameters_now.front().device();
  EvalModeGuard eval_mode(*this);
  torch::NoGradGuard no_grad;
  forward_all(torch::zeros({1, 3, image_size, image_size}, torch::TensorOptions().device(device)));
  summary.parameters = parameter_count();
  return summary;
}

}  // namespace xt
