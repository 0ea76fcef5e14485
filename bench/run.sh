#!/usr/bin/env bash
# Runs the benchmark suite (bench/bench.py): plain TCP vs the shim vs stunnel,
# plus the in-memory BoringSSL ceiling; writes bench/RESULTS.md.
#   bench/run.sh [--quick] [--reps N] [--build-dir DIR] [--allow-failures] ...
# See bench/README.md, or bench/run.sh --help.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/bench.py" "$@"
