"""test_exec.py: a TLS session cannot cross exec (SPEC section 6). A program
under the shim opens a TLS connection and execs itself keeping the
descriptor; in the new image every read and write on it fails with EPROTO,
a log line says why, and no plaintext reaches the wire."""

import errno
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import RawListener, ShimTestCase  # noqa: E402

PROGRAM = r"""
import errno, os, socket, sys
if len(sys.argv) > 2 and sys.argv[1] == "after-exec":
    fd = int(sys.argv[2])
    results = []
    for what, call in (("write", lambda: os.write(fd, b"SECRET-PLAINTEXT\n")),
                       ("read", lambda: os.read(fd, 10))):
        try:
            call()
            results.append(what + "=ok")
        except OSError as e:
            results.append(what + "=" + errno.errorcode.get(e.errno, str(e.errno)))
    print(" ".join(results), flush=True)
    sys.exit(0)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"before exec\n")
fd = s.detach()
os.set_inheritable(fd, True)
os.execv(sys.executable, [sys.executable, __file__, "after-exec", str(fd)])
"""


class Exec(ShimTestCase):
    def test_tls_descriptor_fails_after_exec(self):
        srv, port = self.start_s_server(
            ["-cert", self.cert("server.pem"), "-key", self.cert("server.key"),
             ])
        script = os.path.join(self.tmp, "prog.py")
        with open(script, "w") as f:
            f.write(PROGRAM)
        policy = self.policy([self.out_rule("out", ports=[port],
                                            server_name="localhost")])
        r = self.run_under_shim([sys.executable, script, str(port)], policy,
                                what="the exec'ing program")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stdout.strip(), "write=EPROTO read=EPROTO", r.describe())
        self.assert_log_event(r.log, "exec", reason="cannot cross exec")
        harness.wait_for(lambda: "before exec" in srv.stdout(), 10,
                         "s_server to print what came before exec")
        self.assertNotIn("SECRET-PLAINTEXT", srv.stdout())

    def test_plaintext_never_reaches_the_wire_after_exec(self):
        # A raw listener stands where a TLS server would: after exec the
        # program's write must not put plaintext on the wire.
        raw = self.peer(RawListener())
        script = os.path.join(self.tmp, "prog.py")
        with open(script, "w") as f:
            f.write(PROGRAM.replace('s.sendall(b"before exec\\n")\n', ""))
        policy = self.policy([self.out_rule("out", ports=[raw.port],
                                            server_name="localhost",
                                            handshake_timeout_ms=500)])
        r = self.run_under_shim([sys.executable, script, str(raw.port)], policy,
                                what="the exec'ing program")
        # The handshake cannot complete against a raw listener: connect fails.
        self.assertNotEqual(r.returncode, 0, r.describe())
        self.assertNotIn(b"SECRET-PLAINTEXT", raw.all_bytes())


if __name__ == "__main__":
    unittest.main(verbosity=2)
