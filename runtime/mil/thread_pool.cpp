// Persistent workers that split one loop. Workers spin briefly after each job
// before sleeping, because decode issues hundreds of small parallel loops per
// token and a futex wake-up per loop would cost more than the work.
#include "mil/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define STATICLLM_PAUSE() _mm_pause()
#else
#define STATICLLM_PAUSE() std::this_thread::yield()
#endif

namespace staticllm::mil {

// Pause instructions a waiting thread spins before it sleeps (a worker) or
// yields its core (the caller): about 50 us, longer than the gap between two
// ops of a decode step. Spinning longer cost decode speed on a shared
// machine: a spinning thread burns the CPU share of its own process.
constexpr int kSpins = 2000;

struct ThreadPool::Impl {
  std::vector<std::thread> workers;
  std::mutex busy;  // one job at a time; other callers run inline

  std::mutex wake_mutex;
  std::condition_variable wake;
  std::atomic<uint64_t> generation{0};
  std::atomic<bool> stop{false};

  // The current job. A chunk is claimed from `ticket`: the job's number, its
  // chunk count and the next chunk in one word, so a worker still leaving
  // the previous job (it saw that job's last chunk taken, not yet the new
  // job) can neither take a chunk of the new one nor count one off it.
  static constexpr int kIndexBits = 20;  // chunks per job: at most 4 x 4096 threads
  static constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  int64_t chunk = 0;
  std::atomic<uint64_t> ticket{0};  // job << 40 | chunks << 20 | next chunk
  std::atomic<int64_t> remaining{0};
  std::mutex error_mutex;
  std::exception_ptr error;

  static uint64_t job_bits(uint64_t job) { return (job << (2 * kIndexBits)) >> (2 * kIndexBits); }

  void run_chunks(uint64_t job) {
    uint64_t t = ticket.load(std::memory_order_acquire);
    for (;;) {
      const uint64_t c = t & kIndexMask;
      if ((t >> (2 * kIndexBits)) != job_bits(job) || c >= ((t >> kIndexBits) & kIndexMask)) return;
      if (!ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      int64_t begin = static_cast<int64_t>(c) * chunk;
      int64_t end = std::min(n, begin + chunk);
      try {
        (*fn)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
      remaining.fetch_sub(1, std::memory_order_acq_rel);
      t = ticket.load(std::memory_order_acquire);
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    while (!stop.load(std::memory_order_acquire)) {
      uint64_t gen = generation.load(std::memory_order_acquire);
      if (gen != seen) {
        seen = gen;
        run_chunks(gen);
        continue;
      }
      bool woke = false;
      for (int i = 0; i < kSpins; ++i) {
        if (generation.load(std::memory_order_acquire) != seen || stop.load()) {
          woke = true;
          break;
        }
        STATICLLM_PAUSE();
      }
      if (woke) continue;
      std::unique_lock<std::mutex> lock(wake_mutex);
      wake.wait(lock, [&] { return generation.load() != seen || stop.load(); });
    }
  }
};

static int default_threads() {
  if (const char* env = std::getenv("STATICLLM_NUM_THREADS")) {
    // strtol, not atoi: atoi's overflow is undefined; absurd counts are ignored
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v > 0 && v <= 4096) return static_cast<int>(v);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

ThreadPool::ThreadPool(int threads) : impl_(new Impl()) {
  int total = threads > 0 ? threads : default_threads();
  for (int i = 1; i < total; ++i) {
    impl_->workers.emplace_back([this] { impl_->worker_loop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->wake_mutex);
    impl_->stop.store(true);
  }
  impl_->wake.notify_all();
  for (auto& t : impl_->workers) t.join();
  delete impl_;
}

int ThreadPool::size() const { return static_cast<int>(impl_->workers.size()) + 1; }

void ThreadPool::parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  // Several chunks per thread, taken in turn: a thread the OS deschedules
  // (the machine is shared) holds up the others by one small chunk at most,
  // and the rest of its share goes to whoever is running.
  constexpr int64_t kChunksPerThread = 4;
  int64_t max_chunks = std::min<int64_t>(size() * kChunksPerThread, (n + min_chunk - 1) / min_chunk);
  std::unique_lock<std::mutex> busy(impl_->busy, std::try_to_lock);
  if (max_chunks <= 1 || !busy.owns_lock()) {
    fn(0, n);  // small job, or another caller holds the workers
    return;
  }
  Impl& s = *impl_;
  s.fn = &fn;
  s.n = n;
  s.chunk = (n + max_chunks - 1) / max_chunks;
  const auto chunks = static_cast<uint64_t>((n + s.chunk - 1) / s.chunk);
  s.error = nullptr;
  s.remaining.store(static_cast<int64_t>(chunks), std::memory_order_release);
  const uint64_t job = s.generation.load(std::memory_order_relaxed) + 1;
  s.ticket.store(Impl::job_bits(job) << (2 * Impl::kIndexBits) | chunks << Impl::kIndexBits, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(s.wake_mutex);
    s.generation.store(job, std::memory_order_release);
  }
  s.wake.notify_all();
  s.run_chunks(job);
  // Spin briefly for the last chunks, then yield the core: on a busy machine
  // the thread finishing them may be waiting for it.
  for (int spins = 0; s.remaining.load(std::memory_order_acquire) > 0; ++spins) {
    if (spins < kSpins)
      STATICLLM_PAUSE();
    else
      std::this_thread::yield();
  }
  if (s.error) std::rethrow_exception(s.error);
}

ThreadPool& default_thread_pool() {
  static ThreadPool pool;
  return pool;
}

}  // namespace staticllm::mil
