//! Flatness bounds the input gradient: Ma & Ying (2021), "On linear stability of SGD and
//! input-smoothness of neural networks", NeurIPS, arXiv:2105.13462 (PROTOCOLS 8.3).
//!
//! # The inequality, with sgdlab's MSE convention
//!
//! Let the model be `f(x) = g(W x + b)` with a `Linear` first layer `W` (`m x d`), `z = W x + b`,
//! `J_z(x) = d f / d z` (`K x m`) and the input Jacobian `J_x(x) = d f / d x = J_z(x) W` (`K x d`).
//! Several outputs are handled by Frobenius norms: the left-hand side is
//! `LHS = (1/n) sum_i ||J_x(x_i)||_F^2` (the geometric complexity of PROTOCOLS 4).
//!
//! 1. `||J_x||_F = ||J_z W||_F <= ||J_z||_F ||W||_2`.
//! 2. `d f_k / d W = (grad_z f_k) x^T`, so `||d f / d W||_F^2 = ||J_z||_F^2 ||x||^2`.
//! 3. sgdlab's `mse` is the mean over all `n K` elements, `L = (1/(n K)) sum_i ||f(x_i) - y_i||^2`
//!    (`sgdlab_nn::Loss::scale`). Its Gauss-Newton matrix is
//!    `G = (1/(n K)) sum_i J_theta,i^T (2 I_K) J_theta,i`, whose block on `W` has the trace
//!    `Tr(G_WW) = (2/(n K)) sum_i ||J_z(x_i)||_F^2 ||x_i||^2 >= (2/(n K)) min_i ||x_i||^2 sum_i ||J_z(x_i)||_F^2`.
//!
//! Together: `LHS <= ||W||_2^2 (1/n) sum_i ||J_z(x_i)||_F^2 <= (K/2) ||W||_2^2 Tr(G_WW) / min_i ||x_i||^2`.
//! The factor `K/2` turns sgdlab's mean over `n K` elements into Ma & Ying's
//! `(1/(2n)) sum_i ||f(x_i) - y_i||^2`, whose Gauss-Newton matrix is
//! `(1/n) sum_i grad_theta f grad_theta f^T` as in PROTOCOLS 8.3; with it the bound reads as
//! there. The bound with the GGN is exact (up to the Hutchinson error of the trace). The Hessian
//! is `H = G + (2/(n K)) sum_i sum_k r_ik grad^2_theta f_k(x_i)` with residuals `r = f - y`, so
//! the bound with `Tr(H_WW)` holds near an interpolating minimum (`r -> 0`) but is not guaranteed
//! elsewhere. For a network with piecewise-linear activations (ReLU) `f` is piecewise linear in
//! `W` alone (`W` enters once, before the first activation), so `grad^2_W f_k = 0` almost
//! everywhere and `H_WW = G_WW`: there the Hessian form is exact too.
//!
//! The learning rate enters through linear stability: with sgdlab's loss (the one SGD steps on)
//! a minimum is linearly stable under GD only if `lambda_max(H) <= 2 / eta`; no `K/2` there.

use super::{CurvatureContext, GgnOperator, HessianOperator};
use crate::ProbeError;
use serde::Serialize;
use sgdlab_linalg::{RngStream, Scalar, singular_values};
use sgdlab_nn::{Layer, Loss, Model};
use sgdlab_operators::{
    CountingOperator, HutchinsonParams, LinearOperator, PrincipalBlockOperator, TraceEstimate, hutchinson_trace,
};

/// Knobs of [`sobolev_flatness`].
#[derive(Debug, Clone, PartialEq)]
pub struct SobolevFlatnessParams {
    /// Rademacher probes (zero outside `W`) for each Hutchinson trace.
    pub probes: usize,
}

impl Default for SobolevFlatnessParams {
    fn default() -> Self {
        SobolevFlatnessParams { probes: 100 }
    }
}

/// Both sides of Ma & Ying's bound and every factor of the right-hand side (module doc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SobolevFlatnessEstimate {
    /// `LHS = (1/n) sum_i ||d f(x_i) / d x||_F^2`, exact.
    pub input_gradient_sq: f64,
    /// Sample sd of the per-example `||J_x||_F^2` over `sqrt(n)`.
    pub input_gradient_sq_stderr: f64,
    /// The name of the first layer's weight (`0.weight`) and its coordinates in the flat vector.
    pub weight: String,
    pub weight_range: [usize; 2],
    /// `||W||_2`, the largest singular value of the first layer's weight.
    pub weight_norm: f64,
    /// `min_i ||x_i||^2` over the evaluated examples.
    pub min_input_sq: f64,
    /// `(1/n) sum_i ||x_i||^2`.
    pub mean_input_sq: f64,
    /// `K / 2` (module doc).
    pub output_factor: f64,
    /// `Tr(H_WW)`, Hutchinson with probes zero outside `W`.
    pub hessian_trace_w: f64,
    pub hessian_trace_w_stderr: f64,
    /// `Tr(G_WW)`, Hutchinson with the same probe vectors as `Tr(H_WW)`.
    pub ggn_trace_w: f64,
    pub ggn_trace_w_stderr: f64,
    /// `Tr(G_WW) = (2/(n K)) sum_i ||J_z(x_i)||_F^2 ||x_i||^2`, exact (`K` backward passes of the
    /// layers after the first per batch): the check of the Hutchinson estimate.
    pub ggn_trace_w_exact: f64,
    /// `RHS = (K/2) ||W||_2^2 Tr(H_WW) / min_i ||x_i||^2`.
    pub bound_hessian: f64,
    /// The same with the Hutchinson `Tr(G_WW)`: an exact bound.
    pub bound_ggn: f64,
    /// `LHS / RHS` for each (at most 1 when the bound holds and the RHS is positive).
    pub ratio_hessian: f64,
    pub ratio_ggn: f64,
    /// Examples evaluated.
    pub samples: usize,
    /// Products and quadratic forms of both traces.
    pub matvecs: usize,
    pub quadratic_forms: usize,
    /// Probes per trace.
    pub probes: usize,
}

/// The first layer's weight block: name and coordinates, or why the bound does not apply.
fn first_linear_weight(model: &Model) -> Result<(String, std::ops::Range<usize>, usize, usize), ProbeError> {
    match model.layers().first() {
        Some(Layer::Linear(l)) => {
            let start = model.offset(0);
            Ok((format!("{}.weight", model.layer_name(0)), start..start + l.out_dim * l.in_dim, l.out_dim, l.in_dim))
        }
        Some(other) => Err(ProbeError::Invalid(format!(
            "sobolev-flatness needs a model whose first layer is linear (f(x) = g(W x + b)); layer 0 is {}",
            other.kind()
        ))),
        None => Err(ProbeError::Invalid("sobolev-flatness: the model has no layers".into())),
    }
}

/// Ma & Ying's bound `LHS <= (K/2) ||W||_2^2 Tr(H_WW) / min_i ||x_i||^2` on the context's
/// examples, with the Hessian and with the Gauss-Newton matrix (module doc for the derivation).
/// Errors: a loss other than `mse`, a first layer that is not linear, unobserved (NaN) targets,
/// an example with `x = 0`.
pub fn sobolev_flatness<T: Scalar>(
    ctx: &CurvatureContext<'_, T>,
    params: &SobolevFlatnessParams,
    stream: &RngStream,
) -> Result<SobolevFlatnessEstimate, ProbeError> {
    if ctx.loss != Loss::Mse {
        return Err(ProbeError::Invalid(format!(
            "sobolev-flatness: the bound is derived for the mse loss (Ma & Ying 2021), not {}",
            ctx.loss
        )));
    }
    if params.probes < 2 {
        return Err(ProbeError::Invalid(format!("sobolev-flatness: probes must be at least 2, got {}", params.probes)));
    }
    let (weight, range, m, d) = first_linear_weight(ctx.model)?;
    if let Some(v) = &ctx.set.values
        && v.iter().any(|a| a.is_nan())
    {
        return Err(ProbeError::Invalid(
            "sobolev-flatness: some targets are unobserved (NaN); the Gauss-Newton identity needs every output observed"
                .into(),
        ));
    }
    let (n, k) = (ctx.len(), ctx.model.out_dim());
    let input_sq: Vec<f64> =
        ctx.set.x.rows().into_iter().map(|r| r.iter().map(|&v| v.to_f64() * v.to_f64()).sum()).collect();
    let min_input_sq = input_sq.iter().copied().fold(f64::INFINITY, f64::min);
    if min_input_sq <= 0.0 {
        let i = input_sq.iter().position(|&v| v <= 0.0).unwrap_or(0);
        return Err(ProbeError::Invalid(format!(
            "sobolev-flatness: example {i} of the evaluated set is x = 0, so min ||x||^2 = 0 and the bound is void"
        )));
    }
    // ||W||_2.
    let w = ndarray::ArrayView2::from_shape((m, d), &ctx.params[range.clone()]).expect("the layout's weight shape");
    let weight_norm = singular_values(w)
        .map_err(|e| ProbeError::Invalid(format!("sobolev-flatness: the singular values of {weight}: {e}")))?
        .iter()
        .fold(0.0f64, |a, &s| a.max(Scalar::to_f64(s).abs()));
    // LHS and the exact Tr(G_WW) from the per-example Jacobians.
    let (jx, jz) = per_example_jacobian_norms(ctx)?;
    let lhs = jx.iter().sum::<f64>() / n as f64;
    let lhs_stderr = if n > 1 { sgdlab_linalg::stats::std_dev(&jx, 1) / (n as f64).sqrt() } else { f64::NAN };
    let c = ctx.scale().to_f64();
    let ggn_exact = 2.0 * c * jz.iter().zip(&input_sq).map(|(a, b)| a * b).sum::<f64>();
    // Hutchinson traces of the W blocks.
    let hutch = HutchinsonParams { probes: params.probes, quadratic_forms: true, ..Default::default() };
    // The same probes for both (stream `trace-w`): their difference, the residual term of the
    // Hessian, is then estimated without the probes' own variance.
    let trace_of = |op: &dyn LinearOperator<T>| -> Result<(TraceEstimate, usize, usize), ProbeError> {
        let counted = CountingOperator::new(PrincipalBlockOperator::new(op, range.clone())?);
        let e = hutchinson_trace(&counted, &hutch, &stream.child("trace-w"))?;
        Ok((e, counted.matvecs(), counted.quadratic_forms_used()))
    };
    let (h, hm, hq) = trace_of(&HessianOperator { ctx })?;
    let (g, gm, gq) = trace_of(&GgnOperator { ctx })?;
    let output_factor = k as f64 / 2.0;
    let bound = |tr: f64| output_factor * weight_norm * weight_norm * tr / min_input_sq;
    let (bound_hessian, bound_ggn) = (bound(h.trace), bound(g.trace));
    Ok(SobolevFlatnessEstimate {
        input_gradient_sq: lhs,
        input_gradient_sq_stderr: lhs_stderr,
        weight,
        weight_range: [range.start, range.end],
        weight_norm,
        min_input_sq,
        mean_input_sq: input_sq.iter().sum::<f64>() / n as f64,
        output_factor,
        hessian_trace_w: h.trace,
        hessian_trace_w_stderr: h.standard_error,
        ggn_trace_w: g.trace,
        ggn_trace_w_stderr: g.standard_error,
        ggn_trace_w_exact: ggn_exact,
        bound_hessian,
        bound_ggn,
        ratio_hessian: lhs / bound_hessian,
        ratio_ggn: lhs / bound_ggn,
        samples: n,
        matvecs: hm + gm,
        quadratic_forms: hq + gq,
        probes: params.probes,
    })
}

/// Per example: `||J_x(x_i)||_F^2` of the whole model and `||J_z(x_i)||_F^2` of the layers after
/// the first (at `z_i = W x_i + b`; `K` for a model that is one linear layer, `J_z = I_K`).
fn per_example_jacobian_norms<T: Scalar>(ctx: &CurvatureContext<'_, T>) -> Result<(Vec<f64>, Vec<f64>), ProbeError> {
    let model = ctx.model;
    let rest = match model.layers().len() {
        1 => None,
        _ => Some(Model::from_layers_shaped(model.layers()[1..].to_vec(), model.shapes()[1])?),
    };
    let first = &model.layers()[0];
    let (mut jx, mut jz) = (Vec::with_capacity(ctx.len()), Vec::with_capacity(ctx.len()));
    for r in &ctx.batches {
        let x = ctx.set.x.slice(ndarray::s![r.clone(), ..]);
        jx.extend(model.input_jacobian_sq_frobenius(ctx.params, x)?.into_iter().map(|v| v.to_f64()));
        match &rest {
            None => jz.extend(std::iter::repeat_n(model.out_dim() as f64, r.len())),
            Some(rest) => {
                let z = first.forward(model.layer_params(0, ctx.params), x);
                let p = &ctx.params[model.offset(1)..];
                jz.extend(rest.input_jacobian_sq_frobenius(p, z.view())?.into_iter().map(|v| v.to_f64()));
            }
        }
    }
    Ok((jx, jz))
}
