// A tensor handed to JavaScript as { name, shape, dtype, data: ArrayBuffer }: a copy, or a view of
// the tensor's own memory for checkpoints.
#pragma once

#include <cstring>
#include <string>

#include "napi_support.h"

namespace xt::napi {

// { name, shape, dtype, data: ArrayBuffer } holding a copy of the tensor (on the CPU, contiguous).
// With `share`, the ArrayBuffer is the tensor's own memory instead (a CPU tensor that is already
// contiguous; otherwise the converted copy), kept alive until the ArrayBuffer is collected: for
// writing a checkpoint while nothing changes the tensor, without copying it first. On a virtual
// machine the copy's fresh pages cost more than writing the file (0.4 s for Xception's 83 MB).
// Where Node refuses external memory, it is a copy after all.
inline Napi::Object tensor_object(Napi::Env env, const std::string& name, const torch::Tensor& tensor,
                                  bool share = false) {
  auto t = tensor.detach().to(torch::kCPU).contiguous();
  const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  Napi::ArrayBuffer buffer;
  if (share && bytes) {
    auto* owner = new torch::Tensor(t);
    napi_value shared = nullptr;
    const napi_status status = napi_create_external_arraybuffer(
        env, t.data_ptr(), bytes, [](napi_env, void*, void* hint) { delete static_cast<torch::Tensor*>(hint); }, owner,
        &shared);
    if (status == napi_ok) {
      buffer = Napi::ArrayBuffer(env, shared);
    } else {
      delete owner;
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
      }
    }
  }
  if (buffer.IsEmpty()) {
    buffer = Napi::ArrayBuffer::New(env, bytes);
    if (bytes) std::memcpy(buffer.Data(), t.data_ptr(), bytes);
  }
  auto o = Napi::Object::New(env);
  o.Set("name", name);
  o.Set("shape", js_shape(env, t.sizes()));
  o.Set("dtype", dtype_name(t.scalar_type()));
  o.Set("data", buffer);
  return o;
}

// getState(share): whether the caller asked for shared memory (a first argument of true).
inline bool share_requested(const Napi::CallbackInfo& info) {
  return info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
}

}  // namespace xt::napi
