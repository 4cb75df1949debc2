#include "mil/const_pool.h"

#include <algorithm>
#include <iterator>

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
  if (it != entries_.end()) {
    if (std::shared_ptr<LazyConsts> live = it->second.lock()) return live;
  }
  std::shared_ptr<LazyConsts> made = create();
  entries_[key] = made;
  if (entries_.size() >= sweep_at_) {
    for (auto e = entries_.begin(); e != entries_.end();) e = e->second.expired() ? entries_.erase(e) : std::next(e);
    sweep_at_ = std::max<size_t>(64, 2 * entries_.size());
  }
  return made;
}

size_t ConstPool::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t live = 0;
  for (const auto& e : entries_) live += e.second.expired() ? 0 : 1;
  return live;
}

}  // namespace staticllm::mil
