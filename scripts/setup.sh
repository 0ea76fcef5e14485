#!/usr/bin/env bash
# Installs what the build and the tests need, and fetches BoringSSL's source.
#
# Idempotent and quiet when everything is present. Debian packages come from
# the machine's own apt configuration; BoringSSL comes from the Debian source
# package android-platform-external-boringssl, fetched with a private sources
# list derived from the machine's own (same archives, type deb-src), kept
# under the build tree so the system's apt configuration is never changed.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps="${TLSSHIM_DEPS_DIR:-$top/build/_deps}"
bssl_pkg=android-platform-external-boringssl

packages=(
  build-essential cmake ninja-build pkg-config ccache
  libyaml-dev uthash-dev libgtest-dev googletest
  clang lld libclang-rt-14-dev
  dpkg-dev xz-utils
  openssl curl socat stunnel4 tcpdump iproute2 python3 strace procps
  util-linux valgrind sslscan
  nginx redis-server redis-tools memcached
  openjdk-17-jdk-headless postgresql nmap testssl.sh
  prometheus
)

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  local p
  for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  # Node.js may come from elsewhere than Debian's package: any working node will do.
  if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Writes deb-src twins of the machine's enabled deb entries into $1.
derive_sources() {
  local out="$1" f
  : >"$out/derived.list"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n -E 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' "$f" >>"$out/derived.list"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: a stanza of type deb gets type deb-src; disabled stanzas stay disabled.
    sed -E 's/^Types:.*$/Types: deb-src/' "$f" >"$out/$(basename "$f")"
  done
}

fetch_boringssl() {
  local src="$deps/boringssl-src"
  if [ -f "$src/android-sources.cmake" ]; then
    return 0
  fi
  local apt="$deps/apt"
  rm -rf "$apt" "$deps/boringssl-dl"
  mkdir -p "$apt/sources" "$apt/lists/partial" "$apt/cache/archives/partial" "$deps/boringssl-dl"
  derive_sources "$apt/sources"
  local opts=(
    -o "Dir::Etc::SourceList=$apt/sources/derived.list"
    -o "Dir::Etc::SourceParts=$apt/sources"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::Cache=$apt/cache"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
  )
  log "fetching the $bssl_pkg source package with apt"
  # A source that has no deb-src index is only a warning; the package must be found below.
  apt-get "${opts[@]}" -qq update >"$apt/update.log" 2>&1 || true
  if ! (cd "$deps/boringssl-dl" && apt-get "${opts[@]}" -qq source "$bssl_pkg" >"$apt/source.log" 2>&1); then
    log "could not fetch $bssl_pkg with apt; see $apt/update.log and $apt/source.log"
    log "or pass -DBORINGSSL_SOURCE_DIR=/path/to/boringssl-tree to cmake"
    exit 1
  fi
  local dir
  dir=$(find "$deps/boringssl-dl" -mindepth 1 -maxdepth 1 -type d -name "$bssl_pkg-*" | head -n 1)
  [ -n "$dir" ] && [ -f "$dir/android-sources.cmake" ] || { log "unexpected layout in $deps/boringssl-dl"; exit 1; }
  ln -sfn "boringssl-dl/$(basename "$dir")" "$src"
}

main() {
  mkdir -p "$deps"
  install_packages
  if [ -z "${BORINGSSL_SOURCE_DIR:-}" ]; then
    fetch_boringssl
  fi
}

main "$@"
