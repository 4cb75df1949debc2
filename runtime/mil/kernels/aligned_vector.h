// std::vector whose storage starts on a 64-byte boundary: the kernels'
// per-thread buffers (packed panels, expanded weight tiles) are read a
// 64-byte vector at a time, and a vector that straddles two cache lines
// costs two loads. malloc aligns large blocks to 16 bytes only: with the
// packed panel 16 bytes off, the prefill GEMM ran at 66 % of the FMA peak
// against 75 % aligned (one thread, interleaved runs).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace staticllm::mil {

template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};

  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}  // NOLINT: rebinding is implicit by design

  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }

  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const CacheLineAllocator<U>&) const {
    return false;
  }
};

template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace staticllm::mil
