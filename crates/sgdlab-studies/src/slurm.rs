//! A study's frozen plan as a Slurm job array: how the plan's runs are laid over array tasks, the
//! two sbatch scripts (the array, and the job that merges after it), and each task's share of
//! the plan from Slurm's environment variables. Slurm itself schedules, requeues and signals;
//! this module only writes scripts and reads what Slurm sets. Commands: `docs/slurm.md`.
//!
//! Layout: a plan of `R` runs becomes one array of `T` tasks (`T = ceil(R / runs_per_task)`,
//! at most the cluster's `MaxArraySize`), and task `i` runs the plan's runs `i, i + T, i + 2T,
//! ...` (striding), so a plan larger than `MaxArraySize` still needs one array only. Each task
//! skips runs already finished, so a requeued or re-submitted task does no work twice.

use crate::error::StudyError;
use crate::runner::TaskShare;
use std::path::Path;

/// Slurm's default `MaxArraySize` (array indices 0..1000), used when the cluster's own cannot
/// be read (`scontrol show config`).
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// Seconds before the time limit at which Slurm sends SIGUSR1 to a task (`--signal`): time to
/// finish a step and write a checkpoint.
pub const SIGNAL_LEAD_S: u64 = 120;

/// The exit status of `run-task` when a signal stopped it (EX_TEMPFAIL: try again later).
pub const EXIT_INTERRUPTED: i32 = 75;

/// How a plan's runs are laid over the tasks of one job array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayLayout {
    /// Runs in the plan.
    pub runs: usize,
    /// Array tasks, indexed 0..tasks; task `i` runs the runs whose index is `i` modulo `tasks`.
    pub tasks: usize,
}

impl ArrayLayout {
    /// `runs_per_task` runs per task (at least 1), with no more tasks than `max_array_size`.
    pub fn new(runs: usize, runs_per_task: usize, max_array_size: usize) -> Result<Self, StudyError> {
        if runs == 0 {
            return Err(StudyError::Spec("the plan has no runs: nothing to submit".into()));
        }
        if runs_per_task == 0 {
            return Err(StudyError::Spec("--runs-per-task must be at least 1".into()));
        }
        if max_array_size == 0 {
            return Err(StudyError::Spec("MaxArraySize is 0: this cluster accepts no job arrays".into()));
        }
        Ok(ArrayLayout { runs, tasks: runs.div_ceil(runs_per_task).min(max_array_size) })
    }

    /// The share of the plan that task `task` runs.
    pub fn share(&self, task: usize) -> TaskShare {
        TaskShare { index: task, count: self.tasks }
    }

    /// Runs of task `task`.
    pub fn runs_of(&self, task: usize) -> usize {
        (0..self.runs).filter(|&i| self.share(task).includes(i)).count()
    }

    /// The `--array` value: `0-(tasks-1)`, with `%K` when at most K tasks may run at once.
    pub fn array_option(&self, parallelism: Option<usize>) -> String {
        let range = format!("0-{}", self.tasks - 1);
        match parallelism {
            Some(k) => format!("{range}%{k}"),
            None => range,
        }
    }
}

/// What the sbatch scripts of a study say.
#[derive(Debug, Clone)]
pub struct SubmitSpec<'a> {
    /// The sgdlab binary the tasks run (an absolute path on the shared filesystem).
    pub sgdlab: &'a Path,
    /// The study directory (absolute), holding `plan.json`.
    pub dir: &'a Path,
    pub study: &'a str,
    pub layout: ArrayLayout,
    /// At most this many tasks at once (`--array=...%K`).
    pub parallelism: Option<usize>,
    /// Extra sbatch options for both jobs (partition, time, memory, account, ...).
    pub slurm_args: &'a str,
    /// The cluster's MaxArraySize, and whether it was read from the cluster.
    pub max_array_size: (usize, bool),
}

/// The two scripts `submit` writes into `DIR/slurm/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripts {
    /// `array.sbatch`: one job array over the plan's runs.
    pub array: String,
    /// `merge.sbatch`: verdict and report, submitted with `--dependency=afterany:ARRAY`.
    pub merge: String,
}

/// Characters that `#SBATCH` lines or `--output` patterns would misread in a path.
const PATH_FORBIDDEN: &[char] = &[' ', '\t', '\n', '\r', '\'', '"', '\\', '%', '$', '`'];

fn check_path(what: &str, p: &Path) -> Result<String, StudyError> {
    let s = p.to_str().ok_or_else(|| StudyError::Spec(format!("{what} {} is not UTF-8", p.display())))?;
    if !p.is_absolute() {
        return Err(StudyError::Spec(format!("{what} {s} must be an absolute path (tasks run elsewhere)")));
    }
    if let Some(c) = s.chars().find(|c| PATH_FORBIDDEN.contains(c)) {
        return Err(StudyError::Spec(format!(
            "{what} {s}: the character {c:?} cannot appear in an sbatch script's paths; choose a directory without it"
        )));
    }
    Ok(s.to_string())
}

/// Checks `--slurm-args`: one line of sbatch options, without the options `submit` sets itself.
pub fn check_slurm_args(args: &str) -> Result<(), StudyError> {
    if args.contains(['\n', '\r']) {
        return Err(StudyError::Spec("--slurm-args: must be one line".into()));
    }
    for word in args.split_whitespace() {
        let name = word.split('=').next().unwrap_or(word);
        if !name.starts_with('-') {
            continue;
        }
        let owned = match name {
            "--array" | "-a" => Some("submit sets the array from the plan (use --array-parallelism, --runs-per-task)"),
            "--dependency" | "-d" => Some("submit makes the merge job depend on the array"),
            "--output" | "-o" | "--error" | "-e" | "--open-mode" => {
                Some("the logs go to DIR/slurm/logs, appended to across requeues")
            }
            _ => None,
        };
        if let Some(why) = owned {
            return Err(StudyError::Spec(format!("--slurm-args: {name} is not allowed: {why}")));
        }
    }
    Ok(())
}

/// The two sbatch scripts of a study.
pub fn sbatch_scripts(s: &SubmitSpec<'_>) -> Result<Scripts, StudyError> {
    check_slurm_args(s.slurm_args)?;
    if s.parallelism == Some(0) {
        return Err(StudyError::Spec("--array-parallelism must be at least 1".into()));
    }
    let sgdlab = check_path("the sgdlab binary", s.sgdlab)?;
    let dir = check_path("the study directory", s.dir)?;
    let l = s.layout;
    let (max, read) = s.max_array_size;
    let per_task = if l.runs_of(0) == l.runs_of(l.tasks - 1) {
        format!("{} run(s) each", l.runs_of(0))
    } else {
        format!("{} or {} runs each", l.runs_of(l.tasks - 1), l.runs_of(0))
    };
    let striding = if l.tasks < l.runs {
        format!(
            "# Striding: task i runs the plan's runs i, i+{t}, i+{t2}, ... (sgdlab study run-task --stride {t}).\n",
            t = l.tasks,
            t2 = 2 * l.tasks
        )
    } else {
        "# Task i runs the plan's run i (sgdlab study run-task --stride equal to the task count).\n".to_string()
    };
    let user = if s.slurm_args.trim().is_empty() {
        String::new()
    } else {
        format!("# From --slurm-args (after the defaults above, so these win):\n#SBATCH {}\n", s.slurm_args.trim())
    };
    let array = format!(
        "#!/bin/bash\n\
         # Study {study}: its frozen plan ({dir}/plan.json, {runs} runs) as one Slurm job array.\n\
         # Written by `sgdlab study submit`; submit it again with `sbatch {dir}/slurm/array.sbatch`\n\
         # (a re-submitted or requeued task skips the runs already finished).\n\
         #\n\
         # Layout: {runs} runs over {tasks} array tasks (0-{last}), {per_task}; this cluster's MaxArraySize is {max}{maxnote}.\n\
         {striding}\
         # Threads: each task runs SLURM_CPUS_PER_TASK runs at once, one thread each.\n\
         # Signals: {lead} s before the time limit Slurm sends SIGUSR1 (--signal=B:USR1@{lead}); the task\n\
         # checkpoints its running runs, requeues itself (scontrol requeue) and exits, and the\n\
         # requeued task resumes them. On SIGTERM (scancel, preemption) it checkpoints and exits.\n\
         # Logs: {dir}/slurm/logs/task-ARRAYJOB_TASK.log, appended across requeues.\n\
         #SBATCH --job-name=sgdlab-{study}\n\
         #SBATCH --array={array_opt}\n\
         #SBATCH --cpus-per-task=1\n\
         #SBATCH --output={dir}/slurm/logs/task-%A_%a.log\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --signal=B:USR1@{lead}\n\
         #SBATCH --requeue\n\
         {user}\
         exec {sgdlab} study run-task {dir} --stride {tasks}\n",
        study = s.study,
        runs = l.runs,
        tasks = l.tasks,
        last = l.tasks - 1,
        maxnote = if read { "" } else { " (Slurm's default: the cluster's could not be read)" },
        lead = SIGNAL_LEAD_S,
        array_opt = l.array_option(s.parallelism),
    );
    let merge = format!(
        "#!/bin/bash\n\
         # Study {study}: the verdict and report from the records of {dir}, once every task of the\n\
         # array has ended. `sgdlab study submit` submits it with --dependency=afterany:ARRAYJOB\n\
         # (afterany: also after failed or cancelled tasks; the verdict is then marked incomplete\n\
         # and `sgdlab study status` lists the missing runs). By hand: `sgdlab report {dir}`.\n\
         #SBATCH --job-name=sgdlab-{study}-merge\n\
         #SBATCH --cpus-per-task=1\n\
         #SBATCH --output={dir}/slurm/logs/merge-%j.log\n\
         #SBATCH --open-mode=append\n\
         {user}\
         {sgdlab} study status {dir}\n\
         exec {sgdlab} report {dir}\n",
        study = s.study,
    );
    Ok(Scripts { array, merge })
}

/// A task's share of the plan from Slurm's variables (`var` reads one, e.g. `std::env::var`).
/// With `stride` (what `submit` writes into the script), task `SLURM_ARRAY_TASK_ID` runs the
/// runs congruent to it modulo `stride`, so a task re-submitted alone (`sbatch --array=5`) still
/// runs its own share; without it, the share is (`_ID` - `_MIN`) modulo `SLURM_ARRAY_TASK_COUNT`.
pub fn task_share_from_env(
    var: &dyn Fn(&str) -> Option<String>,
    stride: Option<usize>,
) -> Result<TaskShare, StudyError> {
    let get = |name: &str| -> Result<Option<usize>, StudyError> {
        match var(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => {
                v.trim().parse().map(Some).map_err(|_| StudyError::Spec(format!("{name}={v} is not a task number")))
            }
        }
    };
    let Some(id) = get("SLURM_ARRAY_TASK_ID")? else {
        return Err(StudyError::Spec(
            "not inside a Slurm array task (SLURM_ARRAY_TASK_ID is not set): submit with `sgdlab study submit`, or run locally with `sgdlab study run`".into(),
        ));
    };
    let share = match stride {
        Some(0) => return Err(StudyError::Spec("--stride must be at least 1".into())),
        Some(count) => TaskShare { index: id, count },
        None => {
            let min = get("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = get("SLURM_ARRAY_TASK_COUNT")?
                .ok_or_else(|| StudyError::Spec("SLURM_ARRAY_TASK_COUNT is not set (give --stride)".into()))?;
            let index = id.checked_sub(min).ok_or_else(|| {
                StudyError::Spec(format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"))
            })?;
            TaskShare { index, count: count.max(1) }
        }
    };
    if share.index >= share.count {
        return Err(StudyError::Spec(format!(
            "array task {} is outside the array's {} tasks (the script says --stride {})",
            share.index, share.count, share.count
        )));
    }
    Ok(share)
}

/// Runs at once in a task: `SLURM_CPUS_PER_TASK` (set only when the job asks for
/// `--cpus-per-task`; 1 when empty).
pub fn cpus_from_env(var: &dyn Fn(&str) -> Option<String>) -> Result<usize, StudyError> {
    match var("SLURM_CPUS_PER_TASK").filter(|v| !v.trim().is_empty()) {
        None => Ok(1),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(StudyError::Spec(format!("SLURM_CPUS_PER_TASK={v} is not a positive number"))),
        },
    }
}

/// The job id printed by `sbatch --parsable` (`ID` or `ID;CLUSTER`).
pub fn parse_job_id(sbatch_stdout: &str) -> Result<String, StudyError> {
    let first = sbatch_stdout.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let id = first.split(';').next().unwrap_or("");
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) {
        Ok(id.to_string())
    } else {
        Err(StudyError::Spec(format!("sbatch printed no job id (got '{first}')")))
    }
}

/// `MaxArraySize` from the output of `scontrol show config`.
pub fn parse_max_array_size(show_config: &str) -> Option<usize> {
    show_config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn every_run_belongs_to_exactly_one_task() {
        for (runs, per_task, max) in
            [(10, 1, 1001), (10, 2, 1001), (10, 3, 1001), (2500, 1, 1001), (7, 100, 1001), (5, 1, 2)]
        {
            let l = ArrayLayout::new(runs, per_task, max).unwrap();
            assert!(l.tasks <= max && l.tasks >= 1);
            for i in 0..runs {
                let owners = (0..l.tasks).filter(|&t| l.share(t).includes(i)).count();
                assert_eq!(owners, 1, "run {i} of {runs} ({per_task} per task, max {max})");
            }
            assert_eq!((0..l.tasks).map(|t| l.runs_of(t)).sum::<usize>(), runs);
            // No task runs more than ceil(runs / tasks).
            assert!((0..l.tasks).all(|t| l.runs_of(t) <= runs.div_ceil(l.tasks)));
        }
        // Beyond MaxArraySize: as many tasks as the cluster allows, striding over the runs.
        let l = ArrayLayout::new(2500, 1, 1001).unwrap();
        assert_eq!((l.tasks, l.runs_of(0), l.runs_of(1000)), (1001, 3, 2));
        assert_eq!(ArrayLayout::new(10, 2, 1001).unwrap().tasks, 5);
        assert_eq!(ArrayLayout::new(10, 3, 1001).unwrap().tasks, 4);
        assert!(ArrayLayout::new(0, 1, 1001).is_err());
        assert!(ArrayLayout::new(3, 0, 1001).is_err());
    }

    fn spec<'a>(layout: ArrayLayout, args: &'a str) -> SubmitSpec<'a> {
        SubmitSpec {
            sgdlab: Path::new("/opt/sgdlab/bin/sgdlab"),
            dir: Path::new("/shared/results/tiny"),
            study: "tiny",
            layout,
            parallelism: Some(2),
            slurm_args: args,
            max_array_size: (1001, true),
        }
    }

    #[test]
    fn scripts_state_the_layout_and_put_user_options_last() {
        let l = ArrayLayout::new(10, 2, 1001).unwrap();
        let s = sbatch_scripts(&spec(l, "--partition=short --time=01:00:00 --mem=4G")).unwrap();
        let lines: Vec<&str> = s.array.lines().collect();
        let pos = |needle: &str| lines.iter().position(|l| l.starts_with(needle)).unwrap_or_else(|| panic!("{needle}"));
        assert_eq!(lines[0], "#!/bin/bash");
        assert!(lines.contains(&"#SBATCH --array=0-4%2"));
        assert!(lines.contains(&"#SBATCH --open-mode=append"));
        assert!(lines.contains(&"#SBATCH --output=/shared/results/tiny/slurm/logs/task-%A_%a.log"));
        assert!(pos("#SBATCH --partition=short --time=01:00:00 --mem=4G") > pos("#SBATCH --cpus-per-task=1"));
        assert_eq!(
            *lines.last().unwrap(),
            "exec /opt/sgdlab/bin/sgdlab study run-task /shared/results/tiny --stride 5"
        );
        assert!(s.array.contains("10 runs over 5 array tasks"), "{}", s.array);
        assert!(s.array.contains("task i runs the plan's runs i, i+5, i+10"));
        assert!(s.merge.contains("#SBATCH --partition=short"));
        assert!(s.merge.ends_with("exec /opt/sgdlab/bin/sgdlab report /shared/results/tiny\n"));
        // Every #SBATCH line comes before the first command (sbatch stops reading them there).
        for script in [&s.array, &s.merge] {
            let first_cmd = script.lines().position(|l| !l.starts_with('#')).unwrap();
            assert!(script.lines().skip(first_cmd).all(|l| !l.starts_with("#SBATCH")));
        }
        // Without a parallelism limit, no %K.
        let mut sp = spec(l, "");
        sp.parallelism = None;
        assert!(sbatch_scripts(&sp).unwrap().array.contains("#SBATCH --array=0-4\n"));
    }

    #[test]
    fn bad_submissions_are_one_line_errors() {
        let l = ArrayLayout::new(4, 1, 1001).unwrap();
        for (args, needle) in [
            ("--array=0-3", "--array is not allowed"),
            ("-d afterok:1", "-d is not allowed"),
            ("--output=x.log", "--output is not allowed"),
            ("--time=1\n#SBATCH --x", "one line"),
        ] {
            let e = sbatch_scripts(&spec(l, args)).unwrap_err().to_string();
            assert!(e.contains(needle) && !e.contains('\n'), "{args}: {e}");
        }
        let mut sp = spec(l, "");
        sp.dir = Path::new("/shared/my results");
        assert!(sbatch_scripts(&sp).unwrap_err().to_string().contains("' '"));
        sp.dir = Path::new("relative/dir");
        assert!(sbatch_scripts(&sp).unwrap_err().to_string().contains("absolute"));
        let mut sp = spec(l, "");
        sp.parallelism = Some(0);
        assert!(sbatch_scripts(&sp).is_err());
    }

    #[test]
    fn the_share_comes_from_slurm_variables() {
        let e = env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_COUNT", "5")]);
        assert_eq!(task_share_from_env(&e, Some(5)).unwrap(), TaskShare { index: 3, count: 5 });
        assert_eq!(task_share_from_env(&e, None).unwrap(), TaskShare { index: 3, count: 5 });
        // Re-submitted alone (sbatch --array=3): the stride keeps the task's own share.
        let alone =
            env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "3"), ("SLURM_ARRAY_TASK_COUNT", "1")]);
        assert_eq!(task_share_from_env(&alone, Some(5)).unwrap(), TaskShare { index: 3, count: 5 });
        assert_eq!(task_share_from_env(&alone, None).unwrap(), TaskShare { index: 0, count: 1 });
        let outside = task_share_from_env(&env(&[]), Some(5)).unwrap_err().to_string();
        assert!(outside.contains("not inside a Slurm array task"), "{outside}");
        assert!(task_share_from_env(&e, Some(3)).unwrap_err().to_string().contains("outside"));
        assert!(task_share_from_env(&env(&[("SLURM_ARRAY_TASK_ID", "x")]), Some(3)).is_err());
        assert_eq!(cpus_from_env(&env(&[])).unwrap(), 1);
        assert_eq!(cpus_from_env(&env(&[("SLURM_CPUS_PER_TASK", "")])).unwrap(), 1);
        assert_eq!(cpus_from_env(&env(&[("SLURM_CPUS_PER_TASK", "4")])).unwrap(), 4);
        assert!(cpus_from_env(&env(&[("SLURM_CPUS_PER_TASK", "0")])).is_err());
    }

    #[test]
    fn sbatch_and_scontrol_output_is_read() {
        assert_eq!(parse_job_id("1234\n").unwrap(), "1234");
        assert_eq!(parse_job_id("77;cluster-a\n").unwrap(), "77");
        assert!(parse_job_id("sbatch: error: Batch job submission failed").is_err());
        let cfg = "MailProg                = /bin/mail\nMaxArraySize            = 40001\nMaxJobCount = 10000\n";
        assert_eq!(parse_max_array_size(cfg), Some(40001));
        assert_eq!(parse_max_array_size("MaxJobCount = 1\n"), None);
    }
}
