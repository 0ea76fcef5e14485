"""test_logging.py: the shim's event log (SPEC section 8) and the key log.

Every case runs a real peer against a program under the shim and pins the
EXACT log line: the whole set of keys and the value of each, in the text
format AND in the JSON format (the text line is parsed back into the same
dictionary, so both formats are held to one expectation)."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TIMEOUT = 30
FORMATS = ("text", "json")

SERVER_SANS = ("DNS:localhost, DNS:server.test, IP:127.0.0.1, IP:::1, "
               "URI:spiffe://test/ns/default/sa/server")
SERVER_ID = "spiffe://test/ns/default/sa/server"
CLIENT_ID = "spiffe://test/ns/default/sa/client"

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEXT_LINE_RE = re.compile(
    r'^(?P<ts>\S+) tlsshim\[(?P<pid>\d+)\] (?P<level>error|warn|info|debug)'
    r'(?P<fields>(?: [a-z_]+=(?:"(?:[^"\\]|\\.)*"|[^ "]*))*)$')
TEXT_FIELD_RE = re.compile(r' ([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]*)')
# Keys in the order log.c writes them (the text format keeps this order).
FIELD_ORDER = ("event", "direction", "rule", "local", "peer", "name", "version",
               "cipher", "group", "resumed", "peer_identity", "reason")
PEER_RE = re.compile(r"^127\.0\.0\.1:\d{1,5}$")


def parse_text_line(line):
    """One text log line as the dictionary its JSON twin would be; None if
    the line is not a well-formed text log line."""
    m = TEXT_LINE_RE.match(line)
    if m is None:
        return None
    ev = {"ts": m.group("ts"), "level": m.group("level"), "pid": int(m.group("pid"))}
    keys = []
    for key, raw in TEXT_FIELD_RE.findall(m.group("fields")):
        if key in ev:
            return None  # a key twice: not a line log.c writes
        keys.append(key)
        if raw.startswith('"'):
            value = json.loads(raw)  # log.c escapes quoted values as JSON does
        else:
            value = raw
        if key == "resumed":
            if value not in ("yes", "no"):
                return None
            value = value == "yes"
        ev[key] = value
    if keys != [k for k in FIELD_ORDER if k in keys]:
        return None  # fields out of the documented order
    return ev


def parse_log(test, text, fmt):
    """All lines of a shim log in format |fmt|; every line must parse."""
    evs = []
    for line in text.splitlines():
        if fmt == "json":
            try:
                ev = json.loads(line)
            except ValueError:
                ev = None
            if not isinstance(ev, dict):
                test.fail("not a JSON object line in the shim log: %r\nlog:\n%s" % (line, text))
        else:
            ev = parse_text_line(line)
            if ev is None:
                test.fail("not a well-formed text log line: %r\nlog:\n%s" % (line, text))
        test.assertRegex(ev.get("ts", ""), TS_RE, "bad ts in %r" % line)
        test.assertIsInstance(ev.get("pid"), int, "pid is not a number in %r" % line)
        test.assertNotIsInstance(ev.get("pid"), bool)
        if "resumed" in ev:
            test.assertIsInstance(ev["resumed"], bool, "resumed is not a boolean in %r" % line)
        evs.append(ev)
    return evs


@harness.skip_if_plain("the log exists only under the shim")
class LogTestCase(harness.ShimTestCase):
    """Helpers shared by the logging tests."""

    def pol(self, rules, fmt="json", level="info", **kw):
        p = self.policy(rules, **kw)
        p["log"] = {"level": level, "format": fmt}
        return p

    def events(self, text, fmt, event=None):
        evs = parse_log(self, text, fmt)
        if event is None:
            return evs
        return [e for e in evs if e.get("event") == event]

    def only(self, text, fmt, event, n=1):
        """Exactly |n| lines with |event|; returns them."""
        evs = self.events(text, fmt, event)
        self.assertEqual(len(evs), n, "expected %d line(s) event=%s in the %s log:\n%s"
                         % (n, event, fmt, text or "(empty)"))
        return evs

    def assert_line(self, ev, expected, pid=None, peer_re=None):
        """|ev| has exactly the keys ts, level, pid plus those of |expected|
        (+ 'peer' when |peer_re| is given), with these values."""
        keys = {"ts", "level", "pid"} | set(expected)
        if peer_re is not None:
            keys.add("peer")
            self.assertRegex(ev.get("peer", ""), peer_re, "peer of %r" % ev)
        self.assertEqual(set(ev), keys, "keys of the log line %r" % ev)
        for k, v in expected.items():
            self.assertEqual(ev[k], v, "%s of the log line %r" % (k, ev))
        if pid is not None:
            self.assertEqual(ev["pid"], pid, "pid of the log line %r" % ev)

    def tls_peer(self, cert="server", **kw):
        return self.peer(harness.TLSEchoServer(harness.tls_server_context(
            self.certs, cert=cert, **kw)))

    def client_fails(self, port, errno_name, rules, fmt, level="info", env=None):
        """tcp_client under |rules| must see |errno_name|; returns its Result."""
        argv = [harness.prog("tcp_client"), "--host", "127.0.0.1", "--port", str(port),
                "--style", "rw", "--bytes", "1000", "--timeout", str(TIMEOUT),
                "--expect-error", errno_name]
        r = self.run_under_shim(argv, self.pol(rules, fmt, level), env=env,
                                timeout=TIMEOUT + 5, what="tcp_client")
        self.assertEqual(r.returncode, 0, "expected the program to see %s\n%s"
                         % (errno_name, r.describe()))
        self.assertEqual(r.stdout, "error=%s\n" % errno_name, r.describe())
        return r

    def client_ok(self, port, rules, fmt="json", level="info", conns=1, env=None,
                  nbytes=1000):
        argv = [harness.prog("tcp_client"), "--host", "127.0.0.1", "--port", str(port),
                "--style", "rw", "--bytes", str(nbytes), "--conns", str(conns),
                "--timeout", str(TIMEOUT)]
        r = self.run_under_shim(argv, self.pol(rules, fmt, level), env=env,
                                timeout=TIMEOUT + 5, what="tcp_client")
        self.assert_echo_ok(r, nbytes, conns)
        return r

    def wait_log(self, bg, fmt, event, n=1, timeout=15.0):
        """Waits until |bg|'s log has |n| lines with |event|; returns them."""
        harness.wait_for(lambda: len(self.events(bg.log(), fmt, event)) >= n, timeout,
                         "%d line(s) event=%s in the log of %s\n%s"
                         % (n, event, bg.name, bg.describe()))
        return self.events(bg.log(), fmt, event)


class OutboundFailures(LogTestCase):
    """One exact `failed` line per reason, for a client under the shim."""

    def failed_line(self, port, errno_name, fmt, reason, name=None, rule_kw=None,
                    rules=None):
        if rules is None:
            rules = [self.out_rule("out", ports=[port], **(rule_kw or {}))]
        r = self.client_fails(port, errno_name, rules, fmt)
        ev = self.only(r.log, fmt, "failed")[0]
        expected = {"level": "warn", "event": "failed", "direction": "outbound",
                    "rule": "out", "peer": "127.0.0.1:%d" % port, "reason": reason}
        if name is not None:
            expected["name"] = name
        self.assert_line(ev, expected)
        self.assertEqual(self.events(r.log, fmt, "established"), [], r.log)
        return r

    def check_cert(self, cert, reason, **rule_kw):
        p = self.tls_peer(cert)
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                self.failed_line(p.port, "EPROTO", fmt, reason, rule_kw=rule_kw)

    def test_expired(self):
        self.check_cert("expired", "certificate has expired")

    def test_not_yet_valid(self):
        self.check_cert("notyet", "certificate is not yet valid")

    def test_wrong_ca(self):
        self.check_cert("wrongca", "certificate not signed by a trusted CA "
                        "(unable to get local issuer certificate)")

    def test_revoked(self):
        self.check_cert("revoked", "certificate revoked", trust="ca_crl")

    def test_sha1(self):
        self.check_cert("sha1", "certificate signed with SHA-1")

    def test_peer_names(self):
        self.check_cert("server", "peer identity not allowed: %s not in peer_names "
                        "[spiffe://test/ns/default/sa/other, other.test]" % SERVER_ID,
                        peer_names=["spiffe://test/ns/default/sa/other", "other.test"])

    def test_name_mismatch(self):
        p = self.tls_peer("server")
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                self.failed_line(p.port, "EPROTO", fmt,
                                 "peer name mismatch: wanted db.internal, certificate has "
                                 "[%s]" % SERVER_SANS, name="db.internal",
                                 rule_kw={"server_name": "db.internal"})

    def test_no_common_version(self):
        srv, port = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-tls1_2"])
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                self.failed_line(port, "EPROTO", fmt,
                                 "no common protocol version: client offered [TLS1.3], "
                                 "server refused it (alert protocol version)",
                                 rule_kw={"protocols": {"min": "TLS1.3"}})

    def test_no_common_cipher_client_side(self):
        srv, port = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-tls1_2", "-cipher",
                                         "ECDHE-ECDSA-AES256-GCM-SHA384"])
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                self.failed_line(port, "EPROTO", fmt,
                                 "server refused the handshake (alert handshake failure): "
                                 "no common cipher or group? client offered ciphers "
                                 "[ECDHE-ECDSA-AES128-GCM-SHA256], groups "
                                 "[X25519, P-256, P-384]",
                                 rule_kw={"protocols": {"max": "TLS1.2"},
                                          "ciphers": ["ECDHE-ECDSA-AES128-GCM-SHA256"]})

    def test_server_requires_client_certificate(self):
        p = self.tls_peer("server", require_client_cert=True)
        reason = "server requires a client certificate (alert certificate required)"
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                # TLS 1.3: the client finishes its handshake (and logs
                # `established`) before the server's alert tells it.
                rules = [self.out_rule("out", ports=[p.port])]
                r = self.client_fails(p.port, "EPROTO", rules, fmt)
                ev = self.only(r.log, fmt, "failed")[0]
                self.assertEqual(ev["reason"], reason, r.log)
                # SPEC 8: "At warn: failures". A refused client must say why
                # at the default operational level, too. (Fails today: the
                # line is written at info, so a warn-level log is empty.)
                r = self.client_fails(p.port, "EPROTO", rules, fmt, level="warn")
                evs = self.only(r.log, fmt, "failed")
                self.assert_line(evs[0], {"level": "warn", "event": "failed",
                                          "direction": "outbound", "rule": "out",
                                          "peer": "127.0.0.1:%d" % p.port,
                                          "reason": reason})

    def test_handshake_timeout(self):
        p = self.peer(harness.SilentListener())
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                self.failed_line(p.port, "ETIMEDOUT", fmt, "handshake timeout",
                                 rule_kw={"handshake_timeout_ms": 300})

    def test_garbage(self):
        p = self.peer(harness.RawListener("garbage"))
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                self.failed_line(p.port, "EPROTO", fmt, "peer sent garbage (not TLS)")

    def test_peer_closes_during_handshake(self):
        p = self.peer(harness.RawListener("close"))
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                self.failed_line(p.port, "EPROTO", fmt,
                                 "peer closed the connection during the handshake")

    def test_denied(self):
        p = self.peer(harness.RawListener("record"))
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                r = self.client_fails(p.port, "EACCES",
                                      [self.out_rule("no", ports=[p.port], action="deny")],
                                      fmt)
                ev = self.only(r.log, fmt, "denied")[0]
                self.assert_line(ev, {"level": "warn", "event": "denied",
                                      "direction": "outbound", "rule": "no",
                                      "peer": "127.0.0.1:%d" % p.port,
                                      "reason": "policy action deny"})
                self.assertEqual(len(self.events(r.log, fmt)), 1, r.log)
        self.assertEqual(p.accepted, 0, "a denied connect reached the peer")

    def test_default_action_deny(self):
        p = self.peer(harness.RawListener("record"))
        pol = self.pol([self.out_rule("other", ports=[1])], "text",
                       default_action="deny")
        argv = [harness.prog("tcp_client"), "--host", "127.0.0.1", "--port", str(p.port),
                "--style", "rw", "--bytes", "10", "--expect-error", "EACCES"]
        r = self.run_under_shim(argv, pol, timeout=TIMEOUT, what="tcp_client")
        self.assertEqual(r.stdout, "error=EACCES\n", r.describe())
        ev = self.only(r.log, "text", "denied")[0]
        self.assert_line(ev, {"level": "warn", "event": "denied", "direction": "outbound",
                              "rule": "default_action", "peer": "127.0.0.1:%d" % p.port,
                              "reason": "policy action deny"})


class InboundFailures(LogTestCase):
    """The `failed` lines of a server under the shim, with real clients."""

    def server(self, fmt, level="info", **tls):
        kw = {"client_auth": "none"}
        kw.update(tls)
        pol = self.pol([self.in_rule("in", addresses=["127.0.0.1"], **kw)], fmt, level)
        return self.start_echo_server("thread", policy=pol)

    def expect_failed(self, srv, port, fmt, reason):
        ev = self.wait_log(srv, fmt, "failed")
        self.assertEqual(len(ev), 1, srv.log())
        self.assert_line(ev[0], {"level": "warn", "event": "failed", "direction": "inbound",
                                 "rule": "in", "local": "127.0.0.1:%d" % port,
                                 "reason": reason}, pid=srv.proc.pid, peer_re=PEER_RE)
        self.assertEqual(self.events(srv.log(), fmt, "established"), [], srv.log())

    def test_no_common_cipher(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port = self.server(fmt, protocols={"max": "TLS1.2"},
                                        ciphers=["ECDHE-ECDSA-AES128-GCM-SHA256",
                                                 "ECDHE-ECDSA-CHACHA20-POLY1305"])
                b = self.s_client(port, ["-tls1_2", "-cipher",
                                         "ECDHE-ECDSA-AES256-GCM-SHA384:AES256-SHA"])
                self.assertNotIn(self.S_CLIENT_TOKEN, b.stdout(), b.describe())
                self.expect_failed(srv, port, fmt,
                                   "no common cipher: client offered "
                                   "[ECDHE-ECDSA-AES256-GCM-SHA384, AES256-SHA], server "
                                   "accepts [ECDHE-ECDSA-AES128-GCM-SHA256, "
                                   "ECDHE-ECDSA-CHACHA20-POLY1305]")

    def test_no_common_version(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port = self.server(fmt, protocols={"min": "TLS1.3"})
                b = self.s_client(port, ["-tls1_2"])
                self.assertNotIn(self.S_CLIENT_TOKEN, b.stdout(), b.describe())
                self.expect_failed(srv, port, fmt,
                                   "no common protocol version: client offered [TLS1.2], "
                                   "server accepts [TLS1.3]")

    def test_client_certificate_required(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port = self.server(fmt, client_auth="required")
                b = self.s_client(port, [])
                self.assertNotIn(self.S_CLIENT_TOKEN, b.stdout(), b.describe())
                self.expect_failed(srv, port, fmt,
                                   "client certificate required but none was sent")

    def test_client_identity_not_allowed(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port = self.server(fmt, client_auth="required", peer_names=[CLIENT_ID])
                b = self.s_client(port, ["-cert", self.cert("other_client.pem"), "-key",
                                         self.cert("other_client.key")])
                self.assertNotIn(self.S_CLIENT_TOKEN, b.stdout(), b.describe())
                self.expect_failed(srv, port, fmt,
                                   "peer identity not allowed: "
                                   "spiffe://test/ns/default/sa/other not in peer_names "
                                   "[%s]" % CLIENT_ID)

    def expired_client_cert(self):
        """A clientAuth certificate by ca, valid 2020-01-01 .. 2021-01-01
        (made here: gen_certs.sh's expired.pem is a server certificate)."""
        d = os.path.join(self.tmp, "ca")
        os.makedirs(d)
        for f in ("ca.pem", "ca.key", "ca.cnf"):
            shutil.copy(self.cert(f), d)
        shutil.copytree(self.cert("ca.db"), os.path.join(d, "ca.db"))
        with open(os.path.join(d, "c.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                    "subjectAltName=URI:spiffe://test/ns/default/sa/old\n")
        for argv in (["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-out", "c.key"],
                     ["openssl", "req", "-new", "-key", "c.key", "-subj", "/CN=old",
                      "-out", "c.csr"],
                     ["openssl", "ca", "-batch", "-config", "ca.cnf", "-notext", "-in",
                      "c.csr", "-out", "c.pem", "-extfile", "c.ext", "-startdate",
                      "20200101000000Z", "-enddate", "20210101000000Z"]):
            p = subprocess.run(argv, cwd=d, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
        return os.path.join(d, "c.pem"), os.path.join(d, "c.key")

    def test_client_certificate_expired(self):
        cert, key = self.expired_client_cert()
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port = self.server(fmt, client_auth="optional")
                b = self.s_client(port, ["-cert", cert, "-key", key])
                self.assertNotIn(self.S_CLIENT_TOKEN, b.stdout(), b.describe())
                self.expect_failed(srv, port, fmt, "certificate has expired")

    def test_server_certificate_used_as_client_certificate(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port = self.server(fmt, client_auth="required")
                b = self.s_client(port, ["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key")])
                self.assertNotIn(self.S_CLIENT_TOKEN, b.stdout(), b.describe())
                self.expect_failed(srv, port, fmt,
                                   "certificate not allowed for TLS client use (key usage)")

    def test_garbage_from_client(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port = self.server(fmt)
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.expect_failed(srv, port, fmt, "peer sent garbage (not TLS)")

    def test_silent_client_times_out(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port = self.server(fmt, handshake_timeout_ms=300)
                with socket.create_connection(("127.0.0.1", port), timeout=10):
                    self.expect_failed(srv, port, fmt, "handshake timeout")

    def test_denied(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                pol = self.pol([self.in_rule("shut", addresses=["127.0.0.1"],
                                             action="deny")], fmt)
                srv, port = self.start_echo_server("thread", policy=pol)
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    ev = self.wait_log(srv, fmt, "denied")
                self.assertEqual(len(ev), 1, srv.log())
                self.assert_line(ev[0], {"level": "warn", "event": "denied",
                                         "direction": "inbound", "rule": "shut",
                                         "local": "127.0.0.1:%d" % port,
                                         "reason": "policy action deny"},
                                 pid=srv.proc.pid, peer_re=PEER_RE)


class Established(LogTestCase):
    """`established` on both sides, with every negotiated detail."""

    def pair(self, fmt, conns, out_kw=None, in_kw=None):
        in_kw = dict(in_kw or {})
        srv_pol = self.pol([self.in_rule("in", addresses=["127.0.0.1"], **in_kw)], fmt)
        srv, port = self.start_echo_server("thread", policy=srv_pol)
        okw = {"identity": "client"}
        okw.update(out_kw or {})
        r = self.client_ok(port, [self.out_rule("out", ports=[port], **okw)], fmt,
                           conns=conns)
        srv_evs = self.wait_log(srv, fmt, "established", conns)
        return srv, port, r, srv_evs

    def test_tls13_both_directions_and_resumption(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port, r, srv_evs = self.pair(fmt, 2)
                evs = self.only(r.log, fmt, "established", 2)
                for i, ev in enumerate(evs):
                    self.assert_line(ev, {"level": "info", "event": "established",
                                          "direction": "outbound", "rule": "out",
                                          "peer": "127.0.0.1:%d" % port,
                                          "version": "TLSv1.3",
                                          "cipher": "TLS_AES_128_GCM_SHA256",
                                          "group": "X25519", "resumed": i == 1,
                                          "peer_identity": SERVER_ID})
                self.assertEqual(len(self.events(r.log, fmt)), 2, r.log)
                self.assertEqual(len(srv_evs), 2, srv.log())
                for i, ev in enumerate(srv_evs):
                    self.assert_line(ev, {"level": "info", "event": "established",
                                          "direction": "inbound", "rule": "in",
                                          "local": "127.0.0.1:%d" % port,
                                          "version": "TLSv1.3",
                                          "cipher": "TLS_AES_128_GCM_SHA256",
                                          "group": "X25519", "resumed": i == 1,
                                          "peer_identity": CLIENT_ID},
                                     pid=srv.proc.pid, peer_re=PEER_RE)
                self.assertEqual(self.events(srv.log(), fmt, "failed"), [], srv.log())

    def test_tls12_with_server_name(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                srv, port, r, srv_evs = self.pair(
                    fmt, 1, out_kw={"server_name": "server.test",
                                    "protocols": {"max": "TLS1.2"}, "groups": ["P-256"]},
                    in_kw={"client_auth": "optional"})
                ev = self.only(r.log, fmt, "established")[0]
                self.assert_line(ev, {"level": "info", "event": "established",
                                      "direction": "outbound", "rule": "out",
                                      "peer": "127.0.0.1:%d" % port,
                                      "name": "server.test", "version": "TLSv1.2",
                                      "cipher": "ECDHE-ECDSA-AES128-GCM-SHA256",
                                      "group": "P-256", "resumed": False,
                                      "peer_identity": SERVER_ID})
                # The server logs the SNI it received as the name.
                self.assert_line(srv_evs[0], {"level": "info", "event": "established",
                                              "direction": "inbound", "rule": "in",
                                              "local": "127.0.0.1:%d" % port,
                                              "name": "server.test",
                                              "version": "TLSv1.2",
                                              "cipher": "ECDHE-ECDSA-AES128-GCM-SHA256",
                                              "group": "P-256", "resumed": False,
                                              "peer_identity": CLIENT_ID},
                                 pid=srv.proc.pid, peer_re=PEER_RE)

    def test_inbound_without_client_certificate(self):
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                pol = self.pol([self.in_rule("in", addresses=["127.0.0.1"],
                                             client_auth="none")], fmt)
                srv, port = self.start_echo_server("thread", policy=pol)
                b = self.s_client(port, ["-tls1_3"])
                self.assertIn(self.S_CLIENT_TOKEN, b.stdout(), b.describe())
                ev = self.wait_log(srv, fmt, "established")[0]
                # No client certificate: no peer_identity key at all.
                self.assert_line(ev, {"level": "info", "event": "established",
                                      "direction": "inbound", "rule": "in",
                                      "local": "127.0.0.1:%d" % port, "name": "localhost",
                                      "version": "TLSv1.3",
                                      # the client's preference wins in TLS 1.3
                                      "cipher": "TLS_AES_256_GCM_SHA384",
                                      "group": "X25519", "resumed": False},
                                 pid=srv.proc.pid, peer_re=PEER_RE)


class PeerControlledText(LogTestCase):
    """Values that come from the peer's certificate must not break lines."""

    def client_cert_with_uri(self, uri):
        """A clientAuth certificate by ca whose only SAN is URI |uri| (any
        bytes; DER-encoded by hand, as openssl's config cannot say it)."""
        d = os.path.join(self.tmp, "evil")
        os.makedirs(d)
        g = bytes([0x86, len(uri)]) + uri
        san = bytes([0x30, len(g)]) + g
        with open(os.path.join(d, "ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                    "subjectAltName=DER:%s\n" % san.hex())
        for argv in (["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-out", "e.key"],
                     ["openssl", "req", "-new", "-key", "e.key", "-subj", "/CN=evil",
                      "-out", "e.csr"],
                     ["openssl", "x509", "-req", "-in", "e.csr", "-CA", self.cert("ca.pem"),
                      "-CAkey", self.cert("ca.key"), "-set_serial", "7", "-days", "30",
                      "-extfile", "ext", "-out", "e.pem"]):
            p = subprocess.run(argv, cwd=d, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
        return os.path.join(d, "e.pem"), os.path.join(d, "e.key")

    def test_newline_in_peer_identity_cannot_forge_a_text_line(self):
        # A client (any holder of a certificate from the trusted CA) chooses
        # its SAN URI. Fails today: log.c quotes a text value only when it
        # has a space, '"' or '=', so a newline goes out raw and the peer
        # writes a line of its own into the log.
        uri = b"spiffe://test/evil\nforged\ttlsshim[1]\terror"
        cert, key = self.client_cert_with_uri(uri)
        for fmt in ("json", "text"):
            with self.subTest(fmt=fmt):
                pol = self.pol([self.in_rule("in", addresses=["127.0.0.1"],
                                             client_auth="required")], fmt)
                srv, port = self.start_echo_server("thread", policy=pol)
                b = self.s_client(port, ["-cert", cert, "-key", key])
                self.assertIn(self.S_CLIENT_TOKEN, b.stdout(), b.describe())
                harness.wait_for(lambda: "established" in srv.log(), 10,
                                 "the established line\n" + srv.describe())
                self.assertEqual(len(srv.log().splitlines()), 1,
                                 "one event, one line:\n%r" % srv.log())
                ev = self.only(srv.log(), fmt, "established")[0]
                # The TLS layer shows a certificate name with every byte
                # that is not printable ASCII as \xNN (verify.c,
                # tls_name_escape), so the identity is whole and unambiguous.
                self.assertEqual(
                    ev["peer_identity"],
                    "spiffe://test/evil\\x0aforged\\x09tlsshim[1]\\x09error")


class InsecureAndLevels(LogTestCase):
    """verify_peer false, level filtering, TLSSHIM_LOG and destinations."""

    def test_verify_peer_false_warned_at_every_connection(self):
        p = self.tls_peer("wrongca")
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                rules = [self.out_rule("enc", ports=[p.port], verify_peer=False)]
                r = self.client_ok(p.port, rules, fmt, conns=3)
                evs = self.events(r.log, fmt)
                self.assertEqual([e["event"] for e in evs], ["insecure", "established"] * 3,
                                 r.log)
                for ev in evs[0::2]:
                    self.assert_line(ev, {"level": "warn", "event": "insecure",
                                          "direction": "outbound", "rule": "enc",
                                          "peer": "127.0.0.1:%d" % p.port,
                                          "reason": "verify_peer is false: the server "
                                                    "is not authenticated"})
                # At warn: the three warnings, nothing else.
                r = self.client_ok(p.port, rules, fmt, level="warn", conns=3)
                self.assertEqual([e["event"] for e in self.events(r.log, fmt)],
                                 ["insecure"] * 3, r.log)

    def test_warn_level_has_failures_but_not_established(self):
        good = self.tls_peer("server")
        bad = self.tls_peer("expired")
        r = self.client_ok(good.port, [self.out_rule("out", ports=[good.port])], "text",
                           level="warn")
        self.assertEqual(r.log, "", "a warn-level log has lines for a good connection")
        r = self.client_fails(bad.port, "EPROTO", [self.out_rule("out", ports=[bad.port])],
                              "text", level="warn")
        ev = self.only(r.log, "text", "failed")[0]
        self.assertEqual(ev["reason"], "certificate has expired")

    def test_env_level_overrides_policy(self):
        good = self.tls_peer("server")
        r = self.client_ok(good.port, [self.out_rule("out", ports=[good.port])], "text",
                           level="warn", env={"TLSSHIM_LOG": "info"})
        ev = self.only(r.log, "text", "established")[0]
        self.assertEqual(ev["level"], "info")
        # ... and down: error hides the warn-level failure.
        bad = self.tls_peer("expired")
        r = self.client_fails(bad.port, "EPROTO", [self.out_rule("out", ports=[bad.port])],
                              "text", level="info", env={"TLSSHIM_LOG": "error"})
        self.assertEqual(r.log, "", "TLSSHIM_LOG=error still logged a warning")

    def test_debug_logs_plaintext_decisions(self):
        srv, port = self.start_echo_server("thread")  # plain, not under the shim
        for fmt in FORMATS:
            with self.subTest(fmt=fmt):
                rules = [self.out_rule("other", ports=[1], action="deny")]
                r = self.client_ok(port, rules, fmt, level="debug")
                ev = self.only(r.log, fmt, "plaintext")[0]
                self.assert_line(ev, {"level": "debug", "event": "plaintext",
                                      "direction": "outbound", "rule": "default_action",
                                      "peer": "127.0.0.1:%d" % port})
                r = self.client_ok(port, rules, fmt, level="info")
                self.assertEqual(r.log, "", "plaintext decision logged at info")

    def shim_env_without_log_file(self, policy):
        e = self.shim_env(self.write_policy(policy), "unused")
        del e["TLSSHIM_LOG_FILE"]
        return e

    def test_log_never_goes_to_stdout(self):
        good = self.tls_peer("server")
        pol = self.pol([self.out_rule("out", ports=[good.port])], "text", level="debug")
        argv = [harness.prog("tcp_client"), "--host", "127.0.0.1", "--port",
                str(good.port), "--style", "rw", "--bytes", "1000"]
        r = self.run_plain(argv, env=self.shim_env_without_log_file(pol), timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.describe())
        # stdout: the program's own single result line and nothing else.
        self.assertRegex(r.stdout, r"^sent=1000 received=1000 sha256_out=[0-9a-f]{64} "
                         r"sha256_in=[0-9a-f]{64}\n$", r.describe())
        # The default destination is stderr.
        ev = self.only(r.stderr, "text", "established")[0]
        self.assertEqual(ev["peer_identity"], SERVER_ID)

    def test_log_file_of_policy_and_env_override(self):
        good = self.tls_peer("server")
        pol_file = os.path.join(self.tmp, "from-policy.log")
        env_file = os.path.join(self.tmp, "from-env.log")
        pol = self.pol([self.out_rule("out", ports=[good.port])], "json")
        pol["log"]["file"] = pol_file
        argv = [harness.prog("tcp_client"), "--host", "127.0.0.1", "--port",
                str(good.port), "--style", "rw", "--bytes", "1000"]
        env = self.shim_env_without_log_file(pol)
        r = self.run_plain(argv, env=env, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stderr, "", "the log went to stderr, not log.file")
        self.only(harness.read_file(pol_file), "json", "established")
        os.unlink(pol_file)
        env["TLSSHIM_LOG_FILE"] = env_file
        r = self.run_plain(argv, env=env, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stderr, "")
        self.only(harness.read_file(env_file), "json", "established")
        self.assertFalse(os.path.exists(pol_file),
                         "TLSSHIM_LOG_FILE did not override the policy's log.file")


KEYLOG_RE = re.compile(r"^([A-Z_0-9]+) ([0-9a-f]{64}) ([0-9a-f]{64}|[0-9a-f]{96})$")
TLS13_LABELS = ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0")


def read_keylog(path):
    """{(label, client_random): secret} of an NSS key log; comments skipped."""
    out = {}
    lines = []
    for line in harness.read_file(path).splitlines():
        if line.startswith("#") or not line:
            continue
        m = KEYLOG_RE.match(line)
        if m is None:
            raise AssertionError("not an NSS key log line: %r" % line)
        out[(m.group(1), m.group(2))] = m.group(3)
        lines.append(line)
    return out, lines


class Keylog(LogTestCase):
    """SSLKEYLOGFILE with debug.allow_keylog: NSS lines that are the very
    secrets the OpenSSL peer logs for the same connection. Wireshark reads
    this format; with no tshark here, byte equality with OpenSSL's own key
    log (which Wireshark decrypts with) is the offline proof."""

    def run_keylog(self, max_version, conns, allow=True):
        ctx = harness.tls_server_context(self.certs)
        server_log = os.path.join(self.tmp, "server.keys")
        ctx.keylog_filename = server_log
        p = self.peer(harness.TLSEchoServer(ctx))
        keys = os.path.join(self.tmp, "client.keys")
        pol = self.pol([self.out_rule("out", ports=[p.port],
                                      protocols={"max": max_version})], "json")
        if allow:
            pol["debug"] = {"allow_keylog": True}
        argv = [harness.prog("tcp_client"), "--host", "127.0.0.1", "--port", str(p.port),
                "--style", "rw", "--bytes", "5000", "--conns", str(conns)]
        r = self.run_under_shim(argv, pol, env={"SSLKEYLOGFILE": keys}, timeout=TIMEOUT)
        self.assert_echo_ok(r, 5000, conns)
        p.wait_finished(conns)
        return r, keys, server_log

    def test_tls13_keylog_matches_openssl(self):
        r, keys, server_log = self.run_keylog("TLS1.3", 2)
        ev = self.only(r.log, "json", "keylog")[0]
        self.assert_line(ev, {"level": "warn", "event": "keylog",
                              "reason": "writing TLS secrets to %s (debug.allow_keylog)"
                                        % keys})
        mine, lines = read_keylog(keys)
        randoms = sorted({cr for (_, cr) in mine})
        self.assertEqual(len(randoms), 2, "two connections, two client_randoms:\n%s"
                         % "\n".join(lines))
        for cr in randoms:
            labels = {lab for (lab, c) in mine if c == cr}
            self.assertTrue(set(TLS13_LABELS) <= labels,
                            "labels for %s: %s" % (cr, sorted(labels)))
        theirs, _ = read_keylog(server_log)
        for k in mine:
            if k[0] in TLS13_LABELS:
                self.assertIn(k, theirs, "OpenSSL has no %s for this client_random" % k[0])
                self.assertEqual(mine[k], theirs[k], "%s differs from OpenSSL's" % k[0])

    def test_tls12_keylog_matches_openssl(self):
        r, keys, server_log = self.run_keylog("TLS1.2", 1)
        mine, lines = read_keylog(keys)
        self.assertEqual([k[0] for k in mine], ["CLIENT_RANDOM"], "\n".join(lines))
        (label, cr), secret = next(iter(mine.items()))
        self.assertEqual(len(secret), 96, "a master secret is 48 bytes")
        theirs, _ = read_keylog(server_log)
        self.assertEqual(theirs.get((label, cr)), secret)

    def test_keylog_refused_without_allow_keylog(self):
        r, keys, _ = self.run_keylog("TLS1.3", 1, allow=False)
        self.assertFalse(os.path.exists(keys), "SSLKEYLOGFILE was written without "
                         "debug.allow_keylog")
        ev = self.only(r.log, "json", "keylog")[0]
        self.assert_line(ev, {"level": "warn", "event": "keylog",
                              "reason": "SSLKEYLOGFILE ignored: the policy does not set "
                                        "debug.allow_keylog"})


if __name__ == "__main__":
    harness.main()
