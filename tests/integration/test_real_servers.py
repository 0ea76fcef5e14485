"""test_real_servers.py: real, unmodified Debian server programs under the
shim, serving TLS to native TLS clients (inbound rules) and, where they
make outbound connections, speaking TLS as clients (outbound rules):

  nginx     master + 2 workers, epoll (edge-triggered), accept4, sendfile on
            and off, writev, keep-alive, HTTP pipelining, a slow reader,
            client_auth required/optional, reverse proxy to a plaintext
            upstream and to TLS upstreams (openssl s_server, and itself);
  redis     redis-cli --tls and redis-benchmark --tls against the shim,
            redis-cli under the shim (mutual TLS), --pipe, SUBSCRIBE and
            PUBLISH, a replica under the shim syncing from its master;
  memcached -t 4 (libevent), the text protocol through openssl s_client and
            Python's ssl from many connections at once.

Bodies and values are checked by SHA-256, the shim's log by its
`established` events and rule names, the servers' descriptor counts before
and after the load, and their clean exit on SIGQUIT/SIGTERM.

The programs come from Debian packages (nginx-light or nginx, redis-server,
redis-tools, memcached, curl, openssl); a missing one fails the test with a
message to run scripts/setup.sh."""

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLIENT_ID = "spiffe://test/ns/default/sa/client"
SERVER_ID = "spiffe://test/ns/default/sa/server"
TIMEOUT = 20
BIG = 5 << 20  # the large static file


def find_program(name):
    return harness.find_program(name, "nginx, redis-server, redis-tools, memcached, "
                                "curl and openssl")


def listening(port):
    """Whether something listens on TCP |port| (from /proc/net/tcp{,6}),
    so that readiness is checked without opening a connection."""
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            pass
    return False


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def sha(b):
    return hashlib.sha256(b).hexdigest()


@harness.skip_if_plain("the servers' TLS is the shim's")
class RealServers(harness.ShimTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Servers started as root drop to an unprivileged user (nginx workers,
        # memcached -u): let it reach the documents and the policies.
        os.chmod(cls._class_tmp, 0o755)
        os.chmod(cls.certs, 0o755)

    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)

    # ---- helpers ----

    def start_listening(self, argv, port, policy, name, env=None, cwd=None):
        b = self.spawn(argv, policy=policy, name=name, env=env, cwd=cwd)

        def up():
            if not b.alive():
                raise AssertionError("%s exited before it listened on %d\n%s"
                                     % (name, port, b.describe()))
            return listening(port)
        try:
            harness.wait_for(up, 15.0, "%s to listen on 127.0.0.1:%d" % (name, port))
        except AssertionError as e:
            if "exited before" in str(e):
                raise
            raise AssertionError("%s\n%s" % (e, b.describe()))
        return b

    def assert_exits_cleanly(self, b, sig, what, timeout=10.0):
        b.proc.send_signal(sig)
        try:
            rc = b.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %.0f s of %s\n%s"
                                 % (what, timeout, sig.name, b.describe()))
        self.assertEqual(rc, 0, "%s exited with status %s after %s\n%s"
                         % (what, rc, sig.name, b.describe()))
        for word in ("Segmentation", "AddressSanitizer", "core dumped", "tlsshim:"):
            self.assertNotIn(word, b.stderr(), b.describe())

    def tls_context(self, cert=False):
        ctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        if cert:
            ctx.load_cert_chain(self.cert("client.pem"), self.cert("client.key"))
        return ctx

    def wait_fds(self, pids, baseline, what):
        """Waits until every pid's descriptor count is back to |baseline|."""
        def back():
            return all(self.fd_count(p) <= baseline[p] for p in pids)
        try:
            harness.wait_for(back, 10.0, "the descriptors of %s to return to %r"
                             % (what, baseline))
        except AssertionError as e:
            raise AssertionError("%s; now %r" % (e, {p: self.fd_count(p) for p in pids}))

    def s_client_text(self, port, request, args=()):
        """openssl s_client (not under the shim) to |port|: sends |request|
        and returns its stdout once the server has closed the connection."""
        argv = [find_program("openssl"), "s_client", "-connect", "127.0.0.1:%d" % port,
                "-CAfile", self.cert("ca.pem"), "-verify_return_error", "-servername",
                "localhost", "-ign_eof"] + list(args)
        return self.run_plain(argv, stdin_data=request, timeout=TIMEOUT,
                              what="openssl s_client to port %d" % port)

    # ---- nginx ----

    def nginx_docroot(self):
        d = os.path.join(self.tmp, "www")
        os.makedirs(d, exist_ok=True)
        self.big = os.urandom(BIG)
        self.small = b"tlsshim small page\n"
        with open(os.path.join(d, "big.bin"), "wb") as f:
            f.write(self.big)
        with open(os.path.join(d, "small.txt"), "wb") as f:
            f.write(self.small)
        os.chmod(d, 0o755)
        return d

    def start_nginx(self, servers, policy, workers=2):
        """nginx in the foreground (master + |workers| workers, epoll) with one
        `server` block per (port, body) in |servers|; returns (bg, pid)."""
        find_program("nginx")
        root = os.path.join(self.tmp, "nginx")
        for sub in ("logs", "tmp"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        os.chmod(root, 0o755)
        os.chmod(os.path.join(root, "tmp"), 0o777)
        blocks = "\n".join("  server { listen 127.0.0.1:%d; %s }" % (p, body)
                           for p, body in servers)
        conf = """daemon off;
master_process on;
worker_processes %d;
pid %s/nginx.pid;
error_log %s/logs/error.log info;
events { use epoll; worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s/tmp/body;
  proxy_temp_path %s/tmp/proxy;
  fastcgi_temp_path %s/tmp/fcgi;
  uwsgi_temp_path %s/tmp/uwsgi;
  scgi_temp_path %s/tmp/scgi;
  keepalive_timeout 30;
  keepalive_requests 10000;
  proxy_read_timeout 15s;
%s
}
""" % ((workers,) + (root,) * 7 + (blocks,))
        path = os.path.join(root, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        argv = [find_program("nginx"), "-p", root, "-c", path]
        b = self.spawn(argv, policy=policy, name="nginx")

        def up():
            if not b.alive():
                raise AssertionError("nginx exited before it was ready\n%s\nerror.log:\n%s"
                                     % (b.describe(), harness.read_file(
                                         os.path.join(root, "logs", "error.log"))))
            return (all(listening(p) for p, _ in servers)
                    and len(children(b.proc.pid)) == workers)
        try:
            harness.wait_for(up, 15.0, "nginx to listen on %s with %d workers"
                             % ([p for p, _ in servers], workers))
        except AssertionError as e:
            if "exited before" in str(e):
                raise
            raise AssertionError("%s\n%s" % (e, b.describe()))
        self.nginx_error_log = os.path.join(root, "logs", "error.log")
        return b

    def curl(self, args, timeout=TIMEOUT):
        argv = [find_program("curl"), "-sS", "--fail", "--max-time", str(timeout),
                "--cacert", self.cert("ca.pem")] + list(args)
        return self.run_plain(argv, timeout=timeout + 5, what="curl " + " ".join(args[-2:]))

    def curl_body(self, url, timeout=TIMEOUT):
        argv = [find_program("curl"), "-sS", "--fail", "--max-time", str(timeout),
                "--cacert", self.cert("ca.pem"), url]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout + 5)
        self.assertEqual(p.returncode, 0, "curl %s failed: %s" % (url, p.stderr.decode()))
        return p.stdout

    def nginx_static_policy(self, ports, client_auth="none", extra_rules=()):
        return self.policy([self.in_rule("web-in", ports=ports, addresses=["127.0.0.1"],
                                         client_auth=client_auth)] + list(extra_rules))

    def test_nginx_static_sendfile_keepalive_parallel(self):
        docroot = self.nginx_docroot()
        on, off = harness.free_port(), harness.free_port()
        pol = self.nginx_static_policy([on, off])
        ng = self.start_nginx([(on, "root %s; sendfile on; tcp_nopush on;" % docroot),
                               (off, "root %s; sendfile off;" % docroot)], pol)
        for port in (on, off):
            self.assertEqual(sha(self.curl_body("https://localhost:%d/big.bin" % port)),
                             sha(self.big), "big.bin through port %d" % port)
            self.assertEqual(self.curl_body("https://localhost:%d/small.txt" % port),
                             self.small)
        ev = self.assert_log_event(ng.log(), "established", direction="inbound",
                                   rule="web-in", local="127.0.0.1:%d" % on)
        self.assertEqual(ev.get("version"), "TLSv1.3", ev)
        self.assert_log_event(ng.log(), "established", rule="web-in",
                              local="127.0.0.1:%d" % off)

        # Keep-alive: eight requests on one connection, every body intact.
        urls = []
        outs = []
        for i in range(4):
            for name in ("big.bin", "small.txt"):
                urls.append("https://localhost:%d/%s" % (on, name))
                outs += ["-o", os.path.join(self.tmp, "ka%d-%s" % (i, name))]
        r = self.curl(["-w", "connects=%{num_connects}\\n"] + outs + urls)
        self.assertEqual(r.returncode, 0, r.describe())
        connects = [int(l.split("=")[1]) for l in r.stdout.splitlines()
                    if l.startswith("connects=")]
        self.assertEqual(sum(connects), 1, "keep-alive: expected one connection for %d "
                         "requests\n%s" % (len(urls), r.describe()))
        for i in range(4):
            with open(os.path.join(self.tmp, "ka%d-big.bin" % i), "rb") as f:
                self.assertEqual(sha(f.read()), sha(self.big), "keep-alive request %d" % i)

        # Many connections at once, then the workers' descriptors are back.
        workers = children(ng.proc.pid)
        pids = [ng.proc.pid] + workers
        base = {p: self.fd_count(p) for p in pids}
        cfg = os.path.join(self.tmp, "parallel.cfg")
        with open(cfg, "w") as f:
            for i in range(80):
                port = on if i % 2 else off
                name = "big.bin" if i % 8 == 0 else "small.txt"
                f.write('url = "https://localhost:%d/%s"\noutput = "%s/par%d-%s"\n'
                        % (port, name, self.tmp, i, name))
        r = self.curl(["--parallel", "--parallel-max", "40", "--parallel-immediate",
                       "-K", cfg], timeout=40)
        self.assertEqual(r.returncode, 0, r.describe())
        for i in range(80):
            name = "big.bin" if i % 8 == 0 else "small.txt"
            with open(os.path.join(self.tmp, "par%d-%s" % (i, name)), "rb") as f:
                want = self.big if name == "big.bin" else self.small
                self.assertEqual(sha(f.read()), sha(want), "parallel request %d" % i)
        pids_logged = {e.get("pid") for e in self.log_events(ng.log())
                       if e.get("event") == "established"}
        self.assertTrue(pids_logged <= set(workers), (pids_logged, workers))
        self.wait_fds(pids, base, "nginx (master and workers)")
        self.assertNotIn("failed", [e.get("event") for e in self.log_events(ng.log())],
                         ng.log()[-3000:])
        self.assert_exits_cleanly(ng, signal.SIGQUIT, "nginx (graceful shutdown)")

    def test_nginx_openssl_s_client_tls12_tls13(self):
        docroot = self.nginx_docroot()
        port = harness.free_port()
        ng = self.start_nginx([(port, "root %s;" % docroot)], self.nginx_static_policy([port]))
        req = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            r = self.s_client_text(port, req, [flag])
            self.assertIn("HTTP/1.1 200 OK", r.stdout, r.describe() + ng.describe())
            self.assertIn(self.small.decode(), r.stdout, r.describe())
            self.assertIn("Verify return code: 0 (ok)", r.stdout, r.describe())
            self.assert_log_event(ng.log(), "established", rule="web-in", version=version)
        self.assert_exits_cleanly(ng, signal.SIGTERM, "nginx (fast shutdown)")

    def test_nginx_client_auth_required_and_optional(self):
        docroot = self.nginx_docroot()
        req_port, opt_port = harness.free_port(), harness.free_port()
        pol = self.policy([
            self.in_rule("mtls-required", ports=[req_port], client_auth="required",
                         peer_names=[CLIENT_ID]),
            self.in_rule("mtls-optional", ports=[opt_port], client_auth="optional")])
        ng = self.start_nginx([(req_port, "root %s;" % docroot),
                               (opt_port, "root %s;" % docroot)], pol)
        req = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        with_cert = ["-cert", self.cert("client.pem"), "-key", self.cert("client.key")]
        for port, rule in ((req_port, "mtls-required"), (opt_port, "mtls-optional")):
            for flag in ("-tls1_2", "-tls1_3"):
                r = self.s_client_text(port, req, [flag] + with_cert)
                self.assertIn(self.small.decode(), r.stdout, r.describe() + ng.describe())
                self.assert_log_event(ng.log(), "established", rule=rule,
                                      peer_identity=CLIENT_ID)
        r = self.s_client_text(opt_port, req, ["-tls1_3"])
        self.assertIn(self.small.decode(), r.stdout, r.describe() + ng.describe())
        for flag in ("-tls1_2", "-tls1_3"):
            r = self.s_client_text(req_port, req, [flag])
            self.assertNotIn("HTTP/1.1 200", r.stdout, r.describe())
        self.assert_log_event(ng.log(), "failed", rule="mtls-required")
        # A client certificate from another CA is refused even when optional.
        r = self.s_client_text(opt_port, req, ["-cert", self.cert("wrongca.pem"), "-key",
                                               self.cert("wrongca.key")])
        self.assertNotIn("HTTP/1.1 200", r.stdout, r.describe())
        self.assert_log_event(ng.log(), "failed", rule="mtls-optional")
        self.assert_exits_cleanly(ng, signal.SIGQUIT, "nginx")

    def test_nginx_slow_reader(self):
        docroot = self.nginx_docroot()
        port = harness.free_port()
        ng = self.start_nginx([(port, "root %s; sendfile on;" % docroot)],
                              self.nginx_static_policy([port]), workers=1)
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(TIMEOUT)
        raw.connect(("127.0.0.1", port))
        s = self.tls_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = bytearray()
        deadline = time.monotonic() + 30
        while True:
            self.assertLess(time.monotonic(), deadline, "slow reader: the whole body "
                            "within 30 s (got %d bytes)" % len(buf))
            d = s.recv(4096)
            if not d:
                break
            buf += d
            if len(buf) < (1 << 20):
                time.sleep(0.0005)  # a slow reader, not a synchronisation
        s.close()
        head, body = bytes(buf).split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertEqual(len(body), BIG)
        self.assertEqual(sha(body), sha(self.big))

    def test_nginx_pipelined_requests(self):
        # Several requests, each in its own TLS record, reach the server in
        # one TCP read: the shim decrypts one record per recv() and an
        # edge-triggered epoll raises no new edge for the records it holds,
        # so nginx (which stops at a short read) would never see them.
        docroot = self.nginx_docroot()
        port = harness.free_port()
        ng = self.start_nginx([(port, "root %s;" % docroot)],
                              self.nginx_static_policy([port]), workers=1)
        for n in (2, 10):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            s = self.tls_context().wrap_socket(raw, server_hostname="localhost")
            for i in range(n):
                last = i == n - 1
                s.write(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n%s\r\n"
                        % (b"Connection: close\r\n" if last else b""))
            buf = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    buf += d
            except socket.timeout:
                pass
            s.close()
            self.assertEqual(buf.count(b"HTTP/1.1 200 OK"), n,
                             "%d pipelined requests (one TLS record each): %d answered "
                             "within 10 s\n%s\n%s" % (n, buf.count(b"HTTP/1.1 200 OK"),
                                                      buf[-500:], ng.describe()))
            self.assertEqual(buf.count(self.small), n)

    def test_nginx_proxy_to_plaintext_upstream(self):
        docroot = self.nginx_docroot()
        front, up = harness.free_port(), harness.free_port()
        pol = self.nginx_static_policy([front])  # |up| matches no rule: plaintext
        ng = self.start_nginx([(front, "location / { proxy_pass http://127.0.0.1:%d; }" % up),
                               (up, "root %s;" % docroot)], pol)
        self.assertEqual(sha(self.curl_body("https://localhost:%d/big.bin" % front)),
                         sha(self.big))
        self.assertEqual(self.curl_body("https://localhost:%d/small.txt" % front), self.small)
        # The upstream really is plaintext.
        p = subprocess.run([find_program("curl"), "-sS", "--max-time", "10",
                            "http://127.0.0.1:%d/small.txt" % up], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=15)
        self.assertEqual(p.stdout, self.small, p.stderr)
        evs = [e for e in self.log_events(ng.log()) if e.get("event") == "established"]
        self.assertTrue(evs and all(e.get("rule") == "web-in" for e in evs), ng.log())

    def test_nginx_proxy_to_tls_upstream_s_server(self):
        # s_server -WWW answers HTTP/1.0 without Content-Length, sends its
        # close_notify right behind the body and keeps the TCP connection
        # open (waiting for ours): the end of the body is the close_notify,
        # already read by the shim together with the body.
        docroot = self.nginx_docroot()
        srv, up = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                       self.cert("server.key"), "-WWW", "-Verify", "1",
                                       "-CAfile", self.cert("ca.pem"),
                                       "-verify_return_error"], cwd=docroot)
        front = harness.free_port()
        pol = self.nginx_static_policy([front], extra_rules=[
            self.out_rule("upstream-tls", ports=[up], identity="client",
                          peer_names=[SERVER_ID])])
        ng = self.start_nginx([(front, "location / { proxy_pass http://127.0.0.1:%d; }" % up)],
                              pol, workers=1)
        for name, want in (("small.txt", self.small), ("big.bin", self.big)):
            argv = [find_program("curl"), "-sS", "--max-time", "10", "--cacert",
                    self.cert("ca.pem"), "https://localhost:%d/%s" % (front, name)]
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=15)
            self.assertEqual(p.returncode, 0, "curl %s through nginx to s_server: %s\n%s"
                             % (name, p.stderr.decode(), ng.describe()))
            self.assertEqual(sha(p.stdout), sha(want), "%s through nginx to s_server" % name)
        self.assert_log_event(ng.log(), "established", direction="outbound",
                              rule="upstream-tls", peer_identity=SERVER_ID)

    def test_nginx_proxy_to_itself_over_tls(self):
        # One nginx, both directions: the front (inbound rule) proxies to
        # its own upstream port through an outbound rule, and that port is
        # itself TLS (inbound rule, client certificate required).
        docroot = self.nginx_docroot()
        front, up = harness.free_port(), harness.free_port()
        pol = self.policy([
            self.in_rule("front", ports=[front], addresses=["127.0.0.1"], client_auth="none"),
            self.in_rule("upstream-in", ports=[up], addresses=["127.0.0.1"],
                         client_auth="required", peer_names=[CLIENT_ID]),
            self.out_rule("upstream-out", ports=[up], identity="client",
                          peer_names=[SERVER_ID])])
        ng = self.start_nginx([(front, "location / { proxy_pass http://127.0.0.1:%d; }" % up),
                               (up, "root %s;" % docroot)], pol)
        for _ in range(3):
            self.assertEqual(sha(self.curl_body("https://localhost:%d/big.bin" % front)),
                             sha(self.big))
            self.assertEqual(self.curl_body("https://localhost:%d/small.txt" % front),
                             self.small)
        self.assert_log_event(ng.log(), "established", direction="outbound",
                              rule="upstream-out", peer_identity=SERVER_ID)
        self.assert_log_event(ng.log(), "established", direction="inbound",
                              rule="upstream-in", peer_identity=CLIENT_ID)
        self.assert_exits_cleanly(ng, signal.SIGQUIT, "nginx")

    # ---- redis ----

    def start_redis(self, port, policy, extra=(), name="redis-server"):
        d = os.path.join(self.tmp, "redis-%d" % port)
        os.makedirs(d, exist_ok=True)
        argv = [find_program("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", d, "--daemonize", "no",
                "--protected-mode", "no"] + list(extra)
        b = self.spawn(argv, policy=policy, name=name)

        def ready():
            if not b.alive():
                raise AssertionError("%s exited before it was ready\n%s" % (name, b.describe()))
            return "Ready to accept connections" in b.stdout()
        try:
            harness.wait_for(ready, 15.0, "%s to print 'Ready to accept connections'" % name)
        except AssertionError as e:
            if "exited before" in str(e):
                raise
            raise AssertionError("%s\n%s" % (e, b.describe()))
        return b

    def redis_cli_tls(self, port, args, cert=False, stdin_data=None, timeout=TIMEOUT):
        argv = [find_program("redis-cli"), "--tls", "--cacert", self.cert("ca.pem"),
                "-p", str(port)]
        if cert:
            argv += ["--cert", self.cert("client.pem"), "--key", self.cert("client.key")]
        return self.run_plain(argv + list(args), stdin_data=stdin_data, timeout=timeout,
                              what="redis-cli --tls %s" % " ".join(args[:2]))

    def test_redis_native_tls_clients(self):
        port = harness.free_port()
        pol = self.policy([self.in_rule("redis-in", ports=[port], client_auth="optional")])
        rs = self.start_redis(port, pol)
        value = os.urandom(786432).hex()[:1 << 20].encode()  # 1 MiB of text
        r = self.redis_cli_tls(port, ["-x", "set", "big"], stdin_data=value)
        self.assertEqual(r.stdout.strip(), "OK", r.describe() + rs.describe())
        r = self.redis_cli_tls(port, ["--raw", "get", "big"], cert=True)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(sha(r.stdout.encode()[:-1]), sha(value), "GET of the 1 MiB value")
        self.assert_log_event(rs.log(), "established", direction="inbound", rule="redis-in",
                              peer_identity=CLIENT_ID)
        base = {rs.proc.pid: self.fd_count(rs.proc.pid)}
        r = self.run_plain([find_program("redis-benchmark"), "--tls", "--cacert",
                            self.cert("ca.pem"), "-p", str(port), "-n", "10000", "-c", "20",
                            "-t", "set,get", "-q"], timeout=40, what="redis-benchmark --tls")
        self.assertEqual(r.returncode, 0, r.describe() + rs.describe())
        done = [l for l in r.stdout.replace("\r", "\n").splitlines()
                if "requests per second" in l]
        self.assertEqual(len(done), 2, r.describe())
        self.wait_fds([rs.proc.pid], base, "redis-server")
        self.assertNotIn("failed", [e.get("event") for e in self.log_events(rs.log())],
                         rs.log()[-3000:])
        self.assert_exits_cleanly(rs, signal.SIGTERM, "redis-server")

    def redis_policy(self, port):
        return self.policy([
            self.in_rule("redis-in", ports=[port], client_auth="required",
                         peer_names=[CLIENT_ID]),
            self.out_rule("redis-out", ports=[port], identity="client",
                          peer_names=[SERVER_ID])])

    def test_redis_cli_under_shim_pipe_and_pubsub(self):
        port = harness.free_port()
        pol = self.write_policy(self.redis_policy(port))
        rs = self.start_redis(port, pol)
        cli = find_program("redis-cli")
        value = os.urandom(786432).hex()[:1 << 20].encode()
        r = self.run_under_shim([cli, "-p", str(port), "-x", "set", "big"], pol,
                                stdin_data=value, timeout=TIMEOUT, what="redis-cli set")
        self.assertEqual(r.stdout.strip(), "OK", r.describe() + rs.describe())
        self.assert_log_event(r.log, "established", direction="outbound", rule="redis-out",
                              peer_identity=SERVER_ID)
        r = self.run_under_shim([cli, "-p", str(port), "--raw", "get", "big"], pol,
                                timeout=TIMEOUT, what="redis-cli get")
        self.assertEqual(sha(r.stdout.encode()[:-1]), sha(value), r.describe()[:3000])

        # --pipe: 20,000 commands in one stream.
        cmds = []
        for i in range(20000):
            k, v = b"k%d" % i, b"v%d" % i
            cmds.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
        r = self.run_under_shim([cli, "-p", str(port), "--pipe"], pol,
                                stdin_data=b"".join(cmds), timeout=30, what="redis-cli --pipe")
        self.assertIn("errors: 0, replies: 20000", r.stdout, r.describe())
        r = self.redis_cli_tls(port, ["get", "k19999"], cert=True)
        self.assertEqual(r.stdout.strip(), "v19999", r.describe())

        # SUBSCRIBE (under the shim, and a native client) and PUBLISH.
        subs = [self.spawn([cli, "-p", str(port), "subscribe", "chan"], policy=pol,
                           name="redis-cli-subscribe"),
                self.spawn([cli, "--tls", "--cacert", self.cert("ca.pem"), "--cert",
                            self.cert("client.pem"), "--key", self.cert("client.key"), "-p",
                            str(port), "subscribe", "chan"], name="redis-cli-tls-subscribe")]
        for s in subs:
            harness.wait_for(lambda: "subscribe\nchan\n1" in s.stdout() or not s.alive(),
                             TIMEOUT, "%s to confirm its subscription" % s.name)
            self.assertIn("subscribe\nchan\n1", s.stdout(), s.describe())
        big_msg = value[:100000].decode()  # an argument is at most 128 KiB
        for msg in ("hello-1", big_msg):
            r = self.run_under_shim([cli, "-p", str(port), "publish", "chan", msg], pol,
                                    timeout=TIMEOUT, what="redis-cli publish")
            self.assertEqual(r.stdout.strip(), "2", r.describe()[:3000])
        for s in subs:
            harness.wait_for(lambda: big_msg in s.stdout() or not s.alive(), TIMEOUT,
                             "%s to print the published messages" % s.name)
            self.assertIn("message\nchan\nhello-1\n", s.stdout(), s.describe()[:3000])
            self.assertIn(big_msg, s.stdout())
        self.assert_exits_cleanly(rs, signal.SIGTERM, "redis-server")

    def test_redis_replica_under_shim(self):
        # The replica connects to its master (non-blocking connect, then the
        # RDB stream) through an outbound rule; the master forks to save.
        mport, rport = harness.free_port(), harness.free_port()
        pol = self.write_policy(self.redis_policy(mport))
        master = self.start_redis(mport, pol, ["--repl-diskless-sync", "no"],
                                  name="redis-master")
        value = os.urandom(300000).hex().encode()
        r = self.redis_cli_tls(mport, ["-x", "set", "big"], cert=True, stdin_data=value)
        self.assertEqual(r.stdout.strip(), "OK", r.describe())
        replica = self.start_redis(rport, pol, ["--replicaof", "127.0.0.1", str(mport)],
                                   name="redis-replica")
        harness.wait_for(lambda: "sync: Finished with success" in replica.stdout()
                         or not replica.alive(), 30,
                         "the replica to finish its sync from the master over TLS")
        self.assertIn("sync: Finished with success", replica.stdout(), replica.describe())
        self.assert_log_event(replica.log(), "established", direction="outbound",
                              rule="redis-out", peer_identity=SERVER_ID)
        cli = find_program("redis-cli")
        r = self.run_plain([cli, "-p", str(rport), "--raw", "get", "big"], timeout=TIMEOUT)
        self.assertEqual(sha(r.stdout.encode()[:-1]), sha(value), "the replica's copy")
        # A write on the master reaches the replica through the open stream.
        r = self.redis_cli_tls(mport, ["set", "live", "42"], cert=True)
        self.assertEqual(r.stdout.strip(), "OK", r.describe())

        def replicated():
            p = self.run_plain([cli, "-p", str(rport), "get", "live"], timeout=TIMEOUT)
            return p.stdout.strip() == "42"
        harness.wait_for(replicated, 10, "the replica to show the master's new key")
        self.assert_exits_cleanly(replica, signal.SIGTERM, "redis-server (replica)")
        self.assert_exits_cleanly(master, signal.SIGTERM, "redis-server (master)")

    # ---- memcached ----

    def start_memcached(self, port, policy):
        argv = [find_program("memcached"), "-l", "127.0.0.1", "-p", str(port), "-U", "0",
                "-t", "4", "-m", "64", "-c", "1024"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        return self.start_listening(argv, port, policy, "memcached")

    def test_memcached_text_protocol_many_connections(self):
        port = harness.free_port()
        pol = self.policy([self.in_rule("mc-in", ports=[port], client_auth="none")])
        mc = self.start_memcached(port, pol)
        for flag in ("-tls1_2", "-tls1_3"):
            r = self.s_client_text(port, b"set foo 0 0 5\r\nhello\r\nget foo\r\nquit\r\n",
                                   [flag, "-quiet"])
            self.assertIn("STORED\r\nVALUE foo 0 5\r\nhello\r\nEND\r\n", r.stdout,
                          r.describe() + mc.describe())
        self.assert_log_event(mc.log(), "established", direction="inbound", rule="mc-in",
                              version="TLSv1.2")
        base = {mc.proc.pid: self.fd_count(mc.proc.pid)}
        ctx = self.tls_context()
        errors = []

        def one(i):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                        val = os.urandom(100000 if i % 10 else 900000)
                        key = b"key%d" % i
                        s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(val), val))
                        buf = b""
                        for want in (b"STORED\r\n",):
                            while len(buf) < len(want):
                                d = s.recv(65536)
                                if not d:
                                    raise EOFError("EOF before STORED")
                                buf += d
                            assert buf == want, buf
                        for _ in range(2):
                            s.sendall(b"get %s\r\n" % key)
                            head = b"VALUE %s 0 %d\r\n" % (key, len(val))
                            need = len(head) + len(val) + len(b"\r\nEND\r\n")
                            buf = b""
                            while len(buf) < need:
                                d = s.recv(65536)
                                if not d:
                                    raise EOFError("EOF in GET after %d bytes" % len(buf))
                                buf += d
                            assert buf == head + val + b"\r\nEND\r\n", "GET %d mismatch" % i
            except Exception as e:  # collected and reported below
                errors.append("conn %d: %r" % (i, e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=40)
            self.assertFalse(t.is_alive(), "a memcached client thread still running after 40 s")
        self.assertEqual(errors, [], mc.describe())
        established = [e for e in self.log_events(mc.log()) if e.get("event") == "established"]
        self.assertGreaterEqual(len(established), 102)
        self.wait_fds([mc.proc.pid], base, "memcached")
        self.assert_exits_cleanly(mc, signal.SIGTERM, "memcached")


if __name__ == "__main__":
    harness.main()
