// One long-lived thread for the addon's model passes (model.forward()).
//
// libuv hands consecutive tasks to any of its pool's threads (4 by default), and under OpenMP each
// thread that starts parallel work gets its own team of threads, its own malloc arena and its own
// thread-local caches. A forward() loop then ran on four teams in turn: each one's first passes were
// about twice as slow (an Inception V3 pass at 96x96, batch 8, 2 threads: 67-83 ms for calls 2-4,
// 35-40 ms after), and an idle team still spinning slowed the next one. Passes run here instead,
// one at a time, on one team.
#pragma once

#include <functional>

namespace xt {

// Runs `work` on the compute thread (started on first use) and waits for it; an exception from
// `work` is rethrown to the caller. Callers are libuv pool threads, never the JS thread.
void run_on_compute_thread(const std::function<void()>& work);

}  // namespace xt
