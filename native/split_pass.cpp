#include "split_pass.h"

#include <atomic>
#include <exception>
#include <future>
#include <mutex>
#include <vector>

#include <ATen/Config.h>  // AT_PARALLEL_OPENMP

#include "compute_thread.h"

#if defined(_OPENMP) && AT_PARALLEL_OPENMP
#include <omp.h>  // compiled with -fopenmp, not linked: libtorch's OpenMP runtime provides the symbols
#define XT_HAVE_OMP_H 1
#endif

namespace xt {

namespace {

std::atomic<bool> split_on{true};
std::atomic<int64_t> split_count{0};

// A helper: a task thread with one intra-op thread. Its parallel regions have one thread, so libgomp
// gives it no team: the process keeps one team (the compute thread's, native/compute_thread.h).
void single_threaded() {
  at::internal::lazy_init_num_threads();
#ifdef XT_HAVE_OMP_H
  // This thread's count only. at::set_num_threads would also set the process-wide default that
  // threads started later begin with, and clear libtorch's oneDNN primitive cache.
  omp_set_num_threads(1);
#else
  at::set_num_threads(1);
#endif
}

// The first `count` helpers, started on first use and kept (allocated once, never destroyed, so
// that no exit-time destructor waits on them).
std::vector<TaskThread*> helpers(size_t count) {
  static std::mutex mutex;
  static auto* all = new std::vector<TaskThread*>();
  std::lock_guard<std::mutex> lock(mutex);
  while (all->size() < count) all->push_back(new TaskThread(single_threaded));
  return std::vector<TaskThread*>(all->begin(), all->begin() + static_cast<std::ptrdiff_t>(count));
}

}  // namespace

void set_split_passes(bool enabled) { split_on = enabled; }
bool split_passes_enabled() { return split_on.load(); }

int64_t split_passes_run() { return split_count.load(); }

int split_pass_parts(const torch::Tensor& x) {
  if (!split_on.load() || !x.is_cpu() || x.dim() != 4) return 1;
  const int threads = at::get_num_threads();
  return threads >= 2 && x.size(0) >= threads ? threads : 1;
}

torch::Tensor run_split_pass(const torch::Tensor& x, int parts,
                             const std::function<torch::Tensor(const torch::Tensor&)>& pass) {
  const int64_t n = x.size(0);
  split_count++;
  auto workers = helpers(static_cast<size_t>(parts));
  std::vector<torch::Tensor> outputs(static_cast<size_t>(parts));
  std::vector<std::future<void>> done;
  int64_t start = 0;
  for (int i = 0; i < parts; i++) {
    // Shares as equal as the batch allows: the first n % parts chunks hold one image more.
    const int64_t size = n / parts + (i < n % parts ? 1 : 0);
    auto chunk = x.narrow(0, start, size);
    start += size;
    auto* output = &outputs[static_cast<size_t>(i)];
    done.push_back(workers[static_cast<size_t>(i)]->post([&pass, chunk, output] { *output = pass(chunk); }));
  }
  std::exception_ptr failure;
  for (auto& d : done) {  // wait for every chunk before `pass` and `outputs` go out of scope
    try {
      d.get();
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
  return torch::cat(outputs, 0);
}

}  // namespace xt
