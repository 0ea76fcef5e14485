#!/usr/bin/env bash
# run_policy_fuzz.sh OUT_DIR SECONDS: builds the policy loader's libFuzzer
# target with clang (fuzzer, address, undefined) straight from policy/*.c and
# the system libyaml.a, seeds a corpus from the YAML in examples/ and
# tests/policy/, and fuzzes for SECONDS. Exits non-zero on a crash or leak.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 OUT_DIR SECONDS" >&2
  exit 2
fi
out="$1"
seconds="$2"
top="$(cd "$(dirname "$0")/../.." && pwd)"
cc="${CC_FUZZ:-clang}"
libyaml="${LIBYAML_A:-/usr/lib/x86_64-linux-gnu/libyaml.a}"
mkdir -p "$out/corpus" "$out/artifacts"

"$cc" -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=all -fno-omit-frame-pointer -I"$top" \
  "$top"/tests/fuzz/policy_fuzz.c "$top"/policy/*.c "$libyaml" \
  -o "$out/policy_fuzz"

# Seeds: every YAML file we have (fixtures keep their "# expect" line).
i=0
while IFS= read -r -d '' f; do
  cp "$f" "$out/corpus/seed-$i.yaml"
  i=$((i + 1))
done < <(find "$top/examples" "$top/tests/policy" -name '*.yaml' -print0 2>/dev/null)
echo "run_policy_fuzz: $i seed files"

# -error_exitcode makes any finding (crash, leak, UB) a non-zero exit.
"$out/policy_fuzz" "$out/corpus" -max_total_time="$seconds" \
  -artifact_prefix="$out/artifacts/" -error_exitcode=1 -max_len=8192 \
  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
