"""test_linger.py: what a non-blocking program wrote before close() or
shutdown(SHUT_WR) reaches the peer, then close_notify, then the FIN, as plain
TCP would deliver it.

A non-blocking write returns once the record is sealed, even if the socket
took only part of it. The server below (Python under the shim) writes until
EAGAIN while its client is not reading, so the last record is still partly
inside the shim, and then closes, shuts down, or exits at once. The client
(Python's ssl, without the shim) then reads everything and must see every
byte the server's writes accepted and a clean close_notify
(suppress_ragged_eofs=False: a truncated stream raises). A client that
never reads is given up on after TLSSHIM_TEST_LINGER_MS, with a log line,
and sees the truncation as an error, never as a clean end."""

import hashlib
import os
import re
import socket
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ShimTestCase, wait_for  # noqa: E402

SERVER = r"""
import hashlib, select, socket, sys
mode, ready = sys.argv[1], sys.argv[2]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(4)
with open(ready + ".tmp", "w") as f:
    f.write(str(ls.getsockname()[1]))
import os
os.rename(ready + ".tmp", ready)
c, _ = ls.accept()
c.setblocking(False)
pattern = bytes((i * 7) % 251 for i in range(1 << 17))
h = hashlib.sha256()
off = 0


def send_some():  # one write; False when the socket refuses it (EAGAIN)
    global off
    try:
        n = c.send(pattern[off % 65536:off % 65536 + 65536])
    except BlockingIOError:
        return False
    h.update(pattern[off % 65536:off % 65536 + n])
    off += n
    return True


# Write until the socket is full (EAGAIN after data): the last record the
# writes accepted is then, most likely, only partly in the kernel.
while True:
    if off == 0:
        select.select([], [c], [], 10)  # the handshake
    if not send_some() and off > 0:
        break
if mode == "stuck":
    # Until the socket stays full: the peer has stopped taking anything.
    while select.select([], [c], [], 0.3)[1]:
        send_some()
    # The socket no longer polls writable but may still take some: write
    # until it refuses, leaving the rest of the last record inside the shim.
    while send_some():
        pass
print("wrote %d %s" % (off, h.hexdigest()), flush=True)
if mode in ("close", "stuck"):
    c.close()
    print("closed", flush=True)
    select.select([ls], [], [], 60)   # stay alive: the linger thread sends
elif mode == "exit":
    c.close()
    sys.exit(0)                       # at once: the exit waits for the rest
elif mode == "exit-open":
    import ctypes
    ctypes.CDLL(None).exit(0)         # libc's exit, the socket still open
elif mode == "shutdown":
    c.shutdown(socket.SHUT_WR)
    print("shut", flush=True)
    got = b""
    while True:
        select.select([c], [], [], 20)
        try:
            b = c.recv(4096)
        except BlockingIOError:
            continue
        if not b:
            break
        got += b
    print("got %r" % got, flush=True)
    c.close()
"""


class Linger(ShimTestCase):

    def start(self, mode, env=None):
        script = os.path.join(self.tmp, "server.py")
        with open(script, "w") as f:
            f.write(SERVER)
        ready = os.path.join(self.tmp, "ready")
        policy = self.policy([self.in_rule("in", client_auth="none")])
        srv = self.spawn([sys.executable, script, mode, ready], policy,
                         env=env, name="server")
        return srv, self.wait_ready_file(srv, ready)

    def connect(self, port):
        ctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        s = socket.socket()
        # A small receive buffer: the server's writes fill the path sooner.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(20)
        s.connect(("127.0.0.1", port))
        t = ctx.wrap_socket(s, server_hostname="localhost", suppress_ragged_eofs=False)
        return t

    def wrote(self, srv):
        wait_for(lambda: "wrote" in srv.stdout() or not srv.alive(), 20,
                 "the server to write until its socket was full")
        m = re.search(r"wrote (\d+) ([0-9a-f]{64})", srv.stdout())
        self.assertIsNotNone(m, "the server did not report its writes\n" + srv.describe())
        return int(m.group(1)), m.group(2)

    def read_all(self, t):
        """Everything up to close_notify; raises on a truncated stream."""
        h = hashlib.sha256()
        n = 0
        while True:
            b = t.recv(65536)
            if not b:
                return n, h.hexdigest()
            n += len(b)
            h.update(b)

    def assert_delivered(self, srv, t):
        want_n, want_sha = self.wrote(srv)
        try:
            n, sha = self.read_all(t)
        except (ssl.SSLError, OSError) as e:
            self.fail("the stream ended with %r instead of close_notify\n%s"
                      % (e, srv.describe()))
        self.assertEqual(n, want_n, "bytes received vs bytes the server's writes "
                         "accepted\n" + srv.describe())
        self.assertEqual(sha, want_sha, "content\n" + srv.describe())
        self.assertNotIn('"failed"', srv.log(), srv.describe())

    def delivered_after(self, mode, marker, what):
        """Starts the server in |mode|, waits until it prints |marker|,
        then reads and checks everything; returns the server and the
        client's socket."""
        srv, port = self.start(mode)
        t = self.connect(port)
        wait_for(lambda: marker in srv.stdout() or not srv.alive(), 20, what)
        self.assert_delivered(srv, t)
        return srv, t

    def test_close_with_output_queued(self):
        _, t = self.delivered_after("close", "closed", "the server to close its connection")
        t.close()

    def exits_cleanly_after_delivering(self, mode):
        srv, port = self.start(mode)
        t = self.connect(port)
        self.assert_delivered(srv, t)
        t.close()
        wait_for(lambda: not srv.alive(), 10, "the server to exit")
        self.assertEqual(srv.proc.returncode, 0, srv.describe())

    def test_exit_right_after_close(self):
        self.exits_cleanly_after_delivering("exit")

    def test_exit_with_the_socket_still_open(self):
        # exit() closes what the program left open: the rest, then
        # close_notify, as close() would.
        self.exits_cleanly_after_delivering("exit-open")

    def test_shutdown_write_keeps_order_and_read_side(self):
        srv, t = self.delivered_after("shutdown", "shut",
                                      "the server to shut down its write side")
        # The read side stays open: the server reads our answer, then EOF.
        t.sendall(b"bye")
        t.unwrap()
        t.close()
        wait_for(lambda: "got" in srv.stdout() or not srv.alive(), 20,
                 "the server to read the client's answer and EOF")
        self.assertIn("got b'bye'", srv.stdout(), srv.describe())

    def test_peer_that_never_reads_is_given_up_on(self):
        srv, port = self.start("stuck", env={"TLSSHIM_TEST_LINGER_MS": "300"})
        t = self.connect(port)
        want_n, _ = self.wrote(srv)
        wait_for(lambda: "gave up" in srv.log(), 20,
                 "the shim to log that it gave up on the queued output")
        self.assertRegex(srv.log(), r'"event":"failed".*"reason":"peer did not take the '
                         r'last \d+ bytes within 300 ms after the program closed; gave up"')
        # The client sees a truncated stream as an error, never as a clean end.
        with self.assertRaises((ssl.SSLError, OSError)):
            n, _ = self.read_all(t)
            self.assertLess(n, want_n)
        t.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
