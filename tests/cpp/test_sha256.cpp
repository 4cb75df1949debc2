// SHA-256 against the FIPS 180-4 example vectors, fed at once and piecewise.
#include <catch2/catch.hpp>

#include <string>

#include "sha256.h"

using namespace staticllm;

TEST_CASE("SHA-256 matches the NIST vectors", "[sha256]") {
  auto hex = [](const std::string& s) { return sha256_hex(s.data(), s.size()); };
  REQUIRE(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  REQUIRE(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  REQUIRE(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  REQUIRE(hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // the same bytes in uneven pieces, across block boundaries
  Sha256 h;
  for (size_t at = 0, piece = 1; at < million.size(); at += piece, piece = piece * 7 % 1000 + 1) {
    h.update(million.data() + at, std::min(piece, million.size() - at));
  }
  REQUIRE(h.hex_digest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
