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

#include <functional>

namespace xt {

// Runs `work` on the compute thread (started on first use) and waits for it; an exception from
// `work` is rethrown to the caller. Callers are libuv pool threads, never the JS thread.
void run_on_compute_thread(const std::function<void()>& work);

}  // namespace xt
