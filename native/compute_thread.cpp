#include "compute_thread.h"

#include <utility>

namespace xt {

TaskThread::TaskThread(std::function<void()> setup) : thread_([this, setup = std::move(setup)] { loop(setup); }) {
  thread_.detach();
}

std::future<void> TaskThread::post(std::function<void()> work) {
  std::packaged_task<void()> task(std::move(work));
  auto done = task.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
  }
  ready_.notify_one();
  return done;
}

void TaskThread::loop(const std::function<void()>& setup) {
  if (setup) setup();
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

void run_on_compute_thread(const std::function<void()>& work) {
  // Allocated once and never destroyed, so no exit-time destructor waits on the thread.
  static auto* compute = new TaskThread();
  compute->post(work).get();
}

}  // namespace xt
