// How training's C++ structs cross N-API (one conversion concern, as onnxruntime-node keeps its
// binding files): the JS trainer config (lib/trainer.ts builds it, already validated), epoch
// results, and the epoch position that checkpoints save and restore.
#pragma once

#include "napi_support.h"
#include "training.h"

namespace xt::napi {

AmpMode amp_of(const std::string& text);
TrainConfig train_config_of(const Napi::Object& o);
Napi::Object epoch_object(Napi::Env env, const EpochResult& r);
Napi::Object position_object(Napi::Env env, const EpochPosition& pos);
// A saved position, checked against an epoch of `batches` batches (std::invalid_argument).
EpochPosition position_of(const Napi::Object& p, int64_t batches);

}  // namespace xt::napi
