"""test_passthrough.py: with a policy that selects nothing, programs behave
exactly as without the shim, including programs that use the system's
OpenSSL; and the shim's own TLS works in the same process as theirs."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TIMEOUT = 30


class Passthrough(harness.ShimTestCase):

    def same_as_plain(self, argv):
        plain = self.run_plain(argv, timeout=TIMEOUT)
        shim = self.run_under_shim(argv, self.nothing_policy(), timeout=TIMEOUT)
        self.assertEqual(shim.returncode, plain.returncode,
                         "exit status differs under the shim\n" + shim.describe())
        self.assertEqual(shim.stdout, plain.stdout,
                         "stdout differs under the shim\n" + shim.describe())
        self.assertEqual(shim.stderr, plain.stderr,
                         "stderr differs under the shim\n" + shim.describe())
        return shim

    def test_true(self):
        self.same_as_plain(["/bin/true"])

    def test_false(self):
        self.same_as_plain(["/bin/false"])

    def test_ls(self):
        self.same_as_plain(["ls", "/"])

    def test_python(self):
        self.same_as_plain([sys.executable, "-c", "pass"])

    def test_shell_pipeline(self):
        self.same_as_plain(["sh", "-c", "echo a | cat; ls / | wc -l; exit 3"])

    def test_plain_tcp_unchanged(self):
        srv, port = self.start_echo_server("epoll-lt", policy=self.nothing_policy())
        r = self.tcp_client(port, "rw", 4 << 20, policy=self.nothing_policy())
        self.assert_echo_ok(r, 4 << 20)
        self.assertNotIn('"established"', r.log)
        self.assertNotIn('"established"', srv.log())

    def test_plain_tcp_to_plain_server(self):
        srv, port = self.start_echo_server("thread")
        r = self.tcp_client(port, "sendrecv", 1 << 20, policy=self.nothing_policy())
        self.assert_echo_ok(r, 1 << 20)

    # -- programs with their own TLS (the system OpenSSL) --

    def www(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write("page %s\n" % name)
        return d

    def test_curl_own_openssl(self):
        srv, port = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-WWW"],
                                        cwd=self.www("a"))
        r = self.run_under_shim(["curl", "-sS", "--fail", "--max-time", str(TIMEOUT),
                                 "--cacert", self.cert("ca.pem"),
                                 "https://localhost:%d/index.html" % port],
                                self.nothing_policy(), timeout=TIMEOUT + 5, what="curl")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stdout, "page a\n")

    def test_python_ssl_own_openssl(self):
        srv, port = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-WWW"],
                                        cwd=self.www("b"))
        code = ("import ssl, socket, sys\n"
                "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
                "s = ctx.wrap_socket(socket.create_connection(('localhost', int(sys.argv[2])),"
                " timeout=20), server_hostname='localhost')\n"
                "s.sendall(b'GET /index.html HTTP/1.0\\r\\n\\r\\n')\n"
                "data = b''\n"
                "while True:\n"
                "    b = s.recv(4096)\n"
                "    if not b: break\n"
                "    data += b\n"
                "print(s.version(), data.split(b'\\r\\n\\r\\n', 1)[1].decode(), end='')\n")
        r = self.run_under_shim([sys.executable, "-c", code, self.cert("ca.pem"), str(port)],
                                self.nothing_policy(), timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stdout, "TLSv1.3 page b\n")

    @harness.skip_if_plain("the shim's TLS half needs the shim")
    def test_own_tls_and_shim_tls_in_one_curl(self):
        a, port_a = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-WWW"],
                                        cwd=self.www("a"), name="s_server-a")
        b, port_b = self.start_s_server(["-cert", self.cert("server.pem"), "-key",
                                         self.cert("server.key"), "-WWW"],
                                        cwd=self.www("b"), name="s_server-b")
        pol = self.policy([self.out_rule("shim-b", ports=[port_b])])
        r = self.run_under_shim(["curl", "-sS", "--fail", "--max-time", str(TIMEOUT),
                                 "--cacert", self.cert("ca.pem"),
                                 "https://localhost:%d/index.html" % port_a,
                                 "http://127.0.0.1:%d/index.html" % port_b],
                                pol, timeout=TIMEOUT + 5, what="curl")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stdout, "page a\npage b\n")
        self.assert_log_event(r.log, "established", rule="shim-b")


if __name__ == "__main__":
    harness.main()
