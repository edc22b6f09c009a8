// Eval passes on the CPU split by batch: with T intra-op threads and a batch of at least T images,
// T single-threaded passes run side by side, each over its share of the batch, instead of one pass
// whose every layer is shared out over T threads. In eval mode images do not interact (BatchNorm
// uses its running statistics), so the logits are those of one pass up to float rounding. What it
// saves: the barrier at the end of each of a pass's ~100-200 parallel regions, where threads wait
// for the slowest (9% of an Xception pass's CPU samples were libgomp's spin-wait), and the
// splitting of small layers (6x6, 3x3 maps) into pieces too thin to run at full speed. Measured at
// 96x96, batch 8, 2 cores: two 1-thread passes of 4 images gave 7% (Xception) and 13% (Inception
// V3) more images a second than one 2-thread pass of 8.
#pragma once

#include "torch_includes.h"

#include <functional>

namespace xt {

// How many single-threaded passes an eval pass over `x` on this thread splits into: this thread's
// intra-op thread count when x is a CPU batch of at least that many images and splitting is on;
// 1 (run it whole) otherwise.
int split_pass_parts(const torch::Tensor& x);

// pass(chunk) for `parts` consecutive chunks of x's batch, each on a helper thread of its own with
// one intra-op thread, concatenated along the batch. `pass` runs on those helpers: thread-local
// state it needs (grad mode, folded weights) must be set up inside it. Waits for every chunk; the
// first exception is rethrown.
torch::Tensor run_split_pass(const torch::Tensor& x, int parts,
                             const std::function<torch::Tensor(const torch::Tensor&)>& pass);

// On by default; off, eval passes run whole on the calling thread's intra-op threads (for
// comparisons and benchmarks). Read at every pass.
void set_split_passes(bool enabled);
bool split_passes_enabled();
// How many passes have run split in this process (tests check that it happens).
int64_t split_passes_run();

}  // namespace xt
