#!/usr/bin/env bash
# Checks the module boundaries of STYLE.md: who may include what.
set -u
top="$1"
cd "$top" || exit 2
fail=0
bad() { echo "layout: $*"; fail=1; }
# BoringSSL headers only in shim/tls/.
for f in $(grep -rl '#include <openssl/' --include='*.c' --include='*.h' shim policy cli include 2>/dev/null); do
  case "$f" in shim/tls/*) ;; *) bad "$f includes BoringSSL outside shim/tls/";; esac
done
# libyaml only in the policy loader.
for f in $(grep -rl '#include <yaml.h>' --include='*.c' --include='*.h' shim policy cli include 2>/dev/null); do
  case "$f" in policy/load.c) ;; *) bad "$f includes <yaml.h> outside policy/load.c";; esac
done
# uthash only in the fd table.
for f in $(grep -rl '#include <uthash.h>' --include='*.c' --include='*.h' shim policy cli 2>/dev/null); do
  case "$f" in shim/fdtable.c) ;; *) bad "$f includes <uthash.h> outside shim/fdtable.c";; esac
done
# dlsym only in shim/libc.c.
for f in $(grep -rlw 'dlsym' --include='*.c' shim policy 2>/dev/null); do
  case "$f" in shim/libc.c) ;; *) bad "$f calls dlsym outside shim/libc.c";; esac
done
# policy/ knows nothing of sockets.
for f in $(grep -rlE '#include <(sys/socket|netinet/in|arpa/inet|netdb)\.h>' policy 2>/dev/null); do
  bad "$f includes socket headers in policy/"
done
[ $fail -eq 0 ] && echo "layout: boundaries hold"
exit $fail
