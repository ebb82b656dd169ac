//! Shift-curvature (Bradley et al. 2021, arXiv:2108.09507; PROTOCOLS 7.3): the curvature of the
//! loss in the direction `delta = theta_te - theta_tr` between the minimiser of the training loss
//! and the minimiser of the test loss reached from it, against the train-test loss gap.
//!
//! Both minimisers are of the regularised objectives `F_s(theta) = L_s(theta) + (l2/2)
//! ||theta||^2` (`s` = train, test; `L_s` the mean loss over the split, `l2 > 0` makes the convex
//! minimiser unique). With `H_s` the Hessian of the *unregularised* `L_s`:
//!
//! * `SC_train = delta^T H_train(theta_tr) delta`, `SC_test = delta^T H_test(theta_te) delta`;
//! * the gap `L_test(theta_tr) - L_test(theta_te)` and its second-order prediction `SC_test / 2`
//!   (the expansion of `L_test` around `theta_te`, where its gradient is `-l2 theta_te`, small);
//! * the objective gap `F_test(theta_tr) - F_test(theta_te)` and its prediction
//!   `(SC_test + l2 ||delta||^2) / 2`, the expansion of `F_test` around its stationary point: this
//!   one is exact for a quadratic loss (MSE of a linear model) whatever `l2`.
//!
//! # The minimiser: line-search Newton-CG on exact Hessian-vector products
//! Nocedal & Wright (2006), Algorithm 7.1: at each iterate, conjugate gradients on
//! `(H + l2 I) p = -g` with the forcing term `||r|| <= min(0.5, sqrt(||g||)) ||g||` (superlinear
//! convergence), stopped at the first direction of non-positive curvature (then the last CG
//! iterate, or `-g` on the first CG step, is a descent direction), followed by a backtracking
//! Armijo line search from the unit step. Chosen over L-BFGS (e.g. the `argmin` crate) because the
//! engine gives exact HVPs at about the cost of 2.5 gradients: for the convex case Newton reaches
//! `||grad|| < 1e-6` in a handful of outer iterations (each CG solve is exact in at most `P`
//! steps), where a quasi-Newton method needs hundreds of gradient evaluations on an ill-conditioned
//! logistic regression and adds a dependency; the same code handles non-convex nets by the
//! negative-curvature exit. Not converging within the budget is a result (the final gradient
//! norm, `converged = false`), never an error.

use super::operators::{CurvatureContext, HessianOperator};
use crate::common::{EvalSet, ProbeError};
use ndarray::{Array2, ArrayView2};
use serde::Serialize;
use sgdlab_linalg::{RngStream, Scalar};
use sgdlab_nn::{Loss, Model};
use sgdlab_operators::{HutchinsonParams, LinearOperator, hutchinson_trace};

/// Knobs of [`minimise_regularised`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewtonCgParams {
    /// The L2 coefficient `l2` of `F = L + (l2/2) ||theta||^2` (every parameter, biases too).
    pub l2: f64,
    /// Stop when `||grad F|| < tol`.
    pub tol: f64,
    /// Newton (outer) iterations at most.
    pub max_iterations: usize,
    /// CG iterations per Newton step at most (each one HVP).
    pub max_cg_iterations: usize,
}

impl Default for NewtonCgParams {
    fn default() -> Self {
        NewtonCgParams { l2: 1e-4, tol: 1e-6, max_iterations: 100, max_cg_iterations: 500 }
    }
}

/// What [`minimise_regularised`] reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinimiseReport {
    /// `||grad F||` at the returned parameters.
    pub grad_norm: f64,
    /// `F` at the returned parameters.
    pub objective: f64,
    /// `L` (without the L2 term) at the returned parameters.
    pub loss: f64,
    /// Whether `grad_norm < tol`.
    pub converged: bool,
    /// Newton iterations taken.
    pub iterations: usize,
    /// Hessian-vector products used (all CG steps).
    pub hvps: usize,
    /// Gradient evaluations (one per iterate) and loss evaluations of the line searches.
    pub gradient_evaluations: usize,
    pub loss_evaluations: usize,
    /// Newton steps whose CG solve met non-positive curvature.
    pub negative_curvature_steps: usize,
    /// Why it stopped: `converged`, `iteration budget`, or `line search failed` (no decrease
    /// along the direction, e.g. at the rounding floor).
    pub stopped: &'static str,
}

fn dot<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x.to_f64() * y.to_f64()).sum()
}

fn norm<T: Scalar>(a: &[T]) -> f64 {
    dot(a, a).sqrt()
}

/// `a + s b`.
fn axpy<T: Scalar>(a: &[T], s: f64, b: &[T]) -> Vec<T> {
    let s = T::from_f64(s);
    a.iter().zip(b).map(|(&x, &y)| x + s * y).collect()
}

/// The model, data and loss of one regularised objective.
struct Objective<'a, T> {
    model: &'a Model,
    set: &'a EvalSet<T>,
    batch_size: usize,
    loss: Loss,
    l2: f64,
}

impl<T: Scalar> Objective<'_, T> {
    fn context<'c>(&'c self, p: &'c [T]) -> Result<CurvatureContext<'c, T>, ProbeError> {
        CurvatureContext::new(self.model, p, self.set, self.batch_size, self.loss)
    }

    /// `(F, L, grad F)` at `p`.
    fn value_gradient(&self, ctx: &CurvatureContext<'_, T>, p: &[T]) -> (f64, f64, Vec<T>) {
        let (loss, g) = ctx.loss_gradient_at(p);
        let g = axpy(&g, self.l2, p);
        (loss + 0.5 * self.l2 * dot(p, p), loss, g)
    }

    fn value(&self, ctx: &CurvatureContext<'_, T>, p: &[T]) -> f64 {
        let l = ctx.loss_at(p);
        if l.is_finite() { l + 0.5 * self.l2 * dot(p, p) } else { f64::INFINITY }
    }
}

/// `(H + l2 I) v` with `H` at the context's parameters.
fn regularised_hvp<T: Scalar>(op: &HessianOperator<'_, T>, l2: f64, v: &[T]) -> Vec<T> {
    let block = ArrayView2::from_shape((1, v.len()), v).expect("one row");
    let hv = op.apply_block(block);
    axpy(hv.as_slice().expect("contiguous"), l2, v)
}

/// Truncated CG on `(H + l2 I) p = -g`: the direction and whether it met non-positive curvature.
fn newton_direction<T: Scalar>(
    op: &HessianOperator<'_, T>,
    l2: f64,
    g: &[T],
    max_cg: usize,
    hvps: &mut usize,
) -> (Vec<T>, bool) {
    let gnorm = norm(g);
    let target = gnorm.sqrt().min(0.5) * gnorm;
    let mut z = vec![T::zero(); g.len()];
    let mut r = g.to_vec();
    let mut d: Vec<T> = g.iter().map(|&v| -v).collect();
    let mut rr = dot(&r, &r);
    for j in 0..max_cg.max(1) {
        let bd = regularised_hvp(op, l2, &d);
        *hvps += 1;
        let curvature = dot(&d, &bd);
        if curvature <= f64::EPSILON * dot(&d, &d) {
            return (if j == 0 { g.iter().map(|&v| -v).collect() } else { z }, true);
        }
        let alpha = rr / curvature;
        z = axpy(&z, alpha, &d);
        r = axpy(&r, alpha, &bd);
        let rr_new = dot(&r, &r);
        if rr_new.sqrt() <= target {
            break;
        }
        d = axpy(&r.iter().map(|&v| -v).collect::<Vec<_>>(), rr_new / rr, &d);
        rr = rr_new;
    }
    (z, false)
}

/// Minimises `F(theta) = L(theta) + (l2/2) ||theta||^2`, the mean loss over `set`, from `start`
/// by line-search Newton-CG (module documentation). Returns the parameters reached and the
/// report; a budget exhausted is reported, not an error.
pub fn minimise_regularised<T: Scalar>(
    model: &Model,
    set: &EvalSet<T>,
    batch_size: usize,
    loss: Loss,
    start: &[T],
    params: &NewtonCgParams,
) -> Result<(Vec<T>, MinimiseReport), ProbeError> {
    let obj = Objective { model, set, batch_size, loss, l2: params.l2 };
    let mut p = start.to_vec();
    let (mut hvps, mut grads, mut losses, mut negative) = (0, 0, 0, 0);
    let mut iterations = 0;
    let stopped = loop {
        // One Newton step; the context borrows `p`, so the next iterate is assigned after it.
        let next = {
            let ctx = obj.context(&p)?;
            let (f, _, g) = obj.value_gradient(&ctx, &p);
            grads += 1;
            if norm(&g) < params.tol {
                break "converged";
            }
            if iterations == params.max_iterations {
                break "iteration budget";
            }
            iterations += 1;
            let op = HessianOperator { ctx: &ctx };
            let (dir, met_negative) = newton_direction(&op, params.l2, &g, params.max_cg_iterations, &mut hvps);
            negative += usize::from(met_negative);
            let slope = dot(&g, &dir);
            let mut step = 1.0;
            let mut next = None;
            for _ in 0..60 {
                let trial = axpy(&p, step, &dir);
                losses += 1;
                if obj.value(&ctx, &trial) <= f + 1e-4 * step * slope {
                    next = Some(trial);
                    break;
                }
                step *= 0.5;
            }
            next
        };
        match next {
            Some(q) if q != p => p = q,
            _ => break "line search failed",
        }
    };
    let ctx = obj.context(&p)?;
    let (objective, loss_value, g) = obj.value_gradient(&ctx, &p);
    let grad_norm = norm(&g);
    let report = MinimiseReport {
        grad_norm,
        objective,
        loss: loss_value,
        converged: grad_norm < params.tol,
        iterations,
        hvps,
        gradient_evaluations: grads + 1,
        loss_evaluations: losses,
        negative_curvature_steps: negative,
        stopped,
    };
    Ok((p, report))
}

/// How [`mean_curvature`] estimated `Tr H`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceValue {
    pub trace: f64,
    /// 0 when exact.
    pub standard_error: f64,
    pub exact: bool,
    pub quadratic_forms: usize,
}

/// `Tr H` at the context's parameters: exact (`e_i^T H e_i` for every `i`) when `P <=
/// exact_max`, else Hutchinson with `probes` Rademacher probes (stream `trace`).
pub fn mean_curvature<T: Scalar>(
    ctx: &CurvatureContext<'_, T>,
    exact_max: usize,
    probes: usize,
    stream: &RngStream,
) -> Result<TraceValue, ProbeError> {
    let op = HessianOperator { ctx };
    let n = ctx.dim();
    if n <= exact_max {
        let mut trace = 0.0;
        for start in (0..n).step_by(64) {
            let rows = 64.min(n - start);
            let mut e = Array2::<T>::zeros((rows, n));
            for i in 0..rows {
                e[[i, start + i]] = T::one();
            }
            let q = op.quadratic_forms(e.view()).expect("the Hessian has quadratic forms");
            trace += q.iter().sum::<f64>();
        }
        return Ok(TraceValue { trace, standard_error: 0.0, exact: true, quadratic_forms: n });
    }
    let t = hutchinson_trace(&op, &HutchinsonParams { probes, ..Default::default() }, &stream.child("trace"))?;
    Ok(TraceValue {
        trace: t.trace,
        standard_error: t.standard_error,
        exact: false,
        quadratic_forms: t.quadratic_forms + t.matvecs,
    })
}

/// The model, the two splits, the batch size of every pass and the loss of [`shift_curvature`].
#[derive(Clone, Copy)]
pub struct ShiftData<'a, T> {
    pub model: &'a Model,
    pub train: &'a EvalSet<T>,
    pub test: &'a EvalSet<T>,
    pub batch_size: usize,
    pub loss: Loss,
}

/// Knobs of [`shift_curvature`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShiftCurvatureParams {
    pub newton: NewtonCgParams,
    /// `Tr H_train` exactly up to this many parameters, else by Hutchinson.
    pub exact_trace_max_params: usize,
    pub trace_probes: usize,
}

/// Everything [`shift_curvature`] measures (module documentation for the formulas).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShiftCurvatureEstimate {
    pub l2: f64,
    pub num_params: usize,
    /// `||delta||`, `||theta_tr||`, `||theta_te||`, and `||theta_tr - theta_0||` (the checkpoint).
    pub delta_norm: f64,
    pub theta_train_norm: f64,
    pub theta_test_norm: f64,
    pub warm_start_distance: f64,
    pub sc_train: f64,
    pub sc_test: f64,
    /// `SC / ||delta||^2`.
    pub normalised_sc_train: f64,
    pub normalised_sc_test: f64,
    /// `Tr H_train(theta_tr) / P`, and the normalised `SC_train` over it.
    pub mean_curvature: f64,
    pub mean_curvature_stderr: f64,
    pub mean_curvature_exact: bool,
    pub curvature_ratio: f64,
    /// `L_train(theta_tr)`, `L_test(theta_tr)`, `L_test(theta_te)`, `L_train(theta_te)`.
    pub train_loss: f64,
    pub test_loss_at_train_min: f64,
    pub test_loss_at_test_min: f64,
    pub train_loss_at_test_min: f64,
    /// `L_test(theta_tr) - L_train(theta_tr)`.
    pub generalisation_gap: f64,
    /// `L_test(theta_tr) - L_test(theta_te)`, `SC_test / 2`, their ratio, and the ratio with
    /// `SC_train / 2`.
    pub gap: f64,
    pub predicted_gap: f64,
    pub gap_ratio: f64,
    pub gap_ratio_train_hessian: f64,
    /// `F_test(theta_tr) - F_test(theta_te)`, `(SC_test + l2 ||delta||^2) / 2`, their ratio.
    pub objective_gap: f64,
    pub predicted_objective_gap: f64,
    pub objective_gap_ratio: f64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub train_minimiser: MinimiseReport,
    pub test_minimiser: MinimiseReport,
    pub trace_quadratic_forms: usize,
}

/// `delta^T H delta` by one exact HVP, `H` the unregularised Hessian at the context's parameters.
fn curvature_along<T: Scalar>(ctx: &CurvatureContext<'_, T>, delta: &[T]) -> f64 {
    let h = regularised_hvp(&HessianOperator { ctx }, 0.0, delta);
    dot(delta, &h)
}

/// Bradley et al.'s shift-curvature from the warm start `start` (module documentation):
/// `theta_tr` minimises `F_train` from `start`, `theta_te` minimises `F_test` from `theta_tr`.
pub fn shift_curvature<T: Scalar>(
    data: &ShiftData<'_, T>,
    start: &[T],
    params: &ShiftCurvatureParams,
    stream: &RngStream,
) -> Result<ShiftCurvatureEstimate, ProbeError> {
    let ShiftData { model, train, test, batch_size, loss } = *data;
    let l2 = params.newton.l2;
    let (theta_tr, train_minimiser) = minimise_regularised(model, train, batch_size, loss, start, &params.newton)?;
    let (theta_te, test_minimiser) = minimise_regularised(model, test, batch_size, loss, &theta_tr, &params.newton)?;
    let delta = axpy(&theta_te, -1.0, &theta_tr);
    let delta_sq = dot(&delta, &delta);
    let train_at_tr = CurvatureContext::new(model, &theta_tr, train, batch_size, loss)?;
    let test_at_te = CurvatureContext::new(model, &theta_te, test, batch_size, loss)?;
    let sc_train = curvature_along(&train_at_tr, &delta);
    let sc_test = curvature_along(&test_at_te, &delta);
    let trace = mean_curvature(&train_at_tr, params.exact_trace_max_params, params.trace_probes, stream)?;
    let n = model.num_params() as f64;
    let (train_loss, train_accuracy) = train_at_tr.loss_accuracy_at(&theta_tr);
    let (test_loss_at_train_min, test_accuracy) = test_at_te.loss_accuracy_at(&theta_tr);
    let test_loss_at_test_min = test_at_te.loss_at(&theta_te);
    let train_loss_at_test_min = train_at_tr.loss_at(&theta_te);
    let gap = test_loss_at_train_min - test_loss_at_test_min;
    let objective_gap = gap + 0.5 * l2 * (dot(&theta_tr, &theta_tr) - dot(&theta_te, &theta_te));
    let predicted_objective_gap = 0.5 * (sc_test + l2 * delta_sq);
    let normalised_sc_train = sc_train / delta_sq;
    Ok(ShiftCurvatureEstimate {
        l2,
        num_params: model.num_params(),
        delta_norm: delta_sq.sqrt(),
        theta_train_norm: norm(&theta_tr),
        theta_test_norm: norm(&theta_te),
        warm_start_distance: norm(&axpy(&theta_tr, -1.0, start)),
        sc_train,
        sc_test,
        normalised_sc_train,
        normalised_sc_test: sc_test / delta_sq,
        mean_curvature: trace.trace / n,
        mean_curvature_stderr: trace.standard_error / n,
        mean_curvature_exact: trace.exact,
        curvature_ratio: normalised_sc_train / (trace.trace / n),
        train_loss,
        test_loss_at_train_min,
        test_loss_at_test_min,
        train_loss_at_test_min,
        generalisation_gap: test_loss_at_train_min - train_loss,
        gap,
        predicted_gap: 0.5 * sc_test,
        gap_ratio: gap / (0.5 * sc_test),
        gap_ratio_train_hessian: gap / (0.5 * sc_train),
        objective_gap,
        predicted_objective_gap,
        objective_gap_ratio: objective_gap / predicted_objective_gap,
        train_accuracy,
        test_accuracy,
        train_minimiser,
        test_minimiser,
        trace_quadratic_forms: trace.quadratic_forms,
    })
}
