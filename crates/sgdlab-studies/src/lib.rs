//! sgdlab-studies: a claim of the survey as a study. A study is a base run spec, sweeps around
//! it, measurements through the probe registry, and claims, each a per-run value read off the
//! records, a population of runs, a statistic across runs with a bootstrap interval over seeds,
//! and a decision with the expected outcome and its provenance. The language is documented in
//! `docs/studies.md`; the records in `docs/records.md`.
//!
//! - [`spec`]: the study spec ([`StudySpec`], [`LoadedStudy`] with line numbers for errors);
//! - [`overrides`]: `--set key.path=value` and quick mode;
//! - [`plan`]: expansion into a frozen plan, with every check done before anything runs;
//! - [`runner`]: the resumable parallel runner;
//! - [`value`], [`statistic`], [`verdict`]: claims decided from the records alone;
//! - [`records`]: `plan.json` and `verdict.json`, typed once;
//! - [`survey`]: the survey's claims (PROTOCOLS.md sections) for the index page;
//! - [`slurm`], [`status`]: a frozen plan as a Slurm job array, and a study's progress from its
//!   records.

mod error;
pub mod measure;
pub mod metrics;
pub mod overrides;
pub mod plan;
pub mod records;
pub mod runner;
pub mod slurm;
pub mod span;
pub mod spec;
pub mod statistic;
pub mod status;
pub mod survey;
pub mod value;
pub mod verdict;

pub use error::StudyError;
pub use records::{PlanRecord, PlannedRun, RunState, Verdict, VerdictRecord, read_plan, read_verdict};
pub use runner::{RunnerOptions, RunsOutcome, StudyOutcome, TaskShare, freeze_plan, run_plan, run_study};
pub use spec::{LoadedStudy, StudySpec};
pub use verdict::compute_verdict;

/// A built-in study: its name and TOML.
pub struct Builtin {
    pub name: &'static str,
    pub toml: &'static str,
}

/// The built-in studies, in survey order.
pub const BUILTIN: &[Builtin] = &[
    Builtin { name: "rank-depth-gd", toml: include_str!("../studies/rank-depth-gd.toml") },
    Builtin { name: "rank-weight-decay", toml: include_str!("../studies/rank-weight-decay.toml") },
    Builtin { name: "rank-depth", toml: include_str!("../studies/rank-depth.toml") },
    Builtin { name: "rank-depth-completion", toml: include_str!("../studies/rank-depth-completion.toml") },
    Builtin { name: "spectral-bias", toml: include_str!("../studies/spectral-bias.toml") },
    Builtin { name: "kernel-spectra", toml: include_str!("../studies/kernel-spectra.toml") },
    Builtin { name: "hat-spectral-bias", toml: include_str!("../studies/hat-spectral-bias.toml") },
    Builtin { name: "sobolev-bias", toml: include_str!("../studies/sobolev-bias.toml") },
    Builtin { name: "effective-depth", toml: include_str!("../studies/effective-depth.toml") },
    Builtin { name: "neural-collapse", toml: include_str!("../studies/neural-collapse.toml") },
    Builtin { name: "residual-ensembles", toml: include_str!("../studies/residual-ensembles.toml") },
    Builtin { name: "geometric-complexity", toml: include_str!("../studies/geometric-complexity.toml") },
    Builtin { name: "simplicity-pitfalls", toml: include_str!("../studies/simplicity-pitfalls.toml") },
    Builtin { name: "simplicity-dominoes", toml: include_str!("../studies/simplicity-dominoes.toml") },
    Builtin { name: "increasing-complexity", toml: include_str!("../studies/increasing-complexity.toml") },
    Builtin { name: "distribution-clones", toml: include_str!("../studies/distribution-clones.toml") },
    Builtin { name: "batch-sharpness", toml: include_str!("../studies/batch-sharpness.toml") },
    Builtin { name: "batch-sharpness-conv", toml: include_str!("../studies/batch-sharpness-conv.toml") },
    Builtin { name: "edge-of-stability", toml: include_str!("../studies/edge-of-stability.toml") },
    Builtin { name: "shift-curvature", toml: include_str!("../studies/shift-curvature.toml") },
    Builtin { name: "entropy-sgd", toml: include_str!("../studies/entropy-sgd.toml") },
    Builtin { name: "sgd-noise-escape", toml: include_str!("../studies/sgd-noise-escape.toml") },
    Builtin { name: "iterate-tails", toml: include_str!("../studies/iterate-tails.toml") },
    Builtin { name: "sobolev-flatness", toml: include_str!("../studies/sobolev-flatness.toml") },
    Builtin { name: "sgd-adam-tails", toml: include_str!("../studies/sgd-adam-tails.toml") },
];

/// Loads a built-in study by name, or a study file, with quick mode and overrides applied.
pub fn load_study(name_or_path: &str, quick: bool, overrides: &[String]) -> Result<LoadedStudy, StudyError> {
    if let Some(b) = BUILTIN.iter().find(|b| b.name == name_or_path) {
        return LoadedStudy::parse(b.toml, &format!("built-in study {}", b.name), quick, overrides);
    }
    let p = std::path::Path::new(name_or_path);
    if !p.exists() {
        let names: Vec<&str> = BUILTIN.iter().map(|b| b.name).collect();
        return Err(StudyError::Spec(format!(
            "'{name_or_path}' is neither a built-in study ({}) nor a file",
            names.join(", ")
        )));
    }
    let text = std::fs::read_to_string(p).map_err(|e| StudyError::io(p, e))?;
    LoadedStudy::parse(&text, &p.display().to_string(), quick, overrides)
}

/// Why a study cannot run on this machine, if it cannot: its data reads the MNIST test set
/// (`mnist` without a directory) and [`sgdlab_data::mnist_test_dir`] does not find it. `None`
/// when every run's data is available (or is generated).
pub fn missing_data(study: &LoadedStudy) -> Result<Option<String>, StudyError> {
    let p = plan::plan(study)?;
    for r in &p.runs {
        let rs = sgdlab_train::RunSpec::from_toml(&r.run_spec, "plan.json")
            .map_err(|e| StudyError::Spec(format!("run {}: {e}", r.id)))?;
        let Ok(d) = sgdlab_data::DatasetSpec::parse(&rs.data) else { continue };
        if matches!(d.source, sgdlab_data::SourceSpec::Mnist { dir: None })
            && let Err(e) = sgdlab_data::mnist_test_dir()
        {
            return Ok(Some(e.to_string()));
        }
    }
    Ok(None)
}
