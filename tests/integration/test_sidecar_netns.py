#!/usr/bin/env python3
"""test_sidecar_netns.py: the sidecar topology of examples/sidecar, with network namespaces for pods.

Two namespaces joined by a veth pair stand for two pods (A 10.77.0.1, B
10.77.0.2). Each "pod" gets what the init container, ConfigMap and Secret
give it in Kubernetes: its own folder with policy.yaml and its own
certificates, and LD_PRELOAD/TLSSHIM_POLICY in the app's environment. An
unmodified server (python3 -m http.server) runs in B, an unmodified curl in
A; tcpdump on A's veth proves that only TLS crossed between the pods.

Needs root (CAP_NET_ADMIN) for `ip netns add`; skips, saying so, only when
the namespaces cannot be created.

Environment: TLSSHIM_BUILD_DIR (default <repo>/build), TLSSHIM_SOURCE_DIR.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CLI as TLSSHIM, LIB, SOURCE_DIR as TOP, read_until, stop  # noqa: E402
sys.path.insert(0, os.path.join(TOP, "examples", "demo"))
import pcap_check  # noqa: E402  (examples/demo/pcap_check.py)

PID = os.getpid()
NS_PREFIX = "tlsshim-sc-"
NS_A = "%s%d-a" % (NS_PREFIX, PID)
NS_B = "%s%d-b" % (NS_PREFIX, PID)
VETH_A = "tsa%d" % PID
VETH_B = "tsb%d" % PID
ADDR_A, ADDR_B = "10.77.0.1", "10.77.0.2"
PORT = 8080
CLIENT_ID = "spiffe://tlsshim.demo/client"


def sh(*args, timeout=30, check=True):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=timeout, check=check)


def delete_namespaces(names):
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def delete_stale_namespaces():
    """Removes namespaces left by an earlier run that was killed (-9)."""
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"(%s(\d+)-[ab])\b" % re.escape(NS_PREFIX), line)
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            delete_namespaces([m.group(1)])


class SidecarNetns(unittest.TestCase):
    def setUp(self):
        for f in (TLSSHIM, LIB):
            self.assertTrue(os.path.exists(f), "%s is missing: build first" % f)
        for tool in ("ip", "tcpdump", "curl"):
            self.assertIsNotNone(shutil.which(tool), "%s is not installed" % tool)
        delete_stale_namespaces()
        r = sh("ip", "netns", "add", NS_A, check=False)
        if r.returncode != 0:
            self.skipTest("cannot create network namespaces (needs root or "
                          "CAP_NET_ADMIN): %s" % r.stderr.strip())
        self.addCleanup(delete_namespaces, [NS_A, NS_B])
        # SIGTERM (ctest, a CI runner) still runs the cleanups.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        sh("ip", "netns", "add", NS_B)
        sh("ip", "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B)
        sh("ip", "link", "set", VETH_A, "netns", NS_A)
        sh("ip", "link", "set", VETH_B, "netns", NS_B)
        for ns, dev, addr in ((NS_A, VETH_A, ADDR_A), (NS_B, VETH_B, ADDR_B)):
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", addr + "/24", "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

        self.tmp = tempfile.mkdtemp(prefix="tlsshim-test-sidecar.")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.marker = "sidecar-marker-%d-%d" % (PID, time.time_ns() % 1000000)
        # One PKI; each pod gets only its own identity and the CA (the Secret).
        pki = os.path.join(self.tmp, "pki")
        sh(TLSSHIM, "pki", "init", pki, "--ip", "%s,127.0.0.1" % ADDR_B, timeout=60)
        self.pod_a = self.make_pod("pod-a", pki, "client", """
rules:
  - name: to-pod-b
    direction: outbound
    match: {addresses: [%s], ports: [%d]}
    action: tls
    tls: {identity: app, trust: mesh, peer_names: [%s]}
""" % (ADDR_B, PORT, ADDR_B))
        self.pod_b = self.make_pod("pod-b", pki, "server", """
rules:
  - name: web-in
    direction: inbound
    match: {ports: [%d]}
    action: tls
    tls: {identity: app, trust: mesh, client_auth: required, peer_names: ["%s"]}
""" % (PORT, CLIENT_ID))
        os.mkdir(os.path.join(self.pod_b, "www"))
        with open(os.path.join(self.pod_b, "www", "index.html"), "w") as f:
            f.write("<html><body>%s</body></html>\n" % self.marker)

    def make_pod(self, name, pki, who, rules):
        """A pod's injected files: policy.yaml (the ConfigMap) and certs/ (the Secret)."""
        pod = os.path.join(self.tmp, name)
        os.makedirs(os.path.join(pod, "certs"))
        for src, dst in (("ca.pem", "ca.pem"), (who + ".pem", "tls.crt"),
                         (who + ".key", "tls.key")):
            shutil.copy(os.path.join(pki, src), os.path.join(pod, "certs", dst))
        with open(os.path.join(pod, "policy.yaml"), "w") as f:
            f.write("""version: 1
default_action: plaintext
identities:
  app: {cert: certs/tls.crt, key: certs/tls.key}
trust:
  mesh: {ca: certs/ca.pem}
%s
log: {level: info}
""" % rules.strip("\n"))
        sh(TLSSHIM, "check", os.path.join(pod, "policy.yaml"))
        return pod

    def in_pod(self, ns, pod, argv, shim=True, **kw):
        """Starts argv in namespace ns, with the library and policy injected."""
        env = ["env"]
        if shim:
            env += ["LD_PRELOAD=" + LIB, "TLSSHIM_POLICY=" + os.path.join(pod, "policy.yaml"),
                    "TLSSHIM_LOG=info", "TLSSHIM_LOG_FILE=" + os.path.join(pod, "shim.log")]
        return subprocess.Popen(["ip", "netns", "exec", ns] + env + argv, cwd=pod, **kw)

    def log_lines(self, pod, event):
        path = os.path.join(pod, "shim.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [l for l in f.read().splitlines() if " event=%s " % event in l + " "]

    def test_only_tls_crosses_between_pods(self):
        server = self.in_pod(NS_B, self.pod_b, [
            sys.executable, "-u", "-m", "http.server", str(PORT), "--bind", ADDR_B,
            "--directory", "www"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(stop, server)
        read_until(server.stdout, b"Serving HTTP on", 30)

        pcap = os.path.join(self.tmp, "veth.pcap")
        dump = subprocess.Popen(
            ["ip", "netns", "exec", NS_A, "timeout", "120", "tcpdump", "-i", VETH_A, "-n",
             "-U", "--immediate-mode", "-w", pcap, "tcp port %d" % PORT],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(stop, dump, signal.SIGINT)
        read_until(dump.stderr, b"listening on", 30)

        client = self.in_pod(NS_A, self.pod_a, [
            "curl", "-sS", "--max-time", "20", "http://%s:%d/" % (ADDR_B, PORT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = client.communicate(timeout=60)
        self.assertEqual(client.returncode, 0, err)
        self.assertIn(self.marker.encode(), out)

        # Wait (bounded) until the capture holds the whole connection, then check it.
        deadline = time.monotonic() + 15
        while True:
            with open(pcap, "rb") as f:
                data = f.read()
            try:
                summary = pcap_check.analyse(data, PORT, self.marker)
                if summary["closed"]:
                    break
                why = "not closed yet"
            except pcap_check.Incomplete as e:
                why = str(e)
            except pcap_check.NotTLS as e:
                self.fail("not only TLS crossed between the pods: %s" % e)
            if time.monotonic() > deadline:
                self.fail("the capture did not hold the finished connection within 15 s: " + why)
            time.sleep(0.1)
        stop(dump, signal.SIGINT)
        self.assertEqual(summary["connections"], 1)
        self.assertEqual(summary["first_client_bytes"][:5], "16 03")
        self.assertIn("application_data", summary["types"])
        self.assertTrue(set(summary["types"]) <= set(pcap_check.CONTENT_TYPES.values()))
        # Between the pods' addresses, over the veth.
        ips = {(s, d) for s, _, d, _, _, _, _ in pcap_check._tcp_segments(data)}
        self.assertEqual(ips, {(ADDR_A, ADDR_B), (ADDR_B, ADDR_A)})

        # Each side's shim logged the other's identity.
        srv = self.log_lines(self.pod_b, "established")
        self.assertEqual(len(srv), 1, srv)
        self.assertIn(" direction=inbound rule=web-in local=%s:%d peer=%s:" % (ADDR_B, PORT, ADDR_A),
                      srv[0])
        self.assertTrue(srv[0].endswith(" peer_identity=" + CLIENT_ID), srv[0])
        cli = self.log_lines(self.pod_a, "established")
        self.assertEqual(len(cli), 1, cli)
        self.assertIn(" direction=outbound rule=to-pod-b peer=%s:%d " % (ADDR_B, PORT), cli[0])
        self.assertIn(" version=TLSv1.3 ", cli[0])

        # Control: the same curl in pod A without the injection gets no page.
        plain = self.in_pod(NS_A, self.pod_a, [
            "curl", "-sS", "--max-time", "10", "http://%s:%d/" % (ADDR_B, PORT)],
            shim=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = plain.communicate(timeout=30)
        self.assertNotEqual(plain.returncode, 0)
        self.assertNotIn(self.marker.encode(), out)


class SidecarExamplePolicies(unittest.TestCase):
    """The policies shipped in examples/sidecar pass `tlsshim check`."""

    def setUp(self):
        self.assertTrue(os.path.exists(TLSSHIM), "%s is missing: build first" % TLSSHIM)
        self.tmp = tempfile.mkdtemp(prefix="tlsshim-test-sidecar-policies.")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.certs = os.path.join(self.tmp, "certs")
        sh(TLSSHIM, "pki", "init", self.certs, "--names", "web,localhost", timeout=60)

    def check(self, path):
        r = sh(TLSSHIM, "check", path, check=False)
        self.assertEqual(r.returncode, 0, "%s: %s%s" % (path, r.stdout, r.stderr))

    def test_compose_policies(self):
        for name in ("web.yaml", "client.yaml"):
            shutil.copy(os.path.join(TOP, "examples", "sidecar", "compose", name), self.tmp)
            self.check(os.path.join(self.tmp, name))

    def test_k8s_configmap_policies(self):
        with open(os.path.join(TOP, "examples", "sidecar", "k8s", "policies.yaml")) as f:
            text = f.read()
        # Each ConfigMap's "policy.yaml: |" literal block, de-indented.
        blocks = re.findall(r"^(  )policy\.yaml: \|\n((?:    .*\n|\n)+)", text, re.M)
        self.assertEqual(len(blocks), 2)
        for i, (_, block) in enumerate(blocks):
            who = ("server", "client")[i]
            secret = os.path.join(self.tmp, "secret-%d" % i)  # as the Secret volume
            os.mkdir(secret)
            for src, dst in (("ca.pem", "ca.crt"), (who + ".pem", "tls.crt"),
                             (who + ".key", "tls.key")):
                shutil.copy(os.path.join(self.certs, src), os.path.join(secret, dst))
            policy = "\n".join(l[4:] for l in block.splitlines())
            self.assertIn("/var/run/secrets/tlsshim/", policy)
            path = os.path.join(self.tmp, "policy-%d.yaml" % i)
            with open(path, "w") as f:
                f.write(policy.replace("/var/run/secrets/tlsshim/", secret + "/"))
            self.check(path)


if __name__ == "__main__":
    unittest.main(verbosity=2)
