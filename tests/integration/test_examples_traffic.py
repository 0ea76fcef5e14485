#!/usr/bin/env python3
"""test_examples_traffic.py: every example policy in examples/*/policy.yaml
carries real traffic and does what its README promises.

Each test copies the example's policy.yaml into a temporary folder, makes the
certificates it names (with `tlsshim pki init` where the README says so,
otherwise with openssl), rewrites only what must change to run here (each
substitution is asserted to hit the text exactly as often as expected, so an
edit of the example breaks the test loudly, and is explained in a comment),
and runs unmodified programs under the shim: tcp_echo_server/tcp_client,
`python3 -m http.server` and curl, with openssl s_client and Python's ssl
module as native TLS peers.

Host names: rather than rewriting a policy's `names`, the client runs in a
private mount namespace whose /etc/hosts maps the example's names
(www.example.com, payments.shop.svc.cluster.local, api.payments.example) to
a local address, so the program resolves the very name the example expects.
deny-egress-allowlist runs in a network namespace whose loopback carries the
example's own addresses (10.20.0.7, 10.30.4.5, 10.0.0.2, 198.51.100.1), so its
policy needs no address or port rewriting at all. Both need root
(unshare/mount, `ip netns`); without them those tests skip, saying so.

Run: TLSSHIM_BUILD_DIR=build TLSSHIM_SOURCE_DIR=. python3 tests/integration/test_examples_traffic.py
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Background, PeerThread, RawListener, ShimTestCase,  # noqa: E402
                     free_port, prog, read_file, wait_for)

EXAMPLES = os.path.join(harness.SOURCE_DIR, "examples")
WAIT = 20.0  # seconds for any single readiness wait

# Runs "$@" with a private /etc/hosts (argument 1), and only then puts the
# shim into LD_PRELOAD, so that unshare/ip/sh/mount never load it.
HOSTS_WRAPPER = ('h=$1; shift; '
                 'if [ -n "$h" ]; then mount --bind "$h" /etc/hosts || exit 97; fi; '
                 'if [ -n "$TLSSHIM_EX_PRELOAD" ]; then '
                 'LD_PRELOAD=$TLSSHIM_EX_PRELOAD; export LD_PRELOAD; fi; exec "$@"')


def _probe(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _can_override_hosts():
    with tempfile.NamedTemporaryFile("w", suffix=".hosts") as f:
        f.write("127.0.0.1 probe.tlsshim.invalid\n")
        f.flush()
        return _probe(["unshare", "-m", "--propagation", "private", "sh", "-c",
                       'mount --bind "$0" /etc/hosts && getent hosts probe.tlsshim.invalid',
                       f.name])


HOSTS_OK = (not harness.PLAIN) and _can_override_hosts()
NEEDS_HOSTS = unittest.skipUnless(
    HOSTS_OK, "needs root for a private /etc/hosts (unshare -m + mount --bind)")


def sh(argv, cwd=None, timeout=60):
    p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(argv), p.returncode,
                                                     p.stdout.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


# ---- certificates (openssl; nothing is committed) ----

def make_ca(d, name, cn):
    """openssl req -x509 -newkey ec (P-256) -nodes -keyout NAME.key -out NAME.pem
    -subj /CN=CN -addext basicConstraints=critical,CA:TRUE
    -addext keyUsage=critical,keyCertSign,cRLSign"""
    os.makedirs(d, exist_ok=True)
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "30",
        "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd=d)


def issue(d, ca, name, san, eku="serverAuth,clientAuth", cn=None):
    """openssl req -newkey ec -nodes -keyout NAME.key -out NAME.csr, then
    openssl x509 -req -CA CA.pem -CAkey CA.key -extfile (SAN, EKU, CA:FALSE).
    |ca| may be a path prefix outside |d| (e.g. a pki init folder's ca)."""
    sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + (cn or name)],
       cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n" % (san, eku))
    sh(["openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey",
        ca + ".key", "-CAcreateserial", "-days", "30", "-out", name + ".pem",
        "-extfile", name + ".ext"], cwd=d)


def pki_init(d, names, ip=None):
    """`tlsshim pki init DIR --names ... [--ip ...]`, as the READMEs say."""
    argv = [harness.CLI, "pki", "init", d, "--names", names]
    if ip:
        argv += ["--ip", ip]
    sh(argv)


# ---- Python TLS peers ----

class SniHttpsServer(PeerThread):
    """A TLS HTTP/1.1 server (the system OpenSSL) that records the SNI and
    ALPN each client sent, answers one request with BODY, and closes."""

    BODY = b"hello from the https server\n"

    def __init__(self, cert, key, **kw):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.snis = []
        self.alpns = []
        self.versions = []

        def on_sni(sslobj, name, ctx):
            with self.lock:
                self.snis.append(name)
            return None
        self.ctx.sni_callback = on_sni
        super().__init__(**kw)

    def handle(self, c, idx):
        s = self.ctx.wrap_socket(c, server_side=True)
        with self.lock:
            self.alpns.append(s.selected_alpn_protocol())
            self.versions.append(s.version())
        req = b""
        while b"\r\n\r\n" not in req:
            b = s.recv(4096)
            if not b:
                return
            req += b
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                  % len(self.BODY) + self.BODY)
        s.close()


class TLSEchoPeer(harness.TLSEchoServer):
    """harness.TLSEchoServer that also records the SNI of each client."""

    def __init__(self, ctx, **kw):
        self.snis = []

        def on_sni(sslobj, name, c):
            with self.lock:
                self.snis.append(name)
            return None
        ctx.sni_callback = on_sni
        super().__init__(ctx, **kw)


def uri_sans(peer_cert):
    return [v for k, v in (peer_cert or {}).get("subjectAltName", ()) if k == "URI"]


# ---- the base ----

class ExampleTraffic(ShimTestCase):
    """Per test: the example copied into self.ex; helpers to rewrite its
    policy and to run programs under it, optionally with a private
    /etc/hosts and inside a network namespace."""

    NAME = None

    @classmethod
    def setUpClass(cls):
        # The certificates come from each example's own recipe, not from
        # tests/gen_certs.sh: only the temp folder of the base is wanted.
        cls._class_tmp = tempfile.mkdtemp(prefix="tlsshim-extraffic-")
        cls.certs = os.path.join(cls._class_tmp, "unused-certs")

    def setUp(self):
        if harness.PLAIN:
            self.skipTest("PLAIN=1: the examples need the shim")
        super().setUp()
        self.ex = os.path.join(self.tmp, self.NAME)
        os.makedirs(os.path.join(self.ex, "certs"))
        shutil.copy(os.path.join(EXAMPLES, self.NAME, "policy.yaml"), self.ex)
        self.certdir = os.path.join(self.ex, "certs")

    def example_policy(self, subs, name="policy.yaml"):
        """The example's policy with |subs| [(old, new, count)] applied, each
        asserted to occur exactly |count| times; written next to the
        original (relative certificate paths keep working). Returns its path."""
        with open(os.path.join(EXAMPLES, self.NAME, "policy.yaml")) as f:
            text = f.read()
        for old, new, count in subs:
            self.assertEqual(text.count(old), count,
                             "examples/%s/policy.yaml changed: expected %d x %r"
                             % (self.NAME, count, old))
            text = text.replace(old, new)
        path = os.path.join(self.ex, name)
        with open(path, "w") as f:
            f.write(text)
        r = self.run_plain([harness.CLI, "check", path], what="tlsshim check")
        self.assertEqual(r.returncode, 0, "the rewritten policy is invalid\n" + r.describe())
        return path

    def hosts_file(self, mapping):
        path = self._next("hosts")
        with open(path, "w") as f:
            f.write("127.0.0.1 localhost\n")
            for name, addr in mapping.items():
                f.write("%s %s\n" % (addr, name))
        return path

    def _wrap(self, argv, policy, hosts, netns, env):
        """(argv, env, log_file) for |argv| under |policy| (or none), with a
        private /etc/hosts and/or inside |netns|."""
        log_file = None
        if policy is not None:
            log_file = self._next("shim") + ".log"
            e = self.shim_env(policy, log_file, env)
        else:
            e = dict(os.environ)
            e.pop("LD_PRELOAD", None)
            if env:
                e.update(env)
        if hosts is None and netns is None:
            return argv, e, log_file
        if "LD_PRELOAD" in e:
            e["TLSSHIM_EX_PRELOAD"] = e.pop("LD_PRELOAD")
        inner = ["sh", "-c", HOSTS_WRAPPER, "sh", hosts or ""] + list(argv)
        if netns is not None:
            # `ip netns exec` gives the command its own mount namespace.
            return ["ip", "netns", "exec", netns] + inner, e, log_file
        return ["unshare", "-m", "--propagation", "private"] + inner, e, log_file

    def run_c(self, argv, policy=None, hosts=None, netns=None, timeout=40.0, what=None,
              env=None):
        a, e, log = self._wrap(argv, policy, hosts, netns, env)
        return self._run(a, e, log, timeout, what or os.path.basename(argv[0]), None, None)

    def spawn_c(self, argv, policy=None, hosts=None, netns=None, name=None, env=None,
                stdin=subprocess.DEVNULL, cwd=None):
        a, e, log = self._wrap(argv, policy, hosts, netns, env)
        b = Background(a, e, cwd or self.tmp, self.tmp, name or os.path.basename(argv[0]),
                       log, stdin)
        self._bg.append(b)
        return b

    def echo_server(self, port, policy, addr="127.0.0.1", mode="thread", netns=None):
        """tcp_echo_server on a FIXED port (the policy names it)."""
        ready = self._next("ready")
        b = self.spawn_c([prog("tcp_echo_server"), "--port", str(port), "--addr", addr,
                          "--mode", mode, "--ready-file", ready], policy=policy,
                         netns=netns, name="tcp_echo_server")
        got = self.wait_ready_file(b, ready, timeout=WAIT)
        self.assertEqual(got, port)
        return b

    def client(self, host, port, policy, nbytes=256 << 10, hosts=None, netns=None,
               extra=()):
        argv = [prog("tcp_client"), "--host", host, "--port", str(port), "--style", "rw",
                "--bytes", str(nbytes), "--timeout", "30"] + list(extra)
        return self.run_c(argv, policy, hosts=hosts, netns=netns, timeout=40,
                          what="tcp_client to %s:%d" % (host, port))

    def expect_error(self, host, port, policy, errname, **kw):
        r = self.client(host, port, policy, extra=["--expect-error", errname], **kw)
        self.assertEqual(r.returncode, 0, "tcp_client did not fail with %s\n%s"
                         % (errname, r.describe()))
        self.assertEqual(r.stdout.strip(), "error=" + errname, r.describe())
        return r

    def s_client(self, port, args, send, expect, timeout=15.0):
        """openssl s_client to 127.0.0.1:|port| with |args|; writes |send|,
        waits until |expect| shows in its output or it exits. Returns
        (Background, whether |expect| was seen)."""
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-ign_eof",
                "-verify_return_error"] + list(args)
        b = self.spawn_c(argv, name="s_client", stdin=subprocess.PIPE)
        try:
            b.proc.stdin.write(send)
            b.proc.stdin.flush()
        except BrokenPipeError:
            pass
        wait_for(lambda: expect in b.stdout() or not b.alive(), timeout,
                 "%r through openssl s_client, or its exit\n%s" % (expect, b.describe()))
        seen = expect in b.stdout()
        b.kill()
        return b, seen

    def wait_log_event(self, bg_or_log, event, what, **fields):
        get = bg_or_log.log if hasattr(bg_or_log, "log") else (lambda: bg_or_log)

        def found():
            return any(ev.get("event") == event and
                       all(str(ev.get(k)) == str(v) for k, v in fields.items())
                       for ev in self.log_events(get()))
        try:
            wait_for(found, WAIT, what)
        except AssertionError as e:
            self.fail("%s\nshim log:\n%s" % (e, get()[-4000:]))


# ---- client-sni-system-ca ----

class ClientSniSystemCa(ExampleTraffic):
    NAME = "client-sni-system-ca"

    def setUp(self):
        super().setUp()
        d = self.certdir
        make_ca(d, "ca", "example test CA")
        issue(d, "ca", "www", "DNS:www.example.com", "serverAuth")
        issue(d, "ca", "othername", "DNS:other.example.net", "serverAuth")
        make_ca(d, "rogue", "rogue CA")
        issue(d, "rogue", "roguewww", "DNS:www.example.com", "serverAuth")
        self.hosts = self.hosts_file({"www.example.com": "127.0.0.1"})

    def policy_for(self, port):
        return self.example_policy([
            # The OS bundle cannot vouch for a test server: the test CA
            # stands in for `ca: system`.
            ("    ca: system ", "    ca: certs/ca.pem ", 1),
            # Port 443 is privileged and shared: a free ephemeral port.
            ("ports: [443]", "ports: [%d]" % port, 1),
            # Machine-readable log for the assertions (the example logs text).
            ("  level: info\n", "  level: info\n  format: json\n", 1),
        ])

    def curl(self, url, policy, hosts=None):
        return self.run_c(["curl", "-sS", "--max-time", "20", url], policy, hosts=hosts,
                          what="curl " + url)

    @NEEDS_HOSTS
    def test_sni_is_the_resolved_name_and_certificate_verified(self):
        srv = self.peer(SniHttpsServer(os.path.join(self.certdir, "www.pem"),
                                       os.path.join(self.certdir, "www.key")))
        policy = self.policy_for(srv.port)
        # The README's `curl -s http://www.example.com:443/`, on our port.
        r = self.curl("http://www.example.com:%d/" % srv.port, policy, hosts=self.hosts)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stdout.encode(), SniHttpsServer.BODY, r.describe())
        self.assertEqual(srv.snis, ["www.example.com"], "SNI the server received")
        self.assertEqual(srv.alpns, ["http/1.1"], "ALPN the server selected")
        self.assertEqual(srv.versions, ["TLSv1.3"])
        self.assert_log_event(r.log, "established", direction="outbound",
                              rule="public-https", name="www.example.com")

    @NEEDS_HOSTS
    def test_certificate_without_the_name_is_refused(self):
        srv = self.peer(SniHttpsServer(os.path.join(self.certdir, "othername.pem"),
                                       os.path.join(self.certdir, "othername.key")))
        r = self.curl("http://www.example.com:%d/" % srv.port, self.policy_for(srv.port),
                      hosts=self.hosts)
        self.assertNotEqual(r.returncode, 0, r.describe())
        self.assertNotIn("hello from", r.stdout)
        self.assert_log_event(r.log, "failed", rule="public-https",
                              reason="peer name mismatch: wanted www.example.com, "
                                     "certificate has [DNS:other.example.net]")

    @NEEDS_HOSTS
    def test_certificate_from_untrusted_ca_is_refused(self):
        srv = self.peer(SniHttpsServer(os.path.join(self.certdir, "roguewww.pem"),
                                       os.path.join(self.certdir, "roguewww.key")))
        r = self.curl("http://www.example.com:%d/" % srv.port, self.policy_for(srv.port),
                      hosts=self.hosts)
        self.assertNotEqual(r.returncode, 0, r.describe())
        ev = self.assert_log_event(r.log, "failed", rule="public-https")
        self.assertIn("issuer", ev.get("reason", ""), ev)

    def test_ip_literal_has_no_name_and_stays_plaintext(self):
        """README: a program that dials an IP literal has no name, so the
        rule does not match it (default_action plaintext)."""
        raw = self.peer(RawListener("garbage"))
        r = self.curl("http://127.0.0.1:%d/" % raw.port, self.policy_for(raw.port))
        self.assertEqual(r.returncode, 0, r.describe())  # RawListener answers 400
        self.assertTrue(raw.all_bytes().startswith(b"GET / HTTP/1.1\r\n"),
                        "expected plaintext HTTP on the wire, got %r" % raw.all_bytes()[:40])
        self.assertNotIn('"established"', r.log)


# ---- mtls-redis ----

class MtlsRedis(ExampleTraffic):
    """No redis-server on this machine: tcp_echo_server stands in for Redis
    and tcp_client for redis-cli (both plain TCP programs like Redis)."""

    NAME = "mtls-redis"

    def setUp(self):
        super().setUp()
        # The README's command, verbatim.
        pki_init(self.certdir, "redis.internal,localhost", ip="127.0.0.1")
        # Same CA, identities the policy does not allow / names it does not want.
        issue(self.certdir, "ca", "intruder", "URI:spiffe://tlsshim.demo/intruder",
              "clientAuth")
        issue(self.certdir, "ca", "localonly", "DNS:localhost,IP:127.0.0.1", "serverAuth")
        self.port = free_port()
        self.pol = self.policy_for(self.port)

    def policy_for(self, port):
        # 6379 may be taken (or be a real Redis): a free ephemeral port, for
        # both rules.
        path = self.example_policy([("ports: [6379]", "ports: [%d]" % port, 2)])
        with open(path, "a") as f:
            # Not in the example (warn, text): info/json so that successes
            # are logged and machine-readable.
            f.write("\nlog:\n  level: info\n  format: json\n")
        return path

    def test_client_with_allowed_identity_is_served(self):
        srv = self.echo_server(self.port, self.pol)
        # README: `redis-cli -h 127.0.0.1 -p 6379 ping` under the policy.
        r = self.client("127.0.0.1", self.port, self.pol)
        self.assert_echo_ok(r, 256 << 10)
        self.assert_log_event(r.log, "established", direction="outbound", rule="redis-out",
                              name="redis.internal", version="TLSv1.3")
        self.wait_log_event(srv, "established", "the server's established event",
                            direction="inbound", rule="redis-in", version="TLSv1.3")
        ev = self.assert_log_event(srv.log(), "established", rule="redis-in")
        self.assertIn("spiffe://tlsshim.demo/client", ev.get("peer_identity", ""), ev)

    def test_client_without_shim_is_refused(self):
        """README: `redis-cli ... ping` without the shim: refused."""
        srv = self.echo_server(self.port, self.pol)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"PING\r\n")
            got = b""
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
            except ConnectionResetError:
                pass
        self.assertNotIn(b"PING", got, "the plaintext request was echoed")
        self.wait_log_event(srv, "failed", "the refusal in the server's log",
                            direction="inbound", rule="redis-in")
        r = self.client("127.0.0.1", self.port, None)  # tcp_client without the shim
        self.assertNotEqual(r.returncode, 0, r.describe())

    def test_identity_not_in_peer_names_is_refused(self):
        srv = self.echo_server(self.port, self.pol)
        c = self.certdir
        b, seen = self.s_client(self.port, ["-CAfile", os.path.join(c, "ca.pem"),
                                            "-servername", "redis.internal",
                                            "-cert", os.path.join(c, "intruder.pem"),
                                            "-key", os.path.join(c, "intruder.key")],
                                b"PING-7c1d\n", "PING-7c1d")
        self.assertFalse(seen, "an unlisted client was served\n" + b.describe())
        self.wait_log_event(srv, "failed", "the refusal in the server's log",
                            rule="redis-in")
        self.assert_log_event(srv.log(), "failed", rule="redis-in",
                              reason="peer identity not allowed: "
                                     "spiffe://tlsshim.demo/intruder")

    def test_client_without_certificate_is_refused(self):
        srv = self.echo_server(self.port, self.pol)
        b, seen = self.s_client(self.port, ["-CAfile", os.path.join(self.certdir, "ca.pem"),
                                            "-servername", "redis.internal"],
                                b"PING-7c1d\n", "PING-7c1d")
        self.assertFalse(seen, "a client without a certificate was served\n" + b.describe())
        self.wait_log_event(srv, "failed", "the refusal in the server's log",
                            rule="redis-in")

    def test_native_client_with_allowed_identity(self):
        """openssl s_client with the pki client certificate interoperates."""
        srv = self.echo_server(self.port, self.pol)
        c = self.certdir
        b, seen = self.s_client(self.port, ["-CAfile", os.path.join(c, "ca.pem"),
                                            "-servername", "redis.internal",
                                            "-cert", os.path.join(c, "client.pem"),
                                            "-key", os.path.join(c, "client.key")],
                                b"PING-7c1d\n", "PING-7c1d")
        self.assertTrue(seen, b.describe() + "\nserver:\n" + srv.describe())

    def test_server_without_redis_internal_is_refused(self):
        """The clients check that the server certificate carries redis.internal."""
        c = self.certdir
        srv, port = self.start_s_server(["-cert", os.path.join(c, "localonly.pem"),
                                         "-key", os.path.join(c, "localonly.key")])
        r = self.expect_error("127.0.0.1", port, self.policy_for(port), "EPROTO")
        self.assert_log_event(r.log, "failed", rule="redis-out",
                              reason="peer name mismatch: wanted redis.internal")


# ---- permissive-migration ----

class PermissiveMigration(ExampleTraffic):
    NAME = "permissive-migration"

    def setUp(self):
        super().setUp()
        pki_init(self.certdir, "web.internal,localhost", ip="127.0.0.1")
        # A client certificate from another CA: invalid for this server.
        make_ca(self.certdir, "otherca", "other CA")
        issue(self.certdir, "otherca", "badclient", "URI:spiffe://other/client",
              "clientAuth")
        self.port = free_port()
        # 8080 may be taken: a free ephemeral port, for both rules.
        self.pol = self.example_policy([("ports: [8080]", "ports: [%d]" % self.port, 3)])
        self.www = os.path.join(self.tmp, "www")
        os.makedirs(self.www)
        with open(os.path.join(self.www, "hello.txt"), "w") as f:
            f.write("hello over any transport\n")

    def http_server(self):
        # README: `python3 -m http.server 8080` (-u so the banner is not buffered).
        b = self.spawn_c([sys.executable, "-u", "-m", "http.server", str(self.port)],
                         policy=self.pol, name="http.server", cwd=self.www)
        wait_for(lambda: "Serving HTTP on" in b.stdout() or not b.alive(), WAIT,
                 "python3 -m http.server to start")
        self.assertTrue(b.alive(), b.describe())
        return b

    @NEEDS_HOSTS
    def test_plaintext_and_tls_clients_both_served_and_logged(self):
        srv = self.http_server()
        # The TLS client dials web.internal (in web-out's names), resolved to
        # 127.0.0.1 by a private /etc/hosts; see test_readme_curl_localhost
        # for why not localhost.
        url = "http://web.internal:%d/hello.txt" % self.port
        hosts = self.hosts_file({"web.internal": "127.0.0.1"})
        plain = self.run_c(["curl", "-sS", "--max-time", "20", url], None, hosts=hosts,
                           what="curl")
        self.assertEqual(plain.returncode, 0, plain.describe() + srv.describe())
        self.assertEqual(plain.stdout, "hello over any transport\n")
        self.wait_log_event(srv, "plaintext", "the plaintext decision",
                            rule="web-in-migrating", direction="inbound",
                            reason="permissive: first bytes are not TLS: serving plaintext")

        tls = self.run_c(["curl", "-sS", "--max-time", "20", url], self.pol, hosts=hosts,
                         what="curl")
        self.assertEqual(tls.returncode, 0, tls.describe() + srv.describe())
        self.assertEqual(tls.stdout, "hello over any transport\n")
        self.assert_log_event(tls.log, "established", direction="outbound", rule="web-out",
                              name="web.internal")
        # The README: the TLS decision is event `permissive`.
        self.wait_log_event(srv, "permissive", "the TLS decision", rule="web-in-migrating",
                            reason="ClientHello seen: serving TLS")
        self.wait_log_event(srv, "established", "the inbound TLS connection",
                            direction="inbound", rule="web-in-migrating")

    def test_python_client_by_localhost_gets_tls(self):
        """web-out's `localhost` works for a program that resolves it with
        getaddrinfo (Python's urllib does)."""
        srv = self.http_server()
        code = ("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                "'http://localhost:%d/hello.txt', timeout=20).read().decode())" % self.port)
        r = self.run_c([sys.executable, "-c", code], self.pol, what="python urllib")
        self.assertEqual(r.returncode, 0, r.describe() + srv.describe())
        self.assertEqual(r.stdout, "hello over any transport\n")
        self.assert_log_event(r.log, "established", rule="web-out", name="localhost")
        self.wait_log_event(srv, "permissive", "the TLS decision", rule="web-in-migrating")

    # README: `tlsshim run -p policy.yaml -- curl http://localhost:8080/`
    # is "now over TLS". curl resolves "localhost" itself (RFC 6761), so the
    # shim never sees the name; the address rule web-out-local selects it.
    def test_readme_curl_localhost(self):
        srv = self.http_server()
        r = self.run_c(["curl", "-sS", "--max-time", "20",
                        "http://localhost:%d/hello.txt" % self.port], self.pol, what="curl")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assert_log_event(r.log, "established", rule="web-out-local")
        self.wait_log_event(srv, "permissive", "the server's TLS decision")

    def test_invalid_client_certificate_is_refused_not_downgraded(self):
        srv = self.http_server()
        c = self.certdir
        b, seen = self.s_client(self.port, ["-CAfile", os.path.join(c, "ca.pem"),
                                            "-servername", "localhost",
                                            "-cert", os.path.join(c, "badclient.pem"),
                                            "-key", os.path.join(c, "badclient.key")],
                                b"GET /hello.txt HTTP/1.0\r\n\r\n", "hello over any")
        self.assertFalse(seen, "served a client with an invalid certificate\n"
                         + b.describe())
        self.wait_log_event(srv, "failed", "the refusal", direction="inbound",
                            rule="web-in-migrating")
        self.assertNotIn('"event":"plaintext"', srv.log().replace(" ", ""))

    def test_tls_client_without_certificate_is_served(self):
        """client_auth: optional: no certificate is fine."""
        srv = self.http_server()
        b, seen = self.s_client(self.port, ["-CAfile", os.path.join(self.certdir, "ca.pem"),
                                            "-servername", "localhost"],
                                b"GET /hello.txt HTTP/1.0\r\n\r\n", "hello over any")
        self.assertTrue(seen, b.describe() + srv.describe())


# ---- deny-egress-allowlist ----

NETNS_PEERS = r"""
# Peers of deny-egress-allowlist inside the test's network namespace, each on
# the exact address and port the example names. Prints one JSON line per
# event to stdout; "report" on stdin prints the RawListener's counts.
import json, os, socket, ssl, sys, threading
sys.path.insert(0, sys.argv[1])
import harness
certs = sys.argv[2]
out_lock = threading.Lock()

def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

def tls_echo(addr, port, cert, require_client):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certs, cert + ".pem"), os.path.join(certs, cert + ".key"))
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(os.path.join(certs, "ca.pem"))
    snis = {}
    ctx.sni_callback = lambda o, name, c: snis.__setitem__(id(o), name)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port)); ls.listen(16)
    def conn(c):
        try:
            s = ctx.wrap_socket(c, server_side=True)
            sans = [v for k, v in (s.getpeercert() or {}).get("subjectAltName", ())]
            emit({"peer": "%s:%d" % (addr, port), "sni": snis.pop(id(s), None),
                  "client_sans": sans, "version": s.version()})
            while True:
                b = s.recv(65536)
                if not b:
                    break
                s.sendall(b)
            s.close()
        except Exception as e:
            emit({"peer": "%s:%d" % (addr, port), "error": repr(e)})
    def loop():
        while True:
            c, _ = ls.accept()
            threading.Thread(target=conn, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

tls_echo("10.20.0.7", 5432, "db", True)
tls_echo("10.40.0.1", 443, "api", False)
raw = harness.RawListener("record", addr="198.51.100.1")
emit({"ready": True, "raw_port": raw.port})
for line in sys.stdin:
    if line.strip() == "report":
        emit({"accepted": raw.accepted, "bytes": len(raw.all_bytes())})
"""


@unittest.skipIf(harness.PLAIN, "PLAIN=1")
class DenyEgressAllowlist(ExampleTraffic):
    """Runs in a network namespace whose loopback carries the example's
    addresses, so the policy keeps every address, port and name as written.
    (On the host, loopback-out would make every local destination
    plaintext: nothing could be denied.)"""

    NAME = "deny-egress-allowlist"
    ADDRS = ["10.20.0.7", "10.30.4.5", "10.0.0.2", "198.51.100.1", "10.40.0.1"]

    def setUp(self):
        super().setUp()
        self.ns = "tlsshim-ex-%d" % os.getpid()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)
        r = subprocess.run(["ip", "netns", "add", self.ns], capture_output=True, timeout=30)
        if r.returncode != 0:
            self.skipTest("cannot create a network namespace (needs root): %s"
                          % r.stderr.decode().strip())
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.ns],
                        capture_output=True, timeout=30)
        sh(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"])
        for a in self.ADDRS:
            sh(["ip", "netns", "exec", self.ns, "ip", "addr", "add", a + "/32", "dev", "lo"])
        # README: `tlsshim pki init certs --names db.internal`.
        pki_init(self.certdir, "db.internal")
        issue(self.certdir, "ca", "db", "DNS:db.internal", "serverAuth")
        issue(self.certdir, "ca", "api", "DNS:api.payments.example", "serverAuth")
        self.pol = self.example_policy([
            # The OS bundle cannot vouch for a test server: the test CA
            # stands in for `ca: system` (trust `public`, payments-api).
            ("    ca: system\n", "    ca: certs/ca.pem\n", 1),
            # Machine-readable log; info so that TLS successes are logged too.
            ("  level: warn ", "  level: info\n  format: json\n ", 1),
        ])
        # The name the payments-api rule wants resolves to an address on the
        # namespace's loopback (not 127/8: loopback-out would match first).
        self.hosts = self.hosts_file({"api.payments.example": "10.40.0.1"})
        script = os.path.join(self.tmp, "peers.py")
        with open(script, "w") as f:
            f.write(NETNS_PEERS)
        self.peers = self.spawn_c([sys.executable, "-u", script, os.path.dirname(
            os.path.abspath(harness.__file__)), self.certdir], netns=self.ns,
            name="netns-peers", stdin=subprocess.PIPE)
        wait_for(lambda: '"ready"' in self.peers.stdout() or not self.peers.alive(), WAIT,
                 "the namespace's peers")
        self.assertTrue(self.peers.alive(), self.peers.describe())
        self.raw_port = json.loads(self.peers.stdout().splitlines()[0])["raw_port"]

    def peer_events(self):
        return [json.loads(l) for l in self.peers.stdout().splitlines() if l.startswith("{")]

    def raw_report(self):
        n = len(self.peer_events())
        self.peers.proc.stdin.write(b"report\n")
        self.peers.proc.stdin.flush()
        wait_for(lambda: len(self.peer_events()) > n and "accepted" in self.peer_events()[-1],
                 WAIT, "the RawListener's report")
        return self.peer_events()[-1]

    def c(self, host, port, **kw):
        return self.client(host, port, self.pol, hosts=self.hosts, netns=self.ns, **kw)

    def test_unlisted_destinations_fail_with_eacces_and_send_nothing(self):
        # README: `explain ... outbound 198.51.100.1:80  # default_action deny`
        # (the RawListener's port is ephemeral: deny covers every port).
        r = self.expect_error("198.51.100.1", self.raw_port, self.pol, "EACCES",
                              hosts=self.hosts, netns=self.ns)
        self.assert_log_event(r.log, "denied", direction="outbound", rule="default_action",
                              reason="policy action deny")
        # An allowed address on the wrong port is denied too.
        self.expect_error("10.20.0.7", 5433, self.pol, "EACCES", hosts=self.hosts,
                          netns=self.ns)
        # A program that dials the payments IP literal has no name: deny.
        self.expect_error("10.40.0.1", 443, self.pol, "EACCES", hosts=self.hosts,
                          netns=self.ns)
        rep = self.raw_report()
        self.assertEqual((rep["accepted"], rep["bytes"]), (0, 0),
                         "a denied connect reached the RawListener: %r" % rep)

    def test_plaintext_allowances(self):
        # dns-tcp and metrics (by address) and loopback-out, plaintext echo
        # servers without the shim on the example's own addresses and ports.
        for addr, port in (("10.0.0.2", 53), ("10.30.4.5", 9091), ("127.0.0.1", 5432)):
            self.echo_server(port, None, addr=addr, netns=self.ns)
            r = self.c(addr, port)
            self.assert_echo_ok(r, 256 << 10)
            self.assertNotIn('"denied"', r.log)

    def test_postgres_gets_mutual_tls_with_db_internal(self):
        r = self.c("10.20.0.7", 5432)
        self.assert_echo_ok(r, 256 << 10)
        self.assert_log_event(r.log, "established", rule="postgres", name="db.internal")
        ev = [e for e in self.peer_events() if e.get("peer") == "10.20.0.7:5432"]
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual(ev[0].get("sni"), "db.internal", ev)
        self.assertIn("spiffe://tlsshim.demo/client", ev[0].get("client_sans"), ev)

    def test_payments_api_by_name(self):
        r = self.c("api.payments.example", 443)
        self.assert_echo_ok(r, 256 << 10)
        self.assert_log_event(r.log, "established", rule="payments-api",
                              name="api.payments.example")
        ev = [e for e in self.peer_events() if e.get("peer") == "10.40.0.1:443"]
        self.assertEqual([e.get("sni") for e in ev], ["api.payments.example"], ev)

    def test_inbound_listener_allowed_other_ports_denied(self):
        # app-listener (8080) and an unlisted port, both on a non-loopback
        # address of the namespace (loopback-in allows all of 127/8).
        self.echo_server(8080, self.pol, addr="10.20.0.7", netns=self.ns)
        r = self.run_c([prog("tcp_client"), "--host", "10.20.0.7", "--port", "8080",
                        "--bytes", "65536", "--timeout", "20"], None, netns=self.ns)
        self.assert_echo_ok(r, 65536)
        srv = self.echo_server(9999, self.pol, addr="10.20.0.7", netns=self.ns)
        r = self.run_c([prog("tcp_client"), "--host", "10.20.0.7", "--port", "9999",
                        "--bytes", "65536", "--timeout", "20"], None, netns=self.ns)
        self.assertNotEqual(r.returncode, 0, "an unlisted inbound port was served\n"
                            + r.describe())
        self.wait_log_event(srv, "denied", "the inbound denial", direction="inbound",
                            rule="default_action")


# ---- spiffe-allowlist ----

class SpiffeAllowlist(ExampleTraffic):
    NAME = "spiffe-allowlist"
    ORDERS = "spiffe://example.org/ns/shop/sa/orders"
    FRONTEND = "spiffe://example.org/ns/shop/sa/frontend"
    PAYMENTS = "spiffe://example.org/ns/payments/sa/payments"

    def setUp(self):
        super().setUp()
        d = self.certdir
        # The README's openssl recipe (bundle.0 CA; SVIDs serve both roles).
        make_ca(d, "bundle.0", "example.org")
        issue(d, "bundle.0", "svid.0", "URI:" + self.ORDERS, cn="orders")
        issue(d, "bundle.0", "frontend", "URI:" + self.FRONTEND)
        issue(d, "bundle.0", "intruder", "URI:spiffe://example.org/ns/shop/sa/intruder")
        issue(d, "bundle.0", "payments", "URI:" + self.PAYMENTS)
        # The same, also carrying the DNS name the client resolves (see
        # test_calls_payments_by_spiffe_id_only for why).
        issue(d, "bundle.0", "paymentsdns",
              "URI:%s,DNS:payments.shop.svc.cluster.local" % self.PAYMENTS)
        issue(d, "bundle.0", "impostor", "URI:spiffe://example.org/ns/payments/sa/impostor,"
              "DNS:payments.shop.svc.cluster.local")
        self.hosts = self.hosts_file({"payments.shop.svc.cluster.local": "127.0.0.1"})

    def policy_for(self, port):
        path = self.example_policy([
            # 8443 may be taken: a free ephemeral port, for both rules.
            ("[8443]", "[%d]" % port, 2),
        ])
        with open(path, "a") as f:
            # Not in the example (warn, text): info/json for the assertions.
            f.write("\nlog:\n  level: info\n  format: json\n")
        return path

    def svid_args(self, name):
        d = self.certdir
        return ["-CAfile", os.path.join(d, "bundle.0.pem"), "-cert",
                os.path.join(d, name + ".pem"), "-key", os.path.join(d, name + ".key")]

    def test_listed_caller_accepted_unlisted_refused(self):
        port = free_port()
        pol = self.policy_for(port)
        srv = self.echo_server(port, pol)
        b, seen = self.s_client(port, self.svid_args("frontend"), b"ORDER-42\n", "ORDER-42")
        self.assertTrue(seen, b.describe() + srv.describe())
        self.wait_log_event(srv, "established", "the frontend's connection",
                            rule="orders-in", peer_identity=self.FRONTEND)

        b, seen = self.s_client(port, self.svid_args("intruder"), b"ORDER-43\n", "ORDER-43")
        self.assertFalse(seen, "an unlisted SPIFFE ID was served\n" + b.describe())
        self.wait_log_event(srv, "failed", "the refusal", rule="orders-in")
        self.assert_log_event(
            srv.log(), "failed", rule="orders-in",
            reason="peer identity not allowed: spiffe://example.org/ns/shop/sa/intruder "
                   "not in peer_names [spiffe://example.org/ns/shop/sa/frontend, "
                   "spiffe://example.org/ns/shop/sa/checkout]")

    def payments_peer(self, svid):
        d = self.certdir
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, svid + ".pem"), os.path.join(d, svid + ".key"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(os.path.join(d, "bundle.0.pem"))
        return self.peer(TLSEchoPeer(ctx))

    # policy.yaml: "With peer_names the server is authenticated by its
    # SPIFFE ID; the host name is still sent as SNI". A standard X.509-SVID
    # carries only the URI SAN: the allow-list is the identity check.
    @NEEDS_HOSTS
    def test_calls_payments_by_spiffe_id_only(self):
        self._call_payments("payments")

    @NEEDS_HOSTS
    def test_calls_payments_with_sni(self):
        """An SVID that also carries the DNS name works the same."""
        self._call_payments("paymentsdns")

    def _call_payments(self, svid):
        srv = self.payments_peer(svid)
        pol = self.policy_for(srv.port)
        r = self.client("payments.shop.svc.cluster.local", srv.port, pol, hosts=self.hosts)
        self.assert_echo_ok(r, 256 << 10)
        self.assert_log_event(r.log, "established", rule="payments-out",
                              peer_identity=self.PAYMENTS)
        self.assertEqual(srv.snis, ["payments.shop.svc.cluster.local"])
        self.assertEqual(uri_sans(srv.sessions[0]["peer_cert"]), [self.ORDERS])

    @NEEDS_HOSTS
    def test_payments_impostor_refused(self):
        srv = self.payments_peer("impostor")
        pol = self.policy_for(srv.port)
        r = self.expect_error("payments.shop.svc.cluster.local", srv.port, pol, "EPROTO",
                              hosts=self.hosts)
        self.assert_log_event(
            r.log, "failed", rule="payments-out",
            reason="peer identity not allowed: spiffe://example.org/ns/payments/sa/impostor")


if __name__ == "__main__":
    harness.main()
