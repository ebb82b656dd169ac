//! The probe registry: every probe registered once, serving the command line (`sgdlab probe
//! NAME`), a study's `[[measure]]` and the Python package.
//!
//! A probe is a type implementing [`ProbeImpl`]: its name, a description, what it needs (a
//! model, parameters, data), a typed options struct, the metrics it writes and its measure
//! function. [`ALL`] lists every probe; [`find`] looks one up by name. Adding a probe is one
//! `impl ProbeImpl` in a file of this module (beside the others of its PROTOCOLS section) plus
//! one line in [`ALL`]; the command line, study validation and the tests pick it up from there.
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
//! for axes and legends. [`ProbeImpl::written`] says which metrics given options write, in the
//! order `measure` returns them (a test checks it for every probe), so that a study's metric
//! names are validated before anything runs.
//!
//! # Inputs
//! [`ProbeInput`] carries the model, its parameters, the data and the evaluation options
//! ([`EvalOptions`]: split, seeded subset, batches, loss, seed). [`Needs`] says which of them a
//! probe reads; [`resolve_data`] finds the data a checkpoint was trained on (its `sgdlab.data`
//! metadata) when none is given, and [`InputSummary`] states what was evaluated.

mod curvature;
mod depth;
mod dynamics;
mod frequency;
mod hessian;
mod input;
mod rank;
mod shift;

pub use curvature::{
    BackwardErrorOptions, BackwardErrorProbe, InterpolateOptions, InterpolateProbe, IterateTailsOptions,
    IterateTailsProbe, LandscapeOptions, LandscapeProbe, LossOptions, LossProbe, NoiseOptions, NoisePreconditioner,
    NoiseProbe, SharpnessOptions, SharpnessProbe, SobolevFlatnessOptions, SobolevFlatnessProbe, TailIndexOptions,
    TailIndexProbe,
};
pub use depth::{
    LesionOptions, LesionProbe, NccDepthOptions, NccDepthProbe, NeuralCollapseOptions, NeuralCollapseProbe,
    PathLengthsOptions, PathLengthsProbe,
};
pub use dynamics::{
    GeometricComplexityOptions, GeometricComplexityProbe, NormsOptions, NormsProbe, PerformanceCorrelationOptions,
    PerformanceCorrelationProbe, RandomisationOptions, RandomisationProbe, SaturationOptions, SaturationProbe,
    SparsityOptions, SparsityProbe,
};
pub use frequency::{
    KernelSpectrumOptions, KernelSpectrumProbe, PriorFunctionsOptions, PriorFunctionsProbe, SpectralBiasOptions,
    SpectralBiasProbe,
};
pub use hessian::{CurvatureOperator, HessianOptions, HessianProbe};
pub use input::{
    AdamState, DEFAULT_BATCH_SIZE, DEFAULT_SAMPLES, DataProvenance, DataSource, EvalOptions, Evaluated, Evaluation,
    InputSummary, ProbeInput, Table, TrainedOn, resolve_data,
};
pub use rank::{RepresentationRankOptions, RepresentationRankProbe, WeightSpectraOptions, WeightSpectraProbe};
pub use shift::{ShiftCurvatureOptions, ShiftCurvatureProbe};

use crate::common::ProbeError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sgdlab_linalg::Scalar;

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

impl MetricValue {
    /// The shape of this value (a vector's index is the metric's).
    pub fn is_scalar(&self) -> bool {
        matches!(self, MetricValue::Scalar(_))
    }
}

/// What a measurement returns: the values written to records, the whole estimate with its
/// diagnostics, and a text for people.
#[derive(Debug, Clone)]
pub struct ProbeOutput {
    /// `(metric name, value)`, names from the probe's [`MetricInfo`] list, in that order.
    pub values: Vec<(&'static str, MetricValue)>,
    /// The estimate with every diagnostic (standard errors, residuals, matvecs, converged flags):
    /// `sgdlab probe NAME --json` prints it (after the common header) and Python returns it.
    /// Always a JSON object.
    pub details: serde_json::Value,
    /// A few aligned lines for the terminal.
    pub text: String,
    /// The examples evaluated, split by split (empty for probes that read no examples).
    pub evaluated: Vec<Evaluated>,
    /// A grid for `--out FILE.csv` (landscape slices, the spectral density), for probes with a
    /// [`ProbeImpl::TABLE`].
    pub table: Option<Table>,
}

impl ProbeOutput {
    /// Values, details and text; nothing evaluated, no table.
    pub fn new(values: Vec<(&'static str, MetricValue)>, details: serde_json::Value, text: String) -> Self {
        ProbeOutput { values, details, text, evaluated: Vec::new(), table: None }
    }

    /// The same output, stating what it evaluated.
    pub fn evaluated(mut self, evaluated: Vec<Evaluated>) -> Self {
        self.evaluated = evaluated;
        self
    }

    /// The same output with a table for `--out FILE.csv`.
    pub fn with_table(mut self, table: Table) -> Self {
        self.table = Some(table);
        self
    }

    /// The value of metric `name`, if written.
    pub fn value(&self, name: &str) -> Option<&MetricValue> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The scalar metric `name`, if written as a scalar.
    pub fn scalar(&self, name: &str) -> Option<f64> {
        match self.value(name) {
            Some(MetricValue::Scalar(v)) => Some(*v),
            Some(MetricValue::Vector(_)) | None => None,
        }
    }

    /// The vector metric `name`, if written as a vector.
    pub fn vector(&self, name: &str) -> Option<&[f64]> {
        match self.value(name) {
            Some(MetricValue::Vector(v)) => Some(v),
            Some(MetricValue::Scalar(_)) | None => None,
        }
    }
}

/// How a probe uses data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataUse {
    /// No data.
    None,
    /// The dataset as a whole: its spec (the target of a sines spec) or all of its points, not a
    /// subset.
    Whole,
    /// Splits the probe's options name (e.g. a baseline split and a held-out split), each a
    /// seeded subset of `samples` examples.
    Splits,
    /// The evaluation split ([`EvalOptions::split`]), a seeded subset of `samples` examples.
    Eval,
}

/// What a probe needs besides its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// A model (architecture).
    pub model: bool,
    /// Trained parameters of that model (a checkpoint, or the run's parameters in a study).
    pub params: bool,
    /// Which data it reads.
    pub data: DataUse,
    /// Whether the loss function ([`EvalOptions::loss`]) changes its numbers (curvature,
    /// gradients).
    pub loss: bool,
    /// The data used when none is given and there is no checkpoint to take it from (only for
    /// probes that need no checkpoint).
    pub default_data: Option<&'static str>,
}

impl Needs {
    /// Model, parameters, the evaluation split and the loss: the curvature probes.
    pub const ALL: Needs = Needs { model: true, params: true, data: DataUse::Eval, loss: true, default_data: None };
    /// Model, parameters and the evaluation split; no loss (representation probes).
    pub const EVAL: Needs = Needs { loss: false, ..Needs::ALL };
    /// Model, parameters and splits named by the options.
    pub const SPLITS: Needs = Needs { data: DataUse::Splits, ..Needs::EVAL };
    /// A checkpoint only (weight spectra, norms).
    pub const CHECKPOINT: Needs =
        Needs { model: true, params: true, data: DataUse::None, loss: false, default_data: None };
    /// Nothing but options (closed-form kernels).
    pub const NOTHING: Needs =
        Needs { model: false, params: false, data: DataUse::None, loss: false, default_data: None };

    /// Whether any data is read.
    pub fn data_needed(&self) -> bool {
        match self.data {
            DataUse::None => false,
            DataUse::Whole | DataUse::Splits | DataUse::Eval => true,
        }
    }

    /// Whether the numbers depend on the seed (seeded subsets, random probes or draws).
    pub fn seeded(&self) -> bool {
        self.subsets() || (self.model && !self.params)
    }

    /// Whether examples are drawn as seeded subsets (`samples`, `batch_size` apply).
    pub fn subsets(&self) -> bool {
        match self.data {
            DataUse::None | DataUse::Whole => false,
            DataUse::Splits | DataUse::Eval => true,
        }
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

/// A summary of one probe measured on several checkpoints of a training run (spectral bias:
/// the time to learn each frequency; norms: growth-law fits).
pub struct Series<O: 'static> {
    /// What the summary is, for `--help`.
    pub about: &'static str,
    /// The summary of `outputs[i]`, measured at training step `steps[i]` (ascending).
    pub summarise: Summarise<O>,
}

/// Summarises `outputs[i]`, measured at training step `steps[i]`, with these options.
pub type Summarise<O> = fn(steps: &[u64], outputs: &[ProbeOutput], options: &O) -> Result<ProbeOutput, ProbeError>;

/// A probe, implemented once beside its numerics.
pub trait ProbeImpl: Send + Sync + 'static {
    /// The probe's name (`sgdlab probe NAME`, `probe = "NAME"` in a study).
    const NAME: &'static str;
    /// What it measures, with its reference, for `--help` (the first sentence is the summary).
    const ABOUT: &'static str;
    /// What it needs besides options.
    const NEEDS: Needs;
    /// Every metric the probe can write.
    const METRICS: &'static [MetricInfo];
    /// For probes that return a [`ProbeOutput::table`]: what the table holds (the command line
    /// writes it with `--out FILE.csv`).
    const TABLE: Option<&'static str> = None;
    /// For probes that summarise several checkpoints of a run.
    const SERIES: Option<Series<Self::Options>> = None;
    type Options: ProbeOptions;

    /// The metrics written with these options, in the order [`ProbeImpl::measure`] returns
    /// them (a subset of [`ProbeImpl::METRICS`]; default: all of them). Used to validate studies
    /// before anything runs.
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

impl Precision {
    /// `f32` or `f64`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
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
    /// What `--out FILE.csv` writes, for probes that return a table.
    fn table(&self) -> Option<&'static str>;
    /// What the summary over several checkpoints is, for probes that have one.
    fn series_about(&self) -> Option<&'static str>;
    /// Types and checks options given as JSON (a study's `options` table, Python keyword
    /// arguments): unknown keys and wrong types are errors naming the key.
    fn options_from_json(&self, value: serde_json::Value) -> Result<CheckedOptions, String>;
    /// The options as JSON with every default written out.
    fn options_to_json(&self, options: &CheckedOptions) -> serde_json::Value;
    /// The default options as JSON (`Default::default()`, unchecked: some probes need an option
    /// set, e.g. interpolate's `to`).
    fn default_options(&self) -> serde_json::Value;
    /// The metrics written with these options.
    fn written(&self, options: &CheckedOptions) -> Vec<&'static str>;
    /// The options' command-line flags, added to `cmd`.
    fn augment_args(&self, cmd: clap::Command) -> clap::Command;
    /// The options from parsed flags.
    fn options_from_matches(&self, matches: &clap::ArgMatches) -> Result<CheckedOptions, String>;
    /// The options from parsed flags as JSON, unchecked (to compare flag defaults with
    /// [`Probe::default_options`]).
    fn options_json_from_matches(&self, matches: &clap::ArgMatches) -> Result<serde_json::Value, String>;
    /// Measures (after checking that the input has what the probe needs and that model and data
    /// fit).
    fn measure(
        &self,
        input: &ProbeInput<'_>,
        options: &CheckedOptions,
        precision: Precision,
    ) -> Result<ProbeOutput, ProbeError>;
    /// Summarises measurements of several checkpoints (`None` for probes without a series).
    fn series(
        &self,
        steps: &[u64],
        outputs: &[ProbeOutput],
        options: &CheckedOptions,
    ) -> Option<Result<ProbeOutput, ProbeError>>;
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
    fn table(&self) -> Option<&'static str> {
        P::TABLE
    }
    fn series_about(&self) -> Option<&'static str> {
        P::SERIES.as_ref().map(|s| s.about)
    }
    fn options_from_json(&self, value: serde_json::Value) -> Result<CheckedOptions, String> {
        let value = if value.is_null() { serde_json::Value::Object(Default::default()) } else { value };
        let o: P::Options = serde_json::from_value(value.clone()).map_err(|e| option_error::<P::Options>(&value, e))?;
        self.checked(o)
    }
    fn options_to_json(&self, options: &CheckedOptions) -> serde_json::Value {
        serde_json::to_value(self.typed(options)).expect("options serialise")
    }
    fn default_options(&self) -> serde_json::Value {
        serde_json::to_value(P::Options::default()).expect("options serialise")
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
    fn options_json_from_matches(&self, matches: &clap::ArgMatches) -> Result<serde_json::Value, String> {
        let o = <P::Options as clap::FromArgMatches>::from_arg_matches(matches).map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(o).expect("options serialise"))
    }
    fn measure(
        &self,
        input: &ProbeInput<'_>,
        options: &CheckedOptions,
        precision: Precision,
    ) -> Result<ProbeOutput, ProbeError> {
        input.check(&P::NEEDS)?;
        let o = self.typed(options);
        match precision {
            Precision::F32 => P::measure::<f32>(input, o),
            Precision::F64 => P::measure::<f64>(input, o),
        }
    }
    fn series(
        &self,
        steps: &[u64],
        outputs: &[ProbeOutput],
        options: &CheckedOptions,
    ) -> Option<Result<ProbeOutput, ProbeError>> {
        P::SERIES.as_ref().map(|s| (s.summarise)(steps, outputs, self.typed(options)))
    }
}

/// An options error naming the option: serde names unknown keys itself, but not a key whose
/// value has the wrong type, so each key is tried alone to find it.
fn option_error<O: DeserializeOwned>(value: &serde_json::Value, e: serde_json::Error) -> String {
    let bad_key = value.as_object().and_then(|obj| {
        obj.iter().find(|(k, v)| {
            let alone = serde_json::Value::Object([((*k).clone(), (*v).clone())].into_iter().collect());
            serde_json::from_value::<O>(alone).is_err()
        })
    });
    match bad_key {
        Some((k, _)) if !e.to_string().contains(&format!("`{k}`")) => format!("option `{k}`: {e}"),
        Some(_) | None => e.to_string(),
    }
}

/// Every registered probe, in the order `sgdlab probe --help` lists them.
pub static ALL: &[&dyn Probe] = &[
    &Entry::<LossProbe>::new(),
    &Entry::<HessianProbe>::new(),
    &Entry::<SharpnessProbe>::new(),
    &Entry::<LandscapeProbe>::new(),
    &Entry::<InterpolateProbe>::new(),
    &Entry::<ShiftCurvatureProbe>::new(),
    &Entry::<NoiseProbe>::new(),
    &Entry::<TailIndexProbe>::new(),
    &Entry::<IterateTailsProbe>::new(),
    &Entry::<SobolevFlatnessProbe>::new(),
    &Entry::<BackwardErrorProbe>::new(),
    &Entry::<WeightSpectraProbe>::new(),
    &Entry::<RepresentationRankProbe>::new(),
    &Entry::<SpectralBiasProbe>::new(),
    &Entry::<KernelSpectrumProbe>::new(),
    &Entry::<PriorFunctionsProbe>::new(),
    &Entry::<NccDepthProbe>::new(),
    &Entry::<NeuralCollapseProbe>::new(),
    &Entry::<LesionProbe>::new(),
    &Entry::<PathLengthsProbe>::new(),
    &Entry::<GeometricComplexityProbe>::new(),
    &Entry::<RandomisationProbe>::new(),
    &Entry::<PerformanceCorrelationProbe>::new(),
    &Entry::<NormsProbe>::new(),
    &Entry::<SaturationProbe>::new(),
    &Entry::<SparsityProbe>::new(),
];

/// The probe of this name.
pub fn find(name: &str) -> Option<&'static dyn Probe> {
    ALL.iter().copied().find(|p| p.name() == name)
}

/// The names of every probe, comma-separated (for error messages).
pub fn names() -> String {
    ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

/// The details of a measurement as a JSON object: `estimate` serialised (a struct serialises to
/// an object; anything else is wrapped as `{"result": ...}`).
pub(crate) fn details_of(estimate: &impl Serialize) -> serde_json::Value {
    match serde_json::to_value(estimate).expect("estimates serialise") {
        v @ serde_json::Value::Object(_) => v,
        other => serde_json::json!({ "result": other }),
    }
}

/// Deserialises a list option from a list or a single value (`epsilon = 1e-3` in a study means
/// `[1e-3]`).
pub(crate) fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match <OneOrMany<T> as serde::Deserialize>::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

/// Scalar and vector values, in the order given.
pub(crate) fn scalar(name: &'static str, v: f64) -> (&'static str, MetricValue) {
    (name, MetricValue::Scalar(v))
}

pub(crate) fn vector(name: &'static str, v: Vec<f64>) -> (&'static str, MetricValue) {
    (name, MetricValue::Vector(v))
}
