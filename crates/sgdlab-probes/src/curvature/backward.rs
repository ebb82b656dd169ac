//! Backward error analysis of one gradient-descent step (Barrett & Dherin 2021; PROTOCOLS 9.1a).
//!
//! From `theta_0`, one GD step of size `h` gives `theta_1 = theta_0 - h grad L(theta_0)`. Gradient
//! flow of the loss `L` for time `h` ends at `phi_L(h)`; gradient flow of the modified loss
//! `L~ = L + (h/4) ||grad L||^2` at `phi_L~(h)`. Backward error analysis says
//! `||theta_1 - phi_L(h)|| = O(h^2)` and `||theta_1 - phi_L~(h)|| = O(h^3)`: GD follows the flow of
//! the modified loss one order more closely. Both flows are integrated with classical RK4; the
//! modified loss's gradient `grad L + (h/2) H grad L` takes one exact Hessian-vector product.

use super::operators::CurvatureContext;
use crate::common::ProbeError;
use serde::Serialize;
use sgdlab_linalg::Scalar;

/// Options of [`backward_error`].
#[derive(Debug, Clone)]
pub struct BackwardErrorParams {
    /// Step sizes `h` (positive, at least two distinct ones for the slopes).
    pub steps: Vec<f64>,
    /// RK4 sub-steps over the time `h` of each flow.
    pub substeps: usize,
}

/// The two errors of one step size.
#[derive(Debug, Clone, Serialize)]
pub struct BackwardErrorPoint {
    pub h: f64,
    /// `||theta_1 - phi_L(h)||`.
    pub error_original: f64,
    /// `||theta_1 - phi_L~(h)||`.
    pub error_modified: f64,
    /// `||theta_1 - theta_0|| = h ||grad L(theta_0)||`, the step's length.
    pub step_length: f64,
}

/// The errors over the step sizes and their log-log slopes.
#[derive(Debug, Clone, Serialize)]
pub struct BackwardErrorEstimate {
    pub points: Vec<BackwardErrorPoint>,
    /// Least-squares slope of `log error_original` against `log h` (theory: 2).
    pub slope_original: f64,
    /// The same for `error_modified` (theory: 3).
    pub slope_modified: f64,
    /// Loss gradients evaluated on the whole set (each HVP of the modified flow counts one more).
    pub gradient_evaluations: usize,
    pub hvps: usize,
    pub substeps: usize,
    /// `||grad L(theta_0)||`.
    pub grad_norm: f64,
}

fn norm<T: Scalar>(v: &[T]) -> f64 {
    v.iter().map(|&x| x.to_f64() * x.to_f64()).sum::<f64>().sqrt()
}

/// The least-squares slope of `ys` against `xs`.
pub fn least_squares_slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    sxy / sxx
}

/// Integrates `d theta / dt = field(theta)` from `start` for time `t` in `n` RK4 steps.
fn rk4<T: Scalar>(start: &[T], t: f64, n: usize, mut field: impl FnMut(&[T]) -> Vec<T>) -> Vec<T> {
    let dt = T::from_f64(t / n as f64);
    let (half, sixth, two) = (T::from_f64(0.5), T::from_f64(1.0 / 6.0), T::from_f64(2.0));
    let mut x = start.to_vec();
    let shifted = |x: &[T], k: &[T], c: T| -> Vec<T> { x.iter().zip(k).map(|(&a, &b)| a + c * b).collect() };
    for _ in 0..n {
        let k1 = field(&x);
        let k2 = field(&shifted(&x, &k1, half * dt));
        let k3 = field(&shifted(&x, &k2, half * dt));
        let k4 = field(&shifted(&x, &k3, dt));
        for i in 0..x.len() {
            x[i] += dt * sixth * (k1[i] + two * k2[i] + two * k3[i] + k4[i]);
        }
    }
    x
}

/// One GD step from the context's parameters against the gradient flows of `L` and of the
/// modified loss `L + (h/4) ||grad L||^2`, for every step size of `p`.
pub fn backward_error<T: Scalar>(
    ctx: &CurvatureContext<'_, T>,
    p: &BackwardErrorParams,
) -> Result<BackwardErrorEstimate, ProbeError> {
    if p.steps.len() < 2 {
        return Err(ProbeError::Invalid(format!(
            "backward error: give at least two step sizes for a slope, got {}",
            p.steps.len()
        )));
    }
    if let Some(h) = p.steps.iter().find(|h| !(h.is_finite() && **h > 0.0)) {
        return Err(ProbeError::Invalid(format!("backward error: step size {h} is not a positive number")));
    }
    if p.steps.iter().all(|&h| h == p.steps[0]) {
        return Err(ProbeError::Invalid("backward error: the step sizes are all equal; a slope needs two".into()));
    }
    if p.substeps == 0 {
        return Err(ProbeError::Invalid("backward error: substeps must be at least 1".into()));
    }
    let theta0 = ctx.params;
    let (_, g0) = ctx.loss_gradient_at(theta0);
    let (mut gradients, mut hvps) = (1usize, 0usize);
    let mut points = Vec::with_capacity(p.steps.len());
    for &h in &p.steps {
        let ht = T::from_f64(h);
        let theta1: Vec<T> = theta0.iter().zip(&g0).map(|(&t, &g)| t - ht * g).collect();
        let flow_l = rk4(theta0, h, p.substeps, |x| {
            gradients += 1;
            ctx.loss_gradient_at(x).1.into_iter().map(|g| -g).collect()
        });
        let c = T::from_f64(h / 2.0);
        let flow_m = rk4(theta0, h, p.substeps, |x| {
            gradients += 1;
            hvps += 1;
            let (_, g) = ctx.loss_gradient_at(x);
            let hg = ctx.hvp_at(x, &g);
            g.iter().zip(&hg).map(|(&a, &b)| -(a + c * b)).collect()
        });
        let err = |phi: &[T]| norm(&theta1.iter().zip(phi).map(|(&a, &b)| a - b).collect::<Vec<T>>());
        points.push(BackwardErrorPoint {
            h,
            error_original: err(&flow_l),
            error_modified: err(&flow_m),
            step_length: h * norm(&g0),
        });
    }
    let slope = |f: fn(&BackwardErrorPoint) -> f64| -> f64 {
        if points.iter().any(|q| !(f(q).is_finite() && f(q) > 0.0)) {
            return f64::NAN; // an exact zero (a flat loss) or an overflow has no log-log slope
        }
        let xs: Vec<f64> = points.iter().map(|q| q.h.ln()).collect();
        let ys: Vec<f64> = points.iter().map(|q| f(q).ln()).collect();
        least_squares_slope(&xs, &ys)
    };
    Ok(BackwardErrorEstimate {
        slope_original: slope(|q| q.error_original),
        slope_modified: slope(|q| q.error_modified),
        points,
        gradient_evaluations: gradients,
        hvps,
        substeps: p.substeps,
        grad_norm: norm(&g0),
    })
}
