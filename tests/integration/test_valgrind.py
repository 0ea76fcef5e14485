#!/usr/bin/env python3
"""test_valgrind.py: the threaded and event-loop test programs under valgrind
memcheck with the shim preloaded, over mutual TLS.

LD_PRELOAD and TLSSHIM_POLICY are in valgrind's environment, so the shim
loads inside the program valgrind runs (valgrind adds its own preloads in
front). Each run uses
  valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
           --track-fds=no -q --suppressions=tests/integration/valgrind.supp
and must not exit 99 (which also covers definite leaks anywhere), and
valgrind's log must show no "definitely lost" record with a frame in
libtlsshim (shim/, policy/ or the BoringSSL linked into it). Sizes are small (valgrind runs the crypto
some 20-50x slower); every wait has its own generous timeout.

Skipped without valgrind, with PLAIN=1, and in sanitizer builds (valgrind
and ASan/TSan runtimes do not mix).

Run: TLSSHIM_BUILD_DIR=build TLSSHIM_SOURCE_DIR=. python3 tests/integration/test_valgrind.py
"""

import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ShimTestCase, prog, read_file  # noqa: E402

SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "valgrind.supp")
SRC = os.path.realpath(harness.SOURCE_DIR)
VG_TIMEOUT = 90.0  # any one program under valgrind


@unittest.skipIf(harness.PLAIN, "PLAIN=1: valgrind runs need the shim")
@unittest.skipIf(os.environ.get("TLSSHIM_TEST_SANITIZER"),
                 "sanitizer build: valgrind does not run sanitizer runtimes")
@unittest.skipUnless(shutil.which("valgrind"), "valgrind is not installed")
class Valgrind(ShimTestCase):

    def vg(self, name):
        """The valgrind command prefix, with its own log file."""
        log = os.path.join(self.tmp, "valgrind-%s.txt" % name)
        return ["valgrind", "--error-exitcode=99", "--leak-check=full",
                "--errors-for-leak-kinds=definite", "--track-fds=no", "-q",
                "--fullpath-after=", "--suppressions=" + SUPP, "--log-file=" + log], log

    def server_policy(self):
        return self.policy([self.in_rule("vg-in")])  # mutual TLS, client_auth required

    def client_policy(self, port):
        return self.policy([self.out_rule("vg-out", ports=[port], identity="client")])

    def assert_clean(self, what, returncode, vglog, details):
        text = read_file(vglog)
        self.assertNotEqual(returncode, 99, "valgrind found errors in %s:\n%s\n%s"
                            % (what, text[-6000:], details))
        # One record per block of "==PID== " lines between blank ones.
        records = re.split(r"\n==\d+== \n", text)
        # Frames with debug info name a source path (--fullpath-after=), those
        # without it the object: either way, ours or BoringSSL linked into it.
        mine = ("libtlsshim", SRC + "/shim/", SRC + "/policy/", "boringssl")
        ours = [r for r in records if "definitely lost" in r and any(m in r for m in mine)]
        self.assertEqual(ours, [], "definite leaks in libtlsshim under %s:\n%s"
                         % (what, "\n".join(ours)[-6000:]))
        return text

    def serve_under_valgrind(self, mode, conns, nbytes, client_extra=()):
        vg, vglog = self.vg("server-" + mode)
        ready = self._next("ready")
        argv = vg + [prog("tcp_echo_server"), "--port", "0", "--mode", mode,
                     "--max-conns", str(conns), "--ready-file", ready]
        srv = self.spawn(argv, policy=self.server_policy(), name="valgrind-echo-" + mode)
        port = self.wait_ready_file(srv, ready, timeout=60.0)
        t0 = time.monotonic()
        r = self.tcp_client(port, nbytes=nbytes, policy=self.client_policy(port),
                            extra=["--conns", str(conns), "--threads", str(conns)] +
                            list(client_extra), timeout=VG_TIMEOUT)
        self.assertEqual(r.returncode, 0, "tcp_client against the server under "
                         "valgrind failed\n%s\n\nserver:\n%s\n\nvalgrind:\n%s"
                         % (r.describe(), srv.describe(), read_file(vglog)[-4000:]))
        self.assert_echo_ok(r, nbytes, conns=conns)
        # --max-conns: the server exits by itself after the last connection,
        # and valgrind then runs its leak check.
        try:
            rc = srv.proc.wait(timeout=VG_TIMEOUT)
        except Exception:
            self.fail("timed out after %.0fs waiting for tcp_echo_server (%s) under "
                      "valgrind to exit after %d connection(s)\n%s\nvalgrind:\n%s"
                      % (VG_TIMEOUT, mode, conns, srv.describe(), read_file(vglog)[-4000:]))
        self.assertEqual(rc, 0, "tcp_echo_server under valgrind exited %s\n%s\nvalgrind:\n%s"
                         % (rc, srv.describe(), read_file(vglog)[-4000:]))
        self.assert_clean("tcp_echo_server --mode " + mode, rc, vglog, srv.describe())
        sys.stderr.write("[%s: %d conn(s) x %d bytes in %.1fs] " %
                         (mode, conns, nbytes, time.monotonic() - t0))

    def client_under_valgrind(self, extra, conns, nbytes):
        srv, port = self.start_echo_server("thread", policy=self.server_policy())
        vg, vglog = self.vg("client")
        argv = vg + [prog("tcp_client"), "--host", "127.0.0.1", "--port", str(port),
                     "--bytes", str(nbytes), "--timeout", str(int(VG_TIMEOUT))] + list(extra)
        r = self.run_under_shim(argv, self.client_policy(port), timeout=VG_TIMEOUT + 15,
                                what="tcp_client under valgrind")
        self.assertNotEqual(r.returncode, 99, "valgrind found errors in tcp_client:\n%s\n%s"
                            % (read_file(vglog)[-6000:], r.describe()))
        self.assert_echo_ok(r, nbytes, conns=conns)
        self.assert_clean("tcp_client " + " ".join(extra), r.returncode, vglog, r.describe())
        self.assert_log_event(r.log, "established", rule="vg-out", version="TLSv1.3")
        sys.stderr.write("[client %s: %.1fs] " % (" ".join(extra), r.elapsed))

    # -- servers under valgrind --

    def test_server_thread_mode(self):
        self.serve_under_valgrind("thread", conns=4, nbytes=1 << 20)

    def test_server_epoll_edge_triggered(self):
        # Fails today, and not for a memory error: the shim's epoll_wait of
        # an instance holding a TLS descriptor always calls epoll_pwait2
        # (shim/epoll_registry.c, epoll_registry_wait: REAL(epoll_pwait2)),
        # a system call valgrind 3.19 does not know (and Linux < 5.11 does
        # not have): the program's epoll_wait fails with ENOSYS
        # ("tcp_echo_server: epoll_wait: Function not implemented").
        self.serve_under_valgrind("epoll-et", conns=4, nbytes=1 << 20)

    # -- clients under valgrind --

    def test_client_threads2(self):
        """One thread writes while another reads the same TLS socket."""
        self.client_under_valgrind(["--style", "threads2"], 1, 2 << 20)

    def test_client_eight_threads(self):
        self.client_under_valgrind(["--conns", "8", "--threads", "8"], 8, 512 << 10)


if __name__ == "__main__":
    harness.main()
