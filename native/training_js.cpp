#include "training_js.h"

#include <cmath>

namespace xt::napi {

AmpMode amp_of(const std::string& text) {
  if (text == "off") return AmpMode::Off;
  if (text == "fp16") return AmpMode::FP16;
  if (text == "bf16") return AmpMode::BF16;
  throw std::invalid_argument("amp must be 'off', 'fp16' or 'bf16'; got '" + text + "'");
}

TrainConfig train_config_of(const Napi::Object& o) {
  TrainConfig c;
  c.batch_size = int_option(o, "batchSize", c.batch_size);
  c.epochs = int_option(o, "epochs", c.epochs);
  c.optimizer.lr = number_option(o, "lr", c.optimizer.lr);
  c.optimizer.beta1 = number_option(o, "beta1", c.optimizer.beta1);
  c.optimizer.beta2 = number_option(o, "beta2", c.optimizer.beta2);
  c.optimizer.eps = number_option(o, "eps", c.optimizer.eps);
  c.optimizer.weight_decay = number_option(o, "weightDecay", c.optimizer.weight_decay);
  const auto optimizer = string_option(o, "optimizer", "adam");
  if (optimizer != "adam" && optimizer != "adamw") throw std::invalid_argument("optimizer must be 'adam' or 'adamw'");
  c.optimizer.decoupled_weight_decay = optimizer == "adamw";
  const auto schedule = string_option(o, "schedule", "constant");
  if (schedule != "constant" && schedule != "cosine")
    throw std::invalid_argument("schedule must be 'constant' or 'cosine'");
  c.cosine_schedule = schedule == "cosine";
  c.label_smoothing = number_option(o, "labelSmoothing", c.label_smoothing);
  c.aux_loss_weight = number_option(o, "auxLossWeight", c.aux_loss_weight);
  c.amp = amp_of(string_option(o, "amp", "off"));
  c.seed = static_cast<uint64_t>(int_option(o, "seed", 0));
  c.channels_last = bool_option(o, "channelsLast", c.channels_last);
  c.cudnn_benchmark = bool_option(o, "cudnnBenchmark", c.cudnn_benchmark);
  c.fused_adam = bool_option(o, "fusedAdam", c.fused_adam);
  c.freeze_backbone = bool_option(o, "freezeBackbone", c.freeze_backbone);
  c.progress_every = std::max<int64_t>(1, int_option(o, "progressEvery", c.progress_every));
  if (o.Has("scaler") && o.Get("scaler").IsObject()) {
    auto s = o.Get("scaler").As<Napi::Object>();
    c.scaler.enabled = bool_option(s, "enabled", c.scaler.enabled);
    c.scaler.init_scale = number_option(s, "initScale", c.scaler.init_scale);
    c.scaler.growth_factor = number_option(s, "growthFactor", c.scaler.growth_factor);
    c.scaler.backoff_factor = number_option(s, "backoffFactor", c.scaler.backoff_factor);
    c.scaler.growth_interval = int_option(s, "growthInterval", c.scaler.growth_interval);
  } else {
    c.scaler.enabled = false;
  }
  if (o.Has("preprocessing")) c.preprocessing = preprocessing_of(o.Get("preprocessing"));
  if (c.label_smoothing < 0 || c.label_smoothing >= 1) throw std::invalid_argument("labelSmoothing must be in [0, 1)");
  if (c.aux_loss_weight < 0) throw std::invalid_argument("auxLossWeight must be >= 0");
  return c;
}

Napi::Object epoch_object(Napi::Env env, const EpochResult& r) {
  auto o = Napi::Object::New(env);
  o.Set("completed", r.completed);
  o.Set("images", static_cast<double>(r.images));
  o.Set("batches", static_cast<double>(r.batches));
  o.Set("loss", r.loss);
  o.Set("accuracy", r.accuracy);
  o.Set("seconds", r.seconds);
  o.Set("lr", r.lr);
  o.Set("lossScale", r.scale);
  o.Set("skippedSteps", static_cast<double>(r.skipped_steps));
  o.Set("fusedAdam", r.fused_adam);
  if (r.diverged_batch >= 0) o.Set("divergedBatch", static_cast<double>(r.diverged_batch));
  o.Set("exposedCommunicationSeconds", r.exposed_communication_seconds);
  return o;
}

Napi::Object position_object(Napi::Env env, const EpochPosition& pos) {
  auto p = Napi::Object::New(env);
  p.Set("epoch", static_cast<double>(pos.epoch));
  p.Set("nextBatch", static_cast<double>(pos.next_batch));
  p.Set("lossSum", pos.loss_sum);
  p.Set("correct", static_cast<double>(pos.correct));
  p.Set("seen", static_cast<double>(pos.seen));
  p.Set("pendingLoss", pos.pending_loss);
  p.Set("pendingCorrect", static_cast<double>(pos.pending_correct));
  p.Set("seconds", pos.seconds);
  return p;
}

EpochPosition position_of(const Napi::Object& p, int64_t batches) {
  EpochPosition pos;
  pos.epoch = int_option(p, "epoch", 0);
  pos.next_batch = int_option(p, "nextBatch", 0);
  pos.loss_sum = number_option(p, "lossSum", 0);
  pos.correct = int_option(p, "correct", 0);
  pos.seen = int_option(p, "seen", 0);
  pos.pending_loss = number_option(p, "pendingLoss", 0);
  pos.pending_correct = int_option(p, "pendingCorrect", 0);
  pos.seconds = number_option(p, "seconds", 0);
  if (pos.epoch < 0)
    throw std::invalid_argument("setState: position.epoch must be >= 0; got " + std::to_string(pos.epoch));
  if (pos.next_batch < 0 || pos.next_batch >= batches) {
    throw std::invalid_argument("setState: position.nextBatch must be in [0, " + std::to_string(batches) + "); got " +
                                std::to_string(pos.next_batch));
  }
  if (pos.seen < 0 || pos.correct < 0 || pos.pending_correct < 0 || pos.correct + pos.pending_correct > pos.seen ||
      !std::isfinite(pos.loss_sum) || !std::isfinite(pos.pending_loss) || !(pos.seconds >= 0) ||
      !std::isfinite(pos.seconds)) {
    throw std::invalid_argument(
        "setState: the position's sums are inconsistent (negative, non-finite, or more correct than seen)");
  }
  return pos;
}

}  // namespace xt::napi
