// The random ops (runtime/mil/ops/random.cpp): Philox against Random123's
// known answers, reproducibility of a seed, and the statistics of each
// distribution over 65,536 samples of a fixed seed, with bounds of about five
// standard errors (a fixed seed makes them pass or fail the same every run).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "mil/kernels/philox.h"
#include "op_harness.h"

using namespace staticllm;
using namespace staticllm::test;

namespace {

constexpr int64_t kSamples = 1 << 16;

struct Moments {
  double mean = 0, var = 0;
};

Moments moments(const std::vector<double>& v) {
  Moments m;
  for (double x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(v.size() - 1);
  return m;
}

Arg scalar(DType dtype, double v) { return constant(tensor_of(dtype, {}, {v})); }
Arg seed(int32_t s) { return constant(i32({}, {s})); }
Arg shape(int64_t n) { return constant(i32({1}, {static_cast<int32_t>(n)})); }

std::vector<double> uniform(DType dtype, double low, double high, int32_t s, int64_t n = kSamples) {
  auto out = run_op(
      "random_uniform",
      {{"shape", {shape(n)}}, {"low", {scalar(dtype, low)}}, {"high", {scalar(dtype, high)}}, {"seed", {seed(s)}}});
  REQUIRE(out[0].dtype() == dtype);
  return doubles(out[0]);
}

std::vector<double> normal(double mean, double stddev, int32_t s) {
  auto out = run_op("random_normal", {{"shape", {shape(kSamples)}},
                                      {"mean", {scalar(DType::kFloat32, mean)}},
                                      {"stddev", {scalar(DType::kFloat32, stddev)}},
                                      {"seed", {seed(s)}}});
  return doubles(out[0]);
}

}  // namespace

TEST_CASE("Philox4x32-10 gives Random123's known answers", "[ops][random]") {
  using mil::philox4x32_10;
  CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == mil::PhiloxBlock{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        mil::PhiloxBlock{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        mil::PhiloxBlock{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("a seed gives the same tensor every call; seed -1 a new one", "[ops][random]") {
  std::vector<double> a = uniform(DType::kFloat32, 0, 1, 42), b = uniform(DType::kFloat32, 0, 1, 42);
  CHECK(a == b);
  CHECK(a != uniform(DType::kFloat32, 0, 1, 43));
  // Element i is word i % 4 of Philox block i / 4 keyed by the seed, whichever
  // thread computed it (65,536 elements are split over the pool).
  for (int64_t i : {int64_t{0}, int64_t{1}, int64_t{5}, kSamples - 1}) {
    uint32_t w = mil::philox_block(static_cast<uint64_t>(i) / 4, {42, 0})[i % 4];
    CHECK(a[i] == static_cast<float>(static_cast<double>(w) * 0x1p-32));
  }
  auto unseeded = [] {
    return doubles(run_op("random_normal", {{"shape", {shape(64)}}})[0]);  // seed -1 by default
  };
  CHECK(unseeded() != unseeded());
}

TEST_CASE("random_uniform: moments of U[low, high), high never reached, fp16 included", "[ops][random]") {
  std::vector<double> v = uniform(DType::kFloat32, -2, 3, 5);
  Moments m = moments(v);
  CHECK(std::abs(m.mean - 0.5) < 0.03);         // standard error 0.0056
  CHECK(std::abs(m.var - 25.0 / 12.0) < 0.04);  // standard error 0.0073
  CHECK(*std::min_element(v.begin(), v.end()) >= -2);
  CHECK(*std::max_element(v.begin(), v.end()) < 3);
  // In fp16 about 1 sample in 4096 lies within half an fp16 step of 1 and
  // would round up to the excluded bound.
  std::vector<double> h = uniform(DType::kFloat16, 0, 1, 6);
  CHECK(*std::max_element(h.begin(), h.end()) == 1 - 0x1p-11);
  CHECK(std::abs(moments(h).mean - 0.5) < 0.006);
}

TEST_CASE("random_normal: mean, variance and the one-sigma mass", "[ops][random]") {
  std::vector<double> v = normal(1, 2, 9);
  Moments m = moments(v);
  CHECK(std::abs(m.mean - 1) < 0.04);  // standard error 0.0078
  CHECK(std::abs(m.var - 4) < 0.12);   // standard error 0.022
  double within = std::count_if(v.begin(), v.end(), [](double x) { return std::abs(x - 1) < 2; });
  CHECK(std::abs(within / kSamples - 0.682689) < 0.01);  // standard error 0.0018
}

TEST_CASE("random_bernoulli: the frequency of ones is prob", "[ops][random]") {
  auto out = run_op(
      "random_bernoulli",
      {{"shape", {constant(i32({2}, {256, 256}))}}, {"prob", {scalar(DType::kFloat16, 0.3)}}, {"seed", {seed(2)}}});
  REQUIRE(out[0].dtype() == DType::kFloat16);
  std::vector<double> v = doubles(out[0]);
  CHECK(std::all_of(v.begin(), v.end(), [](double x) { return x == 0 || x == 1; }));
  // prob is the fp16 nearest 0.3, 0.2999...; standard error 0.0018
  CHECK(std::abs(moments(v).mean - 0.3) < 0.009);
}

TEST_CASE("random_categorical: class frequencies follow probs and softmax(logits)", "[ops][random]") {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  std::vector<double> logits;
  for (double p : probs) logits.push_back(std::log(p) + 3);  // softmax gives probs back
  for (bool by_logits : {false, true}) {
    INFO((by_logits ? "logits" : "probs"));
    auto out =
        run_op("random_categorical", {{"x", {input(tensor_of(DType::kFloat32, {1, 4}, by_logits ? logits : probs))}},
                                      {"mode", {str(by_logits ? "logits" : "probs")}},
                                      {"size", {constant(i32({}, {kSamples}))}},
                                      {"seed", {seed(4)}}});
    REQUIRE(out[0].shape() == Shape{1, kSamples});
    std::vector<double> count(4, 0);
    for (double c : doubles(out[0])) count.at(static_cast<size_t>(c)) += 1;
    for (size_t k = 0; k < 4; ++k) CHECK(std::abs(count[k] / kSamples - probs[k]) < 0.01);  // standard errors <= 0.002
  }
}
