//! Registry entries of the loss and curvature measures other than the spectrum (PROTOCOLS 7, 8):
//! loss, epsilon-sharpness, landscape slices, interpolation, gradient noise, tail index, iterate tails,
//! the flatness bound of the input gradient (sobolev-flatness).

use super::{
    DataUse, Evaluated, MetricInfo, Needs, ProbeImpl, ProbeInput, ProbeOutput, Table, details_of, scalar, vector,
};
use crate::common::ProbeError;
use crate::curvature::{
    BackwardErrorParams, IterateTailParams, NoiseParams, SlicePoint, SobolevFlatnessParams, StepScale, backward_error,
    epsilon_sharpness, filter_normalized_direction, gradient_noise, gradient_noise_tail_index, interpolation,
    iterate_tails, landscape_slice, linspace, loss_summary, sobolev_flatness,
};
use serde::{Deserialize, Serialize};
use sgdlab_data::Targets;
use sgdlab_linalg::Scalar;
use sgdlab_nn::load_checkpoint;
use std::fmt::Write as _;
use std::path::PathBuf;

// ---------------------------------------------------------------------------------------------
// loss

/// `loss`: mean loss, accuracy and gradient norm over the evaluation set.
pub struct LossProbe;

/// Options of [`LossProbe`] (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct LossOptions {}

impl ProbeImpl for LossProbe {
    const NAME: &'static str = "loss";
    const ABOUT: &'static str = "Mean loss, accuracy and gradient norm over the evaluation set.";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar("loss", "loss", "mean loss over the evaluated examples"),
        MetricInfo::scalar("accuracy", "accuracy", "fraction of evaluated examples classified correctly"),
        MetricInfo::scalar("grad_norm", "gradient norm", "Euclidean norm of the gradient of the mean loss"),
    ];
    type Options = LossOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, _: &LossOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let s = loss_summary(&e.context()?);
        Ok(ProbeOutput::new(
            vec![scalar("loss", s.loss), scalar("accuracy", s.accuracy), scalar("grad_norm", s.grad_norm)],
            serde_json::json!({"loss": s.loss, "accuracy": s.accuracy, "grad_norm": s.grad_norm, "matvecs": 0}),
            format!("loss      {:.6}\naccuracy  {:.4}\ngrad_norm {:.6}\n", s.loss, s.accuracy, s.grad_norm),
        )
        .evaluated(vec![e.evaluated]))
    }
}

// ---------------------------------------------------------------------------------------------
// sharpness

/// `sharpness`: Keskar et al.'s epsilon-sharpness.
pub struct SharpnessProbe;

/// Options of [`SharpnessProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct SharpnessOptions {
    /// Box sizes epsilon (repeatable or comma-separated); Keskar et al. used 1e-3 and 5e-4. The
    /// metric `sharpness` is for the first.
    #[serde(deserialize_with = "super::one_or_many")]
    #[arg(long, value_delimiter = ',', value_name = "EPS", default_values_t = [1e-3])]
    pub epsilon: Vec<f64>,
    /// Projected sign-gradient ascent steps per epsilon (each one full-set gradient).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub steps: usize,
}

impl Default for SharpnessOptions {
    fn default() -> Self {
        SharpnessOptions { epsilon: vec![1e-3], steps: 20 }
    }
}

impl ProbeImpl for SharpnessProbe {
    const NAME: &'static str = "sharpness";
    const ABOUT: &'static str = "Keskar's epsilon-sharpness: 100 (max_{|z_i| <= eps(|x_i|+1)} L(x+z) - L(x)) / \
        (1 + L(x)), the max by projected sign-gradient ascent (Keskar et al. 2017; PROTOCOLS 7.1).";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "sharpness",
            "epsilon-sharpness",
            "relative loss increase in the epsilon box (first epsilon), a lower bound found by ascent",
        )
        .with_unit("%"),
        MetricInfo::vector(
            "sharpness_by_epsilon",
            "epsilon-sharpness",
            "epsilon, in the order given",
            "epsilon-sharpness for each epsilon (written when more than one is given)",
        )
        .with_unit("%"),
        MetricInfo::scalar("loss", "loss", "mean loss at the parameters"),
        MetricInfo::scalar("max_loss", "largest loss in the box", "largest loss the ascent found (first epsilon)"),
        MetricInfo::scalar("gradient_evaluations", "gradient evaluations", "full-set gradients used in all"),
    ];
    type Options = SharpnessOptions;

    fn written(o: &SharpnessOptions) -> Vec<&'static str> {
        let mut w = vec!["sharpness"];
        if o.epsilon.len() > 1 {
            w.push("sharpness_by_epsilon");
        }
        w.extend(["loss", "max_loss", "gradient_evaluations"]);
        w
    }

    fn check(o: &SharpnessOptions) -> Result<(), String> {
        if o.epsilon.is_empty() {
            return Err("epsilon: give at least one box size".into());
        }
        if let Some(e) = o.epsilon.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
            return Err(format!("epsilon must be positive and finite, got {e}"));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &SharpnessOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let ctx = e.context()?;
        let results =
            o.epsilon.iter().map(|&eps| epsilon_sharpness(&ctx, eps, o.steps)).collect::<Result<Vec<_>, _>>()?;
        let mut text = String::new();
        for s in &results {
            let _ = writeln!(
                text,
                "epsilon {:e}: sharpness {:.6} (loss {:.6} -> {:.6}, {} ascent steps)",
                s.epsilon, s.sharpness, s.loss, s.max_loss, s.ascent_steps
            );
        }
        let evaluations: usize = results.iter().map(|s| s.gradient_evaluations).sum();
        let first = &results[0];
        let mut values = vec![scalar("sharpness", first.sharpness)];
        if results.len() > 1 {
            values.push(vector("sharpness_by_epsilon", results.iter().map(|s| s.sharpness).collect()));
        }
        values.extend([
            scalar("loss", first.loss),
            scalar("max_loss", first.max_loss),
            scalar("gradient_evaluations", evaluations as f64),
        ]);
        let details = serde_json::json!({"sharpness": results, "matvecs": 0, "gradient_evaluations": evaluations});
        Ok(ProbeOutput::new(values, details, text).evaluated(vec![e.evaluated]))
    }
}

// ---------------------------------------------------------------------------------------------
// landscape and interpolate

const SLICE_INDEX: &str = "grid point (alpha fastest)";

fn slice_table(points: &[SlicePoint]) -> Table {
    Table {
        columns: vec!["alpha", "beta", "loss", "accuracy"],
        rows: points.iter().map(|q| vec![q.alpha, q.beta, q.loss, q.accuracy]).collect(),
    }
}

fn column(points: &[SlicePoint], f: impl Fn(&SlicePoint) -> f64) -> Vec<f64> {
    points.iter().map(f).collect()
}

/// `landscape`: the loss along filter-normalised random directions.
pub struct LandscapeProbe;

/// Options of [`LandscapeProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct LandscapeOptions {
    /// Number of random directions: 1 (a line) or 2 (a plane).
    #[arg(long, value_name = "1|2", default_value_t = 1)]
    pub dims: usize,
    /// Points per direction, spread evenly over [-range, range].
    #[arg(long, value_name = "N", default_value_t = 21)]
    pub points: usize,
    /// Half-width of the slice, in units of the filter-normalised direction.
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    pub range: f64,
}

impl Default for LandscapeOptions {
    fn default() -> Self {
        LandscapeOptions { dims: 1, points: 21, range: 1.0 }
    }
}

impl ProbeImpl for LandscapeProbe {
    const NAME: &'static str = "landscape";
    const ABOUT: &'static str = "Loss along filter-normalised random directions (a 1-D or 2-D slice) through the \
        parameters (Li et al. 2018).";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::vector("alpha", "alpha", SLICE_INDEX, "coordinate along the first direction"),
        MetricInfo::vector("beta", "beta", SLICE_INDEX, "coordinate along the second direction (dims = 2)"),
        MetricInfo::vector("loss", "loss", SLICE_INDEX, "mean loss at the grid point"),
        MetricInfo::vector("accuracy", "accuracy", SLICE_INDEX, "accuracy at the grid point"),
    ];
    const TABLE: Option<&'static str> = Some("the slice (alpha,beta,loss,accuracy)");
    type Options = LandscapeOptions;

    fn written(o: &LandscapeOptions) -> Vec<&'static str> {
        if o.dims == 2 { vec!["alpha", "beta", "loss", "accuracy"] } else { vec!["alpha", "loss", "accuracy"] }
    }

    fn check(o: &LandscapeOptions) -> Result<(), String> {
        if !(o.dims == 1 || o.dims == 2) {
            return Err(format!("dims must be 1 or 2, got {}", o.dims));
        }
        if o.points == 0 {
            return Err("points must be at least 1".into());
        }
        if !(o.range.is_finite() && o.range > 0.0) {
            return Err(format!("range must be positive and finite, got {}", o.range));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &LandscapeOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let ctx = e.context()?;
        let d1 = filter_normalized_direction(e.model, &e.params, &input.stream.child("direction-1"));
        let d2 = filter_normalized_direction(e.model, &e.params, &input.stream.child("direction-2"));
        let alphas = linspace(-o.range, o.range, o.points);
        let betas = if o.dims == 2 { alphas.clone() } else { vec![0.0] };
        let pts = landscape_slice(&ctx, &d1, &d2, &alphas, &betas);
        let mut values = vec![vector("alpha", column(&pts, |q| q.alpha))];
        if o.dims == 2 {
            values.push(vector("beta", column(&pts, |q| q.beta)));
        }
        values.extend([vector("loss", column(&pts, |q| q.loss)), vector("accuracy", column(&pts, |q| q.accuracy))]);
        let mut text = String::from("   alpha    beta        loss  accuracy\n");
        for q in &pts {
            let _ = writeln!(text, "{:8.3} {:7.3} {:11.6} {:9.4}", q.alpha, q.beta, q.loss, q.accuracy);
        }
        let table = slice_table(&pts);
        let details = serde_json::json!({
            "dims": o.dims, "points": pts, "direction": "filter-normalised gaussian", "matvecs": 0
        });
        Ok(ProbeOutput::new(values, details, text).evaluated(vec![e.evaluated]).with_table(table))
    }
}

/// `interpolate`: the loss along the line between two checkpoints.
pub struct InterpolateProbe;

/// Options of [`InterpolateProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct InterpolateOptions {
    /// The second checkpoint, at alpha = 1 (required); the probed model is alpha = 0.
    #[arg(long, value_name = "CKPT")]
    pub to: Option<PathBuf>,
    /// First alpha of the line (1 - alpha) A + alpha B.
    #[arg(long, value_name = "ALPHA", default_value_t = -1.0, allow_hyphen_values = true)]
    pub from_alpha: f64,
    /// Last alpha.
    #[arg(long, value_name = "ALPHA", default_value_t = 2.0, allow_hyphen_values = true)]
    pub to_alpha: f64,
    /// Points along the line, from-alpha to to-alpha inclusive.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub points: usize,
}

impl Default for InterpolateOptions {
    fn default() -> Self {
        InterpolateOptions { to: None, from_alpha: -1.0, to_alpha: 2.0, points: 25 }
    }
}

const LINE_INDEX: &str = "point along the line";

impl ProbeImpl for InterpolateProbe {
    const NAME: &'static str = "interpolate";
    const ABOUT: &'static str = "Loss along the line (1 - alpha) A + alpha B between the model A and a second \
        checkpoint B (Goodfellow et al. 2015; Keskar et al. 2017).";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::vector("alpha", "alpha", LINE_INDEX, "position on the line (0 = the model, 1 = the other)"),
        MetricInfo::vector("loss", "loss", LINE_INDEX, "mean loss at the point"),
        MetricInfo::vector("accuracy", "accuracy", LINE_INDEX, "accuracy at the point"),
    ];
    const TABLE: Option<&'static str> = Some("the line (alpha,beta,loss,accuracy; beta = 0)");
    type Options = InterpolateOptions;

    fn check(o: &InterpolateOptions) -> Result<(), String> {
        if o.to.is_none() {
            return Err("needs the second checkpoint: --to CKPT (option `to`)".into());
        }
        if !(o.from_alpha.is_finite() && o.to_alpha.is_finite()) {
            return Err(format!("from_alpha and to_alpha must be finite, got {} and {}", o.from_alpha, o.to_alpha));
        }
        if o.points == 0 {
            return Err("points must be at least 1".into());
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &InterpolateOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let to = o.to.as_ref().ok_or_else(|| ProbeError::Invalid("interpolate needs `to`".into()))?;
        let other = load_checkpoint::<f64>(to, e.model.arch())?;
        if other.model != *e.model {
            return Err(ProbeError::Invalid(format!(
                "{} is a {} but the model is a {}",
                to.display(),
                other.model.describe(),
                e.model.describe()
            )));
        }
        let pb: Vec<T> = other.params.cast::<T>().into_vec();
        let ctx = e.context()?;
        let pts = interpolation(&ctx, &e.params, &pb, &linspace(o.from_alpha, o.to_alpha, o.points));
        let values = vec![
            vector("alpha", column(&pts, |q| q.alpha)),
            vector("loss", column(&pts, |q| q.loss)),
            vector("accuracy", column(&pts, |q| q.accuracy)),
        ];
        let mut text = String::from("   alpha        loss  accuracy\n");
        for q in &pts {
            let _ = writeln!(text, "{:8.3} {:11.6} {:9.4}", q.alpha, q.loss, q.accuracy);
        }
        let table = slice_table(&pts);
        let details = serde_json::json!({"to": to.display().to_string(), "points": pts, "matvecs": 0});
        Ok(ProbeOutput::new(values, details, text).evaluated(vec![e.evaluated]).with_table(table))
    }
}

// ---------------------------------------------------------------------------------------------
// noise and tail-index

/// `noise`: gradient-noise geometry.
pub struct NoiseProbe;

/// Options of [`NoiseProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseOptions {
    /// Hutchinson probes for Tr H and ||H||_F.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub probes: usize,
    /// Examples whose (g_i - g)^T H (g_i - g) are evaluated (0 = all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub hvp_examples: usize,
    /// Minibatch size the batch-level values refer to (Sigma_B = Sigma / B).
    #[arg(long, value_name = "B", default_value_t = 1)]
    pub noise_batch_size: usize,
}

impl Default for NoiseOptions {
    fn default() -> Self {
        let d = NoiseParams::default();
        NoiseOptions { probes: d.probes, hvp_examples: d.hvp_examples, noise_batch_size: d.batch_size }
    }
}

impl ProbeImpl for NoiseProbe {
    const NAME: &'static str = "noise";
    const ABOUT: &'static str = "Gradient-noise geometry: Tr Sigma, Tr H, Tr(H Sigma) and the alignment of the \
        noise with the Hessian (Zhu et al. 2019; PROTOCOLS 8.1).";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar("trace_sigma", "Tr Sigma", "trace of the per-example gradient covariance"),
        MetricInfo::scalar("frobenius_sigma", "||Sigma||_F", "Frobenius norm of the per-example gradient covariance"),
        MetricInfo::scalar("trace_hessian", "Tr H", "Hutchinson estimate of the Hessian trace"),
        MetricInfo::scalar("trace_hessian_stderr", "standard error of Tr H", "standard error of the Tr H estimate"),
        MetricInfo::scalar("frobenius_hessian", "||H||_F", "Frobenius norm of the Hessian, from the same probes"),
        MetricInfo::scalar("trace_h_sigma", "Tr(H Sigma)", "mean of (g_i - g)^T H (g_i - g) over examples"),
        MetricInfo::scalar("trace_h_sigma_stderr", "standard error of Tr(H Sigma)", "0 when every example is used"),
        MetricInfo::scalar(
            "alignment_ratio",
            "noise alignment R",
            "Tr(H Sigma) / (Tr H Tr Sigma / D): 1 for isotropic noise, above 1 when noise follows curvature",
        ),
        MetricInfo::scalar("alignment_cosine", "noise alignment cosine", "Tr(H Sigma) / (||H||_F ||Sigma||_F)"),
        MetricInfo::scalar("trace_sigma_batch", "Tr Sigma_B", "noise trace of minibatches of noise_batch_size"),
        MetricInfo::scalar("trace_h_sigma_batch", "Tr(H Sigma_B)", "Tr(H Sigma) for minibatches of noise_batch_size"),
        MetricInfo::scalar("matvecs", "Hessian-vector products", "products used"),
        MetricInfo::scalar("quadratic_forms", "quadratic forms", "quadratic forms v^T H v by forward passes"),
    ];
    type Options = NoiseOptions;

    fn check(o: &NoiseOptions) -> Result<(), String> {
        if o.noise_batch_size == 0 {
            return Err("noise_batch_size must be at least 1".into());
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &NoiseOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let params = NoiseParams { probes: o.probes, hvp_examples: o.hvp_examples, batch_size: o.noise_batch_size };
        let n = gradient_noise(&e.context()?, &params, &input.stream.child("noise"))?;
        let values = vec![
            scalar("trace_sigma", n.trace_sigma),
            scalar("frobenius_sigma", n.frobenius_sigma),
            scalar("trace_hessian", n.trace_hessian),
            scalar("trace_hessian_stderr", n.trace_hessian_stderr),
            scalar("frobenius_hessian", n.frobenius_hessian),
            scalar("trace_h_sigma", n.trace_h_sigma),
            scalar("trace_h_sigma_stderr", n.trace_h_sigma_stderr),
            scalar("alignment_ratio", n.alignment_ratio),
            scalar("alignment_cosine", n.alignment_cosine),
            scalar("trace_sigma_batch", n.trace_sigma_batch),
            scalar("trace_h_sigma_batch", n.trace_h_sigma_batch),
            scalar("matvecs", n.matvecs as f64),
            scalar("quadratic_forms", n.quadratic_forms as f64),
        ];
        let text = format!(
            "Tr Sigma          {:.6e}\nTr H              {:.6e} +- {:.2e}\nTr(H Sigma)       {:.6e} +- {:.2e} ({} examples)\n\
             alignment R       {:.4}  (1 = isotropic)\nalignment cosine  {:.4}\n\
             batch {}: Tr Sigma_B {:.6e}, Tr(H Sigma_B) {:.6e}\nmatvecs {}, quadratic forms {}\n",
            n.trace_sigma,
            n.trace_hessian,
            n.trace_hessian_stderr,
            n.trace_h_sigma,
            n.trace_h_sigma_stderr,
            n.hvp_examples,
            n.alignment_ratio,
            n.alignment_cosine,
            n.batch_size,
            n.trace_sigma_batch,
            n.trace_h_sigma_batch,
            n.matvecs,
            n.quadratic_forms
        );
        Ok(ProbeOutput::new(values, details_of(&n), text).evaluated(vec![e.evaluated]))
    }
}

/// `tail-index`: heavy-tailedness of minibatch gradient noise.
pub struct TailIndexProbe;

/// Options of [`TailIndexProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TailIndexOptions {
    /// Minibatch size of the noise g_B - g.
    #[arg(long, value_name = "B", default_value_t = 32)]
    pub noise_batch_size: usize,
    /// Blocks of the Mohammadi estimator (blocks * block-size minibatches in all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub blocks: usize,
    /// Minibatch noise vectors summed per block of the Mohammadi estimator.
    #[arg(long, value_name = "M", default_value_t = 10)]
    pub block_size: usize,
    /// Fraction of the largest noise norms used by the Hill estimator.
    #[arg(long, value_name = "F", default_value_t = 0.05)]
    pub hill_fraction: f64,
    /// The noise measured: `none` = the raw minibatch gradient noise g_B - g; `adam` = that noise
    /// divided element-wise by Adam's sqrt(v_hat) + eps from the run's optimiser state (the
    /// noise of Adam's update direction with the second moment held at its current value).
    #[arg(long, value_enum, default_value_t = NoisePreconditioner::None)]
    pub precondition: NoisePreconditioner,
}

/// What the `tail-index` probe divides the noise vectors by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NoisePreconditioner {
    /// Nothing: the raw minibatch gradient noise.
    #[default]
    None,
    /// Adam's denominator sqrt(v / (1 - beta2^t)) + eps of the run's optimiser state.
    Adam,
}

impl Default for TailIndexOptions {
    fn default() -> Self {
        TailIndexOptions {
            noise_batch_size: 32,
            blocks: 50,
            block_size: 10,
            hill_fraction: 0.05,
            precondition: NoisePreconditioner::None,
        }
    }
}

impl ProbeImpl for TailIndexProbe {
    const NAME: &'static str = "tail-index";
    const ABOUT: &'static str = "Tail index of minibatch gradient noise by the Mohammadi and Hill estimators \
        (Simsekli et al. 2019; PROTOCOLS 8.2). The noise vectors are X_i = g_B(theta) - g(theta) for \
        blocks x block-size minibatches of noise-batch-size examples drawn at the fixed parameters (g: the \
        gradient on all evaluated examples). With --precondition adam (Zhou et al. 2020; PROTOCOLS 8.4) each \
        X_i is divided element-wise by d = sqrt(v / (1 - beta2^t)) + eps, Adam's denominator from the run's \
        optimiser state (v = exp_avg_sq after t Adam steps): X_i / d is the minibatch noise of Adam's update \
        direction m / (sqrt(v_hat) + eps) against its full-batch counterpart when v is held at its current \
        value, up to a constant factor (1 - beta1) / (1 - beta1^(t+1)) that both estimators ignore; the \
        (1 - beta2) g_B^2 change of v in that step is neglected. Only runs of a study with Adam or AdamW \
        after their first step carry that state; elsewhere the probe stops with an error.";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "mohammadi_alpha",
            "tail index alpha (Mohammadi)",
            "alpha-stable tail index of the noise: 2 = Gaussian, below 2 = heavy-tailed",
        ),
        MetricInfo::scalar("hill_alpha", "tail index alpha (Hill)", "Hill's estimate on the noise norms"),
        MetricInfo::scalar(
            "raw_mohammadi_alpha",
            "tail index alpha of the raw noise (Mohammadi)",
            "Mohammadi's estimate on the raw noise g_B - g of the same minibatches (= mohammadi_alpha without precondition)",
        ),
        MetricInfo::scalar(
            "raw_hill_alpha",
            "tail index alpha of the raw noise (Hill)",
            "Hill's estimate on the raw noise norms of the same minibatches (= hill_alpha without precondition)",
        ),
        MetricInfo::scalar("hill_k", "Hill order statistics", "number k of largest norms Hill's estimator used"),
        MetricInfo::scalar("gradient_evaluations", "gradient evaluations", "minibatch and full gradients used"),
    ];
    type Options = TailIndexOptions;

    fn check(o: &TailIndexOptions) -> Result<(), String> {
        if !(o.hill_fraction > 0.0 && o.hill_fraction < 1.0) {
            return Err(format!("hill_fraction must be in (0, 1), got {}", o.hill_fraction));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &TailIndexOptions) -> Result<ProbeOutput, ProbeError> {
        let denominator = match o.precondition {
            NoisePreconditioner::None => None,
            NoisePreconditioner::Adam => {
                let adam = input.adam.ok_or_else(|| {
                    ProbeError::Invalid(
                        "precondition = adam needs Adam's optimiser state, and this run has none (not Adam or \
                         AdamW, step 0, or a checkpoint probed outside a study run)"
                            .into(),
                    )
                })?;
                Some(adam.denominator(input.model()?.num_params())?)
            }
        };
        let e = input.evaluation::<T>()?;
        let t = gradient_noise_tail_index(
            &e.context()?,
            o.noise_batch_size,
            o.blocks,
            o.block_size,
            o.hill_fraction,
            denominator.as_deref(),
            &input.stream.child("tail"),
        )?;
        let values = vec![
            scalar("mohammadi_alpha", t.mohammadi_alpha),
            scalar("hill_alpha", t.hill_alpha),
            scalar("raw_mohammadi_alpha", t.raw_mohammadi_alpha),
            scalar("raw_hill_alpha", t.raw_hill_alpha),
            scalar("hill_k", t.hill_k as f64),
            scalar("gradient_evaluations", t.gradient_evaluations as f64),
        ];
        let text = format!(
            "noise           {}\nMohammadi alpha {:.4}  (2 = Gaussian; raw noise {:.4})\nHill alpha      {:.4}  (k = {}; raw noise {:.4})\nminibatches     {} of {}\n",
            match o.precondition {
                NoisePreconditioner::None => "g_B - g",
                NoisePreconditioner::Adam => "(g_B - g) / (sqrt(v_hat) + eps)",
            },
            t.mohammadi_alpha,
            t.raw_mohammadi_alpha,
            t.hill_alpha,
            t.hill_k,
            t.raw_hill_alpha,
            t.blocks * t.block_size,
            t.batch_size
        );
        let mut details = details_of(&t);
        details["matvecs"] = serde_json::json!(0);
        Ok(ProbeOutput::new(values, details, text).evaluated(vec![e.evaluated]))
    }
}

// ---------------------------------------------------------------------------------------------
// iterate-tails

/// `iterate-tails`: the tail index of SGD iterates on least squares.
pub struct IterateTailsProbe;

/// Options of [`IterateTailsProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct IterateTailsOptions {
    /// Independent SGD chains, each started at the least-squares solution theta*.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub chains: usize,
    /// SGD steps per chain (the final iterates are the sample).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub steps: usize,
    /// Examples per SGD step, drawn uniformly with replacement.
    #[arg(long, value_name = "B", default_value_t = 1)]
    pub batch_size: usize,
    /// Step size as a fraction of eta_max: eta = eta_fraction * eta_max.
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    pub eta_fraction: f64,
    /// The eta_max the fraction refers to: mean-square (SGD's mean-square stability limit at this
    /// batch size) or gd (2 / lambda_max of X^T X / n).
    #[arg(long, value_enum, default_value_t = StepScale::MeanSquare)]
    pub eta_max: StepScale,
    /// Largest norms used by Hill's estimator.
    #[arg(long, value_name = "K", default_value_t = 100)]
    pub hill_k: usize,
    /// Iterate vectors summed per block of Mohammadi's estimator.
    #[arg(long, value_name = "M", default_value_t = 20)]
    pub mohammadi_block: usize,
}

impl Default for IterateTailsOptions {
    fn default() -> Self {
        IterateTailsOptions {
            chains: 2000,
            steps: 2000,
            batch_size: 1,
            eta_fraction: 0.5,
            eta_max: StepScale::MeanSquare,
            hill_k: 100,
            mohammadi_block: 20,
        }
    }
}

impl ProbeImpl for IterateTailsProbe {
    const NAME: &'static str = "iterate-tails";
    const ABOUT: &'static str = "Tail index of the final iterates of independent SGD chains on the least-squares \
        problem of the data (one regression target), started at theta*: Hill's estimate of ||theta - theta*||, a \
        Hill plot and Mohammadi's estimate (Hodgkinson & Mahoney 2021; PROTOCOLS 8.2). Loss (1/2n) sum (x^T theta - \
        y)^2; batches drawn with replacement; eta = eta_fraction * eta_max. No model needed.";
    const NEEDS: Needs = Needs {
        model: false,
        params: false,
        data: DataUse::Whole,
        loss: false,
        default_data: Some("teacher:d=20,hidden=none,n=1000,n_test=100,noise=0.1"),
    };
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "hill_alpha",
            "tail index alpha (Hill)",
            "Hill's estimate on ||theta - theta*|| of the chains",
        ),
        MetricInfo::vector(
            "hill_plot_alpha",
            "tail index alpha (Hill)",
            HILL_K,
            "Hill's estimate with k largest norms",
        ),
        MetricInfo::vector("hill_plot_k", "order statistics k", HILL_K, "the k of each Hill-plot point"),
        MetricInfo::scalar(
            "mohammadi_alpha",
            "tail index alpha (Mohammadi)",
            "alpha-stable estimate on the iterate vectors (saturates near 2 for finite variance)",
        ),
        MetricInfo::scalar("eta", "step size eta", "the step size the chains ran with"),
        MetricInfo::scalar("eta_max", "eta_max", "the stability limit eta_fraction refers to"),
        MetricInfo::scalar("eta_max_gd", "2 / lambda_max", "full-batch GD's stability limit"),
        MetricInfo::scalar("eta_max_mean_square", "mean-square eta_max", "SGD's mean-square stability limit at B"),
        MetricInfo::scalar("median_norm", "median ||theta - theta*||", "median distance of the chains from theta*"),
    ];
    type Options = IterateTailsOptions;

    fn check(o: &IterateTailsOptions) -> Result<(), String> {
        if o.chains < 2 || o.steps == 0 || o.batch_size == 0 {
            return Err("chains must be >= 2, steps and batch_size >= 1".into());
        }
        if o.hill_k == 0 || o.hill_k >= o.chains {
            return Err(format!("hill_k must be in 1..{} (below chains), got {}", o.chains, o.hill_k));
        }
        if o.mohammadi_block < 2 || o.mohammadi_block > o.chains {
            return Err(format!("mohammadi_block must be in 2..={}, got {}", o.chains, o.mohammadi_block));
        }
        if !(o.eta_fraction.is_finite() && o.eta_fraction > 0.0) {
            return Err(format!("eta_fraction must be positive, got {}", o.eta_fraction));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &IterateTailsOptions) -> Result<ProbeOutput, ProbeError> {
        let data = input.data()?;
        let split = data.train().or_else(|_| data.split("all")).map_err(|e| ProbeError::Invalid(e.to_string()))?;
        let y = match split.targets() {
            Targets::Regression(v) if v.ncols() == 1 => v.column(0).iter().map(|&a| a as f64).collect::<Vec<_>>(),
            _ => {
                return Err(ProbeError::Invalid(
                    "iterate-tails needs one regression target (e.g. teacher:hidden=none,out=1)".into(),
                ));
            }
        };
        let x = split.features().mapv(|a| a as f64);
        let params = IterateTailParams {
            chains: o.chains,
            steps: o.steps,
            batch_size: o.batch_size,
            eta_fraction: o.eta_fraction,
            scale: o.eta_max,
            hill_k: o.hill_k,
            mohammadi_block: o.mohammadi_block,
        };
        let t = iterate_tails(x.view(), &y, &params, &input.stream.child("iterate-tails"))?;
        let values = vec![
            scalar("hill_alpha", t.hill_alpha),
            vector("hill_plot_alpha", t.hill_plot_alpha.clone()),
            vector("hill_plot_k", t.hill_plot_k.iter().map(|&k| k as f64).collect()),
            scalar("mohammadi_alpha", t.mohammadi_alpha),
            scalar("eta", t.eta),
            scalar("eta_max", t.eta_max),
            scalar("eta_max_gd", t.eta_max_gd),
            scalar("eta_max_mean_square", t.eta_max_mean_square),
            scalar("median_norm", t.median_norm),
        ];
        let mut text = format!(
            "{} chains x {} steps, B = {}, eta = {:.4e} (2/lambda_max = {:.4e}, mean-square limit {:.4e})\n\
             Hill alpha {:.4} (k = {}), Mohammadi alpha {:.4}; median ||theta - theta*|| {:.4e}, max {:.4e}\nHill plot:",
            t.chains,
            t.steps,
            t.batch_size,
            t.eta,
            t.eta_max_gd,
            t.eta_max_mean_square,
            t.hill_alpha,
            t.hill_k,
            t.mohammadi_alpha,
            t.median_norm,
            t.max_norm
        );
        for (k, a) in t.hill_plot_k.iter().zip(&t.hill_plot_alpha) {
            let _ = write!(text, " k={k}: {a:.3}");
        }
        text.push('\n');
        Ok(ProbeOutput::new(values, details_of(&t), text).evaluated(vec![Evaluated::whole(split)]))
    }
}

const HILL_K: &str = "Hill-plot point (k ascending)";

// ---------------------------------------------------------------------------------------------
// sobolev-flatness

/// `sobolev-flatness`: Ma & Ying's bound of the input gradient by the flatness of the first layer.
pub struct SobolevFlatnessProbe;

/// Options of [`SobolevFlatnessProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct SobolevFlatnessOptions {
    /// Rademacher probes (zero outside the first layer's weight) for each of Tr(H_WW) and Tr(G_WW).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub probes: usize,
}

impl Default for SobolevFlatnessOptions {
    fn default() -> Self {
        SobolevFlatnessOptions { probes: SobolevFlatnessParams::default().probes }
    }
}

impl ProbeImpl for SobolevFlatnessProbe {
    const NAME: &'static str = "sobolev-flatness";
    const ABOUT: &'static str = "Flatness bounds the input gradient (Ma & Ying 2021; PROTOCOLS 8.3): for a model \
        f(x) = g(W x + b) whose first layer is linear and the mse loss (mean over n examples and K outputs), \
        (1/n) sum_i ||d f(x_i)/dx||_F^2 <= (K/2) ||W||_2^2 Tr(H_WW) / min_i ||x_i||^2, with H_WW the block of \
        the loss Hessian (or, exactly, of the Gauss-Newton matrix) on W; K/2 converts sgdlab's mse to Ma & \
        Ying's (1/2n) sum ||f - y||^2. Traces by Hutchinson with probes zero outside W.";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "input_gradient_sq",
            "mean ||d f / dx||_F^2",
            "LHS: mean over examples of the squared Frobenius norm of the K x d input Jacobian of the outputs (all K outputs; the geometric complexity)",
        ),
        MetricInfo::scalar(
            "input_gradient_sq_stderr",
            "standard error of the LHS",
            "sample sd of the per-example ||d f / dx||_F^2 over sqrt(n)",
        ),
        MetricInfo::scalar(
            "weight_norm",
            "||W||_2",
            "spectral norm (largest singular value) of the first layer's weight",
        ),
        MetricInfo::scalar("min_input_sq", "min ||x||^2", "smallest squared input norm over the evaluated examples"),
        MetricInfo::scalar(
            "hessian_trace_w",
            "Tr(H_WW)",
            "trace of the loss Hessian's block on the first layer's weight (Hutchinson)",
        ),
        MetricInfo::scalar("hessian_trace_w_stderr", "standard error of Tr(H_WW)", "Hutchinson standard error"),
        MetricInfo::scalar(
            "ggn_trace_w",
            "Tr(G_WW)",
            "trace of the Gauss-Newton matrix's block on the first layer's weight (Hutchinson, the same probe vectors as Tr(H_WW))",
        ),
        MetricInfo::scalar("ggn_trace_w_stderr", "standard error of Tr(G_WW)", "Hutchinson standard error"),
        MetricInfo::scalar(
            "ggn_trace_w_exact",
            "Tr(G_WW) (exact)",
            "(2 / (n K)) sum_i ||d f / dz||_F^2 ||x_i||^2, z = W x + b: the exact value the Hutchinson estimate should match",
        ),
        MetricInfo::scalar(
            "bound_hessian",
            "RHS (Hessian)",
            "(K/2) ||W||_2^2 Tr(H_WW) / min ||x||^2: holds near an interpolating minimum",
        ),
        MetricInfo::scalar("bound_ggn", "RHS (GGN)", "(K/2) ||W||_2^2 Tr(G_WW) / min ||x||^2: an exact bound"),
        MetricInfo::scalar("ratio_hessian", "LHS / RHS (Hessian)", "at most 1 when the bound holds"),
        MetricInfo::scalar("ratio_ggn", "LHS / RHS (GGN)", "at most 1 (up to the Hutchinson error)"),
        MetricInfo::scalar("matvecs", "matrix-vector products", "products of both traces"),
        MetricInfo::scalar("quadratic_forms", "quadratic forms", "quadratic forms z^T A z of both traces"),
    ];
    type Options = SobolevFlatnessOptions;

    fn check(o: &SobolevFlatnessOptions) -> Result<(), String> {
        if o.probes < 2 {
            return Err(format!("probes must be at least 2 (for the standard error), got {}", o.probes));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &SobolevFlatnessOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let s = sobolev_flatness(
            &e.context()?,
            &SobolevFlatnessParams { probes: o.probes },
            &input.stream.child("sobolev-flatness"),
        )?;
        let values = vec![
            scalar("input_gradient_sq", s.input_gradient_sq),
            scalar("input_gradient_sq_stderr", s.input_gradient_sq_stderr),
            scalar("weight_norm", s.weight_norm),
            scalar("min_input_sq", s.min_input_sq),
            scalar("hessian_trace_w", s.hessian_trace_w),
            scalar("hessian_trace_w_stderr", s.hessian_trace_w_stderr),
            scalar("ggn_trace_w", s.ggn_trace_w),
            scalar("ggn_trace_w_stderr", s.ggn_trace_w_stderr),
            scalar("ggn_trace_w_exact", s.ggn_trace_w_exact),
            scalar("bound_hessian", s.bound_hessian),
            scalar("bound_ggn", s.bound_ggn),
            scalar("ratio_hessian", s.ratio_hessian),
            scalar("ratio_ggn", s.ratio_ggn),
            scalar("matvecs", s.matvecs as f64),
            scalar("quadratic_forms", s.quadratic_forms as f64),
        ];
        let text = format!(
            "LHS (1/n) sum ||df/dx||_F^2   {:.6e} +- {:.2e} (n = {})\n\
             ||W||_2 ({})               {:.6}\nmin ||x||^2                   {:.6}\n\
             Tr(H_WW)                      {:.6e} +- {:.2e}\nTr(G_WW)                      {:.6e} +- {:.2e} (exact {:.6e})\n\
             RHS = (K/2) ||W||^2 Tr / min ||x||^2, K/2 = {}:\n  Hessian  {:.6e}  (LHS / RHS {:.4})\n  GGN      {:.6e}  (LHS / RHS {:.4})\n\
             {} probes per trace; matvecs {}, quadratic forms {}\n",
            s.input_gradient_sq,
            s.input_gradient_sq_stderr,
            s.samples,
            s.weight,
            s.weight_norm,
            s.min_input_sq,
            s.hessian_trace_w,
            s.hessian_trace_w_stderr,
            s.ggn_trace_w,
            s.ggn_trace_w_stderr,
            s.ggn_trace_w_exact,
            s.output_factor,
            s.bound_hessian,
            s.ratio_hessian,
            s.bound_ggn,
            s.ratio_ggn,
            s.probes,
            s.matvecs,
            s.quadratic_forms
        );
        Ok(ProbeOutput::new(values, details_of(&s), text).evaluated(vec![e.evaluated]))
    }
}

// ---------------------------------------------------------------------------------------------
// backward-error

/// `backward-error`: one GD step against the gradient flows of the loss and of the modified loss.
pub struct BackwardErrorProbe;

/// Options of [`BackwardErrorProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct BackwardErrorOptions {
    /// Step sizes h (repeatable or comma-separated, at least two); PROTOCOLS 9.1 doubles from 0.004
    /// to 0.128. Keep h well below 2 / lambda_max, where the expansion holds.
    #[serde(deserialize_with = "super::one_or_many")]
    #[arg(long, value_delimiter = ',', value_name = "H", default_values_t = [0.004, 0.008, 0.016, 0.032, 0.064, 0.128])]
    pub steps: Vec<f64>,
    /// RK4 sub-steps for each flow over the time h (each one 4 gradients, and for the modified
    /// loss 4 HVPs).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub substeps: usize,
}

impl Default for BackwardErrorOptions {
    fn default() -> Self {
        BackwardErrorOptions { steps: vec![0.004, 0.008, 0.016, 0.032, 0.064, 0.128], substeps: 200 }
    }
}

impl ProbeImpl for BackwardErrorProbe {
    const NAME: &'static str = "backward-error";
    const ABOUT: &'static str = "Backward error analysis of one gradient-descent step (Barrett & Dherin 2021; \
        PROTOCOLS 9.1): theta_1 = theta_0 - h grad L(theta_0) against the gradient flow of L and of the modified \
        loss L + (h/4) ||grad L||^2 for time h (RK4; the modified gradient by one exact HVP), for each step size h; \
        the errors should fall as h^2 and h^3, and their log-log slopes are reported. Use f64: the errors at small \
        h are below f32's resolution.";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::vector("h", "step size h", "step", "the step sizes, in the order given"),
        MetricInfo::vector(
            "error_original",
            "||theta_1 - phi_L(h)||",
            "step",
            "distance of the GD step from the gradient flow of L for time h",
        ),
        MetricInfo::vector(
            "error_modified",
            "||theta_1 - phi_L~(h)||",
            "step",
            "distance of the GD step from the gradient flow of L + (h/4) ||grad L||^2 for time h",
        ),
        MetricInfo::scalar(
            "slope_original",
            "log-log slope (L)",
            "least-squares slope of log error against log h: 2 in theory",
        ),
        MetricInfo::scalar(
            "slope_modified",
            "log-log slope (modified loss)",
            "least-squares slope of log error against log h: 3 in theory",
        ),
        MetricInfo::scalar("grad_norm", "||grad L(theta_0)||", "gradient norm at the start"),
        MetricInfo::scalar("gradient_evaluations", "gradient evaluations", "full-set gradients of both flows"),
        MetricInfo::scalar("hvps", "Hessian-vector products", "full-set HVPs of the modified flow"),
    ];
    type Options = BackwardErrorOptions;

    fn check(o: &BackwardErrorOptions) -> Result<(), String> {
        if o.steps.len() < 2 {
            return Err(format!("steps: give at least two step sizes for a slope, got {}", o.steps.len()));
        }
        if let Some(h) = o.steps.iter().find(|h| !(h.is_finite() && **h > 0.0)) {
            return Err(format!("steps: {h} is not a positive number"));
        }
        if o.steps.iter().all(|&h| h == o.steps[0]) {
            return Err("steps: the step sizes are all equal; a slope needs two".into());
        }
        if o.substeps == 0 {
            return Err("substeps must be at least 1".into());
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &BackwardErrorOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let s = backward_error(&e.context()?, &BackwardErrorParams { steps: o.steps.clone(), substeps: o.substeps })?;
        let values = vec![
            vector("h", s.points.iter().map(|q| q.h).collect()),
            vector("error_original", s.points.iter().map(|q| q.error_original).collect()),
            vector("error_modified", s.points.iter().map(|q| q.error_modified).collect()),
            scalar("slope_original", s.slope_original),
            scalar("slope_modified", s.slope_modified),
            scalar("grad_norm", s.grad_norm),
            scalar("gradient_evaluations", s.gradient_evaluations as f64),
            scalar("hvps", s.hvps as f64),
        ];
        let mut text = format!(
            "one GD step from theta_0 (||grad L|| {:.6e}) against the flows of L and L + (h/4)||grad L||^2 (RK4, {} sub-steps)\n\
             {:>10}  {:>14}  {:>14}  {:>14}\n",
            s.grad_norm, s.substeps, "h", "err L", "err L~", "step length"
        );
        for q in &s.points {
            let _ = writeln!(
                text,
                "{:>10}  {:>14.6e}  {:>14.6e}  {:>14.6e}",
                q.h, q.error_original, q.error_modified, q.step_length
            );
        }
        let _ = writeln!(
            text,
            "log-log slopes: L {:.4} (theory 2), modified loss {:.4} (theory 3)",
            s.slope_original, s.slope_modified
        );
        Ok(ProbeOutput::new(values, details_of(&s), text).evaluated(vec![e.evaluated]))
    }
}
