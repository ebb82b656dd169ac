//! The probe registry: every probe registered once, serving the command line (`sgdlab probe
//! NAME`), a study's `[[measure]]` and the Python package.
//!
//! A probe is a type implementing [`ProbeImpl`]: its name, a one-line description, what it needs
//! (a model, parameters, data), a typed options struct, the metrics it writes and its measure
//! function. [`ALL`] lists every probe; [`find`] looks one up by name. Adding a probe is one
//! `impl ProbeImpl` beside its numerics plus one line in [`ALL`].
//!
//! # Options
//! The options struct derives `serde::Deserialize` (with `deny_unknown_fields` and `default`),
//! `serde::Serialize`, `Default` and `clap::Args`. A field `top_k` is the flag `--top-k` on the
//! command line, the key `top_k` in a study's `options = { ... }` and the keyword argument `top_k`
//! in Python; its default is the same everywhere (a test checks that clap's defaults equal
//! `Default::default()` for every probe).
//!
//! # Metrics
//! A probe's output is a list of named values, each a scalar or a vector (a spectrum, per-layer
//! values, per-frequency residuals). In `metrics.jsonl` a metric is written as `probe/name`
//! rows; a vector metric has one row per element with its `index`. [`MetricInfo`] gives each
//! metric a label in words, a unit where one exists and a one-line meaning, which reports use
//! for axes and legends.

use crate::common::{EvalSet, ProbeError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sgdlab_data::{Dataset, Split};
use sgdlab_linalg::{RngStream, Scalar};
use sgdlab_nn::{Loss, Model, Params};

/// Whether a metric is one number or a vector of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricShape {
    /// One number per measurement.
    Scalar,
    /// A vector per measurement; `index` says what its index counts (e.g. "layer", "frequency
    /// index", "eigenvalue rank").
    Vector { index: &'static str },
}

/// A metric a probe writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MetricInfo {
    /// The name after `probe/` (e.g. `top_eigenvalue`).
    pub name: &'static str,
    /// In words, for axes and legends (e.g. "top Hessian eigenvalue").
    pub label: &'static str,
    /// Unit where one exists (e.g. "%", "bits", "steps").
    pub unit: Option<&'static str>,
    /// One line: what the number means.
    pub meaning: &'static str,
    pub shape: MetricShape,
}

impl MetricInfo {
    /// A scalar metric without a unit.
    pub const fn scalar(name: &'static str, label: &'static str, meaning: &'static str) -> Self {
        MetricInfo { name, label, unit: None, meaning, shape: MetricShape::Scalar }
    }

    /// A vector metric without a unit, indexed by `index`.
    pub const fn vector(name: &'static str, label: &'static str, index: &'static str, meaning: &'static str) -> Self {
        MetricInfo { name, label, unit: None, meaning, shape: MetricShape::Vector { index } }
    }

    /// The same metric with a unit.
    pub const fn with_unit(mut self, unit: &'static str) -> Self {
        self.unit = Some(unit);
        self
    }

    /// The label with its unit, for an axis: "epsilon-sharpness (%)".
    pub fn axis_label(&self) -> String {
        match self.unit {
            Some(u) => format!("{} ({u})", self.label),
            None => self.label.to_string(),
        }
    }
}

/// One measured value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetricValue {
    Scalar(f64),
    Vector(Vec<f64>),
}

/// What a measurement returns: the values written to records, the whole estimate with its
/// diagnostics, and a text for people.
#[derive(Debug, Clone)]
pub struct ProbeOutput {
    /// `(metric name, value)`, names from the probe's [`MetricInfo`] list, in that order.
    pub values: Vec<(&'static str, MetricValue)>,
    /// The estimate with every diagnostic (standard errors, residuals, matvecs, converged flags):
    /// `sgdlab probe NAME --json` prints it (after the common header) and Python returns it.
    pub details: serde_json::Value,
    /// A few aligned lines for the terminal.
    pub text: String,
}

/// What a probe needs besides its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// A model (architecture).
    pub model: bool,
    /// Trained parameters of that model (a checkpoint, or the run's parameters in a study).
    pub params: bool,
    /// A dataset to evaluate on.
    pub data: bool,
}

impl Needs {
    /// Model, parameters and data: most probes.
    pub const ALL: Needs = Needs { model: true, params: true, data: true };
    /// A checkpoint only (weight spectra, norms).
    pub const CHECKPOINT: Needs = Needs { model: true, params: true, data: false };
    /// Nothing but options (closed-form kernels).
    pub const NOTHING: Needs = Needs { model: false, params: false, data: false };
}

/// How the evaluation examples are drawn from the data, shared by every probe that needs data.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EvalOptions {
    /// The split evaluated (`None`: `train`, or `all` for single-split sets).
    pub split: Option<String>,
    /// Examples drawn from the split (a seeded subset; 0 = the whole split).
    pub samples: usize,
    /// Examples per batch of each pass (0 = one batch); results are means over the whole set.
    pub batch_size: usize,
    /// The loss curvature and gradients refer to.
    pub loss: Loss,
    /// Seed of every random choice (subset, probe vectors, directions).
    pub seed: u64,
}

/// Everything a measurement works on. Fields a probe does not need ([`Needs`]) may be `None`;
/// the caller guarantees that those it needs are present.
pub struct ProbeInput<'a> {
    pub model: Option<&'a Model>,
    pub params: Option<&'a Params<f64>>,
    pub data: Option<&'a Dataset>,
    /// The data spec `data` was loaded from (for provenance in the output).
    pub data_spec: Option<&'a str>,
    pub eval: &'a EvalOptions,
    /// The probe's own random stream (derived by the caller from the seed and the probe's label,
    /// so that adding a probe never changes another's numbers).
    pub stream: RngStream,
}

impl<'a> ProbeInput<'a> {
    /// The model, or an error naming the probe.
    pub fn model(&self) -> Result<&'a Model, ProbeError> {
        self.model.ok_or_else(|| ProbeError::Invalid("this probe needs a model".into()))
    }

    /// The parameters, or an error.
    pub fn params(&self) -> Result<&'a Params<f64>, ProbeError> {
        self.params.ok_or_else(|| ProbeError::Invalid("this probe needs a checkpoint (parameters)".into()))
    }

    /// The dataset, or an error.
    pub fn data(&self) -> Result<&'a Dataset, ProbeError> {
        self.data.ok_or_else(|| ProbeError::Invalid("this probe needs data".into()))
    }

    /// The evaluated split: `eval.split`, or `train` (`all` for single-split sets).
    pub fn split(&self) -> Result<&'a Split, ProbeError> {
        let d = self.data()?;
        let r = match &self.eval.split {
            Some(s) => d.split(s),
            None => d.train().or_else(|_| d.split("all")),
        };
        r.map_err(|e| ProbeError::Invalid(e.to_string()))
    }

    /// The evaluation examples in precision `T` (the seeded subset of [`ProbeInput::split`]).
    pub fn eval_set<T: Scalar>(&self) -> Result<EvalSet<T>, ProbeError> {
        Ok(EvalSet::from_split(self.split()?, self.eval.samples, &self.stream))
    }
}

/// A probe's options: typed, with defaults, the same on the command line, in studies and in
/// Python.
pub trait ProbeOptions:
    Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + clap::Args + Send + Sync + 'static
{
}

impl<O> ProbeOptions for O where
    O: Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug + clap::Args + Send + Sync + 'static
{
}

/// A probe, implemented once beside its numerics.
pub trait ProbeImpl: Send + Sync + 'static {
    /// The probe's name (`sgdlab probe NAME`, `probe = "NAME"` in a study).
    const NAME: &'static str;
    /// One line for `--help` and `sgdlab study` docs.
    const ABOUT: &'static str;
    /// What it needs besides options.
    const NEEDS: Needs;
    /// Every metric the probe can write.
    const METRICS: &'static [MetricInfo];
    type Options: ProbeOptions;

    /// The metrics written with these options (a subset of [`ProbeImpl::METRICS`]; default:
    /// all of them). Used to validate studies before anything runs.
    fn written(options: &Self::Options) -> Vec<&'static str> {
        let _ = options;
        Self::METRICS.iter().map(|m| m.name).collect()
    }

    /// Checks options that types alone cannot (ranges, combinations), before anything runs.
    fn check(options: &Self::Options) -> Result<(), String> {
        let _ = options;
        Ok(())
    }

    /// Measures in precision `T`.
    fn measure<T: Scalar>(input: &ProbeInput<'_>, options: &Self::Options) -> Result<ProbeOutput, ProbeError>;
}

/// Precision of a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    #[default]
    F64,
}

/// Options checked and typed, ready to measure with (what a study's plan holds per measure).
pub struct CheckedOptions(Box<dyn std::any::Any + Send + Sync>);

/// The object-safe face of a probe, implemented for every [`ProbeImpl`] by [`Entry`].
pub trait Probe: Send + Sync {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    fn needs(&self) -> Needs;
    fn metrics(&self) -> &'static [MetricInfo];
    /// The metric of this name, if the probe writes one.
    fn metric(&self, name: &str) -> Option<&'static MetricInfo> {
        self.metrics().iter().find(|m| m.name == name)
    }
    /// Types and checks options given as JSON (a study's `options` table, Python keyword
    /// arguments): unknown keys and wrong types are errors naming the key.
    fn options_from_json(&self, value: serde_json::Value) -> Result<CheckedOptions, String>;
    /// The options as JSON with every default written out.
    fn options_to_json(&self, options: &CheckedOptions) -> serde_json::Value;
    /// The metrics written with these options.
    fn written(&self, options: &CheckedOptions) -> Vec<&'static str>;
    /// The options' command-line flags, added to `cmd`.
    fn augment_args(&self, cmd: clap::Command) -> clap::Command;
    /// The options from parsed flags.
    fn options_from_matches(&self, matches: &clap::ArgMatches) -> Result<CheckedOptions, String>;
    /// Measures.
    fn measure(
        &self,
        input: &ProbeInput<'_>,
        options: &CheckedOptions,
        precision: Precision,
    ) -> Result<ProbeOutput, ProbeError>;
}

/// Wraps a [`ProbeImpl`] as a [`Probe`].
pub struct Entry<P>(std::marker::PhantomData<P>);

impl<P> Entry<P> {
    pub const fn new() -> Self {
        Entry(std::marker::PhantomData)
    }
}

impl<P> Default for Entry<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: ProbeImpl> Entry<P> {
    fn typed<'o>(&self, o: &'o CheckedOptions) -> &'o P::Options {
        o.0.downcast_ref::<P::Options>().expect("options checked by this probe")
    }

    fn checked(&self, o: P::Options) -> Result<CheckedOptions, String> {
        P::check(&o)?;
        Ok(CheckedOptions(Box::new(o)))
    }
}

impl<P: ProbeImpl> Probe for Entry<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn about(&self) -> &'static str {
        P::ABOUT
    }
    fn needs(&self) -> Needs {
        P::NEEDS
    }
    fn metrics(&self) -> &'static [MetricInfo] {
        P::METRICS
    }
    fn options_from_json(&self, value: serde_json::Value) -> Result<CheckedOptions, String> {
        let value = if value.is_null() { serde_json::Value::Object(Default::default()) } else { value };
        let o: P::Options = serde_json::from_value(value).map_err(|e| e.to_string())?;
        self.checked(o)
    }
    fn options_to_json(&self, options: &CheckedOptions) -> serde_json::Value {
        serde_json::to_value(self.typed(options)).expect("options serialise")
    }
    fn written(&self, options: &CheckedOptions) -> Vec<&'static str> {
        P::written(self.typed(options))
    }
    fn augment_args(&self, cmd: clap::Command) -> clap::Command {
        <P::Options as clap::Args>::augment_args(cmd)
    }
    fn options_from_matches(&self, matches: &clap::ArgMatches) -> Result<CheckedOptions, String> {
        let o = <P::Options as clap::FromArgMatches>::from_arg_matches(matches).map_err(|e| e.to_string())?;
        self.checked(o)
    }
    fn measure(
        &self,
        input: &ProbeInput<'_>,
        options: &CheckedOptions,
        precision: Precision,
    ) -> Result<ProbeOutput, ProbeError> {
        let o = self.typed(options);
        match precision {
            Precision::F32 => P::measure::<f32>(input, o),
            Precision::F64 => P::measure::<f64>(input, o),
        }
    }
}

/// Every registered probe, in the order `sgdlab probe --help` lists them.
pub static ALL: &[&dyn Probe] = &[&Entry::<LossProbe>::new()];

/// The probe of this name.
pub fn find(name: &str) -> Option<&'static dyn Probe> {
    ALL.iter().copied().find(|p| p.name() == name)
}

/// The names of every probe, comma-separated (for error messages).
pub fn names() -> String {
    ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// The probes. Each entry sits here as a thin adapter over the numerics of its module.

/// `loss`: mean loss, accuracy and gradient norm over the evaluation set.
pub struct LossProbe;

/// Options of [`LossProbe`] (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, clap::Args)]
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
        let model = input.model()?;
        let params: Vec<T> = input.params()?.cast::<T>().into_vec();
        let set = input.eval_set::<T>()?;
        let ctx =
            crate::curvature::CurvatureContext::new(model, &params, &set, input.eval.batch_size, input.eval.loss)?;
        let s = crate::curvature::loss_summary(&ctx);
        Ok(ProbeOutput {
            values: vec![
                ("loss", MetricValue::Scalar(s.loss)),
                ("accuracy", MetricValue::Scalar(s.accuracy)),
                ("grad_norm", MetricValue::Scalar(s.grad_norm)),
            ],
            details: serde_json::json!({"loss": s.loss, "accuracy": s.accuracy, "grad_norm": s.grad_norm, "matvecs": 0}),
            text: format!("loss      {:.6}\naccuracy  {:.4}\ngrad_norm {:.6}\n", s.loss, s.accuracy, s.grad_norm),
        })
    }
}
