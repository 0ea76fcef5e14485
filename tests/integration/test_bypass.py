"""test_bypass.py: no path from a program to a connection a `tls` rule
selected carries plaintext (SPEC section 6, "No path around the shim").

Each case runs tests/progs/bypass.c with one subcommand per path (sendmmsg,
recvmmsg, pwritev2, preadv2, splice both ways, vmsplice+splice, TCP Fast
Open, MPTCP, IPv6 lengths, dup3 failures, allocation failures, close_range,
a second name lookup ...). The program writes a unique marker to an echo
peer and reads the echo back. Between the two sits a wire tap: a raw TCP
relay that records every byte each way. Under the shim, with a `tls` rule,
the peer is a native TLS echo server (Python's ssl, the system OpenSSL):
the marker must never be on the wire in clear, and where the contract says
the path works the echo comes back, which the peer only sends after
receiving the marker through TLS. Each case has a CONTROL run: the same
program without the shim against a plain echo peer, where the tap must see
the marker in clear, so that no case passes by doing nothing.
"""

import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TIMEOUT = 30


class PlainEcho(harness.PeerThread):
    """Echoes every byte back, in clear (the control runs' peer)."""

    def handle(self, c, idx):
        while True:
            b = c.recv(65536)
            if not b:
                return
            c.sendall(b)


class Tap(harness.PeerThread):
    """The wire detector: relays each connection to the upstream peer and
    records what went each way."""

    def __init__(self, upstream, family=socket.AF_INET, addr="127.0.0.1"):
        self.upstream = upstream
        self.wire = []
        super().__init__(family=family, addr=addr)

    def handle(self, c, idx):
        with self.lock:
            self.wire.append(b"")
        up = socket.create_connection(self.upstream, timeout=10)
        try:
            socks = [c, up]
            while socks:
                r, _, _ = select.select(socks, [], [], 20)
                if not r:
                    return
                for s in r:
                    try:
                        b = s.recv(65536)
                    except (ConnectionResetError, OSError):
                        b = b""
                    other = up if s is c else c
                    if not b:
                        socks.remove(s)
                        try:
                            other.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    with self.lock:
                        self.wire[idx] += b
                    try:
                        other.sendall(b)
                    except OSError:
                        return
        finally:
            up.close()

    def bytes(self):
        with self.lock:
            return b"".join(self.wire)


class Bypass(harness.ShimTestCase):

    def marker(self, case):
        return "MARK-%s-%s" % (case, uuid.uuid4().hex)

    def tap(self, tls, family=socket.AF_INET, addr="127.0.0.1"):
        if tls:
            peer = self.peer(harness.TLSEchoServer(
                harness.tls_server_context(self.certs), family=family, addr=addr))
        else:
            peer = self.peer(PlainEcho(family=family, addr=addr))
        return peer, self.peer(Tap((addr, peer.port), family=family, addr=addr))

    def tls_policy(self, port, default_action="plaintext", **rule):
        return self.policy([self.out_rule("sealed", ports=[port], **rule)],
                           default_action=default_action)

    def bypass(self, case, host, port, marker, extra=(), policy=None, env=None, wrap=()):
        argv = list(wrap) + [harness.prog("bypass"), case, host, str(port), marker] + list(extra)
        if policy is None:
            r = self.run_plain(argv, env=env, timeout=TIMEOUT, what="bypass " + case)
        else:
            r = self.run_under_shim(argv, policy, env=env, timeout=TIMEOUT,
                                    what="bypass " + case)
        steps = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        return r, steps

    def control(self, case, host="127.0.0.1", family=socket.AF_INET, extra=(), wrap=()):
        """Without the shim, against a plain echo: the tap sees the marker."""
        m = self.marker(case)
        _, tap = self.tap(False, family=family, addr=host if host != "0.0.0.0" else "127.0.0.1")
        r, steps = self.bypass(case, host, tap.port, m, extra=extra, wrap=wrap)
        self.assertEqual(r.returncode, 0, r.describe())
        tap.wait_finished(1, timeout=TIMEOUT)
        self.assertIn(m.encode(), tap.bytes(),
                      "CONTROL: the detector did not see the marker in clear without the "
                      "shim, so it proves nothing\n" + r.describe())
        return steps

    def sealed(self, case, host="127.0.0.1", family=socket.AF_INET, expect_echo=True,
               extra=(), wrap=(), env=None, rule=None, default_action="plaintext"):
        """Under the shim with a tls rule, against a native TLS echo: the
        marker is never on the wire in clear; with |expect_echo| the peer
        received it through TLS and echoed it."""
        m = self.marker(case)
        listen = host if host not in ("0.0.0.0",) else "127.0.0.1"
        peer, tap = self.tap(True, family=family, addr=listen)
        policy = self.tls_policy(tap.port, default_action=default_action, **(rule or {}))
        r, steps = self.bypass(case, host, tap.port, m, extra=extra, policy=policy, env=env,
                               wrap=wrap)
        self.assertEqual(r.returncode, 0, r.describe())
        if tap.accepted:
            tap.wait_finished(tap.accepted, timeout=TIMEOUT)
        wire = tap.bytes()
        self.assertNotIn(m.encode(), wire, "the marker reached the wire in clear\n" + r.describe())
        self.assertNotIn(b"secret-", wire, "a refused call's bytes reached the wire\n"
                         + r.describe())
        if expect_echo:
            self.assertEqual(steps.get("echo"), "ok",
                             "the marker did not come back through TLS\n" + r.describe())
            self.assertTrue(wire.startswith(b"\x16\x03"), "not TLS on the wire: %r" % wire[:16])
            self.assertGreaterEqual(len(peer.sessions), 1, "the TLS peer saw no handshake")
            self.assert_log_event(r.log, "established", rule="sealed")
        return r, steps

    def both(self, case, **kw):
        control_kw = {k: v for k, v in kw.items() if k in ("host", "family", "extra", "wrap")}
        c = self.control(case, **control_kw)
        r, steps = self.sealed(case, **kw)
        return c, steps, r

    # ---- send paths ----

    def test_sendmmsg(self):
        c, s, _ = self.both("sendmmsg")
        self.assertEqual(c["sendmmsg"], "2")
        self.assertEqual(s["sendmmsg"], "2")
        self.assertEqual(s["msg_len"], c["msg_len"])

    def test_pwritev2(self):
        c, s, _ = self.both("pwritev2")
        self.assertEqual(c["pwritev2_at_0"], "ESPIPE")
        self.assertEqual(s["pwritev2_at_0"], "ESPIPE")
        self.assertEqual(s["pwritev2"], c["pwritev2"])

    def test_positioned_calls_are_espipe(self):
        c, s, _ = self.both("pio")
        for k in ("pwrite", "pwrite64", "pwritev", "pread", "preadv"):
            self.assertEqual(c[k], "ESPIPE", k)
            self.assertEqual(s[k], "ESPIPE", k)

    def test_splice_into_socket(self):
        c, s, _ = self.both("splice-in")
        self.assertEqual(c["splice_empty"], "EAGAIN")
        self.assertEqual(s["splice_empty"], "EAGAIN")
        self.assertEqual(s["splice"], c["splice"])

    def test_vmsplice_then_splice(self):
        c, s, _ = self.both("vmsplice")
        self.assertEqual(s["vmsplice"], c["vmsplice"])
        self.assertEqual(s["splice"], c["splice"])

    def test_tee_and_copy_file_range_fail_as_the_kernel_does(self):
        c, s, _ = self.both("not-socket-calls")
        for k in ("tee", "copy_file_range"):
            self.assertEqual(s[k], c[k], k)
            self.assertEqual(s[k], "EINVAL", k)

    # ---- receive paths ----

    def test_recvmmsg(self):
        self.both("recvmmsg")

    def test_preadv2(self):
        c, s, _ = self.both("preadv2")
        self.assertEqual(s["preadv2_at_0"], "ESPIPE")
        self.assertEqual(c["preadv2_at_0"], "ESPIPE")

    def test_splice_out_of_socket(self):
        self.both("splice-out")

    # ---- connections the kernel makes ----

    def test_sendto_fastopen_is_decided_as_connect(self):
        _, s, r = self.both("sendto-fastopen")
        self.assertNotIn("connect", s)

    def test_sendmsg_with_name_is_decided_as_connect(self):
        self.both("sendmsg-name")

    def test_fastopen_deny_sends_nothing(self):
        m = self.marker("tfo-deny")
        _, tap = self.tap(False)
        policy = self.policy([self.out_rule("no", ports=[tap.port], action="deny")])
        r, steps = self.bypass("sendto-fastopen", "127.0.0.1", tap.port, m, policy=policy)
        self.assertEqual(steps.get("sendto"), "EACCES", r.describe())
        self.assertEqual(tap.accepted, 0, "a denied Fast Open send reached the peer")
        self.assert_log_event(r.log, "denied", rule="no")

    def test_fastopen_connect_handshakes_first(self):
        self.both("fastopen-connect")

    def test_mptcp_is_tcp(self):
        with open("/proc/sys/net/mptcp/enabled") as f:
            if f.read().strip() != "1":
                self.skipTest("MPTCP is disabled in this kernel (net.mptcp.enabled)")
        self.both("mptcp")

    def test_ipv6_address_of_24_bytes(self):
        self.both("ipv6-len24", host="::1", family=socket.AF_INET6)

    def test_ipv4_mapped_address_matches_the_ipv4_rule(self):
        self.both("v4mapped", rule={"addresses": ["127.0.0.1"]})

    def test_any_address_is_the_local_host(self):
        # connect(0.0.0.0) reaches 127.0.0.1: the rule for 127.0.0.1 applies.
        self.both("plain", host="0.0.0.0", rule={"addresses": ["127.0.0.1"]})

    # ---- sessions a failed call or allocation must not lose ----

    def test_failed_dup3_keeps_the_session(self):
        c, s, _ = self.both("dup3-einval")
        for k in ("dup3_flags", "dup3_same"):
            self.assertEqual(c[k], "EINVAL", k)
            self.assertEqual(s[k], "EINVAL", k)

    def test_table_allocation_failure_on_connect_sends_nothing(self):
        self.control("connect-fail")
        m = self.marker("alloc")
        _, tap = self.tap(True)
        r, steps = self.bypass("connect-fail", "127.0.0.1", tap.port, m,
                               policy=self.tls_policy(tap.port),
                               env={"TLSSHIM_TEST_FAIL_FDTABLE": "1"})
        self.assertEqual(steps.get("connect"), "ENOBUFS", r.describe())
        self.assertIn(steps.get("write"), ("EPIPE", "ENOTCONN"), r.describe())
        self.assertEqual(tap.accepted, 0, "the connect reached the peer")
        self.assert_log_event(r.log, "failed", rule="sealed")
        self.assertIn("out of memory", r.log)

    def test_table_allocation_failure_on_dup_fails_the_dup(self):
        c = self.control("dup-fail")
        self.assertNotEqual(c["dup"], "EMFILE")
        self.assertNotEqual(c["fcntl_dupfd_cloexec"], "EMFILE")
        # The connect's entry is the first allocation, the dup's the second.
        r, s = self.sealed("dup-fail", env={"TLSSHIM_TEST_FAIL_FDTABLE": "2"})
        self.assertEqual(s["dup"], "EMFILE", r.describe())
        self.assertEqual(s["fcntl_dupfd"], c["fcntl_dupfd"], r.describe())
        self.assertEqual(s["fcntl_dupfd_cloexec"], "EMFILE", r.describe())
        self.assertEqual(r.log.count("duplicate descriptor closed"), 2, r.log)
        self.assertIn("duplicate descriptor closed: out of memory", r.log)

    def raw_round_trip(self, port, m):
        """Sends |m| in clear and returns what comes back before close."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(m)
            got = b""
            try:
                while m not in got:
                    b = c.recv(65536)
                    if not b:
                        break
                    got += b
            except (ConnectionResetError, socket.timeout):
                pass
            return got

    def test_table_allocation_failure_on_accept_hands_out_nothing(self):
        m = self.marker("accept-alloc").encode()
        # CONTROL: the same server without the shim echoes a clear marker.
        bg, port = self.start_echo_server()
        self.assertIn(m, self.raw_round_trip(port, m))
        bg.kill()
        policy = self.policy([self.in_rule("sealed-in", client_auth="none")])
        ready = self._next("ready")
        bg = self.spawn([harness.prog("tcp_echo_server"), "--port", "0", "--addr",
                         "127.0.0.1", "--mode", "thread", "--ready-file", ready],
                        policy=policy, env={"TLSSHIM_TEST_FAIL_FDTABLE": "2"})
        port = self.wait_ready_file(bg, ready)
        ctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        # The first accepted connection gets its entry: TLS works.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            with ctx.wrap_socket(c, server_hostname="localhost") as t:
                t.sendall(m)
                got = b""
                while len(got) < len(m):
                    b = t.recv(len(m) - len(got))
                    if not b:
                        break
                    got += b
                self.assertEqual(got, m)
        # The second finds no room: closed before accept returns it, never
        # served as a plain socket (which would echo the clear marker).
        got = self.raw_round_trip(port, m)
        self.assertNotIn(m, got, "the accepted socket was served without its session")
        harness.wait_for(lambda: "cannot make its TLS session" in bg.log(), 10,
                         "the accept failure's log line")
        self.assert_log_event(bg.log(), "failed")

    def test_close_range_ends_the_session(self):
        c, s, r = self.both("close-range")
        self.assertEqual(s["close_range"], "0")
        self.assertEqual(s["reused"], "yes", r.describe())
        self.assertEqual(s["pipe"], "ok", "the reused number still carried the session")

    def test_closefrom_ends_the_session(self):
        c, s, r = self.both("closefrom")
        self.assertEqual(s["reused"], "yes", r.describe())
        self.assertEqual(s["pipe"], "ok", "the reused number still carried the session")

    # ---- names: a second lookup never turns TLS into plaintext ----

    def hosts_namespace(self):
        """A private /etc/hosts where alpha.test and beta.test are both
        127.0.0.1 (a mount namespace of this test's own)."""
        unshare = shutil.which("unshare")
        if unshare is None:
            self.fail("unshare (util-linux) is needed for the names case")
        hosts = os.path.join(self.tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost alpha.test beta.test\n::1 localhost\n")
        return [unshare, "--mount", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', hosts]

    def test_second_lookup_keeps_the_first_names_rule(self):
        wrap = self.hosts_namespace()
        rule = {"names": ["alpha.test"], "server_name": "localhost"}
        self.control("names", extra=["alpha.test", "beta.test"], wrap=wrap)
        r, s = self.sealed("names", extra=["alpha.test", "beta.test"], wrap=wrap, rule=rule)
        self.assertEqual(s["resolve_alpha.test"], "ok")
        self.assertEqual(s["resolve_beta.test"], "ok")

    def test_name_rule_applies_only_to_its_name(self):
        # The control of the control: with only beta.test resolved, the
        # alpha.test rule does not apply and the default (plaintext) does.
        wrap = self.hosts_namespace()
        m = self.marker("names-other")
        _, tap = self.tap(False)
        policy = self.tls_policy(tap.port, names=["alpha.test"], server_name="localhost")
        r, s = self.bypass("names", "127.0.0.1", tap.port, m, extra=["beta.test"],
                           policy=policy, wrap=wrap)
        self.assertEqual(s.get("echo"), "ok", r.describe())
        tap.wait_finished(1)
        self.assertIn(m.encode(), tap.bytes())


if __name__ == "__main__":
    harness.main()
