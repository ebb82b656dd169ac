//! The robustness audit of issue 12 as tests against the release binary: two real processes on
//! one run directory, kill -9 at random points then resume, SIGTERM/SIGUSR1, a full disk (on a
//! small tmpfs where the test may mount one), sizes checked before allocating, non-finite inputs
//! refused where they enter, and one-line errors.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sgdlab"))
}

fn sgdlab(args: &[&str]) -> Output {
    bin().args(args).output().expect("run sgdlab")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A run of a few seconds with a checkpoint every 40 steps: MLP 40-64-10 on 2,000 MNIST-1D
/// examples (1,600 to train on), SGD with momentum, batch 16 (100 steps per epoch).
const SPEC: &str = r#"seed = 4
model = "mlp:40-64-10:relu"
data = "mnist1d:n=2000"
[optimizer]
name = "sgd"
lr = 0.05
batch_size = 16
momentum = 0.9
[budget]
steps = 1500
[eval]
every = 100
log_every = 10
[checkpoint]
every = 40
keep = 2
"#;

fn write_spec(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn train_args<'a>(spec: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--threads", "1", "train", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"];
    v.extend_from_slice(extra);
    v
}

fn spawn_train(spec: &Path, out: &Path) -> Child {
    bin().args(train_args(spec, out, &[])).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn")
}

fn record(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("record.json")).unwrap()).unwrap()
}

/// Waits until `dir/metrics.jsonl` has a row at or beyond `step` (the run is under way).
fn wait_for_step(dir: &Path, step: u64, child: &mut Child) {
    let t0 = Instant::now();
    loop {
        let reached = std::fs::read_to_string(dir.join("metrics.jsonl")).ok().is_some_and(|t| {
            t.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).any(|v| v["step"].as_u64() >= Some(step))
        });
        if reached {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before step {step}");
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress to step {step}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(child: &mut Child) {
    // SAFETY: sending a signal to a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// The uninterrupted reference run of `SPEC` (its metrics and final tensors).
fn reference(tmp: &Path) -> (String, Vec<u8>) {
    let spec = write_spec(tmp, SPEC);
    let out = tmp.join("reference");
    let o = sgdlab(&train_args(&spec, &out, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    (std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(), final_tensors(&out))
}

/// The raw tensor bytes of `final.safetensors` (the header holds wall-clock-free metadata only,
/// but compare the data to be sure).
fn final_tensors(dir: &Path) -> Vec<u8> {
    let ck = sgdlab_nn::load_checkpoint::<f32>(&dir.join("final.safetensors"), None).unwrap();
    ck.params.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn assert_same_as_reference(dir: &Path, reference: &(String, Vec<u8>)) {
    assert!(sgdlab_train::inspect_run(dir).is_finished(), "{:?}", sgdlab_train::inspect_run(dir));
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), reference.0.lines().count(), "metric rows");
    assert!(metrics == reference.0, "metrics.jsonl differs from the uninterrupted run's");
    assert!(final_tensors(dir) == reference.1, "final parameters differ from the uninterrupted run's");
}

/// Audit 1: two `train --out D` at once. The second fails at once naming the first's pid; after
/// kill -9 of the first, a new process resumes and ends with the uninterrupted run's results.
#[test]
fn two_processes_on_one_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = reference(tmp.path());
    let spec = write_spec(tmp.path(), SPEC);
    let out = tmp.path().join("shared");
    let mut first = spawn_train(&spec, &out);
    wait_for_step(&out, 100, &mut first);
    let t0 = Instant::now();
    let second = sgdlab(&train_args(&spec, &out, &[]));
    assert_eq!(second.status.code(), Some(1));
    let e = stderr(&second);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains(&format!("pid {}", first.id())) && e.contains("in use by another sgdlab process"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5), "the second process must fail at once");
    assert!(first.try_wait().unwrap().is_none(), "the first run goes on");
    kill9(&mut first);
    assert_eq!(record(&out)["status"], "running", "kill -9 leaves the record as it was");
    let o = sgdlab(&train_args(&spec, &out, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_as_reference(&out, &reference);
}

/// Audit 8: kill -9 of `sgdlab train` at random points (seeded: a random step to reach, then a
/// random delay of up to 40 ms, so kills land anywhere between checkpoints), resumed each time,
/// ends with the same metrics and parameters as an uninterrupted run.
#[test]
fn kill_9_at_random_points_then_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = reference(tmp.path());
    let spec = write_spec(tmp.path(), SPEC);
    let out = tmp.path().join("killed");
    let mut rng = sgdlab_linalg::RngStream::new(12).child("kill-points").rng();
    let mut steps: Vec<u64> = (0..5).map(|_| rand::RngExt::random_range(&mut rng, 50..1450)).collect();
    steps.sort_unstable();
    for &at in &steps {
        let mut child = spawn_train(&spec, &out);
        wait_for_step(&out, at, &mut child);
        std::thread::sleep(Duration::from_millis(rand::RngExt::random_range(&mut rng, 0..40)));
        kill9(&mut child);
    }
    let o = sgdlab(&train_args(&spec, &out, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_as_reference(&out, &reference);
}

/// Audit 6: SIGTERM and SIGUSR1 stop a run like Ctrl-C: a checkpoint, record "interrupted",
/// exit 128 + signal; the run then resumes to the uninterrupted result.
#[test]
fn sigterm_and_sigusr1_checkpoint_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = reference(tmp.path());
    let spec = write_spec(tmp.path(), SPEC);
    for (sig, code, at) in [(libc::SIGTERM, 143, 300), (libc::SIGUSR1, 138, 700)] {
        let out = tmp.path().join("signalled");
        let mut child = spawn_train(&spec, &out);
        wait_for_step(&out, at, &mut child);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "signal {sig}");
        let rec = record(&out);
        assert_eq!(rec["status"], "interrupted");
        let step = rec["steps_completed"].as_u64().unwrap();
        assert!(out.join(format!("checkpoints/step-{step}.safetensors")).exists(), "a checkpoint at step {step}");
    }
    let out = tmp.path().join("signalled");
    let o = sgdlab(&train_args(&spec, &out, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_as_reference(&out, &reference);
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop; `None` where this process
/// may not mount (not root, no CAP_SYS_ADMIN, not Linux).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", at.to_str()?])
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), self.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Audit 2 and 4: a full disk fails the run with a one-line error and leaves record "failed"
/// (not "running"); once space is freed the same command resumes to the uninterrupted result.
#[test]
fn a_full_disk_fails_the_run_then_it_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&tmp.path().join("small"), "160k") else {
        println!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let reference = reference(tmp.path());
    // Every checkpoint kept (keep = 0): about 24 kB each, so the disk fills within a few hundred steps.
    let spec = write_spec(tmp.path(), &SPEC.replace("keep = 2", "keep = 0"));
    let reference_keep0 = {
        let out = tmp.path().join("reference-keep0");
        let o = sgdlab(&train_args(&spec, &out, &[]));
        assert!(o.status.success(), "{}", stderr(&o));
        (std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(), final_tensors(&out))
    };
    assert_eq!(reference_keep0.1, reference.1, "keeping checkpoints does not change results");
    let out = fs.0.join("run");
    let o = sgdlab(&train_args(&spec, &out, &[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("No space left on device"), "{e}");
    assert_eq!(e.matches("No space left on device").count(), 1, "said once: {e}");
    let rec = record(&out);
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(rec["message"].as_str().unwrap().contains("No space left"), "{rec}");
    fs.resize("20m");
    let o = sgdlab(&train_args(&spec, &out, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_as_reference(&out, &reference_keep0);
}

/// Audit 1: a record claiming completion over metrics that disagree (here: cut short) is
/// detected and the run redone, with a warning.
#[test]
fn a_completed_record_over_short_metrics_is_redone() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = reference(tmp.path());
    let spec = write_spec(tmp.path(), SPEC);
    let out = tmp.path().join("reference");
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let half: Vec<&str> = text.lines().take(text.lines().count() / 2).collect();
    std::fs::write(out.join("metrics.jsonl"), half.join("\n") + "\n").unwrap();
    assert!(matches!(sgdlab_train::inspect_run(&out), sgdlab_train::RunState::Inconsistent { .. }));
    let o = sgdlab(&train_args(&spec, &out, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("warning:") && e.contains("rows, the record says") && e.contains("redone"), "{e}");
    assert_same_as_reference(&out, &reference);
}

fn assert_one_line_error(o: &Output, needles: &[&str]) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let e = stderr(o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    for n in needles {
        assert!(e.contains(n), "missing '{n}' in: {e}");
    }
}

/// Audit 3: sizes checked before any allocation (no abort, no "capacity overflow", no wrap).
#[test]
fn sizes_are_checked_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let o = sgdlab(&["model", "mlp:1-9223372036854775808-1-1:relu:nobias"]);
    assert_one_line_error(&o, &["parameter count overflows"]);
    let o = sgdlab(&["data", "info", "mnist1d:n=1000000000000"]);
    assert_one_line_error(&o, &["mnist1d with 1000000000000 examples", "needs about", "TB"]);
    for generator in
        ["lms:n=1000000000000", "gaussian-mixture:n=1000000000000", "teacher:n=1000000000000", "sines:n=1000000000000"]
    {
        let o = sgdlab(&["data", "info", generator]);
        assert_one_line_error(&o, &["needs about"]);
    }
    let spec = write_spec(tmp.path(), SPEC);
    let out = tmp.path().join("big");
    let o = sgdlab(&train_args(&spec, &out, &["--set", "model=mlp:40-100000-100000-10:relu"]));
    assert_one_line_error(&o, &["training mlp:40-100000-100000-10:relu (10005200010 parameters, f32)", "needs about"]);
    // The same run under an explicit limit, and a small one that fits in a large limit.
    let o = sgdlab(&[&["--max-memory", "1M"][..], &train_args(&spec, &tmp.path().join("small"), &[])].concat());
    assert_one_line_error(&o, &["needs about", "the --max-memory limit of 1.05 MB"]);
    let o = sgdlab(&["--max-memory", "lots", "model", "mlp:4-4:relu"]);
    assert!(!o.status.success() && stderr(&o).contains("'lots' is not a size"), "{}", stderr(&o));
}

/// A checkpoint of `arch` at initialisation (a run of 0 steps).
fn init_checkpoint(tmp: &Path, arch: &str) -> PathBuf {
    let spec = write_spec(tmp, SPEC);
    let out = tmp.join(format!("init-{}", arch.replace(':', "_")));
    let o = sgdlab(&train_args(&spec, &out, &["--set", &format!("model={arch}"), "--set", "budget.steps=0"]));
    assert!(o.status.success(), "{}", stderr(&o));
    out.join("final.safetensors")
}

/// Audit 3 and 4 on probes: the exact spectrum of 105k parameters is refused by its memory
/// estimate, not an allocation abort; more eigenvalues than Lanczos steps is an error.
#[test]
fn probes_refuse_what_cannot_be_computed() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = init_checkpoint(tmp.path(), "mlp:40-1000-65-10:relu");
    let c = ck.to_str().unwrap();
    let data = "mnist1d:n=2000";
    let o = sgdlab(&[
        "probe",
        "hessian",
        "--model",
        c,
        "--data",
        data,
        "--samples",
        "50",
        "--exact",
        "--max-params",
        "200000",
    ]);
    assert_one_line_error(&o, &["exact spectrum of a 106725 x 106725 operator", "needs about"]);
    let o = sgdlab(&[
        "probe",
        "hessian",
        "--model",
        c,
        "--data",
        data,
        "--samples",
        "50",
        "--top-k",
        "300",
        "--max-iters",
        "200",
    ]);
    assert_one_line_error(&o, &["top_k = 300", "needs max_iters >= 300", "got 200"]);
}

/// Audit 4: non-finite values are refused where they enter.
#[test]
fn non_finite_inputs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), SPEC);
    let out = tmp.path().join("r");
    for (set, key) in [
        ("init.scale=nan", "init.scale"),
        ("optimizer.lr=inf", "optimizer.lr"),
        ("optimizer.momentum=nan", "optimizer.momentum"),
        ("regularizer.l2=nan", "regularizer.l2"),
    ] {
        let o = sgdlab(&train_args(&spec, &out, &["--set", set]));
        assert_one_line_error(&o, &[key, "run.toml"]);
        assert!(!out.join("record.json").exists(), "{set}: nothing is recorded for a rejected spec");
    }
    let o = sgdlab(&train_args(&spec, &out, &["--set", "optimizer.batch_size=100000"]));
    assert_one_line_error(&o, &["optimizer.batch_size = 100000", "1600 examples of the train split"]);
    // A checkpoint holding a NaN: refused naming the tensor and index, inspectable on request.
    let ck = init_checkpoint(tmp.path(), "mlp:40-64-10:relu");
    let model = sgdlab_nn::Model::new(&"mlp:40-64-10:relu".parse().unwrap());
    let mut p = sgdlab_nn::load_checkpoint::<f32>(&ck, None).unwrap().params;
    p.as_mut_slice()[3] = f32::NAN;
    let bad = tmp.path().join("nan.safetensors");
    sgdlab_nn::save_checkpoint(&bad, &model, &p, &[]).unwrap();
    let b = bad.to_str().unwrap();
    let o = sgdlab(&["model", "--checkpoint", b]);
    assert_one_line_error(&o, &["nan.safetensors", "tensor '0.weight'", "at index [0, 3]", "--allow-nonfinite"]);
    let o = sgdlab(&["model", "--checkpoint", b, "--allow-nonfinite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sgdlab(&["probe", "loss", "--model", b, "--data", "mnist1d:n=2000"]);
    assert_one_line_error(&o, &["tensor '0.weight'"]);
}

/// Audit 4: a diverged run's final metrics are not its step-0 evaluation.
#[test]
fn a_diverged_run_has_no_final_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), SPEC);
    let out = tmp.path().join("d");
    let o = sgdlab(&train_args(&spec, &out, &["--set", "optimizer.lr=1e7", "--set", "optimizer.momentum=0.0"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let rec = record(&out);
    assert_eq!(rec["status"], "diverged");
    assert_eq!(rec["final_metrics"], serde_json::json!({}), "{rec}");
    assert!(rec["message"].as_str().unwrap().contains("the last evaluation before it (step 0)"), "{rec}");
    assert!(sgdlab_train::inspect_run(&out).is_finished());
}

/// Audit 6: an error about a missing file says the reason once.
#[test]
fn missing_files_say_the_reason_once() {
    let o = sgdlab(&["model", "--checkpoint", "/nonexistent/dir/x.safetensors"]);
    assert_one_line_error(&o, &["x.safetensors"]);
    assert_eq!(stderr(&o).matches("No such file or directory").count(), 1, "{}", stderr(&o));
    let o = sgdlab(&["train", "/nonexistent/spec.toml"]);
    assert_one_line_error(&o, &["spec.toml"]);
    assert_eq!(stderr(&o).matches("No such file or directory").count(), 1, "{}", stderr(&o));
}

/// The wall-clock checkpoint schedule study runners turn on.
#[test]
fn checkpoint_every_seconds_is_accepted_and_hash_neutral() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), SPEC);
    let a = sgdlab_train::RunSpec::load(&spec, &[]).unwrap();
    let b = sgdlab_train::RunSpec::load(&spec, &["checkpoint.every_seconds=30".into()]).unwrap();
    assert_eq!(b.checkpoint.every_seconds, 30);
    assert!(!a.to_toml().contains("every_seconds"), "0 is not written, so old specs keep their hashes");
    assert!(b.to_toml().contains("every_seconds = 30"));
}
