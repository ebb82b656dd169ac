//! Study specs in TOML: a base run spec, sweeps around it, measurements on a schedule, claims
//! (each a per-run value, a population, a statistic across runs and a decision), figures and a
//! quick mode. The language is documented with worked examples in `docs/studies.md`.
//!
//! Parsing keeps every key's line ([`crate::span::SpanIndex`]), so errors found after parsing
//! (an unknown probe or option, an axis or metric that does not exist, a bad run-spec key in
//! `[base]`) are reported as `FILE:LINE: message` in the user's file.

use crate::error::StudyError;
use crate::span::{self, Seg, SpanIndex};
use crate::value::ValueSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A sweep axis: a name, the run-spec key it sets (optional: an axis may only fill `{name}`
/// templates in `[base]`) and its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub values: Vec<toml::Value>,
}

/// How a sweep combines its axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SweepMode {
    /// Every combination of the axes' values.
    #[default]
    Grid,
    /// The axes' values paired up by position (all lists equally long).
    Zip,
}

/// One block of runs around the base: its axes, combined as a grid or zipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Names the block in populations (`population = { sweep = "lr" }`) and figures.
    pub name: String,
    #[serde(default)]
    pub mode: SweepMode,
    #[serde(default)]
    pub axis: Vec<AxisSpec>,
    /// Start every run of this block from the final parameters of the run of another (earlier)
    /// block with the same seed (`init.from`): a second stage of training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FromSpec>,
    /// Run this block with the first `K` of the study's seeds only (all of them when there are
    /// fewer): a costly arm the protocol needs fewer seeds of. Follows `--seeds` and quick mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seeds: Option<usize>,
}

impl SweepSpec {
    /// The seeds this block runs with: the first `first_seeds` of `seeds`, or all of them.
    pub fn seeds<'a>(&self, seeds: &'a [u64]) -> &'a [u64] {
        &seeds[..self.first_seeds.map_or(seeds.len(), |k| k.min(seeds.len()))]
    }
}

/// The source of a sweep's start parameters: the run of sweep `sweep` (declared earlier in the
/// file) with the same seed, among those with the axis values `where` (there must be exactly one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromSpec {
    pub sweep: String,
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: Arm,
}

/// When a measurement is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum At {
    /// At initialisation (step 0) only.
    Init,
    /// After the last step only.
    #[default]
    Final,
    /// Every `every` steps, plus initialisation and the last step.
    Every,
    /// `points` log-spaced steps from 1 to the last step, plus initialisation and the last step.
    Log,
}

/// A measurement: a registered probe, its options, on a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// A probe of the registry (`sgdlab probe --help` lists them).
    pub probe: String,
    /// The name its rows carry in metrics.jsonl (default: the probe's name); give two
    /// measurements of one probe different labels.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(default)]
    pub at: At,
    /// Steps between measurements for `at = "every"`.
    #[serde(default)]
    pub every: u64,
    /// Log-spaced measurement points for `at = "log"`.
    #[serde(default)]
    pub points: usize,
    /// Denser measurements early in training, for `at = "every"`: also every `early.every` steps
    /// up to step `early.until` (e.g. every 25 steps for the first 1,000, then every epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early: Option<EarlySpec>,
    /// No measurement before this step (e.g. `from_step = 1` skips the initialisation, where an
    /// optimiser has no state yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub from_step: u64,
    /// The split evaluated (`train` falls back to `all` for single-split sets).
    #[serde(default = "default_split")]
    pub split: String,
    /// Examples drawn from the split (a seeded subset; 0 = all).
    #[serde(default = "default_samples")]
    pub samples: usize,
    /// Examples per batch of each pass (0 = one batch).
    #[serde(default = "default_samples")]
    pub batch_size: usize,
    /// The probe's options (its `sgdlab probe NAME --help` flags, in snake_case).
    #[serde(default)]
    pub options: toml::Table,
    /// Only on runs with these axis values (e.g. a probe of residual blocks on the residual arm).
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: Arm,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

fn default_split() -> String {
    "train".into()
}
fn default_samples() -> usize {
    1000
}

/// The dense early part of an `every` schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlySpec {
    /// Steps between measurements up to `until`.
    pub every: u64,
    /// The last step of the dense part (inclusive).
    pub until: u64,
}

impl MeasureSpec {
    /// The name of its rows in metrics.jsonl.
    pub fn label(&self) -> &str {
        if self.label.is_empty() { &self.probe } else { &self.label }
    }
}

/// Runs selected by axis values: `{ batch_size = 2000 }`.
pub type Arm = BTreeMap<String, toml::Value>;

/// Which runs a claim looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PopulationSpec {
    /// Only the runs of this sweep block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<String>,
    /// Only runs with these axis values.
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: Arm,
}

/// The statistic across runs; its confidence interval is a percentile bootstrap over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StatisticSpec {
    /// Mean of the per-run values.
    Mean,
    /// Median of the per-run values.
    Median,
    /// Geometric mean over seeds of value(numerator arm) / value(denominator arm), paired by
    /// seed (values must be positive).
    Ratio { numerator: Arm, denominator: Arm },
    /// Mean over seeds of value(a) - value(b), paired by seed.
    Difference { a: Arm, b: Arm },
    /// Spearman rank correlation of the per-run value with an axis, over runs.
    Spearman { axis: String },
    /// Kendall's tau-b of the per-run value with an axis, over runs.
    Kendall { axis: String },
    /// Least-squares slope of the per-run value against an axis, over runs (`log_x`, `log_y`:
    /// base-10 logarithms first, a log-log slope with both).
    Slope {
        axis: String,
        #[serde(default)]
        log_x: bool,
        #[serde(default)]
        log_y: bool,
    },
    /// Fraction of runs whose value satisfies the predicate (e.g. `{ fraction = { greater = 0 } }`).
    Fraction(DecisionSpec),
    /// The gap recovered, (mean C - mean B) / (mean A - mean B): e.g. A = SGD, B = GD, C = GD
    /// with the explicit regulariser.
    GapRecovered { a: Arm, b: Arm, c: Arm },
    /// Fraction of seeds (with both arms) in which the paired difference value(a) - value(b)
    /// satisfies `difference` in at least a share `elements_at_least` of its elements (a number
    /// has one element; vectors, e.g. a `series` over checkpoints, are compared element by
    /// element and must be equally long).
    PairedFraction(PairedFractionSpec),
}

/// `paired_fraction`: per seed, the share of elements `i` whose difference
/// `value(a)[i] - value(b)[i]` satisfies a predicate; the seed counts when that share is at
/// least `elements_at_least` (default 1: every element).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairedFractionSpec {
    pub a: Arm,
    pub b: Arm,
    /// The predicate on each element of value(a) - value(b) (`{ less = 0.0 }`: a below b).
    pub difference: DecisionSpec,
    #[serde(default = "default_elements_at_least")]
    pub elements_at_least: f64,
}

fn default_elements_at_least() -> f64 {
    1.0
}

/// A decision rule on the effect's confidence interval `[lo, hi]` (or a predicate on one value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DecisionSpec {
    /// Reproduced if `lo > t`; not reproduced if `hi < t`.
    Greater(f64),
    /// Reproduced if `hi < t`; not reproduced if `lo > t`.
    Less(f64),
    /// Reproduced if `lo >= t`; not reproduced if `hi < t`.
    AtLeast(f64),
    /// Reproduced if `hi <= t`; not reproduced if `lo > t`.
    AtMost(f64),
    /// Reproduced if `[lo, hi]` lies inside `[a, b]`; not reproduced if it lies wholly outside.
    Within([f64; 2]),
}

impl DecisionSpec {
    /// The thresholds it names.
    pub fn thresholds(&self) -> Vec<f64> {
        match self {
            DecisionSpec::Greater(t) | DecisionSpec::Less(t) | DecisionSpec::AtLeast(t) | DecisionSpec::AtMost(t) => {
                vec![*t]
            }
            DecisionSpec::Within([a, b]) => vec![*a, *b],
        }
    }

    /// Whether one value satisfies the rule as a predicate.
    pub fn holds(&self, v: f64) -> bool {
        match self {
            DecisionSpec::Greater(t) => v > *t,
            DecisionSpec::Less(t) => v < *t,
            DecisionSpec::AtLeast(t) => v >= *t,
            DecisionSpec::AtMost(t) => v <= *t,
            DecisionSpec::Within([a, b]) => *a <= v && v <= *b,
        }
    }

    /// The rule in words, with the interval level: "reproduced if the 95% interval lies above 2".
    pub fn describe(&self) -> String {
        match self {
            DecisionSpec::Greater(t) => format!("lies above {}", num(*t)),
            DecisionSpec::Less(t) => format!("lies below {}", num(*t)),
            DecisionSpec::AtLeast(t) => format!("lies at or above {}", num(*t)),
            DecisionSpec::AtMost(t) => format!("lies at or below {}", num(*t)),
            DecisionSpec::Within([a, b]) => format!("lies inside [{}, {}]", num(*a), num(*b)),
        }
    }

    /// When the rule is not met: "lies below 2".
    pub fn describe_opposite(&self) -> String {
        match self {
            DecisionSpec::Greater(t) | DecisionSpec::AtLeast(t) => format!("lies below {}", num(*t)),
            DecisionSpec::Less(t) | DecisionSpec::AtMost(t) => format!("lies above {}", num(*t)),
            DecisionSpec::Within([a, b]) => format!("lies wholly outside [{}, {}]", num(*a), num(*b)),
        }
    }

    /// The decision on an interval `[lo, hi]`; NaN bounds decide nothing.
    pub fn decide(&self, lo: f64, hi: f64) -> crate::records::Verdict {
        use crate::records::Verdict::{Inconclusive, NotReproduced, Reproduced};
        if lo.is_nan() || hi.is_nan() {
            return Inconclusive;
        }
        let (yes, no) = match self {
            DecisionSpec::Greater(t) => (lo > *t, hi < *t),
            DecisionSpec::AtLeast(t) => (lo >= *t, hi < *t),
            DecisionSpec::Less(t) => (hi < *t, lo > *t),
            DecisionSpec::AtMost(t) => (hi <= *t, lo > *t),
            DecisionSpec::Within([a, b]) => (*a <= lo && hi <= *b, hi < *a || lo > *b),
        };
        if yes {
            Reproduced
        } else if no {
            NotReproduced
        } else {
            Inconclusive
        }
    }

    /// How far the interval is from failing the rule (negative: it fails or is undecided); picks
    /// the headline group.
    pub fn margin(&self, lo: f64, hi: f64) -> f64 {
        match self {
            DecisionSpec::Greater(t) | DecisionSpec::AtLeast(t) => lo - t,
            DecisionSpec::Less(t) | DecisionSpec::AtMost(t) => t - hi,
            DecisionSpec::Within([a, b]) => (lo - a).min(b - hi),
        }
    }

    /// As a predicate on one value: "> 2".
    pub fn predicate(&self) -> String {
        match self {
            DecisionSpec::Greater(t) => format!("> {}", num(*t)),
            DecisionSpec::Less(t) => format!("< {}", num(*t)),
            DecisionSpec::AtLeast(t) => format!(">= {}", num(*t)),
            DecisionSpec::AtMost(t) => format!("<= {}", num(*t)),
            DecisionSpec::Within([a, b]) => format!("in [{}, {}]", num(*a), num(*b)),
        }
    }
}

/// Shortest text that reads back as the same number.
pub(crate) fn num(v: f64) -> String {
    format!("{v}")
}

/// Where an expected value comes from (PROTOCOLS.md's provenance legend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    /// From the paper, recalled with good confidence (re-check the figure before quoting).
    Paper,
    /// A number recalled but not checked against the paper.
    Unverified,
    /// Recomputed independently (exact formulas).
    Computed,
    /// Read in the official code.
    Code,
}

impl Provenance {
    /// The legend tag: `[paper]`.
    pub fn tag(self) -> &'static str {
        match self {
            Provenance::Paper => "[paper]",
            Provenance::Unverified => "[unverified]",
            Provenance::Computed => "[computed]",
            Provenance::Code => "[code]",
        }
    }
}

/// A checkable claim of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// Short identifier (letters, digits, `-`, `_`), unique in the study.
    pub id: String,
    /// The claim in one sentence, as the report shows it.
    pub statement: String,
    /// The per-run value.
    pub value: ValueSpec,
    #[serde(default)]
    pub population: PopulationSpec,
    pub statistic: StatisticSpec,
    /// An axis: the claim is decided within each of its values and must hold in every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    pub decision: DecisionSpec,
    /// The outcome PROTOCOLS.md expects, in words (with the paper's value where there is one).
    pub expected: String,
    pub provenance: Provenance,
    /// Where the expectation comes from (e.g. "PROTOCOLS 7.1; Keskar et al. 2017, Table 2").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Confidence level of the interval.
    #[serde(default = "default_level")]
    pub level: f64,
    /// Bootstrap resamples.
    #[serde(default = "default_resamples")]
    pub resamples: usize,
    /// Fewest seeds an interval may rest on (1 only for exact, seed-free computations).
    #[serde(default = "default_min_seeds")]
    pub min_seeds: usize,
}

fn default_min_seeds() -> usize {
    2
}

fn default_level() -> f64 {
    0.95
}
fn default_resamples() -> usize {
    2000
}

/// What a figure plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureKind {
    /// A per-run value (`y`) against an axis (`x_axis`): mean over seeds with error bars (95%
    /// bootstrap interval) and every seed as a point; one series per value of the other axes.
    FinalVsAxis,
    /// A metric (`metric`) against step or epoch (`x`), one line per arm (mean over seeds) with
    /// a min-max band.
    OverTraining,
    /// A vector metric over training: index against step or epoch, the value as colour (mean
    /// over seeds), one panel per arm.
    Heatmap,
    /// A vector metric's last value against its index (or the vector `x_metric`), one line per
    /// arm (mean over seeds) with a min-max band.
    Vector,
    /// Per-run values `x_value` against `y`, one point per run (or, with vector values, one
    /// point per element).
    Scatter,
}

/// Time axis of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimeAxis {
    #[default]
    Step,
    Epoch,
}

/// A horizontal reference line: a per-run value (e.g. 2 / lr) drawn once per arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    pub value: ValueSpec,
    pub label: String,
}

/// A figure of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureSpec {
    /// File name (figures/NAME.svg, figures/NAME.csv).
    pub name: String,
    pub kind: FigureKind,
    /// Title in words (default: from the metric labels).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// The claim this figure illustrates (its section of the report); empty: the study's
    /// general figures.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claim: String,
    /// `over_training`, `heatmap`, `vector`: the metric (`probe/name`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metric: String,
    /// `final_vs_axis`, `scatter`: the per-run value on the y axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<ValueSpec>,
    /// `scatter`: the per-run value on the x axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_value: Option<ValueSpec>,
    /// `vector`: a vector metric for the x axis instead of the index.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub x_metric: String,
    /// `final_vs_axis`: the axis on x. Elsewhere: the axis whose values are the arms (default:
    /// every axis that varies).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub x_axis: String,
    /// `over_training`, `heatmap`: step or epoch.
    #[serde(default)]
    pub x: TimeAxis,
    /// Only these runs.
    #[serde(default)]
    pub population: PopulationSpec,
    #[serde(default)]
    pub log_x: bool,
    #[serde(default)]
    pub log_y: bool,
    /// Axis labels in words (default: the metric's label and unit).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub x_label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub y_label: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference: Vec<ReferenceSpec>,
    /// One sentence under the figure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub caption: String,
}

/// Quick mode: overrides of this study spec (the `--set` language) that give a smaller but
/// still decisive version of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct QuickSpec {
    /// `key.path=value` overrides of the study spec, applied in order (e.g.
    /// `"seeds=[0, 1, 2]"`, `"base.budget.epochs=3"`, `"measure.*.samples=500"`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Why the quick version still decides the claims (shown in the report).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// Short name (the output directory, `sgdlab study run NAME`).
    pub name: String,
    pub title: String,
    /// The PROTOCOLS.md section, e.g. "7.1".
    pub section: String,
    /// The survey's claim in one sentence.
    pub survey_claim: String,
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// The run spec every run starts from (`sgdlab train` format); `{axis}` in its strings is
    /// replaced by the run's axis value, and `{seed}` by the run's seed.
    pub base: toml::Table,
    /// Blocks of runs around the base (none: the base alone, once per seed).
    #[serde(default)]
    pub sweep: Vec<SweepSpec>,
    #[serde(default)]
    pub measure: Vec<MeasureSpec>,
    pub claim: Vec<ClaimSpec>,
    #[serde(default)]
    pub figure: Vec<FigureSpec>,
    #[serde(default)]
    pub quick: QuickSpec,
    /// CI size: overrides (applied instead of the quick ones) that run the whole study, every
    /// claim computed and the report written, in seconds. Its verdicts mean nothing; the CI test
    /// `tests/builtin_ci.rs` runs every built-in study at this size.
    #[serde(default, skip_serializing_if = "QuickSpec::is_empty")]
    pub ci: QuickSpec,
}

impl QuickSpec {
    /// No overrides and no reason.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.reason.is_empty()
    }
}

/// A study as read from its file: the spec, the file's name and an index of where each key is
/// written, and the overrides applied to it (quick mode, `--set`, `--seeds`).
#[derive(Debug, Clone)]
pub struct LoadedStudy {
    pub spec: StudySpec,
    pub file: String,
    pub spans: SpanIndex,
    pub quick: bool,
    /// Every override applied, in order (the quick ones first).
    pub overrides: Vec<String>,
}

impl LoadedStudy {
    /// `FILE:LINE: message` for the key at `path` (dotted, indices as numbers).
    pub fn error_at(&self, path: &[Seg], message: impl std::fmt::Display) -> StudyError {
        StudyError::Spec(span::at(&self.file, self.spans.line(path), message))
    }
}

/// Turns a toml error into `FILE:LINE: message` on one line.
pub(crate) fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> StudyError {
    let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    StudyError::Spec(span::at(file, line, e.message().replace('\n', " ").trim_end()))
}

impl StudySpec {
    /// Parses a spec (no overrides); `file` names the source in errors. Checks everything that
    /// needs no probe or run spec; [`crate::plan::plan`] checks the rest.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, StudyError> {
        Ok(LoadedStudy::parse(text, file, false, &[])?.spec)
    }

    /// The spec as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a StudySpec always serialises")
    }
}

impl LoadedStudy {
    /// Parses `text`, applies the quick overrides (when `quick`) then `overrides` (`--set`,
    /// `--seeds`), and checks the result.
    pub fn parse(text: &str, file: &str, quick: bool, overrides: &[String]) -> Result<Self, StudyError> {
        let spans = SpanIndex::new(text);
        let raw: toml::Table = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        // Parse once as written, so that errors in the user's own text point at its lines.
        let spec: StudySpec = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let mut applied = Vec::new();
        if quick {
            applied.extend(spec.quick.set.iter().cloned());
        }
        applied.extend(overrides.iter().cloned());
        let spec = if applied.is_empty() {
            spec
        } else {
            let mut value = toml::Value::Table(raw);
            for o in &applied {
                crate::overrides::apply(&mut value, o).map_err(|m| StudyError::Spec(format!("{file}: {m}")))?;
            }
            StudySpec::deserialize(value).map_err(|e| {
                StudyError::Spec(format!("{file} (after {}): {}", applied.join(", "), e.message().replace('\n', " ")))
            })?
        };
        let loaded = LoadedStudy { spec, file: file.to_string(), spans, quick, overrides: applied };
        loaded.check()?;
        Ok(loaded)
    }

    fn check(&self) -> Result<(), StudyError> {
        let s = &self.spec;
        let key = |k: &str| span::path(k);
        if s.seeds.is_empty() {
            return Err(self.error_at(&key("seeds"), "seeds must not be empty"));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(d) = s.seeds.iter().find(|x| !seen.insert(**x)) {
            return Err(self.error_at(&key("seeds"), format!("seed {d} is given twice")));
        }
        let axes = self.axis_names();
        for (i, sw) in s.sweep.iter().enumerate() {
            let here = |k: &str| key(&format!("sweep.{i}.{k}"));
            if s.sweep.iter().filter(|o| o.name == sw.name).count() > 1 {
                return Err(self.error_at(&here("name"), format!("sweep '{}' is given twice", sw.name)));
            }
            for (j, a) in sw.axis.iter().enumerate() {
                if a.values.is_empty() {
                    return Err(
                        self.error_at(&here(&format!("axis.{j}.values")), format!("axis '{}' has no values", a.name))
                    );
                }
                if a.name == "seed" {
                    return Err(self.error_at(
                        &here(&format!("axis.{j}.name")),
                        "'seed' is not an axis name: runs already vary by seed (`seeds`), and {seed} in [base] is the run's seed",
                    ));
                }
                if sw.axis.iter().filter(|o| o.name == a.name).count() > 1 {
                    return Err(self.error_at(
                        &here(&format!("axis.{j}.name")),
                        format!("axis '{}' is given twice in sweep '{}'", a.name, sw.name),
                    ));
                }
                for v in &a.values {
                    if let toml::Value::Float(f) = v
                        && !f.is_finite()
                    {
                        return Err(self.error_at(
                            &here(&format!("axis.{j}.values")),
                            format!("axis '{}': value {f} is not finite", a.name),
                        ));
                    }
                }
            }
            if sw.first_seeds == Some(0) {
                return Err(self.error_at(
                    &here("first_seeds"),
                    format!("sweep '{}': first_seeds = 0 plans no run (at least 1)", sw.name),
                ));
            }
            if let Some(f) = &sw.from
                && !s.sweep[..i].iter().any(|o| o.name == f.sweep)
            {
                let earlier: Vec<&str> = s.sweep[..i].iter().map(|x| x.name.as_str()).collect();
                return Err(self.error_at(
                    &here("from.sweep"),
                    format!(
                        "sweep '{}' starts from sweep '{}', which is not a sweep declared before it (earlier sweeps: {})",
                        sw.name,
                        f.sweep,
                        if earlier.is_empty() { "none".to_string() } else { earlier.join(", ") }
                    ),
                ));
            }
            if sw.mode == SweepMode::Zip && sw.axis.windows(2).any(|w| w[0].values.len() != w[1].values.len()) {
                return Err(self.error_at(
                    &here("mode"),
                    format!("sweep '{}': mode = \"zip\" needs axes with equally many values", sw.name),
                ));
            }
        }
        let axis_err = |path: Vec<Seg>, what: &str, name: &str| {
            self.error_at(
                &path,
                format!(
                    "{what} '{name}' is not an axis ({})",
                    if axes.is_empty() {
                        "the study has none".to_string()
                    } else {
                        format!("axes: {}", axes.join(", "))
                    }
                ),
            )
        };
        let check_arm = |arm: &Arm, path: &str| -> Result<(), StudyError> {
            for k in arm.keys() {
                if !axes.contains(&k.as_str()) {
                    let mut p = key(path);
                    p.push(Seg::Key(k.clone()));
                    return Err(axis_err(p, "arm", k));
                }
            }
            Ok(())
        };
        let check_population = |p: &PopulationSpec, path: &str| -> Result<(), StudyError> {
            if let Some(sw) = &p.sweep
                && !s.sweep.iter().any(|x| &x.name == sw)
            {
                let names: Vec<&str> = s.sweep.iter().map(|x| x.name.as_str()).collect();
                return Err(self.error_at(
                    &key(&format!("{path}.sweep")),
                    format!("sweep '{sw}' does not exist (sweeps: {})", names.join(", ")),
                ));
            }
            check_arm(&p.filter, &format!("{path}.where"))
        };
        for (i, m) in s.measure.iter().enumerate() {
            check_arm(&m.filter, &format!("measure.{i}.where"))?;
            if m.from_step > 0 && m.at == At::Init {
                return Err(self.error_at(
                    &key(&format!("measure.{i}.from_step")),
                    format!("from_step = {} with at = \"init\" never measures", m.from_step),
                ));
            }
        }
        if s.claim.is_empty() {
            return Err(self.error_at(&[], "a study needs at least one [[claim]]"));
        }
        for (i, c) in s.claim.iter().enumerate() {
            let here = |k: &str| format!("claim.{i}.{k}");
            if c.id.is_empty() || !c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
                return Err(self
                    .error_at(&key(&here("id")), format!("claim id '{}' must be letters, digits, '-' or '_'", c.id)));
            }
            if s.claim.iter().filter(|o| o.id == c.id).count() > 1 {
                return Err(self.error_at(&key(&here("id")), format!("claim id '{}' is given twice", c.id)));
            }
            if let Some(t) = c.decision.thresholds().into_iter().find(|t| !t.is_finite()) {
                return Err(self.error_at(&key(&here("decision")), format!("threshold {t} is not finite")));
            }
            if let DecisionSpec::Within([a, b]) = c.decision
                && a > b
            {
                return Err(self.error_at(&key(&here("decision")), format!("within = [{a}, {b}] is empty")));
            }
            if !(c.level > 0.0 && c.level < 1.0) {
                return Err(self.error_at(&key(&here("level")), format!("level {} must lie in (0, 1)", c.level)));
            }
            if c.min_seeds == 0 {
                return Err(self.error_at(&key(&here("min_seeds")), "min_seeds must be at least 1"));
            }
            if c.resamples < 100 {
                return Err(self.error_at(
                    &key(&here("resamples")),
                    format!("resamples {} is too few (at least 100)", c.resamples),
                ));
            }
            check_population(&c.population, &here("population"))?;
            if let Some(w) = &c.within
                && !axes.contains(&w.as_str())
            {
                return Err(axis_err(key(&here("within")), "within", w));
            }
            match &c.statistic {
                StatisticSpec::Mean | StatisticSpec::Median => {}
                StatisticSpec::Ratio { numerator, denominator } => {
                    check_arm(numerator, &here("statistic.ratio.numerator"))?;
                    check_arm(denominator, &here("statistic.ratio.denominator"))?;
                }
                StatisticSpec::Difference { a, b } => {
                    check_arm(a, &here("statistic.difference.a"))?;
                    check_arm(b, &here("statistic.difference.b"))?;
                }
                StatisticSpec::Spearman { axis }
                | StatisticSpec::Kendall { axis }
                | StatisticSpec::Slope { axis, .. } => {
                    if !axes.contains(&axis.as_str()) {
                        return Err(axis_err(key(&here("statistic")), "statistic axis", axis));
                    }
                }
                StatisticSpec::Fraction(d) => {
                    if let Some(t) = d.thresholds().into_iter().find(|t| !t.is_finite()) {
                        return Err(self.error_at(&key(&here("statistic")), format!("threshold {t} is not finite")));
                    }
                }
                StatisticSpec::GapRecovered { a, b, c: cc } => {
                    check_arm(a, &here("statistic.gap_recovered.a"))?;
                    check_arm(b, &here("statistic.gap_recovered.b"))?;
                    check_arm(cc, &here("statistic.gap_recovered.c"))?;
                }
                StatisticSpec::PairedFraction(p) => {
                    check_arm(&p.a, &here("statistic.paired_fraction.a"))?;
                    check_arm(&p.b, &here("statistic.paired_fraction.b"))?;
                    if let Some(t) = p.difference.thresholds().into_iter().find(|t| !t.is_finite()) {
                        return Err(self.error_at(
                            &key(&here("statistic.paired_fraction.difference")),
                            format!("threshold {t} is not finite"),
                        ));
                    }
                    if !(p.elements_at_least > 0.0 && p.elements_at_least <= 1.0) {
                        return Err(self.error_at(
                            &key(&here("statistic.paired_fraction.elements_at_least")),
                            format!("elements_at_least {} must lie in (0, 1]", p.elements_at_least),
                        ));
                    }
                }
            }
            c.value.check_axes(&axes).map_err(|m| self.error_at(&key(&here("value")), m))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, f) in s.figure.iter().enumerate() {
            let here = |k: &str| key(&format!("figure.{i}.{k}"));
            if f.name.is_empty() || !f.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                return Err(self.error_at(
                    &here("name"),
                    format!("figure name '{}' must be a file name (letters, digits, '-', '_', '.')", f.name),
                ));
            }
            if !names.insert(f.name.as_str()) {
                return Err(self.error_at(&here("name"), format!("figure '{}' is given twice", f.name)));
            }
            if !f.claim.is_empty() && !s.claim.iter().any(|c| c.id == f.claim) {
                return Err(self.error_at(
                    &here("claim"),
                    format!("figure '{}' names claim '{}', which does not exist", f.name, f.claim),
                ));
            }
            if !f.x_axis.is_empty() && !axes.contains(&f.x_axis.as_str()) {
                return Err(axis_err(here("x_axis"), "x_axis", &f.x_axis));
            }
            let need = |ok: bool, what: &str| -> Result<(), StudyError> {
                if ok { Ok(()) } else { Err(self.error_at(&here("kind"), format!("figure '{}': {what}", f.name))) }
            };
            match f.kind {
                FigureKind::FinalVsAxis => {
                    need(f.y.is_some(), "kind final_vs_axis needs y (a per-run value)")?;
                    need(!f.x_axis.is_empty(), "kind final_vs_axis needs x_axis")?;
                }
                FigureKind::OverTraining | FigureKind::Heatmap | FigureKind::Vector => {
                    need(!f.metric.is_empty(), "this kind needs metric = \"probe/name\"")?;
                }
                FigureKind::Scatter => need(f.y.is_some() && f.x_value.is_some(), "kind scatter needs x_value and y")?,
            }
            for v in [&f.y, &f.x_value].into_iter().flatten() {
                v.check_axes(&axes).map_err(|m| self.error_at(&here("y"), m))?;
            }
            for r in &f.reference {
                r.value.check_axes(&axes).map_err(|m| self.error_at(&here("reference"), m))?;
            }
            check_population(&f.population, &format!("figure.{i}.population"))?;
        }
        for (i, m) in s.measure.iter().enumerate() {
            let here = |k: &str| key(&format!("measure.{i}.{k}"));
            if m.at == At::Every && m.every == 0 {
                return Err(self.error_at(&here("at"), "at = \"every\" needs every = N > 0"));
            }
            if let Some(e) = m.early {
                if m.at != At::Every {
                    return Err(self.error_at(&here("early"), "early needs at = \"every\""));
                }
                if e.every == 0 || e.until == 0 {
                    return Err(self.error_at(&here("early"), "early needs every = N > 0 and until = N > 0"));
                }
            }
            if m.at == At::Log && m.points == 0 {
                return Err(self.error_at(&here("at"), "at = \"log\" needs points = N > 0"));
            }
            if s.measure.iter().filter(|o| o.label() == m.label()).count() > 1 {
                return Err(self.error_at(
                    &here("probe"),
                    format!("two measurements write rows named '{}': give them different labels", m.label()),
                ));
            }
        }
        Ok(())
    }

    /// Every axis name of every sweep (each once).
    pub fn axis_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for a in self.spec.sweep.iter().flat_map(|s| &s.axis) {
            if !out.contains(&a.name.as_str()) {
                out.push(&a.name);
            }
        }
        out
    }
}
