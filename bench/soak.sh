#!/usr/bin/env bash
# soak.sh [HANDSHAKES]: full TLS handshakes (default 1,000,000) against a
# server under the shim, with the server's resident memory sampled as it
# goes. Prints one sample line per round, then the RSS slope in KB per
# 100,000 handshakes (least squares over the samples after the first round)
# and the server's descriptor count at the end. `make soak` runs it.
#
# Both ends are bench/loadgen (plain TCP) under the shim: the server
# (epoll-lt, crr: 64-byte request, 64-byte reply, server closes) with an
# inbound tls rule, the client with an outbound tls rule and
# session_resumption off, so every connection is a full handshake. Traffic
# stays on 127.0.0.1; rounds are bounded in time and SOAK_MAX_SECONDS
# (default 7200) bounds the whole run.
#
# Environment: TLSSHIM_BUILD_DIR (default <repo>/build), SOAK_THREADS
# (client threads, default 8), SOAK_ROUND_SECONDS (default 10).
set -euo pipefail
total="${1:-1000000}"
top="$(cd "$(dirname "$0")/.." && pwd)"
build="${TLSSHIM_BUILD_DIR:-$top/build}"
lib="$build/lib/libtlsshim.so"
loadgen="$build/bin/loadgen"
threads="${SOAK_THREADS:-8}"
round="${SOAK_ROUND_SECONDS:-10}"
max_seconds="${SOAK_MAX_SECONDS:-7200}"
for f in "$lib" "$loadgen"; do
  if [ ! -x "$f" ] && [ ! -f "$f" ]; then
    echo "soak: $f is missing: build first" >&2
    exit 2
  fi
done

work="$(mktemp -d /tmp/tlsshim-soak.XXXXXX)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

sh "$top/tests/gen_certs.sh" "$work/certs" >/dev/null
cat > "$work/policy.yaml" <<POLICY
version: 1
trust: {ca: {ca: certs/ca.pem}}
identities:
  srv: {cert: certs/server.pem, key: certs/server.key}
rules:
  - {name: in, direction: inbound, match: {addresses: [127.0.0.1]}, action: tls,
     tls: {identity: srv, trust: ca, client_auth: none}}
  - {name: out, direction: outbound, match: {addresses: [127.0.0.1]}, action: tls,
     tls: {trust: ca, server_name: localhost, session_resumption: false}}
log: {level: warn}
POLICY

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
preload="${TLSSHIM_TEST_PRELOAD_PREFIX:+$TLSSHIM_TEST_PRELOAD_PREFIX }$lib"
LD_PRELOAD="$preload" TLSSHIM_POLICY="$work/policy.yaml" TLSSHIM_LOG_FILE="$work/server.log" \
  "$loadgen" server --port "$port" --proto crr --model epoll-lt > "$work/server.out" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do
  grep -q READY "$work/server.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { echo "soak: server died: $(cat "$work/server.out")" >&2; exit 1; }
  sleep 0.05
done
grep -q READY "$work/server.out" || { echo "soak: server not READY within 10 s" >&2; exit 1; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status"; }
fds() { ls "/proc/$server_pid/fd" | wc -l; }

echo "soak: $total handshakes, $threads client threads, rounds of ${round}s, server pid $server_pid"
echo "handshakes=0 rss_kb=$(rss_kb) fds=$(fds)"
done_count=0
start=$(date +%s)
samples="$work/samples"
: > "$samples"
while [ "$done_count" -lt "$total" ]; do
  if [ $(( $(date +%s) - start )) -ge "$max_seconds" ]; then
    echo "soak: stopped after SOAK_MAX_SECONDS=$max_seconds" >&2
    exit 1
  fi
  out="$(LD_PRELOAD="$preload" TLSSHIM_POLICY="$work/policy.yaml" \
         TLSSHIM_LOG_FILE="$work/client.log" \
         timeout $((round + 60)) "$loadgen" client --port "$port" --test crr \
         --seconds "$round" --threads "$threads" 2>&1)" || {
    echo "soak: client round failed: $out" >&2
    tail -5 "$work/client.log" "$work/server.log" >&2 2>/dev/null || true
    exit 1
  }
  n="$(sed -n 's/.*RESULT cps=[^ ]* conns=\([0-9]*\).*/\1/p' <<<"$out")"
  if [ -z "$n" ] || [ "$n" -eq 0 ]; then
    echo "soak: no handshakes in a round: $out" >&2
    exit 1
  fi
  kill -0 "$server_pid" 2>/dev/null || { echo "soak: server died" >&2; exit 1; }
  done_count=$((done_count + n))
  r="$(rss_kb)"
  echo "handshakes=$done_count rss_kb=$r fds=$(fds) round_cps=$(sed -n 's/.*cps=\([0-9.]*\).*/\1/p' <<<"$out")"
  echo "$done_count $r" >> "$samples"
done
# Let the last connections close, then count descriptors (bounded wait).
for _ in $(seq 1 100); do
  [ "$(fds)" -le 8 ] && break
  sleep 0.1
done
failures="$(grep -c 'event=failed' "$work/server.log" 2>/dev/null || true)"
awk -v fds="$(fds)" -v secs="$(( $(date +%s) - start ))" -v failed="${failures:-0}" '
  NR > 1 { n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
  END {
    slope = 0
    if (n >= 2 && (n * sxx - sx * sx) != 0) {
      slope = (n * sxy - sx * sy) / (n * sxx - sx * sx) * 100000
    }
    printf "soak: done in %d s; rss slope %.1f KB per 100k handshakes; server descriptors at the end: %d; failed handshakes logged: %d\n", secs, slope, fds, failed
  }' "$samples"
