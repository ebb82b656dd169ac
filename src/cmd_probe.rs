//! `sgdlab probe NAME`: measures on a trained model (curvature here; simplicity measures in
//! cmd_probe_simplicity.rs). Numbers come from sgdlab-probes; this file parses, dispatches and
//! prints.

use crate::cmd_probe_common::{Loaded, ModelDataArgs, emit};
use anyhow::{Context, Result, bail};
use serde_json::json;
use sgdlab_linalg::Scalar;
use sgdlab_nn::load_checkpoint;
use sgdlab_operators::{
    CountingOperator, EigenTarget, HutchPlusPlusParams, HutchinsonParams, LanczosParams, LinearOperator,
    ProbeDistribution, SpectralDensityParams, hutch_plus_plus_trace, hutchinson_trace, lanczos_eigenpairs,
    spectral_density,
};
use sgdlab_probes::EvalSet;
use sgdlab_probes::curvature::{
    CurvatureContext, FisherKind, FisherOperator, GgnOperator, GradientNoiseOperator, HessianOperator, NoiseParams,
    SlicePoint, epsilon_sharpness, exact_spectrum, filter_normalized_direction, gradient_noise,
    gradient_noise_tail_index, interpolation, landscape_slice, loss_summary,
};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Every probe evaluates the mean loss over --samples examples of --data (a seeded subset), in
batches of --batch-size, in f64 unless --dtype f32. With --json, stdout is exactly one JSON object.

Examples:
  sgdlab probe loss --model runs/x/final.safetensors --data mnist1d
  sgdlab probe hessian --model ckpt.safetensors --data mnist1d --top-k 5 --trace --json
  sgdlab probe hessian --model ckpt.safetensors --exact --density density.csv
  sgdlab probe sharpness --model ckpt.safetensors --epsilon 1e-3 --epsilon 5e-4
  sgdlab probe landscape --model ckpt.safetensors --dims 2 --points 21 --out slice.csv
  sgdlab probe noise --model ckpt.safetensors --noise-batch-size 32")]
pub struct ProbeArgs {
    #[command(subcommand)]
    probe: ProbeCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ProbeCommand {
    /// Mean loss, accuracy and gradient norm (JSON keys loss, accuracy, grad_norm).
    Loss(LossArgs),
    /// Curvature spectrum: top/bottom eigenvalues (Lanczos), trace (Hutchinson / Hutch++),
    /// exact spectrum for small models, spectral density (stochastic Lanczos quadrature); of the
    /// Hessian, or of the GGN / Fisher / empirical Fisher / gradient-noise covariance.
    Hessian(HessianArgs),
    /// Keskar's epsilon-sharpness: 100 (max_{|z_i| <= eps(|x_i|+1)} L(x+z) - L(x)) / (1 + L(x)).
    Sharpness(SharpnessArgs),
    /// Loss along filter-normalised random directions (1-D or 2-D slice) through the model.
    Landscape(LandscapeArgs),
    /// Loss along the line (1 - alpha) A + alpha B between two checkpoints.
    Interpolate(InterpolateArgs),
    /// Gradient-noise geometry: Tr Sigma, Tr(H Sigma), alignment with the Hessian.
    Noise(NoiseArgs),
    /// Tail index of minibatch gradient noise (Mohammadi and Hill estimators).
    TailIndex(TailIndexArgs),
    #[command(flatten)]
    Simplicity(crate::cmd_probe_simplicity::SimplicityProbe),
}

#[derive(clap::Args, Debug)]
struct LossArgs {
    #[command(flatten)]
    common: ModelDataArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OperatorName {
    Hessian,
    Ggn,
    /// The exact Fisher (equals the GGN for these losses).
    Fisher,
    /// Monte-Carlo Fisher with --fisher-samples labels per example from the model.
    FisherMc,
    EmpiricalFisher,
    /// Covariance of per-example gradients.
    Noise,
}

#[derive(clap::Args, Debug)]
struct HessianArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Which curvature matrix.
    #[arg(long, value_enum, default_value = "hessian")]
    operator: OperatorName,
    /// Top-k eigenvalues by Lanczos (descending).
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Bottom-k eigenvalues by Lanczos (ascending).
    #[arg(long, value_name = "K")]
    bottom_k: Option<usize>,
    /// Lanczos stopping tolerance on residuals, relative to the largest Ritz value.
    #[arg(long, default_value_t = 1e-3)]
    tol: f64,
    /// Lanczos iteration cap.
    #[arg(long, default_value_t = 200)]
    max_iters: usize,
    /// Estimate the trace (Hutchinson with Rademacher probes). Each probe's z^T H z comes from
    /// second-order forward mode (no backward pass; cheaper than a Hessian-vector product) for the
    /// Hessian and from a jvp for the GGN/Fisher.
    #[arg(long)]
    trace: bool,
    /// Probes for the trace (with --hutchpp: the whole budget of products and quadratic forms).
    #[arg(long, default_value_t = 100)]
    probes: usize,
    /// Use Hutch++ (Meyer et al. 2021) instead of Hutchinson: a third of --probes as sketch
    /// products, the rest as quadratic forms.
    #[arg(long)]
    hutchpp: bool,
    /// Compute each trace probe's z^T A z from a full matrix-vector product instead of the
    /// operator's quadratic forms (same estimate up to rounding; for cross-checks and timing).
    #[arg(long)]
    trace_by_products: bool,
    /// Materialise the matrix and compute its whole spectrum (small models only).
    #[arg(long)]
    exact: bool,
    /// Largest parameter count --exact accepts.
    #[arg(long, default_value_t = 6000)]
    max_params: usize,
    /// Near-zero threshold tau: |lambda| < tau * lambda_max.
    #[arg(long, default_value_t = 1e-3)]
    tau: f64,
    /// z of the effective dimensionality sum lambda / (lambda + z).
    #[arg(long, default_value_t = 1.0)]
    eff_dim_z: f64,
    /// Write the spectral density (CSV: lambda,density) estimated by stochastic Lanczos quadrature.
    #[arg(long, value_name = "FILE.csv")]
    density: Option<PathBuf>,
    /// SLQ probes and Lanczos steps per probe.
    #[arg(long, default_value_t = 10)]
    density_probes: usize,
    #[arg(long, default_value_t = 40)]
    density_steps: usize,
    /// Gaussian smoothing width of the density, relative to the spectral range.
    #[arg(long, default_value_t = 0.01)]
    density_width: f64,
    /// Labels sampled per example for --operator fisher-mc.
    #[arg(long, default_value_t = 1)]
    fisher_samples: usize,
}

#[derive(clap::Args, Debug)]
struct SharpnessArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Box size (repeatable); Keskar et al. used 1e-3 and 5e-4.
    #[arg(long, default_value = "1e-3")]
    epsilon: Vec<f64>,
    /// Projected sign-gradient ascent steps (each one full-set gradient).
    #[arg(long, default_value_t = 20)]
    steps: usize,
}

#[derive(clap::Args, Debug)]
struct LandscapeArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// 1 or 2 directions.
    #[arg(long, default_value_t = 1)]
    dims: usize,
    /// Points per direction, over [-range, range].
    #[arg(long, default_value_t = 21)]
    points: usize,
    #[arg(long, default_value_t = 1.0)]
    range: f64,
    /// Write the slice as CSV (alpha,beta,loss,accuracy).
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct InterpolateArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// The second checkpoint (alpha = 1); --model is alpha = 0.
    #[arg(long, value_name = "CKPT")]
    to: PathBuf,
    #[arg(long, default_value_t = -1.0, allow_hyphen_values = true)]
    from_alpha: f64,
    #[arg(long, default_value_t = 2.0)]
    to_alpha: f64,
    #[arg(long, default_value_t = 25)]
    points: usize,
    /// Write CSV (alpha,loss,accuracy).
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct NoiseArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Hutchinson probes for Tr H and ||H||_F.
    #[arg(long, default_value_t = 30)]
    probes: usize,
    /// Examples whose (g_i - g)^T H (g_i - g) are evaluated (0 = all).
    #[arg(long, default_value_t = 0)]
    hvp_examples: usize,
    /// Minibatch size the batch-level values refer to (Sigma_B = Sigma / B).
    #[arg(long, default_value_t = 1)]
    noise_batch_size: usize,
}

#[derive(clap::Args, Debug)]
struct TailIndexArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Minibatch size of the noise g_B - g.
    #[arg(long, default_value_t = 32)]
    noise_batch_size: usize,
    /// Blocks and block size of the Mohammadi estimator (blocks * block-size minibatches).
    #[arg(long, default_value_t = 50)]
    blocks: usize,
    #[arg(long, default_value_t = 10)]
    block_size: usize,
    /// Fraction of the largest norms used by the Hill estimator.
    #[arg(long, default_value_t = 0.05)]
    hill_fraction: f64,
}

pub fn run(a: ProbeArgs) -> Result<()> {
    match a.probe {
        ProbeCommand::Loss(x) => dispatch(&x.common, |l, s| probe_loss(l, s, &x.common)),
        ProbeCommand::Hessian(x) => dispatch(&x.common, |l, s| probe_hessian(l, s, &x)),
        ProbeCommand::Sharpness(x) => dispatch(&x.common, |l, s| probe_sharpness(l, s, &x)),
        ProbeCommand::Landscape(x) => dispatch(&x.common, |l, s| probe_landscape(l, s, &x)),
        ProbeCommand::Interpolate(x) => dispatch(&x.common, |l, s| probe_interpolate(l, s, &x)),
        ProbeCommand::Noise(x) => dispatch(&x.common, |l, s| probe_noise(l, s, &x)),
        ProbeCommand::TailIndex(x) => dispatch(&x.common, |l, s| probe_tail(l, s, &x)),
        ProbeCommand::Simplicity(p) => crate::cmd_probe_simplicity::run(p),
    }
}

/// Loads model and data, then runs `f` in the requested precision.
fn dispatch(common: &ModelDataArgs, f: impl Fn(&Loaded, Precision) -> Result<()>) -> Result<()> {
    let loaded = common.load()?;
    let p = if common.dtype == "f32" { Precision::F32 } else { Precision::F64 };
    f(&loaded, p)
}

#[derive(Clone, Copy)]
enum Precision {
    F32,
    F64,
}

macro_rules! typed {
    ($prec:expr, $f:ident ( $($arg:expr),* )) => {
        match $prec {
            Precision::F32 => $f::<f32>($($arg),*),
            Precision::F64 => $f::<f64>($($arg),*),
        }
    };
}

fn context<'a, T: Scalar>(
    l: &'a Loaded,
    params: &'a [T],
    set: &'a EvalSet<T>,
    common: &ModelDataArgs,
) -> Result<CurvatureContext<'a, T>> {
    Ok(CurvatureContext::new(&l.model, params, set, common.batch_size, l.loss)?)
}

fn header(l: &Loaded, common: &ModelDataArgs) -> serde_json::Value {
    json!({
        "model": common.model.display().to_string(),
        "arch": l.model.describe(),
        "num_params": l.model.num_params(),
        "data": common.data,
        "examples": l.set.len(),
        "loss_function": l.loss.to_string(),
        "dtype": common.dtype,
        "seed": common.seed,
    })
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn probe_loss(l: &Loaded, p: Precision, common: &ModelDataArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, common: &ModelDataArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let ctx = context(l, &params, &set, common)?;
        let s = loss_summary(&ctx);
        let v = merge(
            header(l, common),
            json!({"loss": s.loss, "accuracy": s.accuracy, "grad_norm": s.grad_norm, "matvecs": 0}),
        );
        emit(common.json, &v, || {
            format!(
                "loss      {:.6}\naccuracy  {:.4}\ngrad_norm {:.6}\nexamples  {}\n",
                s.loss, s.accuracy, s.grad_norm, s.examples
            )
        })
    }
    typed!(p, go(l, common))
}

fn probe_hessian(l: &Loaded, p: Precision, a: &HessianArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &HessianArgs) -> Result<()> {
        let common = &a.common;
        if a.top_k.is_none() && a.bottom_k.is_none() && !a.trace && !a.exact && a.density.is_none() {
            bail!("say what to compute: --top-k K, --bottom-k K, --trace, --exact and/or --density FILE");
        }
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let ctx = context(l, &params, &set, common)?;
        let inner: Box<dyn LinearOperator<T> + '_> = match a.operator {
            OperatorName::Hessian => Box::new(HessianOperator { ctx: &ctx }),
            OperatorName::Ggn => Box::new(GgnOperator { ctx: &ctx }),
            OperatorName::Fisher => Box::new(FisherOperator::new(&ctx, FisherKind::Exact, &l.stream)?),
            OperatorName::FisherMc => {
                Box::new(FisherOperator::new(&ctx, FisherKind::MonteCarlo { samples: a.fisher_samples }, &l.stream)?)
            }
            OperatorName::EmpiricalFisher => Box::new(FisherOperator::new(&ctx, FisherKind::Empirical, &l.stream)?),
            OperatorName::Noise => Box::new(GradientNoiseOperator::new(&ctx)?),
        };
        let op = CountingOperator::new(inner);
        let mut out = merge(header(l, common), json!({"operator": format!("{:?}", a.operator).to_lowercase()}));
        let mut table = String::new();
        for (k, target, key) in
            [(a.top_k, EigenTarget::LargestAlgebraic, "top"), (a.bottom_k, EigenTarget::SmallestAlgebraic, "bottom")]
        {
            let Some(k) = k else { continue };
            let before = op.matvecs();
            let params = LanczosParams { k, target, tol: a.tol, max_iters: a.max_iters, block_size: 1 };
            let est = lanczos_eigenpairs(&op, &params, &l.stream.child(&format!("lanczos-{key}")))?;
            let used = op.matvecs() - before;
            out[format!("{key}_eigenvalues")] = json!(est.eigenvalues);
            out[format!("{key}_residuals")] = json!(est.residuals);
            out[format!("{key}_converged")] = json!(est.converged);
            out[format!("{key}_matvecs")] = json!(used);
            let _ = writeln!(table, "{key}-{k} eigenvalues ({used} matvecs, converged {}):", est.converged);
            for (v, r) in est.eigenvalues.iter().zip(&est.residuals) {
                let _ = writeln!(table, "  {v:>14.6}   residual {r:.2e}");
            }
        }
        if a.trace {
            let (before, forms_before) = (op.matvecs(), op.quadratic_forms_used());
            let forms = !a.trace_by_products;
            let (trace, stderr) = if a.hutchpp {
                let e = hutch_plus_plus_trace(
                    &op,
                    &HutchPlusPlusParams { matvecs: a.probes, quadratic_forms: forms, ..Default::default() },
                    &l.stream.child("trace"),
                )?;
                (e.trace, e.standard_error)
            } else {
                let e = hutchinson_trace(
                    &op,
                    &HutchinsonParams { probes: a.probes, quadratic_forms: forms, ..Default::default() },
                    &l.stream.child("trace"),
                )?;
                (e.trace, e.standard_error)
            };
            let used = op.matvecs() - before;
            let forms_used = op.quadratic_forms_used() - forms_before;
            out["trace"] = json!({"estimate": trace, "stderr": stderr, "method": if a.hutchpp { "hutch++" } else { "hutchinson" }, "probes": a.probes, "matvecs": used, "quadratic_forms": forms_used});
            let _ = writeln!(
                table,
                "trace {trace:.6} +- {stderr:.6} ({}, {used} matvecs, {forms_used} quadratic forms)",
                if a.hutchpp { "Hutch++" } else { "Hutchinson" }
            );
        }
        if a.exact {
            let before = op.matvecs();
            let e = exact_spectrum(&op, a.max_params, a.tau, a.eff_dim_z)?;
            let _ = before;
            out["exact"] = json!(true);
            out["top_eigenvalues"] = json!(e.eigenvalues.iter().take(a.top_k.unwrap_or(10)).collect::<Vec<_>>());
            out["eigenvalues"] = json!(e.eigenvalues);
            out["trace"] = json!({"estimate": e.trace, "stderr": 0.0, "method": "exact", "matvecs": e.matvecs, "quadratic_forms": 0});
            out["near_zero_fraction"] = json!(e.near_zero_fraction);
            out["near_zero_tau"] = json!(e.near_zero_tau);
            out["effective_dimensionality"] = json!(e.effective_dimensionality);
            out["effective_dimensionality_z"] = json!(e.effective_dimensionality_z);
            out["frobenius_norm"] = json!(e.frobenius_norm);
            let _ = writeln!(
                table,
                "exact spectrum of {} eigenvalues: max {:.6}, min {:.6}, trace {:.6}\nnear-zero fraction (tau {}) {:.4}\neffective dimensionality (z {}) {:.3}",
                e.eigenvalues.len(),
                e.eigenvalues[0],
                e.eigenvalues[e.eigenvalues.len() - 1],
                e.trace,
                e.near_zero_tau,
                e.near_zero_fraction,
                e.effective_dimensionality_z,
                e.effective_dimensionality
            );
        }
        if let Some(path) = &a.density {
            let est = spectral_density(
                &op,
                &SpectralDensityParams {
                    probes: a.density_probes,
                    steps: a.density_steps,
                    distribution: ProbeDistribution::Rademacher,
                },
                &l.stream.child("density"),
            )?;
            let (lo, hi) = est.support();
            let width = (hi - lo).max(f64::MIN_POSITIVE);
            let sigma = a.density_width * width;
            let grid: Vec<f64> = (0..400).map(|i| lo - 0.05 * width + (1.1 * width) * i as f64 / 399.0).collect();
            let dens = est.density(&grid, sigma)?;
            let mut csv = String::from("lambda,density\n");
            for (x, y) in grid.iter().zip(dens.iter()) {
                let _ = writeln!(csv, "{x},{y}");
            }
            std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
            out["density"] = json!({"file": path.display().to_string(), "smoothing_sigma": sigma, "probes": a.density_probes, "steps": a.density_steps, "support": [lo, hi]});
            let _ = writeln!(
                table,
                "density written to {} (sigma {sigma:.3e}, support [{lo:.4}, {hi:.4}])",
                path.display()
            );
        }
        out["matvecs"] = json!(op.matvecs());
        out["quadratic_forms"] = json!(op.quadratic_forms_used());
        let _ = writeln!(table, "matvecs {}, quadratic forms {}", op.matvecs(), op.quadratic_forms_used());
        emit(common.json, &out, || table)
    }
    typed!(p, go(l, a))
}

fn probe_sharpness(l: &Loaded, p: Precision, a: &SharpnessArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &SharpnessArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let ctx = context(l, &params, &set, &a.common)?;
        let mut results = Vec::new();
        let mut table = String::new();
        for &eps in &a.epsilon {
            let s = epsilon_sharpness(&ctx, eps, a.steps)?;
            let _ = writeln!(
                table,
                "epsilon {eps:e}: sharpness {:.6} (loss {:.6} -> {:.6}, {} ascent steps)",
                s.sharpness, s.loss, s.max_loss, s.ascent_steps
            );
            results.push(s);
        }
        let v = merge(
            header(l, &a.common),
            json!({"sharpness": results, "matvecs": 0, "gradient_evaluations": a.steps * a.epsilon.len()}),
        );
        emit(a.common.json, &v, || table)
    }
    typed!(p, go(l, a))
}

fn slice_csv(points: &[SlicePoint], path: &PathBuf) -> Result<()> {
    let mut csv = String::from("alpha,beta,loss,accuracy\n");
    for q in points {
        let _ = writeln!(csv, "{},{},{},{}", q.alpha, q.beta, q.loss, q.accuracy);
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![0.5 * (lo + hi)];
    }
    (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
}

fn probe_landscape(l: &Loaded, p: Precision, a: &LandscapeArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &LandscapeArgs) -> Result<()> {
        if !(a.dims == 1 || a.dims == 2) {
            bail!("--dims must be 1 or 2");
        }
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let ctx = context(l, &params, &set, &a.common)?;
        let d1 = filter_normalized_direction(&l.model, &params, &l.stream.child("direction-1"));
        let d2 = filter_normalized_direction(&l.model, &params, &l.stream.child("direction-2"));
        let alphas = grid(-a.range, a.range, a.points);
        let betas = if a.dims == 2 { alphas.clone() } else { vec![0.0] };
        let pts = landscape_slice(&ctx, &d1, &d2, &alphas, &betas);
        if let Some(path) = &a.out {
            slice_csv(&pts, path)?;
        }
        let v = merge(
            header(l, &a.common),
            json!({"dims": a.dims, "points": pts, "direction": "filter-normalised gaussian", "matvecs": 0}),
        );
        emit(a.common.json, &v, || {
            let mut t = String::from("   alpha    beta        loss  accuracy\n");
            for q in &pts {
                let _ = writeln!(t, "{:8.3} {:7.3} {:11.6} {:9.4}", q.alpha, q.beta, q.loss, q.accuracy);
            }
            t
        })
    }
    typed!(p, go(l, a))
}

fn probe_interpolate(l: &Loaded, p: Precision, a: &InterpolateArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &InterpolateArgs) -> Result<()> {
        let arch = a.common.arch.as_deref().map(str::parse::<sgdlab_nn::ArchSpec>).transpose()?;
        let other = load_checkpoint::<f64>(&a.to, arch.as_ref().or(l.model.arch()))?;
        if other.model != l.model {
            bail!("{} is a {} but --model is a {}", a.to.display(), other.model.describe(), l.model.describe());
        }
        let pa: Vec<T> = l.params.cast::<T>().into_vec();
        let pb: Vec<T> = other.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let ctx = context(l, &pa, &set, &a.common)?;
        let pts = interpolation(&ctx, &pa, &pb, &grid(a.from_alpha, a.to_alpha, a.points));
        if let Some(path) = &a.out {
            slice_csv(&pts, path)?;
        }
        let v = merge(header(l, &a.common), json!({"to": a.to.display().to_string(), "points": pts, "matvecs": 0}));
        emit(a.common.json, &v, || {
            let mut t = String::from("   alpha        loss  accuracy\n");
            for q in &pts {
                let _ = writeln!(t, "{:8.3} {:11.6} {:9.4}", q.alpha, q.loss, q.accuracy);
            }
            t
        })
    }
    typed!(p, go(l, a))
}

fn probe_noise(l: &Loaded, p: Precision, a: &NoiseArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &NoiseArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let ctx = context(l, &params, &set, &a.common)?;
        let e = gradient_noise(
            &ctx,
            &NoiseParams { probes: a.probes, hvp_examples: a.hvp_examples, batch_size: a.noise_batch_size },
            &l.stream.child("noise"),
        )?;
        let v = merge(header(l, &a.common), serde_json::to_value(&e)?);
        emit(a.common.json, &v, || {
            format!(
                "Tr Sigma          {:.6e}\nTr H              {:.6e} +- {:.2e}\nTr(H Sigma)       {:.6e} +- {:.2e} ({} examples)\nalignment R       {:.4}  (1 = isotropic)\nalignment cosine  {:.4}\nbatch {}: Tr Sigma_B {:.6e}, Tr(H Sigma_B) {:.6e}\nmatvecs {}, quadratic forms {}\n",
                e.trace_sigma,
                e.trace_hessian,
                e.trace_hessian_stderr,
                e.trace_h_sigma,
                e.trace_h_sigma_stderr,
                e.hvp_examples,
                e.alignment_ratio,
                e.alignment_cosine,
                e.batch_size,
                e.trace_sigma_batch,
                e.trace_h_sigma_batch,
                e.matvecs,
                e.quadratic_forms
            )
        })
    }
    typed!(p, go(l, a))
}

fn probe_tail(l: &Loaded, p: Precision, a: &TailIndexArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &TailIndexArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let ctx = context(l, &params, &set, &a.common)?;
        let e = gradient_noise_tail_index(
            &ctx,
            a.noise_batch_size,
            a.blocks,
            a.block_size,
            a.hill_fraction,
            &l.stream.child("tail"),
        )?;
        let v = merge(header(l, &a.common), merge(serde_json::to_value(&e)?, json!({"matvecs": 0})));
        emit(a.common.json, &v, || {
            format!(
                "Mohammadi alpha {:.4}  (2 = Gaussian)\nHill alpha      {:.4}  (k = {})\nminibatches     {} of {}\n",
                e.mohammadi_alpha,
                e.hill_alpha,
                e.hill_k,
                e.blocks * e.block_size,
                e.batch_size
            )
        })
    }
    typed!(p, go(l, a))
}
