// Op-table entries of runtime/mil/ops/random.cpp: the values each
// distribution gives exactly (prob 0 and 1, stddev 0, low == high, a
// categorical distribution with one class of weight), with and without a
// seed. Their statistics are checked in tests/cpp/test_random.cpp.
#include <limits>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

std::vector<Entry> random_entries() {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  return {
      op("random_uniform", "low == high gives low")
          .ints("shape", {2, 3})
          .scalar("low", -1.5)
          .scalar("high", -1.5)
          .scalar_int("seed", 7)
          .expect({F({2, 3}, {-1.5, -1.5, -1.5, -1.5, -1.5, -1.5})}),
      op("random_normal", "stddev 0 gives the mean, unseeded")
          .ints("shape", {3, 1, 2})
          .scalar("mean", 2.25)
          .scalar("stddev", 0)
          .expect({F({3, 1, 2}, {2.25, 2.25, 2.25, 2.25, 2.25, 2.25})}),
      op("random_bernoulli", "prob 1 gives ones")
          .ints("shape", {5})
          .scalar("prob", 1)
          .scalar_int("seed", 3)
          .expect({F({5}, {1, 1, 1, 1, 1})}),
      op("random_bernoulli", "prob 0 gives zeros, unseeded")
          .ints("shape", {2, 2})
          .scalar("prob", 0)
          .expect({F({2, 2}, {0, 0, 0, 0})}),
      op("random_categorical", "probs: only the class of weight is drawn")
          .in("x", F({2, 3}, {0, 1, 0, 0, 0, 0.5}))
          .string("mode", "probs")
          .scalar_int("size", 5)
          .scalar_int("seed", 11)
          .expect({F({2, 5}, {1, 1, 1, 1, 1, 2, 2, 2, 2, 2})}),
      op("random_categorical", "logits of -inf are never drawn; size 1 by default")
          .in("x", F({3, 2}, {-inf, 4, 0.5, -inf, -inf, -2}))
          .expect({F({3, 1}, {1, 0, 1})}),
      op("random_categorical", "a row of no positive weight gives NaN")
          .in("x", F({2, 2}, {0, 0, 0, 0.75}))
          .string("mode", "probs")
          .scalar_int("size", 2)
          .scalar_int("seed", 1)
          .expect({F({2, 2}, {nan, nan, 1, 1})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(random_entries());

}  // namespace
}  // namespace staticllm::test::optable
