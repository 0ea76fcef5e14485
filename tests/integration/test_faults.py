#!/usr/bin/env python3
"""test_faults.py: faults around a running shim: descriptor exhaustion at
accept and at socket(), the policy file deleted or truncated, a certificate
replaced with garbage or with a new valid certificate (hot reload), and
session allocations that fail (TLSSHIM_TEST_FAIL_SESSIONS=N).

Environment: as test_hostile.py.
"""

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_hostile as h  # noqa: E402  (shared helpers, not its tests)

RELOAD_WAIT_S = 15


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def make_server_cert(certs, name, cn):
    """A new server certificate signed by the test CA (SAN localhost,
    127.0.0.1) in certs/NAME.pem and certs/NAME.key; returns its serial as
    openssl prints it."""
    key, csr, pem = (os.path.join(certs, name + ext) for ext in (".key", ".csr", ".pem"))
    ext = os.path.join(certs, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    run = lambda *a: subprocess.run(a, check=True, timeout=60, capture_output=True)
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", key)
    run("openssl", "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(certs, "ca.pem"),
        "-CAkey", os.path.join(certs, "ca.key"), "-set_serial", "0x7e57ab1e", "-days", "60",
        "-sha256", "-extfile", ext, "-out", pem)
    out = run("openssl", "x509", "-in", pem, "-noout", "-serial").stdout.decode()
    return out.strip().split("=", 1)[1]


def s_client_cert(certs, port):
    """The subject and serial of the certificate openssl s_client sees."""
    r = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost",
         "-CAfile", os.path.join(certs, "ca.pem"), "-cert", os.path.join(certs, "client.pem"),
         "-key", os.path.join(certs, "client.key"), "-verify_return_error"],
        input=b"", capture_output=True, timeout=20)
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", r.stdout, re.S)
    if pem is None:
        raise AssertionError("s_client printed no certificate: %r" % r.stdout[-800:])
    x = subprocess.run(["openssl", "x509", "-noout", "-serial", "-subject"], input=pem.group(0),
                       capture_output=True, timeout=20, check=True)
    return x.stdout.decode()


def replace_file(path, data):
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.check_built()
        cls.tmp, cls.certs = h.make_tmp("faults")
        cls.policy = h.write_policy(os.path.join(cls.tmp, "policy.yaml"), cls.certs)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def served_until_log(self, srv, pattern, certs=None, expect_der=None):
        """Makes new good connections (each must be served, with |expect_der|
        as the server certificate if given) until the shim log matches
        |pattern|: the shim re-checks the policy at most once a second, on
        new connections."""
        rx = re.compile(pattern)

        def step():
            der = h.good_exchange(certs or self.certs, srv.port)
            if expect_der is not None:
                self.assertEqual(der, expect_der, "the server presented another certificate")
            return rx.search(h.read_text(srv.log))

        h.wait_for(step, RELOAD_WAIT_S, "shim log line %r while serving; log tail: %s"
                   % (pattern, h.read_text(srv.log)[-1200:]), interval=0.1)

    # ---- descriptor exhaustion ----

    def test_emfile_at_accept(self):
        srv = h.ShimServer(self.tmp, self.policy, prog="hostile_emfile_server", args=[],
                           nofile=24, name="emfile")
        self.addCleanup(srv.stop)
        ctx = h.client_context(self.certs)
        holders = []  # (thread, release event, state)

        def hold(state, release):
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                        s.sendall(b"ping")
                        if s.recv(4) != b"ping":
                            raise AssertionError("bad echo")
                        state["ok"] = True
                        release.wait(30)
                        s.sendall(b"again")
                        state["again"] = s.recv(5)
            except BaseException as e:
                state["error"] = e

        def emfiles():
            return h.read_text(srv.out).count("accept: EMFILE")

        pending = None
        for _ in range(40):
            state, release = {}, threading.Event()
            th = threading.Thread(target=hold, args=(state, release), daemon=True)
            th.start()
            holders.append((th, release, state))
            h.wait_for(lambda: state.get("ok") or "error" in state or emfiles() > 0, 10,
                       "connection %d to be served or accept to fail with EMFILE" % len(holders))
            if "error" in state:
                raise state["error"]
            if not state.get("ok"):
                pending = holders.pop()
                break
        try:
            self.assertIsNotNone(pending, "accept never failed with EMFILE under RLIMIT_NOFILE=24")
            srv.assert_alive(self)
            self.assertIn("accept: EMFILE", h.read_text(srv.out))
            # Free a slot: the pending connection is accepted and served.
            th0, rel0, st0 = holders.pop(0)
            rel0.set()
            th0.join(10)
            self.assertEqual(st0.get("again"), b"again", st0)
            h.wait_for(lambda: pending[2].get("ok") or "error" in pending[2], 15,
                       "the pending connection to be served once a slot was free")
            self.assertNotIn("error", pending[2])
            srv.assert_alive(self)
        finally:
            for th, rel, _ in holders + ([pending] if pending else []):
                rel.set()
            for th, _, _ in holders:
                th.join(10)

    def test_emfile_at_socket_is_plain(self):
        srv = h.ShimServer(self.tmp, self.policy, mode="thread", name="emfile-client-peer")
        self.addCleanup(srv.stop)
        prog = """
import errno, os, resource, socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
n = len(os.listdir('/proc/self/fd')) - 1  # the listdir descriptor is gone again
resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
try:
    socket.socket()
    print('socket: ok')
except OSError as e:
    print('socket:', errno.errorcode[e.errno])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
s = socket.create_connection(('127.0.0.1', %d), timeout=20)
s.sendall(b'after EMFILE')
print('echo:', s.recv(100).decode())
""" % srv.port
        r, log = h.run_shim_client(self.tmp, self.policy, [sys.executable, "-c", prog])
        self.assertEqual(r.returncode, 0, r.stderr + log)
        self.assertIn("socket: EMFILE", r.stdout)
        self.assertIn("echo: after EMFILE", r.stdout)
        self.assertRegex(log, r"event=established direction=outbound")

    # ---- policy and certificate reload ----

    def reload_server(self, name):
        folder = os.path.join(self.tmp, name)
        certs = os.path.join(folder, "certs")
        shutil.copytree(self.certs, certs)
        policy = h.write_policy(os.path.join(folder, "policy.yaml"), certs)
        srv = h.ShimServer(folder, policy, mode="epoll-lt", name=name)
        self.addCleanup(srv.stop)
        return srv, policy, certs

    def test_policy_deleted_then_truncated(self):
        srv, policy, certs = self.reload_server("deleted")
        old_der = der_of(os.path.join(certs, "server.pem"))
        with open(policy, "rb") as f:
            good = f.read()
        os.unlink(policy)
        self.served_until_log(srv, r"reload.*new policy rejected, keeping the last good one: ",
                              certs, old_der)
        replace_file(policy, b"")
        self.served_until_log(srv, r"(?s)rejected.*rejected", certs, old_der)
        replace_file(policy, good[: len(good) // 2])
        self.served_until_log(srv, r"(?s)rejected.*rejected.*rejected", certs, old_der)
        replace_file(policy, good)
        self.served_until_log(srv, r"reload.*reloaded", certs, old_der)
        srv.assert_alive(self)
        self.assertNotRegex(h.read_text(srv.log), r"event=plaintext")

    def test_certificate_replaced_with_garbage(self):
        srv, policy, certs = self.reload_server("garbage")
        old_der = der_of(os.path.join(certs, "server.pem"))
        replace_file(os.path.join(certs, "server.pem"), b"-----BEGIN CERTIFICATE-----\n"
                     b"bm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
        self.served_until_log(srv, r"reload.*new policy rejected, keeping the last good one: "
                              r".*server\.pem", certs, old_der)
        srv.assert_alive(self)
        # Putting a good certificate back is noticed again (the rejected
        # state must not stop the shim from watching the files).
        with open(os.path.join(self.certs, "server.pem"), "rb") as f:
            replace_file(os.path.join(certs, "server.pem"), f.read())
        self.served_until_log(srv, r"reload.*reloaded", certs, old_der)

    def test_certificate_replaced_with_new_valid_one(self):
        srv, policy, certs = self.reload_server("rotate")
        before = s_client_cert(certs, srv.port)
        self.assertIn("CN = localhost" if "CN = localhost" in before else "subject=", before)
        serial = make_server_cert(certs, "rotated", "rotated.localhost")
        new_der = der_of(os.path.join(certs, "rotated.pem"))
        # Key first, then the certificate: each rename is atomic; a check
        # in between sees a mismatch, is rejected, and the next one loads.
        with open(os.path.join(certs, "rotated.key"), "rb") as f:
            replace_file(os.path.join(certs, "server.key"), f.read())
        with open(os.path.join(certs, "rotated.pem"), "rb") as f:
            replace_file(os.path.join(certs, "server.pem"), f.read())

        def presents_new():
            return h.good_exchange(certs, srv.port) == new_der

        h.wait_for(presents_new, RELOAD_WAIT_S, "new handshakes to present the new certificate; "
                   "log: %s" % h.read_text(srv.log)[-1200:], interval=0.1)
        after = s_client_cert(certs, srv.port)
        self.assertIn("serial=%s" % serial, after)
        self.assertIn("rotated.localhost", after)
        self.assertNotEqual(before, after)
        self.assertRegex(h.read_text(srv.log), r"reload.*reloaded")

    # ---- failing session allocations ----

    def test_enomem_on_accept(self):
        srv = h.ShimServer(self.tmp, self.policy, mode="epoll-lt", name="enomem-server",
                           extra_env={"TLSSHIM_TEST_FAIL_SESSIONS": "3"})
        self.addCleanup(srv.stop)
        results = []
        for i in range(9):
            try:
                h.good_exchange(self.certs, srv.port, timeout=10)
                results.append("ok")
            except (ssl.SSLError, ConnectionError, AssertionError, socket.timeout) as e:
                results.append("closed: %s" % e)
            srv.assert_alive(self)
        self.assertEqual(sum(r == "ok" for r in results), 6, results)
        self.assertEqual([i for i, r in enumerate(results) if r != "ok"], [2, 5, 8], results)
        srv.wait_log(r"event=failed[^\n]*accepted connection closed: cannot make its TLS "
                     r"session: Cannot allocate memory", count=3)
        # The program never saw the three refused connections: it numbered
        # only the six it was given (conn 0..5).
        ids = {int(m) for m in re.findall(r"conn (\d+):", h.read_text(srv.err))}
        self.assertLessEqual(max(ids | {0}), 5, h.read_text(srv.err))

    def test_enomem_on_connect(self):
        srv = h.ShimServer(self.tmp, self.policy, mode="thread", name="enomem-peer")
        self.addCleanup(srv.stop)
        r, log = h.tcp_client_expect(self.tmp, self.policy, srv.port, "ENOMEM",
                                     extra_env={"TLSSHIM_TEST_FAIL_SESSIONS": "1"})
        self.assertEqual(r.returncode, 0, "tcp_client: %s %s; shim log: %s"
                         % (r.stdout, r.stderr, log[-1000:]))
        self.assertIn("error=ENOMEM", r.stdout)
        # Nothing reached the server as plaintext.
        self.assertNotIn("must never leak", h.read_text(srv.out) + h.read_text(srv.err))


if __name__ == "__main__":
    unittest.main(verbosity=2)
