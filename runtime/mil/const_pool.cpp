#include "mil/const_pool.h"

namespace staticllm::mil {

const Tensor& LazyConsts::get(size_t i) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!made_) {
    values_ = make_();
    made_ = true;
  }
  return values_.at(i);
}

bool LazyConsts::made() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return made_;
}

std::shared_ptr<LazyConsts> ConstPool::find_or_add(const std::string& key,
                                                   const std::function<std::shared_ptr<LazyConsts>()>& create) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it != entries_.end()) return it->second;
  return entries_[key] = create();
}

size_t ConstPool::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

}  // namespace staticllm::mil
