#!/usr/bin/env bash
# The demo behind `make demo`: an unmodified plaintext HTTP server and an
# unmodified curl talk mutual TLS through libtlsshim.so; then the wire is checked.
#
# Environment: TLSSHIM_BUILD_DIR (default <repo>/build) holds bin/tlsshim and
# lib/libtlsshim.so; TLSSHIM_DEMO_KEEP=1 keeps the work folder for inspection.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
here="$top/examples/demo"
build=${TLSSHIM_BUILD_DIR:-$top/build}
tlsshim="$build/bin/tlsshim"
lib="$build/lib/libtlsshim.so"

die() {
  printf 'demo: %s\n' "$*" >&2
  exit 1
}

[ -x "$tlsshim" ] || die "$tlsshim not found: run 'make build' first (or set TLSSHIM_BUILD_DIR)"
[ -f "$lib" ] || die "$lib not found: run 'make build' first (or set TLSSHIM_BUILD_DIR)"
for tool in python3 curl openssl timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' on PATH"
done
# The real interpreter, not a wrapper script (pyenv, ...): `tlsshim run`
# inspects the binary it is asked to run.
python=$(python3 -c 'import sys; print(sys.executable)') || die "python3 does not run"
[ -x "$python" ] || die "python3 reports no usable interpreter ('$python')"

work=$(mktemp -d "${TMPDIR:-/tmp}/tlsshim-demo.XXXXXX")
pids=()

# stop PID: TERM, then KILL if it is still there after 5 s; reaps it.
stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf 'demo: pid %s ignored TERM for 5 s, killing it\n' "$pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    stop "$pid"
  done
  if [ -n "${TLSSHIM_DEMO_KEEP:-}" ]; then
    printf 'demo: files kept in %s\n' "$work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# show_logs: what went wrong, for a failure message.
show_logs() {
  local f
  for f in server.log client.log server.out; do
    if [ -s "$work/$f" ]; then
      printf -- '--- %s (last lines)\n' "$f" >&2
      tail -n 8 "$work/$f" >&2
    fi
  done
}

fail() {
  printf 'demo: %s\n' "$*" >&2
  show_logs
  exit 1
}

# listening PORT: true when something listens on 127.0.0.1:PORT (reads
# /proc/net/tcp, so checking makes no connection the server would see).
listening() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v want="0100007F:$hex" '$2 == want && $4 == "0A" { found = 1 } END { exit !found }' \
    /proc/net/tcp
}

# failure_reason N: the reason of the server shim's Nth failure log line,
# waiting up to 5 s for it (the server logs after it has sent its alert).
failure_reason() {
  local n=$1 deadline=$((SECONDS + 5))
  until [ "$(grep -c 'event=failed' server.log 2>/dev/null)" -ge "$n" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the server's shim logged no failure #$n within 5 s"
    sleep 0.1
  done
  grep 'event=failed' server.log | sed -n "${n}s/.* reason=\"\([^\"]*\)\".*/\1/p"
}

# field KEY < log line: the value of KEY=value in a shim log line.
field() {
  sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" | head -n 1
}

cd "$work"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
marker="tlsshim-demo-marker-$RANDOM$RANDOM"
client_id="spiffe://tlsshim.demo/client"

# 1. A demo PKI, two policies and a page to serve.
"$tlsshim" pki init certs >pki.out 2>&1 || { cat pki.out >&2; die "tlsshim pki init failed"; }
for f in ca.pem server.pem server.key client.pem client.key; do
  [ -s "certs/$f" ] || die "tlsshim pki init did not write certs/$f"
done

cat >server.yaml <<EOF
# Server side: every connection accepted on port $port is TLS, and the
# client must present a certificate for $client_id.
version: 1
identities:
  server: {cert: certs/server.pem, key: certs/server.key}
trust:
  demo: {ca: certs/ca.pem}
rules:
  - name: web-in
    direction: inbound
    match: {ports: [$port]}
    action: tls
    tls:
      identity: server
      trust: demo
      client_auth: required
      peer_names: ["$client_id"]
log: {level: info}
EOF

cat >client.yaml <<EOF
# Client side: connections to 127.0.0.1:$port are TLS; the server must
# prove it is "localhost" under the demo CA; we present the client identity.
version: 1
identities:
  client: {cert: certs/client.pem, key: certs/client.key}
trust:
  demo: {ca: certs/ca.pem}
rules:
  - name: web-out
    direction: outbound
    match: {addresses: [127.0.0.1], ports: [$port]}
    action: tls
    tls:
      identity: client
      trust: demo
      server_name: localhost
log: {level: info}
EOF

mkdir www
cat >www/index.html <<EOF
<!doctype html>
<html><head><title>Hello from an unmodified plaintext server</title></head>
<body><p>$marker</p></body></html>
EOF

"$tlsshim" check server.yaml >check.out 2>&1 || { cat check.out >&2; die "tlsshim check server.yaml failed"; }
"$tlsshim" check client.yaml >check.out 2>&1 || { cat check.out >&2; die "tlsshim check client.yaml failed"; }

# 2. The unmodified server, under the shim.
TLSSHIM_LOG=info TLSSHIM_LOG_FILE="$work/server.log" \
  "$tlsshim" run -p server.yaml -- "$python" -m http.server "$port" --bind 127.0.0.1 \
  --directory www >server.out 2>&1 &
server_pid=$!
pids+=("$server_pid")

deadline=$((SECONDS + 15))
until listening "$port"; do
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited before listening on port $port"
  [ "$SECONDS" -lt "$deadline" ] || fail "the server did not listen on port $port within 15 s"
  sleep 0.1
done

# 3. A capture of the exchange, when we can (root and tcpdump).
capture=""
if [ "$(id -u)" -eq 0 ] && command -v tcpdump >/dev/null 2>&1; then
  : >tcpdump.out # exists before tcpdump opens it, for the grep below
  tcpdump -i lo -n -U --immediate-mode -w wire.pcap "tcp port $port" >tcpdump.out 2>&1 &
  tcpdump_pid=$!
  pids+=("$tcpdump_pid")
  deadline=$((SECONDS + 10))
  until grep -q 'listening on' tcpdump.out; do
    if ! kill -0 "$tcpdump_pid" 2>/dev/null; then
      capture="--  tcpdump capture skipped ($(head -n 1 tcpdump.out))"
      break
    fi
    [ "$SECONDS" -lt "$deadline" ] || fail "tcpdump did not start capturing within 10 s"
    sleep 0.1
  done
  [ -n "$capture" ] || capture=running
else
  capture="--  tcpdump capture skipped (needs root and tcpdump)"
fi

# 4. The unmodified client, under the shim: plain HTTP as far as curl knows.
if ! TLSSHIM_LOG=info TLSSHIM_LOG_FILE="$work/client.log" \
  timeout 30 "$tlsshim" run -p client.yaml -- curl -sS --max-time 20 \
  "http://127.0.0.1:$port/" >page.html 2>curl.err; then
  cat curl.err >&2
  fail "curl under the shim did not fetch the page"
fi
grep -q "$marker" page.html || fail "curl under the shim got something else than the page"
title=$(sed -n 's:.*<title>\(.*\)</title>.*:\1:p' page.html | head -n 1)

if [ "$capture" = running ]; then
  # Wait until the capture holds the whole exchange (both FINs), then stop it.
  deadline=$((SECONDS + 10))
  while :; do
    set +e
    "$python" "$here/pcap_check.py" wire.pcap --port "$port" --marker "$marker" \
      --require-closed >pcap.out 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 3 ] || break
    [ "$SECONDS" -lt "$deadline" ] || fail "the capture did not show the connection closing within 10 s"
    sleep 0.1
  done
  stop "$tcpdump_pid"
  [ "$rc" -eq 0 ] || fail "the capture shows more than TLS: $(cat pcap.out)"
  capture="ok  tcpdump on lo: $(cat pcap.out); the page never in clear"
fi

# 5. Raw checks with tools that are not under the shim.
request='GET / HTTP/1.0\r\nHost: localhost\r\n\r\n'
# shellcheck disable=SC2059
printf "$request" | timeout 20 openssl s_client -connect "127.0.0.1:$port" \
  -servername localhost -CAfile certs/ca.pem -verify_return_error \
  -cert certs/client.pem -key certs/client.key -ign_eof >sclient-cert.out 2>&1 || true
grep -q "$marker" sclient-cert.out ||
  fail "openssl s_client with the client certificate did not get the page: $(grep -m1 -i error sclient-cert.out)"
sclient_version=$(sed -n 's/^ *Protocol *: *//p' sclient-cert.out | head -n 1)
[ -n "$sclient_version" ] ||
  sclient_version=$(sed -n 's/^New, \([^,]*\),.*/\1/p' sclient-cert.out | head -n 1)

# shellcheck disable=SC2059
printf "$request" | timeout 20 openssl s_client -connect "127.0.0.1:$port" \
  -servername localhost -CAfile certs/ca.pem -verify_return_error \
  -ign_eof >sclient-nocert.out 2>&1 || true
if grep -q "$marker" sclient-nocert.out; then
  fail "the server sent the page to a client without a certificate"
fi
why=$(grep -o -m1 -E '(tlsv1[0-9]*|sslv3) alert [a-z ]*' sclient-nocert.out || true)
[ -n "$why" ] || why=$(grep -o -m1 -E 'errno=[0-9]+|Connection reset by peer|closed' sclient-nocert.out || true)
[ -n "$why" ] || why="no page"
why="$why; server log: $(failure_reason 1)"

set +e
timeout 20 curl -sS --max-time 10 "http://127.0.0.1:$port/" >plain.html 2>plain.err
plain_rc=$?
set -e
if [ "$plain_rc" -eq 0 ] && grep -q "$marker" plain.html; then
  fail "plain curl without the shim got the page: the port is not TLS"
fi
plain_why=$(head -n 1 plain.err)
[ -n "$plain_why" ] || plain_why="curl exit $plain_rc"
plain_why="$plain_why; server log: $(failure_reason 2)"

# 6. What the shims logged.
srv_line=$(grep -m1 'event=established' server.log || true)
cli_line=$(grep -m1 'event=established' client.log || true)
[ -n "$srv_line" ] || fail "the server's shim logged no established connection"
[ -n "$cli_line" ] || fail "the client's shim logged no established connection"
srv_peer=$(field peer_identity <<<"$srv_line")
[ "$srv_peer" = "$client_id" ] || fail "the server saw client identity '$srv_peer', wanted $client_id"

stop "$server_pid"

cat <<EOF
tlsshim demo: an unmodified HTTP server and an unmodified curl, mutual TLS on the wire
  pki        tlsshim pki init: a demo CA, server cert (localhost, 127.0.0.1), client cert ($client_id)
  server     tlsshim run -p server.yaml -- python3 -m http.server $port --bind 127.0.0.1
             inbound port $port: TLS, client certificate required, allowed peer $client_id
  client     tlsshim run -p client.yaml -- curl -s http://127.0.0.1:$port/
             outbound 127.0.0.1:$port: TLS, server verified as "localhost" under the demo CA
  fetched    "$title" ($(wc -c <page.html) bytes; curl spoke plain HTTP)
  handshake  $(field version <<<"$cli_line") $(field cipher <<<"$cli_line") $(field group <<<"$cli_line"), resumed=$(field resumed <<<"$cli_line")
  identities server saw client $srv_peer; client saw server $(field peer_identity <<<"$cli_line")
  server log ${srv_line}
proof that the wire carried TLS (tools not under the shim):
  ok  openssl s_client with the client certificate: page received over ${sclient_version:-TLS}
  ok  openssl s_client without a client certificate: refused ($why)
  ok  plain curl without the shim: no page ($plain_why)
  ${capture}
stopped the server; the demo passed.
EOF
