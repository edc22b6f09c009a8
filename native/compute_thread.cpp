#include "compute_thread.h"

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

namespace xt {

namespace {

class ComputeThread {
 public:
  ComputeThread() : thread_([this] { loop(); }) {
    // Never joined: the process may exit with the thread waiting for work.
    thread_.detach();
  }

  std::future<void> post(const std::function<void()>& work) {
    std::packaged_task<void()> task(work);
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    return done;
  }

 private:
  void loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !queue_.empty(); });
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();  // an exception is stored in the task's future
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  std::thread thread_;
};

}  // namespace

void run_on_compute_thread(const std::function<void()>& work) {
  // Allocated once and never destroyed, so no exit-time destructor waits on the thread.
  static auto* compute = new ComputeThread();
  compute->post(work).get();
}

}  // namespace xt
