// Tests of the event log's line format (text and JSON).
#include <gtest/gtest.h>

#include <string>

#include "shim/log.h"

namespace {

std::string Format(const log_event &ev, policy_log_format fmt) {
  char buf[4096];
  int n = log_format_event(&ev, fmt, buf, sizeof(buf));
  return std::string(buf, n);
}

TEST(ShimLog, TextLineHasFieldsInOrder) {
  log_event ev = {};
  ev.level = POLICY_LOG_INFO;
  ev.event = "established";
  ev.direction = "outbound";
  ev.rule = "redis-out";
  ev.peer = "127.0.0.1:6379";
  ev.version = "TLSv1.3";
  ev.cipher = "TLS_AES_128_GCM_SHA256";
  ev.group = "X25519";
  ev.resumed = 0;
  ev.peer_identity = "spiffe://prod/ns/db/sa/redis";
  std::string line = Format(ev, POLICY_LOG_TEXT);
  EXPECT_NE(line.find(" info event=established direction=outbound "
                      "rule=redis-out peer=127.0.0.1:6379 version=TLSv1.3 "
                      "cipher=TLS_AES_128_GCM_SHA256 group=X25519 resumed=no "
                      "peer_identity=spiffe://prod/ns/db/sa/redis\n"),
            std::string::npos)
      << line;
  EXPECT_EQ(line.back(), '\n');
}

TEST(ShimLog, TextQuotesReasonsWithSpaces) {
  log_event ev = {};
  ev.level = POLICY_LOG_WARN;
  ev.event = "failed";
  ev.resumed = -1;
  ev.reason = "certificate has expired";
  std::string line = Format(ev, POLICY_LOG_TEXT);
  EXPECT_NE(line.find("reason=\"certificate has expired\""), std::string::npos)
      << line;
  EXPECT_EQ(line.find("resumed"), std::string::npos) << line;
}

TEST(ShimLog, JsonIsOneObjectWithEscapes) {
  log_event ev = {};
  ev.level = POLICY_LOG_WARN;
  ev.event = "failed";
  ev.direction = "inbound";
  ev.resumed = 1;
  ev.reason = "no common cipher: client offered [\"A\"]\n";
  std::string line = Format(ev, POLICY_LOG_JSON);
  ASSERT_EQ(line.front(), '{');
  EXPECT_NE(line.find("\"level\":\"warn\",\"pid\":"), std::string::npos);
  EXPECT_NE(line.find("\"event\":\"failed\",\"direction\":\"inbound\","
                      "\"resumed\":true,\"reason\":\"no common cipher: client "
                      "offered [\\\"A\\\"]\\u000a\"}\n"),
            std::string::npos)
      << line;
}

TEST(ShimLog, LevelFilter) {
  log_configure(POLICY_LOG_WARN, POLICY_LOG_TEXT, nullptr);
  EXPECT_TRUE(log_enabled(POLICY_LOG_ERROR));
  EXPECT_TRUE(log_enabled(POLICY_LOG_WARN));
  EXPECT_FALSE(log_enabled(POLICY_LOG_INFO));
  log_configure(POLICY_LOG_DEBUG, POLICY_LOG_TEXT, nullptr);
  EXPECT_TRUE(log_enabled(POLICY_LOG_DEBUG));
}

}  // namespace
