// A fixed pool of worker threads for splitting one kernel across cores.
#pragma once

#include <cstdint>
#include <functional>

namespace staticllm::mil {

class ThreadPool {
 public:
  // threads = 0 picks std::thread::hardware_concurrency() (or STATICLLM_NUM_THREADS).
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  // Runs fn(begin, end) over [0, n) split into contiguous chunks of at least
  // `min_chunk` items, a few per thread, which the threads (the caller too)
  // take in turn; each item is in exactly one call. Returns when all are done. Nested or concurrent calls from several
  // callers are safe (a caller that finds the pool busy runs its work inline).
  void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Impl;
  Impl* impl_;
};

// The process-wide pool the interpreter uses.
ThreadPool& default_thread_pool();

}  // namespace staticllm::mil
