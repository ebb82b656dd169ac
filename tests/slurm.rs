//! A study's plan as a Slurm job array.
//!
//! Everywhere: `study run-task` refuses to run outside Slurm in one line; a plan run share by
//! share (as array tasks would, with Slurm's variables set by hand) gives `study status` its
//! missing runs, an incomplete verdict while runs are missing and, once complete, the verdict
//! file of a local `study run` byte for byte; SIGTERM checkpoints the running run, which the
//! next task resumes (one segment more); `submit --dry-run` writes the scripts.
//!
//! On a real Slurm (a one-node cluster that `.ci/slurm/setup.sh start` starts; `.ci/run` sets
//! SGDLAB_SLURM_TEST=1 and SLURM_CONF): the CI-sized study `tests/slurm/batch-sharpness-ci.toml`
//! (10 runs) is submitted as an array of 5 tasks with parallelism 2; task 0 is cancelled during
//! its second run (`scancel`) and requeued, task 1 gets SIGUSR1 as before a time limit (it
//! checkpoints and requeues itself); after the merge job, the verdict equals a local `study run`
//! byte for byte, every run's metrics equal the local run's, and no run was done twice.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CI_STUDY: &str = include_str!("slurm/batch-sharpness-ci.toml");

fn sgdlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sgdlab"))
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(path: &Path) -> Value {
    let t = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The plan's run ids, in plan order.
fn run_ids(study_dir: &Path) -> Vec<String> {
    let plan = json(&study_dir.join("plan.json"));
    plan["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

fn record(study_dir: &Path, id: &str) -> Option<Value> {
    let p = study_dir.join("runs").join(id).join("record.json");
    p.exists().then(|| json(&p))
}

fn status_of(study_dir: &Path, id: &str) -> String {
    record(study_dir, id).map_or("none".into(), |r| r["status"].as_str().unwrap().to_string())
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < timeout, "timed out after {:.0} s waiting for {what}", timeout.as_secs_f64());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes `spec` to `dir/study.toml` and runs it locally (`study run`, two jobs); returns the
/// spec's path and the study directory.
fn local_run(dir: &Path, spec: &str, quick: bool) -> (PathBuf, PathBuf) {
    let path = dir.join("study.toml");
    std::fs::write(&path, spec).unwrap();
    let out = dir.join("local");
    let mut c = sgdlab();
    c.args(["study", "run"]).arg(&path).arg("--out").arg(&out).args(["--jobs", "2", "--quiet"]);
    if quick {
        c.arg("--quick");
    }
    ok(c.output().unwrap(), "study run");
    (path, out.join(if quick { "batch-sharpness-ci-quick" } else { "batch-sharpness-ci" }))
}

/// `study run-task DIR` as array task `task` (Slurm's variables set by hand).
fn run_task(dir: &Path, task: usize, stride: usize) -> Command {
    let mut c = sgdlab();
    c.args(["study", "run-task"]).arg(dir).args(["--stride", &stride.to_string()]);
    c.env("SLURM_ARRAY_TASK_ID", task.to_string()).env("SLURM_CPUS_PER_TASK", "1").env_remove("SLURM_JOB_ID");
    c
}

#[test]
fn run_task_outside_slurm_says_so_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let out = sgdlab().args(["study", "run-task"]).arg(d.path()).env_remove("SLURM_ARRAY_TASK_ID").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("not inside a Slurm array task") && err.contains("SLURM_ARRAY_TASK_ID"), "{err}");
}

#[test]
fn shares_of_a_plan_merge_into_the_verdict_of_a_local_run() {
    let t = tempfile::tempdir().unwrap();
    let (spec, local) = local_run(t.path(), CI_STUDY, true);

    // Freeze the plan and write the scripts without Slurm.
    let out = t.path().join("slurm");
    let text = ok(
        sgdlab()
            .args(["study", "submit"])
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .args([
                "--quick",
                "--dry-run",
                "--array-parallelism",
                "2",
                "--runs-per-task",
                "3",
                "--slurm-args",
                "--partition=short --time=00:10:00",
            ])
            .output()
            .unwrap(),
        "study submit --dry-run",
    );
    let dir = std::fs::canonicalize(out.join("batch-sharpness-ci-quick")).unwrap();
    assert!(text.contains("6 runs over 2 array tasks (2 at a time)"), "{text}");
    assert!(text.contains("not submitted"), "{text}");
    let array = std::fs::read_to_string(dir.join("slurm/array.sbatch")).unwrap();
    assert!(array.contains("#SBATCH --array=0-1%2\n"), "{array}");
    assert!(array.contains("#SBATCH --partition=short --time=00:10:00\n"), "{array}");
    assert!(array.ends_with(&format!("study run-task {} --stride 2\n", dir.display())), "{array}");
    assert!(dir.join("slurm/merge.sbatch").exists() && dir.join("slurm/logs").is_dir());
    assert!(!dir.join("slurm/submissions.jsonl").exists());
    // A directory holding another plan is refused, as `study run` refuses it.
    let other = t.path().join("other.toml");
    std::fs::write(&other, CI_STUDY.replace("base.budget.epochs=3", "base.budget.epochs=4")).unwrap();
    let o =
        sgdlab().args(["study", "submit", "--quick", "--dry-run"]).arg(&other).arg("--out").arg(&out).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("different plan"));

    let ids = run_ids(&dir);
    let status = |dir: &Path| ok(sgdlab().args(["study", "status"]).arg(dir).output().unwrap(), "study status");
    let s = status(&dir);
    assert!(s.starts_with("batch-sharpness-ci: 6 planned, 0 completed, 0 diverged, 0 failed, 6 not finished"), "{s}");
    // Task 1 of 2 runs the plan's runs 1, 3, 5.
    ok(run_task(&dir, 1, 2).output().unwrap(), "run-task 1");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(status_of(&dir, id), if i % 2 == 1 { "completed" } else { "none" }, "run {i}");
    }
    let s = status(&dir);
    assert!(s.starts_with("batch-sharpness-ci: 6 planned, 3 completed, 0 diverged, 0 failed, 3 not finished"), "{s}");
    for i in [0, 2, 4] {
        assert!(s.contains(&format!("not finished: {} (run {i}): not started", ids[i])), "{s}");
    }
    // The verdict of the finished runs is marked incomplete, and so is the report.
    let r = sgdlab().arg("report").arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    ok(r, "report");
    assert!(err.contains("incomplete (3 of 6 runs not finished"), "{err}");
    let v = json(&dir.join("verdict.json"));
    assert_eq!(v["complete"], false);
    assert_eq!(v["runs"]["missing"], 3);
    let missing: Vec<&str> = v["per_run"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "missing")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(missing, vec![ids[0].as_str(), ids[2].as_str(), ids[4].as_str()]);
    assert!(std::fs::read_to_string(dir.join("report.html")).unwrap().contains("Incomplete study."));
    // Task 1 again: nothing to do, no record touched.
    let before = std::fs::read(dir.join("runs").join(&ids[1]).join("record.json")).unwrap();
    ok(run_task(&dir, 1, 2).output().unwrap(), "run-task 1 again");
    assert_eq!(before, std::fs::read(dir.join("runs").join(&ids[1]).join("record.json")).unwrap());
    // Task 0, then the merge: the local verdict, byte for byte, and no incomplete mark.
    ok(run_task(&dir, 0, 2).output().unwrap(), "run-task 0");
    ok(sgdlab().arg("report").arg(&dir).output().unwrap(), "report");
    assert_eq!(std::fs::read(local.join("verdict.json")).unwrap(), std::fs::read(dir.join("verdict.json")).unwrap());
    assert!(!std::fs::read_to_string(dir.join("report.html")).unwrap().contains("Incomplete study."));
    let s = status(&dir);
    assert_eq!(s, "batch-sharpness-ci: 6 planned, 6 completed, 0 diverged, 0 failed, 0 not finished\n");
    let sj: Value = serde_json::from_str(&ok(
        sgdlab().args(["study", "status", "--json"]).arg(&dir).output().unwrap(),
        "status --json",
    ))
    .unwrap();
    assert_eq!((sj["runs"]["planned"].as_u64(), sj["runs"]["completed"].as_u64()), (Some(6), Some(6)));
}

#[test]
fn sigterm_checkpoints_the_running_run_and_the_next_task_resumes_it() {
    let t = tempfile::tempdir().unwrap();
    // One run of a few seconds (batch size 32, 25,000 steps), to be stopped in the middle.
    let one = CI_STUDY.replace("seeds = [0, 1, 2, 3, 4]", "seeds = [0]").replace("values = [32, 400]", "values = [32]");
    let (spec, local) = local_run(t.path(), &one, false);
    let out = t.path().join("s");
    ok(
        sgdlab().args(["study", "submit"]).arg(&spec).arg("--out").arg(&out).arg("--dry-run").output().unwrap(),
        "submit",
    );
    let dir = out.join("batch-sharpness-ci");
    let id = run_ids(&dir).remove(0);
    let child = run_task(&dir, 0, 1).stderr(Stdio::piped()).spawn().unwrap();
    wait_until("the run to start", Duration::from_secs(60), || status_of(&dir, &id) == "running");
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(err.contains("stopped by signal 15"), "{err}");
    let rec = record(&dir, &id).unwrap();
    assert_eq!(rec["status"], "interrupted");
    let (step, total) = (rec["steps_completed"].as_u64().unwrap(), rec["total_steps"].as_u64().unwrap());
    assert!(step > 0 && step < total, "{rec}");
    assert_eq!(rec["segments"], 1);
    assert!(dir.join("runs").join(&id).join(format!("checkpoints/step-{step}.safetensors")).exists());
    let s = ok(sgdlab().args(["study", "status"]).arg(&dir).output().unwrap(), "status");
    assert!(s.contains(&format!("interrupted at step {step} of {total}, segment 1")), "{s}");
    // The next task resumes it: two segments, the same metrics as an uninterrupted run.
    ok(run_task(&dir, 0, 1).output().unwrap(), "run-task again");
    let rec = record(&dir, &id).unwrap();
    assert_eq!((rec["status"].as_str(), rec["segments"].as_u64()), (Some("completed"), Some(2)));
    let m = |d: &Path| std::fs::read(d.join("runs").join(&id).join("metrics.jsonl")).unwrap();
    assert_eq!(m(&dir), m(&local), "metrics after resume differ from an uninterrupted run");
}

// ---- On a real Slurm -------------------------------------------------------------------------

fn slurm(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    ok(out, &format!("{cmd} {}", args.join(" ")))
}

/// `JobState` of a job or array task (`J` or `J_T`), from `scontrol show job` (no `sacct`
/// without slurmdbd).
fn job_state(job: &str) -> String {
    let out = slurm("scontrol", &["show", "job", "-o", job]);
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or_else(|| panic!("no JobState for {job}: {out}"))
        .to_string()
}

/// The processes of an array task's batch step (`scontrol listpids` by the task's own job id).
fn batch_pids(task: &str) -> Vec<String> {
    let out = slurm("scontrol", &["show", "job", "-o", task]);
    let own =
        out.split_whitespace().find_map(|w| w.strip_prefix("JobId=")).unwrap_or_else(|| panic!("no JobId: {out}"));
    let pids = slurm("scontrol", &["listpids", own]);
    pids.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[1] == own && f[2] == "batch").then(|| f[0].to_string())
        })
        .collect()
}

/// A requeued task waits about two minutes (its BeginTime) unless told to start now.
fn start_now(task: &str) {
    wait_until(&format!("{task} to be pending after its requeue"), Duration::from_secs(60), || {
        job_state(task) == "PENDING"
    });
    slurm("scontrol", &["update", &format!("JobId={task}"), "StartTime=now"]);
}

fn running_mid_run(dir: &Path, ids: &[String], first: usize, second: usize) -> bool {
    status_of(dir, &ids[first]) == "completed" && status_of(dir, &ids[second]) == "running"
}

#[test]
fn a_study_through_slurm_gives_the_local_verdict_and_does_no_run_twice() {
    if std::env::var("SGDLAB_SLURM_TEST").as_deref() != Ok("1") {
        eprintln!("not run: set SGDLAB_SLURM_TEST=1 with a cluster up (.ci/slurm/setup.sh start; .ci/run does both)");
        return;
    }
    let t0 = Instant::now();
    let t = tempfile::tempdir().unwrap();
    let (spec, local) = local_run(t.path(), CI_STUDY, false);
    let t_local = t0.elapsed().as_secs_f64();

    let out_dir = t.path().join("slurm");
    let text = ok(
        sgdlab()
            .args(["study", "submit"])
            .arg(&spec)
            .arg("--out")
            .arg(&out_dir)
            .args(["--array-parallelism", "2", "--runs-per-task", "2"])
            .output()
            .unwrap(),
        "study submit",
    );
    eprintln!("{text}");
    let dir = std::fs::canonicalize(out_dir.join("batch-sharpness-ci")).unwrap();
    let sub = json(&dir.join("slurm/submissions.jsonl"));
    let (array, merge) =
        (sub["array_job"].as_str().unwrap().to_string(), sub["merge_job"].as_str().unwrap().to_string());
    assert_eq!((sub["runs"].as_u64(), sub["tasks"].as_u64()), (Some(10), Some(5)));
    assert!(text.contains(&format!("squeue -j {array},{merge}")), "{text}");
    let ids = run_ids(&dir);
    let (task0, task1) = (format!("{array}_0"), format!("{array}_1"));

    // Tasks 0 and 1 run the plan's runs (0, 5) and (1, 6): interrupt both during their second
    // run (batch size 400, the longer one), after their first has completed.
    wait_until("tasks 0 and 1 in their second runs", Duration::from_secs(120), || {
        running_mid_run(&dir, &ids, 0, 5) && running_mid_run(&dir, &ids, 1, 6)
    });
    std::thread::sleep(Duration::from_millis(800));
    let first_records: Vec<Vec<u8>> =
        [0, 1].iter().map(|&i| std::fs::read(dir.join("runs").join(&ids[i]).join("record.json")).unwrap()).collect();
    // SIGUSR1 to task 1's batch shell, as `--signal=B:USR1@120` sends it before the time limit
    // (the script execs sgdlab, so the batch shell is sgdlab). Not with `scancel --batch
    // --signal=USR1`: on Slurm 22.05, while other tasks of the array are pending, it delivers
    // the signal but answers "Job can not be altered now, try again later" and retries for
    // over a minute.
    let pids = batch_pids(&task1);
    assert_eq!(pids.len(), 1, "task 1's batch step should be one process (exec): {pids:?}");
    assert!(Command::new("kill").args(["-USR1", &pids[0]]).status().unwrap().success());
    slurm("scancel", &[&task0]);
    wait_until("task 0 cancelled", Duration::from_secs(60), || job_state(&task0) == "CANCELLED");
    // Task 1 checkpoints and requeues itself; task 0 is requeued by hand.
    slurm("scontrol", &["requeue", &task0]);
    let t_interrupt = t0.elapsed().as_secs_f64();
    for i in [5, 6] {
        wait_until(&format!("run {i} interrupted"), Duration::from_secs(60), || {
            status_of(&dir, &ids[i]) == "interrupted"
        });
        let rec = record(&dir, &ids[i]).unwrap();
        let (step, total) = (rec["steps_completed"].as_u64().unwrap(), rec["total_steps"].as_u64().unwrap());
        assert!(step > 0 && step < total, "run {i} was not stopped mid-run: {rec}");
        assert_eq!(rec["segments"], 1);
        assert!(dir.join("runs").join(&ids[i]).join(format!("checkpoints/step-{step}.safetensors")).exists());
    }
    start_now(&task0);
    start_now(&task1);

    // The merge job runs after every task has ended.
    wait_until("the merge job", Duration::from_secs(240), || {
        let s = job_state(&merge);
        assert!(
            !["FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"].contains(&s.as_str()),
            "merge job {s}"
        );
        s == "COMPLETED"
    });
    let t_merge = t0.elapsed().as_secs_f64();
    for k in 0..5 {
        assert_eq!(job_state(&format!("{array}_{k}")), "COMPLETED", "task {k}");
    }

    // The local verdict, byte for byte; every run's metrics as in the local run.
    assert_eq!(
        std::fs::read_to_string(local.join("verdict.json")).unwrap(),
        std::fs::read_to_string(dir.join("verdict.json")).unwrap(),
        "verdict.json through Slurm differs from the local run's"
    );
    for id in &ids {
        let m = |d: &Path| std::fs::read(d.join("runs").join(id).join("metrics.jsonl")).unwrap();
        assert_eq!(m(&dir), m(&local), "metrics of run {id} differ from the local run's");
    }
    assert!(dir.join("report.html").exists());
    // No run done twice: one segment per run, two for the two interrupted ones; the first runs
    // of the requeued tasks were skipped (their records untouched).
    for (i, id) in ids.iter().enumerate() {
        let rec = record(&dir, id).unwrap();
        assert_eq!(rec["status"], "completed", "run {i}");
        assert_eq!(rec["segments"], if i == 5 || i == 6 { 2 } else { 1 }, "run {i}: {rec}");
    }
    for (k, &i) in [0, 1].iter().enumerate() {
        assert_eq!(first_records[k], std::fs::read(dir.join("runs").join(&ids[i]).join("record.json")).unwrap());
    }
    let s = slurm(env!("CARGO_BIN_EXE_sgdlab"), &["study", "status", dir.to_str().unwrap()]);
    assert_eq!(s, "batch-sharpness-ci: 10 planned, 10 completed, 0 diverged, 0 failed, 0 not finished\n");
    // The logs of requeued tasks are appended to, not overwritten.
    let log = |k: usize| std::fs::read_to_string(dir.join(format!("slurm/logs/task-{array}_{k}.log"))).unwrap();
    let (l0, l1) = (log(0), log(1));
    assert!(
        l0.contains("start (restart 0)") && l0.contains("stopped by signal 15") && l0.contains("start (restart 1)"),
        "{l0}"
    );
    assert!(l1.contains("stopped by signal 10") && l1.contains("requeued") && l1.contains("start (restart 1)"), "{l1}");
    let merged = std::fs::read_dir(dir.join("slurm/logs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p: &PathBuf| p.file_name().unwrap().to_string_lossy().starts_with("merge-"))
        .unwrap();
    let ml = std::fs::read_to_string(&merged).unwrap();
    assert!(ml.contains("10 completed") && ml.contains("report.html"), "{ml}");
    eprintln!(
        "slurm test: local run {t_local:.1} s; submit to interruption {:.1} s; to the merge {:.1} s; total {:.1} s",
        t_interrupt - t_local,
        t_merge - t_local,
        t0.elapsed().as_secs_f64()
    );
}
