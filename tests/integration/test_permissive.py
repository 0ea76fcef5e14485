"""test_permissive.py: a `permissive` inbound rule (SPEC section 4): the first
bytes decide — a ClientHello is served as TLS, anything else as plaintext; a
server that speaks first, or a client silent for handshake_timeout_ms, gets
plaintext. Each decision is logged."""

import os
import socket
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ShimTestCase, wait_for  # noqa: E402

# A banner server run under the shim with Python (accept/send/recv go
# through the interposed calls): writes "HELLO\n" first when BANNER=1, then
# echoes one line per connection.
BANNER_SERVER = r"""
import os, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    c, _ = s.accept()
    if os.environ.get("BANNER") == "1":
        c.sendall(b"HELLO\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    c.sendall(b"echo:" + data)
    c.close()
"""


class Permissive(ShimTestCase):
    def start(self, timeout_ms=5000, banner=False):
        script = os.path.join(self.tmp, "server.py")
        with open(script, "w") as f:
            f.write(BANNER_SERVER)
        policy = self.policy([self.in_rule("mixed", action="permissive",
                                           client_auth="none",
                                           handshake_timeout_ms=timeout_ms)])
        ready = self._next("ready")
        env = {"BANNER": "1" if banner else "0"}
        b = self.spawn([sys.executable, script, ready], policy=policy, env=env,
                       name="python-server")
        return b, self.wait_ready_file(b, ready)

    def read_line(self, sock):
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def test_tls_client_is_served_tls(self):
        b, port = self.start()
        ctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                t.sendall(b"over tls\n")
                self.assertEqual(self.read_line(t), b"echo:over tls\n")
                self.assertEqual(t.version(), "TLSv1.3")
        wait_for(lambda: "established" in b.log(), 10, "the established log line")
        self.assert_log_event(b.log(), "permissive", reason="ClientHello seen",
                              rule="mixed", direction="inbound")
        self.assert_log_event(b.log(), "established", rule="mixed")

    def test_plaintext_client_passes(self):
        b, port = self.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / plain\n")
            self.assertEqual(self.read_line(s), b"echo:GET / plain\n")
        wait_for(lambda: "plaintext" in b.log(), 10, "the plaintext log line")
        self.assert_log_event(b.log(), "plaintext",
                              reason="first bytes are not TLS", rule="mixed")

    def test_server_speaks_first_is_plaintext(self):
        b, port = self.start(banner=True)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            self.assertEqual(self.read_line(s), b"HELLO\n")
            s.sendall(b"after banner\n")
            self.assertEqual(self.read_line(s), b"echo:after banner\n")
        wait_for(lambda: "plaintext" in b.log(), 10, "the plaintext log line")
        self.assert_log_event(b.log(), "plaintext", reason="program wrote first")

    def test_silent_client_becomes_plaintext_after_timeout(self):
        b, port = self.start(timeout_ms=300)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            # The server blocks in recv; the shim waits for the first bytes
            # at most 300 ms, then the connection is plaintext.
            wait_for(lambda: "plaintext" in b.log(), 10,
                     "the shim to give up waiting for a ClientHello")
            s.sendall(b"late\n")
            self.assertEqual(self.read_line(s), b"echo:late\n")
        self.assert_log_event(b.log(), "plaintext",
                              reason="no bytes within handshake_timeout_ms")

    def test_both_kinds_in_turn(self):
        b, port = self.start()
        ctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        for i in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"p%d\n" % i)
                self.assertEqual(self.read_line(s), b"echo:p%d\n" % i)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                    t.sendall(b"t%d\n" % i)
                    self.assertEqual(self.read_line(t), b"echo:t%d\n" % i)


if __name__ == "__main__":
    unittest.main(verbosity=2)
