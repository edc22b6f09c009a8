#include "network.h"

#include "autocast.h"
#include "split_pass.h"

#include <sstream>
#include <stdexcept>

namespace xt {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

void collect_state(const torch::nn::Module& module, const std::string& prefix,
                   std::vector<std::pair<std::string, torch::Tensor>>& out) {
  for (const auto& p : module.named_parameters(/*recurse=*/false)) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/false)) out.emplace_back(prefix + b.key(), b.value());
  for (const auto& child : module.named_children()) collect_state(*child.value(), prefix + child.key() + ".", out);
}

}  // namespace

NetworkOutput Network::forward_all(torch::Tensor x) {
  if (is_training()) {
    // BatchNorm's running statistics change in place without moving their version counters.
    folding_.invalidate();
    return forward_impl(std::move(x));
  }
  // Folded weights carry no gradient to the parameters, and summaries show each BatchNorm as a
  // stage of its own: both run the modules as they are.
  if (StageRecording::active() || at::GradMode::is_enabled() || !folding_.enabled()) return forward_impl(std::move(x));
  FoldedInference::Scope folded(folding_);
  const auto format = folded_memory_format(x);
  // Autocast's state is this thread's own and would not reach the helpers: such passes run whole.
  const int parts = cpu_autocast_enabled() ? 1 : split_pass_parts(x);
  if (parts == 1) return forward_impl(x.contiguous(format));
  const bool inference_mode = c10::InferenceMode::is_enabled();
  auto logits = run_split_pass(x, parts, [&](const torch::Tensor& chunk) {
    // The calling thread's grad mode and folded weights, on the helper running this chunk. The
    // chunk changes layout there too: any parallel work on this thread would wake its team, whose
    // threads then spin for a while on the CPUs the helpers need.
    c10::InferenceMode inference(inference_mode);
    torch::NoGradGuard no_grad;
    auto chunk_folded = FoldedInference::Scope::sharing(folded);
    return forward_impl(chunk.contiguous(format)).logits;
  });
  return {logits, torch::Tensor()};
}

void Network::check_input_shape(const std::vector<int64_t>& shape) const {
  const int64_t min = min_input_size();
  bool ok = shape.size() == 4 && shape[0] >= 1 && shape[1] == 3 && shape[2] >= min && shape[3] >= min;
  if (!ok) {
    std::ostringstream msg;
    msg << display_name() << " expects input of shape [N, 3, H, W] with N >= 1 and H, W >= " << min
        << " (for example [1, 3, 299, 299]); got " << shape_text(shape);
    throw std::invalid_argument(msg.str());
  }
}

std::vector<std::pair<std::string, torch::Tensor>> Network::state_dict() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  collect_state(*this, "", out);
  return out;
}

int64_t Network::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

}  // namespace xt
