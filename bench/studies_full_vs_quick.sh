#!/usr/bin/env bash
# Runs built-in studies in full and in quick mode and compares their verdicts, claim by claim:
# quick mode must decide every claim the way full mode does (docs/studies.md, "Quick mode").
# Prints one line per study and mode (verdict, claims, wall time) and a final line per study
# saying whether quick agrees with full; exits 1 if any disagrees. With RESULTS=FILE.json it
# also writes, per study and mode, the verdict, each claim's verdict, effect and interval and the
# wall time: bench/results/studies_full_vs_quick.json is that file, and tests/builtin_quick.rs
# checks in CI that quick mode still decides every claim as full mode did there.
#
# Usage: bench/studies_full_vs_quick.sh [STUDY ...]       (default: every built-in study)
#        A STUDY that is not built in is run from crates/sgdlab-studies/studies/STUDY.toml.
# Environment: OUT   where the study directories go        [a temporary directory]
#              JOBS  runs in parallel                       [number of cores]
#              SGDLAB_BIN  use this binary instead of building the work tree
#              RESULTS     write the JSON summary here                [none]
#              MODES       which modes to run ("quick" re-times quick mode only; the verdicts
#                          are then compared with full mode's in OUT or, failing that, RESULTS)
#                                                                         [full quick]
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
mapfile -t BUILTIN < <("$SGDLAB_BIN" study list | tail -n +2 | awk '{print $1}')
source_of() {  # a built-in name, or the study file of that name
  local b
  for b in "${BUILTIN[@]}"; do [[ $b == "$1" ]] && { echo "$1"; return; }; done
  if [[ -f crates/sgdlab-studies/studies/$1.toml ]]; then echo "crates/sgdlab-studies/studies/$1.toml"; else echo "$1"; fi
}
status=0
claims_of() {
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(v["verdict"] + " | " + "; ".join(sorted(c["id"] + "=" + c["verdict"] for c in v["claims"])))' "$1"
}
for s in "${STUDIES[@]}"; do
  for mode in ${MODES:-full quick}; do
    flag=""; dir="$OUT/$s"
    if [[ $mode == quick ]]; then flag="--quick"; dir="$OUT/$s-quick"; fi
    t0=$(date +%s.%N)
    "$SGDLAB_BIN" study run "$(source_of "$s")" $flag --jobs "$JOBS" --out "$OUT" --quiet
    t1=$(date +%s.%N)
    wall=$(echo "$t1 - $t0" | bc)
    printf '%-28s %-5s %7.1f s  %s\n' "$s" "$mode" "$wall" "$(claims_of "$dir/verdict.json")"
    if [[ -n "${RESULTS:-}" ]]; then
      python3 - "$RESULTS" "$s" "$mode" "$wall" "$dir/verdict.json" "$("$SGDLAB_BIN" --version)" "$(nproc)" "$JOBS" <<'PY'
import json, os, sys
out, study, mode, wall, verdict, version, cpus, jobs = sys.argv[1:]
v = json.load(open(verdict))
r = json.load(open(out)) if os.path.exists(out) else {"about": "bench/studies_full_vs_quick.sh", "studies": {}}
r["version"], r["cpus"], r["jobs"] = version, int(cpus), int(jobs)
r["studies"].setdefault(study, {})[mode] = {
    "verdict": v["verdict"],
    "wall_time_s": round(float(wall), 1),
    "runs": v["runs"],
    "claims": {c["id"]: {"verdict": c["verdict"], "effect": (c["effect"] or {}).get("value"), "interval": [(c["effect"] or {}).get("ci_low"), (c["effect"] or {}).get("ci_high")]} for c in v["claims"]},
}
json.dump(r, open(out, "w"), indent=1, sort_keys=True)
PY
    fi
  done
  if [[ -f "$OUT/$s/verdict.json" ]]; then
    full_claims=$(claims_of "$OUT/$s/verdict.json")
  elif [[ -n "${RESULTS:-}" && -f "$RESULTS" ]]; then
    full_claims=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["studies"][sys.argv[2]]["full"]; print(s["verdict"] + " | " + "; ".join(sorted(k + "=" + c["verdict"] for k, c in s["claims"].items())))' "$RESULTS" "$s" 2>/dev/null || true)
  else
    full_claims=""
  fi
  if [[ ! -f "$OUT/$s-quick/verdict.json" ]]; then
    echo "$s: quick mode not run"
  elif [[ "$full_claims" == "$(claims_of "$OUT/$s-quick/verdict.json")" ]]; then
    echo "$s: quick agrees with full"
  else
    echo "$s: QUICK DISAGREES WITH FULL"
    status=1
  fi
done
exit $status
