// Tests of the resolved-name memory: per thread and per address, a second
// lookup adds a candidate and never replaces the first.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shim/internal.h"

namespace {

void V4(uint8_t addr[16], uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  std::memset(addr, 0, 16);
  addr[10] = 0xff;
  addr[11] = 0xff;
  addr[12] = a;
  addr[13] = b;
  addr[14] = c;
  addr[15] = d;
}

std::vector<std::string> Candidates(const uint8_t addr[16]) {
  char out[NAMES_MAX_CANDIDATES][256];
  size_t n = names_candidates(addr, out, NAMES_MAX_CANDIDATES);
  return std::vector<std::string>(out, out + n);
}

TEST(ShimNames, SecondLookupAddsACandidate) {
  uint8_t a[16];
  V4(a, 10, 77, 0, 1);
  names_remember(a, "localhost");
  names_remember(a, "vm");
  std::vector<std::string> got = Candidates(a);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "vm");  // this thread's latest first
  EXPECT_EQ(got[1], "localhost");
}

TEST(ShimNames, ThisThreadsNameComesFirst) {
  uint8_t a[16];
  V4(a, 10, 77, 0, 2);
  names_remember(a, "mine.example");
  std::thread other([&] { names_remember(a, "theirs.example"); });
  other.join();
  std::vector<std::string> got = Candidates(a);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "mine.example");
  EXPECT_EQ(got[1], "theirs.example");
  std::thread third([&] {
    std::vector<std::string> t = Candidates(a);
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0], "theirs.example");  // most recent overall
  });
  third.join();
}

TEST(ShimNames, OtherAddressesAreSeparate) {
  uint8_t a[16], b[16];
  V4(a, 10, 77, 0, 3);
  V4(b, 10, 77, 0, 4);
  names_remember(a, "a.example");
  EXPECT_TRUE(Candidates(b).empty());
  EXPECT_EQ(Candidates(a), std::vector<std::string>{"a.example"});
}

TEST(ShimNames, FullTableForgetsTheLeastRecentlyUsed) {
  uint8_t keep[16];
  V4(keep, 10, 78, 255, 255);
  names_remember(keep, "kept.example");
  for (int i = 0; i < 5000; i++) {
    uint8_t a[16];
    V4(a, 10, 79, (uint8_t)(i >> 8), (uint8_t)i);
    names_remember(a, "filler.example");
    if (i % 100 == 0) {
      Candidates(keep);  // in use: never the least recently used
    }
  }
  EXPECT_EQ(Candidates(keep), std::vector<std::string>{"kept.example"});
  uint8_t first[16];
  V4(first, 10, 79, 0, 1);
  EXPECT_TRUE(Candidates(first).empty());  // forgotten (and logged)
}

}  // namespace
