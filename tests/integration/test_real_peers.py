"""test_real_peers.py: unmodified programs under the shim talking TLS to real,
independent TLS implementations (openssl s_server/s_client, Python's ssl),
and to each other."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TIMEOUT = 30
CLIENT_ID = "spiffe://test/ns/default/sa/client"
SERVER_ID = "spiffe://test/ns/default/sa/server"


@harness.skip_if_plain("real TLS peers need the shim")
class RealPeers(harness.ShimTestCase):

    def docroot(self):
        d = os.path.join(self.tmp, "www")
        os.makedirs(d, exist_ok=True)
        self.page = "tlsshim page %s\n" % os.path.basename(self.tmp)
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write(self.page)
        return d

    def s_server_www(self, extra=()):
        return self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                    self.cert("server.key"), "-WWW"] + list(extra),
                                   cwd=self.docroot())

    def curl(self, urls, policy, extra=()):
        argv = ["curl", "-sS", "--fail", "--max-time", str(TIMEOUT)] + list(extra) + urls
        return self.run_under_shim(argv, policy, timeout=TIMEOUT + 5, what="curl")

    # -- program under the shim -> real server --

    def test_curl_to_s_server(self):
        srv, port = self.s_server_www()
        pol = self.policy([self.out_rule("web", ports=[port])])
        r = self.curl(["http://127.0.0.1:%d/index.html" % port], pol)
        self.assertEqual(r.returncode, 0, r.describe() + "\n" + srv.describe())
        self.assertEqual(r.stdout, self.page)
        ev = self.assert_log_event(r.log, "established", direction="outbound", rule="web")
        self.assertEqual(ev.get("version"), "TLSv1.3", ev)

    def test_curl_by_name(self):
        # curl resolves "localhost" itself (no getaddrinfo), so the shim
        # sees only 127.0.0.1 and checks the IP SAN.
        srv, port = self.s_server_www()
        pol = self.policy([self.out_rule("web", ports=[port])])
        r = self.curl(["http://localhost:%d/index.html" % port], pol, extra=["-4"])
        self.assertEqual(r.returncode, 0, r.describe() + "\n" + srv.describe())
        self.assertEqual(r.stdout, self.page)

    def test_resolved_name_is_verified_and_sent(self):
        p = self.peer(harness.TLSEchoServer(harness.tls_server_context(self.certs)))
        pol = self.policy([self.out_rule("echo", ports=[p.port])])
        r = self.tcp_client(p.port, "rw", 1 << 16, host="localhost", policy=pol)
        self.assert_echo_ok(r, 1 << 16)
        self.assert_log_event(r.log, "established", name="localhost")

    def test_curl_with_server_name(self):
        srv, port = self.s_server_www()
        pol = self.policy([self.out_rule("web", ports=[port], server_name="server.test")])
        r = self.curl(["http://127.0.0.1:%d/index.html" % port], pol)
        self.assertEqual(r.returncode, 0, r.describe() + "\n" + srv.describe())
        self.assertEqual(r.stdout, self.page)
        self.assert_log_event(r.log, "established", name="server.test")

    def test_curl_mutual_tls_to_s_server(self):
        srv, port = self.s_server_www(["-Verify", "1", "-CAfile", self.cert("ca.pem"),
                                       "-verify_return_error"])
        pol = self.policy([self.out_rule("web", ports=[port], identity="client")])
        r = self.curl(["http://127.0.0.1:%d/index.html" % port], pol)
        self.assertEqual(r.returncode, 0, r.describe() + "\n" + srv.describe())
        self.assertEqual(r.stdout, self.page)
        self.assert_log_event(r.log, "established", peer_identity=SERVER_ID)

    def test_curl_mutual_tls_without_identity_fails(self):
        srv, port = self.s_server_www(["-Verify", "1", "-CAfile", self.cert("ca.pem"),
                                       "-verify_return_error"])
        pol = self.policy([self.out_rule("web", ports=[port])])
        r = self.curl(["http://127.0.0.1:%d/index.html" % port], pol)
        self.assertNotEqual(r.returncode, 0, r.describe())
        self.assertNotIn(self.page, r.stdout)
        self.assert_log_event(r.log, "failed", rule="web")

    def test_tcp_client_to_python_tls_echo_mutual(self):
        p = self.peer(harness.TLSEchoServer(harness.tls_server_context(
            self.certs, require_client_cert=True)))
        pol = self.policy([self.out_rule("echo", ports=[p.port], identity="client",
                                         peer_names=[SERVER_ID])])
        r = self.tcp_client(p.port, "rw", 4 << 20, policy=pol)
        self.assert_echo_ok(r, 4 << 20)
        p.wait_finished(1)
        self.assertEqual(p.sessions[0]["version"], "TLSv1.3")
        sans = p.sessions[0]["peer_cert"].get("subjectAltName", ())
        self.assertIn(("URI", CLIENT_ID), sans)

    def test_tcp_client_tls12_to_python(self):
        import ssl
        p = self.peer(harness.TLSEchoServer(harness.tls_server_context(
            self.certs, max_version=ssl.TLSVersion.TLSv1_2)))
        pol = self.policy([self.out_rule("echo", ports=[p.port])])
        r = self.tcp_client(p.port, "rw", 1 << 20, policy=pol)
        self.assert_echo_ok(r, 1 << 20)
        ev = self.assert_log_event(r.log, "established", rule="echo")
        self.assertEqual(ev.get("version"), "TLSv1.2", ev)

    # -- real client -> program under the shim --

    def test_s_client_to_echo_server(self):
        pol = self.policy([self.in_rule("in", addresses=["127.0.0.1"], client_auth="none")])
        srv, port = self.start_echo_server("epoll-et", policy=pol)
        c = self.s_client(port, [])
        out = c.stdout()
        self.assertIn("ECHO-TOKEN-7c1d", out, c.describe() + "\n" + srv.describe())
        self.assertIn("TLSv1.3", out, c.describe())
        self.assertIn("Verify return code: 0 (ok)", out, c.describe())
        self.assert_log_event(srv.log(), "established", direction="inbound", rule="in")

    def test_s_client_mutual_to_echo_server(self):
        pol = self.policy([self.in_rule("in", addresses=["127.0.0.1"], client_auth="required",
                                        peer_names=[CLIENT_ID])])
        srv, port = self.start_echo_server("thread", policy=pol)
        c = self.s_client(port, ["-cert", self.cert("client.pem"), "-key",
                                      self.cert("client.key")])
        self.assertIn("ECHO-TOKEN-7c1d", c.stdout(), c.describe() + "\n" + srv.describe())
        self.assert_log_event(srv.log(), "established", direction="inbound",
                              peer_identity=CLIENT_ID)

    def test_s_client_tls12_to_echo_server(self):
        pol = self.policy([self.in_rule("in", addresses=["127.0.0.1"], client_auth="none")])
        srv, port = self.start_echo_server("poll", policy=pol)
        c = self.s_client(port, ["-tls1_2"])
        self.assertIn("ECHO-TOKEN-7c1d", c.stdout(), c.describe() + "\n" + srv.describe())
        self.assertIn("TLSv1.2", c.stdout())

    # -- both ends under the shim --

    def test_both_programs_under_shim_mutual(self):
        spol = self.policy([self.in_rule("in", addresses=["127.0.0.1"],
                                         peer_names=[CLIENT_ID])])
        srv, port = self.start_echo_server("thread", policy=spol)
        cpol = self.policy([self.out_rule("out", ports=[port], identity="client",
                                          peer_names=[SERVER_ID])])
        r = self.tcp_client(port, "rw", 8 << 20, policy=cpol)
        self.assert_echo_ok(r, 8 << 20)
        self.assert_log_event(r.log, "established", peer_identity=SERVER_ID)
        self.assert_log_event(srv.log(), "established", peer_identity=CLIENT_ID)

    def test_ipv6_loopback(self):
        spol = self.policy([self.in_rule("in", addresses=["::1"])])
        srv, port = self.start_echo_server("thread", policy=spol, addr="::1")
        cpol = self.policy([self.out_rule("out", ports=[port], identity="client")])
        r = self.tcp_client(port, "rw", 1 << 20, host="::1", policy=cpol)
        self.assert_echo_ok(r, 1 << 20)
        self.assert_log_event(r.log, "established", rule="out", peer="[::1]:%d" % port)
        self.assert_log_event(srv.log(), "established", rule="in")


if __name__ == "__main__":
    harness.main()
