# How the addon is compiled and linked against the libtorch that find_package(Torch) found: one
# function, so that test/cmake/ can check it against fake libtorch prefixes on a machine with no
# CUDA and no PyTorch 2.x (test/build-native.test.ts).

# Before find_package(Torch): the CMake config of PyTorch releases made before CUDA 12.9 links
# CUDA::nvToolsExt, a library that toolkits from 12.9 on no longer ship (NVTX became header-only).
# scripts/build-native.ts detects that pairing and sets XT_NVTOOLSEXT_SHIM; nothing here uses NVTX,
# so an empty stand-in target satisfies the config.
macro(xt_nvtoolsext_shim)
  if(XT_NVTOOLSEXT_SHIM AND NOT TARGET CUDA::nvToolsExt)
    add_library(CUDA::nvToolsExt INTERFACE IMPORTED)
    message(STATUS "xception-torch: this CUDA toolkit has no libnvToolsExt; standing in an empty CUDA::nvToolsExt")
  endif()
endmacro()

# After find_package(Torch): compile `target` with libtorch's flags and link it.
function(xt_link_libtorch target)
  # TORCH_CXX_FLAGS carries the C++ ABI of the libtorch (-D_GLIBCXX_USE_CXX11_ABI=0 for the
  # pre-cxx11 builds of PyTorch 2.5 and most 2.6 wheels, =1 otherwise): never assume one.
  separate_arguments(torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(${target} PRIVATE ${torch_flags})
  # Record only the libraries the addon uses: the CUDA config also lists the toolkit's libcudart
  # and libnvrtc, which must not be pinned here (PyTorch loads its own from its install).
  target_link_options(${target} PRIVATE "LINKER:--as-needed")
  if(TARGET torch_cuda)
    # libtorch_cuda registers the CUDA backend when it loads, yet no symbol of it is named here:
    # keep it, and only it, with --no-as-needed. One -Wl item, because CMake reorders a target
    # named on its own and the flags around it would no longer enclose it.
    target_link_libraries(${target} PRIVATE "-Wl,--push-state,--no-as-needed,$<TARGET_FILE:torch_cuda>,--pop-state")
  endif()
  target_link_libraries(${target} PRIVATE ${TORCH_LIBRARIES})
endfunction()
