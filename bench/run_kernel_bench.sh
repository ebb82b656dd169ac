#!/usr/bin/env bash
# The pass-cost and matmul benchmarks (bench/README.md), with load averages around each block:
#   1. cargo bench -p sgdlab-nn --bench passes      gradient vs exact HVP vs GGN-vector product
#   2. cargo bench -p sgdlab-linalg --bench matmul   sequential vs 2 threads (above the threshold)
#   3. bench/matmul-threshold                         Seq vs Par::rayon(2) at every shape, also
#                                                     below PARALLEL_MIN_FLOPS (places the threshold)
#   4. (MALLOC=1) the passes bench again with glibc's heap trimming off, to show its cost
# Tables (Criterion medians) go to stdout and to $OUT/kernels.md.
#
# Usage: bench/run_kernel_bench.sh        Environment: OUT [bench/results], MALLOC=1
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
REPORT="$OUT/kernels.md"
: > "$REPORT"
log() { echo "$*" | tee -a "$REPORT" >&2; }
quiet() { python3 bench/wait_quiet.py 0.15 1800 2>&1 | tee -a "$REPORT" >&2; }

cargo bench -p sgdlab-nn --bench passes --no-run --quiet
cargo bench -p sgdlab-linalg --bench matmul --no-run --quiet
CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet --manifest-path bench/matmul-threshold/Cargo.toml

log "## passes (cargo bench -p sgdlab-nn --bench passes; Criterion medians; one thread)"
quiet
log "uptime before: $(uptime)"
cargo bench -p sgdlab-nn --bench passes > "$OUT/passes.log" 2>&1
log "uptime after:  $(uptime)"
log ""
python3 bench/criterion_tables.py "$TARGET_DIR/criterion" | sed -n '/^| model/,/^$/p' | tee -a "$REPORT"

log "## matmul (cargo bench -p sgdlab-linalg --bench matmul; Criterion medians)"
quiet
log "uptime before: $(uptime)"
cargo bench -p sgdlab-linalg --bench matmul > "$OUT/matmul.log" 2>&1
log "uptime after:  $(uptime)"
log ""
python3 bench/criterion_tables.py "$TARGET_DIR/criterion" | sed -n '/^| m x k x n/,$p' | tee -a "$REPORT"
log ""

log "## matmul threshold probe (faer Par::Seq vs Par::rayon(2), every shape)"
quiet
log "uptime before: $(uptime)"
"$TARGET_DIR/release/matmul-threshold" | tee -a "$REPORT"
log "uptime after:  $(uptime)"

if [[ "${MALLOC:-0}" == 1 ]]; then
  log ""
  log "## passes with glibc heap trimming off (GLIBC_TUNABLES trim/mmap thresholds 256 MiB)"
  quiet
  log "uptime before: $(uptime)"
  GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=268435456 \
    cargo bench -p sgdlab-nn --bench passes > "$OUT/passes-notrim.log" 2>&1
  log "uptime after:  $(uptime)"
  log ""
  python3 bench/criterion_tables.py "$TARGET_DIR/criterion" | sed -n '/^| model/,/^$/p' | tee -a "$REPORT"
fi
