"""test_fail_closed.py: what a program under a `tls` rule puts on the wire is
TLS from the first byte, its plaintext never appears (also when the handshake
fails), and a `deny` rule sends nothing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# tcp_client --expect-error writes exactly this after connect().
PLAINTEXT = b"hello, plaintext that must never leak"
TIMEOUT = 20


class FailClosed(harness.ShimTestCase):

    def client(self, port, rules, expect, default_action="plaintext"):
        # PLAIN: nothing answers the silent listener; give up quickly.
        t = 2 if harness.PLAIN else TIMEOUT
        argv = [harness.prog("tcp_client"), "--host", "127.0.0.1", "--port", str(port),
                "--expect-error", expect, "--timeout", str(t)]
        return self.run_under_shim(argv, self.policy(rules, default_action=default_action),
                                   timeout=t + 5, what="tcp_client")

    def assert_tls_only(self, data, r):
        self.assertGreater(len(data), 5, "the peer received no bytes\n" + r.describe())
        if harness.PLAIN:
            # Validates the listener: without the shim the plaintext shows.
            self.assertIn(PLAINTEXT, data)
            return
        self.assertEqual(data[:2], b"\x16\x03",
                         "the first bytes are not a TLS handshake record: %r\n%s"
                         % (data[:16], r.describe()))
        self.assertEqual(data[5], 0x01, "the first handshake message is not a ClientHello")
        self.assertNotIn(PLAINTEXT, data, "the program's plaintext reached the wire")
        self.assertNotIn(b"plaintext that must", data)

    def test_silent_peer_sees_only_client_hello(self):
        p = self.peer(harness.RawListener("record"))
        r = self.client(p.port, [self.out_rule("out", ports=[p.port],
                                               handshake_timeout_ms=500)],
                        "ETIMEDOUT")
        p.wait_finished(1)
        if not harness.PLAIN:
            self.assertEqual(r.returncode, 0, "expected ETIMEDOUT\n" + r.describe())
        self.assert_tls_only(p.all_bytes(), r)

    def test_failed_handshake_leaks_nothing(self):
        p = self.peer(harness.RawListener("garbage"))
        r = self.client(p.port, [self.out_rule("out", ports=[p.port])], "EPROTO")
        p.wait_finished(1)
        if not harness.PLAIN:
            self.assertEqual(r.returncode, 0, "expected EPROTO\n" + r.describe())
        self.assert_tls_only(p.all_bytes(), r)

    def test_peer_closing_early_leaks_nothing(self):
        p = self.peer(harness.RawListener("close"))
        r = self.client(p.port, [self.out_rule("out", ports=[p.port])], "EPROTO")
        p.wait_finished(1)
        self.assert_tls_only(p.all_bytes(), r)

    def test_default_action_deny_sends_nothing(self):
        p = self.peer(harness.RawListener("record"))
        r = self.client(p.port, [self.out_rule("other", ports=[1])], "EACCES",
                        default_action="deny")
        if harness.PLAIN:
            return
        self.assertEqual(r.returncode, 0, "expected EACCES\n" + r.describe())
        self.assertEqual(p.accepted, 0, "a denied connect reached the peer")
        self.assertEqual(p.all_bytes(), b"")

    def test_deny_rule_sends_nothing(self):
        p = self.peer(harness.RawListener("record"))
        r = self.client(p.port, [self.out_rule("no", ports=[p.port], action="deny")],
                        "EACCES")
        if harness.PLAIN:
            return
        self.assertEqual(r.returncode, 0, "expected EACCES\n" + r.describe())
        self.assertEqual(p.accepted, 0, "a denied connect reached the peer")
        self.assertEqual(p.all_bytes(), b"", "a denied connection sent bytes")
        self.assert_log_event(r.log, "denied", rule="no")


if __name__ == "__main__":
    harness.main()
