// Tests of the event log's line format (text and JSON).
#include <gtest/gtest.h>

#include <string>
#include <vector>

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

namespace {

// The SNI: two bytes that are not UTF-8, then a C1 control (CSI,
// U+009B) correctly encoded as UTF-8.
const char kHostileSni[] = "ab\xff\xfe\xc2\x9b" "cd";

log_event NamedEvent(const char *name) {
  log_event ev = {};
  ev.level = POLICY_LOG_INFO;
  ev.event = "established";
  ev.resumed = 0;
  ev.name = name;
  ev.peer_identity = name;
  return ev;
}

TEST(ShimLog, JsonEscapesBytesThatAreNotUtf8AndC1Controls) {
  std::string line = Format(NamedEvent(kHostileSni), POLICY_LOG_JSON);
  EXPECT_NE(line.find("\"name\":\"ab\\u00ff\\u00fe\\u009bcd\""),
            std::string::npos)
      << line;
}

TEST(ShimLog, TextQuotesAndEscapesBytesThatAreNotUtf8AndC1Controls) {
  std::string line = Format(NamedEvent(kHostileSni), POLICY_LOG_TEXT);
  EXPECT_NE(line.find(" name=\"ab\\u00ff\\u00fe\\u009bcd\" "),
            std::string::npos)
      << line;
}

TEST(ShimLog, WellFormedUtf8PassesAsIs) {
  const char *name = "z\xc3\xbcrich-\xe6\x9d\xb1\xe4\xba\xac-\xf0\x9f\x94\x92";
  EXPECT_NE(Format(NamedEvent(name), POLICY_LOG_JSON)
                .find(std::string("\"name\":\"") + name + "\""),
            std::string::npos);
  EXPECT_NE(Format(NamedEvent(name), POLICY_LOG_TEXT)
                .find(std::string(" name=") + name + " "),
            std::string::npos);
  // Overlong, surrogate and truncated forms are not UTF-8: byte by byte.
  EXPECT_NE(Format(NamedEvent("\xc0\xaf|\xed\xa0\x80|\xe6\x9d"), POLICY_LOG_JSON)
                .find("\"name\":\"\\u00c0\\u00af|\\u00ed\\u00a0\\u0080|"
                      "\\u00e6\\u009d\""),
            std::string::npos);
}

// Utf8Next decodes one well-formed UTF-8 character of |s| at |*i| (written
// apart from the code under test, from RFC 3629's table); -1 if none.
long Utf8Next(const std::string &s, size_t *i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = at(*i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                          : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || *i + n > s.size()) {
    return -1;
  }
  long cp = n == 1 ? c : c & (0x7f >> n);
  for (size_t k = 1; k < n; k++) {
    if ((at(*i + k) & 0xc0) != 0x80) {
      return -1;
    }
    cp = cp << 6 | (at(*i + k) & 0x3f);
  }
  static const long kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    return -1;
  }
  *i += n;
  return cp;
}

// Expected decodes |raw| as the log must show it: each well-formed
// character as itself, each other byte as U+00XX.
std::vector<long> Expected(const std::string &raw) {
  std::vector<long> out;
  for (size_t i = 0; i < raw.size();) {
    size_t j = i;
    long cp = Utf8Next(raw, &j);
    if (cp < 0) {
      out.push_back(static_cast<unsigned char>(raw[i]));
      i++;
    } else {
      out.push_back(cp);
      i = j;
    }
  }
  return out;
}

// JsonString decodes the JSON string that starts after |key| in |line|.
std::vector<long> JsonString(const std::string &line, const std::string &key,
                             bool *ok) {
  std::vector<long> out;
  *ok = false;
  size_t i = line.find(key);
  if (i == std::string::npos) {
    return out;
  }
  for (i += key.size(); i < line.size();) {
    char c = line[i];
    if (c == '"') {
      *ok = true;
      return out;
    }
    if (c == '\\') {
      char e = line[i + 1];
      if (e == 'u') {
        out.push_back(std::stol(line.substr(i + 2, 4), nullptr, 16));
        i += 6;
      } else {
        out.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
        i += 2;
      }
      continue;
    }
    long cp = Utf8Next(line, &i);
    if (cp < 0) {
      return out;  // a raw byte that is not UTF-8: not ok
    }
    out.push_back(cp);
  }
  return out;
}

// A fuzzed corpus of names (random bytes, NUL ends each C string, biased
// towards 0x80-0xff and the C0/C1 controls): every line is well-formed
// UTF-8 with no raw control but its final newline, and the value (JSON, or
// quoted text) decodes back to exactly what the peer sent.
TEST(ShimLog, FuzzedNamesGiveValidUtf8Lines) {
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  static const unsigned char kPool[] = {0x01, 0x09, 0x0a, 0x0d, 0x1b, 0x22,
                                        0x3d, 0x5c, 0x7f, 0x80, 0x9b, 0x9f,
                                        0xa0, 0xc2, 0xc3, 0xe2, 0xed, 0xef,
                                        0xf0, 0xf4, 0xf5, 0xff, 0x20, 0x41};
  for (int round = 0; round < 20000; round++) {
    std::string raw;
    size_t len = 1 + next() % 40;
    for (size_t k = 0; k < len; k++) {
      uint64_t r = next();
      unsigned char c = (r & 1) ? kPool[(r >> 1) % sizeof(kPool)]
                                : static_cast<unsigned char>(r >> 8);
      if (c == 0) {
        c = 'x';
      }
      raw.push_back(static_cast<char>(c));
    }
    for (policy_log_format fmt : {POLICY_LOG_JSON, POLICY_LOG_TEXT}) {
      std::string line = Format(NamedEvent(raw.c_str()), fmt);
      ASSERT_EQ('\n', line.back());
      for (size_t i = 0; i + 1 < line.size();) {
        long cp = Utf8Next(line, &i);
        ASSERT_GE(cp, 0) << "not UTF-8 at " << i << ": " << line;
        ASSERT_FALSE(cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            << "raw control " << cp << " in " << line;
      }
      if (fmt == POLICY_LOG_JSON) {
        ASSERT_EQ('{', line.front());
        ASSERT_EQ("}\n", line.substr(line.size() - 2));
        bool ok = false;
        EXPECT_EQ(Expected(raw), JsonString(line, "\"name\":\"", &ok)) << line;
        ASSERT_TRUE(ok) << line;
      } else if (line.find(" name=\"") != std::string::npos) {
        bool ok = false;
        EXPECT_EQ(Expected(raw), JsonString(line, " name=\"", &ok)) << line;
        ASSERT_TRUE(ok) << line;
      } else {
        // Unquoted only when it needs nothing escaped: then it is verbatim.
        EXPECT_NE(line.find(" name=" + raw + " "), std::string::npos) << line;
      }
    }
  }
}

}  // namespace
