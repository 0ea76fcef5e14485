#!/usr/bin/env python3
"""Benchmark driver: plain TCP vs the shim vs stunnel, interleaved, plus the BoringSSL ceiling.

Runs bench/loadgen (plain-TCP load program) as server and client in each
transport mode, repeats every measurement --reps times in the order
plain, shim, stunnel, plain, shim, stunnel, ..., and prints a Markdown table
of medians with the ratios and the targets of the issue, also written to
bench/RESULTS.md. Standard library only.

Every child runs in its own session and is killed on every exit path
(normal end, exception, SIGINT, SIGTERM, SIGHUP); every wait has a timeout.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Children still running; killed by cleanup().
LIVE = []


class Failure(Exception):
    """A measurement that could not be made; the reason goes into the table."""


class Skipped(Exception):
    """A measurement that does not apply (shown as n/a, not a failure)."""


def cleanup():
    while LIVE:
        proc = LIVE.pop()
        kill(proc)


def kill(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"bench: pid {proc.pid} ignored SIGTERM for 5 s, sending SIGKILL",
                  file=sys.stderr)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                print(f"bench: pid {proc.pid} survived SIGKILL for 5 s", file=sys.stderr)
    if proc in LIVE:
        LIVE.remove(proc)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f.read().splitlines() if l.strip()]
        return " | ".join(lines[-n:])
    except OSError:
        return ""


def preexec(core):
    """Pins the child (as `taskset -c CORE` would) and raises RLIMIT_NOFILE."""
    def fn():
        os.sched_setaffinity(0, {core})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return fn


def spawn(argv, core, env=None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
          stderr_path=None):
    full_env = dict(os.environ)
    for k in ("LD_PRELOAD", "TLSSHIM_POLICY", "TLSSHIM_LOG", "TLSSHIM_LOG_FILE"):
        full_env.pop(k, None)
    full_env.update(env or {})
    err = open(stderr_path, "ab") if stderr_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(argv, env=full_env, stdin=stdin, stdout=stdout,
                                stderr=err, preexec_fn=preexec(core),
                                start_new_session=True)
    finally:
        if stderr_path:
            err.close()
    LIVE.append(proc)
    return proc


def read_line(proc, timeout, what):
    """Reads one stdout line of proc within timeout seconds."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure(f"timeout: {what} gave no output within {timeout:.0f} s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                rc = proc.wait(timeout=5)
                raise Failure(f"{what} exited with status {rc}"
                              + (f": {buf.decode(errors='replace').strip()}" if buf else ""))
            buf += chunk
    return buf.decode(errors="replace").strip()


def parse_result(line, what):
    if not line.startswith("RESULT "):
        raise Failure(f"{what}: {line}")
    out = {}
    for kv in line.split()[1:]:
        k, v = kv.split("=", 1)
        out[k] = float(v)
    return out


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError as e:
        raise Failure(f"cannot read VmRSS of pid {pid}: {e}")
    raise Failure(f"no VmRSS for pid {pid}")


def listening(port):
    want = f":{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[1].endswith(want) and fields[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def wait_listening(port, proc, timeout, what, log):
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None:
            raise Failure(f"{what} exited with status {proc.returncode}: {tail(log)}")
        if time.monotonic() > deadline:
            raise Failure(f"timeout: {what} not listening on {port} after {timeout} s")
        time.sleep(0.01)


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build_dir)
        self.loadgen = os.path.join(self.build, "bin", "loadgen")
        self.ceiling = os.path.join(self.build, "bin", "ceiling")
        self.shim = os.path.abspath(args.shim_lib or os.path.join(self.build, "lib",
                                                                  "libtlsshim.so"))
        self.stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        self.work = tempfile.mkdtemp(prefix="tlsshim-bench-")
        self.seq = 0
        quick = args.quick
        self.secs = args.seconds or (0.3 if quick else 2.0)
        self.idle_ns = [200] if quick else [1000, 10000]
        self.startup_runs = 30 if quick else 200
        self.ceiling_secs = 0.3 if quick else 1.0
        self.hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    # ---- set-up ----

    def make_certs(self):
        w = self.work
        ext = os.path.join(w, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        cmds = [
            ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-out", "ca.key"],
            ["openssl", "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "365",
             "-subj", "/CN=tlsshim bench CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem"],
            ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-out", "srv.key"],
            ["openssl", "req", "-new", "-key", "srv.key", "-subj", "/CN=localhost",
             "-out", "srv.csr"],
            ["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "365", "-sha256", "-extfile", ext,
             "-out", "srv.pem"],
        ]
        for c in cmds:
            r = subprocess.run(c, cwd=w, capture_output=True, timeout=30)
            if r.returncode != 0:
                raise SystemExit(f"bench: {' '.join(c)} failed: "
                                 f"{r.stderr.decode(errors='replace').strip()}")

    def policy(self, name, body):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(body)
        return path

    def tls_defaults(self, resumption):
        return ("defaults:\n"
                "  protocols: {min: TLS1.3, max: TLS1.3}\n"
                "  groups: [X25519]\n"
                f"  session_resumption: {'true' if resumption else 'false'}\n"
                "log: {level: warn}\n")

    def server_policy(self, port, resumption):
        return self.policy(f"server-{port}.yaml",
                           "version: 1\n"
                           "identities:\n  srv: {cert: srv.pem, key: srv.key}\n"
                           + self.tls_defaults(resumption) +
                           "rules:\n"
                           "  - name: in\n    direction: inbound\n"
                           f"    match: {{ports: [{port}]}}\n"
                           "    action: tls\n    tls: {identity: srv}\n")

    def client_policy(self, port, resumption):
        return self.policy(f"client-{port}.yaml",
                           "version: 1\n"
                           "trust:\n  ca: {ca: ca.pem}\n"
                           + self.tls_defaults(resumption) +
                           "rules:\n"
                           "  - name: out\n    direction: outbound\n"
                           f"    match: {{ports: [{port}]}}\n"
                           "    action: tls\n    tls: {trust: ca}\n")

    def nomatch_policy(self):
        """Identities, trust and rules, none of which selects the benchmark's ports."""
        return self.policy("nomatch.yaml",
                           "version: 1\ndefault_action: plaintext\n"
                           "identities:\n  srv: {cert: srv.pem, key: srv.key}\n"
                           "trust:\n  ca: {ca: ca.pem}\n"
                           + self.tls_defaults(True) +
                           "rules:\n"
                           "  - name: in\n    direction: inbound\n    match: {ports: [9]}\n"
                           "    action: tls\n    tls: {identity: srv}\n"
                           "  - name: out\n    direction: outbound\n    match: {ports: [9]}\n"
                           "    action: tls\n    tls: {trust: ca}\n")

    def startup_policy(self):
        rules = []
        for i in range(10):
            rules.append(f"  - name: in{i}\n    direction: inbound\n"
                         f"    match: {{ports: [{10001 + i}]}}\n"
                         "    action: tls\n    tls: {identity: srv}\n")
            rules.append(f"  - name: out{i}\n    direction: outbound\n"
                         f"    match: {{addresses: [10.{i}.0.0/16], ports: [{20001 + i}]}}\n"
                         "    action: tls\n    tls: {trust: ca}\n")
        return self.policy("startup20.yaml",
                           "version: 1\n"
                           "identities:\n  srv: {cert: srv.pem, key: srv.key}\n"
                           "trust:\n  ca: {ca: ca.pem}\n"
                           + self.tls_defaults(True) + "rules:\n" + "".join(rules))

    def shim_env(self, policy, log):
        return {"LD_PRELOAD": self.shim, "TLSSHIM_POLICY": policy, "TLSSHIM_LOG_FILE": log}

    def stunnel_conf(self, name, service, resumption):
        log = os.path.join(self.work, name + ".log")
        path = os.path.join(self.work, name + ".conf")
        with open(path, "w") as f:
            f.write("foreground = yes\npid =\nsyslog = no\n"
                    f"output = {log}\ndebug = warning\n"
                    "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n"
                    f"[{name}]\n{service}"
                    "sslVersionMin = TLSv1.3\nsslVersionMax = TLSv1.3\n"
                    "ciphersuites = TLS_AES_128_GCM_SHA256\ncurves = X25519\n"
                    f"sessionResume = {'yes' if resumption else 'no'}\n")
        return path, log

    # ---- one measurement ----

    def run_case(self, case, mode):
        """Runs one case in one mode; returns a dict of metrics or raises Failure."""
        self.seq += 1
        tag = f"{case['id']}-{mode}-{self.seq}"
        srv_core, cli_core = case["cores"]
        resumption = case.get("resumption", False)
        srv_port = free_port()
        cli_port = srv_port
        srv_env, cli_env = {}, {}
        if mode == "shim":
            if not os.path.exists(self.shim):
                raise Failure(f"{self.shim} not found")
            srv_env = self.shim_env(self.server_policy(srv_port, resumption),
                                    os.path.join(self.work, tag + "-shim-server.log"))
            cli_env = self.shim_env(self.client_policy(srv_port, resumption),
                                    os.path.join(self.work, tag + "-shim-client.log"))
        elif mode == "passthrough":
            if not os.path.exists(self.shim):
                raise Failure(f"{self.shim} not found")
            pol = self.nomatch_policy()
            srv_env = self.shim_env(pol, os.path.join(self.work, tag + "-shim-server.log"))
            cli_env = self.shim_env(pol, os.path.join(self.work, tag + "-shim-client.log"))
        elif mode == "stunnel":
            if self.stunnel is None:
                raise Skipped("stunnel4 not installed")
            if case["test"] == "idle" and 2 * case["conns"] + 64 > self.hard_nofile:
                raise Skipped(f"needs 2 fds/conn, fd limit {self.hard_nofile}")

        procs = []
        try:
            srv_log = os.path.join(self.work, tag + "-server.err")
            server = spawn([self.loadgen, "server", "--port", str(srv_port),
                            "--proto", case["proto"], "--model", case["model"]],
                           srv_core, env=srv_env, stderr_path=srv_log)
            procs.append(server)
            line = read_line(server, 10, "server")
            if line != "READY":
                raise Failure(f"server: {line} {tail(srv_log)}")
            stunnels = []
            if mode == "stunnel":
                tls_port, cli_port = free_port(), free_port()
                sconf, slog = self.stunnel_conf(
                    f"s{self.seq}",
                    f"accept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{srv_port}\n"
                    f"cert = {self.work}/srv.pem\nkey = {self.work}/srv.key\n", resumption)
                cconf, clog = self.stunnel_conf(
                    f"c{self.seq}",
                    f"client = yes\naccept = 127.0.0.1:{cli_port}\n"
                    f"connect = 127.0.0.1:{tls_port}\nCAfile = {self.work}/ca.pem\n"
                    "verifyChain = yes\ncheckIP = 127.0.0.1\n", resumption)
                for conf, log, core, port in ((sconf, slog, srv_core, tls_port),
                                              (cconf, clog, cli_core, cli_port)):
                    p = spawn([self.stunnel, conf], core, stdout=subprocess.DEVNULL,
                              stderr_path=log)
                    procs.append(p)
                    stunnels.append(p)
                    wait_listening(port, p, 10, "stunnel", log)
            cargs = [self.loadgen, "client", "--port", str(cli_port),
                     "--test", case["test"], "--seconds", str(self.secs)]
            for k in ("size", "threads", "conns"):
                if k in case:
                    cargs += [f"--{k}", str(case[k])]
            cli_log = os.path.join(self.work, tag + "-client.err")
            if case["test"] == "idle":
                return self.measure_idle(case, cargs, cli_core, cli_env, cli_log,
                                         server, stunnels, procs)
            client = spawn(cargs, cli_core, env=cli_env, stderr_path=cli_log)
            procs.append(client)
            line = read_line(client, self.secs + 60, "client")
            try:
                client.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise Failure("timeout: client did not exit 10 s after its result")
            if server.poll() is not None:
                raise Failure(f"server exited with status {server.returncode}: "
                              f"{tail(srv_log)}")
            try:
                return parse_result(line, "client")
            except Failure as e:
                extra = tail(cli_env.get("TLSSHIM_LOG_FILE", ""), 1) or tail(cli_log, 1)
                raise Failure(f"{e} {extra}".strip())
        finally:
            for p in reversed(procs):
                kill(p)

    def measure_idle(self, case, cargs, cli_core, cli_env, cli_log, server, stunnels,
                     procs):
        n = case["conns"]
        base = {p.pid: rss_kb(p.pid) for p in [server] + stunnels}
        client = spawn(cargs, cli_core, env=cli_env, stdin=subprocess.PIPE,
                       stderr_path=cli_log)
        procs.append(client)
        line = read_line(client, 300, "idle client")
        r = parse_result(line, "idle client")
        after = {p.pid: rss_kb(p.pid) for p in [server] + stunnels}
        client.stdin.close()
        try:
            client.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure("timeout: idle client did not exit within 30 s of its stdin closing")
        delta = r["rss_after_kb"] - r["rss_before_kb"]
        delta += sum(after[pid] - base[pid] for pid in base)
        srv_delta = after[server.pid] - base[server.pid]
        return {"kib_per_conn": delta / n,
                "server_kib_per_conn": srv_delta / n,
                "client_kib_per_conn": (r["rss_after_kb"] - r["rss_before_kb"]) / n,
                "open_secs": r["open_secs"]}

    def run_ceiling(self):
        w = self.work
        r = subprocess.run([self.ceiling, "--cert", f"{w}/srv.pem", "--key", f"{w}/srv.key",
                            "--ca", f"{w}/ca.pem", "--seconds", str(self.ceiling_secs)],
                           capture_output=True, timeout=60, text=True,
                           preexec_fn=preexec(0))
        return parse_result(r.stdout.strip(), "ceiling")

    def run_startup(self):
        if not os.path.exists(self.shim):
            raise Failure(f"{self.shim} not found")
        pol = self.startup_policy()
        hf = shutil.which("hyperfine")
        if hf:
            out = os.path.join(self.work, "hyperfine.json")
            r = subprocess.run([hf, "-N", "--warmup", "10", "--runs", str(self.startup_runs),
                                "--export-json", out, "env /bin/true",
                                f"env LD_PRELOAD={self.shim} TLSSHIM_POLICY={pol} /bin/true"],
                               capture_output=True, timeout=300, text=True)
            if r.returncode != 0:
                raise Failure(f"hyperfine: {r.stderr.strip().splitlines()[-1:]}")
            with open(out) as f:
                res = json.load(f)["results"]
            b, s = res[0]["median"] * 1e3, res[1]["median"] * 1e3
            return {"base_ms": b, "shim_ms": s, "added_ms": s - b}
        r = subprocess.run([self.loadgen, "startup", "--runs", str(self.startup_runs),
                            "--preload", self.shim, "--policy", pol, "--", "/bin/true"],
                           capture_output=True, timeout=300, text=True)
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "no output"
        try:
            return parse_result(line, "startup")
        except Failure as e:
            raise Failure(f"{e} {r.stderr.strip()}".strip())


def define_cases(quick):
    P, S = (1, 0), (0, 0)  # (server core, client core): pinned apart, same core
    cases = [
        dict(id="stream", title="stream 16 KiB writes", test="stream", proto="sink",
             model="thread", cores=P),
        dict(id="stream-samecore", title="stream, same core", test="stream", proto="sink",
             model="thread", cores=S),
        dict(id="rr1", title="rr 1 B", test="rr", size=1, proto="echo", model="thread",
             cores=P),
        dict(id="rr4k", title="rr 4 KiB", test="rr", size=4096, proto="echo",
             model="thread", cores=P),
        dict(id="rr1-samecore", title="rr 1 B, same core", test="rr", size=1, proto="echo",
             model="thread", cores=S),
        dict(id="rr4k-samecore", title="rr 4 KiB, same core", test="rr", size=4096,
             proto="echo", model="thread", cores=S),
        dict(id="crr-full-1", title="crr full handshakes, 1 thread", test="crr", threads=1,
             proto="crr", model="thread", cores=P, resumption=False),
        dict(id="crr-full-2", title="crr full handshakes, 2 threads", test="crr", threads=2,
             proto="crr", model="thread", cores=P, resumption=False),
        dict(id="crr-full-1-samecore", title="crr full handshakes, 1 thread, same core",
             test="crr", threads=1, proto="crr", model="thread", cores=S,
             resumption=False),
        dict(id="crr-res-1", title="crr resumed, 1 thread", test="crr", threads=1,
             proto="crr", model="thread", cores=P, resumption=True),
        dict(id="crr-res-2", title="crr resumed, 2 threads", test="crr", threads=2,
             proto="crr", model="thread", cores=P, resumption=True),
        dict(id="rr1-eplt", title="rr 1 B, epoll LT server", test="rr", size=1,
             proto="echo", model="epoll-lt", cores=P),
        dict(id="rr1-epet", title="rr 1 B, epoll ET server", test="rr", size=1,
             proto="echo", model="epoll-et", cores=P),
        dict(id="crr-full-1-eplt", title="crr full, epoll LT server", test="crr",
             threads=1, proto="crr", model="epoll-lt", cores=P, resumption=False),
        dict(id="crr-full-1-epet", title="crr full, epoll ET server", test="crr",
             threads=1, proto="crr", model="epoll-et", cores=P, resumption=False),
    ]
    for n in ([200] if quick else [1000, 10000]):
        cases.append(dict(id=f"idle-{n}", title=f"idle {n} connections", test="idle",
                          conns=n, threads=4, proto="echo", model="epoll-lt", cores=P))
    passthrough = [
        dict(id="pt-stream", title="stream 16 KiB writes", test="stream", proto="sink",
             model="thread", cores=P),
        dict(id="pt-rr1", title="rr 1 B", test="rr", size=1, proto="echo", model="thread",
             cores=P),
    ]
    return cases, passthrough


# ---- report ----

def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


class Report:
    def __init__(self, results, extra):
        self.r = results  # (case id, mode) -> list of dicts, or Failure/Skipped text
        self.extra = extra

    def med(self, cid, mode, metric):
        v = self.r.get((cid, mode))
        if v is None:
            return None
        if isinstance(v, str):
            return v
        if not v["ok"]:
            return f"FAILED: {v['fail'][0]}" if v["fail"] else None
        vals = [x[metric] for x in v["ok"] if metric in x]
        return statistics.median(vals) if vals else None

    def note(self, cid, mode):
        """' (k of n failed)' when some repetitions of a measurement failed."""
        v = self.r.get((cid, mode))
        if isinstance(v, dict) and v["ok"] and v["fail"]:
            return f" ({len(v['fail'])} of {len(v['ok']) + len(v['fail'])} failed)"
        return ""

    @staticmethod
    def num(v):
        return v if isinstance(v, (int, float)) else None

    def ratio(self, a, b):
        a, b = self.num(a), self.num(b)
        if a is None or b is None or b == 0:
            return None
        return a / b


def check(val, op, limit):
    if val is None:
        return "n/a"
    ok = val >= limit if op == ">=" else val <= limit
    return "yes" if ok else "**no**"


def cell(v):
    if isinstance(v, str):
        return v
    return fmt(v)


def build_report(b, cases, passthrough, results, ceiling, startup, started, elapsed):
    rep = Report(results, None)
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    stv = "not installed"
    if b.stunnel:
        r = subprocess.run([b.stunnel, "-version"], capture_output=True, text=True,
                           timeout=10)
        for line in (r.stdout + r.stderr).splitlines():
            if line.startswith("stunnel "):
                stv = line.strip()
                break
    a = b.args
    L = []
    L.append("# tlsshim benchmark results\n")
    L.append(f"Generated by `bench/run.sh {' '.join(sys.argv[1:])}` on {started} "
             f"in {elapsed:.0f} s.\n")
    L.append("## Machine and settings\n")
    L.append(f"- machine: {os.cpu_count()} CPUs (nproc), {cpu}, Linux {platform.release()}")
    L.append(f"- repetitions: {a.reps} (medians shown), interleaved plain, shim, stunnel "
             f"per measurement (passthrough: {1 if a.quick else 2} plain/passthrough pairs "
             f"per repetition); {b.secs:g} s per stream/rr/crr run")
    L.append("- pinning: server side (loadgen server, server-mode stunnel) on CPU 1, client "
             "side (loadgen client, client-mode stunnel) on CPU 0 (sched_setaffinity, as "
             "`taskset -c`); \"same core\" rows put both on CPU 0")
    L.append("- TLS: 1.3 only, X25519, ECDSA P-256 certificates made by openssl for this run; "
             "shim: BoringSSL default TLS 1.3 suite order (TLS_AES_128_GCM_SHA256 first on "
             "AES-NI); stunnel: ciphersuites TLS_AES_128_GCM_SHA256, curves X25519, "
             "TCP_NODELAY on both sides")
    L.append(f"- shim: `{b.shim}`; stunnel: {stv}")
    L.append("- loadgen: thread-per-connection server unless the row says epoll; "
             "MB/s = 10^6 bytes/s; latencies in µs; crr = connect, 64 B request, 64 B reply, "
             "server closes")
    L.append("- idle: epoll LT server; KiB per connection = VmRSS growth of server + client "
             "(+ both stunnels) / N after a 1-byte round trip on each connection\n")

    L.append("## TLS: plain vs shim vs stunnel\n")
    L.append("| benchmark | metric | plain | shim | stunnel | shim/plain | shim/stunnel | "
             "shim/ceiling | target | met |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    ceil_hs = ceiling.get("full_hs") if isinstance(ceiling, dict) else None

    def row(case, metric, label, target="", met=""):
        p = rep.med(case["id"], "plain", metric)
        s = rep.med(case["id"], "shim", metric)
        t = rep.med(case["id"], "stunnel", metric)
        ceil = None
        if metric == "cps" and isinstance(ceiling, dict):
            ceil = ceiling["resumed_hs" if case.get("resumption") else "full_hs"]
        sc = rep.ratio(s, ceil)
        cid = case["id"]
        L.append(f"| {case['title']} | {label} | {cell(p)}{rep.note(cid, 'plain')} | "
                 f"{cell(s)}{rep.note(cid, 'shim')} | {cell(t)}{rep.note(cid, 'stunnel')} | "
                 f"{fmt(rep.ratio(s, p))} | {fmt(rep.ratio(s, t))} | {fmt(sc)} | "
                 f"{target} | {met} |")

    byid = {c["id"]: c for c in cases}
    for c in cases:
        cid = c["id"]
        if c["test"] == "stream":
            if cid == "stream":
                s, p, t = (rep.num(rep.med(cid, m, "mbps")) for m in ("shim", "plain",
                                                                         "stunnel"))
                met = (f"{check(rep.ratio(s, p), '>=', 0.55)} / "
                       f"{check(rep.ratio(s, t), '>=', 2)}")
                row(c, "mbps", "MB/s", "≥ 0.55× plain / ≥ 2× stunnel", met)
            else:
                row(c, "mbps", "MB/s")
        elif c["test"] == "rr":
            row(c, "rtps", "round trips/s")
            if cid == "rr1":
                p50 = rep.ratio(rep.med(cid, "shim", "p50_us"), rep.med(cid, "plain", "p50_us"))
                p99 = rep.ratio(rep.med(cid, "shim", "p99_us"), rep.med(cid, "plain", "p99_us"))
                row(c, "p50_us", "p50 µs", "≤ 1.2× plain", check(p50, "<=", 1.2))
                row(c, "p99_us", "p99 µs", "≤ 2× plain", check(p99, "<=", 2))
            else:
                row(c, "p50_us", "p50 µs")
                row(c, "p99_us", "p99 µs")
        elif c["test"] == "crr":
            if cid == "crr-full-1":
                s = rep.num(rep.med(cid, "shim", "cps"))
                t = rep.num(rep.med(cid, "stunnel", "cps"))
                met = (f"{check(rep.ratio(s, ceil_hs), '>=', 0.6)} / "
                       f"{check(rep.ratio(s, t), '>=', 4)}")
                row(c, "cps", "conn/s", "≥ 0.6× ceiling / ≥ 4× stunnel", met)
            elif cid.startswith("crr-res-"):
                full = byid["crr-full-" + cid[-1]]["id"]
                rr = rep.ratio(rep.med(cid, "shim", "cps"), rep.med(full, "shim", "cps"))
                row(c, "cps", "conn/s",
                    f"≥ 2× full (shim: {fmt(rr)}×)", check(rr, ">=", 2))
            else:
                row(c, "cps", "conn/s")
        elif c["test"] == "idle":
            s = rep.num(rep.med(cid, "shim", "kib_per_conn"))
            if c["conns"] >= 10000:
                row(c, "kib_per_conn", "KiB/conn (srv+cli)", "≤ 32 KiB",
                    check(s, "<=", 32))
            else:
                row(c, "kib_per_conn", "KiB/conn (srv+cli)")
            row(c, "server_kib_per_conn", "server KiB/conn")
            row(c, "open_secs", "s to open all")

    # What a TLS sender can reach at best: plain's work per 16 KiB plus one
    # seal (taken as half of the ceiling's seal+open time per record).
    p = rep.num(rep.med("stream", "plain", "mbps"))
    if isinstance(ceiling, dict) and p and ceiling.get("records"):
        seal_us = 0.5e6 / ceiling["records"]
        plain_us = 16384 / p
        bound = 16384 / (plain_us + seal_us)
        L.append(f"\nStream bound on this machine (estimate): a sender that does plain's "
                 f"work ({plain_us:.2f} µs per 16 KiB) plus one seal ({seal_us:.2f} µs, "
                 f"half the ceiling's seal+open) reaches {fmt(bound)} MB/s = "
                 f"{fmt(bound / p)}× plain; the sender is the busier side.")

    L.append("\n## BoringSSL ceiling (in memory, one thread)\n")
    if isinstance(ceiling, dict):
        L.append("| full handshakes/s | resumed handshakes/s | 16 KiB records sealed+opened/s "
                 "| MB/s |")
        L.append("|---:|---:|---:|---:|")
        L.append(f"| {fmt(ceiling['full_hs'])} | {fmt(ceiling['resumed_hs'])} | "
                 f"{fmt(ceiling['records'])} | {fmt(ceiling['record_mbps'])} |")
    else:
        L.append(ceiling if ceiling == "not run" else f"FAILED: {ceiling}")

    L.append("\n## Passthrough: sockets no rule selects (policy with no matching rule)\n")
    L.append("| benchmark | metric | plain | shim preloaded | ratio | target | met |")
    L.append("|---|---|---:|---:|---:|---|---|")
    for c in passthrough:
        metrics = [("mbps", "MB/s", True)] if c["test"] == "stream" else [
            ("rtps", "round trips/s", True), ("p50_us", "p50 µs", False),
            ("p99_us", "p99 µs", False)]
        for m, label, main in metrics:
            p = rep.med(c["id"], "plain", m)
            s = rep.med(c["id"], "passthrough", m)
            r = rep.ratio(s, p)
            if main:
                # A cost is a ratio below 1; above 1 is the noise of the
                # machine (the same code paths run either way).
                met = "n/a" if r is None else ("yes" if r >= 0.98 else "**no**")
                L.append(f"| {c['title']} | {label} | {cell(p)} | {cell(s)} | {fmt(r)} | "
                         f"costs ≤ 2% | {met} |")
            else:
                L.append(f"| {c['title']} | {label} | {cell(p)} | {cell(s)} | {fmt(r)} | | |")

    L.append("\n## Startup: `/bin/true` with a 20-rule policy\n")
    how = "hyperfine" if shutil.which("hyperfine") else f"own loop, {b.startup_runs} runs each, interleaved"
    if isinstance(startup, list) and startup:
        med = {k: statistics.median(x[k] for x in startup) for k in ("base_ms", "shim_ms",
                                                                     "added_ms")}
        L.append(f"| without shim ms | with shim ms | added ms | target | met |")
        L.append("|---:|---:|---:|---|---|")
        L.append(f"| {med['base_ms']:.3f} | {med['shim_ms']:.3f} | {med['added_ms']:.3f} | "
                 f"≤ 10 ms | {check(med['added_ms'], '<=', 10)} |")
        L.append(f"\nMeasured with {how}; medians.")
    else:
        L.append(startup if startup == "not run" else f"FAILED: {startup}")

    fails = [f"- {cid} / {mode}: {len(v['fail'])} of {len(v['ok']) + len(v['fail'])} "
             f"repetitions FAILED: " + "; ".join(dict.fromkeys(v["fail"]))
             for (cid, mode), v in results.items() if isinstance(v, dict) and v["fail"]]
    if not isinstance(startup, list) and startup != "not run":
        fails.append(f"- startup: {startup}")
    if not isinstance(ceiling, dict) and ceiling != "not run":
        fails.append(f"- ceiling: {ceiling}")
    if fails:
        L.append("\n## Failures\n")
        L.extend(fails)
    L.append("\nTargets are reported, never asserted.")
    return "\n".join(L) + "\n", fails


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--shim-lib", help="default: BUILD_DIR/lib/libtlsshim.so")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="1 rep, 0.3 s runs, idle at 200 connections only")
    ap.add_argument("--seconds", type=float, help="seconds per stream/rr/crr run")
    ap.add_argument("--modes", default="plain,shim,stunnel",
                    help="comma list of plain,shim,stunnel (default all)")
    ap.add_argument("--only", help="comma list of groups: tls,passthrough,startup,ceiling")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--allow-failures", action="store_true",
                    help="exit 0 even if a measurement failed")
    args = ap.parse_args()
    if args.quick and "--reps" not in sys.argv:
        args.reps = 1
    if args.reps < 1:
        ap.error("--reps must be at least 1")

    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)

    b = Bench(args)
    for exe in (b.loadgen, b.ceiling):
        if not os.access(exe, os.X_OK):
            print(f"bench: {exe} not found: build the loadgen and ceiling targets first",
                  file=sys.stderr)
            return 2
    groups = set((args.only or "tls,passthrough,startup,ceiling").split(","))
    modes = [m for m in args.modes.split(",") if m]
    cases, passthrough = define_cases(args.quick)
    results = {}
    ceiling_runs, startup_runs = [], []
    ceiling_err = startup_err = "not run"
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    t0 = time.monotonic()
    try:
        b.make_certs()
        for rep in range(args.reps):
            print(f"bench: repetition {rep + 1}/{args.reps}", file=sys.stderr)
            if "ceiling" in groups:
                try:
                    ceiling_runs.append(b.run_ceiling())
                except (Failure, subprocess.TimeoutExpired) as e:
                    ceiling_err = f"FAILED: {e}"
            todo = []
            if "tls" in groups:
                todo += [(c, modes) for c in cases]
            if "passthrough" in groups:
                pt_modes = [m for m in ("plain", "passthrough")
                            if m == "plain" or "shim" in modes]
                # Its target (2%) is inside the machine's run-to-run noise
                # (about 3%): twice the samples, still interleaved.
                todo += [(c, pt_modes) for c in passthrough] * (1 if args.quick else 2)
            for case, case_modes in todo:
                for mode in case_modes:
                    key = (case["id"], mode)
                    if isinstance(results.get(key), str):
                        continue  # does not apply
                    slot = results.setdefault(key, {"ok": [], "fail": []})
                    try:
                        res = b.run_case(case, mode)
                        slot["ok"].append(res)
                        print(f"bench:   {case['id']:<18} {mode:<11} "
                              + " ".join(f"{k}={fmt(v)}" for k, v in res.items()),
                              file=sys.stderr)
                    except Failure as e:
                        slot["fail"].append(str(e))
                        print(f"bench:   {case['id']:<18} {mode:<11} FAILED: {e}",
                              file=sys.stderr)
                    except Skipped as e:
                        results[key] = f"n/a ({e})"
            if "startup" in groups and "shim" in modes:
                try:
                    startup_runs.append(b.run_startup())
                except (Failure, subprocess.TimeoutExpired) as e:
                    startup_err = f"FAILED: {e}"
    finally:
        cleanup()
        shutil.rmtree(b.work, ignore_errors=True)

    ceiling = ({k: statistics.median(x[k] for x in ceiling_runs) for k in ceiling_runs[0]}
               if ceiling_runs else ceiling_err)
    startup = startup_runs if startup_runs else startup_err
    text, fails = build_report(b, cases if "tls" in groups else [],
                               passthrough if "passthrough" in groups else [],
                               results, ceiling, startup, started, time.monotonic() - t0)
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"bench: wrote {args.out}", file=sys.stderr)
    if fails and not args.allow_failures:
        print(f"bench: {len(fails)} measurement(s) FAILED (see the table); "
              "--allow-failures exits 0 anyway", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
