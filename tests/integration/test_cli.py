#!/usr/bin/env python3
"""test_cli.py: the tlsshim command line (SPEC.md section 5), run as a user
would: check, explain, pki init, version and run, with their exit statuses and
exact messages.

Run: TLSSHIM_BUILD_DIR=build TLSSHIM_SOURCE_DIR=. python3 tests/integration/test_cli.py
"""
import os
import sys
import re
import shutil
import struct
import subprocess
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CLI as TLSSHIM, LIB as LIBRARY, SOURCE_DIR as SOURCE  # noqa: E402
BROKEN = os.path.join(SOURCE, "tests", "policy", "broken")
GEN_CERTS = os.path.join(SOURCE, "tests", "gen_certs.sh")
TIMEOUT = 60

USAGE_HEAD = "usage: tlsshim COMMAND [ARGS...]\n"


def run(args, env=None, cwd=None, extra_env=None):
    """Runs a command with a timeout; returns the CompletedProcess."""
    e = dict(os.environ if env is None else env)
    for k in ("TLSSHIM_POLICY", "TLSSHIM_LOG", "TLSSHIM_LIB", "LD_PRELOAD"):
        if env is None:
            e.pop(k, None)
    e.update(extra_env or {})
    return subprocess.run(args, env=e, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)


def tlsshim(*args, **kw):
    return run([TLSSHIM] + list(args), **kw)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def pem(label):
    return "-----BEGIN %s-----\nTUlJQg==\n-----END %s-----\n" % (label, label)


def write_cert_stubs(d):
    """The PEM-looking files the broken fixtures name (as tests/policy's
    test_util.h WriteCerts does): only the block markers matter to the policy
    loader, and the fixtures fail before the TLS layer reads them."""
    write(d + "/certs/svc.pem", pem("CERTIFICATE") + pem("CERTIFICATE"))
    write(d + "/certs/svc.key", pem("PRIVATE KEY"), 0o600)
    write(d + "/certs/ec.key", pem("EC PRIVATE KEY"), 0o600)
    write(d + "/certs/open.key", pem("PRIVATE KEY"), 0o644)
    write(d + "/certs/ca.pem", pem("CERTIFICATE"))
    write(d + "/certs/ca.crl.pem", pem("X509 CRL"))
    with open(d + "/certs/svc.ocsp", "wb") as f:
        f.write(b"\x30\x03\x0a\x01\x00")
    write(d + "/certs/notpem.pem", "this is not a certificate\n")
    write(d + "/certs/beginonly.pem", "-----BEGIN CERTIFICATE-----\nMII\n")


def line_of(text, n):
    lines = text.split("\n")
    return lines[n - 1] if 0 < n <= len(lines) else ""


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tlsshim-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def pki(self, rel="certs", *opts):
        r = tlsshim("pki", "init", self.path(rel), *opts)
        self.assertEqual(r.returncode, 0, r.stderr)
        return self.path(rel)


# A policy using the certificates of `tlsshim pki init certs`.
GOOD_POLICY = """\
version: 1
default_action: plaintext
identities:
  svc:
    cert: certs/server.pem
    key: certs/server.key
  cli:
    cert: certs/client.pem
    key: certs/client.key
trust:
  internal:
    ca: certs/ca.pem
  public:
    ca: system
defaults:
  groups: [X25519, P-256]
rules:
  - name: redis-out
    direction: outbound
    match: {addresses: [127.0.0.1], ports: [6379]}
    action: tls
    tls: {identity: cli, trust: internal, server_name: redis.internal}
  - name: redis-shadowed
    direction: outbound
    match: {ports: [6379]}
    action: deny
  - name: web-in
    direction: inbound
    match: {ports: [8443]}
    action: tls
    tls:
      identity: svc
      trust: internal
      client_auth: required
      peer_names: ["spiffe://tlsshim.demo/client"]
      protocols: {min: TLS1.3}
  - name: local-in
    direction: inbound
    match: {addresses: [127.0.0.1], ports: ["9000-9010"]}
    action: permissive
    tls: {identity: svc}
  - name: public-out
    direction: outbound
    match: {names: [localhost, "*.example.test"], ports: [443]}
    action: tls
    tls: {trust: public, alpn: [h2, http/1.1]}
  - name: v6-deny
    direction: outbound
    match: {addresses: ["::1"], ports: [22]}
    action: deny
"""


class TestUsage(unittest.TestCase):
    def test_no_command(self):
        r = tlsshim()
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith(
            "tlsshim: no command given\n" + USAGE_HEAD), r.stderr)
        self.assertEqual(r.stdout, "")

    def test_unknown_command(self):
        r = tlsshim("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith(
            "tlsshim: unknown command 'frobnicate'\n" + USAGE_HEAD), r.stderr)

    def test_help(self):
        r = tlsshim("--help")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith(USAGE_HEAD))
        for cmd in ("run [-p POLICY]", "check POLICY", "explain [-p POLICY]",
                    "pki init DIR", "version"):
            self.assertIn(cmd, r.stdout)

    def test_help_after_a_command(self):
        for cmd in ("run", "check", "explain", "pki", "version"):
            for flag in ("-h", "--help"):
                r = tlsshim(cmd, flag)
                self.assertEqual(r.returncode, 0, "%s %s: %s" % (cmd, flag, r.stderr))
                self.assertTrue(r.stdout.startswith(USAGE_HEAD), r.stdout)
                self.assertEqual(r.stderr, "")


class TestVersion(unittest.TestCase):
    def test_version(self):
        r = tlsshim("version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^tlsshim 0\.1\.0 \(BoringSSL [0-9a-f]{7,64}\)\n$")
        self.assertEqual(r.stderr, "")

    def test_version_option(self):
        self.assertEqual(tlsshim("--version").stdout, tlsshim("version").stdout)

    def test_version_extra_argument(self):
        r = tlsshim("version", "now")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith(
            "tlsshim: version: unexpected argument 'now'\n"))


class TestCheck(TempDirTest):
    def test_valid(self):
        self.pki()
        write(self.path("policy.yaml"), GOOD_POLICY)
        r = tlsshim("check", self.path("policy.yaml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(
            r.stdout,
            "policy OK: 6 rules (4 outbound, 2 inbound; 3 tls, 1 permissive, "
            "2 deny), 2 identities, 2 trusts, default_action plaintext\n")
        self.assertEqual(r.stderr, "")

    def test_relative_path(self):
        self.pki()
        write(self.path("policy.yaml"), GOOD_POLICY)
        r = tlsshim("check", "policy.yaml", cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_minimal(self):
        write(self.path("p.yaml"), "version: 1\n")
        r = tlsshim("check", self.path("p.yaml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "policy OK: 0 rules, 0 identities, 0 trusts, "
                         "default_action plaintext\n")

    def test_missing_file(self):
        p = self.path("nope.yaml")
        r = tlsshim("check", p)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "tlsshim: policy %s: cannot open: No such "
                         "file or directory\n" % p)
        self.assertEqual(r.stdout, "")

    def test_usage(self):
        r = tlsshim("check")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("tlsshim: check: missing POLICY\n"
                                            + USAGE_HEAD))
        r = tlsshim("check", "a", "b")
        self.assertEqual(r.returncode, 2)

    def test_broken_fixtures(self):
        """Every fixture of tests/policy/broken gives its exact diagnostic,
        the quoted line and a caret under the column."""
        names = sorted(n for n in os.listdir(BROKEN) if n.endswith(".yaml"))
        self.assertGreaterEqual(len(names), 40)
        for name in names:
            with self.subTest(fixture=name):
                with open(os.path.join(BROKEN, name)) as f:
                    text = f.read()
                m = re.match(r"# expect: (line (\d+) col (\d+): .*)\n", text)
                self.assertIsNotNone(m, "fixture must start with '# expect: '")
                expect, line, col = m.group(1), int(m.group(2)), int(m.group(3))
                d = tempfile.mkdtemp(dir=self.dir)
                write_cert_stubs(d)
                p = os.path.join(d, "policy.yaml")
                write(p, text)
                r = tlsshim("check", p)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertEqual(r.stdout, "")
                self.assertEqual(r.stderr.split("\n"), [
                    "tlsshim: policy %s: %s" % (p, expect),
                    "    " + line_of(text, line),
                    "    " + " " * (col - 1) + "^",
                    ""])

    def test_unknown_group_points_at_item(self):
        self.pki()
        write(self.path("p.yaml"), GOOD_POLICY.replace(
            "groups: [X25519, P-256]", "groups: [X25519, P-999]"))
        r = tlsshim("check", self.path("p.yaml"))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.split("\n"), [
            "tlsshim: policy %s: line 16 col 20: unknown group 'P-999'"
            % self.path("p.yaml"),
            "      groups: [X25519, P-999]",
            "                       ^",
            ""])

    def test_key_does_not_match_certificate(self):
        self.pki()
        write(self.path("p.yaml"), GOOD_POLICY.replace(
            "key: certs/server.key", "key: certs/client.key"))
        r = tlsshim("check", self.path("p.yaml"))
        self.assertEqual(r.returncode, 1)
        first = r.stderr.split("\n")[0]
        self.assertTrue(first.startswith("tlsshim: policy %s: line 6 col "
                                         % self.path("p.yaml")), first)
        self.assertIn("does not match", first)

    @unittest.skipUnless(os.path.exists(GEN_CERTS), "needs tests/gen_certs.sh")
    def test_expiry(self):
        certs = self.path("certs")
        subprocess.run(["sh", GEN_CERTS, certs], check=True, timeout=120,
                       capture_output=True)
        policy = ("version: 1\nidentities:\n  svc:\n    cert: certs/%s.pem\n"
                  "    key: certs/%s.key\nrules:\n  - name: in\n"
                  "    direction: inbound\n    action: tls\n"
                  "    tls: {identity: svc}\n")
        write(self.path("expired.yaml"), policy % ("expired", "expired"))
        r = tlsshim("check", self.path("expired.yaml"))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"^tlsshim: policy %s: line 4 col \d+: .*expired"
                         % re.escape(self.path("expired.yaml")))
        # Expiring within 30 days: a warning, still valid.
        write(self.path("expiring.yaml"), policy % ("expiring", "expiring"))
        r = tlsshim("check", self.path("expiring.yaml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r"^tlsshim: warning: policy ")
        self.assertTrue(r.stdout.startswith("policy OK: "))
        # An identity no rule uses yet is checked all the same.
        unused = ("version: 1\nidentities:\n  spare:\n    cert: certs/expired.pem\n"
                  "    key: certs/expired.key\nrules: []\n")
        write(self.path("unused.yaml"), unused)
        r = tlsshim("check", self.path("unused.yaml"))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r"^tlsshim: policy %s: line 4 col \d+: .*has expired"
                         % re.escape(self.path("unused.yaml")))


class TestPki(TempDirTest):
    FILES = ["ca.pem", "ca.key", "server.pem", "server.key", "client.pem",
             "client.key"]

    def sans(self, cert):
        r = run(["openssl", "x509", "-in", cert, "-noout", "-ext",
                 "subjectAltName"])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def verify(self, d, leaf, purpose):
        r = run(["openssl", "verify", "-purpose", purpose, "-CAfile",
                 os.path.join(d, "ca.pem"), os.path.join(d, leaf)])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip(), os.path.join(d, leaf) + ": OK")

    def test_defaults(self):
        d = self.path("pki")
        r = tlsshim("pki", "init", d)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([l.split()[1] for l in r.stdout.splitlines()],
                         [os.path.join(d, f) for f in self.FILES])
        for f in self.FILES:
            self.assertTrue(os.path.isfile(os.path.join(d, f)), f)
            if f.endswith(".key"):
                self.assertEqual(os.stat(os.path.join(d, f)).st_mode & 0o077, 0)
        self.verify(d, "server.pem", "sslserver")
        self.verify(d, "client.pem", "sslclient")
        sans = self.sans(os.path.join(d, "server.pem"))
        self.assertIn("DNS:localhost", sans)
        self.assertIn("IP Address:127.0.0.1", sans)
        self.assertIn("URI:spiffe://tlsshim.demo/client",
                      self.sans(os.path.join(d, "client.pem")))

    def test_names_and_ips(self):
        d = self.path("pki")
        r = tlsshim("pki", "init", d, "--names", "a.test,b.test", "--ip",
                    "10.1.2.3,::1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.verify(d, "server.pem", "sslserver")
        sans = self.sans(os.path.join(d, "server.pem"))
        for want in ("DNS:a.test", "DNS:b.test", "IP Address:10.1.2.3",
                     "IP Address:0:0:0:0:0:0:0:1"):
            self.assertIn(want, sans)
        self.assertNotIn("localhost", sans)

    def test_policy_with_pki_certs_checks(self):
        self.pki()
        write(self.path("policy.yaml"), GOOD_POLICY)
        self.assertEqual(tlsshim("check", self.path("policy.yaml")).returncode, 0)

    def test_bad_arguments(self):
        for args, msg in [
            ((), "pki: missing subcommand (init)"),
            (("make",), "pki: unknown subcommand 'make'"),
            (("init",), "pki init: missing DIR"),
            (("init", "d", "--names", "a,,b"), "pki init: bad --names list 'a,,b'"),
            (("init", "d", "--ip"), "pki init: --ip needs a value"),
            (("init", "d", "--frob"), "pki init: unknown option '--frob'"),
        ]:
            with self.subTest(args=args):
                r = tlsshim("pki", *args, cwd=self.dir)
                self.assertEqual(r.returncode, 2)
                self.assertTrue(r.stderr.startswith(
                    "tlsshim: %s\n%s" % (msg, USAGE_HEAD)), r.stderr)
        self.assertFalse(os.path.exists(self.path("d")))

    def test_bad_ip(self):
        r = tlsshim("pki", "init", self.path("pki"), "--ip", "not-an-ip")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("tlsshim: pki init: "), r.stderr)


class TestExplain(TempDirTest):
    def setUp(self):
        super().setUp()
        self.pki()
        self.policy = self.path("policy.yaml")
        write(self.policy, GOOD_POLICY)

    def explain(self, *args):
        r = tlsshim("explain", "-p", self.policy, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertTrue(r.stdout.startswith(
            "policy: %s\nconnection: %s %s\n" % (self.policy, args[0], args[1])),
            r.stdout)
        return r.stdout

    def test_outbound_ip_first_match_wins(self):
        out = self.explain("outbound", "127.0.0.1:6379")
        self.assertIn("match: rule 'redis-out' (rule 1, line 18)\n"
                      "  via address 127.0.0.1\naction: tls\n", out)
        self.assertNotIn("redis-shadowed", out)
        for line in ("  versions: TLS1.2 to TLS1.3",
                     "  groups: X25519, P-256",
                     "  identity: cli (cert %s, key %s)" % (
                         self.path("certs/client.pem"),
                         self.path("certs/client.key")),
                     "  trust: internal (ca %s)" % self.path("certs/ca.pem"),
                     "  verify_peer: true",
                     "  server_name: redis.internal",
                     "  verified name: redis.internal (sent as SNI)",
                     "  handshake_timeout_ms: 10000",
                     "  session_resumption: true",
                     "  crl_check: off (the trust has no crl)"):
            self.assertIn(line + "\n", out)

    def test_outbound_second_rule(self):
        out = self.explain("outbound", "10.9.8.7:6379")
        self.assertIn("match: rule 'redis-shadowed' (rule 2, line 23)\n"
                      "  via address 10.9.8.7\naction: deny\n"
                      "  connect() fails with EACCES and nothing is sent\n", out)
        self.assertNotIn("tls:", out)

    def test_outbound_default_action(self):
        out = self.explain("outbound", "192.0.2.1:80")
        self.assertTrue(out.endswith(
            "match: no rule; default_action applies\n  via address 192.0.2.1\n"
            "action: plaintext\n  the connection is left alone: no TLS\n"), out)

    def test_outbound_ipv6(self):
        out = self.explain("outbound", "[::1]:22")
        self.assertIn("match: rule 'v6-deny' (rule 6, line 47)\n"
                      "  via address ::1\naction: deny\n", out)

    def test_outbound_name_through_resolution(self):
        # localhost resolves (getaddrinfo) to loopback addresses; the rule
        # matches by name and says which address it saw.
        out = self.explain("outbound", "localhost:443")
        self.assertRegex(out, r"resolved: localhost -> [0-9a-f.:, ]+\n")
        self.assertRegex(out, r"match: rule 'public-out' \(rule 5, line 42\)\n"
                              r"  via name localhost, address (127\.0\.0\.1|::1)")
        self.assertIn("  verified name: localhost (the name the program "
                      "resolved; sent as SNI)\n", out)
        self.assertIn("  alpn: h2, http/1.1\n", out)
        self.assertIn("  trust: public (ca system)\n", out)

    def test_outbound_name_resolved_address_matches_address_rule(self):
        # No rule names localhost on 6379, but its address 127.0.0.1 matches.
        out = self.explain("outbound", "localhost:6379")
        self.assertIn("match: rule 'redis-out' (rule 1, line 18)\n"
                      "  via name localhost, address 127.0.0.1", out)

    def test_outbound_unresolvable_name(self):
        out = self.explain("outbound", "www.example.test:443")
        self.assertIn("resolved: www.example.test: cannot resolve (", out)
        self.assertIn("match: rule 'public-out' (rule 5, line 42)\n"
                      "  via name www.example.test\naction: tls\n", out)

    def test_inbound_port(self):
        out = self.explain("inbound", "8443")
        self.assertIn("local address: any (rules that list addresses are "
                      "skipped)\nmatch: rule 'web-in' (rule 3, line 27)\n"
                      "action: tls\n", out)
        for line in ("  versions: TLS1.3 to TLS1.3", "  client_auth: required",
                     "  peer_names: spiffe://tlsshim.demo/client",
                     "  identity: svc (cert %s, key %s)" % (
                         self.path("certs/server.pem"),
                         self.path("certs/server.key"))):
            self.assertIn(line + "\n", out)

    def test_inbound_address_and_port(self):
        out = self.explain("inbound", "127.0.0.1:9005")
        self.assertIn("match: rule 'local-in' (rule 4, line 37)\n"
                      "  via address 127.0.0.1\naction: permissive\n", out)
        # Without the address, the address rule is skipped: default action.
        out = self.explain("inbound", "9005")
        self.assertIn("match: no rule; default_action applies\naction: "
                      "plaintext\n", out)

    def test_bad_arguments(self):
        for args, msg in [
            ((), "explain: missing direction (outbound or inbound)"),
            (("outbound",), "explain: missing endpoint"),
            (("sideways", "1"), "explain: unknown direction 'sideways' "
                                "(expected outbound or inbound)"),
            (("outbound", "443"), "explain: bad outbound endpoint '443': "
                                  "expected HOST:PORT"),
            (("outbound", "::1:443"), "explain: bad outbound endpoint "
             "'::1:443': write an IPv6 address in brackets, as [::1]:443"),
            (("outbound", "h:99999"), "explain: bad outbound endpoint "
             "'h:99999': the port must be a number from 1 to 65535"),
            (("inbound", "host:80"), "explain: bad inbound endpoint "
             "'host:80': the local address must be an IP address"),
        ]:
            with self.subTest(args=args):
                r = tlsshim("explain", "-p", self.policy, *args)
                self.assertEqual(r.returncode, 2)
                self.assertTrue(r.stderr.startswith(
                    "tlsshim: %s\n%s" % (msg, USAGE_HEAD)), r.stderr)

    def test_invalid_policy(self):
        write(self.policy, "version: 1\nrules: 3\n")
        r = tlsshim("explain", "-p", self.policy, "inbound", "80")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith(
            "tlsshim: policy %s: line 2 col 8: " % self.policy), r.stderr)
        self.assertEqual(r.stdout, "")

    def test_policy_from_environment(self):
        r = tlsshim("explain", "inbound", "8443",
                    extra_env={"TLSSHIM_POLICY": self.policy})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("match: rule 'web-in'", r.stdout)


def elf32_static(path):
    """Writes a minimal 32-bit little-endian ELF executable with one PT_LOAD
    and no PT_INTERP (no 32-bit toolchain is needed to make it)."""
    ehdr = struct.pack("<16sHHIIIIIHHHHHH",
                       b"\x7fELF\x01\x01\x01" + b"\0" * 9, 2, 3, 1,
                       0x08048054, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, 0, 0x08048000, 0x08048000, 84, 84, 5,
                       0x1000)
    with open(path, "wb") as f:
        f.write(ehdr + phdr)
    os.chmod(path, 0o755)


class TestRun(TempDirTest):
    def setUp(self):
        super().setUp()
        self.policy = self.path("policy.yaml")
        write(self.policy, "version: 1\n")  # selects nothing

    def cc(self, name, source, *flags):
        src = self.path(name + ".c")
        write(src, source)
        out = self.path(name)
        r = run(["gcc", "-o", out, src] + list(flags))
        return out if r.returncode == 0 else None

    def static_binary(self):
        exe = self.cc("static", "int main(void) { return 3; }\n", "-static")
        if exe is not None:
            return exe, 3
        # No static libc: use a static program of the system.
        for cand in ("/usr/sbin/ldconfig", "/sbin/ldconfig",
                     "/usr/bin/busybox"):
            if os.path.exists(cand) and "statically linked" in run(
                    ["file", "-L", cand]).stdout:
                return cand, None
        self.skipTest("no static binary available")

    def refused(self, r, culprit, why):
        self.assertEqual(r.returncode, 126, r.stderr)
        self.assertEqual(
            r.stderr,
            "tlsshim: run: refusing to run %s: it %s, so tlsshim cannot "
            "intercept its sockets and the policy would silently not apply "
            "(use --allow-uninterceptable to run it anyway)\n" % (culprit, why))
        self.assertEqual(r.stdout, "")

    def test_refuses_static(self):
        exe, status = self.static_binary()
        self.refused(tlsshim("run", "-p", self.policy, "--", exe), exe,
                     "is statically linked")
        r = tlsshim("run", "-p", self.policy, "--allow-uninterceptable", "--",
                    exe)
        self.assertEqual(r.stderr.split("\n")[-2],
                         "tlsshim: warning: %s is statically linked: the "
                         "policy does not apply to its sockets" % exe)
        if status is not None:
            self.assertEqual(r.returncode, status)

    def test_refuses_static_pie(self):
        exe = self.cc("spie", "int main(void) { return 3; }\n", "-static-pie")
        if exe is None:
            self.skipTest("no static-pie toolchain")
        self.refused(tlsshim("run", "-p", self.policy, "--", exe), exe,
                     "is statically linked")

    def test_refuses_static_32bit(self):
        exe = self.path("elf32")
        elf32_static(exe)
        self.refused(tlsshim("run", "-p", self.policy, "--", exe), exe,
                     "is statically linked")

    def test_refuses_go(self):
        exe = self.cc("gofake", '__attribute__((section(".go.buildinfo"), used))\n'
                      'const char buildinfo[32] = "\\xff Go buildinf:";\n'
                      "int main(void) { return 4; }\n")
        self.assertIsNotNone(exe)
        why = "is a Go program, which makes its own system calls"
        self.refused(tlsshim("run", "-p", self.policy, "--", exe), exe, why)
        r = tlsshim("run", "-p", self.policy, "--allow-uninterceptable", exe)
        self.assertEqual(r.returncode, 4, r.stderr)

    def test_refuses_script_with_static_interpreter(self):
        exe, _ = self.static_binary()
        script = self.path("script")
        write(script, "#!%s\n" % exe, 0o755)
        self.refused(tlsshim("run", "-p", self.policy, "--", script), exe,
                     "is statically linked (the interpreter of the script)")

    def test_status_passes_through(self):
        r = tlsshim("run", "-p", self.policy, "--", "sh", "-c", "exit 7")
        self.assertEqual(r.returncode, 7, r.stderr)
        r = tlsshim("run", "-p", self.policy, "sh", "-c", "exit 0")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_environment(self):
        # The real shim is preloaded into sh; the policy selects nothing.
        lib = os.path.realpath(LIBRARY)
        self.assertTrue(os.path.exists(lib), "build the tlsshim target first")
        script = 'echo "$LD_PRELOAD"; echo "$TLSSHIM_POLICY"; echo "${TLSSHIM_LOG-unset}"'
        r = tlsshim("run", "-p", "policy.yaml", "--", "sh", "-c", script,
                    cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "%s\n%s\nunset\n" % (lib, self.policy))
        # --log sets TLSSHIM_LOG; what LD_PRELOAD held is kept after ours.
        # (The extra object is an empty one built here.)
        other = self.cc("empty", "void tlsshim_test_empty(void) {}\n",
                        "-shared", "-fPIC")
        self.assertIsNotNone(other)
        r = tlsshim("run", "-p", self.policy, "--log", "debug", "--", "sh",
                    "-c", script, extra_env={"LD_PRELOAD": other})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "%s:%s\n%s\ndebug\n" % (lib, other, self.policy))

    def test_tlsshim_lib_and_default_policy(self):
        # TLSSHIM_LIB picks the library (an empty shared object built here),
        # and TLSSHIM_POLICY is the policy when -p is absent.
        lib = self.cc("empty", "void tlsshim_test_empty(void) {}\n", "-shared",
                      "-fPIC")
        self.assertIsNotNone(lib)
        r = tlsshim("run", "--", "sh", "-c", 'echo "$LD_PRELOAD $TLSSHIM_POLICY"',
                    extra_env={"TLSSHIM_LIB": lib, "TLSSHIM_POLICY": self.policy})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "%s %s\n" % (lib, self.policy))

    def test_missing_library(self):
        r = tlsshim("run", "-p", self.policy, "--", "true",
                    extra_env={"TLSSHIM_LIB": self.path("nope.so")})
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "tlsshim: run: cannot use the shim library "
                         "%s: No such file or directory (from TLSSHIM_LIB)\n"
                         % self.path("nope.so"))

    def test_bad_policy(self):
        write(self.policy, "version: 1\ndefault_action: maybe\n")
        r = tlsshim("run", "-p", self.policy, "--", "sh", "-c", "echo ran")
        self.assertEqual(r.returncode, 78)
        self.assertEqual(r.stdout, "")
        lines = r.stderr.split("\n")
        self.assertTrue(lines[0].startswith(
            "tlsshim: policy %s: line 2 col 17: " % self.policy), lines[0])
        self.assertEqual(lines[1:], ["    default_action: maybe",
                                     "                    ^", ""])
        self.assertEqual(
            tlsshim("check", self.policy).stderr, r.stderr)

    def test_missing_policy(self):
        r = tlsshim("run", "-p", self.path("nope.yaml"), "--", "true")
        self.assertEqual(r.returncode, 78)
        self.assertEqual(r.stderr, "tlsshim: policy %s: cannot open: No such "
                         "file or directory\n" % self.path("nope.yaml"))

    def test_command_not_found(self):
        r = tlsshim("run", "-p", self.policy, "--", "tlsshim-no-such-command")
        self.assertEqual(r.returncode, 127)
        self.assertEqual(r.stderr, "tlsshim: run: tlsshim-no-such-command: "
                         "command not found\n")

    def test_usage(self):
        for args, msg in [
            ((), "run: missing CMD"),
            (("-p",), "run: -p needs a value"),
            (("--log", "loud", "true"), "run: unknown log level 'loud' "
             "(expected error, warn, info or debug)"),
            (("--frob", "true"), "run: unknown option '--frob'"),
        ]:
            with self.subTest(args=args):
                r = tlsshim("run", *args)
                self.assertEqual(r.returncode, 2)
                self.assertTrue(r.stderr.startswith(
                    "tlsshim: %s\n%s" % (msg, USAGE_HEAD)), r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
