"""test_status.py: `tlsshim status` and `tlsshim metrics` (SPEC 5, 9) over
real servers under the shim, driven by native TLS clients:

  nginx  master + 2 workers: connections held open with openssl s_client
         show in the live table (right peer identity, aligned columns);
         after N curl requests the established counter is exactly N;
         refused clients (expired certificate, none, a peer_names
         mismatch, plaintext) are counted under their reason classes; the
         exposition passes `promtool check metrics` and is served at
         /metrics; a SIGKILLed worker's file is removed by the next reader;
  redis  in test_status_redis.py (redis-server's jemalloc cannot run
         next to the preloaded ASan runtime, so that file is left out of
         the sanitizer run like test_real_servers);
  echo   a forked child keeps its own file (the parent's shows nothing of
         its connection); deny, plaintext and reload counters; the
         directory is 0700, the files 0600; `status.enabled: false`.

Every process gets XDG_RUNTIME_DIR=<test tmp>/xdg, so the status
directory is the default one, <tmp>/xdg/tlsshim, for the shim and the CLI
alike."""

import json
import ssl
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_real_servers as real  # noqa: E402  (its nginx/redis helpers)

CLIENT_ID = real.CLIENT_ID
SERVER_ID = real.SERVER_ID
N = 20


class StatusCase(harness.ShimTestCase):
    """The helpers; the tests are in Status (and test_status_redis.py)."""

    # The real servers' helpers, shared with test_real_servers.py.
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # nginx's workers run as nobody: let them reach the documents.
        os.chmod(cls._class_tmp, 0o755)
        os.chmod(cls.certs, 0o755)

    nginx_docroot = real.RealServers.nginx_docroot
    start_nginx = real.RealServers.start_nginx
    start_redis = real.RealServers.start_redis
    redis_cli_tls = real.RealServers.redis_cli_tls
    curl = real.RealServers.curl

    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)
        self.xdg = os.path.join(self.tmp, "xdg")
        os.mkdir(self.xdg, 0o700)
        self.sdir = os.path.join(self.xdg, "tlsshim")

    def spawn(self, argv, policy=None, env=None, name=None, cwd=None,
              stdin=subprocess.DEVNULL):
        e = {"XDG_RUNTIME_DIR": self.xdg}
        e.update(env or {})
        return super().spawn(argv, policy=policy, env=e, name=name, cwd=cwd, stdin=stdin)

    def run_under_shim(self, argv, policy, env=None, **kw):
        e = {"XDG_RUNTIME_DIR": self.xdg}
        e.update(env or {})
        return super().run_under_shim(argv, policy, env=e, **kw)

    # ---- the CLI ----

    def cli(self, *args):
        r = self.run_plain([harness.CLI] + list(args), env={"XDG_RUNTIME_DIR": self.xdg},
                           timeout=20, what="tlsshim " + " ".join(args))
        self.assertEqual(r.returncode, 0, r.describe())
        return r.stdout

    def status(self, *pids):
        out = self.cli("status", "--json", *[str(p) for p in pids])
        try:
            return json.loads(out)
        except ValueError as e:
            self.fail("tlsshim status --json is not JSON (%s):\n%s" % (e, out))

    def procs(self, *pids):
        return {p["pid"]: p for p in self.status(*pids)["processes"]}

    @staticmethod
    def rule(proc, name):
        for r in proc["rules"]:
            if r["name"] == name:
                return r
        return None

    def total(self, procs, rule, key, direction=None, cls=None):
        n = 0
        for p in procs.values():
            r = self.rule(p, rule)
            if r is None:
                continue
            v = r[key]
            if direction is not None:
                v = v[direction]
            if cls is not None:
                v = v[cls]
            n += v
        return n

    def wait_status(self, predicate, what, timeout=15.0):
        """Polls tlsshim status until |predicate|(processes) holds."""
        last = {}

        def ok():
            last["p"] = self.procs()
            return predicate(last["p"])
        try:
            harness.wait_for(ok, timeout, what, poll_interval=0.1)
        except AssertionError as e:
            raise AssertionError("%s\nlast tlsshim status --json:\n%s"
                                 % (e, json.dumps(last.get("p"), indent=1)[-6000:]))
        return last["p"]

    @staticmethod
    def conns(procs):
        return [dict(c, pid=p["pid"]) for p in procs.values() for c in p["connections"]]

    def metrics(self):
        out = self.cli("metrics")
        self.promtool(out)
        return out

    def promtool(self, text):
        tool = harness.find_program("promtool", "prometheus")
        p = subprocess.run([tool, "check", "metrics"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, "promtool check metrics: %s\n%s"
                         % (p.stdout.decode(), text[:4000]))
        self.assertEqual(p.stdout.decode().strip(), "", "promtool lint findings")

    @staticmethod
    def metric(text, name, **labels):
        """The sum of the samples of |name| whose labels include |labels|."""
        total = 0
        found = False
        for line in text.splitlines():
            m = re.match(r'^([a-z_]+)\{(.*)\} (\S+)$', line)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2)))
            if all(have.get(k) == str(v) for k, v in labels.items()):
                total += float(m.group(3))
                found = True
        return total if found else None

    # ---- clients ----

    def hold_s_client(self, port, args=(), name="held"):
        """openssl s_client kept open (its stdin stays open) on |port|."""
        argv = [harness.find_program("openssl", "openssl"), "s_client", "-connect",
                "127.0.0.1:%d" % port, "-CAfile", self.cert("ca.pem"), "-servername",
                "localhost", "-quiet"] + list(args)
        return self.spawn(argv, name=name, stdin=subprocess.PIPE)

    def refused_s_client(self, port, args=()):
        argv = [harness.find_program("openssl", "openssl"), "s_client", "-connect",
                "127.0.0.1:%d" % port, "-CAfile", self.cert("ca.pem"), "-servername",
                "localhost", "-ign_eof"] + list(args)
        r = self.run_plain(argv, stdin_data=b"GET / HTTP/1.0\r\n\r\n", timeout=20,
                           what="openssl s_client (refused)")
        self.assertNotIn("HTTP/1.1 200", r.stdout, r.describe())

    def plaintext_client(self, port, data=b"GET / HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            try:
                s.recv(100)
            except OSError:
                pass



@harness.skip_if_plain("the status files are the shim's")
class Status(StatusCase):

    # ---- nginx ----

    def test_nginx_workers_table_counters_metrics_and_cleanup(self):
        docroot = self.nginx_docroot()
        web, mtls = harness.free_port(), harness.free_port()
        pol = self.policy([
            self.in_rule("web", ports=[web], client_auth="none"),
            self.in_rule("mtls", ports=[mtls], client_auth="required",
                         peer_names=[CLIENT_ID])])
        ng = self.start_nginx([(web, "root %s;" % docroot), (mtls, "root %s;" % docroot)], pol)
        master = ng.proc.pid
        workers = real.children(master)
        self.assertEqual(len(workers), 2, workers)

        # Each process under the shim has its file, private to its user.
        procs = self.wait_status(lambda p: set(p) == {master} | set(workers),
                                 "the master and both workers in tlsshim status")
        st = os.stat(self.sdir)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        for pid in procs:
            st = os.stat(os.path.join(self.sdir, "%d.status" % pid))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, pid)
        self.assertTrue(procs[master]["program"].endswith("nginx"), procs[master])

        # Two connections held open: one with the client certificate on the
        # mutual-TLS port, one without on the other.
        a = self.hold_s_client(mtls, ["-cert", self.cert("client.pem"), "-key",
                                      self.cert("client.key")], name="held-mtls")
        b = self.hold_s_client(web, name="held-web")
        procs = self.wait_status(lambda p: len(self.conns(p)) == 2,
                                 "the two held connections in the table")
        by_rule = {c["rule"]: c for c in self.conns(procs)}
        self.assertEqual(set(by_rule), {"web", "mtls"}, by_rule)
        self.assertEqual(by_rule["mtls"]["peer_identity"], CLIENT_ID, by_rule)
        self.assertEqual(by_rule["web"]["peer_identity"], "", by_rule)
        for rule, port in (("mtls", mtls), ("web", web)):
            c = by_rule[rule]
            self.assertEqual(c["local"], "127.0.0.1:%d" % port, c)
            self.assertEqual(c["direction"], "inbound", c)
            self.assertIn(c["pid"], workers, c)
            self.assertEqual(c["version"], "TLSv1.3", c)
            self.assertTrue(c["cipher"].startswith("TLS_"), c)
            self.assertEqual(c["group"], "X25519", c)
            self.assertFalse(c["resumed"], c)
            self.assertRegex(c["peer"], r"^127\.0\.0\.1:\d+$", c)
        # The held client's own port is the peer the table shows.
        a_port = self.client_port(a.proc.pid, mtls)
        self.assertEqual(by_rule["mtls"]["peer"], "127.0.0.1:%d" % a_port, by_rule)

        # The terminal table: aligned columns and the summary line.
        text = self.cli("status")
        lines = text.splitlines()
        head = lines[0]
        row = [l for l in lines if CLIENT_ID in l]
        self.assertEqual(len(row), 1, text)
        for col, value in (("PEER IDENTITY", CLIENT_ID), ("LOCAL", "127.0.0.1:%d" % mtls),
                           ("RULE", "mtls")):
            self.assertEqual(head.index(col), row[0].index(value),
                             "column %s is not aligned:\n%s" % (col, text))
        self.assertIn("2 TLS connections open (2 inbound, 0 outbound) in 3 processes", text)

        # N requests, each on its own connection: established == N exactly.
        urls = ["https://localhost:%d/small.txt" % web] * N
        r = self.curl(["-H", "Connection: close", "-w", "connects=%{num_connects}\\n",
                       "-o", "/dev/null"] + sum((["-o", "/dev/null"] for _ in urls[1:]), [])
                      + urls)
        self.assertEqual(r.returncode, 0, r.describe())
        connects = sum(int(l.split("=")[1]) for l in r.stdout.splitlines()
                       if l.startswith("connects="))
        self.assertEqual(connects, N, r.describe())
        procs = self.wait_status(lambda p: self.total(p, "web", "established") == N + 1
                                 and len(self.conns(p)) == 2,
                                 "%d established on rule web (N and the held one)" % (N + 1))
        self.assertEqual(self.total(procs, "mtls", "established"), 1)
        small = os.path.getsize(os.path.join(docroot, "small.txt"))
        # Each response is headers and the body; each request at least its line.
        self.assertGreater(self.total(procs, "web", "bytes_out"), N * small)
        self.assertGreaterEqual(self.total(procs, "web", "bytes_in"),
                                N * len("GET /small.txt HTTP/1.1\r\n"))
        for cls in ("certificate", "name", "garbage", "reset", "timeout"):
            self.assertEqual(self.total(procs, "web", "failed", "inbound", cls), 0, cls)

        # Refused clients, each under its reason class.
        self.refused_s_client(mtls)                                    # no certificate
        self.refused_s_client(mtls, ["-cert", self.cert("expired_client.pem"),
                                     "-key", self.cert("expired_client.key")])  # expired
        self.refused_s_client(mtls, ["-cert", self.cert("other_client.pem"),
                                     "-key", self.cert("other_client.key")])  # peer_names
        self.plaintext_client(mtls)                                    # not TLS
        want = {"certificate": 2, "name": 1, "garbage": 1}
        procs = self.wait_status(
            lambda p: all(self.total(p, "mtls", "failed", "inbound", k) == v
                          for k, v in want.items()),
            "the refused clients under %r" % want)
        for cls in ("protocol", "cipher", "group", "timeout", "reset", "other"):
            self.assertEqual(self.total(procs, "mtls", "failed", "inbound", cls), 0,
                             (cls, procs))
        self.assert_log_event(ng.log(), "failed", rule="mtls", reason="certificate has expired")
        self.assert_log_event(ng.log(), "failed", rule="mtls",
                              reason="client certificate required but none was sent")
        self.assert_log_event(ng.log(), "failed", rule="mtls", reason="peer sent garbage")
        self.assert_log_event(ng.log(), "failed", rule="mtls",
                              reason="peer identity not allowed")

        # The same counters as Prometheus metrics.
        m = self.metrics()
        self.assertEqual(self.metric(m, "tlsshim_connections_established_total", rule="web",
                                     direction="inbound", version="TLSv1.3"), N + 1, m)
        self.assertEqual(self.metric(m, "tlsshim_connections_failed_total", rule="mtls",
                                     reason="certificate"), 2, m)
        self.assertEqual(self.metric(m, "tlsshim_connections_failed_total", rule="mtls",
                                     reason="name"), 1, m)
        self.assertEqual(self.metric(m, "tlsshim_connections_failed_total", rule="mtls",
                                     reason="garbage"), 1, m)
        self.assertEqual(self.metric(m, "tlsshim_connections_open", rule="mtls"), 1, m)
        self.assertEqual(self.metric(m, "tlsshim_processes"), None)  # no labels: below
        self.assertIn("\ntlsshim_processes 3\n", m)
        for name in ("tlsshim_connections_established_total",
                     "tlsshim_connections_failed_total", "tlsshim_reloads_total"):
            self.assertIn("# TYPE %s counter\n" % name, m)
            self.assertIn("# HELP %s " % name, m)

        # Served over HTTP at /metrics, and nothing else.
        srv = self.spawn([harness.CLI, "metrics", "--listen", "127.0.0.1:0"], name="metrics")
        url = harness.wait_for(lambda: (re.search(r"http://\S+/metrics", srv.stderr()) or
                                        [None])[0], 10, "tlsshim metrics --listen to say "
                               "where it serves")
        with urllib.request.urlopen(url, timeout=10) as resp:
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
            served = resp.read().decode()
        self.promtool(served)
        self.assertEqual(self.metric(served, "tlsshim_connections_failed_total", rule="mtls",
                                     reason="certificate"), 2, served)
        try:
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
            self.fail("/other was served")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 404)

        # Closing a held connection frees its row; its bytes stay counted.
        b.kill()
        self.wait_status(lambda p: len(self.conns(p)) == 1, "the row of the closed connection "
                         "to go")
        a.kill()

        # A worker killed with SIGKILL: the next reader removes its file.
        victim = workers[0]
        path = os.path.join(self.sdir, "%d.status" % victim)
        self.assertTrue(os.path.exists(path))
        os.kill(victim, signal.SIGKILL)
        harness.wait_for(lambda: victim not in real.children(master), 10,
                         "the killed worker %d to be gone" % victim)
        self.assertTrue(os.path.exists(path), "nothing but a reader removes it")
        procs = self.procs()
        self.assertNotIn(victim, procs)
        self.assertFalse(os.path.exists(path), "the reader left the dead worker's file")
        # nginx started a new worker, which has its own file (made while root).
        self.wait_status(lambda p: len(p) == 3, "the replacement worker in tlsshim status")

        # A graceful stop: nothing left once a reader has looked.
        real.RealServers.assert_exits_cleanly(self, ng, signal.SIGQUIT, "nginx")
        self.assertEqual(self.procs(), {})
        self.assertEqual(os.listdir(self.sdir), [])

    def client_port(self, pid, server_port):
        """The local port of |pid|'s TCP connection to |server_port|."""
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                local, remote, inode = parts[1], parts[2], parts[9]
                if inode in inodes and int(remote.split(":")[1], 16) == server_port:
                    return int(local.split(":")[1], 16)
        self.fail("no connection of %d to port %d" % (pid, server_port))

    # ---- the file itself ----

    def test_forked_child_keeps_its_own_file(self):
        pol = self.policy([self.in_rule("echo-in", client_auth="none")])
        srv, port = self.start_echo_server("fork", policy=pol)
        cctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with cctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"ping")
                self.assertEqual(s.recv(4), b"ping")
                procs = self.wait_status(lambda p: len(self.conns(p)) == 1,
                                         "the child's connection")
                child = self.conns(procs)[0]["pid"]
                self.assertNotEqual(child, srv.proc.pid)
                self.assertIn(srv.proc.pid, procs)
                self.assertEqual(procs[srv.proc.pid]["connections"], [])
                self.assertIsNone(self.rule(procs[srv.proc.pid], "echo-in"), procs)
                self.assertEqual(self.rule(procs[child], "echo-in")["established"], 1)
                self.assertEqual(self.conns(procs)[0]["bytes_in"], 4)
                self.assertEqual(self.conns(procs)[0]["bytes_out"], 4)
        # The child ends (with _exit, so its file stays) when the client is
        # gone; the next reader removes it, zombie or reaped.
        path = os.path.join(self.sdir, "%d.status" % child)
        harness.wait_for(lambda: child not in self.procs() and not os.path.exists(path),
                         10, "a reader to remove the ended child's file", poll_interval=0.1)
        self.assertIn(srv.proc.pid, self.procs())

    def test_decisions_reloads_and_disabled(self):
        plain_srv, plain_port = self.start_echo_server("thread")
        deny_port = harness.free_port()
        policy_path = self.write_policy(self.policy(
            [self.out_rule("no-way", ports=[deny_port], action="deny")]))
        r = self.tcp_client(plain_port, nbytes=1000, policy=policy_path,
                            extra=["--conns", "3"])
        self.assert_echo_ok(r, 1000, conns=3)
        # tcp_client has exited: its file went with it. A long-running one:
        held = self.spawn([harness.prog("tcp_client"), "--host", "127.0.0.1", "--port",
                           str(deny_port), "--style", "rw", "--bytes", "10"],
                          policy=policy_path, name="denied-client")
        harness.wait_for(lambda: not held.alive(), 20, "the denied client to give up")
        self.assertEqual(self.procs(), {})
        self.assert_log_event(held.log(), "denied", rule="no-way")

        # A server under the shim: plaintext decisions, then reloads.
        srv_policy = self.write_policy(self.policy([self.in_rule("echo-in", ports=[1])]))
        srv, port = self.start_echo_server("thread", policy=srv_policy)
        for _ in range(3):
            self.plaintext_client(port, b"x")
        procs = self.wait_status(
            lambda p: self.total(p, "default_action", "plaintext", "inbound") == 3,
            "three plaintext decisions of default_action")
        good = self.policy([self.in_rule("echo-in", ports=[2])])
        with open(srv_policy, "w") as f:
            f.write(harness.to_yaml(good) + "\n")
        harness.wait_for(lambda: (self.plaintext_client(port, b"x") or True) and
                         self.procs()[srv.proc.pid]["reloads"]["accepted"] == 1,
                         10, "the accepted reload to be counted", poll_interval=0.2)
        with open(srv_policy, "w") as f:
            f.write("version: 1\nrules: [\n")
        harness.wait_for(lambda: (self.plaintext_client(port, b"x") or True) and
                         self.procs()[srv.proc.pid]["reloads"]["rejected"] == 1,
                         10, "the rejected reload to be counted", poll_interval=0.2)
        m = self.metrics()
        self.assertEqual(self.metric(m, "tlsshim_reloads_total", result="accepted"), 1, m)
        self.assertEqual(self.metric(m, "tlsshim_reloads_total", result="rejected"), 1, m)
        harness.stop(srv.proc)

        # status.enabled false: no file, even for a process running as root.
        off = self.policy([self.in_rule("echo-in", client_auth="none")])
        off["status"] = {"enabled": False}
        srv, port = self.start_echo_server("thread", policy=off)
        self.plaintext_client(port, b"x")
        harness.wait_for(lambda: '"failed"' in srv.log(), 10, "the refused client in the log")
        self.assert_log_event(srv.log(), "failed", rule="echo-in")
        self.assertEqual(self.procs(), {})

        # status.dir: a folder of the policy's choosing; `--dir` reads it.
        other = os.path.join(self.tmp, "elsewhere")
        moved = self.policy([self.in_rule("echo-in", client_auth="none")])
        moved["status"] = {"dir": other}
        srv, port = self.start_echo_server("thread", policy=moved)
        self.plaintext_client(port)
        harness.wait_for(lambda: '"failed"' in srv.log(), 10, "the refused client in the log")
        out = self.cli("status", "--json", "--dir", other)
        procs = {p["pid"]: p for p in json.loads(out)["processes"]}
        self.assertEqual(self.total(procs, "echo-in", "failed", "inbound", "garbage"), 1, out)
        self.assertEqual(self.procs(), {})


if __name__ == "__main__":
    harness.main()
