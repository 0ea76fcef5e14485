// test_util.h: temp folders and PEM-looking files for the policy tests.
#ifndef TLSSHIM_TESTS_POLICY_TEST_UTIL_H
#define TLSSHIM_TESTS_POLICY_TEST_UTIL_H

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace policytest {

// A fresh folder under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char *tmp = getenv("TMPDIR");
    std::string tmpl =
        std::string(tmp != nullptr ? tmp : "/tmp") + "/tlsshim-policy-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return path_; }
  std::string Join(const std::string &rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string &path, const std::string &text,
                      mode_t mode = 0600) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) {
      throw std::runtime_error("cannot write " + path);
    }
  }
  if (chmod(path.c_str(), mode) != 0) {
    throw std::runtime_error("cannot chmod " + path);
  }
}

inline std::string ReadFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string Pem(const std::string &label) {
  return "-----BEGIN " + label + "-----\nTUlJQg==\n-----END " + label +
         "-----\n";
}

// Writes the files the fixtures name under DIR/certs/: for the policy
// layer only the PEM block markers matter, so these are not real keys.
inline void WriteCerts(const std::string &dir) {
  WriteFile(dir + "/certs/svc.pem", Pem("CERTIFICATE") + Pem("CERTIFICATE"));
  WriteFile(dir + "/certs/svc.key", Pem("PRIVATE KEY"), 0600);
  WriteFile(dir + "/certs/ec.key", Pem("EC PRIVATE KEY"), 0600);
  WriteFile(dir + "/certs/open.key", Pem("PRIVATE KEY"), 0644);
  WriteFile(dir + "/certs/ca.pem", Pem("CERTIFICATE"));
  WriteFile(dir + "/certs/ca.crl.pem", Pem("X509 CRL"));
  WriteFile(dir + "/certs/svc.ocsp", std::string("\x30\x03\x0a\x01\x00", 5));
  WriteFile(dir + "/certs/notpem.pem", "this is not a certificate\n");
  WriteFile(dir + "/certs/beginonly.pem", "-----BEGIN CERTIFICATE-----\nMII\n");
}

}  // namespace policytest

#endif  // TLSSHIM_TESTS_POLICY_TEST_UTIL_H
