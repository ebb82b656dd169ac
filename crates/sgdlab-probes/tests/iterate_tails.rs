//! SGD iterate tails on least squares (PROTOCOLS 8.2): Hill's estimator on exact Pareto samples,
//! the mean-square step limit against closed forms, light tails of near-GD chains, determinism,
//! and one-line errors.

use ndarray::Array2;
use rand::RngExt;
use sgdlab_linalg::{RngStream, standard_normal};
use sgdlab_probes::curvature::{IterateTailParams, StepScale, hill_estimator, iterate_tails, mean_square_step_limit};
use sgdlab_probes::registry;

/// Gaussian inputs `[n, d]` and targets `x^T theta0 + noise * N(0, 1)`.
fn regression(n: usize, d: usize, noise: f64, seed: u64) -> (Array2<f64>, Vec<f64>) {
    let mut rng = RngStream::new(seed).child("regression").rng();
    let x = Array2::from_shape_fn((n, d), |_| standard_normal::<f64, _>(&mut rng));
    let theta: Vec<f64> = (0..d).map(|_| standard_normal::<f64, _>(&mut rng) / (d as f64).sqrt()).collect();
    let y = (0..n)
        .map(|i| {
            x.row(i).iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>() + noise * standard_normal::<f64, _>(&mut rng)
        })
        .collect();
    (x, y)
}

fn params(batch_size: usize, eta_fraction: f64) -> IterateTailParams {
    IterateTailParams {
        chains: 1000,
        steps: 500,
        batch_size,
        eta_fraction,
        scale: StepScale::MeanSquare,
        hill_k: 50,
        mohammadi_block: 20,
    }
}

/// Exact Pareto(alpha) samples (inverse CDF), 20,000 of them, Hill with k = 1000: the estimate's
/// sd is alpha / sqrt(k) (3% of alpha), so a 15% tolerance is 5 sd (failure probability below
/// 1e-6 per alpha). Seed 7.
#[test]
fn hill_recovers_the_index_of_exact_pareto_samples() {
    let mut rng = RngStream::new(7).child("pareto").rng();
    for alpha in [0.8, 1.5, 3.0, 6.0] {
        let xs: Vec<f64> = (0..20_000).map(|_| (1.0 - rng.random::<f64>()).powf(-1.0 / alpha)).collect();
        let a = hill_estimator(&xs, 1000).unwrap();
        assert!((a / alpha - 1.0).abs() < 0.15, "Hill on Pareto({alpha}): {a}");
    }
}

/// For huge B the mean-square limit is GD's 2 / lambda_max; for B = 1 on N(0, I_d) inputs it is
/// close to 2 / (d + 2) (E[(x x^T)^2] = (d + 2) I), here within the sampling error of n = 4000.
#[test]
fn mean_square_limit_matches_closed_forms() {
    let (x, y) = regression(4000, 10, 0.1, 1);
    let tiny = IterateTailParams { chains: 4, steps: 1, hill_k: 1, mohammadi_block: 2, ..params(1, 0.1) };
    let one = iterate_tails(x.view(), &y, &tiny, &RngStream::new(0)).unwrap();
    let rel = (one.eta_max_mean_square * 12.0 / 2.0 - 1.0).abs();
    assert!(rel < 0.1, "B = 1: eta_ms = {} against 2/(d+2) = {}", one.eta_max_mean_square, 2.0 / 12.0);
    // B -> infinity: mean_square_step_limit directly (the chains would take B draws per step).
    let sigma = x.t().dot(&x) / 4000.0;
    let eig = sgdlab_linalg::symmetric_eigen(sigma.view()).unwrap();
    let xr = x.dot(&eig.vectors);
    let inf = mean_square_step_limit(xr.view(), eig.values.as_slice().unwrap(), 1e12).unwrap();
    assert!((inf / one.eta_max_gd - 1.0).abs() < 1e-6, "{inf} vs {}", one.eta_max_gd);
    // Larger batches allow larger steps.
    let four = iterate_tails(x.view(), &y, &IterateTailParams { batch_size: 4, ..tiny.clone() }, &RngStream::new(0));
    assert!(four.unwrap().eta_max_mean_square > one.eta_max_mean_square);
}

/// B = n with a tiny step: the multiplicative noise is negligible and the iterates are a
/// near-Gaussian cloud, so Hill's alpha is large (above 8); B = 1 at 0.95 of its mean-square limit
/// is much heavier.
#[test]
fn near_gd_chains_are_light_tailed_and_small_batches_near_the_limit_heavier() {
    let (x, y) = regression(200, 5, 0.1, 2);
    let light = iterate_tails(x.view(), &y, &params(200, 0.02), &RngStream::new(3)).unwrap();
    assert!(light.hill_alpha > 8.0, "B = n, tiny eta: alpha = {}", light.hill_alpha);
    let heavy = iterate_tails(x.view(), &y, &params(1, 0.95), &RngStream::new(3)).unwrap();
    assert!(heavy.hill_alpha < light.hill_alpha / 2.0, "B = 1 near the limit: {}", heavy.hill_alpha);
    assert_eq!(light.hill_plot_k.len(), light.hill_plot_alpha.len());
}

/// The same stream gives the same numbers whatever the thread count; another stream other ones.
#[test]
fn chains_are_deterministic_across_thread_counts() {
    let (x, y) = regression(200, 5, 0.1, 4);
    let p = params(4, 0.5);
    sgdlab_linalg::set_threads(1);
    let a = iterate_tails(x.view(), &y, &p, &RngStream::new(5)).unwrap();
    sgdlab_linalg::set_threads(2);
    let b = iterate_tails(x.view(), &y, &p, &RngStream::new(5)).unwrap();
    let c = iterate_tails(x.view(), &y, &p, &RngStream::new(6)).unwrap();
    assert_eq!(a.hill_alpha, b.hill_alpha);
    assert_eq!(a.median_norm, b.median_norm);
    assert_ne!(a.hill_alpha, c.hill_alpha);
}

/// Above the stability limit chains diverge: a one-line error, not NaN estimates.
#[test]
fn divergence_and_bad_options_are_one_line_errors() {
    let (x, y) = regression(200, 5, 0.1, 4);
    let p = IterateTailParams { scale: StepScale::Gd, eta_fraction: 0.9, ..params(1, 0.9) };
    let e = iterate_tails(x.view(), &y, &p, &RngStream::new(0)).unwrap_err().to_string();
    assert!(e.contains("diverged") && !e.contains('\n'), "{e}");
    let probe = registry::find("iterate-tails").unwrap();
    for bad in [
        serde_json::json!({ "hill_k": 0 }),
        serde_json::json!({ "chains": 50, "hill_k": 50 }),
        serde_json::json!({ "eta_fraction": -1.0 }),
        serde_json::json!({ "batch_size": 0 }),
        serde_json::json!({ "mohammadi_block": 1 }),
        serde_json::json!({ "eta_max": "lyapunov" }),
    ] {
        let err = probe.options_from_json(bad.clone()).err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(!err.contains('\n'), "{err}");
    }
    let wide = Array2::<f64>::zeros((3, 5));
    let e = iterate_tails(wide.view(), &[0.0; 3], &params(1, 0.5), &RngStream::new(0)).unwrap_err().to_string();
    assert!(e.contains("singular"), "{e}");
}
