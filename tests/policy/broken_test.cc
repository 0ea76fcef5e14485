// broken_test.cc: every fixture in tests/policy/broken/ holds one mistake and
// starts with "# expect: line L col C: MESSAGE", the exact text that
// policy_diag_format prints after "policy PATH: ". The CLI tests reuse the
// same convention.
#include <errno.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "policy/policy.h"
#include "policy/test_util.h"

namespace {

std::string BrokenDir() {
  return std::string(TLSSHIM_TEST_DIR) + "/policy/broken";
}

std::vector<std::string> Fixtures() {
  std::vector<std::string> names;
  for (const auto &entry : std::filesystem::directory_iterator(BrokenDir())) {
    if (entry.path().extension() == ".yaml") {
      names.push_back(entry.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// "the_name" -> "TheName", for googletest parameter names.
std::string CamelCase(const std::string &s) {
  std::string out;
  bool up = true;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) {
      up = true;
      continue;
    }
    out +=
        up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    up = false;
  }
  return out;
}

std::string LineOf(const std::string &text, int line) {
  size_t start = 0;
  for (int l = 1; l < line; l++) {
    start = text.find('\n', start);
    if (start == std::string::npos) {
      return "";
    }
    start++;
  }
  size_t end = text.find('\n', start);
  return text.substr(
      start, end == std::string::npos ? std::string::npos : end - start);
}

class PolicyBroken : public testing::TestWithParam<std::string> {};

TEST_P(PolicyBroken, FailsWithExactDiagnostic) {
  std::string text =
      policytest::ReadFile(BrokenDir() + "/" + GetParam() + ".yaml");
  const std::string prefix = "# expect: ";
  ASSERT_EQ(text.compare(0, prefix.size(), prefix), 0)
      << "fixture must start with '# expect: '";
  std::string expect =
      text.substr(prefix.size(), text.find('\n') - prefix.size());
  int line = 0, col = 0;
  ASSERT_EQ(sscanf(expect.c_str(), "line %d col %d:", &line, &col), 2)
      << expect;

  policytest::TempDir dir;
  policytest::WriteCerts(dir.path());
  std::string path = dir.Join("policy.yaml");
  std::string body = text;
  policytest::WriteFile(path, body);

  struct policy *p = nullptr;
  struct policy_diag err;
  struct policy_diags warnings = {};
  int rc = policy_load(&p, path.c_str(), &err, &warnings);
  EXPECT_LT(rc, 0);
  EXPECT_EQ(p, nullptr);
  char buf[1200];
  EXPECT_EQ(std::string(policy_diag_format(&err, buf, sizeof(buf))),
            "policy " + path + ": " + expect);
  EXPECT_EQ(err.line, line);
  EXPECT_EQ(err.col, col);
  EXPECT_EQ(std::string(err.source_line), LineOf(body, line));
  policy_free(p);
  policy_diags_cleanup(&warnings);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, PolicyBroken, testing::ValuesIn(Fixtures()),
    [](const testing::TestParamInfo<std::string> &param_info) {
      return CamelCase(param_info.param);
    });

TEST(PolicyBrokenSet, HasAtLeastFortyFixtures) {
  EXPECT_GE(Fixtures().size(), 40u);
}

// The same text loaded from memory gives the same diagnostic.
TEST(PolicyBrokenSet, BufferMatchesFile) {
  std::string text =
      policytest::ReadFile(BrokenDir() + "/rule_unknown_key.yaml");
  policytest::TempDir dir;
  policytest::WriteCerts(dir.path());
  std::string path = dir.Join("policy.yaml");
  struct policy *p = nullptr;
  struct policy_diag err;
  ASSERT_LT(policy_load_buffer(&p, path.c_str(), text.data(), text.size(), &err,
                               nullptr),
            0);
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(err.line, 13);
  EXPECT_EQ(err.col, 5);
  EXPECT_STREQ(err.message, "unknown key 'actoin' (did you mean 'action'?)");
  EXPECT_STREQ(err.source_line, "    actoin: plaintext");
  EXPECT_EQ(std::string(err.file), path);
}

TEST(PolicyBrokenSet, MissingPolicyFile) {
  policytest::TempDir dir;
  std::string path = dir.Join("nope.yaml");
  struct policy *p = nullptr;
  struct policy_diag err;
  EXPECT_EQ(policy_load(&p, path.c_str(), &err, nullptr), -ENOENT);
  EXPECT_EQ(p, nullptr);
  char buf[1200];
  EXPECT_EQ(std::string(policy_diag_format(&err, buf, sizeof(buf))),
            "policy " + path + ": cannot open: No such file or directory");
}

}  // namespace
