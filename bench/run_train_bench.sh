#!/usr/bin/env bash
# Reproduces the training tables of bench/results/train.md end to end:
#   builds sgdlab (release), copies the binary aside (so a concurrent rebuild cannot swap it
#   mid-measurement), then times jobs S and L for sgdlab and PyTorch eager at 1 and 2 threads,
#   whole process and in-loop, in interleaved rounds that wait for a quiet machine.
#
# Usage: bench/run_train_bench.sh [ROUNDS]        (default 10; about 25 s per round)
# Environment: PYTHON  a Python with torch + numpy (a venv outside the repository)  [python3]
#              OUT     results directory            [bench/results]
#              SGDLAB_BIN  use this sgdlab binary instead of building the work tree
#                          (e.g. one built from `git archive HEAD`, when the tree is mid-edit)
#              SGDLAB_REV  the revision SGDLAB_BIN was built from (a label for the tables)
#              HYPERFINE=1  also cross-check the whole-process medians with hyperfine
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"

"$PYTHON" -c 'import torch, numpy' || { echo "need torch and numpy in $PYTHON (set PYTHON=...)" >&2; exit 1; }
BIN_DIR=$(mktemp -d)
trap 'rm -rf "$BIN_DIR"' EXIT
if [[ -z "${SGDLAB_BIN:-}" ]]; then
  cargo build --release --quiet
  SGDLAB_BIN=target/release/sgdlab
fi
cp "$SGDLAB_BIN" "$BIN_DIR/sgdlab"
# SGDLAB_REV labels a binary built elsewhere (its --version says "git unknown" outside a clone).
NOTE="$("$BIN_DIR/sgdlab" --version)${SGDLAB_REV:+ (revision $SGDLAB_REV)}; $("$PYTHON" -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'); $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "$NOTE" >&2
echo "uptime before: $(uptime)" >&2

python3 bench/train_bench.py --sgdlab "$BIN_DIR/sgdlab" --python "$PYTHON" --rounds "$ROUNDS" \
  --note "$NOTE" --json-out "$OUT/train_runs.json" --md-out "$OUT/train_tables.md"

if [[ "${HYPERFINE:-0}" == 1 ]]; then
  command -v hyperfine >/dev/null || { echo "hyperfine not found (apt-get install -y hyperfine)" >&2; exit 1; }
  args=()
  for job in S L; do
    for t in 1 2; do
      j=$(echo "$job" | tr SL sl)
      args+=(-n "$job sgdlab t$t" "$BIN_DIR/sgdlab --threads $t train bench/jobs/job_$j.toml --out $BIN_DIR/run-$job$t --fresh --quiet")
      args+=(-n "$job pytorch t$t" "$PYTHON bench/anchors/torch_train.py --job $job --threads $t")
    done
  done
  echo "hyperfine uptime before: $(uptime)" >&2
  hyperfine -N --warmup 1 --runs "$ROUNDS" --export-json "$OUT/train_hyperfine.json" "${args[@]}"
  echo "hyperfine uptime after: $(uptime)" >&2
  # hyperfine's own Markdown export gives means; the tables use medians.
  python3 - "$OUT/train_hyperfine.json" > "$OUT/train_hyperfine.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("hyperfine -N, 1 warm-up run, then the runs of each command one after another (not interleaved).")
print()
print("| command | median (s) | mean ± sd (s) | min-max (s) | runs |")
print("|---|---:|---:|---:|---:|")
for r in d["results"]:
    print(f"| {r['command']} | {r['median']:.3f} | {r['mean']:.3f} ± {r['stddev']:.3f} | {r['min']:.3f}-{r['max']:.3f} | {len(r['times'])} |")
PY
fi
echo "uptime after: $(uptime)" >&2
