#!/usr/bin/env python3
"""test_demo.py: `make demo` (examples/demo/run.sh) runs end to end and tells its story.

Environment: TLSSHIM_BUILD_DIR (default <repo>/build), TLSSHIM_SOURCE_DIR.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD_DIR as BUILD, SOURCE_DIR as TOP  # noqa: E402
RUN_SH = os.path.join(TOP, "examples", "demo", "run.sh")
TIMEOUT = 180


def run_demo(env, timeout=TIMEOUT):
    """Runs run.sh in its own process group; on timeout, TERM lets its trap
    clean up, then KILL. Returns (returncode, stdout, stderr)."""
    p = subprocess.Popen([RUN_SH], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        raise AssertionError("run.sh did not finish within %d s\nstdout:\n%s\nstderr:\n%s"
                             % (timeout, out, err))
    return p.returncode, out, err


class Demo(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tlsshim-test-demo.")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def env(self, **extra):
        env = dict(os.environ, TLSSHIM_BUILD_DIR=BUILD, TMPDIR=self.tmp)
        env.update(extra)
        return env

    def test_story(self):
        for f in ("bin/tlsshim", "lib/libtlsshim.so"):
            self.assertTrue(os.path.exists(os.path.join(BUILD, f)),
                            "%s/%s is missing: build first" % (BUILD, f))
        rc, out, err = run_demo(self.env())
        self.assertEqual(rc, 0, "run.sh failed\nstdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertEqual(err, "", "run.sh wrote to stderr on success")
        lines = out.splitlines()
        self.assertTrue(15 <= len(lines) <= 25, "story has %d lines:\n%s" % (len(lines), out))

        self.assertEqual(lines[0], "tlsshim demo: an unmodified HTTP server and an "
                         "unmodified curl, mutual TLS on the wire")
        self.assertIn('  fetched    "Hello from an unmodified plaintext server" (', out)
        self.assertRegex(out, re.compile(
            r"^  handshake  TLSv1\.3 TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|"
            r"CHACHA20_POLY1305_SHA256) (X25519|P-256|P-384), resumed=no$", re.M))
        self.assertIn("  identities server saw client spiffe://tlsshim.demo/client; "
                      "client saw server localhost\n", out)
        self.assertRegex(out, re.compile(
            r"^  server log \S+Z tlsshim\[\d+\] info event=established direction=inbound "
            r"rule=web-in .* version=TLSv1\.3 .* peer_identity=spiffe://tlsshim\.demo/client$",
            re.M))
        self.assertIn("proof that the wire carried TLS (tools not under the shim):\n", out)
        self.assertIn("  ok  openssl s_client with the client certificate: "
                      "page received over TLSv1.3\n", out)
        self.assertIn("  ok  openssl s_client without a client certificate: refused "
                      "(tlsv13 alert certificate required; server log: client certificate "
                      "required but none was sent)\n", out)
        self.assertRegex(out, re.compile(
            r"^  ok  plain curl without the shim: no page \(curl: \(\d+\) .*; "
            r"server log: peer sent garbage \(not TLS\)\)$", re.M))
        if os.geteuid() == 0 and shutil.which("tcpdump"):
            self.assertRegex(out, re.compile(
                r"^  ok  tcpdump on lo: 1 connection\(s\), \d+ TLS records \(.*application_data.*\), "
                r"\d+ bytes, client's first bytes 16 03 0[1-3]; the page never in clear$", re.M))
        else:
            self.assertIn("  --  tcpdump capture skipped (", out)
        self.assertEqual(lines[-1], "stopped the server; the demo passed.")
        # The trap removed the work folder.
        self.assertEqual(os.listdir(self.tmp), [])

    def test_missing_build_is_a_clear_error(self):
        empty = os.path.join(self.tmp, "nobuild")
        os.mkdir(empty)
        rc, out, err = run_demo(self.env(TLSSHIM_BUILD_DIR=empty), timeout=30)
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertEqual(err, "demo: %s/bin/tlsshim not found: run 'make build' first "
                         "(or set TLSSHIM_BUILD_DIR)\n" % empty)


if __name__ == "__main__":
    unittest.main(verbosity=2)
