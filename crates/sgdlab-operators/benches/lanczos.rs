//! Top-1 eigenvalue of a 2000 x 2000 dense operator with a known, Hessian-like spectrum:
//! Lanczos (full re-orthogonalisation) against power iteration (PyHessian's method).
//!
//! `cargo bench -p sgdlab-operators --bench lanczos`. Before timing, prints the products each
//! method needs to reach 1e-3 relative error (read off its per-step history against the known
//! top eigenvalue), and what each honest / PyHessian stopping rule at 1e-3 uses and achieves.
//! The timed runs are the stopping-rule runs and the fixed-budget runs that just reach 1e-3.
//!
//! Spectrum: ten outliers `0.9^i` (i = 0..9, so `lambda_2 / lambda_1 = 0.9`) over a bulk
//! `0.3 / (i + 1)` (1990 values), in a Haar-random basis (seed 2026, stream "bench/lanczos").

#[path = "../tests/estimators/common.rs"]
mod common;

use common::Known;
use criterion::{Criterion, criterion_group, criterion_main};
use sgdlab_linalg::RngStream;
use sgdlab_operators::{LanczosParams, PowerIterationParams, PowerStop, lanczos_eigenpairs, power_iteration};
use std::hint::black_box;
use std::time::Duration;

const N: usize = 2000;
const REL: f64 = 1e-3;

fn spectrum() -> Vec<f64> {
    let mut l: Vec<f64> = (0..10).map(|i| 0.9f64.powi(i)).collect();
    l.extend((0..N - 10).map(|i| 0.3 / (i + 1) as f64));
    l
}

fn first_within(history: impl Iterator<Item = (usize, f64)>, lambda: f64) -> usize {
    history.into_iter().find(|(_, v)| (v - lambda).abs() <= REL * lambda).map_or(usize::MAX, |x| x.0)
}

fn bench(c: &mut Criterion) {
    let k = Known::new(spectrum(), &RngStream::new(2026).child("bench/lanczos"));
    let op = k.op();
    let lmax = 1.0;
    let rng = RngStream::new(2026).child("start");

    let lz = lanczos_eigenpairs(&op, &LanczosParams { k: 1, tol: 1e-10, max_iters: 100, ..Default::default() }, &rng)
        .unwrap();
    let lz_oracle = first_within(lz.history.iter().map(|s| (s.matvecs, s.eigenvalues[0])), lmax);
    let pw =
        power_iteration(&op, &PowerIterationParams { max_iters: 1000, tol: 0.0, ..Default::default() }, &rng).unwrap();
    let pw_oracle = first_within(pw.history.iter().enumerate().map(|(i, &v)| (i + 1, v)), lmax);
    let lz_res = lanczos_eigenpairs(&op, &LanczosParams { k: 1, tol: REL, ..Default::default() }, &rng).unwrap();
    let py = power_iteration(&op, &PowerIterationParams::default(), &rng).unwrap();
    let pw_res_params = PowerIterationParams { max_iters: 1000, tol: REL, stop: PowerStop::Residual };
    let pw_res = power_iteration(&op, &pw_res_params, &rng).unwrap();
    println!("n = {N}, lambda_1 = 1, lambda_2 = 0.9; products to reach {REL:e} relative error:");
    println!("  Lanczos (oracle, from history)            {lz_oracle:>4}");
    println!("  power iteration (oracle, from history)    {pw_oracle:>4}");
    println!(
        "  Lanczos, residual rule tol 1e-3           {:>4}  error {:.1e}  residual {:.1e}",
        lz_res.matvecs,
        (lz_res.eigenvalues[0] - lmax).abs(),
        lz_res.residuals[0]
    );
    println!(
        "  power, PyHessian rule tol 1e-3            {:>4}  error {:.1e}  residual {:.1e}",
        py.matvecs,
        (py.eigenvalue - lmax).abs(),
        py.residual
    );
    println!(
        "  power, residual rule tol 1e-3             {:>4}  error {:.1e}  residual {:.1e}",
        pw_res.matvecs,
        (pw_res.eigenvalue - lmax).abs(),
        pw_res.residual
    );

    let mut g = c.benchmark_group("top1_2000");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    g.bench_function("lanczos_oracle_budget", |b| {
        let p = LanczosParams { k: 1, tol: 0.0, max_iters: lz_oracle, ..Default::default() };
        b.iter(|| black_box(lanczos_eigenpairs(&op, &p, &rng).unwrap()))
    });
    g.bench_function("power_oracle_budget", |b| {
        let p = PowerIterationParams { max_iters: pw_oracle, tol: 0.0, ..Default::default() };
        b.iter(|| black_box(power_iteration(&op, &p, &rng).unwrap()))
    });
    g.bench_function("lanczos_residual_rule_1e-3", |b| {
        let p = LanczosParams { k: 1, tol: REL, ..Default::default() };
        b.iter(|| black_box(lanczos_eigenpairs(&op, &p, &rng).unwrap()))
    });
    g.bench_function("power_pyhessian_rule_1e-3", |b| {
        b.iter(|| black_box(power_iteration(&op, &PowerIterationParams::default(), &rng).unwrap()))
    });
    g.bench_function("power_residual_rule_1e-3", |b| {
        b.iter(|| black_box(power_iteration(&op, &pw_res_params, &rng).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
