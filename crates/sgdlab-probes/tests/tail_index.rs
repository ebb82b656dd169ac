//! The `tail-index` probe's Adam preconditioning (Zhou et al. 2020; PROTOCOLS 8.4): Adam's
//! denominator from its state, scale invariance of both estimators (a constant v gives the raw
//! noise's indices exactly), a v that changes the estimate, a heavy-tailed synthetic case where
//! preconditioning uncovers the heavy coordinates, and the one-line error without Adam state.

use ndarray::{Array2, concatenate};
use serde_json::json;
use sgdlab_linalg::{RngStream, standard_normal};
use sgdlab_nn::{ArchSpec, InitSpec, Model, Params};
use sgdlab_probes::curvature::{mohammadi_estimator, precondition_rows};
use sgdlab_probes::registry::{self, AdamState, EvalOptions, MetricValue, Precision, ProbeInput, ProbeOutput};

/// Estimates that must agree to rounding: the estimators are invariant under a common scale of
/// the noise vectors, so only the last bits of the logarithms differ.
const TOL_SCALE_INVARIANT: f64 = 1e-9;
/// The same formula evaluated in another order (sqrt(v / c) against sqrt(v) / sqrt(c)).
const TOL_ROUNDING: f64 = 1e-13;

fn model(arch: &str) -> Model {
    Model::new(&arch.parse::<ArchSpec>().unwrap())
}

fn scalar(out: &ProbeOutput, name: &str) -> f64 {
    match out.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v) {
        Some(MetricValue::Scalar(x)) => *x,
        other => panic!("{name}: {other:?}"),
    }
}

struct Setup {
    model: Model,
    params: Params<f64>,
    data: sgdlab_data::Dataset,
    eval: EvalOptions,
}

fn setup() -> Setup {
    let model = model("mlp:6-8-3:tanh");
    let data = sgdlab_data::load_dataset("gaussian-mixture:classes=3,d=6,n=240,n_test=30").unwrap();
    let params = InitSpec::default().init(&model, &RngStream::new(3));
    Setup { model, params, data, eval: EvalOptions { samples: 0, batch_size: 0, ..EvalOptions::default() } }
}

fn measure(s: &Setup, adam: Option<&AdamState>, options: serde_json::Value) -> Result<ProbeOutput, String> {
    let probe = registry::find("tail-index").unwrap();
    let checked = probe.options_from_json(options).map_err(|e| e.to_string())?;
    let input = ProbeInput {
        model: Some(&s.model),
        params: Some(&s.params),
        data: Some(&s.data),
        data_spec: None,
        eval: &s.eval,
        stream: RngStream::new(0).child("tail"),
        adam,
    };
    probe.measure(&input, &checked, Precision::F64).map_err(|e| e.to_string())
}

fn options(precondition: &str) -> serde_json::Value {
    json!({ "noise_batch_size": 8, "blocks": 20, "block_size": 8, "precondition": precondition })
}

#[test]
fn adam_denominator_is_torch_adams() {
    let a = AdamState { exp_avg_sq: vec![4e-4, 0.0, 1.0], steps: 10, beta2: 0.999, eps: 1e-8 };
    let d = a.denominator(3).unwrap();
    let bc2 = 1.0 - 0.999f64.powi(10);
    for (j, v) in [4e-4f64, 0.0, 1.0].iter().enumerate() {
        let expected = v.sqrt() / bc2.sqrt() + 1e-8;
        assert!((d[j] - expected).abs() <= TOL_ROUNDING * expected, "{j}: {} vs {expected}", d[j]);
    }
    assert!(a.denominator(4).unwrap_err().to_string().contains("3 values for 4 parameters"));
    let fresh = AdamState { steps: 0, ..a };
    assert!(fresh.denominator(3).unwrap_err().to_string().contains("step 0"));
}

#[test]
fn a_constant_second_moment_scales_the_noise_and_leaves_both_indices_unchanged() {
    let s = setup();
    let d = s.model.num_params();
    let raw = measure(&s, None, options("none")).unwrap();
    // v = 0.09 after 5 steps: every coordinate divided by the same sqrt(0.09 / (1 - 0.999^5)) + eps.
    let adam = AdamState { exp_avg_sq: vec![0.09; d], steps: 5, beta2: 0.999, eps: 1e-8 };
    let pre = measure(&s, Some(&adam), options("adam")).unwrap();
    for name in ["mohammadi_alpha", "hill_alpha"] {
        let (a, b) = (scalar(&raw, name), scalar(&pre, name));
        assert!((a - b).abs() <= TOL_SCALE_INVARIANT * a.abs(), "{name}: raw {a}, preconditioned {b}");
    }
    // The raw estimates written beside the preconditioned ones are those of the same minibatches.
    assert_eq!(scalar(&pre, "raw_mohammadi_alpha"), scalar(&raw, "mohammadi_alpha"));
    assert_eq!(scalar(&pre, "raw_hill_alpha"), scalar(&raw, "hill_alpha"));
    assert_eq!(scalar(&raw, "raw_mohammadi_alpha"), scalar(&raw, "mohammadi_alpha"));
    // A second moment that differs across coordinates (the first layer's weights 1e4 times
    // larger) reweights the coordinates and changes the estimate.
    let mut v = vec![0.09; d];
    v[..6 * 8].iter_mut().for_each(|x| *x *= 1e4);
    let uneven = AdamState { exp_avg_sq: v, ..adam };
    let other = measure(&s, Some(&uneven), options("adam")).unwrap();
    let (a, b) = (scalar(&raw, "mohammadi_alpha"), scalar(&other, "mohammadi_alpha"));
    assert!((a - b).abs() > 1e-3, "an uneven v must change alpha: raw {a}, preconditioned {b}");
    assert_eq!(scalar(&other, "raw_mohammadi_alpha"), a);
}

#[test]
fn without_adam_state_the_probe_stops_with_one_line() {
    let s = setup();
    let e = measure(&s, None, options("adam")).unwrap_err();
    assert!(e.contains("precondition = adam") && e.contains("has none") && !e.contains('\n'), "{e}");
    let short = AdamState { exp_avg_sq: vec![1.0; 3], steps: 1, beta2: 0.999, eps: 1e-8 };
    let e = measure(&s, Some(&short), options("adam")).unwrap_err();
    assert!(e.contains("3 values for") && !e.contains('\n'), "{e}");
    let e = measure(&s, None, options("sgd")).unwrap_err();
    assert!(e.contains("precondition"), "{e}");
}

/// Heavy tails hidden by scale: 5 Gaussian coordinates of scale 100 beside 5 Cauchy (alpha = 1)
/// coordinates of scale 1 (seeded; 20,000 vectors, blocks of 10). The raw vectors look
/// Gaussian to Mohammadi's estimator (their norms are the Gaussian coordinates'); divided by
/// the per-coordinate scale, as Adam's sqrt(v) would, the Cauchy coordinates dominate the block
/// sums. numpy with the same construction (3 seeds): raw 1.89-1.90, preconditioned 1.04-1.06.
#[test]
fn preconditioning_uncovers_heavy_tailed_coordinates_hidden_by_scale() {
    use rand::RngExt;
    let mut rng = RngStream::new(21).child("hidden-tails").rng();
    let n = 20_000;
    let gauss = Array2::from_shape_fn((n, 5), |_| 100.0 * standard_normal::<f64, _>(&mut rng));
    let cauchy = Array2::from_shape_fn((n, 5), |_| (std::f64::consts::PI * (rng.random::<f64>() - 0.5)).tan());
    let mut x = concatenate![ndarray::Axis(1), gauss, cauchy];
    let raw = mohammadi_estimator(&x, 10).unwrap();
    let scale: Vec<f64> = [100.0; 5].into_iter().chain([1.0; 5]).collect();
    precondition_rows(&mut x, &scale).unwrap();
    let pre = mohammadi_estimator(&x, 10).unwrap();
    assert!(raw > 1.75, "raw noise looks Gaussian: {raw}");
    assert!((pre - 1.05).abs() < 0.2, "preconditioned noise is Cauchy-like: {pre}");
    let e = precondition_rows(&mut x, &[1.0; 3]).unwrap_err().to_string();
    assert!(e.contains("3 values for vectors of length 10"), "{e}");
    let e = precondition_rows(&mut x, &[0.0; 10]).unwrap_err().to_string();
    assert!(e.contains("value 0 is 0"), "{e}");
}

/// The streaming estimator (`MohammadiBlocks`, which the probe feeds one noise vector at a time)
/// against the formula written out on a stored matrix: 7 vectors in blocks of 3 use the first 6
/// (the trailing incomplete block is left out), and the value is the same to the last bit.
#[test]
fn streamed_mohammadi_estimate_equals_the_formula_on_the_stored_vectors() {
    use sgdlab_probes::curvature::MohammadiBlocks;
    let mut rng = RngStream::new(5).child("stream").rng();
    let x = Array2::from_shape_fn((7, 4), |_| standard_normal::<f64, _>(&mut rng));
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
    let mean_log_x = rows[..6].iter().map(|r| norm(r).ln()).sum::<f64>() / 6.0;
    let mut mean_log_y = 0.0;
    for b in 0..2 {
        let mut y = vec![0.0; 4];
        for r in &rows[3 * b..3 * b + 3] {
            for (s, v) in y.iter_mut().zip(r) {
                *s += v;
            }
        }
        mean_log_y += norm(&y).ln();
    }
    mean_log_y /= 2.0;
    let expected = 3f64.ln() / (mean_log_y - mean_log_x);
    let mut acc = MohammadiBlocks::<f64>::new(3, 4).unwrap();
    for r in &rows {
        let n = acc.push(r).unwrap();
        assert_eq!(n, norm(r));
    }
    assert_eq!(acc.alpha().unwrap(), expected);
    assert_eq!(mohammadi_estimator(&x, 3).unwrap(), expected);
    let e = acc.push(&[1.0; 3]).unwrap_err().to_string();
    assert!(e.contains("length 3 among vectors of length 4"), "{e}");
    assert!(MohammadiBlocks::<f64>::new(1, 4).is_err());
    let lone = MohammadiBlocks::<f64>::new(3, 4).unwrap();
    assert!(lone.alpha().unwrap_err().to_string().contains("at least one block"));
}
