"""test_runtimes.py: real event-loop runtimes under the shim, and TLS
scanners against a server under the shim.

  Python    asyncio streams (epoll selector): 200 concurrent connections,
            10 MB with SHA-256, write_eof (SHUT_WR -> close_notify, the
            read side stays open); loop.sock_* on raw sockets;
            selectors.PollSelector and SelectSelector servers;
            socketserver.ThreadingTCPServer; the errors asyncio sees
            (ECONNREFUSED, EPROTO for a failed outbound handshake, ETIMEDOUT
            for a handshake timeout, ECONNRESET/ETIMEDOUT on inbound);
  Java      a NIO Selector echo server (libnio: epoll, read/write,
            readv/writev), blocking java.net.Socket clients with
            shutdownOutput, a non-blocking SocketChannel client, against
            each other, openssl s_server (mutual TLS) and failing peers;
  postgres  a private cluster (ssl=off in postgres itself) under an inbound
            rule with client_auth required, psql and pgbench under an
            outbound rule: queries, 5 MB COPY in and 10 MB out, pgbench -i,
            pgbench -c 4 and -C (a fork and a handshake per transaction),
            a cancel request (PQcancel connects from psql's SIGINT handler);
  scanners  nmap ssl-enum-ciphers (+ the vulnerability scripts) and
            testssl.sh against an asyncio server under a restricted rule
            (TLS 1.2 minimum, two TLS 1.2 suites, groups X25519 and P-256):
            they must report exactly the policy, no vulnerability, and the
            server must survive with its descriptor count unchanged.

Every program comes from a Debian package (python3, openjdk-17-jdk-headless,
postgresql, nmap, testssl.sh, openssl); a missing one fails the test with a
message to run scripts/setup.sh."""

import glob
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLIENT_ID = "spiffe://test/ns/default/sa/client"
SERVER_ID = "spiffe://test/ns/default/sa/server"
TIMEOUT = 30
PY = sys.executable or "python3"


def find_program(name, candidates=()):
    return harness.find_program(name, "openjdk-17-jdk-headless, postgresql, nmap, "
                                "testssl.sh and openssl", candidates)


def count_events(log_text, event, **fields):
    n = 0
    for line in log_text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == event and all(str(ev.get(k)) == str(v)
                                            for k, v in fields.items()):
            n += 1
    return n


# ---------------------------------------------------------------- Python --

# argv: MODE READY_FILE. Echo servers on 127.0.0.1:0 that write their port
# to READY_FILE; a connection is echoed until the client's EOF, then the
# server half-closes. Handler errors go to stdout as
# "HANDLER-ERROR <exception class> <errno>".
PY_SERVER = r'''
import asyncio, os, selectors, socket, socketserver, sys
mode, ready = sys.argv[1], sys.argv[2]

def report(e):
    print("HANDLER-ERROR %s %s" % (type(e).__name__, getattr(e, "errno", None)), flush=True)

def announce(port):
    with open(ready + ".tmp", "w") as f:
        f.write("%d\n" % port)
    os.rename(ready + ".tmp", ready)

def listener():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(512)
    ls.setblocking(False)
    return ls

if mode == "streams":
    async def handle(r, w):
        try:
            while True:
                b = await r.read(65536)
                if not b:
                    break
                w.write(b)
                await w.drain()
            w.write_eof()
            await w.drain()
        except Exception as e:
            report(e)
        finally:
            w.close()
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
        announce(srv.sockets[0].getsockname()[1])
        await srv.serve_forever()
    asyncio.run(main())

elif mode == "sock":
    async def main():
        loop = asyncio.get_running_loop()
        ls = listener()
        announce(ls.getsockname()[1])
        async def handle(c):
            try:
                while True:
                    b = await loop.sock_recv(c, 65536)
                    if not b:
                        break
                    await loop.sock_sendall(c, b)
                c.shutdown(socket.SHUT_WR)
            except Exception as e:
                report(e)
            finally:
                c.close()
        while True:
            c, _ = await loop.sock_accept(ls)
            c.setblocking(False)
            loop.create_task(handle(c))
    asyncio.run(main())

elif mode in ("poll", "select"):
    sel = selectors.PollSelector() if mode == "poll" else selectors.SelectSelector()
    ls = listener()
    sel.register(ls, selectors.EVENT_READ, None)
    announce(ls.getsockname()[1])
    pending, eof = {}, set()
    def finish(c):
        sel.unregister(c)
        pending.pop(c, None)
        eof.discard(c)
        c.close()
    while True:
        for key, ev in sel.select():
            if key.data is None:
                try:
                    c, _ = ls.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                pending[c] = bytearray()
                sel.register(c, selectors.EVENT_READ, "conn")
                continue
            c = key.fileobj
            try:
                if ev & selectors.EVENT_READ:
                    try:
                        b = c.recv(65536)
                    except BlockingIOError:
                        b = None
                    if b == b"":
                        eof.add(c)
                    elif b:
                        pending[c] += b
                if pending[c]:
                    try:
                        n = c.send(pending[c])
                        del pending[c][:n]
                    except BlockingIOError:
                        pass
                if c in eof and not pending[c]:
                    c.shutdown(socket.SHUT_WR)
                    finish(c)
                    continue
                want = (0 if c in eof else selectors.EVENT_READ) | \
                    (selectors.EVENT_WRITE if pending[c] else 0)
                sel.modify(c, want, "conn")
            except OSError as e:
                report(e)
                finish(c)

elif mode == "threading":
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                while True:
                    b = self.request.recv(65536)
                    if not b:
                        break
                    self.request.sendall(b)
                self.request.shutdown(socket.SHUT_WR)
            except OSError as e:
                report(e)
    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        request_queue_size = 512   # the default 5 makes 200 clients wait for SYN retries
    srv = Server(("127.0.0.1", 0), Handler)
    announce(srv.server_address[1])
    srv.serve_forever()
'''

# argv: echo PORT CONNS SIZE | line PORT TEXT | error PORT
#   echo:  CONNS concurrent asyncio connections, each sends SIZE random bytes,
#          write_eof(), reads the echo to EOF; prints one JSON line.
#   line:  sends TEXT + "\n", prints "GOT <line>".
#   error: connects, sends a byte, reads; prints "EXC <class> <errno>" or "GOT".
PY_CLIENT = r'''
import asyncio, hashlib, json, os, socket, sys
mode, port = sys.argv[1], int(sys.argv[2])

async def echo_one(size):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    data = os.urandom(size)
    async def send():
        for off in range(0, size, 65536):
            w.write(data[off:off + 65536])
            await w.drain()
        w.write_eof()                  # half-close: we still read the echo
    t = asyncio.create_task(send())
    h, n = hashlib.sha256(), 0
    while True:
        b = await r.read(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    await t
    w.close()
    await w.wait_closed()
    return n == size and h.digest() == hashlib.sha256(data).digest()

async def sock_one(size):
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setblocking(False)
    await loop.sock_connect(s, ("127.0.0.1", port))
    data = os.urandom(size)
    async def send():
        await loop.sock_sendall(s, data)
        s.shutdown(socket.SHUT_WR)
    t = asyncio.create_task(send())
    got = bytearray()
    while True:
        b = await loop.sock_recv(s, 1 << 20)
        if not b:
            break
        got += b
    await t
    s.close()
    return bytes(got) == data

async def main():
    if mode in ("echo", "sockecho"):
        conns, size = int(sys.argv[3]), int(sys.argv[4])
        one = echo_one if mode == "echo" else sock_one
        res = await asyncio.wait_for(asyncio.gather(*(one(size) for _ in range(conns)),
                                                    return_exceptions=True), 60)
        bad = [repr(r) for r in res if r is not True]
        print(json.dumps({"ok": conns - len(bad), "bad": bad[:5]}), flush=True)
    elif mode == "line":
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 20)
        w.write(sys.argv[3].encode() + b"\n")
        await w.drain()
        print("GOT " + (await asyncio.wait_for(r.readline(), 20)).decode().strip(), flush=True)
        w.close()
    elif mode == "error":
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 20)
            w.write(b"x")
            await w.drain()
            print("GOT %r" % (await asyncio.wait_for(r.read(10), 20)), flush=True)
        except Exception as e:
            print("EXC %s %s" % (type(e).__name__, getattr(e, "errno", None)), flush=True)
asyncio.run(main())
'''


class RuntimeCase(harness.ShimTestCase):
    """Helpers shared by the runtime tests."""

    def server_policy(self, client_auth="required", **tls):
        return self.policy([self.in_rule("in", addresses=["127.0.0.1"],
                                         client_auth=client_auth, **tls)])

    def client_policy(self, port, **tls):
        t = {"identity": "client", "peer_names": [SERVER_ID]}
        t.update(tls)
        return self.policy([self.out_rule("out", ports=[port], **t)])

    def script(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_py_server(self, mode, policy):
        srv_py = self.script("py_server.py", PY_SERVER)
        ready = self._next("ready")
        b = self.spawn([PY, srv_py, mode, ready], policy=policy, name="py-" + mode)
        return b, self.wait_ready_file(b, ready)

    def py_client(self, policy, *args, timeout=90):
        cli_py = self.script("py_client.py", PY_CLIENT)
        return self.run_under_shim([PY, cli_py] + [str(a) for a in args], policy,
                                   timeout=timeout, what="python client %s" % args[0])

    def assert_echo_json(self, r, conns):
        self.assertEqual(r.returncode, 0, r.describe())
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(lines, "no result line from the client\n" + r.describe())
        res = json.loads(lines[-1])
        self.assertEqual(res["ok"], conns, "%s\n%s" % (res["bad"], r.describe()))

    def wait_fds(self, bg, baseline, what):
        """The server's descriptor count comes back to |baseline|."""
        try:
            harness.wait_for(lambda: self.fd_count(bg.proc.pid) <= baseline, 10.0,
                             "%s's descriptor count to come back to %d (now %d)"
                             % (what, baseline, self.fd_count(bg.proc.pid)))
        except AssertionError as e:
            raise AssertionError("%s\n%s\n%s" % (
                e, os.popen("ls -l /proc/%d/fd" % bg.proc.pid).read(), bg.describe()))


@harness.skip_if_plain("the runtimes talk TLS through the shim")
class Asyncio(RuntimeCase):

    def test_streams_200_connections_10mb_and_half_close_both_under_shim(self):
        srv, port = self.start_py_server("streams", self.server_policy(
            peer_names=[CLIENT_ID]))
        base = self.fd_count(srv.proc.pid)
        cpol = self.client_policy(port)
        r = self.py_client(cpol, "echo", port, 200, 64 << 10)
        self.assert_echo_json(r, 200)
        r2 = self.py_client(cpol, "echo", port, 1, 10 << 20)
        self.assert_echo_json(r2, 1)
        self.assertEqual(count_events(r.log, "established", rule="out",
                                      peer_identity=SERVER_ID), 200, r.log[-3000:])
        harness.wait_for(lambda: count_events(srv.log(), "established", direction="inbound",
                                              peer_identity=CLIENT_ID) >= 201,
                         10, "201 inbound established events in the server's log")
        self.assertNotIn("HANDLER-ERROR", srv.stdout(), srv.describe())
        self.wait_fds(srv, base, "the asyncio server")

    def test_streams_server_to_real_tls_clients(self):
        srv, port = self.start_py_server("streams", self.server_policy("none"))
        c = self.s_client(port)
        self.assertIn(self.S_CLIENT_TOKEN, c.stdout(), c.describe() + srv.describe())
        c = self.s_client(port, ["-tls1_2"])
        self.assertIn(self.S_CLIENT_TOKEN, c.stdout(), c.describe() + srv.describe())
        self.assertIn("TLSv1.2", c.stdout())
        # Python's ssl (the system OpenSSL) as a plain blocking client.
        import socket
        import ssl
        ctx = ssl.create_default_context(cafile=self.cert("ca.pem"))
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                payload = os.urandom(1 << 20)
                got = bytearray()
                s.sendall(payload)
                while len(got) < len(payload):
                    b = s.recv(1 << 20)
                    self.assertTrue(b, "EOF after %d bytes of the echo" % len(got))
                    got += b
                self.assertEqual(bytes(got), payload)
        self.assert_log_event(srv.log(), "established", direction="inbound", rule="in")

    def test_asyncio_client_to_s_server_mutual(self):
        srv, port = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-Verify", "1", "-CAfile",
                                         self.cert("ca.pem"), "-verify_return_error", "-rev"])
        r = self.py_client(self.client_policy(port), "line", port, "hello asyncio")
        self.assertIn("GOT oicnysa olleh", r.stdout, r.describe() + srv.describe())
        self.assert_log_event(r.log, "established", rule="out", peer_identity=SERVER_ID)

    def test_errors_as_asyncio_sees_them(self):
        # Outbound: refused, not TLS, untrusted server, silent server.
        port = harness.free_port()
        r = self.py_client(self.client_policy(port), "error", port)
        self.assertIn("EXC ConnectionRefusedError 111", r.stdout, r.describe())
        raw = self.peer(harness.RawListener("garbage"))
        r = self.py_client(self.client_policy(raw.port), "error", raw.port)
        self.assertIn("EXC OSError 71", r.stdout, "EPROTO expected\n" + r.describe())
        self.assert_log_event(r.log, "failed", rule="out")
        bad = self.peer(harness.TLSEchoServer(harness.tls_server_context(self.certs,
                                                                         cert="wrongca")))
        r = self.py_client(self.client_policy(bad.port), "error", bad.port)
        self.assertIn("EXC OSError 71", r.stdout, "EPROTO expected\n" + r.describe())
        silent = self.peer(harness.SilentListener())
        r = self.py_client(self.client_policy(silent.port, handshake_timeout_ms=1000),
                           "error", silent.port)
        self.assertIn("EXC TimeoutError 110", r.stdout, "ETIMEDOUT expected\n" + r.describe())
        self.assert_log_event(r.log, "failed", reason="timeout")
        # Inbound: a plaintext client, then a silent one (1 s handshake timeout).
        srv, port = self.start_py_server("streams", self.server_policy(
            "none", handshake_timeout_ms=1000))
        import socket
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            self.assertEqual(s.recv(100), b"", "the plaintext client gets EOF")
        harness.wait_for(lambda: "HANDLER-ERROR ConnectionResetError 104" in srv.stdout(),
                         10, "the asyncio handler to see ECONNRESET\n" + srv.describe())
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            self.assertEqual(s.recv(100), b"", "the silent client is closed")
        harness.wait_for(lambda: "HANDLER-ERROR TimeoutError 110" in srv.stdout(),
                         10, "the asyncio handler to see ETIMEDOUT\n" + srv.describe())
        self.assert_log_event(srv.log(), "failed", reason="timeout")
        self.assertTrue(srv.alive(), srv.describe())

    def test_sock_api_selectors_and_socketserver(self):
        for mode in ("sock", "poll", "select", "threading"):
            with self.subTest(server=mode):
                srv, port = self.start_py_server(mode, self.server_policy(
                    peer_names=[CLIENT_ID]))
                cpol = self.client_policy(port)
                r = self.py_client(cpol, "echo", port, 50, 256 << 10)
                self.assert_echo_json(r, 50)
                r = self.py_client(cpol, "sockecho", port, 2, 3 << 20)
                self.assert_echo_json(r, 2)
                self.assertNotIn("HANDLER-ERROR", srv.stdout(), srv.describe())
                self.assertEqual(count_events(r.log, "established", rule="out"), 2, r.log)
                srv.kill()


# ------------------------------------------------------------------ Java --

JAVA_SRC = {
    # NIO Selector echo server: non-blocking ServerSocketChannel/SocketChannel,
    # half-closes after the client's EOF once everything is echoed.
    "NioEcho.java": r'''
import java.net.*; import java.nio.*; import java.nio.channels.*; import java.nio.file.*; import java.util.*;
public class NioEcho {
  static class Conn { ByteBuffer buf = ByteBuffer.allocate(1 << 16); boolean eof; }
  public static void main(String[] a) throws Exception {
    Selector sel = Selector.open();
    ServerSocketChannel ss = ServerSocketChannel.open();
    ss.bind(new InetSocketAddress("127.0.0.1", 0), 512);
    ss.configureBlocking(false);
    ss.register(sel, SelectionKey.OP_ACCEPT);
    Path tmp = Paths.get(a[0] + ".tmp");
    Files.write(tmp, (((InetSocketAddress) ss.getLocalAddress()).getPort() + "\n").getBytes());
    Files.move(tmp, Paths.get(a[0]));
    while (true) {
      sel.select();
      Iterator<SelectionKey> it = sel.selectedKeys().iterator();
      while (it.hasNext()) {
        SelectionKey k = it.next(); it.remove();
        if (!k.isValid()) continue;
        if (k.isAcceptable()) {
          SocketChannel c;
          while ((c = ss.accept()) != null) { c.configureBlocking(false); c.register(sel, SelectionKey.OP_READ, new Conn()); }
          continue;
        }
        SocketChannel c = (SocketChannel) k.channel(); Conn st = (Conn) k.attachment();
        try {
          if (k.isReadable() && st.buf.hasRemaining() && c.read(st.buf) < 0) st.eof = true;
          st.buf.flip(); c.write(st.buf); st.buf.compact();
          if (st.eof && st.buf.position() == 0) { c.shutdownOutput(); k.cancel(); c.close(); continue; }
          int ops = 0;
          if (st.buf.position() > 0) ops |= SelectionKey.OP_WRITE;
          if (!st.eof && st.buf.hasRemaining()) ops |= SelectionKey.OP_READ;
          k.interestOps(ops);
        } catch (java.io.IOException e) {
          System.out.println("CONN-ERROR " + e.getClass().getName() + ": " + e.getMessage()); System.out.flush();
          k.cancel(); c.close();
        }
      }
    }
  }
}
''',
    # Blocking java.net.Socket client: a writer thread sends SIZE bytes and
    # calls shutdownOutput(); the main thread reads the echo to EOF.
    "BlockClient.java": r'''
import java.io.*; import java.net.*; import java.security.*; import java.util.*;
public class BlockClient {
  public static void main(String[] a) throws Exception {
    int port = Integer.parseInt(a[0]), size = Integer.parseInt(a[1]), conns = Integer.parseInt(a[2]);
    for (int i = 0; i < conns; i++) {
      Socket s = new Socket("127.0.0.1", port); s.setSoTimeout(20000);
      byte[] data = new byte[size]; new Random(i).nextBytes(data);
      OutputStream o = s.getOutputStream(); InputStream in = s.getInputStream();
      Thread w = new Thread(() -> { try { for (int off = 0; off < size; off += 65536) o.write(data, off, Math.min(65536, size - off)); s.shutdownOutput(); } catch (IOException e) { System.out.println("WRITE-ERROR " + e); } });
      w.start();
      MessageDigest md = MessageDigest.getInstance("SHA-256"); byte[] buf = new byte[65536]; long got = 0; int n;
      while ((n = in.read(buf)) > 0) { md.update(buf, 0, n); got += n; }
      w.join(); s.close();
      boolean ok = got == size && Arrays.equals(md.digest(), MessageDigest.getInstance("SHA-256").digest(data));
      System.out.println("conn " + i + " got " + got + (ok ? " MATCH" : " MISMATCH"));
    }
  }
}
''',
    # One request: "blk" (java.net.Socket) or "nio" (non-blocking
    # SocketChannel connect + Selector + finishConnect); prints GOT/EXC.
    "OneShot.java": r'''
import java.io.*; import java.net.*; import java.nio.*; import java.nio.channels.*;
public class OneShot {
  public static void main(String[] a) throws Exception {
    int port = Integer.parseInt(a[0]);
    try {
      if (a[1].equals("nio")) {
        SocketChannel c = SocketChannel.open(); c.configureBlocking(false);
        c.connect(new InetSocketAddress("127.0.0.1", port));
        Selector sel = Selector.open(); SelectionKey k = c.register(sel, SelectionKey.OP_CONNECT);
        if (sel.select(20000) == 0) throw new IOException("no OP_CONNECT within 20 s");
        c.finishConnect(); k.cancel(); sel.selectNow(); c.configureBlocking(true);
        c.write(ByteBuffer.wrap("hello java\n".getBytes()));
        ByteBuffer b = ByteBuffer.allocate(100); c.read(b); b.flip();
        System.out.println("GOT " + new String(b.array(), 0, b.limit()).trim());
      } else {
        Socket s = new Socket(); s.connect(new InetSocketAddress("127.0.0.1", port), 20000); s.setSoTimeout(20000);
        s.getOutputStream().write("hello java\n".getBytes());
        byte[] buf = new byte[100]; int n = s.getInputStream().read(buf);
        System.out.println("GOT " + (n > 0 ? new String(buf, 0, n).trim() : "EOF"));
      }
    } catch (IOException e) { System.out.println("EXC " + e.getClass().getName() + ": " + e.getMessage()); }
  }
}
''',
}


@harness.skip_if_plain("the runtimes talk TLS through the shim")
class Java(RuntimeCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.classes = os.path.join(cls._class_tmp, "java")
        os.makedirs(cls.classes, exist_ok=True)
        cls.java_error = None
        try:
            cls.java = find_program("java")
            javac = find_program("javac")
        except AssertionError as e:
            cls.java_error = str(e)
            return
        srcs = []
        for name, text in JAVA_SRC.items():
            srcs.append(os.path.join(cls.classes, name))
            with open(srcs[-1], "w") as f:
                f.write(text)
        p = subprocess.run([javac, "-d", cls.classes] + srcs, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        if p.returncode != 0:
            cls.java_error = "javac failed:\n" + p.stdout.decode(errors="replace")

    def setUp(self):
        super().setUp()
        if self.java_error:
            self.fail(self.java_error)

    def jargv(self, cls, *args):
        return [self.java, "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", self.classes,
                cls] + [str(a) for a in args]

    def start_nio_server(self, policy):
        ready = self._next("ready")
        b = self.spawn(self.jargv("NioEcho", ready), policy=policy, name="java-nio")
        return b, self.wait_ready_file(b, ready, timeout=30)

    def java_client(self, policy, cls, *args):
        return self.run_under_shim(self.jargv(cls, *args), policy, timeout=90,
                                   what="java %s" % cls)

    def test_nio_server_with_blocking_java_and_asyncio_clients(self):
        srv, port = self.start_nio_server(self.server_policy(peer_names=[CLIENT_ID]))
        base = self.fd_count(srv.proc.pid)
        cpol = self.client_policy(port)
        r = self.java_client(cpol, "BlockClient", port, 10 << 20, 2)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stdout.count(" MATCH"), 2, r.describe() + srv.describe())
        self.assertEqual(count_events(r.log, "established", rule="out",
                                      peer_identity=SERVER_ID), 2, r.log)
        # The same server under load from another runtime, and a real client.
        cli_py = self.script("py_client.py", PY_CLIENT)
        r = self.run_under_shim([PY, cli_py, "echo", str(port), "100", str(64 << 10)], cpol,
                                timeout=90, what="asyncio clients of the Java server")
        self.assert_echo_json(r, 100)
        c = self.s_client(port, ["-cert", self.cert("client.pem"), "-key",
                                 self.cert("client.key")])
        self.assertIn(self.S_CLIENT_TOKEN, c.stdout(), c.describe() + srv.describe())
        harness.wait_for(lambda: count_events(srv.log(), "established",
                                              direction="inbound") >= 103,
                         10, "103 inbound established events in the Java server's log")
        self.assertNotIn("CONN-ERROR", srv.stdout(), srv.describe())
        self.wait_fds(srv, base, "the Java NIO server")

    def test_java_clients_to_s_server_mutual_and_failing_peers(self):
        srv, port = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-Verify", "1", "-CAfile",
                                         self.cert("ca.pem"), "-verify_return_error", "-rev"])
        for style in ("blk", "nio"):
            r = self.java_client(self.client_policy(port), "OneShot", port, style)
            self.assertIn("GOT avaj olleh", r.stdout, r.describe() + srv.describe())
        refused = harness.free_port()
        raw = self.peer(harness.RawListener("garbage"))
        silent = self.peer(harness.SilentListener())
        for style in ("blk", "nio"):
            r = self.java_client(self.client_policy(refused), "OneShot", refused, style)
            self.assertIn("EXC java.net.ConnectException: Connection refused", r.stdout,
                          r.describe())
            r = self.java_client(self.client_policy(raw.port), "OneShot", raw.port, style)
            self.assertIn("EXC java.net.ProtocolException: Protocol error", r.stdout,
                          "EPROTO expected\n" + r.describe())
            r = self.java_client(self.client_policy(silent.port, handshake_timeout_ms=1000),
                                 "OneShot", silent.port, style)
            self.assertIn("EXC java.net.ConnectException: Connection timed out", r.stdout,
                          "ETIMEDOUT expected\n" + r.describe())

    def test_nio_server_sees_failed_handshakes(self):
        srv, port = self.start_nio_server(self.server_policy("none",
                                                             handshake_timeout_ms=1000))
        base = self.fd_count(srv.proc.pid)
        import socket
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            self.assertEqual(s.recv(100), b"")
        harness.wait_for(lambda: "CONN-ERROR java.net.SocketException: Connection reset"
                         in srv.stdout(), 10, "the NIO server to see ECONNRESET\n"
                         + srv.describe())
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            self.assertEqual(s.recv(100), b"", "the silent client is closed")
        harness.wait_for(lambda: "Connection timed out" in srv.stdout(), 10,
                         "the NIO server to see ETIMEDOUT\n" + srv.describe())
        c = self.s_client(port)
        self.assertIn(self.S_CLIENT_TOKEN, c.stdout(), c.describe() + srv.describe())
        self.wait_fds(srv, base, "the Java NIO server")


# -------------------------------------------------------------- postgres --

PG_GLOB = "/usr/lib/postgresql/*/bin/"


@harness.skip_if_plain("the runtimes talk TLS through the shim")
class Postgres(RuntimeCase):

    def setUp(self):
        super().setUp()
        # Debian's binaries (PATH may hold only wrappers or links to them).
        hits = sorted(glob.glob(PG_GLOB + "postgres"))
        self.postgres = hits[-1] if hits else find_program("postgres")
        self.bindir = os.path.dirname(os.path.realpath(self.postgres))
        for n in ("initdb", "psql", "pgbench"):
            if not os.access(os.path.join(self.bindir, n), os.X_OK):
                find_program(os.path.join(self.bindir, n))
        # postgres refuses to run as root; the cluster, its certificates and
        # its shim log live in a folder the server's user owns.
        self.pgdir = tempfile.mkdtemp(prefix="tlsshim-pg-")
        self.addCleanup(shutil.rmtree, self.pgdir, True)
        os.chmod(self.pgdir, 0o755)
        self.as_user = []
        if os.geteuid() == 0:
            try:
                u = pwd.getpwnam("postgres")
            except KeyError:
                self.fail("user postgres does not exist: run scripts/setup.sh "
                          "(the Debian package postgresql creates it)")
            for n in ("server.pem", "server.key", "ca.pem"):
                shutil.copy(self.cert(n), self.pgdir)
            for root, dirs, files in os.walk(self.pgdir):
                for n in dirs + files + ["."]:
                    os.chown(os.path.join(root, n), u.pw_uid, u.pw_gid)
            self.as_user = ["setpriv", "--reuid", str(u.pw_uid), "--regid", str(u.pw_gid),
                            "--clear-groups", "--"]
        else:
            for n in ("server.pem", "server.key", "ca.pem"):
                shutil.copy(self.cert(n), self.pgdir)

    def owned(self, path, text):
        with open(path, "w") as f:
            f.write(text)
        st = os.stat(self.pgdir)
        os.chown(path, st.st_uid, st.st_gid)
        return path

    def start_postgres(self):
        data = os.path.join(self.pgdir, "data")
        p = subprocess.run(self.as_user + [os.path.join(self.bindir, "initdb"), "-D", data,
                                           "-A", "trust", "-U", "postgres", "--no-sync",
                                           "-E", "UTF8"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                           cwd=self.pgdir)
        self.assertEqual(p.returncode, 0, "initdb failed:\n" + p.stdout.decode(errors="replace"))
        self.port = harness.free_port()
        pol = {"version": 1, "default_action": "plaintext",
               "identities": {"server": {"cert": "server.pem", "key": "server.key"}},
               "trust": {"ca": {"ca": "ca.pem"}},
               "rules": [self.in_rule("pg-in", ports=[self.port], peer_names=[CLIENT_ID])],
               "log": {"level": "info", "format": "json"}}
        policy = self.owned(os.path.join(self.pgdir, "policy.yaml"), harness.to_yaml(pol) + "\n")
        log = self.owned(os.path.join(self.pgdir, "shim.log"), "")
        env = self.shim_env(policy, log)
        argv = self.as_user + [self.postgres, "-D", data, "-h", "127.0.0.1", "-p",
                               str(self.port), "-k", self.pgdir, "-c", "ssl=off",
                               "-c", "fsync=off", "-c", "max_connections=30",
                               "-c", "shared_buffers=16MB"]
        srv = self.spawn(argv, env=env, name="postgres", cwd=self.pgdir)
        srv.log_file = log
        self.addCleanup(self.stop_postgres, srv)
        harness.wait_for(lambda: "ready to accept connections" in srv.stderr()
                         or not srv.alive(), 30, "postgres to accept connections")
        self.assertTrue(srv.alive(), srv.describe())
        return srv

    def stop_postgres(self, srv):
        if srv.alive():
            srv.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                srv.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass

    def client_env(self):
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": "postgres",
                "PGDATABASE": "postgres", "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "20"}

    def psql(self, sql, policy, stdin_data=None):
        argv = [os.path.join(self.bindir, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
                "-c", sql]
        return self.run_under_shim(argv, policy, env=self.client_env(), timeout=60,
                                   what="psql -c %r" % sql[:40], stdin_data=stdin_data)

    def test_postgres_psql_pgbench(self):
        srv = self.start_postgres()
        cpol = self.policy([self.out_rule("pg-out", ports=[self.port], identity="client",
                                          peer_names=[SERVER_ID])])
        r = self.psql("select inet_server_port(), (select ssl from pg_stat_ssl "
                      "where pid = pg_backend_pid()), sum(x) from generate_series(1,1000) x",
                      cpol)
        self.assertEqual(r.returncode, 0, r.describe() + srv.describe())
        # postgres itself speaks no TLS: the shim does.
        self.assertEqual(r.stdout.strip(), "%d|f|500500" % self.port, r.describe())
        self.assert_log_event(r.log, "established", rule="pg-out", peer_identity=SERVER_ID)
        harness.wait_for(lambda: count_events(srv.log(), "established", rule="pg-in",
                                              peer_identity=CLIENT_ID) >= 1,
                         10, "an inbound established event in postgres's shim log")
        # A plaintext client is refused: the server only speaks TLS.
        p = self.run_plain([os.path.join(self.bindir, "psql"), "-X", "-At", "-c", "select 1"],
                           env=self.client_env(), timeout=30, what="plaintext psql")
        self.assertNotEqual(p.returncode, 0, p.describe())
        # 5 MB in with COPY, 10 MB out.
        rows = ["%d\t%s" % (i, hashlib.sha256(b"%d" % i).hexdigest() * 4)
                for i in range(20000)]
        r = self.psql("create table blob(i int primary key, x text)", cpol)
        self.assertEqual(r.returncode, 0, r.describe())
        r = self.psql("copy blob from stdin", cpol, stdin_data=("\n".join(rows) + "\n").encode())
        self.assertEqual(r.returncode, 0, r.describe())
        want = hashlib.md5("".join(l.split("\t")[1] for l in rows).encode()).hexdigest()
        r = self.psql("select count(*), md5(string_agg(x, '' order by i)) from blob", cpol)
        self.assertEqual(r.stdout.strip(), "20000|" + want, r.describe())
        r = self.psql("select x from blob order by i", cpol)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(hashlib.sha256(r.stdout.encode()).hexdigest(), hashlib.sha256(
            "".join(l.split("\t")[1] + "\n" for l in rows).encode()).hexdigest(),
            "the 10 MB result differs")
        # pgbench: initialise, 4 clients for 3 s, then a connection per transaction.
        pgbench = os.path.join(self.bindir, "pgbench")
        env = self.client_env()
        r = self.run_under_shim([pgbench, "-i", "-s", "1", "-q"], cpol, env=env, timeout=90,
                                what="pgbench -i")
        self.assertEqual(r.returncode, 0, r.describe() + srv.describe())
        for extra in (["-c", "4", "-j", "2", "-T", "3"], ["-C", "-c", "4", "-j", "2", "-T", "2"]):
            r = self.run_under_shim([pgbench, "-n"] + extra, cpol, env=env, timeout=90,
                                    what="pgbench %s" % " ".join(extra))
            self.assertEqual(r.returncode, 0, r.describe() + srv.describe())
            m = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
            self.assertTrue(m and int(m.group(1)) > 0, r.describe())
            self.assertIn("number of failed transactions: 0 ", r.stdout, r.describe())
        self.assertGreater(count_events(r.log, "established", rule="pg-out"),
                           int(m.group(1)) - 1, "one handshake per transaction with -C")
        self.assertEqual(count_events(srv.log(), "failed", rule="pg-in"), 1,
                         "only the plaintext psql fails\n" + srv.log()[-3000:])
        self.assertTrue(srv.alive(), srv.describe())

    def test_psql_cancel_request_from_signal_handler(self):
        srv = self.start_postgres()
        cpol = self.policy([self.out_rule("pg-out", ports=[self.port], identity="client")])
        argv = [os.path.join(self.bindir, "psql"), "-X", "-At", "-c", "select pg_sleep(60)"]
        sleeper = self.spawn(argv, policy=cpol, env=self.client_env(), name="psql-sleep")

        def sleeping():
            r = self.psql("select count(*) from pg_stat_activity where query like "
                          "'select pg_sleep(60)%' and state = 'active'", cpol)
            return r.stdout.strip() == "1"
        harness.wait_for(sleeping, 20, "pg_sleep(60) to be running in the backend")
        sleeper.proc.send_signal(signal.SIGINT)   # psql's handler calls PQcancel
        try:
            sleeper.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.fail("psql did not end after SIGINT (cancel request)\n" + sleeper.describe())
        self.assertIn("canceling statement due to user request", sleeper.stderr(),
                      sleeper.describe())
        self.assertEqual(count_events(sleeper.log(), "established", rule="pg-out"), 2,
                         "the query connection and the cancel connection\n" + sleeper.log())


# -------------------------------------------------------------- scanners --

SCAN_CIPHERS = ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256"]
SCAN_IANA = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]


@harness.skip_if_plain("the scanners probe the shim's TLS")
class Scanners(RuntimeCase):

    def start_scanned(self):
        pol = self.policy([self.in_rule("scanned", addresses=["127.0.0.1"], client_auth="none",
                                        protocols={"min": "TLS1.2"}, ciphers=SCAN_CIPHERS,
                                        groups=["X25519", "P-256"])], level="warn")
        srv, port = self.start_py_server("streams", pol)
        # One normal connection first, so that lazily made state is counted.
        self.after_scan_ok(srv, port)
        return srv, port, self.fd_count(srv.proc.pid)

    def after_scan_ok(self, srv, port):
        self.assertTrue(srv.alive(), "the server died during the scan\n" + srv.describe())
        c = self.s_client(port)
        self.assertIn(self.S_CLIENT_TOKEN, c.stdout(), c.describe() + srv.describe())
        r = self.tcp_client(port, "rw", 1 << 20, policy=self.policy([self.out_rule(
            "out", ports=[port], server_name="localhost")]))
        self.assert_echo_ok(r, 1 << 20)

    def test_nmap_sees_the_policy(self):
        nmap = find_program("nmap")
        srv, port, fds = self.start_scanned()
        r = self.run_plain([nmap, "-Pn", "-n", "-d", "-p", str(port), "--script",
                            "ssl-enum-ciphers,+ssl-heartbleed,+ssl-ccs-injection,+ssl-poodle,"
                            "+sslv2,+sslv2-drown,+tls-ticketbleed", "127.0.0.1"],
                           timeout=120, what="nmap")
        out = r.stdout
        self.assertEqual(r.returncode, 0, r.describe())
        sec = re.search(r"\|   TLSv1\.2:\s*\n(.*?)\|   TLSv1\.3:", out, re.S)
        self.assertTrue(sec, "no TLSv1.2 section\n" + out)
        self.assertEqual(re.findall(r"(TLS_ECDHE_\S+) \(ecdh_x25519\)", sec.group(1)),
                         SCAN_IANA, out)
        self.assertIn("cipher preference: server", sec.group(1), out)
        self.assertRegex(sec.group(1), r"compressors:\s*\n\|\s+NULL\n", out)
        for old in ("SSLv3:", "TLSv1.0:", "TLSv1.1:"):
            self.assertNotIn("|   " + old, out)
        self.assertIn("least strength: A", out)
        for script in ("ssl-heartbleed", "ssl-ccs-injection", "ssl-poodle", "sslv2",
                       "tls-ticketbleed"):
            self.assertIn("NSE: Finished %s against 127.0.0.1:%d" % (script, port), out)
        self.assertNotIn("VULNERABLE", out)
        self.after_scan_ok(srv, port)
        self.wait_fds(srv, fds, "the scanned server")

    def test_testssl_sees_the_policy(self):
        testssl = shutil.which("testssl") or find_program("testssl.sh")
        srv, port, fds = self.start_scanned()
        js = os.path.join(self.tmp, "testssl.json")
        # HEADER_MAXSLEEP: testssl.sh waits this long for an answer to its
        # HTTP probe, which an echo server never gives (the default is 5 s).
        r = self.run_plain([testssl, "--quiet", "--warnings", "off", "--color", "0",
                            "--nodns", "none", "--jsonfile", js,
                            "-p", "-P", "-f", "-H", "-I", "-R", "-C", "-BB",
                            "127.0.0.1:%d" % port], env={"HEADER_MAXSLEEP": "2"},
                           timeout=150, what="testssl.sh")
        try:
            with open(js) as f:
                found = {e["id"]: e for e in json.load(f)}
        except (OSError, ValueError) as e:
            self.fail("no JSON from testssl.sh (%s)\n%s" % (e, r.describe()))

        def finding(key):
            self.assertIn(key, found, "testssl.sh reported no %s\n%s" % (key, r.stdout))
            return found[key]["finding"]
        for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
            self.assertEqual(finding(proto), "not offered", proto)
        self.assertEqual(finding("TLS1_2"), "offered")
        self.assertTrue(finding("TLS1_3").startswith("offered"), finding("TLS1_3"))
        self.assertEqual(finding("cipherorder_TLSv1_2").split(), SCAN_CIPHERS)
        self.assertTrue(finding("cipher_order").startswith("server"), finding("cipher_order"))
        self.assertEqual(sorted(finding("PFS_ECDHE_curves").split()), ["X25519", "prime256v1"])
        tls12 = [c for c in finding("PFS_ciphers").split() if not c.startswith("TLS_")]
        self.assertEqual(sorted(tls12), sorted(SCAN_CIPHERS))
        self.assertEqual(finding("NPN"), "not offered")
        self.assertEqual(finding("ALPN"), "not offered")
        for vuln in ("heartbleed", "CCS", "ROBOT", "secure_client_renego", "CRIME_TLS"):
            self.assertEqual(found.get(vuln, {}).get("severity"), "OK",
                             "%s: %s" % (vuln, found.get(vuln)))
        self.assertIn("not vulnerable", finding("heartbleed"))
        self.assertIn("not vulnerable", finding("CCS"))
        self.assertIn("not vulnerable", finding("secure_client_renego"))
        self.assertIn("not vulnerable", finding("CRIME_TLS"))
        self.after_scan_ok(srv, port)
        self.wait_fds(srv, fds, "the scanned server")


if __name__ == "__main__":
    harness.main()
