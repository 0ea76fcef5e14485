"""test_scanner.py: a TLS scanner (sslscan, the system OpenSSL) probes an
unmodified echo server under the shim. It must see exactly what the policy
says — TLS 1.2 and 1.3 only, the policy's TLS 1.2 ciphers and groups, no
renegotiation — and the server must survive the scan and serve afterwards."""

import os
import re
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ShimTestCase  # noqa: E402


@unittest.skipUnless(shutil.which("sslscan"), "sslscan is not installed "
                     "(scripts/setup.sh installs it)")
class Scanner(ShimTestCase):
    def scan(self, port):
        r = self.run_plain(["sslscan", "--no-colour", "127.0.0.1:%d" % port],
                           timeout=120, what="sslscan")
        self.assertEqual(r.returncode, 0, r.describe())
        return r.stdout

    def test_scan_sees_the_policy_and_the_server_survives(self):
        policy = self.policy([self.in_rule(
            "scanned", addresses=["127.0.0.1"], client_auth="none",
            ciphers=["ECDHE-ECDSA-AES128-GCM-SHA256",
                     "ECDHE-ECDSA-CHACHA20-POLY1305"],
            groups=["X25519", "P-256"])], level="warn")
        srv, port = self.start_echo_server("epoll-et", policy=policy)
        out = self.scan(port)
        for proto, state in (("SSLv2", "disabled"), ("SSLv3", "disabled"),
                             ("TLSv1.0", "disabled"), ("TLSv1.1", "disabled"),
                             ("TLSv1.2", "enabled"), ("TLSv1.3", "enabled")):
            self.assertRegex(out, r"(?m)^%s\s+%s" % (re.escape(proto), state), out)
        self.assertIn("Session renegotiation not supported", out)
        tls12 = set(re.findall(r"(?m)^(?:Preferred|Accepted)\s+TLSv1\.2\s+\d+ bits\s+(\S+)", out))
        self.assertEqual(tls12, {"ECDHE-ECDSA-AES128-GCM-SHA256",
                                 "ECDHE-ECDSA-CHACHA20-POLY1305"}, out)
        self.assertRegex(out, r"(?m)^Preferred\s+TLSv1\.2\s+128 bits\s+"
                              r"ECDHE-ECDSA-AES128-GCM-SHA256", out)
        groups = set(re.findall(r"(?m)^TLSv1\.[23]\s+\d+ bits\s+(\S+)", out))
        self.assertEqual(groups, {"secp256r1", "x25519"}, out)
        # Still alive, and still serving TLS after hundreds of probes.
        self.assertTrue(srv.alive(), srv.describe())
        r = self.tcp_client(port, "rw", 1 << 20, policy=self.policy([self.out_rule(
            "out", ports=[port], server_name="localhost")]))
        self.assert_echo_ok(r, 1 << 20)


if __name__ == "__main__":
    unittest.main(verbosity=2)
