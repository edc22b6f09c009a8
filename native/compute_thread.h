// One long-lived thread for the addon's libtorch work: model passes, training epochs, evaluation,
// batches (every AsyncTask::Start; native/napi_support.h).
//
// libuv hands consecutive tasks to any of its pool's threads (4 by default), and under OpenMP each
// thread that starts parallel work gets its own team of threads, its own malloc arena and its own
// thread-local caches. A forward() loop then ran on four teams in turn: each one's first passes were
// about twice as slow (an Inception V3 pass at 96x96, batch 8, 2 threads: 67-83 ms for calls 2-4,
// 35-40 ms after). Worse, once a process holds more OpenMP team threads than CPUs, libgomp stops
// letting idle ones spin (see keep_js_thread_single_threaded). Tasks run here instead, one at a
// time, on the process's one team.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "torch_includes.h"

namespace xt {

// libtorch's intra-op threads for the compute thread (setNumThreads; default: every core).
inline std::atomic<int> g_num_threads{static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))};

// libtorch's intra-op thread count is per thread under OpenMP: set it on the compute thread
// (run_on_compute_thread below), which runs every libtorch-heavy task, once per count. Not on every
// task: at::set_num_threads also clears oneDNN's cache of compiled convolution primitives, and
// rebuilding them cost each forward() call 25-35 ms (a fifth to a third of an Xception batch of 8
// at 96x96 on 2 cores). The lazy initialisation libtorch runs on a thread's first parallel loop
// happens first, so that it cannot reset the count afterwards.
inline void prepare_worker_thread() {
  thread_local int configured = 0;
  const int wanted = g_num_threads.load();
  if (configured == wanted) return;
  at::internal::lazy_init_num_threads();
  at::set_num_threads(wanted);
  configured = wanted;
}

// For the JS thread, at load: one intra-op thread for good. libgomp gives every thread that starts
// a parallel region its own team, and once the process holds more team threads than CPUs, idle team
// threads stop spinning after ~100 iterations (GOMP's throttled spin count) instead of ~300,000:
// every parallel region then wakes its threads through futexes. Weight initialisation on the JS
// thread used to leave such a team behind, and an Inception V3 training step on 2 threads ran at
// half speed (104,000 context switches in 20 steps against 1,000; PyTorch's process: 389). The
// compute thread holds the process's only team.
inline void keep_js_thread_single_threaded() {
  at::internal::lazy_init_num_threads();
  at::set_num_threads(1);
}

// A long-lived thread that runs the tasks posted to it one at a time, in order, after `setup`. Never
// joined: the process may exit with it waiting for work, so allocate it once and never destroy it.
class TaskThread {
 public:
  explicit TaskThread(std::function<void()> setup = {});
  // The future holds the exception `work` threw, if any.
  std::future<void> post(std::function<void()> work);

 private:
  void loop(const std::function<void()>& setup);

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  std::thread thread_;
};

// Runs `work` on the compute thread (started on first use) and waits for it; an exception from
// `work` is rethrown to the caller. Callers are libuv pool threads, never the JS thread.
void run_on_compute_thread(const std::function<void()>& work);

}  // namespace xt
