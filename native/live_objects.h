// Counts of the heavy native objects alive now (networks, image stores, training sessions), so a
// user can check that dispose() released what it should and that nothing leaks across runs
// (runtimeInfo().liveNativeObjects).
#pragma once

#include <atomic>
#include <cstdint>

namespace xt {

// Inherit from LiveCount<T> to have T's live instances counted.
template <typename T>
class LiveCount {
 public:
  static int64_t alive() { return counter().load(); }

 protected:
  LiveCount() { ++counter(); }
  LiveCount(const LiveCount&) { ++counter(); }
  LiveCount& operator=(const LiveCount&) = default;
  ~LiveCount() { --counter(); }

 private:
  static std::atomic<int64_t>& counter() {
    static std::atomic<int64_t> count{0};
    return count;
  }
};

}  // namespace xt
