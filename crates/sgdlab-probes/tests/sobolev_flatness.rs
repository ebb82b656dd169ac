//! The flatness bound of the input gradient (Ma & Ying 2021; PROTOCOLS 8.3): on tiny nets in f64
//! the Hutchinson traces of the first layer's block equal the trace of that block of a Hessian
//! built by finite differences of the gradient (and of the materialised GGN), the Gauss-Newton
//! bound holds on random nets, the left-hand side equals finite differences in the inputs, and
//! the cases the bound does not cover are one-line errors.

use ndarray::Array2;
use serde_json::json;
use sgdlab_linalg::{RngStream, standard_normal};
use sgdlab_nn::{ArchSpec, Loss, Model};
use sgdlab_operators::{LinearOperator, PrincipalBlockOperator, materialize};
use sgdlab_probes::EvalSet;
use sgdlab_probes::curvature::{
    CurvatureContext, GgnOperator, SobolevFlatnessEstimate, SobolevFlatnessParams, sobolev_flatness,
};
use sgdlab_probes::registry::{self, EvalOptions, Precision, ProbeInput};

/// Richardson-extrapolated central differences (steps 1e-3, 5e-4) in f64: truncation O(h^4)
/// plus rounding eps/h: 1e-7 of the scale.
const TOL_FD: f64 = 1e-7;
/// Quantities equal by algebra, computed along different paths (rounding only).
const TOL_EXACT: f64 = 1e-10;
/// Hutchinson against an exact trace: within this many standard errors (a two-sided normal
/// failure probability of 6e-5 for a seed drawn at random; the seeds here are fixed).
const HUTCHINSON_SIGMAS: f64 = 4.0;

fn model(arch: &str) -> Model {
    Model::new(&arch.parse::<ArchSpec>().unwrap())
}

/// A tiny net with N(0, scale^2) parameters and 7 Gaussian examples with Gaussian value targets
/// (or one-hot class targets when `classes`), evaluated in batches of 3 and 4.
struct Tiny {
    model: Model,
    params: Vec<f64>,
    set: EvalSet<f64>,
}

fn tiny(arch: &str, seed: u64, scale: f64, classes: bool) -> Tiny {
    let model = model(arch);
    let mut rng = RngStream::new(seed).child("sobolev-tiny").rng();
    let params: Vec<f64> = (0..model.num_params()).map(|_| scale * standard_normal::<f64, _>(&mut rng)).collect();
    let (n, k) = (7, model.out_dim());
    let x = Array2::from_shape_fn((n, model.in_dim()), |_| standard_normal::<f64, _>(&mut rng));
    let set = if classes {
        EvalSet::new(x, Some((0..n).map(|i| (i % k) as u32).collect()), None)
    } else {
        EvalSet::new(x, None, Some(Array2::from_shape_fn((n, k), |_| standard_normal::<f64, _>(&mut rng))))
    };
    Tiny { model, params, set }
}

fn ctx(t: &Tiny) -> CurvatureContext<'_, f64> {
    CurvatureContext::new(&t.model, &t.params, &t.set, 4, Loss::Mse).unwrap()
}

fn estimate(t: &Tiny, probes: usize) -> SobolevFlatnessEstimate {
    sobolev_flatness(&ctx(t), &SobolevFlatnessParams { probes }, &RngStream::new(9).child("sobolev")).unwrap()
}

fn richardson(d: impl Fn(f64) -> Vec<f64>) -> Vec<f64> {
    let (d1, d2) = (d(1e-3), d(5e-4));
    d1.iter().zip(&d2).map(|(a, b)| (4.0 * b - a) / 3.0).collect()
}

/// The trace of the first layer's weight block of the Hessian, from central differences of the
/// mean-loss gradient along each weight coordinate (independent of the HVP machinery).
fn fd_hessian_block_trace(t: &Tiny, range: std::ops::Range<usize>) -> f64 {
    let c = ctx(t);
    range
        .map(|j| {
            let col = richardson(|h| {
                let (mut a, mut b) = (t.params.clone(), t.params.clone());
                a[j] += h;
                b[j] -= h;
                let (ga, gb) = (c.loss_gradient_at(&a).1, c.loss_gradient_at(&b).1);
                ga.iter().zip(&gb).map(|(x, y)| (x - y) / (2.0 * h)).collect()
            });
            col[j]
        })
        .sum()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol * want.abs().max(1.0), "{what}: got {got}, want {want} (tol {tol:e})");
}

#[test]
fn hutchinson_block_traces_match_the_explicit_hessian_and_ggn_blocks() {
    // Parameters of scale 0.9 and random value targets: far from interpolation, so that H_WW and
    // G_WW differ and the Hessian part is really tested.
    for (arch, seed) in [("mlp:3-5-4-2:tanh", 1), ("mlp:4-6-3:gelu", 2), ("resmlp:3-4x1-2:sigmoid", 3)] {
        let t = tiny(arch, seed, 0.9, false);
        let e = estimate(&t, 4000);
        let range = e.weight_range[0]..e.weight_range[1];
        assert_eq!((e.weight.as_str(), range.start), ("0.weight", 0), "{arch}");
        let h = fd_hessian_block_trace(&t, range.clone());
        assert!(
            (e.hessian_trace_w - h).abs() <= HUTCHINSON_SIGMAS * e.hessian_trace_w_stderr,
            "{arch}: Tr(H_WW) {} +- {} vs finite differences {h}",
            e.hessian_trace_w,
            e.hessian_trace_w_stderr
        );
        // The GGN block, materialised, against the exact Jacobian formula and the estimate.
        let c = ctx(&t);
        let block = PrincipalBlockOperator::new(GgnOperator { ctx: &c }, range.clone()).unwrap();
        let g = materialize(&block, 200).unwrap();
        let g_trace: f64 = (0..block.dim()).map(|i| g[(i, i)]).sum();
        close(&format!("{arch}: exact Tr(G_WW)"), e.ggn_trace_w_exact, g_trace, TOL_EXACT);
        assert!(
            (e.ggn_trace_w - g_trace).abs() <= HUTCHINSON_SIGMAS * e.ggn_trace_w_stderr,
            "{arch}: Tr(G_WW) {} +- {} vs {g_trace}",
            e.ggn_trace_w,
            e.ggn_trace_w_stderr
        );
        // Far from interpolation the two blocks differ, so the test tells them apart.
        assert!((h - g_trace).abs() > 1e-3 * h.abs().max(g_trace.abs()), "{arch}: Tr(H_WW) {h} = Tr(G_WW) {g_trace}?");
        assert_eq!((e.quadratic_forms, e.matvecs, e.probes), (8000, 0, 4000), "{arch}");
    }
}

#[test]
fn the_gauss_newton_bound_holds_on_random_nets() {
    let archs = ["mlp:3-5-4-2:tanh", "mlp:4-8-8-3:relu", "mlp:5-3-4:softplus", "mlp:2-6-6-6-2:erf", "mlp:4-3:identity"];
    let mut checked = 0;
    for (a, arch) in archs.iter().enumerate() {
        for seed in 0..8u64 {
            let scale = [0.3, 1.0, 2.0][seed as usize % 3];
            let t = tiny(arch, 100 * a as u64 + seed, scale, seed % 2 == 0);
            let e = estimate(&t, 10);
            // With the exact Tr(G_WW): no estimation error, so the inequality must hold.
            let exact_bound = e.output_factor * e.weight_norm.powi(2) * e.ggn_trace_w_exact / e.min_input_sq;
            assert!(
                e.input_gradient_sq <= exact_bound * (1.0 + TOL_EXACT),
                "{arch} seed {seed}: LHS {} > RHS {exact_bound}",
                e.input_gradient_sq
            );
            assert!(e.input_gradient_sq > 0.0 && e.ggn_trace_w_exact > 0.0, "{arch} seed {seed}: {e:?}");
            assert_eq!(e.output_factor, t.model.out_dim() as f64 / 2.0);
            checked += 1;
        }
    }
    assert_eq!(checked, 40);
}

#[test]
fn a_linear_model_has_the_closed_forms() {
    // f(x) = W x + b: J_x = W, so LHS = ||W||_F^2 on any data; J_z = I_K, so
    // Tr(G_WW) = (2 / (n K)) K sum_i ||x_i||^2 = 2 mean ||x||^2; and the Hessian is the GGN.
    let t = tiny("mlp:4-3:identity", 5, 1.0, false);
    let e = estimate(&t, 2000);
    let w = ndarray::ArrayView2::from_shape((3, 4), &t.params[..12]).unwrap();
    close("LHS = ||W||_F^2", e.input_gradient_sq, w.iter().map(|v| v * v).sum(), TOL_EXACT);
    close("Tr(G_WW) = 2 mean ||x||^2", e.ggn_trace_w_exact, 2.0 * e.mean_input_sq, TOL_EXACT);
    assert!((e.hessian_trace_w - e.ggn_trace_w).abs() <= 1e-9 * e.ggn_trace_w, "{e:?}");
    let sv = sgdlab_linalg::singular_values(w).unwrap();
    close("||W||_2", e.weight_norm, sv.iter().fold(0.0f64, |m, s| m.max(*s)), TOL_EXACT);
}

#[test]
fn the_left_hand_side_equals_finite_differences_in_the_inputs() {
    for (arch, seed) in [("mlp:3-5-4-2:tanh", 11), ("mlp:4-6-3:gelu", 12)] {
        let t = tiny(arch, seed, 0.9, false);
        let e = estimate(&t, 4);
        let (n, d) = t.set.x.dim();
        let mut total = 0.0;
        for i in 0..n {
            for j in 0..d {
                let col = richardson(|h| {
                    let (mut a, mut b) = (t.set.x.row(i).to_owned(), t.set.x.row(i).to_owned());
                    a[j] += h;
                    b[j] -= h;
                    let fa = t.model.forward(&t.params, a.view().insert_axis(ndarray::Axis(0))).unwrap();
                    let fb = t.model.forward(&t.params, b.view().insert_axis(ndarray::Axis(0))).unwrap();
                    fa.iter().zip(fb.iter()).map(|(x, y)| (x - y) / (2.0 * h)).collect()
                });
                total += col.iter().map(|v| v * v).sum::<f64>();
            }
        }
        close(&format!("{arch}: LHS"), e.input_gradient_sq, total / n as f64, TOL_FD);
    }
}

#[test]
fn cases_outside_the_bound_are_one_line_errors() {
    let err = |t: &Tiny, loss: Loss| {
        let c = CurvatureContext::new(&t.model, &t.params, &t.set, 0, loss).unwrap();
        sobolev_flatness(&c, &SobolevFlatnessParams::default(), &RngStream::new(0)).unwrap_err().to_string()
    };
    let mut errors = Vec::new();
    // Another loss.
    let t = tiny("mlp:3-4-2:tanh", 1, 1.0, true);
    errors.push(err(&t, Loss::CrossEntropy));
    assert!(errors[0].contains("mse") && errors[0].contains("cross_entropy"), "{}", errors[0]);
    // A first layer that is not linear: named by its kind.
    let arch = "seq:1x6:conv1d(2,3)-relu-flatten-linear(2)";
    let conv = Tiny {
        model: model(arch),
        params: vec![0.3; model(arch).num_params()],
        set: EvalSet::new(Array2::from_elem((3, 6), 0.5), None, Some(Array2::zeros((3, 2)))),
    };
    errors.push(err(&conv, Loss::Mse));
    assert!(errors[1].contains("first layer is linear") && errors[1].contains("layer 0 is conv1d"), "{}", errors[1]);
    // An example at x = 0: the bound divides by min ||x||^2.
    let mut z = tiny("mlp:3-4-2:tanh", 2, 1.0, false);
    z.set.x.row_mut(5).fill(0.0);
    errors.push(err(&z, Loss::Mse));
    assert!(errors[2].contains("example 5") && errors[2].contains("x = 0"), "{}", errors[2]);
    // Unobserved targets.
    let mut u = tiny("mlp:3-4-2:tanh", 3, 1.0, false);
    u.set.values.as_mut().unwrap()[(2, 1)] = f64::NAN;
    errors.push(err(&u, Loss::Mse));
    assert!(errors[3].contains("unobserved"), "{}", errors[3]);
    for e in &errors {
        assert!(!e.contains('\n') && e.starts_with("sobolev-flatness"), "{e}");
    }
    // Through the registry: options are checked before anything runs.
    let probe = registry::find("sobolev-flatness").unwrap();
    let e = probe.options_from_json(json!({ "probes": 1 })).err().unwrap();
    assert!(e.contains("probes") && e.contains("at least 2"), "{e}");
}

#[test]
fn the_registry_probe_writes_both_sides_on_mse_and_refuses_cross_entropy() {
    let probe = registry::find("sobolev-flatness").unwrap();
    let m = model("mlp:6-8-8-3:relu");
    let params = sgdlab_nn::InitSpec::default().init(&m, &RngStream::new(1));
    let data = sgdlab_data::load_dataset("gaussian-mixture:classes=3,d=6,n=60,n_test=30").unwrap();
    let options = probe.options_from_json(json!({ "probes": 20 })).unwrap();
    for (loss, ok) in [(Loss::Mse, true), (Loss::CrossEntropy, false)] {
        let eval = EvalOptions { batch_size: 16, loss, ..EvalOptions::default() };
        let input = ProbeInput {
            model: Some(&m),
            params: Some(&params),
            data: Some(&data),
            data_spec: None,
            eval: &eval,
            stream: RngStream::new(0).child("sobolev-flatness"),
            adam: None,
        };
        match probe.measure(&input, &options, Precision::F64) {
            Ok(out) => {
                assert!(ok, "cross-entropy accepted");
                let (lhs, rhs) = (out.scalar("input_gradient_sq").unwrap(), out.scalar("bound_ggn").unwrap());
                assert!(lhs > 0.0 && lhs <= rhs, "LHS {lhs} vs RHS {rhs}");
                close("ratio", out.scalar("ratio_ggn").unwrap(), lhs / rhs, TOL_EXACT);
                assert!(out.text.contains("LHS"), "{}", out.text);
            }
            Err(e) => assert!(!ok && e.to_string().contains("mse"), "{e}"),
        }
    }
}
