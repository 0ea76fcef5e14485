#!/usr/bin/env python3
"""test_examples.py: every example policy in examples/ is valid once the
certificates it names exist, and `tlsshim explain` picks the rule its README
promises for a representative connection.

Each example has its own TestCase class (with the ExampleTest mixin): setUp
copies the example into a temporary folder and makes the certificates it
names; add traffic tests for an example as further methods of its class.

Run: TLSSHIM_BUILD_DIR=build TLSSHIM_SOURCE_DIR=. python3 tests/integration/test_examples.py
"""
import os
import sys
import shutil
import subprocess
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CLI as TLSSHIM, SOURCE_DIR as SOURCE  # noqa: E402
EXAMPLES = os.path.join(SOURCE, "examples")
GEN_CERTS = os.path.join(SOURCE, "tests", "gen_certs.sh")
TIMEOUT = 120

_pki_cache = {}


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TLSSHIM_POLICY", "TLSSHIM_LOG", "TLSSHIM_LIB",
                        "LD_PRELOAD")}
    env.update(extra)
    return env


def run(args, cwd=None, **env):
    return subprocess.run(args, cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_pki(tmp_root):
    """A folder with ca.pem, server.pem/.key, client.pem/.key, made once per
    run: by tests/gen_certs.sh when present, else by `tlsshim pki init`."""
    if "dir" not in _pki_cache:
        d = os.path.join(tmp_root, "pki")
        if os.path.exists(GEN_CERTS):
            r = run(["sh", GEN_CERTS, d])
        else:
            r = run([TLSSHIM, "pki", "init", d, "--names",
                     "localhost,redis.internal,web.internal,db.internal"])
        if r.returncode != 0:
            raise RuntimeError("cannot make the test PKI: " + r.stderr)
        _pki_cache["dir"] = d
    return _pki_cache["dir"]


_tmp_root = None


def setUpModule():
    global _tmp_root
    _tmp_root = tempfile.mkdtemp(prefix="tlsshim-examples-")


def tearDownModule():
    shutil.rmtree(_tmp_root, True)


class ExampleTest:
    """Mixin for the example classes (not a TestCase itself, so that it is
    not collected): NAME is the folder under examples/; CERTS maps each
    certificate file the policy names (relative to the policy) to the file
    of the test PKI that stands in for it."""
    NAME = None
    CERTS = {}

    def setUp(self):
        self.src = os.path.join(EXAMPLES, self.NAME)
        self.dir = tempfile.mkdtemp(prefix=self.NAME + "-", dir=_tmp_root)
        self.addCleanup(shutil.rmtree, self.dir, True)
        for f in os.listdir(self.src):
            p = os.path.join(self.src, f)
            if os.path.isfile(p):
                shutil.copy(p, self.dir)
        pki = test_pki(_tmp_root)
        for rel, name in self.CERTS.items():
            dst = os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(os.path.join(pki, name), dst)
            os.chmod(dst, 0o600 if rel.endswith(".key") else 0o644)
        self.policy = os.path.join(self.dir, "policy.yaml")

    def check(self):
        r = run([TLSSHIM, "check", self.policy])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("policy OK: "), r.stdout)
        return r

    def explain(self, direction, endpoint, rule, action):
        """Asserts that explain picks |rule| (None: the default action) and
        prints |action|; returns the output."""
        r = run([TLSSHIM, "explain", "-p", self.policy, direction, endpoint])
        self.assertEqual(r.returncode, 0, r.stderr)
        if rule is None:
            self.assertIn("match: no rule; default_action applies\n", r.stdout)
        else:
            self.assertRegex(r.stdout, r"\nmatch: rule '%s' \(rule \d+, line \d+\)\n"
                             % rule)
        self.assertIn("\naction: %s\n" % action, r.stdout)
        return r.stdout

    def test_files(self):
        self.assertTrue(os.path.isfile(os.path.join(self.src, "policy.yaml")))
        with open(os.path.join(self.src, "README.md")) as f:
            readme = f.read()
        self.assertIn("tlsshim check policy.yaml", readme)

    def test_check(self):
        self.check()

    def test_check_fails_without_certificates(self):
        if not self.CERTS:
            self.skipTest("the example names no certificate files")
        shutil.rmtree(os.path.join(self.dir, "certs"))
        r = run([TLSSHIM, "check", self.policy])
        self.assertEqual(r.returncode, 1)
        self.assertIn("No such file or directory", r.stderr)


class ClientSniSystemCa(ExampleTest, unittest.TestCase):
    NAME = "client-sni-system-ca"

    def test_explain(self):
        out = self.explain("outbound", "www.example.com:443", "public-https",
                           "tls")
        self.assertIn("  trust: public (ca system)\n", out)
        self.assertIn("  verified name: www.example.com (the name the program "
                      "resolved; sent as SNI)\n", out)
        self.explain("outbound", "www.example.com:80", None, "plaintext")
        # An IP literal has no name: the by-name rule does not apply.
        self.explain("outbound", "192.0.2.10:443", None, "plaintext")


class MtlsRedis(ExampleTest, unittest.TestCase):
    NAME = "mtls-redis"
    CERTS = {"certs/ca.pem": "ca.pem", "certs/server.pem": "server.pem",
             "certs/server.key": "server.key", "certs/client.pem": "client.pem",
             "certs/client.key": "client.key"}

    def test_explain(self):
        out = self.explain("inbound", "6379", "redis-in", "tls")
        self.assertIn("  client_auth: required\n", out)
        self.assertIn("  peer_names: spiffe://tlsshim.demo/client, client\n", out)
        out = self.explain("outbound", "127.0.0.1:6379", "redis-out", "tls")
        self.assertIn("  verified name: redis.internal (sent as SNI)\n", out)
        self.assertIn("  identity: redis-client (cert ", out)
        self.explain("outbound", "127.0.0.1:6380", None, "plaintext")


class PermissiveMigration(ExampleTest, unittest.TestCase):
    NAME = "permissive-migration"
    CERTS = {"certs/ca.pem": "ca.pem", "certs/server.pem": "server.pem",
             "certs/server.key": "server.key"}

    def test_explain(self):
        out = self.explain("inbound", "8080", "web-in-migrating", "permissive")
        self.assertIn("  client_auth: optional\n", out)
        self.assertIn("  handshake_timeout_ms: 3000\n", out)
        self.explain("outbound", "localhost:8080", "web-out", "tls")


class DenyEgressAllowlist(ExampleTest, unittest.TestCase):
    NAME = "deny-egress-allowlist"
    CERTS = {"certs/ca.pem": "ca.pem", "certs/client.pem": "client.pem",
             "certs/client.key": "client.key"}

    def test_explain(self):
        out = self.explain("outbound", "10.20.0.7:5432", "postgres", "tls")
        self.assertIn("  verified name: db.internal (sent as SNI)\n", out)
        self.explain("outbound", "10.0.0.2:53", "dns-tcp", "plaintext")
        self.explain("outbound", "10.30.4.5:9091", "metrics", "plaintext")
        self.explain("outbound", "api.payments.example:443", "payments-api",
                     "tls")
        self.explain("outbound", "127.0.0.1:5432", "loopback-out", "plaintext")
        self.explain("inbound", "8080", "app-listener", "plaintext")
        self.explain("inbound", "127.0.0.1:22", "loopback-in", "plaintext")
        out = self.explain("outbound", "198.51.100.1:80", None, "deny")
        self.assertIn("connect() fails with EACCES", out)
        self.explain("inbound", "22", None, "deny")


class SpiffeAllowlist(ExampleTest, unittest.TestCase):
    NAME = "spiffe-allowlist"
    CERTS = {"certs/bundle.0.pem": "ca.pem", "certs/svid.0.pem": "server.pem",
             "certs/svid.0.key": "server.key"}

    def test_explain(self):
        out = self.explain("inbound", "8443", "orders-in", "tls")
        self.assertIn("  peer_names: spiffe://example.org/ns/shop/sa/frontend, "
                      "spiffe://example.org/ns/shop/sa/checkout\n", out)
        out = self.explain("outbound", "payments.shop.svc.cluster.local:8443",
                           "payments-out", "tls")
        self.assertIn("  peer_names: spiffe://example.org/ns/payments/sa/"
                      "payments\n", out)

    @unittest.skipUnless(shutil.which("bash") and shutil.which("openssl"),
                         "needs bash and openssl")
    def test_readme_recipe(self):
        """The README's openssl recipe makes SVIDs the policy accepts."""
        shutil.rmtree(os.path.join(self.dir, "certs"))
        with open(os.path.join(self.src, "README.md")) as f:
            lines = f.read().split("\n")
        start = lines.index("mkdir -p certs && cd certs")
        end = lines.index("cd ..", start)
        r = run(["bash", "-euc", "\n".join(lines[start:end + 1])], cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check()
        r = run(["openssl", "x509", "-in", "certs/svid.0.pem", "-noout", "-ext",
                 "subjectAltName"], cwd=self.dir)
        self.assertIn("URI:spiffe://example.org/ns/shop/sa/orders", r.stdout)


class AllExamplesCovered(unittest.TestCase):
    """The five policy examples of the CLI's part exist."""

    def test_present(self):
        for c in (ClientSniSystemCa, MtlsRedis, PermissiveMigration,
                  DenyEgressAllowlist, SpiffeAllowlist):
            self.assertTrue(os.path.isdir(os.path.join(EXAMPLES, c.NAME)), c.NAME)


if __name__ == "__main__":
    unittest.main(verbosity=2)
