//! Shift-curvature (PROTOCOLS 7.3): the Newton-CG minimisers meet their stationarity conditions
//! (checked with the engine's gradient, independently of the minimiser's own bookkeeping), the
//! gap of an exactly quadratic loss equals its quadratic prediction to rounding, a budget that
//! runs out is reported as a value, and bad options are one-line errors.

use ndarray::Array2;
use serde_json::json;
use sgdlab_linalg::RngStream;
use sgdlab_nn::{ArchSpec, Batch, InitSpec, Loss, Model, Objective, Reduction};
use sgdlab_probes::EvalSet;
use sgdlab_probes::curvature::{
    NewtonCgParams, ShiftCurvatureEstimate, ShiftCurvatureParams, ShiftData, minimise_regularised, shift_curvature,
};
use sgdlab_probes::registry;

/// Agreement of an exactly quadratic gap with its prediction (relative to max(1, |value|)).
const QUADRATIC_TOL: f64 = 1e-10;

fn model(arch: &str) -> Model {
    Model::new(&arch.parse::<ArchSpec>().unwrap())
}

/// `n` deterministic, irregular inputs in `d` dimensions, shifted by `offset` (train and test
/// sets differ).
fn inputs(n: usize, d: usize, offset: f64) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        let (i, j) = (i as f64, j as f64);
        (1.37 * i + 0.71 * j * j + offset).sin() + 0.5 * (0.23 * i * (j + 1.0) + 2.0 * offset).cos()
    })
}

/// Classes from a noisy linear rule, so that the classes overlap (no separating hyperplane, a
/// finite minimiser even without L2).
fn classes(x: &Array2<f64>, k: usize) -> Vec<u32> {
    (0..x.nrows())
        .map(|i| {
            let s = x[[i, 0]] - 0.5 * x[[i, 1]] + (3.1 * i as f64).sin();
            ((s + 3.0).max(0.0) * k as f64 / 6.0).floor().min(k as f64 - 1.0) as u32
        })
        .collect()
}

/// `||grad (L + l2/2 ||theta||^2)||` at `p` by the engine's mean-reduced gradient.
fn stationarity(m: &Model, set: &EvalSet<f64>, loss: Loss, l2: f64, p: &[f64]) -> f64 {
    let batch = Batch { x: set.x.view(), targets: set.targets(0..set.len()) };
    let mut g = vec![0.0; p.len()];
    m.gradient_into(p, &batch, &Objective { loss, reduction: Reduction::Mean }, &mut g).unwrap();
    g.iter().zip(p).map(|(gi, pi)| (gi + l2 * pi).powi(2)).sum::<f64>().sqrt()
}

fn start(m: &Model) -> Vec<f64> {
    InitSpec::default().init(m, &RngStream::new(3)).into_vec()
}

fn run(m: &Model, train: &EvalSet<f64>, test: &EvalSet<f64>, loss: Loss, l2: f64) -> ShiftCurvatureEstimate {
    let params = ShiftCurvatureParams {
        newton: NewtonCgParams { l2, tol: 1e-10, ..Default::default() },
        exact_trace_max_params: 10_000,
        trace_probes: 30,
    };
    // Batches of 7 (the sets are 60 and 45 examples): sums over unequal batches.
    let data = ShiftData { model: m, train, test, batch_size: 7, loss };
    shift_curvature(&data, &start(m), &params, &RngStream::new(0)).unwrap()
}

#[test]
fn logistic_regression_minimisers_are_stationary() {
    let m = model("mlp:5-3:identity");
    let (xtr, xte) = (inputs(60, 5, 0.0), inputs(45, 5, 0.4));
    let (ytr, yte) = (classes(&xtr, 3), classes(&xte, 3));
    let train = EvalSet::new(xtr, Some(ytr), None);
    let test = EvalSet::new(xte, Some(yte), None);
    let l2 = 1e-3;
    let loss = Loss::CrossEntropy;
    let newton = NewtonCgParams { l2, tol: 1e-9, ..Default::default() };
    let (theta_tr, r) = minimise_regularised(&m, &train, 7, loss, &start(&m), &newton).unwrap();
    assert!(r.converged && r.grad_norm < 1e-9, "{r:?}");
    assert!(r.iterations < 30, "Newton should converge in a few steps on a convex problem: {r:?}");
    let s_tr = stationarity(&m, &train, loss, l2, &theta_tr);
    assert!(s_tr < 1e-9, "train stationarity {s_tr:e}");
    let (theta_te, r) = minimise_regularised(&m, &test, 7, loss, &theta_tr, &newton).unwrap();
    assert!(r.converged, "{r:?}");
    let s_te = stationarity(&m, &test, loss, l2, &theta_te);
    assert!(s_te < 1e-9, "test stationarity {s_te:e}");
    // The shift is real (the two sets differ) and the curvature along it positive.
    let e = run(&m, &train, &test, loss, l2);
    assert!(e.delta_norm > 1e-3 && e.sc_train > 0.0 && e.sc_test > 0.0, "{e:?}");
    assert!(e.gap > 0.0 && e.objective_gap > 0.0, "theta_te minimises F_test, so the gaps are positive: {e:?}");
    assert!(e.mean_curvature_exact && e.mean_curvature > 0.0);
}

#[test]
fn on_a_quadratic_loss_the_gap_is_exactly_half_the_shift_curvature() {
    // MSE of a linear model (with bias) is exactly quadratic in the parameters.
    let m = model("mlp:4-2:identity");
    let (xtr, xte) = (inputs(60, 4, 0.0), inputs(45, 4, 0.9));
    let targets = |x: &Array2<f64>| Array2::from_shape_fn((x.nrows(), 2), |(i, k)| (0.9 * i as f64 + k as f64).cos());
    let train = EvalSet::new(xtr.clone(), None, Some(targets(&xtr)));
    let test = EvalSet::new(xte.clone(), None, Some(targets(&xte)));
    // Without L2 the test gradient vanishes at theta_te: the plain gap is SC_test / 2.
    let e = run(&m, &train, &test, Loss::Mse, 0.0);
    assert!(e.train_minimiser.converged && e.test_minimiser.converged, "{e:?}");
    let err = (e.gap - 0.5 * e.sc_test).abs();
    assert!(err <= QUADRATIC_TOL * e.gap.abs().max(1.0), "gap {:e} vs SC/2 {:e}", e.gap, 0.5 * e.sc_test);
    assert!(e.gap > 1e-4, "a shift that is not trivially small: {e:?}");
    // With L2 the regularised objective's gap is (SC_test + l2 ||delta||^2) / 2, still exactly.
    let l2 = 1e-2;
    let e = run(&m, &train, &test, Loss::Mse, l2);
    let predicted = 0.5 * (e.sc_test + l2 * e.delta_norm.powi(2));
    let err = (e.objective_gap - predicted).abs();
    assert!(err <= QUADRATIC_TOL * predicted.abs().max(1.0), "objective gap {:e} vs {predicted:e}", e.objective_gap);
    assert!((e.predicted_objective_gap - predicted).abs() <= 1e-15);
    // The Hessian is constant: with unequal sets H_train and H_test differ, so the train-Hessian
    // prediction is not the gap (the check above is not vacuous).
    assert!((e.gap_ratio_train_hessian - 1.0).abs() > 1e-6, "{e:?}");
}

#[test]
fn an_exhausted_budget_is_reported_not_raised() {
    let m = model("mlp:5-3:identity");
    let x = inputs(60, 5, 0.0);
    let y = classes(&x, 3);
    let set = EvalSet::new(x, Some(y), None);
    let newton = NewtonCgParams { l2: 1e-4, tol: 1e-14, max_iterations: 1, max_cg_iterations: 2 };
    let (_, r) = minimise_regularised(&m, &set, 0, Loss::CrossEntropy, &start(&m), &newton).unwrap();
    assert!(!r.converged && r.grad_norm > 1e-14 && r.iterations == 1, "{r:?}");
    assert_eq!(r.stopped, "iteration budget");
    assert!(r.hvps <= 2);
}

#[test]
fn bad_options_are_one_line_errors() {
    let probe = registry::find("shift-curvature").unwrap();
    for (options, needle) in [
        (json!({ "tol": -1.0 }), "tol must be positive"),
        (json!({ "l2": -1e-4 }), "l2 must be finite and at least 0"),
        (json!({ "max_iterations": 0 }), "max_iterations"),
        (json!({ "trace_probes": 1 }), "trace_probes"),
        (json!({ "test_split": "train" }), "two different splits"),
        (json!({ "tolerance": 1e-6 }), "tolerance"),
        (json!({ "l2": "small" }), "l2"),
    ] {
        let e = probe.options_from_json(options.clone()).err().unwrap_or_else(|| panic!("{options} accepted"));
        assert!(e.contains(needle) && !e.contains('\n'), "{options}: {e}");
    }
    // A split the data does not have is an error naming it.
    let m = model("mlp:6-3:identity");
    let data = sgdlab_data::load_dataset("gaussian-mixture:classes=3,d=6,n=60,n_test=30").unwrap();
    let p = InitSpec::default().init(&m, &RngStream::new(0));
    let eval = registry::EvalOptions::default();
    let input = registry::ProbeInput {
        model: Some(&m),
        params: Some(&p),
        data: Some(&data),
        data_spec: None,
        eval: &eval,
        stream: RngStream::new(0),
        adam: None,
    };
    let checked = probe.options_from_json(json!({ "test_split": "heldout" })).unwrap();
    let e = probe.measure(&input, &checked, registry::Precision::F64).err().unwrap().to_string();
    assert!(e.contains("heldout") && !e.contains('\n'), "{e}");
}
