//! Registry entries of the frequency and function-space measures (PROTOCOLS 2, 10.1): spectral
//! bias, kernel spectra on the boolean cube, functions of random networks.

use super::{
    DataUse, Evaluated, MetricInfo, Needs, ProbeImpl, ProbeInput, ProbeOutput, Series, details_of, scalar, vector,
};
use crate::common::ProbeError;
use crate::simplicity::{
    DEFAULT_LEARNED_THRESHOLD, FunctionCondition, FunctionSamplerParams, KernelActivation, KernelKind, KernelSpec,
    PriorSpec, boolean_cube_spectrum, sample_prior_functions, spectral_bias, time_to_learn,
};
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};
use sgdlab_data::{DatasetSpec, SinesSpec, SourceSpec};
use sgdlab_linalg::Scalar;
use std::fmt::Write as _;

// ---------------------------------------------------------------------------------------------
// spectral-bias

/// `spectral-bias`: the network function's residual at each target frequency.
pub struct SpectralBiasProbe;

/// Options of [`SpectralBiasProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct SpectralBiasOptions {
    /// A frequency counts as learned when its residual Delta_i falls below this.
    #[arg(long, value_name = "DELTA", default_value_t = DEFAULT_LEARNED_THRESHOLD)]
    pub threshold: f64,
}

impl Default for SpectralBiasOptions {
    fn default() -> Self {
        SpectralBiasOptions { threshold: DEFAULT_LEARNED_THRESHOLD }
    }
}

const FREQUENCY: &str = "target frequency, ascending";

/// The sines spec a spectral-bias measurement reads its target from.
fn sines_of(spec: &str) -> Result<SinesSpec, ProbeError> {
    let parsed = DatasetSpec::parse(spec).map_err(|e| ProbeError::Invalid(e.to_string()))?;
    match (&parsed.source, parsed.transforms.is_empty()) {
        (SourceSpec::Sines(s), true) => Ok(s.clone()),
        _ => Err(ProbeError::Invalid(format!(
            "spectral-bias needs a sines spec without transforms (e.g. sines:amplitudes=increasing), not '{spec}'"
        ))),
    }
}

impl ProbeImpl for SpectralBiasProbe {
    const NAME: &'static str = "spectral-bias";
    const ABOUT: &'static str = "Per-frequency residual Delta_i = |DFT(f - lambda)(k_i)| / A_i of a 1-D network \
        against the sum-of-sines target of its sines data (Rahaman et al. 2019; PROTOCOLS 2.1).";
    const NEEDS: Needs = Needs { data: DataUse::Whole, ..Needs::EVAL };
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::vector(
            "residual",
            "normalised residual Delta",
            FREQUENCY,
            "|DFT(f - lambda)(k_i)| / A_i: 0 = frequency fitted, 1 = not at all",
        ),
        MetricInfo::vector("frequencies", "frequency k", FREQUENCY, "the target frequencies k_i"),
        MetricInfo::vector(
            "learned",
            "learned amplitude fraction",
            FREQUENCY,
            "|DFT(f)(k_i)| / A_i (blind to phase errors)",
        ),
        MetricInfo::scalar("relative_error", "relative error", "||f - lambda|| / ||lambda|| over the grid"),
        MetricInfo::scalar(
            "frequencies_learned",
            "frequencies learned",
            "number of target frequencies with Delta_i below threshold",
        ),
    ];
    const SERIES: Option<Series<SpectralBiasOptions>> = Some(Series {
        about: "the time to learn each frequency (first step with Delta_i below threshold) and its Spearman \
            correlation with the frequency",
        summarise: spectral_bias_series,
    });
    type Options = SpectralBiasOptions;

    fn check(o: &SpectralBiasOptions) -> Result<(), String> {
        if !(o.threshold.is_finite() && o.threshold > 0.0) {
            return Err(format!("threshold must be positive and finite, got {}", o.threshold));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &SpectralBiasOptions) -> Result<ProbeOutput, ProbeError> {
        let sines = sines_of(input.data_spec()?)?;
        let target = sines.target();
        let params = input.params_as::<T>()?;
        let est = spectral_bias(input.model()?, &params, &target, sines.n, &|z| sines.input(z))?;
        let learned = est.residual.iter().filter(|&&r| r < o.threshold).count();
        let values = vec![
            vector("residual", est.residual.clone()),
            vector("frequencies", est.frequencies.iter().map(|&k| k as f64).collect()),
            vector("learned", est.learned.clone()),
            scalar("relative_error", est.relative_error),
            scalar("frequencies_learned", learned as f64),
        ];
        let mut t = String::from("k      ");
        for k in &est.frequencies {
            let _ = write!(t, "{k:>7}");
        }
        t.push_str("\nDelta  ");
        for r in &est.residual {
            let _ = write!(t, "{r:>7.3}");
        }
        let _ = writeln!(
            t,
            "\n{learned} of {} frequencies below {}; relative error {:.4}",
            est.frequencies.len(),
            o.threshold,
            est.relative_error
        );
        let grid = Evaluated::whole(input.data()?.train().map_err(|e| ProbeError::Invalid(e.to_string()))?);
        Ok(ProbeOutput::new(values, details_of(&est), t).evaluated(vec![grid]))
    }
}

fn spectral_bias_series(
    steps: &[u64],
    outputs: &[ProbeOutput],
    o: &SpectralBiasOptions,
) -> Result<ProbeOutput, ProbeError> {
    let missing = || ProbeError::Invalid("spectral-bias outputs lack their residuals".into());
    let freqs: Vec<usize> = outputs
        .first()
        .and_then(|out| out.vector("frequencies"))
        .ok_or_else(missing)?
        .iter()
        .map(|&k| k as usize)
        .collect();
    let residuals: Vec<Vec<f64>> = outputs
        .iter()
        .map(|out| out.vector("residual").map(<[f64]>::to_vec).ok_or_else(missing))
        .collect::<Result<_, _>>()?;
    let ttl = time_to_learn(&freqs, steps, &residuals, o.threshold)?;
    let mut t = String::from("k      ");
    for k in &freqs {
        let _ = write!(t, "{k:>7}");
    }
    t.push('\n');
    for (s, r) in steps.iter().zip(&residuals) {
        let _ = write!(t, "{:<7}", format!("t={s}"));
        for v in r {
            let _ = write!(t, "{v:>7.3}");
        }
        t.push('\n');
    }
    let learned: Vec<String> = ttl.steps.iter().map(|s| s.map_or("never".into(), |v| v.to_string())).collect();
    let _ = writeln!(t, "time to learn (Delta < {}): {}", ttl.threshold, learned.join(" "));
    let _ = writeln!(t, "Spearman(k, t) = {:.4} ({} of {} learned)", ttl.spearman, ttl.learned, freqs.len());
    let values = vec![
        vector("time_to_learn", ttl.steps.iter().map(|s| s.map_or(f64::INFINITY, |v| v as f64)).collect()),
        scalar("spearman", ttl.spearman),
        scalar("frequencies_learned", ttl.learned as f64),
    ];
    Ok(ProbeOutput::new(values, serde_json::json!({ "time_to_learn": ttl }), t))
}

// ---------------------------------------------------------------------------------------------
// kernel-spectrum

/// `kernel-spectrum`: CK / NTK eigenvalues on the boolean cube.
pub struct KernelSpectrumProbe;

/// Options of [`KernelSpectrumProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct KernelSpectrumOptions {
    /// Activation with a closed-form kernel.
    #[arg(long, value_enum, default_value_t = KernelActivation::Relu)]
    pub activation: KernelActivation,
    /// Which kernel: ck (conjugate / NNGP kernel) or ntk.
    #[arg(long, value_enum, default_value_t = KernelKind::Ck)]
    pub kernel: KernelKind,
    /// Weight variance sigma_w^2 (weights N(0, sigma_w^2 / fan_in)).
    #[arg(long, value_name = "V", default_value_t = 2.0)]
    pub sigma_w2: f64,
    /// Bias variance sigma_b^2.
    #[arg(long, value_name = "V", default_value_t = 1.0)]
    pub sigma_b2: f64,
    /// Numbers of hidden layers (comma-separated); 0 is the linear kernel. The metrics are for
    /// the first.
    #[serde(deserialize_with = "super::one_or_many")]
    #[arg(long, value_delimiter = ',', value_name = "L", default_values_t = [2usize])]
    pub depth: Vec<usize>,
    /// Cube dimension d (1-128).
    #[arg(short = 'd', long, value_name = "D", default_value_t = 7)]
    pub dim: usize,
}

impl Default for KernelSpectrumOptions {
    fn default() -> Self {
        KernelSpectrumOptions {
            activation: KernelActivation::Relu,
            kernel: KernelKind::Ck,
            sigma_w2: 2.0,
            sigma_b2: 1.0,
            depth: vec![2],
            dim: 7,
        }
    }
}

const DEGREE: &str = "degree k of the cube's characters (0..=d)";

impl ProbeImpl for KernelSpectrumProbe {
    const NAME: &'static str = "kernel-spectrum";
    const ABOUT: &'static str = "CK / NTK eigenvalues of an infinite-width ReLU or erf MLP on the boolean cube \
        {-1,1}^d (Yang & Salman 2019; PROTOCOLS 2.2). No model or data needed.";
    const NEEDS: Needs = Needs::NOTHING;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::vector("eigenvalues", "kernel eigenvalue mu_k", DEGREE, "eigenvalue of degree-k characters"),
        MetricInfo::vector("normalised", "normalised eigenvalue", DEGREE, "mu_k / sum_k C(d,k) mu_k (first depth)"),
        MetricInfo::vector(
            "fractional_variance",
            "fractional variance",
            DEGREE,
            "C(d,k) mu_k / sum_k C(d,k) mu_k: share of the kernel's variance at degree k (first depth)",
        ),
    ];
    type Options = KernelSpectrumOptions;

    fn check(o: &KernelSpectrumOptions) -> Result<(), String> {
        if o.depth.is_empty() {
            return Err("depth: give at least one number of hidden layers".into());
        }
        Ok(())
    }

    fn measure<T: Scalar>(_: &ProbeInput<'_>, o: &KernelSpectrumOptions) -> Result<ProbeOutput, ProbeError> {
        let spectra = o
            .depth
            .iter()
            .map(|&depth| {
                let spec = KernelSpec { activation: o.activation, sigma_w2: o.sigma_w2, sigma_b2: o.sigma_b2, depth };
                boolean_cube_spectrum(&spec, o.kernel, o.dim)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = &spectra[0];
        let values = vec![
            vector("eigenvalues", first.eigenvalues.clone()),
            vector("normalised", first.normalised.clone()),
            vector("fractional_variance", first.fractional_variance.clone()),
        ];
        let mut t = format!(
            "{:?} {:?} sigma_w^2 = {}, sigma_b^2 = {}, d = {}: normalised eigenvalues mu_k / sum_k C(d,k) mu_k\nL  ",
            o.kernel, o.activation, o.sigma_w2, o.sigma_b2, o.dim
        );
        for k in 0..=o.dim {
            let _ = write!(t, "{:>11}", format!("k={k}"));
        }
        t.push('\n');
        for s in &spectra {
            let _ = write!(t, "{:<3}", s.spec.depth);
            for m in &s.normalised {
                let _ = write!(t, "{m:>11.3e}");
            }
            t.push('\n');
        }
        Ok(ProbeOutput::new(values, serde_json::json!({"d": o.dim, "spectra": spectra}), t))
    }
}

// ---------------------------------------------------------------------------------------------
// prior-functions

/// `prior-functions`: the distribution of functions of random networks.
pub struct PriorFunctionsProbe;

/// Options of [`PriorFunctionsProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct PriorFunctionsOptions {
    /// Weight variance: W ~ N(0, sigma_w^2 / fan_in).
    #[arg(long, value_name = "V", default_value_t = 2.0)]
    pub sigma_w2: f64,
    /// Bias variance: b ~ N(0, sigma_b^2).
    #[arg(long, value_name = "V", default_value_t = 0.0)]
    pub sigma_b2: f64,
    /// Condition on the train split's labels (accept a network only if it fits them) and read
    /// the functions on the test split.
    #[arg(long)]
    pub condition: bool,
    /// Networks drawn from the prior.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub networks: usize,
    /// Functions listed, most frequent first (0 = all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
}

impl Default for PriorFunctionsOptions {
    fn default() -> Self {
        let d = FunctionSamplerParams::default();
        PriorFunctionsOptions { sigma_w2: 2.0, sigma_b2: 0.0, condition: false, networks: d.samples, top: d.top }
    }
}

impl ProbeImpl for PriorFunctionsProbe {
    const NAME: &'static str = "prior-functions";
    const ABOUT: &'static str = "Functions of random networks drawn from a Gaussian prior on the points of the \
        data, optionally conditioned on fitting the train split (rejection sampling of P_B(f|S); Mingard et al. \
        2021; PROTOCOLS 2.2b, 10.1). Needs an architecture, no checkpoint.";
    const NEEDS: Needs =
        Needs { model: true, params: false, data: DataUse::Whole, loss: false, default_data: Some("boolean:d=7") };
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "acceptance_rate",
            "acceptance rate",
            "fraction of networks that fit the train labels (1 without conditioning): an estimate of P(S)",
        ),
        MetricInfo::scalar("distinct", "distinct functions", "number of distinct functions among accepted networks"),
        MetricInfo::scalar("entropy_bits", "function entropy", "entropy of the empirical function distribution")
            .with_unit("bits"),
        MetricInfo::scalar(
            "most_frequent_probability",
            "probability of the most frequent function",
            "its share of accepted networks",
        ),
        MetricInfo::scalar(
            "constant_probability",
            "probability of constant functions",
            "share of accepted networks predicting one class everywhere",
        ),
        MetricInfo::vector(
            "top_probabilities",
            "function probability",
            "function, most frequent first",
            "probability of each listed function",
        ),
    ];
    type Options = PriorFunctionsOptions;

    fn check(o: &PriorFunctionsOptions) -> Result<(), String> {
        if o.networks == 0 {
            return Err("networks must be at least 1".into());
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &PriorFunctionsOptions) -> Result<ProbeOutput, ProbeError> {
        let model = input.model()?;
        let data = input.data()?;
        let invalid = |e: sgdlab_data::DataError| ProbeError::Invalid(e.to_string());
        let prior = PriorSpec { sigma_w2: o.sigma_w2, sigma_b2: o.sigma_b2 };
        let opts = FunctionSamplerParams { samples: o.networks, top: o.top };
        let to_t = |x: &Array2<f32>| x.mapv(|v| T::from_f64(v as f64));
        let (est, train_rows, evaluated) = if o.condition {
            let tr = data.train().map_err(invalid)?;
            let te = data.test().map_err(|e| ProbeError::Invalid(format!("condition needs a test split: {e}")))?;
            let labels = tr.labels().ok_or_else(|| ProbeError::Invalid("condition needs class labels".into()))?;
            let x = ndarray::concatenate(Axis(0), &[to_t(tr.features()).view(), to_t(te.features()).view()])
                .map_err(|e| ProbeError::Invalid(e.to_string()))?;
            let rows: Vec<usize> = (0..tr.len()).collect();
            let cond = FunctionCondition { train: &rows, labels };
            let est = sample_prior_functions(model, &prior, x.view(), Some(&cond), &opts, &input.stream)?;
            (est, tr.len(), vec![Evaluated::whole(tr), Evaluated::whole(te)])
        } else {
            let split = data.train().or_else(|_| data.split("all")).map_err(invalid)?;
            let x = to_t(split.features());
            (
                sample_prior_functions(model, &prior, x.view(), None, &opts, &input.stream)?,
                0,
                vec![Evaluated::whole(split)],
            )
        };
        let values = vec![
            scalar("acceptance_rate", est.acceptance_rate),
            scalar("distinct", est.distinct as f64),
            scalar("entropy_bits", est.entropy_bits),
            scalar("most_frequent_probability", est.most_frequent_probability),
            scalar("constant_probability", est.constant_probability),
            vector("top_probabilities", est.top.iter().map(|f| f.probability).collect()),
        ];
        let mut t = format!(
            "{} networks, {} accepted ({:.3e}), {} distinct functions on {} points\n\
             entropy {:.3} bits, most frequent {:.4}, constant {:.4}\n",
            est.samples,
            est.accepted,
            est.acceptance_rate,
            est.distinct,
            est.points,
            est.entropy_bits,
            est.most_frequent_probability,
            est.constant_probability
        );
        for f in &est.top {
            let _ = writeln!(t, "{:>8.5} {:>8}  {}", f.probability, f.count, f.function);
        }
        let mut details = details_of(&est);
        details["prior"] = serde_json::json!(prior);
        details["conditioned_on"] = serde_json::json!(train_rows);
        Ok(ProbeOutput::new(values, details, t).evaluated(evaluated))
    }
}
