#!/usr/bin/env bash
# run_tls_fuzz.sh OUT_DIR SECONDS: builds the TLS layer's libFuzzer target
# (tests/fuzz/tls_fuzz.c) with clang (fuzzer, address, undefined) straight
# from policy/*.c, shim/tls/*.c, shim/libc.c and the BoringSSL static
# libraries of a build dir (TLSSHIM_BUILD_DIR, default <repo>/build), makes
# test certificates and a policy once, seeds a corpus with real ClientHello
# and server flights, and fuzzes for SECONDS. Exits non-zero on a crash, leak
# or undefined behaviour.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 OUT_DIR SECONDS" >&2
  exit 2
fi
out="$1"
seconds="$2"
top="$(cd "$(dirname "$0")/../.." && pwd)"
build="${TLSSHIM_BUILD_DIR:-$top/build}"
cc="${CC_FUZZ:-clang}"
libyaml="${LIBYAML_A:-/usr/lib/x86_64-linux-gnu/libyaml.a}"
bssl_src="$(sed -n 's/^BORINGSSL_SOURCE_DIR:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)"
bssl_src="${bssl_src:-$top/build/_deps/boringssl-src}"
for f in "$build/lib/libbssl_ssl.a" "$build/lib/libbssl_crypto.a" \
         "$bssl_src/src/include/openssl/ssl.h"; do
  if [ ! -f "$f" ]; then
    echo "run_tls_fuzz: $f is missing: build $build first" >&2
    exit 2
  fi
done
mkdir -p "$out/corpus" "$out/artifacts"
out="$(cd "$out" && pwd)"

"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=all -fno-omit-frame-pointer \
  -DTLSSHIM_BORINGSSL_REVISION="\"$(cat "$bssl_src/BORINGSSL_REVISION" 2>/dev/null || echo unknown)\"" \
  -I"$top" -isystem "$bssl_src/src/include" \
  "$top"/tests/fuzz/tls_fuzz.c "$top"/policy/*.c "$top"/shim/tls/*.c \
  "$top"/shim/libc.c "$libyaml" \
  "$build/lib/libbssl_ssl.a" "$build/lib/libbssl_crypto.a" \
  -lstdc++ -lpthread -ldl -o "$out/tls_fuzz"

# Certificates and the policy, made once.
sh "$top/tests/gen_certs.sh" "$out/certs" >/dev/null
cat > "$out/policy.yaml" <<POLICY
version: 1
trust: {ca: {ca: certs/ca.pem}}
identities:
  srv: {cert: certs/server.pem, key: certs/server.key}
  client: {cert: certs/client.pem, key: certs/client.key}
rules:
  - {name: in, direction: inbound, action: tls, tls: {identity: srv, trust: ca, client_auth: optional}}
  - {name: out, direction: outbound, action: tls, tls: {identity: client, trust: ca, server_name: localhost}}
POLICY

# Seeds: byte 0 (bit 0: EOF after the bytes) then real handshake bytes from
# python's OpenSSL: ClientHellos (TLS 1.2 and 1.3) and the server flights
# answering them.
python3 - "$out/corpus" "$out/certs" <<'PY'
import os, ssl, sys
corpus, certs = sys.argv[1], sys.argv[2]
def flights(maxv):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.maximum_version = maxv
    s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    s.load_cert_chain(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"))
    ci, co, si, so = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    cl = c.wrap_bio(ci, co, server_hostname="localhost")
    sv = s.wrap_bio(si, so, server_side=True)
    try:
        cl.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = co.read()
    si.write(hello)
    try:
        sv.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return hello, so.read()
n = 0
for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    hello, server = flights(v)
    for prefix in (b"\x00", b"\x01"):
        for blob in (hello, server, hello[:50]):
            with open(os.path.join(corpus, "seed-%d" % n), "wb") as f:
                f.write(prefix + blob)
            n += 1
print("run_tls_fuzz: %d seed files" % n)
PY

# -error_exitcode makes any finding (crash, leak, UB) a non-zero exit.
cd "$out"
TLSSHIM_FUZZ_POLICY="$out/policy.yaml" "$out/tls_fuzz" "$out/corpus" \
  -max_total_time="$seconds" -artifact_prefix="$out/artifacts/" \
  -error_exitcode=1 -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1
