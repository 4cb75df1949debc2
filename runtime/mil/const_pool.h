// Constants computed from other constants (folded ops, decompressed and
// unpacked weights), made when an op first needs them and shared by every
// function of a bundle: prefill and decode planned over the same weight.bin
// hold one copy, and a weight the kernels read compressed is never expanded.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "mil/kernels/compressed.h"
#include "mil/weight_store.h"

namespace staticllm::mil {

// The outputs of one folded op (or one unpacked sub-byte constant).
class LazyConsts {
 public:
  explicit LazyConsts(std::function<std::vector<Tensor>()> make) : make_(std::move(make)) {}

  // Output i, made (all outputs at once) on the first call; throws what `make` throws.
  const Tensor& get(size_t i);
  bool made() const;

  // Per output: the weight as the compressed kernels read it, or null.
  std::vector<std::shared_ptr<const CompressedWeight>> compressed;
  // Set when the single output is these sub-byte integers unpacked.
  std::shared_ptr<const PackedInts> packed;

 private:
  std::function<std::vector<Tensor>()> make_;
  mutable std::mutex mutex_;
  std::vector<Tensor> values_;
  bool made_ = false;
};

// Entries live as long as some plan holds them: a plan per input shape
// (plan_cache.h) evicted from its cache frees the constants only it used.
class ConstPool {
 public:
  // The entry for `key`, created by `create` when no live entry has it.
  std::shared_ptr<LazyConsts> find_or_add(const std::string& key,
                                          const std::function<std::shared_ptr<LazyConsts>()>& create);
  size_t size() const;  // live entries

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::weak_ptr<LazyConsts>> entries_;
  size_t sweep_at_ = 64;  // entries_ size at which expired keys are dropped
};

}  // namespace staticllm::mil
