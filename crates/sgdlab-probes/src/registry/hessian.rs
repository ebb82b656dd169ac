//! Registry entry of the curvature spectrum (PROTOCOLS 7, 10.2): top and bottom eigenvalues by
//! Lanczos, the trace by Hutchinson or Hutch++, the exact spectrum of small models and the
//! spectral density by stochastic Lanczos quadrature, of the Hessian or another curvature matrix.

use super::{MetricInfo, MetricValue, Needs, ProbeImpl, ProbeInput, ProbeOutput, Table, scalar, vector};
use crate::common::ProbeError;
use crate::curvature::{
    CurvatureContext, FisherKind, FisherOperator, GgnOperator, GradientNoiseOperator, HessianOperator, exact_spectrum,
    smoothed_density,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sgdlab_linalg::{RngStream, Scalar};
use sgdlab_operators::{
    CountingOperator, EigenTarget, HutchPlusPlusParams, HutchinsonParams, LanczosParams, LinearOperator,
    ProbeDistribution, SpectralDensityParams, hutch_plus_plus_trace, hutchinson_trace, lanczos_eigenpairs,
    spectral_density,
};
use std::fmt::Write as _;

/// Which curvature matrix the `hessian` probe measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CurvatureOperator {
    /// The Hessian of the mean loss.
    #[default]
    Hessian,
    /// The generalised Gauss-Newton matrix J^T H_loss J.
    Ggn,
    /// The exact Fisher (equals the GGN for these losses).
    Fisher,
    /// Monte-Carlo Fisher with fisher-samples labels per example drawn from the model.
    FisherMc,
    /// The empirical Fisher (outer products of per-example gradients at the true labels).
    EmpiricalFisher,
    /// The covariance of per-example gradients.
    Noise,
}

impl CurvatureOperator {
    fn build<'a, T: Scalar>(
        self,
        ctx: &'a CurvatureContext<'a, T>,
        fisher_samples: usize,
        stream: &RngStream,
    ) -> Result<Box<dyn LinearOperator<T> + 'a>, ProbeError> {
        Ok(match self {
            CurvatureOperator::Hessian => Box::new(HessianOperator { ctx }),
            CurvatureOperator::Ggn => Box::new(GgnOperator { ctx }),
            CurvatureOperator::Fisher => Box::new(FisherOperator::new(ctx, FisherKind::Exact, stream)?),
            CurvatureOperator::FisherMc => {
                Box::new(FisherOperator::new(ctx, FisherKind::MonteCarlo { samples: fisher_samples }, stream)?)
            }
            CurvatureOperator::EmpiricalFisher => Box::new(FisherOperator::new(ctx, FisherKind::Empirical, stream)?),
            CurvatureOperator::Noise => Box::new(GradientNoiseOperator::new(ctx)?),
        })
    }

    fn name(self) -> &'static str {
        match self {
            CurvatureOperator::Hessian => "hessian",
            CurvatureOperator::Ggn => "ggn",
            CurvatureOperator::Fisher => "fisher",
            CurvatureOperator::FisherMc => "fisher-mc",
            CurvatureOperator::EmpiricalFisher => "empirical-fisher",
            CurvatureOperator::Noise => "noise",
        }
    }
}

/// Options of [`HessianProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct HessianOptions {
    /// Which curvature matrix.
    #[arg(long, value_enum, default_value_t = CurvatureOperator::Hessian)]
    pub operator: CurvatureOperator,
    /// Largest eigenvalues computed by Lanczos, descending (0 = none).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub top_k: usize,
    /// Smallest eigenvalues computed by Lanczos, ascending (0 = none).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub bottom_k: usize,
    /// Lanczos stopping tolerance on residuals, relative to the largest Ritz value.
    #[arg(long, value_name = "TOL", default_value_t = 1e-3)]
    pub tol: f64,
    /// Lanczos iteration cap (at least top-k and bottom-k).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_iters: usize,
    /// Estimate the trace (Hutchinson with Rademacher probes). Each probe's z^T A z comes from
    /// second-order forward mode for the Hessian (no backward pass; cheaper than a Hessian-vector
    /// product) and from a jvp for the GGN/Fisher.
    #[arg(long)]
    pub trace: bool,
    /// Probes for the trace (with hutchpp: the whole budget of products and quadratic forms).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub probes: usize,
    /// Use Hutch++ (Meyer et al. 2021) instead of Hutchinson: a third of the probes as sketch
    /// products, the rest as quadratic forms.
    #[arg(long)]
    pub hutchpp: bool,
    /// Compute each trace probe's z^T A z from a full matrix-vector product instead of the
    /// operator's quadratic forms (same estimate up to rounding; for cross-checks and timing).
    #[arg(long)]
    pub trace_by_products: bool,
    /// Materialise the matrix and compute its whole spectrum (small models only).
    #[arg(long)]
    pub exact: bool,
    /// Largest parameter count the exact spectrum accepts.
    #[arg(long, value_name = "N", default_value_t = 6000)]
    pub max_params: usize,
    /// Near-zero threshold tau of the exact spectrum: |lambda| < tau * lambda_max.
    #[arg(long, value_name = "TAU", default_value_t = 1e-3)]
    pub tau: f64,
    /// z of the effective dimensionality sum lambda / (lambda + z) of the exact spectrum.
    #[arg(long, value_name = "Z", default_value_t = 1.0)]
    pub eff_dim_z: f64,
    /// Estimate the spectral density by stochastic Lanczos quadrature (Ghorbani et al. 2019), on
    /// a grid over its support.
    #[arg(long)]
    pub density: bool,
    /// Probes of the spectral density.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub density_probes: usize,
    /// Lanczos steps per probe of the spectral density.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub density_steps: usize,
    /// Gaussian smoothing width of the density, relative to the spectral range.
    #[arg(long, value_name = "W", default_value_t = 0.01)]
    pub density_width: f64,
    /// Grid points of the density.
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub density_points: usize,
    /// Labels sampled per example for the operator fisher-mc.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub fisher_samples: usize,
}

impl Default for HessianOptions {
    fn default() -> Self {
        HessianOptions {
            operator: CurvatureOperator::Hessian,
            top_k: 1,
            bottom_k: 0,
            tol: 1e-3,
            max_iters: 200,
            trace: false,
            probes: 100,
            hutchpp: false,
            trace_by_products: false,
            exact: false,
            max_params: 6000,
            tau: 1e-3,
            eff_dim_z: 1.0,
            density: false,
            density_probes: 10,
            density_steps: 40,
            density_width: 0.01,
            density_points: 400,
            fisher_samples: 1,
        }
    }
}

/// `hessian`: the spectrum of a curvature matrix.
pub struct HessianProbe;

const RANK: &str = "eigenvalue rank";
const GRID: &str = "grid point";

impl ProbeImpl for HessianProbe {
    const NAME: &'static str = "hessian";
    const ABOUT: &'static str = "Curvature spectrum: top/bottom eigenvalues (Lanczos), trace (Hutchinson / \
        Hutch++), exact spectrum for small models, spectral density (stochastic Lanczos quadrature); of the \
        Hessian, or of the GGN / Fisher / empirical Fisher / gradient-noise covariance.";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar("top_eigenvalue", "top eigenvalue", "largest eigenvalue of the chosen curvature matrix"),
        MetricInfo::vector("top_eigenvalues", "top eigenvalues", RANK, "the top_k largest eigenvalues, descending"),
        MetricInfo::vector("top_residuals", "residual", RANK, "residual norms ||A y - theta y|| of the top Ritz pairs"),
        MetricInfo::scalar("top_converged", "converged top eigenpairs", "top Ritz pairs within the tolerance"),
        MetricInfo::vector(
            "bottom_eigenvalues",
            "bottom eigenvalues",
            RANK,
            "the bottom_k smallest eigenvalues, ascending",
        ),
        MetricInfo::vector(
            "bottom_residuals",
            "residual",
            RANK,
            "residual norms ||A y - theta y|| of the bottom Ritz pairs",
        ),
        MetricInfo::scalar("bottom_converged", "converged bottom eigenpairs", "bottom Ritz pairs within the tolerance"),
        MetricInfo::scalar("trace", "trace", "Hutchinson (or Hutch++) estimate of the trace"),
        MetricInfo::scalar("trace_stderr", "standard error of the trace", "standard error of the trace estimate"),
        MetricInfo::vector("eigenvalues", "eigenvalues", RANK, "the whole exact spectrum, descending"),
        MetricInfo::scalar("exact_trace", "trace (exact)", "sum of all eigenvalues"),
        MetricInfo::scalar(
            "near_zero_fraction",
            "near-zero eigenvalue fraction",
            "fraction of eigenvalues with |lambda| < tau lambda_max (Maddox et al. 2020)",
        ),
        MetricInfo::scalar(
            "effective_dimensionality",
            "effective dimensionality",
            "sum_i lambda_i / (lambda_i + z) over eigenvalues clamped at 0",
        ),
        MetricInfo::scalar("frobenius_norm", "Frobenius norm", "Frobenius norm of the materialised matrix"),
        MetricInfo::vector("density_lambda", "eigenvalue", GRID, "grid of the spectral density"),
        MetricInfo::vector("density", "spectral density", GRID, "smoothed spectral density at each grid point"),
        MetricInfo::scalar("matvecs", "matrix-vector products", "products used in all"),
        MetricInfo::scalar("quadratic_forms", "quadratic forms", "quadratic forms z^T A z computed directly"),
    ];
    const TABLE: Option<&'static str> = Some("the spectral density (lambda,density; needs --density)");
    type Options = HessianOptions;

    fn written(o: &HessianOptions) -> Vec<&'static str> {
        let mut w = Vec::new();
        if o.top_k > 0 {
            w.extend(["top_eigenvalue", "top_eigenvalues", "top_residuals", "top_converged"]);
        }
        if o.bottom_k > 0 {
            w.extend(["bottom_eigenvalues", "bottom_residuals", "bottom_converged"]);
        }
        if o.trace {
            w.extend(["trace", "trace_stderr"]);
        }
        if o.exact {
            w.extend([
                "eigenvalues",
                "exact_trace",
                "near_zero_fraction",
                "effective_dimensionality",
                "frobenius_norm",
            ]);
        }
        if o.density {
            w.extend(["density_lambda", "density"]);
        }
        w.extend(["matvecs", "quadratic_forms"]);
        w
    }

    fn check(o: &HessianOptions) -> Result<(), String> {
        if o.top_k == 0 && o.bottom_k == 0 && !o.trace && !o.exact && !o.density {
            return Err("say what to compute: top_k, bottom_k, trace, exact and/or density".into());
        }
        for (name, k) in [("top_k", o.top_k), ("bottom_k", o.bottom_k)] {
            if k > o.max_iters {
                return Err(format!("{name} = {k} needs max_iters >= {k} (got {})", o.max_iters));
            }
        }
        if !(o.tol.is_finite() && o.tol > 0.0) {
            return Err(format!("tol must be positive and finite, got {}", o.tol));
        }
        if o.trace && o.probes < 2 {
            return Err(format!("the trace needs at least 2 probes, got {}", o.probes));
        }
        if o.density && !(o.density_width.is_finite() && o.density_width > 0.0) {
            return Err(format!("density_width must be positive and finite, got {}", o.density_width));
        }
        if o.density && o.density_points < 2 {
            return Err(format!("density_points must be at least 2, got {}", o.density_points));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &HessianOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let ctx = e.context()?;
        let op = CountingOperator::new(o.operator.build(&ctx, o.fisher_samples, &input.stream)?);
        let mut m = Measured::default();
        m.details.insert("operator".into(), json!(o.operator.name()));
        for (k, target, key) in
            [(o.top_k, EigenTarget::LargestAlgebraic, "top"), (o.bottom_k, EigenTarget::SmallestAlgebraic, "bottom")]
        {
            if k > 0 {
                extremes(&op, o, k, target, key, &input.stream, &mut m)?;
            }
        }
        if o.trace {
            trace(&op, o, &input.stream, &mut m)?;
        }
        if o.exact {
            exact(&op, o, &mut m)?;
        }
        let table = if o.density { Some(density(&op, o, &input.stream, &mut m)?) } else { None };
        m.values.push(scalar("matvecs", op.matvecs() as f64));
        m.values.push(scalar("quadratic_forms", op.quadratic_forms_used() as f64));
        m.details.insert("matvecs".into(), json!(op.matvecs()));
        m.details.insert("quadratic_forms".into(), json!(op.quadratic_forms_used()));
        let _ = writeln!(m.text, "matvecs {}, quadratic forms {}", op.matvecs(), op.quadratic_forms_used());
        let out = ProbeOutput::new(m.values, Value::Object(m.details), m.text).evaluated(vec![e.evaluated.clone()]);
        Ok(match table {
            Some(t) => out.with_table(t),
            None => out,
        })
    }
}

/// Values, details and text accumulated part by part.
#[derive(Default)]
struct Measured {
    values: Vec<(&'static str, MetricValue)>,
    details: Map<String, Value>,
    text: String,
}

type Counted<'a, T> = CountingOperator<Box<dyn LinearOperator<T> + 'a>>;

fn extremes<T: Scalar>(
    op: &Counted<'_, T>,
    o: &HessianOptions,
    k: usize,
    target: EigenTarget,
    key: &str,
    stream: &RngStream,
    m: &mut Measured,
) -> Result<(), ProbeError> {
    let before = op.matvecs();
    let params = LanczosParams { k, target, tol: o.tol, max_iters: o.max_iters, block_size: 1 };
    let est = lanczos_eigenpairs(op, &params, &stream.child(&format!("lanczos-{key}")))?;
    let used = op.matvecs() - before;
    let top = key == "top";
    if top {
        m.values.push(scalar("top_eigenvalue", est.eigenvalues.first().copied().unwrap_or(f64::NAN)));
    }
    let (ev, res, conv) = if top {
        ("top_eigenvalues", "top_residuals", "top_converged")
    } else {
        ("bottom_eigenvalues", "bottom_residuals", "bottom_converged")
    };
    m.values.push(vector(ev, est.eigenvalues.clone()));
    m.values.push(vector(res, est.residuals.clone()));
    m.values.push(scalar(conv, est.converged_count as f64));
    m.details.insert(ev.into(), json!(est.eigenvalues));
    m.details.insert(res.into(), json!(est.residuals));
    m.details.insert(conv.into(), json!(est.converged));
    m.details.insert(format!("{key}_converged_count"), json!(est.converged_count));
    m.details.insert(format!("{key}_matvecs"), json!(used));
    let _ = writeln!(m.text, "{key}-{k} eigenvalues ({used} matvecs, converged {}):", est.converged);
    for (v, r) in est.eigenvalues.iter().zip(&est.residuals) {
        let _ = writeln!(m.text, "  {v:>14.6}   residual {r:.2e}");
    }
    Ok(())
}

fn trace<T: Scalar>(
    op: &Counted<'_, T>,
    o: &HessianOptions,
    stream: &RngStream,
    m: &mut Measured,
) -> Result<(), ProbeError> {
    let (before, forms_before) = (op.matvecs(), op.quadratic_forms_used());
    let forms = !o.trace_by_products;
    let (trace, stderr) = if o.hutchpp {
        let e = hutch_plus_plus_trace(
            op,
            &HutchPlusPlusParams { matvecs: o.probes, quadratic_forms: forms, ..Default::default() },
            &stream.child("trace"),
        )?;
        (e.trace, e.standard_error)
    } else {
        let e = hutchinson_trace(
            op,
            &HutchinsonParams { probes: o.probes, quadratic_forms: forms, ..Default::default() },
            &stream.child("trace"),
        )?;
        (e.trace, e.standard_error)
    };
    let used = op.matvecs() - before;
    let forms_used = op.quadratic_forms_used() - forms_before;
    let method = if o.hutchpp { "hutch++" } else { "hutchinson" };
    m.values.push(scalar("trace", trace));
    m.values.push(scalar("trace_stderr", stderr));
    m.details.insert(
        "trace".into(),
        json!({"estimate": trace, "stderr": stderr, "method": method, "probes": o.probes, "matvecs": used,
               "quadratic_forms": forms_used}),
    );
    let _ = writeln!(
        m.text,
        "trace {trace:.6} +- {stderr:.6} ({}, {used} matvecs, {forms_used} quadratic forms)",
        if o.hutchpp { "Hutch++" } else { "Hutchinson" }
    );
    Ok(())
}

fn exact<T: Scalar>(op: &Counted<'_, T>, o: &HessianOptions, m: &mut Measured) -> Result<(), ProbeError> {
    let e = exact_spectrum(op, o.max_params, o.tau, o.eff_dim_z)?;
    let (max, min) = (e.eigenvalues[0], e.eigenvalues[e.eigenvalues.len() - 1]);
    let _ = writeln!(
        m.text,
        "exact spectrum of {} eigenvalues: max {max:.6}, min {min:.6}, trace {:.6}\n\
         near-zero fraction (tau {}) {:.4}\neffective dimensionality (z {}) {:.3}",
        e.eigenvalues.len(),
        e.trace,
        e.near_zero_tau,
        e.near_zero_fraction,
        e.effective_dimensionality_z,
        e.effective_dimensionality
    );
    m.values.extend([
        vector("eigenvalues", e.eigenvalues.clone()),
        scalar("exact_trace", e.trace),
        scalar("near_zero_fraction", e.near_zero_fraction),
        scalar("effective_dimensionality", e.effective_dimensionality),
        scalar("frobenius_norm", e.frobenius_norm),
    ]);
    for (k, v) in [
        ("eigenvalues", json!(e.eigenvalues)),
        ("exact_trace", json!(e.trace)),
        ("near_zero_fraction", json!(e.near_zero_fraction)),
        ("near_zero_tau", json!(e.near_zero_tau)),
        ("effective_dimensionality", json!(e.effective_dimensionality)),
        ("effective_dimensionality_z", json!(e.effective_dimensionality_z)),
        ("frobenius_norm", json!(e.frobenius_norm)),
        ("asymmetry", json!(e.asymmetry)),
        ("exact_matvecs", json!(e.matvecs)),
    ] {
        m.details.insert(k.into(), v);
    }
    Ok(())
}

fn density<T: Scalar>(
    op: &Counted<'_, T>,
    o: &HessianOptions,
    stream: &RngStream,
    m: &mut Measured,
) -> Result<Table, ProbeError> {
    let est = spectral_density(
        op,
        &SpectralDensityParams {
            probes: o.density_probes,
            steps: o.density_steps,
            distribution: ProbeDistribution::Rademacher,
        },
        &stream.child("density"),
    )?;
    let g = smoothed_density(&est, o.density_points, o.density_width)?;
    let _ = writeln!(
        m.text,
        "spectral density on {} points (sigma {:.3e}, support [{:.4}, {:.4}], {} probes of {} steps)",
        g.lambda.len(),
        g.smoothing_sigma,
        g.support[0],
        g.support[1],
        o.density_probes,
        o.density_steps
    );
    let table = Table::from_columns(&[("lambda", &g.lambda), ("density", &g.density)]);
    m.values.push(vector("density_lambda", g.lambda.clone()));
    m.values.push(vector("density", g.density.clone()));
    m.details.insert(
        "density".into(),
        json!({"lambda": g.lambda, "density": g.density, "smoothing_sigma": g.smoothing_sigma,
               "support": g.support, "probes": o.density_probes, "steps": o.density_steps, "matvecs": est.matvecs}),
    );
    Ok(table)
}
