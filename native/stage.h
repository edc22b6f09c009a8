// A top-level stage of a network, for summaries: models declare the children their forward runs
// one after another as Stage<Holder> (Stage<BasicConv2d> Mixed_5b, ...) and call them as usual.
// The wrapper reports each output to the StageRecording alive on this thread, if any, so the
// models' forward passes carry no instrumentation (PyTorch would use forward hooks; libtorch's
// C++ modules have none).
#pragma once

#include "torch_includes.h"

#include <functional>
#include <utility>

namespace xt {

// While alive, receives the output of every Stage run on this thread (Network::summarize()).
class StageRecording {
 public:
  using Callback = std::function<void(const torch::nn::Module& stage, const torch::Tensor& output)>;
  explicit StageRecording(Callback callback);
  ~StageRecording();
  StageRecording(const StageRecording&) = delete;
  StageRecording& operator=(const StageRecording&) = delete;

  static bool active();
  static void report(const torch::nn::Module& stage, const torch::Tensor& output);

 private:
  Callback callback_;
  StageRecording* previous_;
};

template <class Holder>
class Stage : public Holder {
 public:
  Stage(std::nullptr_t) : Holder(nullptr) {}                     // NOLINT: as the holders themselves
  Stage(Holder holder) : Holder(std::move(holder)) {}            // NOLINT: a holder
  Stage(std::shared_ptr<typename Holder::ContainedType> module)  // NOLINT: register_module's result
      : Holder(std::move(module)) {}

  template <class... Args>
  torch::Tensor operator()(Args&&... args) {
    torch::Tensor output = Holder::operator()(std::forward<Args>(args)...);
    if (StageRecording::active()) StageRecording::report(*this->ptr(), output);
    return output;
  }
};

}  // namespace xt
