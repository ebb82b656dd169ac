#!/usr/bin/env bash
# Runs built-in studies in full and in quick mode and compares their verdicts, claim by claim:
# quick mode must decide every claim the way full mode does (docs/studies.md, "Quick mode").
# Prints one line per study and mode (verdict, claims, wall time) and a final line per study
# saying whether quick agrees with full; exits 1 if any disagrees.
#
# Usage: bench/studies_full_vs_quick.sh [STUDY ...]       (default: every built-in study)
# Environment: OUT   where the study directories go        [a temporary directory]
#              JOBS  runs in parallel                       [number of cores]
#              SGDLAB_BIN  use this binary instead of building the work tree
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${SGDLAB_BIN:-}" ]]; then
  cargo build --release --quiet
  SGDLAB_BIN=target/release/sgdlab
fi
OUT=${OUT:-$(mktemp -d)}
JOBS=${JOBS:-$(nproc)}
if [[ $# -gt 0 ]]; then
  STUDIES=("$@")
else
  mapfile -t STUDIES < <("$SGDLAB_BIN" study list | tail -n +2 | awk '{print $1}')
fi
echo "$("$SGDLAB_BIN" --version); $(nproc) CPUs; jobs $JOBS; out $OUT"
status=0
claims_of() {
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(v["verdict"] + " | " + "; ".join(c["id"] + "=" + c["verdict"] for c in v["claims"]))' "$1"
}
for s in "${STUDIES[@]}"; do
  for mode in full quick; do
    flag=""; dir="$OUT/$s"
    if [[ $mode == quick ]]; then flag="--quick"; dir="$OUT/$s-quick"; fi
    t0=$(date +%s.%N)
    "$SGDLAB_BIN" study run "$s" $flag --jobs "$JOBS" --out "$OUT" --quiet
    t1=$(date +%s.%N)
    printf '%-28s %-5s %7.1f s  %s\n' "$s" "$mode" "$(echo "$t1 - $t0" | bc)" "$(claims_of "$dir/verdict.json")"
  done
  if [[ "$(claims_of "$OUT/$s/verdict.json")" == "$(claims_of "$OUT/$s-quick/verdict.json")" ]]; then
    echo "$s: quick agrees with full"
  else
    echo "$s: QUICK DISAGREES WITH FULL"
    status=1
  fi
done
exit $status
