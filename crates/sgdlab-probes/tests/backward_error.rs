//! The `backward-error` probe (Barrett & Dherin 2021; PROTOCOLS 9.1a) on a loss whose gradient
//! flows are known in closed form: a linear model with the mse loss is a quadratic
//! L(theta) = (1/2) (theta - theta*)^T A (theta - theta*) + c, so the flow of L ends at
//! theta_0 - A^{-1} (I - exp(-h A)) g_0 and the flow of the modified loss, whose Hessian is
//! B = A + (h/2) A^2, at theta_0 - (I - exp(-h B)) A^{-1} g_0. A comes from central differences
//! of the gradient (exact for a quadratic, up to rounding), not from the HVPs the probe uses.

use ndarray::Array2;
use sgdlab_linalg::{RngStream, standard_normal, symmetric_eigen};
use sgdlab_nn::{ArchSpec, Loss, Model};
use sgdlab_operators::LinearOperator;
use sgdlab_probes::EvalSet;
use sgdlab_probes::curvature::{BackwardErrorParams, CurvatureContext, HessianOperator, backward_error};

/// RK4 with 200 sub-steps against the closed form: its error is (h lambda / 200)^4 relative to
/// the flow's step, far below the backward errors themselves (h^2 to h^3), plus rounding.
const TOL_FLOW: f64 = 1e-7;
/// One HVP at the context's point by two code paths that must agree to rounding.
const TOL_EXACT: f64 = 1e-12;
/// Log-log slopes over h = 1e-3..8e-3, where the leading term dominates (the next order moves
/// them by about h lambda_max ~ 1e-2).
const TOL_SLOPE: f64 = 0.05;

fn setup() -> (Model, Vec<f64>, EvalSet<f64>) {
    let model = Model::new(&"mlp:3-1:tanh".parse::<ArchSpec>().unwrap());
    let mut rng = RngStream::new(9).child("backward").rng();
    let params: Vec<f64> = (0..model.num_params()).map(|_| standard_normal::<f64, _>(&mut rng)).collect();
    let x = Array2::from_shape_fn((7, 3), |_| standard_normal::<f64, _>(&mut rng));
    let y = Array2::from_shape_fn((7, 1), |_| standard_normal::<f64, _>(&mut rng));
    (model, params, EvalSet::new(x, None, Some(y)))
}

#[test]
fn errors_match_the_closed_form_flows_of_a_quadratic_and_fall_as_h2_and_h3() {
    let (model, params, set) = setup();
    let ctx = CurvatureContext::new(&model, &params, &set, 3, Loss::Mse).unwrap();
    let p = params.len();
    // A by central differences of the gradient.
    let mut a = Array2::<f64>::zeros((p, p));
    for j in 0..p {
        let (mut up, mut down) = (params.clone(), params.clone());
        up[j] += 1e-3;
        down[j] -= 1e-3;
        let (gu, gd) = (ctx.loss_gradient_at(&up).1, ctx.loss_gradient_at(&down).1);
        for i in 0..p {
            a[(i, j)] = (gu[i] - gd[i]) / 2e-3;
        }
    }
    let a = (&a + &a.t()) / 2.0;
    let eig = symmetric_eigen(a.view()).unwrap();
    let (lambda, v) = (eig.values.clone(), eig.vectors.clone());
    assert!(lambda.iter().all(|&l| l > 1e-6), "A must be positive definite: {lambda:?}");
    let g0 = ctx.loss_gradient_at(&params).1;
    let g_eig: Vec<f64> = (0..p).map(|k| (0..p).map(|i| v[(i, k)] * g0[i]).sum()).collect();
    let steps = vec![0.001, 0.002, 0.004, 0.008, 0.064];
    let s = backward_error(&ctx, &BackwardErrorParams { steps: steps.clone(), substeps: 200 }).unwrap();
    for (q, &h) in s.points.iter().zip(&steps) {
        // theta_1 - phi = -h g0 + sum_k v_k f_k(h) (v_k . g0), both flows in the eigenbasis of A.
        let err = |f: &dyn Fn(f64) -> f64| -> f64 {
            let coef: Vec<f64> = (0..p).map(|k| (f(lambda[k]) - h) * g_eig[k]).collect();
            (0..p).map(|i| (0..p).map(|k| v[(i, k)] * coef[k]).sum::<f64>().powi(2)).sum::<f64>().sqrt()
        };
        let original = err(&|l| (1.0 - (-h * l).exp()) / l);
        let modified = err(&|l| (1.0 - (-h * (l + 0.5 * h * l * l)).exp()) / l);
        assert!(
            ((q.error_original - original) / original).abs() < TOL_FLOW,
            "h {h}: flow of L: {} against {original}",
            q.error_original
        );
        assert!(
            ((q.error_modified - modified) / modified).abs() < TOL_FLOW,
            "h {h}: flow of the modified loss: {} against {modified}",
            q.error_modified
        );
    }
    // Slopes over the small steps only.
    let small = backward_error(&ctx, &BackwardErrorParams { steps: steps[..4].to_vec(), substeps: 200 }).unwrap();
    assert!((small.slope_original - 2.0).abs() < TOL_SLOPE, "slope of L: {}", small.slope_original);
    assert!((small.slope_modified - 3.0).abs() < TOL_SLOPE, "slope of L~: {}", small.slope_modified);
    assert_eq!(small.gradient_evaluations, 1 + 4 * 2 * 4 * 200);
    assert_eq!(small.hvps, 4 * 4 * 200);
}

#[test]
fn hvp_at_a_point_equals_the_hessian_operator_there() {
    let (_, _, set) = setup();
    let model = Model::new(&"mlp:3-4-1:tanh".parse::<ArchSpec>().unwrap());
    let mut rng = RngStream::new(3).child("point").rng();
    let params2: Vec<f64> = (0..model.num_params()).map(|_| standard_normal::<f64, _>(&mut rng)).collect();
    let ctx = CurvatureContext::new(&model, &params2, &set, 3, Loss::Mse).unwrap();
    let v: Vec<f64> = (0..params2.len()).map(|_| standard_normal::<f64, _>(&mut rng)).collect();
    let hv = ctx.hvp_at(&params2, &v);
    let op = HessianOperator { ctx: &ctx };
    let block = Array2::from_shape_vec((1, v.len()), v.clone()).unwrap();
    let expected = op.apply_block(block.view());
    let scale = expected.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    for (a, e) in hv.iter().zip(expected.row(0)) {
        assert!((a - e).abs() / scale < TOL_EXACT, "{a} against {e}");
    }
}

#[test]
fn step_sizes_are_checked() {
    let (model, params, set) = setup();
    let ctx = CurvatureContext::new(&model, &params, &set, 3, Loss::Mse).unwrap();
    let run = |steps: Vec<f64>, substeps| backward_error(&ctx, &BackwardErrorParams { steps, substeps });
    assert!(run(vec![0.01], 10).unwrap_err().to_string().contains("at least two step sizes"));
    assert!(run(vec![0.01, -0.02], 10).unwrap_err().to_string().contains("not a positive number"));
    assert!(run(vec![0.01, 0.01], 10).unwrap_err().to_string().contains("all equal"));
    assert!(run(vec![0.01, 0.02], 0).unwrap_err().to_string().contains("substeps"));
}
