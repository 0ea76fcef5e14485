"""test_socket_calls.py: the calls around the data path see the TLS view: a
Python client under the shim (socket, select, fcntl and ioctl go through the
interposed libc calls) against a real TLS peer (Python's ssl, the system
OpenSSL): FIONREAD counts plaintext, F_GETFL shows the program's own
O_NONBLOCK although the socket is non-blocking underneath, MSG_PEEK leaves
the bytes, select sees buffered plaintext, and a non-blocking read says
EAGAIN when nothing is there."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ShimTestCase, TLSEchoServer, tls_server_context  # noqa: E402

CLIENT = r"""
import errno, fcntl, os, select, socket, struct, sys, termios
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=None)
fd = s.fileno()
out = []
# Blocking as created: the program sees no O_NONBLOCK.
out.append("blocking_flag=%d" % (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK))
s.sendall(b"helloworld!")
r, _, _ = select.select([s], [], [], 10)
out.append("select_readable=%d" % len(r))
buf = bytearray(4)
fcntl.ioctl(fd, termios.FIONREAD, buf)
out.append("fionread=%d" % struct.unpack("i", buf)[0])
out.append("peek=%s" % s.recv(5, socket.MSG_PEEK).decode())
out.append("read=%s" % s.recv(5).decode())
# Six bytes are still buffered inside the shim, none in the kernel: select
# must say readable without waiting.
r, _, _ = select.select([s], [], [], 0)
out.append("select_buffered=%d" % len(r))
out.append("rest=%s" % s.recv(100).decode())
s.setblocking(False)
out.append("nonblock_flag=%d" % ((fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK) != 0))
try:
    s.recv(10)
    out.append("nonblock_read=data")
except BlockingIOError:
    out.append("nonblock_read=EAGAIN")
s.setblocking(True)
out.append("blocking_again=%d" % (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK))
s.sendall(b"x")
out.append("after=%s" % s.recv(1).decode())
s.shutdown(socket.SHUT_WR)
out.append("eof=%r" % s.recv(10))
print(" ".join(out))
"""


class SocketCalls(ShimTestCase):
    def test_calls_see_the_tls_view(self):
        peer = self.peer(TLSEchoServer(tls_server_context(self.certs)))
        script = os.path.join(self.tmp, "client.py")
        with open(script, "w") as f:
            f.write(CLIENT)
        policy = self.policy([self.out_rule("out", ports=[peer.port],
                                            server_name="localhost")])
        r = self.run_under_shim([sys.executable, script, str(peer.port)], policy,
                                what="the python client")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stdout.split(), [
            "blocking_flag=0", "select_readable=1", "fionread=11", "peek=hello",
            "read=hello", "select_buffered=1", "rest=world!", "nonblock_flag=1",
            "nonblock_read=EAGAIN", "blocking_again=0", "after=x", "eof=b''"],
            r.describe())
        self.assert_log_event(r.log, "established", rule="out")


if __name__ == "__main__":
    unittest.main(verbosity=2)
