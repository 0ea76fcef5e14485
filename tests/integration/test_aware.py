#!/usr/bin/env python3
"""test_aware.py: the optional-API example (examples/aware) sees TLS under the shim, and nothing without it.

Runs the same aware binary three ways: under the shim against openssl
s_server (an outbound tls rule), without the shim against a plain listener,
and under the shim against a plain listener that no rule selects.

Environment: TLSSHIM_BUILD_DIR (default <repo>/build), TLSSHIM_SOURCE_DIR.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD_DIR as BUILD, CLI as TLSSHIM, LIB, SOURCE_DIR as TOP,  # noqa: E402
                     read_until, stop)
LINE = "hello from the aware test"


class Aware(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for f in (TLSSHIM, LIB):
            if not os.path.exists(f):
                raise AssertionError("%s is missing: build first" % f)
        cls.tmp = tempfile.mkdtemp(prefix="tlsshim-test-aware.")
        cls.aware = os.path.join(BUILD, "bin", "aware")
        if not os.path.isfile(cls.aware):
            # Not (yet) part of the CMake build: compile it the way a user would.
            cls.aware = os.path.join(cls.tmp, "aware")
            subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror",
                            "-I", os.path.join(TOP, "include"),
                            os.path.join(TOP, "examples", "aware", "aware.c"),
                            "-o", cls.aware, "-ldl"], check=True, timeout=120)
        certs = os.path.join(cls.tmp, "certs")
        subprocess.run([TLSSHIM, "pki", "init", certs], check=True, timeout=60,
                       stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write_policy(self, tls_port):
        path = os.path.join(self.tmp, "client-%d.yaml" % tls_port)
        with open(path, "w") as f:
            f.write("""version: 1
identities:
  client: {cert: certs/client.pem, key: certs/client.key}
trust:
  demo: {ca: certs/ca.pem}
rules:
  - name: aware-out
    direction: outbound
    match: {addresses: [127.0.0.1], ports: [%d]}
    action: tls
    tls: {identity: client, trust: demo, server_name: localhost}
log: {level: info}
""" % tls_port)
        return path

    def run_aware(self, port, policy=None):
        env = dict(os.environ)
        for k in ("LD_PRELOAD", "TLSSHIM_POLICY", "TLSSHIM_LOG", "TLSSHIM_LOG_FILE"):
            env.pop(k, None)
        if policy:
            env.update(LD_PRELOAD=LIB, TLSSHIM_POLICY=policy, TLSSHIM_LOG="info",
                       TLSSHIM_LOG_FILE=os.path.join(self.tmp, "shim.log"))
        return subprocess.run([self.aware, "127.0.0.1", str(port), LINE], env=env,
                              capture_output=True, text=True, timeout=60)

    def plain_listener(self):
        """A plain TCP listener whose thread reads one line into self.got."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(30)
        self.addCleanup(srv.close)
        self.got = b""

        def serve():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(30)
                while not self.got.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    self.got += chunk

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        return srv.getsockname()[1], t

    def test_under_shim_against_s_server(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        certs = os.path.join(self.tmp, "certs")
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-naccept", "1",
             "-cert", os.path.join(certs, "server.pem"),
             "-key", os.path.join(certs, "server.key"),
             "-CAfile", os.path.join(certs, "ca.pem"), "-Verify", "1",
             "-ciphersuites", "TLS_AES_128_GCM_SHA256"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(stop, server, timeout=5)
        read_until(server.stdout, b"ACCEPT", 30)

        r = self.run_aware(port, self.write_policy(port))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "TLS: version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 "
                         "peer=localhost\n")
        self.assertEqual(r.stderr, "")
        # s_server (which required a client certificate) decrypted the line.
        read_until(server.stdout, LINE.encode(), 30)
        server.wait(timeout=30)

    def test_without_shim_plain_listener(self):
        port, t = self.plain_listener()
        r = self.run_aware(port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "not TLS\n")
        t.join(30)
        self.assertEqual(self.got, (LINE + "\n").encode())

    def test_under_shim_unselected_connection(self):
        port, t = self.plain_listener()
        # The policy's only rule is for another port: this connection is plaintext.
        r = self.run_aware(port, self.write_policy(port + 1 if port < 65535 else port - 1))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "not TLS\n")
        t.join(30)
        self.assertEqual(self.got, (LINE + "\n").encode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
