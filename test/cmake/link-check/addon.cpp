// Uses a symbol of the fake libtorch only; none of libtorch_cuda or libcudart.
#include <string>

static_assert(_GLIBCXX_USE_CXX11_ABI == EXPECTED_ABI, "the C++ ABI flag of TORCH_CXX_FLAGS was not applied");

extern "C" int xt_fake_torch();

int addon_entry() { return xt_fake_torch() + static_cast<int>(std::string("abi").size()); }
