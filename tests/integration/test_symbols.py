"""test_symbols.py: libtlsshim.so exports only the interposed libc calls and
the tlsshim_* API (BoringSSL and libyaml hidden), and depends on nothing but
the C library family (SPEC section 2)."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

FORBIDDEN_PREFIXES = ("SSL_", "EVP_", "X509", "CRYPTO_", "yaml_", "_Z", "BIO_", "ERR_",
                      "OPENSSL_", "BN_", "EC_", "RSA_", "bssl", "policy_", "tlsconn_",
                      "session_", "fdtable_", "log_")

# The libc calls the shim may interpose (SPEC sections 1 and 6).
INTERPOSABLE = set("""
socket connect accept accept4 read write recv send recvfrom sendto readv writev
recvmsg sendmsg sendfile sendfile64 close shutdown dup dup2 dup3 fcntl fcntl64
ioctl getsockopt setsockopt fork vfork execve execveat fexecve execv execvp
execvpe execl execlp execle getaddrinfo freeaddrinfo gethostbyname gethostbyname2
gethostbyname_r gethostbyname2_r poll ppoll select pselect __poll_chk __ppoll_chk
epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
__read_chk __recv_chk __recvfrom_chk close_range _exit recvmmsg sendmmsg
socketpair listen bind getpeername getsockname pread pwrite
pread64 pwrite64 preadv pwritev preadv64 pwritev64 preadv2 pwritev2 preadv64v2
pwritev64v2 __pread_chk __pread64_chk splice tee copy_file_range closefrom
""".split())

ALLOWED_LIBS = re.compile(r"^(linux-vdso\.so\.1|libc\.so\.6|libpthread\.so\.0|libdl\.so\.2|"
                          r"libm\.so\.6|/lib64/ld-linux-x86-64\.so\.2|ld-linux-x86-64\.so\.2|"
                          r"/lib/ld-linux-aarch64\.so\.1|ld-linux-aarch64\.so\.1)$")


class Symbols(unittest.TestCase):

    def setUp(self):
        if not os.path.exists(harness.LIB):
            self.fail("the shim is not built: %s does not exist" % harness.LIB)

    def exported(self):
        p = subprocess.run(["nm", "-D", "--defined-only", harness.LIB],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        syms = []
        for line in p.stdout.decode().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] != "A":  # A: version nodes
                syms.append(parts[2].split("@")[0])
        return syms

    def test_no_library_internals_exported(self):
        bad = [s for s in self.exported() if s.startswith(FORBIDDEN_PREFIXES)]
        self.assertEqual(bad, [], "internal symbols are exported: %s" % bad[:40])

    def test_only_expected_names(self):
        syms = self.exported()
        unexpected = [s for s in syms
                      if not s.startswith("tlsshim_") and s not in INTERPOSABLE]
        self.assertEqual(unexpected, [], "unexpected exported symbols: %s" % unexpected[:40])
        for must in ("connect", "accept", "read", "write", "close", "poll", "epoll_wait"):
            self.assertIn(must, syms, "the shim does not interpose %s" % must)
        self.assertTrue(any(s.startswith("tlsshim_") for s in syms),
                        "the tlsshim_* API is not exported")

    def test_ldd_only_libc_family(self):
        p = subprocess.run(["ldd", harness.LIB], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        libs = []
        for line in p.stdout.decode().splitlines():
            name = line.strip().split(" ")[0]
            if name:
                libs.append(name)
        bad = [l for l in libs if not ALLOWED_LIBS.match(l)]
        self.assertEqual(bad, [], "libtlsshim.so depends on more than the C library: %s\n%s"
                         % (bad, p.stdout.decode()))

    def test_no_undefined_ssl_or_yaml(self):
        p = subprocess.run(["nm", "-D", "--undefined-only", harness.LIB],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        bad = [l.split()[-1] for l in p.stdout.decode().splitlines()
               if l.split() and l.split()[-1].startswith(("SSL_", "EVP_", "yaml_", "_Z"))]
        self.assertEqual(bad, [], "the shim needs symbols from outside: %s" % bad)


if __name__ == "__main__":
    harness.main()
