"""test_readiness.py: TLS-level readiness under the shim (SPEC 6: poll, select,
epoll level- and edge-triggered report plaintext the shim already holds, and
writes that would make progress): echo servers of every event-loop kind
against a many-connection client that reads in small pieces, a large write
through a small send buffer followed by waiting only for readability, no
cost for plain epoll sets, no busy loop on an idle TLS connection, and epoll
corner cases (EPOLLONESHOT, user data, close while registered, mixed sets,
threads).

Both ends run under the shim (server: inbound rule, mutual TLS with
peer_names; client: outbound rule presenting the client identity), so every
record is 16 KiB on one side while the other reads 100 bytes at a time.
"""

import os
import re
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import prog, skip_if_plain  # noqa: E402

CLIENT_ID = "spiffe://test/ns/default/sa/client"
CONNS = 50
MESSAGES = 1000
SIZE = 16384


class ReadinessBase(harness.ShimTestCase):

    def server_policy(self):
        return self.policy([self.in_rule("in", peer_names=[CLIENT_ID])])

    def client_policy(self, port):
        return self.policy([self.out_rule("out", ports=[port], identity="client")])

    def assert_established(self, log, direction, n):
        if harness.PLAIN:
            return
        evs = [e for e in self.log_events(log)
               if e.get("event") == "established" and e.get("direction") == direction]
        self.assertEqual(len(evs), n, "expected %d %s TLS connections in the shim log\n%s"
                         % (n, direction, log[-4000:]))
        if direction == "inbound":
            for e in evs:
                self.assertIn(CLIENT_ID, str(e.get("peer_identity")), e)
        failed = [e for e in self.log_events(log) if e.get("event") == "failed"]
        self.assertEqual(failed, [], "unexpected failures in the shim log")


class EchoLoadTest(ReadinessBase):
    """1,000 messages of 16 KiB over 50 concurrent TLS connections, every
    byte checked, the plaintext left buffered inside the shim by 100-byte
    reads (on the server with --read-chunk 100, on the client always)."""

    def run_load(self, server_mode, client_loop, server_chunk=100):
        srv, port = self.start_echo_server(
            server_mode, policy=self.server_policy(),
            extra=["--read-chunk", str(server_chunk), "--max-conns", str(CONNS),
                   "--timeout", "120"])
        argv = [prog("ready_client"), "--port", str(port), "--conns", str(CONNS),
                "--messages", str(MESSAGES), "--size", str(SIZE), "--read-chunk", "100",
                "--loop", client_loop, "--timeout", "60"]
        t0 = time.monotonic()
        r = self.run_under_shim(argv, self.client_policy(port), timeout=70,
                                what="ready_client (%s) against tcp_echo_server --mode %s"
                                % (client_loop, server_mode))
        self.assertEqual(r.returncode, 0, "ready_client failed\n%s\nserver:\n%s"
                         % (r.describe(), srv.describe()))
        want = "ready_client: ok conns=%d messages=%d bytes_out=%d bytes_in=%d" % (
            CONNS, MESSAGES, MESSAGES * SIZE, MESSAGES * SIZE)
        self.assertIn(want, r.stdout, r.describe())
        # The server exits after --max-conns connections have ended.
        try:
            srv.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("timed out after 15s waiting for tcp_echo_server to exit after %d "
                      "connections\n%s" % (CONNS, srv.describe()))
        self.assertEqual(srv.proc.returncode, 0, srv.describe())
        self.assertNotIn("conn ", srv.stderr(), srv.describe())
        self.assert_established(r.log, "outbound", CONNS)
        self.assert_established(srv.log(), "inbound", CONNS)
        sys.stderr.write("  [%s server, %s client, chunk %d: %.2fs] "
                         % (server_mode, client_loop, server_chunk, time.monotonic() - t0))

    def test_epoll_et_server_epoll_et_client(self):
        self.run_load("epoll-et", "epoll-et")

    def test_epoll_lt_server_epoll_lt_client(self):
        self.run_load("epoll-lt", "epoll-lt")

    def test_epoll_et_server_large_records_to_client(self):
        # The server echoes 16 KiB records; the client's shim holds them.
        self.run_load("epoll-et", "epoll-et", server_chunk=16384)

    def test_epoll_lt_server_large_records_to_poll_client(self):
        self.run_load("epoll-lt", "poll", server_chunk=16384)

    def test_poll_server_poll_client(self):
        self.run_load("poll", "poll")

    def test_select_server_select_client(self):
        self.run_load("select", "select")


class WriteThenWaitReadableTest(ReadinessBase):
    """A large non-blocking write through SO_SNDBUF=4096, then only POLLIN /
    EPOLLIN: the encrypted tail the kernel could not take at once must still
    leave (the peer answers only after the whole request)."""

    def run_pair(self, wait, req, reply):
        ready = self._next("ready")
        common = ["--req-bytes", str(req), "--reply-bytes", str(reply), "--sndbuf", "4096",
                  "--wait", wait, "--timeout", "20"]
        srv = self.spawn([prog("ready_bigreq"), "--role", "server", "--port", "0",
                          "--ready-file", ready] + common,
                         policy=self.server_policy(), name="ready_bigreq-server")
        port = self.wait_ready_file(srv, ready)
        r = self.run_under_shim([prog("ready_bigreq"), "--role", "client", "--port",
                                 str(port)] + common,
                                self.client_policy(port), timeout=30,
                                what="ready_bigreq client (%s)" % wait)
        self.assertEqual(r.returncode, 0, "client failed\n%s\nserver:\n%s"
                         % (r.describe(), srv.describe()))
        self.assertIn("ready_bigreq client: ok req=%d reply=%d" % (req, reply), r.stdout)
        try:
            srv.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("timed out after 15s waiting for the ready_bigreq server to finish\n"
                      + srv.describe())
        self.assertEqual(srv.proc.returncode, 0, srv.describe())
        self.assertIn("ready_bigreq server: ok", srv.stdout())
        # The large write really went through the small send buffer in parts.
        big = r.stdout if req > reply else srv.stdout()
        m = re.search(r"write_eagain=(\d+)", big)
        self.assertTrue(m and int(m.group(1)) > 0,
                        "the %s never saw EAGAIN while writing %d bytes: %s"
                        % ("client" if req > reply else "server", max(req, reply), big))
        self.assert_established(r.log, "outbound", 1)
        self.assert_established(srv.log(), "inbound", 1)

    def test_client_request_then_poll_in(self):
        self.run_pair("poll", 1 << 20, 16)

    def test_client_request_then_select_read(self):
        self.run_pair("select", 1 << 20, 16)

    def test_client_request_then_epoll_in_lt(self):
        self.run_pair("epoll-lt", 1 << 20, 16)

    def test_client_request_then_epoll_in_et(self):
        self.run_pair("epoll-et", 1 << 20, 16)

    def test_server_reply_then_poll_in(self):
        self.run_pair("poll", 16, 1 << 20)

    def test_server_reply_then_epoll_in_et(self):
        self.run_pair("epoll-et", 16, 1 << 20)

    def test_server_reply_then_epoll_in_lt(self):
        self.run_pair("epoll-lt", 16, 1 << 20)


def strace_counts(path):
    """{syscall: calls} from an `strace -c` summary file."""
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5 or not parts[0][0].isdigit() or parts[-1] == "total":
                continue
            counts[parts[-1]] = int(parts[3])
    return counts


class CostTest(ReadinessBase):

    def strace_run(self, rounds, shim):
        out = self._next("strace") + ".txt"
        argv = ["strace", "-f", "-c", "-o", out]
        if shim:
            # Only the traced program gets the shim, not strace itself.
            env = self.shim_env(self.write_policy(self.server_policy()),
                                self._next("shim") + ".log")
            for k in ("LD_PRELOAD", "TLSSHIM_POLICY", "TLSSHIM_LOG_FILE"):
                argv += ["-E", "%s=%s" % (k, env[k])]
        argv += [prog("ready_plain_epoll"), "--rounds", str(rounds)]
        r = self.run_plain(argv, timeout=60, what="strace of ready_plain_epoll")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertIn("ready_plain_epoll: ok rounds=%d" % rounds, r.stdout, r.describe())
        return strace_counts(out)

    @skip_if_plain()
    @unittest.skipIf(os.environ.get("TLSSHIM_TEST_SANITIZER"),
                     "a sanitizer runtime makes system calls of its own: the "
                     "count is measured in the plain build")
    def test_plain_epoll_set_has_unchanged_syscall_counts(self):
        rounds = 10000
        plain = self.strace_run(rounds, shim=False)
        shim = self.strace_run(rounds, shim=True)
        base_plain = self.strace_run(0, shim=False)
        base_shim = self.strace_run(0, shim=True)
        self.assertEqual(plain.get("epoll_wait"), 2 * rounds, plain)
        for name in ("epoll_wait", "epoll_ctl", "write", "read"):
            # What the shim adds at start-up (reading its policy) is the same
            # with 0 rounds; the workload itself must cost exactly the same.
            work_plain = plain.get(name, 0) - base_plain.get(name, 0)
            work_shim = shim.get(name, 0) - base_shim.get(name, 0)
            self.assertEqual(work_shim, work_plain,
                             "%s calls for %d round trips: %d under the shim, %d without"
                             % (name, rounds, work_shim, work_plain))
        for name in ("poll", "ppoll", "epoll_pwait", "epoll_pwait2", "getsockopt", "recvfrom",
                     "fcntl"):
            self.assertEqual(shim.get(name, 0), base_shim.get(name, 0),
                             "the shim made %s calls for a plain epoll set" % name)
        total_plain = sum(plain.values()) - sum(base_plain.values())
        total_shim = sum(shim.values()) - sum(base_shim.values())
        self.assertEqual(total_shim, total_plain, "total syscalls of the workload")

    def cpu_ticks(self, pid):
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)

    def idle_check(self, mode):
        srv, port = self.start_echo_server(mode, policy=self.server_policy())
        ctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        if not harness.PLAIN:
            ctx.load_cert_chain(self.cert("client.pem"), self.cert("client.key"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost") if not harness.PLAIN else raw
        try:
            s.sendall(b"ping")
            got = b""
            while len(got) < 4:
                b = s.recv(4 - len(got))
                self.assertTrue(b, "EOF waiting for the echo of ping\n" + srv.describe())
                got += b
            self.assertEqual(got, b"ping")
            hz = os.sysconf("SC_CLK_TCK")
            t0, c0 = time.monotonic(), self.cpu_ticks(srv.proc.pid)
            time.sleep(2.0)  # the measured idle interval, not synchronisation
            t1, c1 = time.monotonic(), self.cpu_ticks(srv.proc.pid)
            share = (c1 - c0) / hz / (t1 - t0)
            sys.stderr.write("  [%s idle: %d ticks in %.2fs] " % (mode, c1 - c0, t1 - t0))
            self.assertLess(share, 0.01, "tcp_echo_server --mode %s used %.1f%% CPU with one "
                            "idle TLS connection" % (mode, share * 100))
            s.sendall(b"pong")
            got = b""
            while len(got) < 4:
                b = s.recv(4 - len(got))
                self.assertTrue(b, "EOF waiting for the echo of pong\n" + srv.describe())
                got += b
            self.assertEqual(got, b"pong")
        finally:
            s.close()

    def test_idle_tls_connection_epoll_lt_no_busy_loop(self):
        self.idle_check("epoll-lt")

    def test_idle_tls_connection_epoll_et_no_busy_loop(self):
        self.idle_check("epoll-et")

    def test_idle_tls_connection_poll_no_busy_loop(self):
        self.idle_check("poll")


class EpollMiscTest(ReadinessBase):

    def run_misc(self, name, timeout=20):
        srv, port = self.start_echo_server("thread", policy=self.server_policy())
        r = self.run_under_shim([prog("ready_epoll_misc"), "--port", str(port), "--test",
                                 name, "--timeout", str(timeout)],
                                self.client_policy(port), timeout=40,
                                what="ready_epoll_misc --test " + name)
        self.assertEqual(r.returncode, 0, "ready_epoll_misc --test %s failed\n%s\nserver:\n%s"
                         % (name, r.describe(), srv.describe()))
        self.assertIn("ready_epoll_misc %s: ok" % name, r.stdout, r.describe())
        if not harness.PLAIN:
            self.assertTrue(any(e.get("event") == "established"
                                for e in self.log_events(r.log)), r.describe())
            self.assertEqual([e for e in self.log_events(r.log) if e.get("event") == "failed"],
                             [], r.describe())
        return r

    def test_oneshot_rearmed_with_mod(self):
        self.run_misc("oneshot")

    def test_user_data_intact(self):
        self.run_misc("userdata")

    def test_user_data_that_looks_like_the_shim_tag(self):
        # Any 64-bit value is the program's: one whose top bits equal the
        # shim's registration tag must still be returned, not swallowed.
        self.run_misc("tagdata", timeout=3)

    def test_descriptor_reported_once_per_wait(self):
        self.run_misc("nodup")

    def test_tls_descriptor_closed_while_registered(self):
        self.run_misc("close")

    def test_tls_and_plain_descriptors_in_one_set(self):
        self.run_misc("mixed")

    def test_two_threads_share_one_set(self):
        r = self.run_misc("threads")
        sys.stderr.write("  [%s] " % r.stdout.strip().splitlines()[0])


if __name__ == "__main__":
    harness.main()
