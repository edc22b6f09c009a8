#include "mac_counter.h"

#include <cstring>

namespace xt {
namespace {

thread_local MacCounter* innermost = nullptr;
thread_local int inside_counted_op = 0;  // aten::linear lowers to aten::addmm: count it once

bool is_conv_or_linear(const char* name) {
  return std::strcmp(name, "aten::convolution") == 0 || std::strcmp(name, "aten::linear") == 0;
}

std::unique_ptr<at::ObserverContext> on_op_start(const at::RecordFunction& op) {
  if (is_conv_or_linear(op.name())) inside_counted_op++;
  return nullptr;
}

}  // namespace

MacCounter::MacCounter() : previous_(innermost) {
  // One callback per thread however deep the nesting: the outermost counter owns it.
  if (!previous_) {
    callback_ = at::addThreadLocalCallback(at::RecordFunctionCallback(&on_op_start, &MacCounter::on_op_end)
                                               .needsInputs(true)
                                               .needsOutputs(true)
                                               .scopes({at::RecordScope::FUNCTION}));
  }
  innermost = this;
}

MacCounter::~MacCounter() {
  innermost = previous_;
  if (callback_) at::removeCallback(callback_);
}

void MacCounter::on_op_end(const at::RecordFunction& op, at::ObserverContext*) {
  const char* name = op.name();
  const bool counted_op = is_conv_or_linear(name);
  if (counted_op) inside_counted_op--;
  // libtorch 1.13's functional linear calls addmm(bias, x, weight.t()) itself, without aten::linear.
  const bool bare_addmm = !counted_op && inside_counted_op == 0 && std::strcmp(name, "aten::addmm") == 0;
  if (!counted_op && !bare_addmm) return;
  const auto inputs = op.inputs();
  const auto& outputs = op.outputs();
  if (inputs.size() < 2 || outputs.empty() || !inputs[1].isTensor() || !outputs[0].isTensor()) return;
  // Each output value costs one multiply-accumulate per weight element behind it: conv weight
  // [out, in / groups, kh, kw] and linear weight [out, in] come second; addmm's second input is
  // the activations [N, in].
  const auto& second = inputs[1].toTensor();
  int64_t per_output = 1;
  if (bare_addmm) {
    per_output = second.size(-1);
  } else {
    for (int64_t d = 1; d < second.dim(); ++d) per_output *= second.size(d);
  }
  const int64_t macs = outputs[0].toTensor().numel() * per_output;
  for (auto* counter = innermost; counter; counter = counter->previous_) counter->total_ += macs;
}

}  // namespace xt
