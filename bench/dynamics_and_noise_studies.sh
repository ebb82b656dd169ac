#!/usr/bin/env bash
# The studies of training dynamics, broad minima and SGD noise (PROTOCOLS 6.1, 6.2, 7.2-7.4,
# 8.1-8.4), each in full mode: prints one line per study with its verdict, every claim's verdict
# and the wall time (bench/studies_full_vs_quick.sh with MODES=full). A study of the list that
# exists neither as a built-in nor as crates/sgdlab-studies/studies/NAME.toml is reported as
# missing and skipped. Same environment as bench/studies_full_vs_quick.sh (OUT, JOBS,
# SGDLAB_BIN, RESULTS); MODES="full quick" also runs and compares quick mode.
#
# Usage: bench/dynamics_and_noise_studies.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${SGDLAB_BIN:-}" ]]; then
  cargo build --release --quiet
  export SGDLAB_BIN=target/release/sgdlab
fi
STUDIES=(increasing-complexity distribution-clones edge-of-stability shift-curvature entropy-sgd
  sgd-noise-escape iterate-tails sobolev-flatness sgd-adam-tails)
mapfile -t BUILTIN < <("$SGDLAB_BIN" study list | tail -n +2 | awk '{print $1}')
present=()
for s in "${STUDIES[@]}"; do
  if printf '%s\n' "${BUILTIN[@]}" | grep -qx "$s" || [[ -f crates/sgdlab-studies/studies/$s.toml ]]; then
    present+=("$s")
  else
    echo "$s: missing (neither built in nor a study file)"
  fi
done
MODES=${MODES:-full} exec bench/studies_full_vs_quick.sh "${present[@]}"
