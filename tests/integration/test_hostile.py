#!/usr/bin/env python3
"""test_hostile.py: hostile peers against a shim server and a shim client.

Server side: tcp_echo_server runs under the shim with an inbound tls rule and
meets tricklers, silent peers, malformed and oversized ClientHellos, TLS 1.2
renegotiation, a downgrade to TLS 1.2 against a TLS 1.3-only rule, RSTs at
every stage of the handshake and 10,000 abandoned handshakes. After each, the
server must still be running, its descriptor count must come back to the
baseline, and a good client must be served.

Client side: tcp_client (or a plain python client) runs under the shim with an
outbound tls rule against hostile python listeners and openssl s_server, and
must see a clean error (ETIMEDOUT, EPROTO, ECONNRESET) and never plaintext.

The helpers here are also used by test_faults.py and test_load.py.

Environment: TLSSHIM_BUILD_DIR (default <repo>/build), TLSSHIM_SOURCE_DIR,
TLSSHIM_TEST_PRELOAD_PREFIX (sanitizer runtime to preload first).
"""

import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LIB, PROGS, SOURCE_DIR as TOP  # noqa: E402
GEN_CERTS = os.path.join(TOP, "tests", "gen_certs.sh")

HANDSHAKE_TIMEOUT_MS = 1000

POLICY = """version: 1
trust: {ca: {ca: %(certs)s/ca.pem}}
identities:
  srv: {cert: %(certs)s/%(server_cert)s.pem, key: %(certs)s/%(server_cert)s.key}
  client: {cert: %(certs)s/client.pem, key: %(certs)s/client.key}
rules:
  - name: in
    direction: inbound
    match: {addresses: [127.0.0.1]}
    action: tls
    tls: {identity: srv, trust: ca, client_auth: %(client_auth)s, handshake_timeout_ms: %(timeout)d%(protocols)s}
  - name: out
    direction: outbound
    match: {addresses: [127.0.0.1]}
    action: tls
    tls: {trust: ca, identity: client, server_name: localhost, handshake_timeout_ms: %(timeout)d%(protocols)s}
log: {level: info}
"""


# ---- small utilities ----

def wait_for(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a true value, which is returned; raises
    AssertionError naming |what| after |timeout| seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class LineCounter:
    """Counts lines matching a substring in a growing file, reading only
    what was appended since the last call."""

    def __init__(self, path, needle):
        self.path, self.needle, self.off, self.count, self.part = path, needle, 0, 0, b""

    def __call__(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except FileNotFoundError:
            return 0
        self.off += len(data)
        data = self.part + data
        lines = data.split(b"\n")
        self.part = lines.pop()
        self.count += sum(1 for ln in lines if self.needle in ln)
        return self.count


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def make_tmp(name):
    tmp = tempfile.mkdtemp(prefix="tlsshim-test-%s." % name)
    certs = os.path.join(tmp, "certs")
    subprocess.run(["sh", GEN_CERTS, certs], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    return tmp, certs


def write_policy(path, certs, client_auth="required", tls13_only=False,
                 server_cert="server", timeout_ms=HANDSHAKE_TIMEOUT_MS):
    text = POLICY % {
        "certs": certs, "client_auth": client_auth, "timeout": timeout_ms,
        "server_cert": server_cert,
        "protocols": ", protocols: {min: TLS1.3}" if tls13_only else ""}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)
    return path


def shim_env(policy, log_file, extra=None):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "TLSSHIM_POLICY", "TLSSHIM_LOG", "TLSSHIM_LOG_FILE",
              "TLSSHIM_TEST_FAIL_SESSIONS"):
        env.pop(k, None)
    pre = os.environ.get("TLSSHIM_TEST_PRELOAD_PREFIX", "")
    env["LD_PRELOAD"] = (pre + " " + LIB).strip()
    env["TLSSHIM_POLICY"] = policy
    env["TLSSHIM_LOG_FILE"] = log_file
    if extra:
        env.update(extra)
    return env


def check_built():
    for f in (LIB, os.path.join(PROGS, "tcp_echo_server"), os.path.join(PROGS, "tcp_client")):
        if not os.path.exists(f):
            raise AssertionError("%s is missing: build first" % f)


class ShimServer:
    """tcp_echo_server under the shim; output goes to files (a pipe could
    fill up and stall the server)."""

    def __init__(self, tmp, policy, mode="epoll-lt", nofile=None, extra_env=None,
                 prog="tcp_echo_server", args=None, name=None):
        self.name = name or "server-%s-%d" % (mode, int(time.monotonic() * 1e6))
        self.log = os.path.join(tmp, self.name + ".shim.log")
        self.out = os.path.join(tmp, self.name + ".out")
        self.err = os.path.join(tmp, self.name + ".err")
        ready = os.path.join(tmp, self.name + ".ready")
        argv = [os.path.join(PROGS, prog)]
        if args is None:
            argv += ["--port", "0", "--mode", mode, "--timeout", "600"]
        else:
            argv += args
        argv += ["--ready-file", ready]

        def preexec():
            if nofile is not None:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                         env=shim_env(policy, self.log, extra_env),
                                         preexec_fn=preexec)
        try:
            wait_for(lambda: os.path.exists(ready) or self.proc.poll() is not None, 20,
                     "%s to write its ready file" % prog)
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s: %s" % (prog, self.proc.returncode,
                                                               read_text(self.err)))
            with open(ready) as f:
                self.port = int(f.read().strip())
        except BaseException:
            self.stop()
            raise
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def assert_alive(self, tc):
        tc.assertIsNone(self.proc.poll(), "server exited with %s; stderr: %s; log tail: %s"
                        % (self.proc.returncode, read_text(self.err)[-2000:],
                           read_text(self.log)[-2000:]))

    def fds(self):
        return fd_count(self.pid)

    def wait_fds(self, target, timeout=20):
        wait_for(lambda: self.fds() <= target, timeout,
                 "server descriptors back to %d (now %d)" % (target, self.fds()))

    def wait_log(self, pattern, timeout=10, count=1):
        rx = re.compile(pattern)
        wait_for(lambda: len(rx.findall(read_text(self.log))) >= count, timeout,
                 "shim log line matching %r (x%d); log tail: %s"
                 % (pattern, count, read_text(self.log)[-1500:]))
        return rx.findall(read_text(self.log))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def client_context(certs, with_cert=True, tls12=False, tls13=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(certs, "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(os.path.join(certs, "client.pem"), os.path.join(certs, "client.key"))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if tls13:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def server_context(certs, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def good_exchange(certs, port, payload=b"good client round trip\n", timeout=10):
    """A well-behaved TLS client (python ssl): handshake, echo, close.
    Returns the peer certificate (DER)."""
    ctx = client_context(certs)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = s.recv(65536)
                if not chunk:
                    raise AssertionError("good client: EOF after %r" % got)
                got += chunk
            if got != payload:
                raise AssertionError("good client: echo %r != %r" % (got, payload))
            return s.getpeercert(binary_form=True)


def client_hello(certs=None):
    """The bytes of a real ClientHello (python's OpenSSL, SNI localhost)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    assert data[0] == 0x16 and len(data) > 100, data[:10]
    return data


def memory_handshake(sock, ctx, server_side=False, server_hostname=None, timeout=10):
    """Runs a TLS handshake over |sock| through memory BIOs so the caller can
    later send raw record bytes. Returns (sslobject, incoming, outgoing)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=server_side, server_hostname=server_hostname)
    sock.settimeout(timeout)
    while True:
        try:
            obj.do_handshake()
            data = out.read()
            if data:
                sock.sendall(data)
            return obj, inc, out
        except ssl.SSLWantReadError:
            data = out.read()
            if data:
                sock.sendall(data)
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("EOF during the memory-BIO handshake")
            inc.write(chunk)


def rst_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def drain_until_closed(sock, timeout):
    """Reads until EOF or a reset; returns (bytes read, seconds taken) or
    raises AssertionError if the peer keeps the connection open."""
    start = time.monotonic()
    sock.settimeout(0.2)
    got = b""
    deadline = start + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return got, time.monotonic() - start
        if not chunk:
            return got, time.monotonic() - start
        got += chunk
    raise AssertionError("the server kept the connection open for %.1f s (read %r)"
                         % (timeout, got[:64]))


def assert_no_plaintext(tc, reply, payload):
    """The server's reply to a hostile peer is nothing or TLS alerts, never
    the payload echoed back as plaintext."""
    tc.assertNotIn(payload, reply, "the server echoed the hostile bytes as plaintext")
    if reply:
        tc.assertEqual(reply[0], 0x15, "reply is not a TLS alert record: %r" % reply[:16])


def run_shim_client(tmp, policy, argv, timeout=30, extra_env=None, name="client"):
    log = os.path.join(tmp, "%s-%d.shim.log" % (name, int(time.monotonic() * 1e6)))
    r = subprocess.run(argv, env=shim_env(policy, log, extra_env), capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r, read_text(log)


def tcp_client_expect(tmp, policy, port, errname, timeout=30, extra_env=None):
    argv = [os.path.join(PROGS, "tcp_client"), "--host", "127.0.0.1", "--port", str(port),
            "--style", "rw", "--bytes", "64", "--expect-error", errname, "--timeout", "20"]
    return run_shim_client(tmp, policy, argv, timeout=timeout, extra_env=extra_env)


class Listener:
    """A hostile python listener on 127.0.0.1: runs |behaviour(conn)| for
    each accepted connection in a thread; exceptions are kept."""

    def __init__(self, behaviour, count=1):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(30)
        self.port = self.sock.getsockname()[1]
        self.errors = []
        self.results = []
        self.done = threading.Event()

        def run():
            try:
                for _ in range(count):
                    conn, _ = self.sock.accept()
                    with conn:
                        self.results.append(behaviour(conn))
            except BaseException as e:  # reported by join()
                self.errors.append(e)
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout=30):
        if not self.done.wait(timeout):
            raise AssertionError("hostile listener did not finish within %d s" % timeout)
        self.sock.close()
        if self.errors:
            raise self.errors[0]
        return self.results


def read_client_hello(conn, timeout=10):
    conn.settimeout(timeout)
    data = b""
    while len(data) < 5 or len(data) < 5 + struct.unpack("!H", data[3:5])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            raise AssertionError("client closed before its ClientHello was complete")
        data += chunk
    return data


# ---- server side ----

class HostileServerSide(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        check_built()
        cls.tmp, cls.certs = make_tmp("hostile")
        cls.policy = write_policy(os.path.join(cls.tmp, "policy.yaml"), cls.certs)
        cls.policy13 = write_policy(os.path.join(cls.tmp, "policy13.yaml"), cls.certs,
                                    tls13_only=True)
        cls.hello = client_hello()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def start(self, mode="epoll-lt", policy=None):
        srv = ShimServer(self.tmp, policy or self.policy, mode=mode)
        self.addCleanup(srv.stop)
        base = srv.fds()
        good_exchange(self.certs, srv.port)
        # One good connection later the count is back: no lazy descriptors.
        srv.wait_fds(base)
        return srv, base

    def healthy(self, srv, base):
        srv.assert_alive(self)
        srv.wait_fds(base)
        good_exchange(self.certs, srv.port)
        srv.assert_alive(self)

    def trickle(self, mode):
        srv, base = self.start(mode)
        state = {"cut": None, "sent": 0, "reply": b""}
        started = threading.Event()
        t0 = time.monotonic()

        def trickler():
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.setblocking(False)
                started.set()
                for b in self.hello:
                    try:
                        chunk = s.recv(4096)
                        state["reply"] += chunk
                        if not chunk:
                            break
                    except BlockingIOError:
                        pass
                    except (ConnectionResetError, BrokenPipeError):
                        break
                    try:
                        s.send(bytes([b]))
                        state["sent"] += 1
                    except (ConnectionResetError, BrokenPipeError):
                        break
                    time.sleep(0.1)  # the trickle rate itself, not synchronisation
                state["cut"] = time.monotonic() - t0

        th = threading.Thread(target=trickler, daemon=True)
        th.start()
        self.assertTrue(started.wait(10), "trickler did not connect")
        # A good client is served while the trickler is pending.
        wait_for(lambda: state["sent"] >= 2, 5, "trickler to send its first bytes")
        good_exchange(self.certs, srv.port)
        self.assertIsNone(state["cut"], "the trickler was cut off before the good client "
                          "was served, so this proves nothing")
        th.join(HANDSHAKE_TIMEOUT_MS / 1000 + 5)
        self.assertFalse(th.is_alive(), "trickler still connected %.1f s after "
                         "handshake_timeout_ms=%d" % (time.monotonic() - t0, HANDSHAKE_TIMEOUT_MS))
        self.assertLess(state["sent"], len(self.hello), "the whole ClientHello got through")
        self.assertGreaterEqual(state["cut"], HANDSHAKE_TIMEOUT_MS / 1000 * 0.9)
        self.assertLess(state["cut"], HANDSHAKE_TIMEOUT_MS / 1000 + 3)
        assert_no_plaintext(self, state["reply"], b"\x00" * 4096)
        srv.wait_log(r'event=failed.*(timeout|timed out)')
        self.healthy(srv, base)

    def test_trickle_handshake_epoll(self):
        self.trickle("epoll-lt")

    def test_trickle_handshake_thread(self):
        self.trickle("thread")

    def silent(self, mode):
        srv, base = self.start(mode)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            good_exchange(self.certs, srv.port)
            reply, took = drain_until_closed(s, HANDSHAKE_TIMEOUT_MS / 1000 + 5)
            self.assertGreaterEqual(took, HANDSHAKE_TIMEOUT_MS / 1000 * 0.9)
            assert_no_plaintext(self, reply, b"xx")
        self.healthy(srv, base)

    def test_silent_peer_epoll(self):
        self.silent("epoll-lt")

    def test_silent_peer_thread(self):
        self.silent("thread")

    def test_malformed_client_hellos(self):
        srv, base = self.start("epoll-lt")
        hello = self.hello
        body_len = struct.unpack("!H", hello[3:5])[0]
        cases = {
            "http request": b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "oversized record length": b"\x16\x03\x01\xff\xff" + b"\x01" * 65535,
            "huge handshake length": b"\x16\x03\x01\x40\x00" + b"\x01\xff\xff\xff" + b"A" * 16380,
            "garbage body": hello[:9] + os.urandom(body_len - 4),
            "truncated hello then more records": hello[:5] + hello[5:40] + b"\x16\x03\x01\x00\x04junk",
            "wrong record type": b"\x17" + hello[1:],
            "sslv2 hello": b"\x80\x2e\x01\x00\x02\x00\x15" + b"\x00" * 0x2e,
            "zero-length records": b"\x16\x03\x01\x00\x00" * 2000,
        }
        for name, payload in cases.items():
            with self.subTest(case=name):
                with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                    try:
                        s.sendall(payload)
                    except (ConnectionResetError, BrokenPipeError):
                        pass
                    reply, _ = drain_until_closed(s, HANDSHAKE_TIMEOUT_MS / 1000 + 5)
                    assert_no_plaintext(self, reply, payload[:64])
                self.healthy(srv, base)
        srv.wait_log(r"event=failed", count=len(cases))

    def test_renegotiation_refused(self):
        srv, base = self.start("thread")
        p = subprocess.Popen(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, "-tls1_2",
             "-servername", "localhost", "-CAfile", os.path.join(self.certs, "ca.pem"),
             "-cert", os.path.join(self.certs, "client.pem"),
             "-key", os.path.join(self.certs, "client.key")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            p.stdin.write(b"before renegotiation\n")
            p.stdin.flush()
            out = b""
            os.set_blocking(p.stdout.fileno(), False)

            def got(needle):
                nonlocal out
                try:
                    chunk = p.stdout.read()
                    if chunk:
                        out += chunk
                except BlockingIOError:
                    pass
                return needle in out or p.poll() is not None

            # s_client prints what it receives, not what it sends.
            wait_for(lambda: got(b"\nbefore renegotiation"), 10,
                     "the echo before renegotiation")
            self.assertIn(b"Protocol  : TLSv1.2", out)
            p.stdin.write(b"R\n")
            p.stdin.flush()
            wait_for(lambda: got(b"alert no renegotiation"), 10,
                     "openssl s_client to report the server's no_renegotiation alert")
            self.assertIn(b"RENEGOTIATING", out)
            self.assertIn(b"alert no renegotiation", out, out[-800:])
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdin.close()
            p.stdout.close()
        # The program under the shim saw a clean error on that connection.
        wait_for(lambda: re.search(r"conn \d+: read: (EPROTO|ECONNRESET)", read_text(srv.err)),
                 10, "the server program to see EPROTO or ECONNRESET")
        srv.wait_log(r'(?i)event=failed.*reason="[^"]*renegotiat')
        self.healthy(srv, base)

    def test_downgrade_refused(self):
        srv, base = self.start("epoll-lt", policy=self.policy13)
        ctx = client_context(self.certs, tls12=True)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
            with self.assertRaises((ssl.SSLError, ConnectionResetError)) as cm:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"downgraded plaintext")
                    s.recv(100)
        self.assertRegex(str(cm.exception), r"(?i)version|alert|reset")
        lines = srv.wait_log(r'event=failed[^\n]*')
        self.assertRegex(lines[-1], r"TLS ?1\.2|TLSv1\.2")
        self.assertRegex(lines[-1], r"TLS ?1\.3|TLSv1\.3")
        self.healthy(srv, base)

    def test_rst_at_every_stage(self):
        srv, base = self.start("epoll-lt")
        for n in (0, 5, 100):
            with self.subTest(stage="%d bytes of ClientHello" % n):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                if n:
                    s.sendall(self.hello[:n])
                rst_close(s)
                self.healthy(srv, base)
        with self.subTest(stage="after the handshake, mid-record"):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            obj, _, out = memory_handshake(s, client_context(self.certs),
                                           server_hostname="localhost")
            obj.write(b"m" * 3000)
            record = out.read()
            self.assertGreater(len(record), 3000)
            s.sendall(record[:len(record) // 2])
            rst_close(s)
            self.healthy(srv, base)
        with self.subTest(stage="after the handshake, mid-echo"):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            obj, _, out = memory_handshake(s, client_context(self.certs),
                                           server_hostname="localhost")
            obj.write(b"e" * 200000)
            s.sendall(out.read())
            rst_close(s)
            self.healthy(srv, base)

    def test_ten_thousand_abandoned_handshakes(self):
        srv, base = self.start("epoll-lt")
        listen_port = srv.port
        total = 10000
        failed = LineCounter(srv.log, b"event=failed")
        t0 = time.monotonic()
        for i in range(total):
            s = socket.socket()
            s.settimeout(10)
            s.connect(("127.0.0.1", listen_port))
            try:
                s.send(self.hello[:60 + i % 40])
            except (ConnectionResetError, BrokenPipeError):
                pass
            if i % 10 == 0:
                rst_close(s)
            else:
                s.close()
            if i % 50 == 49:
                # Keep the listen backlog (128) from overflowing, which would
                # only make the kernel drop SYNs: let the server catch up.
                wait_for(lambda: failed() >= i + 1 - 100 or not srv.alive(), 20,
                         "the server to log the failure of abandoned connection %d" % (i - 99))
                srv.assert_alive(self)
        took = time.monotonic() - t0
        srv.assert_alive(self)
        srv.wait_fds(base, timeout=30)
        wait_for(lambda: failed() >= total, 20, "%d failure lines in the shim log" % total)
        good_exchange(self.certs, srv.port)
        srv.assert_alive(self)
        sys.stderr.write("\n10000 abandoned handshakes in %.1f s\n" % took)


# ---- client side ----

class HostileClientSide(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        check_built()
        cls.tmp, cls.certs = make_tmp("hostile-client")
        cls.policy = write_policy(os.path.join(cls.tmp, "policy.yaml"), cls.certs)
        cls.policy13 = write_policy(os.path.join(cls.tmp, "policy13.yaml"), cls.certs,
                                    tls13_only=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def expect(self, port, errname, policy=None):
        r, log = tcp_client_expect(self.tmp, policy or self.policy, port, errname)
        self.assertEqual(r.returncode, 0, "tcp_client: %s %s; shim log: %s"
                         % (r.stdout, r.stderr, log[-1500:]))
        self.assertIn("error=%s" % errname, r.stdout)
        return log

    def test_trickled_server_flight_times_out(self):
        ctx = server_context(self.certs)

        def behaviour(conn):
            hello = read_client_hello(conn)
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(inc, out, server_side=True)
            inc.write(hello)
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            flight = out.read()
            t0 = time.monotonic()
            for b in flight:
                try:
                    conn.send(bytes([b]))
                except (ConnectionResetError, BrokenPipeError):
                    return time.monotonic() - t0
                time.sleep(0.1)  # the trickle rate
            return None

        lst = Listener(behaviour)
        log = self.expect(lst.port, "ETIMEDOUT")
        cut = lst.join()[0]
        self.assertIsNotNone(cut, "the whole server flight got through")
        self.assertRegex(log, r"event=failed.*(timeout|timed out)")

    def test_silent_server_times_out(self):
        release = threading.Event()

        def behaviour(conn):
            read_client_hello(conn)
            release.wait(20)

        lst = Listener(behaviour)
        t0 = time.monotonic()
        self.expect(lst.port, "ETIMEDOUT")
        took = time.monotonic() - t0
        release.set()
        lst.join()
        self.assertLess(took, HANDSHAKE_TIMEOUT_MS / 1000 + 5)

    def test_malformed_server_hellos(self):
        cases = {
            "plaintext banner": b"220 smtp.example ESMTP ready\r\n",
            "oversized record": b"\x16\x03\x03\xff\xff" + b"\x02" * 65535,
            "garbage handshake": b"\x16\x03\x03\x00\x40" + b"\x02\x00\x00\x3c" + b"\xee" * 60,
            "alert": b"\x15\x03\x03\x00\x02\x02\x28",
        }
        for name, payload in cases.items():
            with self.subTest(case=name):
                def behaviour(conn, payload=payload):
                    read_client_hello(conn)
                    try:
                        conn.sendall(payload)
                        conn.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass  # the client refused early and reset: fine
                    conn.settimeout(10)
                    rest = b""
                    try:
                        while True:
                            c = conn.recv(65536)
                            if not c:
                                break
                            rest += c
                    except (ConnectionResetError, socket.timeout):
                        pass
                    return rest

                lst = Listener(behaviour)
                log = self.expect(lst.port, "EPROTO")
                rest = lst.join()[0]
                self.assertNotIn(b"plaintext that must never leak", rest)
                self.assertRegex(log, r"event=failed")

    def test_rst_during_handshake(self):
        def behaviour(conn):
            read_client_hello(conn)
            rst_close(conn)

        lst = Listener(behaviour)
        self.expect(lst.port, "ECONNRESET")
        lst.join()

    def test_downgrade_refused(self):
        p = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-tls1_2", "-naccept", "1",
             "-cert", os.path.join(self.certs, "server.pem"),
             "-key", os.path.join(self.certs, "server.key")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            port = self.s_server_port(p)
            log = self.expect(port, "EPROTO", policy=self.policy13)
            # The client knows what it offered and that the server refused
            # it; the server's own versions never reach it.
            self.assertRegex(log, r'event=failed[^\n]*reason="no common protocol version: '
                             r'client offered \[TLS1\.3\]')
        finally:
            p.kill()
            p.wait()
            p.stdin.close()
            p.stdout.close()

    def s_server_port(self, p):
        buf = b""
        os.set_blocking(p.stdout.fileno(), False)

        def ready():
            nonlocal buf
            try:
                chunk = p.stdout.read()
                if chunk:
                    buf += chunk
            except BlockingIOError:
                pass
            return b"ACCEPT" in buf or p.poll() is not None

        wait_for(ready, 10, "openssl s_server to print ACCEPT")
        m = re.search(rb"ACCEPT\s*(?:\S*:)?(\d+)?", buf)
        self.assertIsNone(p.poll(), "s_server exited: %r" % buf)
        # openssl 3 prints "ACCEPT 0.0.0.0:PORT"; find the port from /proc.
        for line in read_text("/proc/net/tcp").splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":
                continue
            inode = f[9]
            for fd in os.listdir("/proc/%d/fd" % p.pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (p.pid, fd)) == "socket:[%s]" % inode:
                        return int(f[1].split(":")[1], 16)
                except OSError:
                    pass
        raise AssertionError("s_server listening port not found: %r %r" % (buf, m))

    def test_server_renegotiation_refused(self):
        p = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-tls1_2", "-naccept", "1",
             "-cert", os.path.join(self.certs, "server.pem"),
             "-key", os.path.join(self.certs, "server.key")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            port = self.s_server_port(p)
            prog = ("import socket,sys,errno\n"
                    "s=socket.create_connection(('127.0.0.1',%d),timeout=20)\n"
                    "s.sendall(b'hello server\\n')\n"
                    "try:\n"
                    "  d=s.recv(100)\n"
                    "  print('read', repr(d))\n"
                    "except OSError as e:\n"
                    "  print('error', errno.errorcode.get(e.errno, e.errno))\n" % port)
            log = os.path.join(self.tmp, "reneg-client.shim.log")
            c = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                 env=shim_env(self.policy, log))
            out = b""

            def seen():
                nonlocal out
                try:
                    chunk = p.stdout.read()
                    if chunk:
                        out += chunk
                except BlockingIOError:
                    pass
                return b"hello server" in out

            wait_for(seen, 15, "s_server to print the client's line")
            p.stdin.write(b"r\n")
            p.stdin.flush()
            try:
                cout, cerr = c.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                c.kill()
                c.communicate()
                raise AssertionError("the shim client hung after a HelloRequest")
            cout = cout.decode()
            self.assertRegex(cout, r"^(error E\w+|read b'')$",
                             "client: %s %s" % (cout, cerr.decode()[-1000:]))
            self.assertRegex(read_text(log), r'(?i)event=failed.*renegotiat')
        finally:
            p.kill()
            p.wait()
            p.stdin.close()
            p.stdout.close()

    def test_close_while_read(self):
        prog = os.path.join(PROGS, "hostile_close_while_read")
        ctx = server_context(self.certs)
        for variant in ("nudge", "rcvtimeo"):
            with self.subTest(variant=variant):
                nudge = threading.Event()

                def behaviour(conn):
                    with ctx.wrap_socket(conn, server_side=True) as s:
                        s.settimeout(20)
                        nudge.wait(20)
                        try:
                            s.sendall(b"late data\n")
                        except OSError:
                            pass
                    return True

                lst = Listener(behaviour)
                log = os.path.join(self.tmp, "cwr-%s.shim.log" % variant)
                c = subprocess.Popen([prog, "127.0.0.1", str(lst.port), variant],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=shim_env(self.policy, log))
                os.set_blocking(c.stdout.fileno(), False)
                out = b""

                def closed():
                    nonlocal out
                    try:
                        chunk = c.stdout.read()
                        if chunk:
                            out += chunk
                    except BlockingIOError:
                        pass
                    return b"closed\n" in out or c.poll() is not None

                wait_for(closed, 15, "hostile_close_while_read to close the socket")
                if variant == "nudge":
                    nudge.set()
                try:
                    c.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    c.kill()
                    c.wait()
                    raise AssertionError("reader thread hung after close: %r" % out)
                finally:
                    nudge.set()
                rest = c.stdout.read() or b""
                out += rest
                err = c.stderr.read().decode()
                c.stdout.close()
                c.stderr.close()
                self.assertEqual(c.returncode, 0, "exit %s: %r %s %s" % (
                    c.returncode, out, err, read_text(log)[-1000:]))
                self.assertRegex(out.decode(), r"reader: (read=0|errno=E\w+|read=\d+)\n")
                lst.join()


if __name__ == "__main__":
    unittest.main(verbosity=2)
