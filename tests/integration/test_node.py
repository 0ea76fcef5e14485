"""test_node.py: Node.js (libuv: epoll, readv/writev) under the shim. A plain
`http` server and a plain `http` client talk mutual TLS through the shim
for 1,000 keep-alive requests (server: inbound rule, client_auth required,
peer_names; client: outbound rule presenting the client identity), every
response body checked; the same server answers curl (not under the shim)
over https.
"""

import hashlib
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

NODE = shutil.which("node")
CURL = shutil.which("curl")
CLIENT_ID = "spiffe://test/ns/default/sa/client"
REQUESTS = 1000

# The body of the answer to a request: deterministic from the path and the
# request body, sizes from a few bytes to ~70 KiB (several TLS records).
SERVER_JS = r"""
const http = require('http');
const fs = require('fs');
const crypto = require('crypto');
function body(path, reqBody) {
  const m = /^\/item\/(\d+)$/.exec(path);
  const i = m ? Number(m[1]) : 0;
  const h = crypto.createHash('sha256').update(path + '|' + reqBody).digest('hex');
  return 'item ' + i + ' ' + h + ' ' + 'x'.repeat((i * 977) % 70000) + '\n';
}
const srv = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const b = Buffer.from(body(req.url, Buffer.concat(chunks).toString()));
    res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': b.length});
    res.end(b);
  });
});
srv.keepAliveTimeout = 30000;
srv.listen(0, '127.0.0.1', () => {
  const tmp = process.argv[2] + '.tmp';
  fs.writeFileSync(tmp, String(srv.address().port) + '\n');
  fs.renameSync(tmp, process.argv[2]);
});
"""

CLIENT_JS = r"""
const http = require('http');
const crypto = require('crypto');
const port = Number(process.argv[2]);
const total = Number(process.argv[3]);
function body(path, reqBody) {
  const m = /^\/item\/(\d+)$/.exec(path);
  const i = m ? Number(m[1]) : 0;
  const h = crypto.createHash('sha256').update(path + '|' + reqBody).digest('hex');
  return 'item ' + i + ' ' + h + ' ' + 'x'.repeat((i * 977) % 70000) + '\n';
}
const agent = new http.Agent({keepAlive: true, maxSockets: 4});
let next = 0, done = 0, failed = false;
const sockets = new Set();
function fail(msg) {
  if (!failed) {
    failed = true;
    console.error('node client: ' + msg);
    process.exit(1);
  }
}
function one() {
  if (next >= total) return;
  const i = next++;
  const path = '/item/' + i;
  const post = i % 3 === 0;
  const reqBody = post ? 'p'.repeat((i * 331) % 40000) : '';
  const req = http.request({host: '127.0.0.1', port, path, agent,
                            method: post ? 'POST' : 'GET',
                            headers: post ? {'Content-Length': Buffer.byteLength(reqBody)} : {}},
    (res) => {
      sockets.add(res.socket);
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const got = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) fail('request ' + i + ': status ' + res.statusCode);
        if (got !== body(path, reqBody)) {
          fail('request ' + i + ': body differs (' + got.length + ' bytes: ' +
               JSON.stringify(got.slice(0, 80)) + ')');
        }
        done++;
        if (done === total) {
          console.log('node client: ok requests=' + done + ' sockets=' + sockets.size);
          agent.destroy();
        } else {
          one();
        }
      });
    });
  req.on('error', (e) => fail('request ' + i + ': ' + e.message));
  req.end(reqBody);
}
setTimeout(() => fail('timed out with ' + done + ' of ' + total + ' responses'), 60000).unref();
for (let k = 0; k < 8; k++) one();
"""


@unittest.skipUnless(NODE, "node is not installed")
class NodeTest(harness.ShimTestCase):

    def server_policy(self):
        return self.policy([self.in_rule("in", peer_names=[CLIENT_ID])])

    def start_server(self):
        js = os.path.join(self.tmp, "server.js")
        with open(js, "w") as f:
            f.write(SERVER_JS)
        ready = self._next("ready")
        srv = self.spawn([NODE, js, ready], policy=self.server_policy(), name="node-server",
                         env={"UV_USE_IO_URING": "0"})
        return srv, self.wait_ready_file(srv, ready, timeout=30)

    def test_http_client_and_server_mutual_tls_keepalive(self):
        srv, port = self.start_server()
        js = os.path.join(self.tmp, "client.js")
        with open(js, "w") as f:
            f.write(CLIENT_JS)
        policy = self.policy([self.out_rule("out", ports=[port], identity="client")])
        t0 = time.monotonic()
        r = self.run_under_shim([NODE, js, str(port), str(REQUESTS)], policy, timeout=75,
                                what="the node http client (%d requests)" % REQUESTS,
                                env={"UV_USE_IO_URING": "0"})
        self.assertEqual(r.returncode, 0, "node client failed\n%s\nserver:\n%s"
                         % (r.describe(), srv.describe()))
        self.assertIn("node client: ok requests=%d" % REQUESTS, r.stdout, r.describe())
        sys.stderr.write("  [%d requests in %.2fs: %s] "
                         % (REQUESTS, time.monotonic() - t0, r.stdout.strip()))
        self.assertTrue(srv.alive(), srv.describe())
        if not harness.PLAIN:
            out = [e for e in self.log_events(r.log) if e.get("event") == "established"]
            inb = [e for e in self.log_events(srv.log()) if e.get("event") == "established"]
            # Keep-alive: a handful of connections carry all the requests.
            self.assertTrue(1 <= len(out) <= 8, "outbound TLS connections: %d\n%s"
                            % (len(out), r.log[-3000:]))
            self.assertEqual(len(inb), len(out), srv.log()[-3000:])
            for e in inb:
                self.assertEqual(e.get("peer_identity"), CLIENT_ID, e)
            for e in out:
                self.assertIn("spiffe://test/ns/default/sa/server",
                              str(e.get("peer_identity")), e)
            self.assertEqual([e for e in self.log_events(srv.log() + r.log)
                              if e.get("event") == "failed"], [])

    @unittest.skipUnless(CURL, "curl is not installed")
    @harness.skip_if_plain()
    def test_curl_over_https(self):
        srv, port = self.start_server()
        # Mutual TLS is required by the rule: curl presents the client
        # certificate; without one it is refused.
        for path, i in (("/item/5", 5), ("/item/70", 70), ("/", 0)):
            r = self.run_plain([CURL, "-sS", "--max-time", "20", "--cacert", self.cert("ca.pem"),
                                "--cert", self.cert("client.pem"), "--key",
                                self.cert("client.key"), "https://localhost:%d%s" % (port, path)],
                               timeout=30, what="curl https://localhost:%d%s" % (port, path))
            self.assertEqual(r.returncode, 0, r.describe() + "\nserver:\n" + srv.describe())
            h = hashlib.sha256((path + "|").encode()).hexdigest()
            self.assertEqual(r.stdout, "item %d %s %s\n" % (i, h, "x" * ((i * 977) % 70000)),
                             "curl got a different body for %s" % path)
        r = self.run_plain([CURL, "-sS", "--max-time", "20", "--cacert", self.cert("ca.pem"),
                            "https://localhost:%d/item/1" % port],
                           timeout=30, what="curl without a client certificate")
        self.assertNotEqual(r.returncode, 0, "curl without a client certificate was served\n"
                            + r.describe())
        self.assertTrue(srv.alive(), srv.describe())
        self.assert_log_event(srv.log(), "established", peer_identity=CLIENT_ID)
        self.assert_log_event(srv.log(), "failed")


if __name__ == "__main__":
    harness.main()
