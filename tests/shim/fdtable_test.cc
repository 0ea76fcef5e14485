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

}  // namespace
