// The libtorch headers the addon uses, in one place so CMake can precompile them once
// (a TU that parses them from scratch costs ~30 s and 1.2 GB here).
#pragma once

#include <torch/nn.h>
#include <torch/version.h>
#include <torch/cuda.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
