"""test_io_styles.py: every I/O style and server model of the test programs,
both under the shim with mutual TLS, with a SHA-256 check of both directions."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MB = 1 << 20
# Sizes per direction: 100 MB per I/O style (the whole file takes about 20 s
# on the 2-core machine; lower them with the variables under sanitizers).
SIZE_RW = int(os.environ.get("TLSSHIM_ITEST_SIZE_RW", 100 * MB))
SIZE_OTHER = int(os.environ.get("TLSSHIM_ITEST_SIZE_OTHER", 100 * MB))
SIZE_MODE = 4 * MB      # per server model
PER_CONN_32 = 1 * MB    # 32 threads x 32 connections


def timeout_for(nbytes):
    """Seconds for one run: generous, at least 2 MB/s each way."""
    return 20 + nbytes // (2 * MB)


class IOStyles(harness.ShimTestCase):

    # Set when a run timed out: later tests fail at once instead of waiting
    # again, so a hanging shim cannot push the file past ctest's timeout.
    hung = None

    def server_policy(self):
        return self.policy([self.in_rule(
            "echo-in", addresses=["127.0.0.1"], client_auth="required",
            peer_names=["spiffe://test/ns/default/sa/client"])])

    def client_policy(self, port):
        return self.policy([self.out_rule(
            "echo-out", ports=[port], identity="client",
            peer_names=["spiffe://test/ns/default/sa/server"])])

    def roundtrip(self, mode="thread", style="rw", nbytes=SIZE_OTHER, extra=(), conns=1,
                  server=None):
        if IOStyles.hung:
            self.fail("not run: an earlier test timed out (%s)" % IOStyles.hung)
        if server is None:
            srv, port = self.start_echo_server(mode, policy=self.server_policy())
        else:
            srv, port = server
        try:
            r = self.tcp_client(port, style, nbytes, policy=self.client_policy(port),
                                extra=extra, timeout=timeout_for(nbytes * conns))
        except AssertionError:
            IOStyles.hung = self.id()
            raise
        if r.returncode == 3 and "alarm" in r.stderr:
            IOStyles.hung = self.id()
            self.fail("tcp_client timed out after %ds\n%s\n%s"
                      % (timeout_for(nbytes * conns), r.describe(), srv.describe()))
        self.assert_echo_ok(r, nbytes, conns)
        self.assertTrue(srv.alive(), "the echo server died\n" + srv.describe())
        self.assertNotIn(": conn ", srv.stderr(),
                         "the echo server reported a connection error\n" + srv.describe())
        if not harness.PLAIN:
            self.assert_log_event(r.log, "established", direction="outbound",
                                  rule="echo-out")
            self.assert_log_event(srv.log(), "established", direction="inbound",
                                  rule="echo-in")
        return r, srv

    def test_rw(self):
        self.roundtrip(style="rw", nbytes=SIZE_RW, extra=["--chunk", "65536"])

    def test_sendrecv(self):
        self.roundtrip(style="sendrecv")

    def test_iov(self):
        self.roundtrip(style="iov", extra=["--chunk", "6400"])

    def test_msg(self):
        self.roundtrip(style="msg")

    def test_sendfile(self):
        self.roundtrip(style="sendfile", extra=["--chunk", "65536"])

    def test_threads2(self):
        self.roundtrip(style="threads2")

    def test_nonblock_client(self):
        self.roundtrip(style="rw", nbytes=SIZE_MODE, extra=["--nonblock"])

    def test_small_sndbuf(self):
        self.roundtrip(style="rw", nbytes=SIZE_MODE, extra=["--sndbuf", "4096"])

    def test_32_threads_32_connections(self):
        self.roundtrip(mode="epoll-et", style="rw", nbytes=PER_CONN_32,
                       extra=["--conns", "32", "--threads", "32"], conns=32)

    def test_server_thread(self):
        self.roundtrip(mode="thread", nbytes=SIZE_MODE)

    def test_server_fork(self):
        self.roundtrip(mode="fork", nbytes=SIZE_MODE)

    def test_server_prefork(self):
        # 8 connections spread over 4 workers accepting on one listener.
        self.roundtrip(mode="prefork", nbytes=SIZE_MODE // 8,
                       extra=["--conns", "8", "--threads", "8"], conns=8)

    def test_server_epoll_lt(self):
        self.roundtrip(mode="epoll-lt", nbytes=SIZE_MODE)

    def test_server_epoll_et(self):
        self.roundtrip(mode="epoll-et", nbytes=SIZE_MODE)

    def test_server_epoll_et_small_reads(self):
        # Small reads leave decrypted data buffered inside the shim: ET must
        # still report it (the server drains until EAGAIN).
        srv = self.start_echo_server("epoll-et", policy=self.server_policy(),
                                     extra=["--read-chunk", "7"])
        self.roundtrip(style="rw", nbytes=256 * 1024, server=srv)

    def test_server_poll(self):
        self.roundtrip(mode="poll", nbytes=SIZE_MODE)

    def test_server_select(self):
        self.roundtrip(mode="select", nbytes=SIZE_MODE)

    def test_inetd_dup2_server(self):
        srv = self.start_inetd_echo(policy=self.server_policy())
        self.roundtrip(style="rw", nbytes=SIZE_MODE, server=srv)


if __name__ == "__main__":
    harness.main()
