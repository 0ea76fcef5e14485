"""harness.py: shared helpers of the integration tests (stdlib only).

Runs the plain-TCP test programs (tests/progs) under build/lib/libtlsshim.so
against real peers (openssl s_server/s_client, Python's ssl module, raw TCP
listeners), with a timeout on everything and process-group cleanup on every
exit path.

Environment:
  TLSSHIM_BUILD_DIR    build folder (default: <source>/build)
  TLSSHIM_SOURCE_DIR   source folder (default: two levels above this file)
  TLSSHIM_TEST_PRELOAD_PREFIX  prepended to LD_PRELOAD (e.g. the ASan runtime)
  TLSSHIM_TEST_PRELOAD_SUFFIX  appended to LD_PRELOAD (e.g. the TSan runtime)
  PLAIN=1              validation mode: run the programs WITHOUT the shim and
                       with the TLS parts off, to check programs and harness.
"""

import glob
import hashlib
import json
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SOURCE_DIR = os.path.abspath(os.environ.get("TLSSHIM_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD_DIR = os.path.abspath(os.environ.get("TLSSHIM_BUILD_DIR")
                            or os.path.join(SOURCE_DIR, "build"))
LIB = os.path.join(BUILD_DIR, "lib", "libtlsshim.so")
CLI = os.path.join(BUILD_DIR, "bin", "tlsshim")
PROGS = os.path.join(BUILD_DIR, "tests", "progs")
GEN_CERTS = os.path.join(SOURCE_DIR, "tests", "gen_certs.sh")
PLAIN = os.environ.get("PLAIN") == "1"

DEFAULT_TIMEOUT = 60.0


def prog(name):
    """Path of a test program; fails clearly when it was not built."""
    path = os.path.join(PROGS, name)
    if not os.access(path, os.X_OK):
        raise AssertionError("test program %s not built (expected %s)" % (name, path))
    return path


# ---- the deterministic stream of tcp_client, for cross-checks ----

def stream_bytes(conn, n):
    """The first |n| bytes tcp_client sends on connection |conn|."""
    m = (1 << 64) - 1
    st = 0x9E3779B97F4A7C15 ^ ((conn * 0x100000001B3 + 1) & m)
    out = bytearray()
    while len(out) < n:
        st ^= st >> 12
        st ^= (st << 25) & m
        st ^= st >> 27
        out += ((st * 0x2545F4914F6CDD1D) & m).to_bytes(8, "little")
    return bytes(out[:n])


def stream_sha256(conn, n):
    h = hashlib.sha256()
    m = (1 << 64) - 1
    st = 0x9E3779B97F4A7C15 ^ ((conn * 0x100000001B3 + 1) & m)
    left = n
    while left > 0:
        buf = bytearray()
        for _ in range(min(8192, (left + 7) // 8)):
            st ^= st >> 12
            st ^= (st << 25) & m
            st ^= st >> 27
            buf += ((st * 0x2545F4914F6CDD1D) & m).to_bytes(8, "little")
        take = min(len(buf), left)
        h.update(bytes(buf[:take]))
        left -= take
    return h.hexdigest()


# ---- YAML ----

def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    return json.dumps(str(v))  # a JSON string is a YAML double-quoted string


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts/lists of scalars, dicts and lists."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                if not v:
                    lines.append("%s%s: {}" % (pad, k))
                else:
                    lines.append("%s%s:" % (pad, k))
                    lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                if not v or all(not isinstance(x, (dict, list)) for x in v):
                    lines.append("%s%s: [%s]" % (pad, k, ", ".join(_yaml_scalar(x) for x in v)))
                else:
                    lines.append("%s%s:" % (pad, k))
                    lines.append(to_yaml(v, indent + 2))
            else:
                lines.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                sub = to_yaml(item, indent + 2).split("\n")
                sub[0] = pad + "- " + sub[0].lstrip()
                lines.extend(sub)
            else:
                lines.append("%s- %s" % (pad, _yaml_scalar(item)))
    else:
        lines.append(pad + _yaml_scalar(obj))
    return "\n".join(lines)


# ---- processes ----

class Result:
    def __init__(self, argv, returncode, stdout, stderr, log, elapsed):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.log = log
        self.elapsed = elapsed

    def describe(self):
        return ("command: %s\nexit status: %s\nstdout:\n%s\nstderr:\n%s\nshim log:\n%s"
                % (" ".join(self.argv), self.returncode, self.stdout[-3000:],
                   self.stderr[-3000:], self.log[-3000:]))


def _kill_group(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def read_until(stream, needle, timeout):
    """Reads a binary pipe until |needle| appears; returns what was read, or
    raises AssertionError after |timeout| seconds or at EOF."""
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while needle not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError("no %r within %d s; got %r" % (needle, timeout, buf))
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                raise AssertionError("EOF before %r; got %r" % (needle, buf))
            buf += chunk
    finally:
        sel.close()
    return buf


def stop(proc, sig=signal.SIGTERM, timeout=10):
    """Stops |proc| with |sig| (SIGKILL after |timeout| s) and closes its pipes."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


def find_program(name, packages, candidates=()):
    """The path of |name|: on PATH, else in the sbin folders (which a
    non-root PATH may lack), else the newest match of the first of the glob
    patterns |candidates| that matches. Fails, never skips, when it is not
    installed, naming the Debian |packages| that scripts/setup.sh installs."""
    p = shutil.which(name)
    if p is None:
        sbins = [os.path.join(d, name) for d in ("/usr/sbin", "/sbin", "/usr/local/sbin")]
        for pattern in sbins + list(candidates):
            hits = sorted(glob.glob(pattern))
            if hits:
                p = hits[-1]
                break
    if p is None or not os.access(p, os.X_OK):
        raise AssertionError("%s is not installed: run scripts/setup.sh (it installs the "
                             "Debian packages %s)" % (name, packages))
    return p


def wait_for(predicate, timeout, what, poll_interval=0.01):
    """Polls |predicate| until it is true; fails naming |what| after |timeout|."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(poll_interval)


def free_port():
    """A port that was free a moment ago (prefer port 0 + ready files)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_file(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Background:
    """A process in its own process group, output in files, killed at cleanup."""

    def __init__(self, argv, env, cwd, tmp, name, log_file=None, stdin=subprocess.DEVNULL):
        self.argv = argv
        self.name = name
        self.log_file = log_file
        self.out_path = os.path.join(tmp, "%s.%d.out" % (name, id(self)))
        self.err_path = os.path.join(tmp, "%s.%d.err" % (name, id(self)))
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin,
                                         stdout=out, stderr=err,
                                         start_new_session=True)

    def stdout(self):
        return read_file(self.out_path)

    def stderr(self):
        return read_file(self.err_path)

    def log(self):
        return read_file(self.log_file) if self.log_file else ""

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        _kill_group(self.proc)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def describe(self):
        return ("%s (%s), exit status %s\nstdout:\n%s\nstderr:\n%s\nshim log:\n%s"
                % (self.name, " ".join(self.argv), self.proc.poll(),
                   self.stdout()[-3000:], self.stderr()[-3000:], self.log()[-3000:]))


# ---- Python peers ----

class PeerThread:
    """Base of the in-process TCP peers: a listener and one thread per conn."""

    def __init__(self, family=socket.AF_INET, addr="127.0.0.1"):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Condition()
        self.accepted = 0
        self.finished = 0
        self.errors = []
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
                idx = self.accepted - 1
            threading.Thread(target=self._run_conn, args=(c, idx), daemon=True).start()

    def _run_conn(self, c, idx):
        try:
            c.settimeout(30)
            self.handle(c, idx)
        except Exception as e:  # recorded, asserted by tests that care
            with self.lock:
                self.errors.append("%s: %r" % (type(e).__name__, e))
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                self.finished += 1
                self.lock.notify_all()

    def handle(self, c, idx):
        raise NotImplementedError

    def wait_finished(self, n, timeout=10.0):
        """Waits until |n| connections have been handled to the end."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.finished < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "timed out after %.1fs waiting for %d connection(s) to end at "
                        "%s (accepted %d, finished %d)"
                        % (timeout, n, type(self).__name__, self.accepted, self.finished))
                self.lock.wait(left)

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
        self.thread.join(timeout=5)


class RawListener(PeerThread):
    """Records the bytes each client sends. behaviour:
    'record'  read until the client closes, never answer;
    'garbage' read the first bytes, answer with non-TLS bytes, keep reading;
    'close'   read the first bytes, then close."""

    GARBAGE = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"\x00garbage" * 64

    def __init__(self, behaviour="record", **kw):
        self.behaviour = behaviour
        self.data = []
        super().__init__(**kw)

    def handle(self, c, idx):
        with self.lock:
            self.data.append(b"")
        first = True
        while True:
            try:
                b = c.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return
            if not b:
                return
            with self.lock:
                self.data[idx] += b
            if first and self.behaviour == "garbage":
                c.sendall(self.GARBAGE)
            if first and self.behaviour == "close":
                return
            first = False

    def all_bytes(self):
        with self.lock:
            return b"".join(self.data)


class SilentListener(PeerThread):
    """Accepts and never reads nor answers; holds the connection."""

    def handle(self, c, idx):
        while not self.stopping:
            try:
                b = c.recv(1, socket.MSG_PEEK)
            except socket.timeout:
                continue
            except OSError:
                return
            if not b:
                return
            time.sleep(0.05)  # data is left unread on purpose


def tls_server_context(certs, cert="server", require_client_cert=False,
                       min_version=None, max_version=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert == "sha1":
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # else OpenSSL refuses to load it
    ctx.load_cert_chain(os.path.join(certs, cert + ".pem"), os.path.join(certs, cert + ".key"))
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(os.path.join(certs, "ca.pem"))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


class TLSEchoServer(PeerThread):
    """A real TLS echo peer (Python's ssl, i.e. the system OpenSSL). Records
    the negotiated version, cipher and the client's certificate per conn."""

    def __init__(self, ctx, **kw):
        self.ctx = ctx
        self.sessions = []
        super().__init__(**kw)

    def handle(self, c, idx):
        s = self.ctx.wrap_socket(c, server_side=True)
        try:
            self._echo(s)
        finally:
            s.close()

    def _echo(self, s):
        with self.lock:
            self.sessions.append({"version": s.version(), "cipher": s.cipher(),
                                  "peer_cert": s.getpeercert()})
        while True:
            b = s.recv(65536)
            if not b:
                break
            s.sendall(b)
        try:
            s.unwrap()
        except (OSError, ssl.SSLError):
            pass


class TLSResetMidRecordServer(PeerThread):
    """Completes a TLS handshake, waits for the client's first data, then
    sends half of a TLS record and resets the connection (RST)."""

    def __init__(self, ctx, **kw):
        self.ctx = ctx
        super().__init__(**kw)

    def handle(self, c, idx):
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(inc, out, server_side=True)

        def flush():
            data = out.read()
            if data:
                c.sendall(data)

        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                b = c.recv(65536)
                if not b:
                    return
                inc.write(b)
        flush()
        got = b""
        while not got:
            try:
                got = obj.read(65536)
            except ssl.SSLWantReadError:
                flush()
                b = c.recv(65536)
                if not b:
                    return
                inc.write(b)
        flush()
        obj.write(b"x" * 4000)
        record = out.read()
        c.sendall(record[: len(record) // 2])
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


# ---- the test case base ----

def skip_if_plain(reason="needs the shim's TLS"):
    return unittest.skipIf(PLAIN, "PLAIN=1: " + reason)


class ShimTestCase(unittest.TestCase):
    """Per class: certificates (tests/gen_certs.sh). Per test: a temp dir,
    policies, logs, and cleanup of every process and peer it started."""

    certs = None
    _class_tmp = None

    @classmethod
    def setUpClass(cls):
        cls._class_tmp = tempfile.mkdtemp(prefix="tlsshim-itest-")
        cls.certs = os.path.join(cls._class_tmp, "certs")
        make_certs(cls.certs)

    @classmethod
    def tearDownClass(cls):
        if cls._class_tmp and not os.environ.get("TLSSHIM_KEEP_TMP"):
            shutil.rmtree(cls._class_tmp, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="t-", dir=self._class_tmp)
        self._bg = []
        self._peers = []
        self._n = 0
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for b in self._bg:
            b.kill()
        for p in self._peers:
            p.close()

    def _next(self, what):
        self._n += 1
        return os.path.join(self.tmp, "%s%d" % (what, self._n))

    def cert(self, name):
        return os.path.join(self.certs, name)

    # -- policies --

    def write_policy(self, policy):
        """Writes a policy (dict → YAML, or text) and returns its path."""
        path = self._next("policy") + ".yaml"
        text = policy if isinstance(policy, str) else to_yaml(policy) + "\n"
        with open(path, "w") as f:
            f.write(text)
        return path

    def policy(self, rules, default_action="plaintext", identities=None, trust=None,
               defaults=None, level="info"):
        """A version-1 policy with the standard identities (server, client,
        other_client, rsa, ed25519) and trusts (ca, ca2, ca_crl)."""
        idents = {}
        for n in ("server", "client", "other_client", "rsa", "ed25519"):
            idents[n] = {"cert": self.cert(n + ".pem"), "key": self.cert(n + ".key")}
        if identities:
            idents.update(identities)
        trusts = {"ca": {"ca": self.cert("ca.pem")},
                  "ca2": {"ca": self.cert("ca2.pem")},
                  "ca_crl": {"ca": self.cert("ca.pem"), "crl": self.cert("ca.crl.pem")}}
        if trust:
            trusts.update(trust)
        p = {"version": 1, "default_action": default_action, "identities": idents,
             "trust": trusts}
        if defaults:
            p["defaults"] = defaults
        p["rules"] = rules
        p["log"] = {"level": level, "format": "json"}
        return p

    @staticmethod
    def out_rule(name, ports=None, action="tls", addresses=None, names=None, **tls):
        r = {"name": name, "direction": "outbound"}
        m = {}
        if addresses is not None:
            m["addresses"] = addresses
        if names is not None:
            m["names"] = names
        if ports is not None:
            m["ports"] = ports
        r["match"] = m
        r["action"] = action
        if action == "tls":
            t = {"trust": "ca"}
            t.update(tls)
            r["tls"] = t
        return r

    @staticmethod
    def in_rule(name, ports=None, action="tls", addresses=None, **tls):
        r = {"name": name, "direction": "inbound"}
        m = {}
        if addresses is not None:
            m["addresses"] = addresses
        if ports is not None:
            m["ports"] = ports
        r["match"] = m
        r["action"] = action
        if action in ("tls", "permissive"):
            t = {"identity": "server", "trust": "ca", "client_auth": "required"}
            t.update(tls)
            r["tls"] = t
        return r

    def nothing_policy(self):
        """A valid policy that selects no connection this test makes."""
        return self.write_policy(self.policy(
            [self.out_rule("never", ports=[1], action="deny")]))

    # -- running --

    def shim_env(self, policy, log_file, env=None):
        e = dict(os.environ)
        for k in ("LD_PRELOAD", "TLSSHIM_POLICY", "TLSSHIM_LOG_FILE", "TLSSHIM_LOG",
                  "SSLKEYLOGFILE"):
            e.pop(k, None)
        if not PLAIN:
            if not os.path.exists(LIB):
                raise AssertionError("the shim is not built: %s does not exist" % LIB)
            # A sanitizer runtime goes before the shim (ASan insists on it)
            # or after it (TSan: then the shim's hooks run outside TSan's
            # interceptors, whose nested lock calls TSan would not see).
            pre = os.environ.get("TLSSHIM_TEST_PRELOAD_PREFIX", "")
            post = os.environ.get("TLSSHIM_TEST_PRELOAD_SUFFIX", "")
            e["LD_PRELOAD"] = " ".join(x for x in (pre, LIB, post) if x)
            e["TLSSHIM_POLICY"] = policy
            e["TLSSHIM_LOG_FILE"] = log_file
        if env:
            e.update(env)
        return e

    def _policy_path(self, policy):
        if policy is None:
            return None
        if isinstance(policy, dict) or "\n" in policy:
            return self.write_policy(policy)
        return policy

    def run_plain(self, argv, env=None, timeout=DEFAULT_TIMEOUT, what=None, stdin_data=None,
                  cwd=None):
        """Runs a command without the shim; returns a Result."""
        e = dict(os.environ)
        e.pop("LD_PRELOAD", None)
        if env:
            e.update(env)
        return self._run(argv, e, None, timeout, what, stdin_data, cwd)

    def run_under_shim(self, argv, policy, env=None, timeout=DEFAULT_TIMEOUT, what=None,
                       stdin_data=None, cwd=None):
        """Runs |argv| with LD_PRELOAD=libtlsshim.so and |policy| (path, dict
        or YAML text); returns a Result with the shim's log. PLAIN=1: no shim."""
        log_file = self._next("shim") + ".log"
        e = self.shim_env(self._policy_path(policy), log_file, env)
        return self._run(argv, e, log_file, timeout, what, stdin_data, cwd)

    def _run(self, argv, env, log_file, timeout, what, stdin_data, cwd):
        t0 = time.monotonic()
        p = subprocess.Popen(argv, env=env, cwd=cwd or self.tmp,
                             stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        try:
            out, err = p.communicate(input=stdin_data, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(p)
            out, err = p.communicate()
            r = Result(argv, None, out.decode(errors="replace"), err.decode(errors="replace"),
                       read_file(log_file) if log_file else "", time.monotonic() - t0)
            raise AssertionError("timed out after %.0fs waiting for %s\n%s"
                                 % (timeout, what or argv[0], r.describe()))
        finally:
            _kill_group(p)
        return Result(argv, p.returncode, out.decode(errors="replace"),
                      err.decode(errors="replace"),
                      read_file(log_file) if log_file else "", time.monotonic() - t0)

    def spawn(self, argv, policy=None, env=None, name=None, cwd=None, stdin=subprocess.DEVNULL):
        """Starts a background process (under the shim when |policy| is given)."""
        name = name or os.path.basename(argv[0])
        if policy is not None:
            log_file = self._next("shim") + ".log"
            e = self.shim_env(self._policy_path(policy), log_file, env)
        else:
            log_file = None
            e = dict(os.environ)
            e.pop("LD_PRELOAD", None)
            if env:
                e.update(env)
        b = Background(argv, e, cwd or self.tmp, self.tmp, name, log_file, stdin)
        self._bg.append(b)
        return b

    def wait_ready_file(self, bg, path, timeout=15.0):
        def ready():
            if os.path.exists(path):
                return True
            if not bg.alive():
                raise AssertionError("%s exited before it was ready\n%s"
                                     % (bg.name, bg.describe()))
            return False
        try:
            wait_for(ready, timeout, "%s to write its ready file %s" % (bg.name, path))
        except AssertionError as e:
            if "exited before" in str(e):
                raise
            raise AssertionError("%s\n%s" % (e, bg.describe()))
        with open(path) as f:
            return int(f.read().strip())

    def start_echo_server(self, mode="thread", policy=None, extra=(), addr="127.0.0.1"):
        """Starts tcp_echo_server (under the shim when |policy| is given) on
        an ephemeral port; returns (Background, port)."""
        ready = self._next("ready")
        argv = [prog("tcp_echo_server"), "--port", "0", "--addr", addr, "--mode", mode,
                "--ready-file", ready] + list(extra)
        b = self.spawn(argv, policy=policy, name="tcp_echo_server-" + mode)
        return b, self.wait_ready_file(b, ready)

    def start_inetd_echo(self, policy=None):
        ready = self._next("ready")
        argv = [prog("inetd_echo"), "--listen", "0", "--ready-file", ready]
        b = self.spawn(argv, policy=policy, name="inetd_echo")
        return b, self.wait_ready_file(b, ready)

    def tcp_client(self, port, style="rw", nbytes=1 << 20, host="127.0.0.1", policy=None,
                   extra=(), timeout=DEFAULT_TIMEOUT):
        argv = [prog("tcp_client"), "--host", host, "--port", str(port), "--style", style,
                "--bytes", str(nbytes), "--timeout", str(int(timeout))] + list(extra)
        if policy is None:
            return self.run_plain(argv, timeout=timeout + 5, what="tcp_client")
        return self.run_under_shim(argv, policy, timeout=timeout + 5, what="tcp_client")

    def assert_echo_ok(self, r, nbytes, conns=1):
        """tcp_client succeeded and the hashes match the known stream."""
        self.assertEqual(r.returncode, 0, "tcp_client failed\n" + r.describe())
        lines = [l for l in r.stdout.splitlines() if "sha256_out=" in l]
        self.assertEqual(len(lines), conns, "expected %d result line(s)\n%s"
                         % (conns, r.describe()))
        for i, line in enumerate(lines):
            f = dict(kv.split("=", 1) for kv in line.split())
            self.assertEqual(int(f["sent"]), nbytes, r.describe())
            self.assertEqual(int(f["received"]), nbytes, r.describe())
            self.assertEqual(f["sha256_out"], f["sha256_in"], r.describe())
            if nbytes <= (4 << 20):
                self.assertEqual(f["sha256_out"], stream_sha256(i, nbytes),
                                 "tcp_client's stream is not the documented one")

    def start_s_server(self, args, policy=None, cwd=None, name="s_server"):
        """Starts `openssl s_server -accept 127.0.0.1:0 ARGS`; returns
        (Background, port) once its ACCEPT line shows it listening."""
        argv = ["openssl", "s_server", "-accept", "127.0.0.1:0"] + list(args)
        b = self.spawn(argv, policy=policy, name=name, cwd=cwd, stdin=subprocess.PIPE)

        def port():
            for line in b.stdout().splitlines():
                if line.startswith("ACCEPT "):
                    return int(line.rsplit(":", 1)[1])
            if not b.alive():
                raise AssertionError("openssl s_server exited early\n" + b.describe())
            return None
        try:
            return b, wait_for(port, 15.0, "openssl s_server to print its ACCEPT line")
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, b.describe()))

    S_CLIENT_TOKEN = "ECHO-TOKEN-7c1d"

    def s_client(self, port, args=(), timeout=20.0, name="s_client"):
        """Runs `openssl s_client` to 127.0.0.1:|port| (CA ca.pem, SNI
        localhost), sends S_CLIENT_TOKEN and waits until its echo shows or
        s_client exits, then closes its stdin. Returns the Background."""
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile",
                self.cert("ca.pem"), "-verify_return_error", "-servername", "localhost",
                "-ign_eof"] + list(args)
        b = self.spawn(argv, name=name, stdin=subprocess.PIPE)
        try:
            b.proc.stdin.write((self.S_CLIENT_TOKEN + "\n").encode())
            b.proc.stdin.flush()
        except BrokenPipeError:
            pass
        harness_wait = lambda: self.S_CLIENT_TOKEN in b.stdout() or not b.alive()
        try:
            wait_for(harness_wait, timeout, "the echo through openssl s_client or its exit")
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, b.describe()))
        b.kill()
        return b

    def peer(self, p):
        """Registers a Python peer for cleanup and returns it."""
        self._peers.append(p)
        return p

    # -- log assertions --

    def log_events(self, log_text):
        """The JSON objects of a json-format shim log (other lines ignored)."""
        evs = []
        for line in log_text.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    evs.append(json.loads(line))
                except ValueError:
                    pass
        return evs

    def assert_log_has(self, log_text, substring, msg=""):
        if substring not in log_text:
            self.fail("expected the shim log to contain %r %s\nshim log was:\n%s"
                      % (substring, msg, log_text[-4000:] or "(empty)"))

    def assert_log_event(self, log_text, event, reason=None, **fields):
        """Some json log line has |event|, |reason| as a substring of its
        reason, and the given fields equal."""
        for ev in self.log_events(log_text):
            if ev.get("event") != event:
                continue
            if reason is not None and reason not in str(ev.get("reason", "")):
                continue
            if all(str(ev.get(k)) == str(v) for k, v in fields.items()):
                return ev
        self.fail("expected a shim log event=%s%s%s\nshim log was:\n%s"
                  % (event, " with reason containing %r" % reason if reason else "",
                     " and %r" % fields if fields else "", log_text[-4000:] or "(empty)"))

    def fd_count(self, pid):
        return len(os.listdir("/proc/%d/fd" % pid))


def make_certs(dest):
    """The test PKI: tests/gen_certs.sh when present, else a minimal set."""
    os.makedirs(dest, exist_ok=True)
    if os.path.exists(GEN_CERTS):
        p = subprocess.run(["sh", GEN_CERTS, dest], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        if p.returncode != 0:
            raise AssertionError("gen_certs.sh failed:\n" + p.stdout.decode(errors="replace"))
        return
    _fallback_certs(dest)


def _fallback_certs(d):
    def sh(*args):
        p = subprocess.run(list(args), cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if p.returncode != 0:
            raise AssertionError("%s failed:\n%s" % (" ".join(args), p.stdout.decode()))

    def key(name):
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-out", name + ".key")

    for ca in ("ca", "ca2"):
        key(ca)
        sh("openssl", "req", "-x509", "-new", "-key", ca + ".key", "-out", ca + ".pem",
           "-days", "3650", "-subj", "/CN=tlsshim test " + ca)

    def leaf(name, san, eku, ca="ca"):
        key(name)
        sh("openssl", "req", "-new", "-key", name + ".key", "-out", name + ".csr",
           "-subj", "/CN=" + name)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=%s\n" % (san, eku))
        sh("openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey",
           ca + ".key", "-CAcreateserial", "-out", name + ".pem", "-days", "365",
           "-extfile", name + ".ext")

    srv = ("DNS:localhost,DNS:server.test,IP:127.0.0.1,IP:::1,"
           "URI:spiffe://test/ns/default/sa/server")
    leaf("server", srv, "serverAuth")
    leaf("client", "URI:spiffe://test/ns/default/sa/client,DNS:client.test", "clientAuth")
    leaf("other_client", "URI:spiffe://test/ns/default/sa/other", "clientAuth")
    leaf("wrongca", srv, "serverAuth", ca="ca2")
    for n in ("rsa", "ed25519"):
        shutil.copy(os.path.join(d, "server.pem"), os.path.join(d, n + ".pem"))
        shutil.copy(os.path.join(d, "server.key"), os.path.join(d, n + ".key"))


def main():
    """unittest.main with a one-line mode banner."""
    sys.stderr.write("harness: build %s, %s\n" % (BUILD_DIR, "PLAIN (no shim)" if PLAIN
                                                   else "shim " + LIB))
    unittest.main(verbosity=2)
