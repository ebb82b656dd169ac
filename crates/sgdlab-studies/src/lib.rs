//! sgdlab-studies: a claim of the survey as a study — a frozen plan of runs over one knob and
//! several seeds, measurements on a schedule, a statistical verdict. Record formats:
//! `docs/records.md`.

mod error;
pub mod measure;
pub mod plan;
pub mod runner;
pub mod slurm;
pub mod spec;
pub mod status;
pub mod verdict;

pub use error::StudyError;
pub use plan::{Plan, PlannedRun};
pub use runner::{RunnerOptions, RunsOutcome, StudyOutcome, TaskShare, freeze_plan, read_plan, run_runs, run_study};
pub use spec::StudySpec;
pub use verdict::compute_verdict;

/// The built-in studies: (name, survey section, TOML).
pub const BUILTIN: &[(&str, &str, &str)] = &[
    ("batch-sharpness", "7.1", include_str!("../studies/batch-sharpness.toml")),
    ("rank-depth", "1.3", include_str!("../studies/rank-depth.toml")),
    ("rank-depth-completion", "1.3", include_str!("../studies/rank-depth-completion.toml")),
];

/// A built-in study by name, or a study file.
pub fn load_study(name_or_path: &str) -> Result<StudySpec, StudyError> {
    if let Some((_, _, text)) = BUILTIN.iter().find(|(n, _, _)| *n == name_or_path) {
        return StudySpec::from_toml(text, &format!("built-in study {name_or_path}"));
    }
    let p = std::path::Path::new(name_or_path);
    if !p.exists() {
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _, _)| *n).collect();
        return Err(StudyError::Spec(format!(
            "'{name_or_path}' is neither a built-in study ({}) nor a file",
            names.join(", ")
        )));
    }
    let text = std::fs::read_to_string(p).map_err(|e| StudyError::io(p, e))?;
    StudySpec::from_toml(&text, &p.display().to_string())
}
