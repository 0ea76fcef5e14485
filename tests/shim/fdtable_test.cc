// Tests of the descriptor table: fast path, sharing, and removal.
#include <gtest/gtest.h>

#include "shim/internal.h"

namespace {

TEST(ShimFdTable, UnknownDescriptorsTakeTheFastPath) {
  EXPECT_FALSE(fdtable_maybe(-1));
  EXPECT_FALSE(fdtable_maybe(12345));
  EXPECT_EQ(fdtable_get(12345), nullptr);
  EXPECT_EQ(fdtable_take(12345), nullptr);
}

TEST(ShimFdTable, SharedSessionEndsWithLastDescriptor) {
  session *s = session_new();
  ASSERT_NE(s, nullptr);
  fdtable_set(900, s);
  fdtable_set(901, s);  // a dup
  EXPECT_EQ(s->refs, 3);
  EXPECT_TRUE(fdtable_maybe(900));
  session *got = fdtable_get(901);
  EXPECT_EQ(got, s);
  session_unref(got);
  session *taken = fdtable_take(900);
  EXPECT_EQ(taken, s);
  session_unref(taken);
  EXPECT_FALSE(fdtable_maybe(900));
  EXPECT_TRUE(fdtable_maybe(901));
  EXPECT_EQ(fdtable_count(), 1u);
  session_unref(fdtable_take(901));
  EXPECT_EQ(s->refs, 1);
  session_unref(s);
  EXPECT_EQ(fdtable_count(), 0u);
}

TEST(ShimFdTable, HighDescriptorsWork) {
  session *s = session_new();
  ASSERT_NE(s, nullptr);
  int fd = (1 << 20) + 5;
  fdtable_set(fd, s);
  EXPECT_TRUE(fdtable_maybe(fd));
  EXPECT_EQ(fdtable_get(fd), s);
  session_unref(s);
  session_unref(fdtable_take(fd));
  session_unref(s);
}

TEST(ShimFdTable, FailedAllocationLeavesTheDescriptorAlone) {
  session *s = session_new();
  ASSERT_NE(s, nullptr);
  fdtable_fail_every = 1;
  EXPECT_EQ(fdtable_set(910, s), -ENOMEM);
  fdtable_fail_every = 0;
  EXPECT_FALSE(fdtable_maybe(910));
  EXPECT_EQ(fdtable_get(910), nullptr);
  EXPECT_EQ(s->refs, 1);  // the reference it took was given back
  session_unref(s);
}

TEST(ShimFdTable, FirstInRangeFindsTheLowest) {
  session *s = session_new();
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(fdtable_set(930, s), 0);
  ASSERT_EQ(fdtable_set(925, s), 0);
  EXPECT_EQ(fdtable_first_in_range(920, 940), 925);
  EXPECT_EQ(fdtable_first_in_range(926, ~0U), 930);
  EXPECT_EQ(fdtable_first_in_range(931, ~0U), -1);
  session_unref(fdtable_take(925));
  session_unref(fdtable_take(930));
  session_unref(s);
}

TEST(ShimFdTable, FastOpenHintIsNotASessionAndTakeClearsIt) {
  fdtable_hint_fastopen(940);
  EXPECT_TRUE(fdtable_maybe(940));
  EXPECT_TRUE(fdtable_fastopen_hinted(940));
  EXPECT_EQ(fdtable_get(940), nullptr);
  EXPECT_EQ(fdtable_take(940), nullptr);
  EXPECT_FALSE(fdtable_maybe(940));
}

TEST(ShimFdTable, InsideTheShimsLocksLookupsAreBusy) {
  session *s = session_new();
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(fdtable_set(950, s), 0);
  session_lock(s);  // as the interrupted code would hold it
  session *got = fdtable_get(950);
  EXPECT_EQ(got, &session_busy);
  EXPECT_EQ(session_send(got, 950, "x", 1, 0), -EAGAIN);
  EXPECT_EQ(session_recv(got, 950, nullptr, 1, 0), -EAGAIN);
  session_unref(got);
  session_unlock(s);
  EXPECT_EQ(shim_lock_depth, 0);
  got = fdtable_get(950);
  EXPECT_EQ(got, s);
  session_unref(got);
  session_unref(fdtable_take(950));
  session_unref(s);
}

}  // namespace
