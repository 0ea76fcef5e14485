"""test_failures.py: the failure paths of SPEC section 6, each asserting the
errno the unmodified program sees AND the shim's log line with the reason."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TIMEOUT = 30


@harness.skip_if_plain("failure paths exist only with TLS")
class Failures(harness.ShimTestCase):

    def expect(self, port, errno_name, rules=None, timeout=TIMEOUT, **tls):
        """tcp_client under an outbound tls rule for |port| must fail with
        |errno_name|; returns its Result."""
        if rules is None:
            rules = [self.out_rule("out", ports=[port], **tls)]
        r = self.tcp_client(port, policy=self.policy(rules),
                            extra=["--expect-error", errno_name], timeout=timeout)
        self.assertEqual(r.returncode, 0, "expected the program to see %s\n%s"
                         % (errno_name, r.describe()))
        self.assertIn("error=%s" % errno_name, r.stdout, r.describe())
        return r

    def tls_peer(self, cert="server", **kw):
        return self.peer(harness.TLSEchoServer(harness.tls_server_context(
            self.certs, cert=cert, **kw)))

    # -- outbound: verification --

    def test_expired_certificate(self):
        p = self.tls_peer("expired")
        r = self.expect(p.port, "EPROTO")
        self.assert_log_event(r.log, "failed", reason="certificate has expired", rule="out")

    def test_not_yet_valid_certificate(self):
        p = self.tls_peer("notyet")
        r = self.expect(p.port, "EPROTO")
        self.assert_log_event(r.log, "failed", reason="certificate is not yet valid")

    def test_wrong_ca(self):
        p = self.tls_peer("wrongca")
        r = self.expect(p.port, "EPROTO")
        self.assert_log_event(r.log, "failed",
                              reason="certificate not signed by a trusted CA")

    def test_wrong_name(self):
        p = self.tls_peer("server")
        r = self.expect(p.port, "EPROTO", server_name="db.internal")
        self.assert_log_event(r.log, "failed",
                              reason="peer name mismatch: wanted db.internal")

    def test_peer_names_not_allowed(self):
        p = self.tls_peer("server")
        r = self.expect(p.port, "EPROTO", peer_names=["spiffe://test/ns/default/sa/other"])
        self.assert_log_event(r.log, "failed", reason="peer identity not allowed")

    def test_sha1_signature_refused(self):
        p = self.tls_peer("sha1")
        r = self.expect(p.port, "EPROTO")
        self.assert_log_event(r.log, "failed", reason="certificate signed with SHA-1")

    def test_revoked_certificate(self):
        p = self.tls_peer("revoked")
        r = self.expect(p.port, "EPROTO", trust="ca_crl")
        self.assert_log_event(r.log, "failed", reason="certificate revoked")

    # -- outbound: negotiation --

    def test_no_common_version(self):
        srv, port = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-tls1_2"])
        r = self.expect(port, "EPROTO", protocols={"min": "TLS1.3"})
        self.assert_log_event(r.log, "failed", reason="no common protocol version")

    def test_no_common_cipher(self):
        srv, port = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-tls1_2", "-cipher",
                                         "ECDHE-ECDSA-AES256-GCM-SHA384"])
        r = self.expect(port, "EPROTO", protocols={"max": "TLS1.2"},
                        ciphers=["ECDHE-ECDSA-AES128-GCM-SHA256"])
        self.assert_log_event(r.log, "failed", reason="no common cipher")

    def test_server_requires_client_certificate(self):
        # No identity on the rule: the server's demand cannot be met.
        p = self.tls_peer("server", require_client_cert=True)
        r = self.expect(p.port, "EPROTO")
        self.assert_log_event(r.log, "failed")

    # -- outbound: peers that misbehave --

    def test_silent_peer_times_out(self):
        p = self.peer(harness.SilentListener())
        t0 = time.monotonic()
        r = self.expect(p.port, "ETIMEDOUT", handshake_timeout_ms=500)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 5.0, "ETIMEDOUT came after %.1fs, handshake_timeout_ms "
                        "was 500\n%s" % (elapsed, r.describe()))
        self.assertGreaterEqual(r.elapsed, 0.45, "ETIMEDOUT before the 500 ms timeout\n"
                                + r.describe())
        self.assert_log_event(r.log, "failed", reason="handshake timeout")

    def test_garbage_peer(self):
        p = self.peer(harness.RawListener("garbage"))
        r = self.expect(p.port, "EPROTO")
        self.assert_log_event(r.log, "failed", reason="garbage")

    def test_plaintext_peer(self):
        # A plaintext echo server answers the ClientHello with itself.
        srv, port = self.start_echo_server("thread")
        r = self.expect(port, "EPROTO")
        self.assert_log_event(r.log, "failed", rule="out")

    def test_peer_resets_mid_record(self):
        p = self.peer(harness.TLSResetMidRecordServer(
            harness.tls_server_context(self.certs)))
        r = self.expect(p.port, "ECONNRESET")
        self.assert_log_event(r.log, "failed", reason="reset")

    def test_peer_closes_during_handshake(self):
        p = self.peer(harness.RawListener("close"))
        r = self.expect(p.port, "EPROTO")
        self.assert_log_event(r.log, "failed",
                              reason="peer closed the connection during the handshake")

    def test_connection_refused_is_tcp(self):
        port = harness.free_port()
        r = self.expect(port, "ECONNREFUSED")
        self.assertNotIn('"established"', r.log)

    def test_deny(self):
        p = self.peer(harness.RawListener("record"))
        r = self.expect(p.port, "EACCES",
                        rules=[self.out_rule("no", ports=[p.port], action="deny")])
        self.assert_log_event(r.log, "denied", rule="no")
        self.assertEqual(p.all_bytes(), b"", "a denied connection sent bytes")
        self.assertEqual(p.accepted, 0, "a denied connect reached the peer")

    # -- inbound --

    def test_inbound_client_without_certificate(self):
        pol = self.policy([self.in_rule("in", addresses=["127.0.0.1"],
                                        client_auth="required")])
        srv, port = self.start_echo_server("thread", policy=pol)
        r = self.s_client(port, [])
        self.assertNotIn(self.S_CLIENT_TOKEN, r.stdout(), "the echo came back\n" + r.describe())
        harness.wait_for(lambda: "ECONNRESET" in srv.stderr(), 10,
                         "the echo server to report ECONNRESET\n" + srv.describe())
        self.assertIn("read: ECONNRESET", srv.stderr())
        self.assert_log_event(srv.log(), "failed",
                              reason="client certificate required but none was sent")

    def test_inbound_no_common_cipher(self):
        pol = self.policy([self.in_rule("in", addresses=["127.0.0.1"], client_auth="none",
                                        protocols={"max": "TLS1.2"},
                                        ciphers=["ECDHE-ECDSA-AES128-GCM-SHA256"])])
        srv, port = self.start_echo_server("thread", policy=pol)
        r = self.s_client(port, ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"])
        self.assertNotIn(self.S_CLIENT_TOKEN, r.stdout(), "the echo came back\n" + r.describe())
        harness.wait_for(lambda: "ECONNRESET" in srv.stderr(), 10,
                         "the echo server to report ECONNRESET\n" + srv.describe())
        self.assert_log_event(srv.log(), "failed", reason="no common cipher: client offered")

    def test_inbound_wrong_client_identity(self):
        pol = self.policy([self.in_rule("in", addresses=["127.0.0.1"],
                                        peer_names=["spiffe://test/ns/default/sa/client"])])
        srv, port = self.start_echo_server("thread", policy=pol)
        r = self.s_client(port, ["-cert", self.cert("other_client.pem"), "-key",
                                 self.cert("other_client.key")])
        self.assertNotIn(self.S_CLIENT_TOKEN, r.stdout(), "the echo came back\n" + r.describe())
        harness.wait_for(lambda: "ECONNRESET" in srv.stderr(), 10,
                         "the echo server to report ECONNRESET\n" + srv.describe())
        self.assert_log_event(srv.log(), "failed", reason="peer identity not allowed")

    def test_inbound_silent_client_times_out(self):
        pol = self.policy([self.in_rule("in", addresses=["127.0.0.1"],
                                        handshake_timeout_ms=500)])
        srv, port = self.start_echo_server("thread", policy=pol)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            harness.wait_for(lambda: "conn 0: read:" in srv.stderr(), 10,
                             "the echo server's read to fail\n" + srv.describe())
            self.assertIn("conn 0: read: ETIMEDOUT", srv.stderr())
            self.assert_log_event(srv.log(), "failed", reason="handshake timeout")
        finally:
            s.close()

    def test_inbound_deny_goes_on_to_next(self):
        pol = self.policy([self.in_rule("in", addresses=["127.0.0.1"], action="deny")])
        # --max-conns 1: if accept returned the denied connection, the server
        # would finish with it and exit.
        srv, port = self.start_echo_server("thread", policy=pol, extra=["--max-conns", "1"])
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.settimeout(10)
        try:
            self.assertEqual(s.recv(10), b"", "a denied inbound connection sent bytes")
        except ConnectionResetError:
            pass
        except socket.timeout:
            self.fail("a denied inbound connection was still open after 10 s\n"
                      + srv.describe())
        finally:
            s.close()
        self.assertTrue(srv.alive(), srv.describe())
        self.assert_log_event(srv.log(), "denied", rule="in")


if __name__ == "__main__":
    harness.main()
