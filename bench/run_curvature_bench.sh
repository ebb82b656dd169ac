#!/usr/bin/env bash
# Curvature benchmark, side by side: top Hessian eigenvalue and Hutchinson trace of MLP
# 784-512-512-10 (or LeNet-5) at initialisation on 1,000 MNIST test images, PyHessian vs sgdlab.
# NET=lenet5 runs the same comparison on LeNet-5 (loaded from PyTorch's print(model) text).
# Usage: bench/run_curvature_bench.sh [PYTHON] [THREADS] [NET]   (PYTHON: a venv with torch + pyhessian;
#        NET: mlp (default) or lenet5)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
THREADS=${2:-1}
NET=${3:-mlp}
OUT=$(mktemp -d)
cargo build --release -q
S=./target/release/sgdlab
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY bench/anchors/pyhessian_bench.py --out "$OUT" --net "$NET" --threads "$THREADS" > "$OUT/pyhessian.json"
if [[ $NET == mlp ]]; then ARCH=(--arch mlp:784-512-512-10:relu); else ARCH=(--arch-file "$OUT/$NET.txt" --input-shape 1,28,28); fi
COMMON=(--threads "$THREADS" probe hessian --model "$OUT/$NET.safetensors" "${ARCH[@]}"
        --data "npy:$OUT/x.npy,$OUT/y.npy" --samples 0 --batch-size 1000 --json)
# Reference: Lanczos to a residual of 1e-10 relative, f64.
"$S" "${COMMON[@]}" --top-k 1 --tol 1e-10 > "$OUT/ref.json"
run() { # name, then sgdlab args; prints median wall time over 3 runs and the last JSON
  local name=$1; shift
  local times=()
  for i in 1 2 3; do
    local t0=$(date +%s.%N)
    "$S" "${COMMON[@]}" "$@" > "$OUT/$name.json"
    times+=("$(echo "$(date +%s.%N) - $t0" | bc)")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p > "$OUT/$name.time"
}
run top64 --top-k 1 --tol 1e-3
run top32 --top-k 1 --tol 1e-3 --dtype f32
run top32_loose --top-k 1 --tol 1e-2 --dtype f32
run trace64 --trace --probes 100
run trace32 --trace --probes 100 --dtype f32
run trace32_products --trace --probes 100 --dtype f32 --trace-by-products
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$OUT" <<'PYEOF'
import json, sys, os
d = sys.argv[1]
j = lambda n: json.load(open(os.path.join(d, n + ".json")))
t = lambda n: float(open(os.path.join(d, n + ".time")).read())
ph, ref = j("pyhessian"), j("ref")["top_eigenvalues"][0]
print(f"reference top eigenvalue (sgdlab Lanczos, f64, residual 1e-10): {ref:.6f}")
print("| tool | quantity | HVPs | value | rel. error | median time (s) |")
print("|---|---|---|---|---|---|")
p = ph["top_eigenvalue"]
print(f"| PyHessian {ph['versions']['pyhessian']} (torch {ph['versions']['torch']}, f32, in-process) | top eigenvalue | {p['hvps']} (per repeat {p['hvps_per_repeat']}) | {p['value']:.6f} | {abs(p['value']-ref)/ref:.2e} | {p['median_s']:.3f} |")
for n, lab in [("top64", "f64, tol 1e-3"), ("top32", "f32, tol 1e-3"), ("top32_loose", "f32, tol 1e-2")]:
    v = j(n)
    print(f"| sgdlab ({lab}, whole process) | top eigenvalue | {v['top_matvecs']} | {v['top_eigenvalues'][0]:.6f} | {abs(v['top_eigenvalues'][0]-ref)/ref:.2e} | {t(n):.3f} |")
p = ph["trace"]
print(f"| PyHessian (f32, in-process, default stop) | trace | {p['hvps']} (per repeat {p['hvps_per_repeat']}) | {p['value']:.4f} | - | {p['median_s']:.3f} (runs {', '.join(f'{x:.2f}' for x in p['times_s'])}) |")
p = ph["trace_100_probes"]
print(f"| PyHessian (f32, in-process, 100 probes) | trace | {p['hvps']} | {p['value']:.4f} | - | {p['median_s']:.3f} (runs {', '.join(f'{x:.2f}' for x in p['times_s'])}) |")
for n, lab in [("trace64", "f64, forward-mode forms"), ("trace32", "f32, forward-mode forms"), ("trace32_products", "f32, HVPs")]:
    v = j(n)["trace"]
    print(f"| sgdlab ({lab}, whole process) | trace +- stderr | {v['matvecs']} HVPs + {v['quadratic_forms']} forms | {v['estimate']:.4f} +- {v['stderr']:.4f} | - | {t(n):.3f} |")
PYEOF
