"""test_status_redis.py: `tlsshim status` (SPEC 5) over redis-server under
the shim: redis-cli --tls N times, a SUBSCRIBE held open from redis-cli
under the shim (outbound), a plaintext redis-cli refused.

A file of its own because redis-server links jemalloc, which crashes next
to the preloaded ASan runtime: like test_real_servers it runs in the plain
build only (Makefile SAN_EXCLUDE). The helpers are test_status.py's."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_real_servers as real  # noqa: E402
import test_status  # noqa: E402

CLIENT_ID = real.CLIENT_ID
SERVER_ID = real.SERVER_ID
N = test_status.N


@harness.skip_if_plain("the status files are the shim's")
class StatusRedis(test_status.StatusCase):

    # ---- redis ----

    def test_redis_native_clients_and_redis_cli_under_shim(self):
        port = harness.free_port()
        pol = self.write_policy(self.policy([
            self.in_rule("redis-in", ports=[port], client_auth="optional"),
            self.out_rule("redis-out", ports=[port], identity="client",
                          peer_names=[SERVER_ID])]))
        rs = self.start_redis(port, pol)
        for i in range(N):
            r = self.redis_cli_tls(port, ["set", "k%d" % i, "v%d" % i], cert=True)
            self.assertEqual(r.stdout.strip(), "OK", r.describe() + rs.describe())
        pid = rs.proc.pid
        procs = self.wait_status(lambda p: self.total(p, "redis-in", "established") == N,
                                 "%d established on redis-in" % N)
        self.assertEqual(list(procs), [pid])
        r = self.rule(procs[pid], "redis-in")
        self.assertEqual(r["failed"]["inbound"], {k: 0 for k in r["failed"]["inbound"]}, r)
        # Each `set kI vI` is one RESP command of known size, each reply "+OK\r\n".
        sent = sum(len(b"*3\r\n$3\r\nset\r\n$%d\r\nk%d\r\n$%d\r\nv%d\r\n"
                       % (len(str(i)) + 1, i, len(str(i)) + 1, i)) for i in range(N))
        self.assertGreaterEqual(r["bytes_in"], sent, r)
        self.assertGreaterEqual(r["bytes_out"], N * len(b"+OK\r\n"), r)

        # redis-cli under the shim, SUBSCRIBEd and kept open: an outbound row
        # in its process, an inbound one in redis's, each with the other's
        # identity.
        sub = self.spawn([real.find_program("redis-cli"), "-p", str(port), "subscribe", "news"],
                         policy=pol, name="redis-cli-subscribe")
        procs = self.wait_status(lambda p: len(self.conns(p)) == 2,
                                 "the subscriber's two ends in the table")
        ends = {c["direction"]: c for c in self.conns(procs)}
        self.assertEqual(ends["outbound"]["pid"], sub.proc.pid, ends)
        self.assertEqual(ends["outbound"]["rule"], "redis-out", ends)
        self.assertEqual(ends["outbound"]["peer_identity"], SERVER_ID, ends)
        self.assertEqual(ends["outbound"]["peer"], "127.0.0.1:%d" % port, ends)
        self.assertEqual(ends["inbound"]["pid"], pid, ends)
        self.assertEqual(ends["inbound"]["peer_identity"], CLIENT_ID, ends)
        self.assertEqual(ends["outbound"]["local"], "", ends)
        r = self.redis_cli_tls(port, ["publish", "news", "hello-status"], cert=True)
        self.assertEqual(r.stdout.strip(), "1", r.describe())
        harness.wait_for(lambda: "hello-status" in sub.stdout(), 10, "the message to arrive")
        # The subscriber read the message through TLS: its bytes_in counts it.
        procs = self.procs(sub.proc.pid)
        c = procs[sub.proc.pid]["connections"][0]
        self.assertGreaterEqual(c["bytes_in"], len("hello-status"), c)
        self.assertEqual(c["bytes_out"], len(b"*2\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n"), c)

        # A plaintext client is refused as garbage.
        r = self.run_plain([real.find_program("redis-cli"), "-p", str(port), "ping"],
                           timeout=20, what="plaintext redis-cli")
        self.assertNotIn("PONG", r.stdout, r.describe())
        self.wait_status(lambda p: self.total(p, "redis-in", "failed", "inbound", "garbage")
                         == 1, "the plaintext redis-cli counted as garbage")
        sub.kill()
        real.RealServers.assert_exits_cleanly(self, rs, signal.SIGTERM, "redis-server")
        self.assertEqual(self.procs(), {})


if __name__ == "__main__":
    harness.main()
