#!/usr/bin/env python3
"""test_load.py: 10,000 concurrent idle TLS connections in one process under
the shim, all still usable at the end.

tcp_echo_server (epoll-lt) runs under the shim with an inbound tls rule and
RLIMIT_NOFILE raised to 12,000; a python client (not under the shim, its own
OpenSSL) opens 10,000 TLS connections with at most 100 handshakes in flight,
keeps them all open, then does a one-byte round trip on every one, closes
them, and checks that the server's descriptor count returns to its baseline.
The whole test must stay under 60 s; the times are printed.

Environment: as test_hostile.py.
"""

import os
import resource
import selectors
import shutil
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_hostile as h  # noqa: E402  (shared helpers, not its tests)

CONNS = int(os.environ.get("TLSSHIM_LOAD_CONNS", "10000"))
IN_FLIGHT = 100
BUDGET_S = 60


def rss_kb(pid):
    for line in h.read_text("/proc/%d/status" % pid).splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Load(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.check_built()
        cls.tmp, cls.certs = h.make_tmp("load")
        cls.policy = h.write_policy(os.path.join(cls.tmp, "policy.yaml"), cls.certs,
                                    client_auth="none", timeout_ms=10000)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = CONNS + 1000
        if hard != resource.RLIM_INFINITY and hard < need:
            raise AssertionError("RLIMIT_NOFILE hard limit %d < %d needed" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_ten_thousand_idle_connections(self):
        t_start = time.monotonic()
        srv = h.ShimServer(self.tmp, self.policy, mode="epoll-lt", nofile=CONNS + 2000)
        self.addCleanup(srv.stop)
        base = srv.fds()
        h.good_exchange(self.certs, srv.port)
        srv.wait_fds(base)
        rss0 = rss_kb(srv.pid)
        ctx = h.client_context(self.certs, with_cert=False)
        sel = selectors.DefaultSelector()
        established = []
        opened = 0
        in_flight = 0
        deadline = time.monotonic() + BUDGET_S
        addr = ("127.0.0.1", srv.port)

        def start_one():
            raw = socket.socket()
            raw.setblocking(False)
            err = raw.connect_ex(addr)
            if err not in (0, 115):  # EINPROGRESS
                raise AssertionError("connect %d: errno %d" % (opened, err))
            sel.register(raw, selectors.EVENT_WRITE, ("connect", raw))

        t0 = time.monotonic()
        try:
            while len(established) < CONNS:
                while opened < CONNS and in_flight < IN_FLIGHT:
                    start_one()
                    opened += 1
                    in_flight += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("only %d of %d connections established within %d s"
                                         % (len(established), CONNS, BUDGET_S))
                for key, _ in sel.select(min(left, 1.0)):
                    kind, s = key.data
                    if kind == "connect":
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise AssertionError("connect failed: errno %d" % err)
                        sel.unregister(s)
                        s = ctx.wrap_socket(s, server_hostname="localhost",
                                            do_handshake_on_connect=False)
                        sel.register(s, selectors.EVENT_WRITE, ("tls", s))
                        kind = "tls"
                    try:
                        s.do_handshake()
                    except ssl.SSLWantReadError:
                        sel.modify(s, selectors.EVENT_READ, ("tls", s))
                        continue
                    except ssl.SSLWantWriteError:
                        sel.modify(s, selectors.EVENT_WRITE, ("tls", s))
                        continue
                    sel.unregister(s)
                    established.append(s)
                    in_flight -= 1
            t_open = time.monotonic() - t0
            srv.assert_alive(self)
            peak_fds = srv.fds()
            self.assertGreaterEqual(peak_fds, base + CONNS,
                                    "server holds %d descriptors, expected %d + %d"
                                    % (peak_fds, base, CONNS))
            rss1 = rss_kb(srv.pid)

            # A one-byte round trip on every connection, all at once.
            t1 = time.monotonic()
            waiting = {}
            for i, s in enumerate(established):
                b = bytes([65 + i % 26])
                s.send(b)
                waiting[s] = b
                sel.register(s, selectors.EVENT_READ, ("echo", s))
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%d of %d connections gave no echo within %d s"
                                         % (len(waiting), CONNS, BUDGET_S))
                for key, _ in sel.select(min(left, 1.0)):
                    s = key.data[1]
                    while True:
                        try:
                            got = s.recv(16)
                        except ssl.SSLWantReadError:
                            break
                        if got != waiting[s]:
                            raise AssertionError("echo %r, expected %r" % (got, waiting[s]))
                        sel.unregister(s)
                        del waiting[s]
                        break
            t_echo = time.monotonic() - t1
        finally:
            for s in established:
                s.close()
            sel.close()
        srv.assert_alive(self)
        srv.wait_fds(base, timeout=max(5, deadline - time.monotonic()))
        h.good_exchange(self.certs, srv.port)
        total = time.monotonic() - t_start
        sys.stderr.write(
            "\n%d connections: established in %.1f s, round trips in %.1f s, total %.1f s; "
            "server descriptors %d -> %d -> %d; server RSS %d KB -> %d KB (%.1f KB/conn)\n"
            % (CONNS, t_open, t_echo, total, base, peak_fds, srv.fds(), rss0, rss1,
               (rss1 - rss0) / CONNS))
        self.assertLess(total, BUDGET_S, "the load test took %.1f s" % total)


if __name__ == "__main__":
    unittest.main(verbosity=2)
