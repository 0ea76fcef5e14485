// match_test.cc: rule matching (addresses, names, ports, order, direction)
// and the address and name helpers.
#include <gtest/gtest.h>

#include <string>

#include "policy/policy.h"
#include "policy/test_util.h"

namespace {

struct policy_endpoint Ep(const char *addr, uint16_t port,
                          const char *name = nullptr) {
  struct policy_endpoint ep = {};
  EXPECT_TRUE(policy_parse_address(addr, ep.addr)) << addr;
  ep.port = port;
  ep.name = name;
  return ep;
}

class PolicyMatch : public testing::Test {
 protected:
  void TearDown() override { policy_free(p_); }
  void Load(const std::string &text) {
    struct policy_diag err;
    ASSERT_EQ(policy_load_buffer(&p_, "/nonexistent/p.yaml", text.data(),
                                 text.size(), &err, nullptr),
              0)
        << err.line << ":" << err.col << ": " << err.message;
  }
  // The name of the matching rule, or "default:<action>".
  std::string Match(enum policy_direction dir,
                    const struct policy_endpoint &ep) {
    const struct policy_rule *r = policy_match(p_, dir, &ep);
    if (r == nullptr) {
      return std::string("default:") +
             policy_action_name(policy_action_of(p_, r));
    }
    return r->name;
  }
  std::string Out(const char *addr, uint16_t port, const char *name = nullptr) {
    return Match(POLICY_OUTBOUND, Ep(addr, port, name));
  }
  std::string In(const char *addr, uint16_t port) {
    return Match(POLICY_INBOUND, Ep(addr, port));
  }
  struct policy *p_ = nullptr;
};

TEST_F(PolicyMatch, CidrIPv4) {
  Load(R"(version: 1
rules:
  - {name: ten, direction: outbound, action: deny, match: {addresses: [10.0.0.0/8]}}
  - {name: host, direction: outbound, action: deny, match: {addresses: [192.168.1.7]}}
  - {name: odd, direction: outbound, action: deny, match: {addresses: [172.16.0.0/12]}}
  - {name: hostbits, direction: outbound, action: deny, match: {addresses: [100.64.1.2/10]}}
)");
  EXPECT_EQ(Out("10.0.0.1", 80), "ten");
  EXPECT_EQ(Out("10.255.255.255", 80), "ten");
  EXPECT_EQ(Out("11.0.0.0", 80), "default:plaintext");
  EXPECT_EQ(Out("192.168.1.7", 80), "host");
  EXPECT_EQ(Out("192.168.1.8", 80), "default:plaintext");
  EXPECT_EQ(Out("172.31.255.1", 80), "odd");
  EXPECT_EQ(Out("172.32.0.1", 80), "default:plaintext");
  EXPECT_EQ(Out("100.127.0.1", 80), "hostbits");
  EXPECT_EQ(Out("100.128.0.1", 80), "default:plaintext");
  // An IPv4 rule never matches a native IPv6 address.
  EXPECT_EQ(Out("::a00:1", 80), "default:plaintext");
}

TEST_F(PolicyMatch, CidrIPv6AndMapped) {
  Load(R"(version: 1
rules:
  - {name: loop4, direction: outbound, action: deny, match: {addresses: [127.0.0.1]}}
  - {name: loop6, direction: outbound, action: deny, match: {addresses: ["::1"]}}
  - {name: doc, direction: outbound, action: deny, match: {addresses: ["2001:db8::/32"]}}
  - {name: ula, direction: outbound, action: deny, match: {addresses: ["fd00::/7"]}}
  - {name: all4, direction: outbound, action: deny, match: {addresses: [0.0.0.0/0]}}
)");
  EXPECT_EQ(Out("127.0.0.1", 1), "loop4");
  EXPECT_EQ(Out("::ffff:127.0.0.1", 1), "loop4");
  EXPECT_EQ(Out("::ffff:7f00:1", 1), "loop4");
  EXPECT_EQ(Out("::1", 1), "loop6");
  EXPECT_EQ(Out("2001:db8:ffff::1", 1), "doc");
  EXPECT_EQ(Out("2001:db9::1", 1), "default:plaintext");
  EXPECT_EQ(Out("fc00::1", 1), "ula");
  EXPECT_EQ(Out("fe00::1", 1), "default:plaintext");
  EXPECT_EQ(Out("8.8.8.8", 1), "all4");  // 0.0.0.0/0 covers every IPv4
  EXPECT_EQ(Out("2002::1", 1), "default:plaintext");
}

TEST_F(PolicyMatch, NamesAndWildcards) {
  Load(R"(version: 1
default_action: deny
rules:
  - {name: exact, direction: outbound, action: plaintext, match: {names: [Redis.Internal]}}
  - {name: wild, direction: outbound, action: plaintext, match: {names: ["*.svc.cluster.local"]}}
)");
  EXPECT_EQ(Out("10.0.0.1", 6379, "redis.internal"), "exact");
  EXPECT_EQ(Out("10.0.0.1", 6379, "REDIS.INTERNAL."), "exact");
  EXPECT_EQ(Out("10.0.0.1", 6379, "db.svc.cluster.local"), "wild");
  EXPECT_EQ(Out("10.0.0.1", 6379, "DB.SVC.Cluster.Local."), "wild");
  EXPECT_EQ(Out("10.0.0.1", 6379, "a.db.svc.cluster.local"), "default:deny");
  EXPECT_EQ(Out("10.0.0.1", 6379, "svc.cluster.local"), "default:deny");
  EXPECT_EQ(Out("10.0.0.1", 6379, "xredis.internal"), "default:deny");
  // A rule with names never matches a connection that has no name.
  EXPECT_EQ(Out("10.0.0.1", 6379, nullptr), "default:deny");
}

TEST_F(PolicyMatch, PortsAndRanges) {
  Load(R"(version: 1
rules:
  - {name: r, direction: outbound, action: deny, match: {ports: [6379, "7000-7010", 65535]}}
)");
  EXPECT_EQ(Out("1.2.3.4", 6379), "r");
  EXPECT_EQ(Out("1.2.3.4", 6380), "default:plaintext");
  EXPECT_EQ(Out("1.2.3.4", 6999), "default:plaintext");
  EXPECT_EQ(Out("1.2.3.4", 7000), "r");
  EXPECT_EQ(Out("1.2.3.4", 7005), "r");
  EXPECT_EQ(Out("1.2.3.4", 7010), "r");
  EXPECT_EQ(Out("1.2.3.4", 7011), "default:plaintext");
  EXPECT_EQ(Out("1.2.3.4", 65535), "r");
}

TEST_F(PolicyMatch, EveryFieldMustMatch) {
  Load(R"(version: 1
rules:
  - name: all
    direction: outbound
    action: deny
    match: {addresses: [10.0.0.0/8], ports: [443], names: [api.example.com]}
)");
  EXPECT_EQ(Out("10.1.2.3", 443, "api.example.com"), "all");
  EXPECT_EQ(Out("11.1.2.3", 443, "api.example.com"), "default:plaintext");
  EXPECT_EQ(Out("10.1.2.3", 444, "api.example.com"), "default:plaintext");
  EXPECT_EQ(Out("10.1.2.3", 443, "www.example.com"), "default:plaintext");
}

TEST_F(PolicyMatch, FirstMatchWins) {
  Load(R"(version: 1
rules:
  - {name: first, direction: outbound, action: deny, match: {ports: [443]}}
  - {name: second, direction: outbound, action: plaintext, match: {addresses: [10.0.0.0/8]}}
  - {name: catchall, direction: outbound, action: plaintext}
)");
  EXPECT_EQ(Out("10.0.0.1", 443), "first");
  EXPECT_EQ(Out("10.0.0.1", 80), "second");
  EXPECT_EQ(Out("8.8.8.8", 80), "catchall");
  const struct policy_endpoint ep = Ep("10.0.0.1", 443);
  const struct policy_rule *r = policy_match(p_, POLICY_OUTBOUND, &ep);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->index, 0u);
  EXPECT_EQ(policy_action_of(p_, r), POLICY_ACTION_DENY);
}

TEST_F(PolicyMatch, DefaultAction) {
  Load("version: 1\ndefault_action: deny\n");
  EXPECT_EQ(Out("1.1.1.1", 1), "default:deny");
  EXPECT_EQ(In("1.1.1.1", 1), "default:deny");
  EXPECT_EQ(policy_action_of(p_, nullptr), POLICY_ACTION_DENY);
  EXPECT_EQ(policy_action_of(nullptr, nullptr), POLICY_ACTION_DENY);
}

TEST_F(PolicyMatch, DirectionsAreSeparate) {
  Load(R"(version: 1
rules:
  - {name: in, direction: inbound, action: deny, match: {ports: [8080]}}
  - {name: out, direction: outbound, action: deny, match: {ports: [8080]}}
)");
  EXPECT_EQ(In("127.0.0.1", 8080), "in");
  EXPECT_EQ(Out("127.0.0.1", 8080), "out");
  EXPECT_EQ(In("127.0.0.1", 8081), "default:plaintext");
}

TEST(PolicyName, Matches) {
  EXPECT_TRUE(policy_name_matches("a.b", "a.b"));
  EXPECT_TRUE(policy_name_matches("a.b.", "A.B"));
  EXPECT_TRUE(policy_name_matches("*.b.c", "x.b.c."));
  EXPECT_FALSE(policy_name_matches("*.b.c", ".b.c"));
  EXPECT_FALSE(policy_name_matches("*.b.c", "b.c"));
  EXPECT_FALSE(policy_name_matches("*.b.c", "x.y.b.c"));
  EXPECT_FALSE(policy_name_matches("a.b", "a.bc"));
  EXPECT_FALSE(policy_name_matches("a.b", ""));
  EXPECT_FALSE(policy_name_matches("", "a"));
  EXPECT_FALSE(policy_name_matches(nullptr, "a"));
  EXPECT_FALSE(policy_name_matches("a", nullptr));
}

TEST(PolicyAddress, ParseAndFormat) {
  const char *const round_trip[] = {
      "127.0.0.1", "0.0.0.0",     "255.255.255.255",      "::1",
      "::",        "2001:db8::1", "fe80::1:2:3:4",        "1:2:3:4:5:6:7:8",
      "1::8",      "1:0:0:2::3",  "2001:db8:0:1:1:1:1:1",
  };
  for (const char *text : round_trip) {
    uint8_t a[16];
    ASSERT_TRUE(policy_parse_address(text, a)) << text;
    char buf[64];
    EXPECT_STREQ(policy_format_address(a, buf, sizeof(buf)), text);
  }
  uint8_t a[16], b[16];
  ASSERT_TRUE(policy_parse_address("::ffff:10.1.2.3", a));
  ASSERT_TRUE(policy_parse_address("10.1.2.3", b));
  EXPECT_EQ(memcmp(a, b, 16), 0);
  ASSERT_TRUE(policy_parse_address("64:ff9b::192.0.2.33", a));
  EXPECT_EQ(a[15], 33);
  ASSERT_TRUE(policy_parse_address("2001:DB8::A", a));
  char buf[64];
  EXPECT_STREQ(policy_format_address(a, buf, sizeof(buf)), "2001:db8::a");
  const char *const bad[] = {
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.4 ",
      "a.b.c.d",
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "12345::",
      "1:2:3:4:5:6:7",
      ":1::",
      "1::2:",
      "::1.2.3",
      "1:2:3:4:5:6:7:1.2.3.4",
      "g::1",
      "1:2:3:4:5:6:7:8::",
      "fe80::1%eth0",
  };
  for (const char *text : bad) {
    EXPECT_FALSE(policy_parse_address(text, a)) << text;
  }
  EXPECT_FALSE(policy_parse_address(nullptr, a));
}

TEST(PolicyNames, EnumNames) {
  EXPECT_STREQ(policy_action_name(POLICY_ACTION_TLS), "tls");
  EXPECT_STREQ(policy_action_name(POLICY_ACTION_PERMISSIVE), "permissive");
  EXPECT_STREQ(policy_action_name(POLICY_ACTION_PLAINTEXT), "plaintext");
  EXPECT_STREQ(policy_action_name(POLICY_ACTION_DENY), "deny");
  EXPECT_STREQ(policy_direction_name(POLICY_OUTBOUND), "outbound");
  EXPECT_STREQ(policy_direction_name(POLICY_INBOUND), "inbound");
  EXPECT_STREQ(policy_version_name(POLICY_TLS1_2), "TLS1.2");
  EXPECT_STREQ(policy_version_name(POLICY_TLS1_3), "TLS1.3");
  EXPECT_STREQ(policy_version_name(0x0301), "unknown");
}

}  // namespace
