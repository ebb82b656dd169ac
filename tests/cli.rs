//! End-to-end tests of the command line: the binary as a user runs it.

use serde_json::{Value, json};
use sgdlab_linalg::RngStream;
use sgdlab_nn::{ArchSpec, DATA_METADATA_KEY, InitSpec, Model, SEED_METADATA_KEY, SPLIT_METADATA_KEY, save_checkpoint};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sgdlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sgdlab")).args(args).output().expect("run sgdlab")
}

fn stdout_json(o: &Output) -> Value {
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        s.trim().lines().count(),
        1,
        "stdout must be one JSON object, got:\n{s}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(s.trim()).unwrap()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_and_help() {
    let o = sgdlab(&["--version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("sgdlab 0."));
    let o = sgdlab(&["--help"]);
    let h = String::from_utf8_lossy(&o.stdout);
    for c in ["reproduce", "train", "probe", "data", "model"] {
        assert!(h.contains(c), "--help lacks {c}");
    }
}

#[test]
fn train_then_probe_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let spec = root().join("examples/mnist1d-sgd.toml");
    let o = sgdlab(&[
        "--threads",
        "1",
        "train",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "data=mnist1d:n=1000",
        "--set",
        "budget.epochs=3",
        "--set",
        "checkpoint.every=50",
        "--json",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec = stdout_json(&o);
    assert_eq!(rec["status"], "completed");
    assert_eq!(rec["total_steps"], 75);
    for f in ["spec.toml", "metrics.jsonl", "final.safetensors", "record.json"] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    let ckpt = out.join("final.safetensors");
    let c = ckpt.to_str().unwrap();
    let o = sgdlab(&["probe", "loss", "--model", c, "--data", "mnist1d:n=1000", "--samples", "200", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    for k in ["loss", "accuracy", "grad_norm", "matvecs"] {
        assert!(v[k].is_number(), "probe loss lacks {k}: {v}");
    }
    let o = sgdlab(&[
        "probe",
        "hessian",
        "--model",
        c,
        "--data",
        "mnist1d:n=1000",
        "--samples",
        "200",
        "--top-k",
        "3",
        "--trace",
        "--probes",
        "10",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    let top: Vec<f64> = v["top_eigenvalues"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(top.len(), 3);
    assert!(top[0] >= top[1] && top[1] >= top[2], "{top:?}");
    assert!(v["trace"]["estimate"].is_number() && v["trace"]["stderr"].is_number());
    // The trace's probes are quadratic forms (second-order forward mode), counted apart from the
    // Lanczos products; --trace-by-products gives the same estimate from HVPs.
    assert_eq!((v["trace"]["quadratic_forms"].as_u64(), v["trace"]["matvecs"].as_u64()), (Some(10), Some(0)));
    assert_eq!(v["quadratic_forms"].as_u64(), Some(10));
    assert!(v["matvecs"].as_u64().unwrap() >= 3);
    let o = sgdlab(&[
        "probe",
        "hessian",
        "--model",
        c,
        "--data",
        "mnist1d:n=1000",
        "--samples",
        "200",
        "--trace",
        "--probes",
        "10",
        "--trace-by-products",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let w = stdout_json(&o);
    assert_eq!((w["trace"]["quadratic_forms"].as_u64(), w["trace"]["matvecs"].as_u64()), (Some(0), Some(10)));
    let (a, b) = (v["trace"]["estimate"].as_f64().unwrap(), w["trace"]["estimate"].as_f64().unwrap());
    assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "trace by forms {a} vs by products {b}");
    // A small model's exact spectrum.
    let small = dir.path().join("small");
    let o = sgdlab(&[
        "train",
        spec.to_str().unwrap(),
        "--out",
        small.to_str().unwrap(),
        "--set",
        "model=mlp:40-8-10:tanh",
        "--set",
        "data=mnist1d:n=1000",
        "--set",
        "budget.epochs=1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sc = small.join("final.safetensors");
    let o = sgdlab(&[
        "probe",
        "hessian",
        "--model",
        sc.to_str().unwrap(),
        "--data",
        "mnist1d:n=1000",
        "--samples",
        "100",
        "--exact",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    assert_eq!(v["eigenvalues"].as_array().unwrap().len(), 40 * 8 + 8 + 8 * 10 + 10);
    // The exact spectrum's trace is its own key; `trace` is the Hutchinson estimate (with --trace).
    assert!(v["near_zero_fraction"].is_number() && v["exact_trace"].is_number() && v["trace"].is_null());
    let o = sgdlab(&[
        "probe",
        "sharpness",
        "--model",
        sc.to_str().unwrap(),
        "--data",
        "mnist1d:n=1000",
        "--samples",
        "100",
        "--steps",
        "3",
        "--json",
    ]);
    assert!(o.status.success());
    assert!(stdout_json(&o)["sharpness"][0]["sharpness"].as_f64().unwrap() >= 0.0);
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "model = \"mlp:40-10:relu\"\ndata = \"mnist1d\"\nfoo = 1\n[optimizer]\nname = \"sgd\"\nlr = 0.1\nbatch_size = 8\n[budget]\nsteps = 3\n").unwrap();
    let o = sgdlab(&["train", bad.to_str().unwrap(), "--out", dir.path().join("r").to_str().unwrap(), "--quiet"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("bad.toml") && e.contains("unknown field `foo`"), "{e}");
    let o = sgdlab(&["probe", "loss", "--model", dir.path().join("missing.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.safetensors"));
    let t = root().join("tests/golden/torch_sequential_bad_shape.safetensors");
    let o = sgdlab(&["model", "--checkpoint", t.to_str().unwrap(), "--arch", "mlp:4-5-5-3:relu"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("'2.weight'") && e.trim().lines().count() == 1, "{e}");
}

#[test]
fn a_diverging_run_exits_with_status_3() {
    let dir = tempfile::tempdir().unwrap();
    let spec = root().join("examples/mnist1d-sgd.toml");
    let out = dir.path().join("d");
    let o = sgdlab(&[
        "train",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "optimizer.lr=1e7",
        "--set",
        "budget.epochs=1",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(out.join("record.json")).unwrap()).unwrap();
    assert_eq!(rec["status"], "diverged");
    assert!(rec["diverged_at_step"].as_u64().unwrap() >= 1);
}

#[test]
fn data_info_json_has_the_documented_keys() {
    let o = sgdlab(&["data", "info", "mnist1d", "--json"]);
    assert!(o.status.success());
    let v = stdout_json(&o);
    assert_eq!(v["splits"]["train"]["n"], 4000);
    assert_eq!(v["splits"]["test"]["n"], 1000);
    assert_eq!(v["splits"]["train"]["classes"], 10);
    assert_eq!(v["splits"]["train"]["class_counts"].as_array().unwrap().len(), 10);
}

#[test]
fn study_list_and_plan() {
    let o = sgdlab(&["study", "list"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for name in ["batch-sharpness", "rank-depth", "rank-depth-completion"] {
        assert!(s.contains(name), "{s}");
    }
    let o = sgdlab(&["study", "plan", "batch-sharpness", "--json"]);
    assert!(o.status.success());
    let plan = stdout_json(&o);
    assert_eq!(plan["runs"].as_array().unwrap().len(), 10);
    let o = sgdlab(&["study", "plan", "no-such-study"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("neither a built-in study"));
}

/// PyTorch models as saved: `print(model)` text with --input-shape and the state_dict, wherever
/// --arch works (model, probe), and each misuse a one-line error.
#[test]
fn pytorch_cnn_loads_from_its_print_text() {
    let g = root().join("tests/golden");
    let ck = g.join("torch_lenet5.safetensors");
    let txt = g.join("torch_lenet5.txt");
    let (ck, txt) = (ck.to_str().unwrap(), txt.to_str().unwrap());
    let o = sgdlab(&["model", "--checkpoint", ck, "--arch-file", txt, "--input-shape", "1,28,28", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = stdout_json(&o);
    assert_eq!(j["num_params"].as_u64(), Some(61_706));
    assert!(j["arch"].as_str().unwrap().starts_with("seq:1x28x28:conv2d(6,5,padding=2)-relu-maxpool2d(2)"), "{j}");
    let mnist = root().join("../shared/data/mnist");
    let data = format!(
        "idx:{},{}",
        mnist.join("t10k-images-idx3-ubyte.gz").display(),
        mnist.join("t10k-labels-idx1-ubyte.gz").display()
    );
    let o = sgdlab(&[
        "probe",
        "loss",
        "--model",
        ck,
        "--arch-file",
        txt,
        "--input-shape",
        "1x28x28",
        "--data",
        &data,
        "--samples",
        "64",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one_line_error = |args: &[&str], what: &str| {
        let o = sgdlab(args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.trim().lines().count() == 1 && e.contains(what), "{args:?}: {e}");
    };
    one_line_error(&["model", "--checkpoint", ck, "--arch-file", txt], "--input-shape");
    one_line_error(
        &["model", "--checkpoint", ck, "--arch-file", txt, "--input-shape", "1,28"],
        "in_channels=1, but its input has shape 1x28",
    );
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(g.join("torch_lenet5.txt")).unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, text.replace("(8): ReLU()", "(8): SiLU()")).unwrap();
    one_line_error(
        &["model", "--checkpoint", ck, "--arch-file", bad.to_str().unwrap(), "--input-shape", "1,28,28"],
        "module 8 SiLU: not supported",
    );
    let wide = dir.path().join("wide.txt");
    std::fs::write(
        &wide,
        text.replace("out_features=120", "out_features=100").replace("in_features=120", "in_features=100"),
    )
    .unwrap();
    one_line_error(
        &["model", "--checkpoint", ck, "--arch-file", wide.to_str().unwrap(), "--input-shape", "1,28,28"],
        "tensor '7.weight' has shape [120, 400]",
    );
    one_line_error(&["model", "--checkpoint", ck, "--arch", "mlp:784-10:relu", "--arch-file", txt], "not both");
}

/// A checkpoint of `arch` with initial parameters and the given metadata.
fn checkpoint(dir: &Path, name: &str, arch: &str, metadata: &[(&str, String)]) -> PathBuf {
    let model = Model::new(&arch.parse::<ArchSpec>().unwrap());
    let params = InitSpec::default().init::<f64>(&model, &RngStream::new(1));
    let path = dir.join(name);
    save_checkpoint(&path, &model, &params, metadata).unwrap();
    path
}

#[test]
fn every_probe_has_a_help_page_generated_from_the_registry() {
    let o = sgdlab(&["probe", "--help"]);
    assert!(o.status.success());
    let list = String::from_utf8_lossy(&o.stdout);
    for p in sgdlab_probes::registry::ALL {
        assert!(list.contains(p.name()), "sgdlab probe --help lacks {}", p.name());
        let o = sgdlab(&["probe", p.name(), "--help"]);
        assert!(o.status.success(), "{}: {}", p.name(), String::from_utf8_lossy(&o.stderr));
        let h = String::from_utf8_lossy(&o.stdout);
        assert!(h.contains("--json"), "{} --help lacks --json", p.name());
        if p.needs().subsets() {
            assert!(h.contains("--samples") && h.contains("seeded subset") && h.contains("[default: 1000]"), "{h}");
        }
        assert!(!h.contains("] [default:"), "{}: a doubled default in\n{h}", p.name());
    }
}

#[test]
fn probe_output_states_the_data_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let meta = [
        (DATA_METADATA_KEY, "mnist1d:n=500".to_string()),
        (SPLIT_METADATA_KEY, "train".to_string()),
        (SEED_METADATA_KEY, "4".to_string()),
    ];
    let ck = checkpoint(dir.path(), "own.safetensors", "mlp:40-8-10:relu", &meta);
    let c = ck.to_str().unwrap();
    // Without --data: the checkpoint's own training data, all 400 training examples.
    let o = sgdlab(&["probe", "loss", "--model", c, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    assert_eq!(v["probe"], "loss");
    assert_eq!(v["input"]["data"], json!({"spec": "mnist1d:n=500", "source": "checkpoint", "trained_split": "train"}));
    assert_eq!(v["input"]["evaluated"], json!([{"split": "train", "examples": 400, "of": 400, "subset": false}]));
    assert_eq!(v["input"]["trained_on"]["seed"], "4");
    assert!(v["loss"].is_number() && v["options"].is_object());
    // A subset is said to be one, in JSON and in text.
    let o = sgdlab(&["probe", "loss", "--model", c, "--samples", "100"]);
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("mnist1d:n=500 (the checkpoint's training data"), "{t}");
    assert!(t.contains("train: 100 of 400 examples (a seeded subset)"), "{t}");
    // --data wins, and says so.
    let o = sgdlab(&["probe", "hessian", "--model", c, "--data", "mnist1d:n=600", "--samples", "50", "--json"]);
    let v = stdout_json(&o);
    assert_eq!(
        (v["input"]["data"]["spec"].as_str(), v["input"]["data"]["source"].as_str()),
        (Some("mnist1d:n=600"), Some("given"))
    );
    assert_eq!(v["input"]["evaluated"][0]["subset"], true);
    assert!(v["top_eigenvalues"][0].is_number() && v["options"]["top_k"] == 1);
    // Probes without data or without a model say so.
    let o = sgdlab(&["probe", "weight-spectra", "--model", c, "--json"]);
    let v = stdout_json(&o);
    assert!(v["input"]["data"].is_null() && v["input"]["evaluated"] == json!([]) && v["layers"].is_array());
    let o = sgdlab(&["probe", "kernel-spectrum", "-d", "4", "--json"]);
    let v = stdout_json(&o);
    assert!(v["input"]["arch"].is_null() && v["spectra"][0]["normalised"].as_array().unwrap().len() == 5);
    let o = sgdlab(&["probe", "prior-functions", "--arch", "mlp:7-4-1:relu", "--networks", "20", "--json"]);
    let v = stdout_json(&o);
    assert_eq!(
        (v["input"]["data"]["spec"].as_str(), v["input"]["data"]["source"].as_str()),
        (Some("boolean:d=7"), Some("probe_default"))
    );
}

#[test]
fn a_checkpoint_without_its_data_needs_data_given() {
    let dir = tempfile::tempdir().unwrap();
    let ck = checkpoint(dir.path(), "bare.safetensors", "mlp:40-8-10:relu", &[]);
    let c = ck.to_str().unwrap();
    for probe in ["loss", "hessian", "representation-rank"] {
        let o = sgdlab(&["probe", probe, "--model", c]);
        assert_eq!(o.status.code(), Some(1), "{probe}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            e.trim(),
            format!("error: {c}: this checkpoint does not say what data it was trained on: pass --data SPEC"),
            "{probe}"
        );
        assert!(o.stdout.is_empty());
    }
    // With --data it runs.
    let o = sgdlab(&["probe", "loss", "--model", c, "--data", "mnist1d:n=500", "--samples", "20"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn series_tables_and_output_files() {
    let dir = tempfile::tempdir().unwrap();
    let meta = [(DATA_METADATA_KEY, "mnist1d:n=500".to_string())];
    let a = checkpoint(dir.path(), "step-10.safetensors", "mlp:40-8-10:relu", &meta);
    let b = checkpoint(dir.path(), "step-20.safetensors", "mlp:40-8-10:relu", &meta);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    // Norms over two checkpoints: one entry each (steps from the file names), no fits from two.
    let o = sgdlab(&["probe", "norms", "--model", a, "--model", b, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    let steps: Vec<u64> = v["checkpoints"].as_array().unwrap().iter().map(|c| c["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [10, 20]);
    assert!(v["checkpoints"][1]["total"].is_number() && v["series"]["growth"].is_null());
    // A landscape slice as CSV: a header and one row per point.
    let csv = dir.path().join("slice.csv");
    let o = sgdlab(&[
        "probe",
        "landscape",
        "--model",
        a,
        "--samples",
        "20",
        "--points",
        "3",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<String> = std::fs::read_to_string(&csv).unwrap().lines().map(str::to_string).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0], "alpha,beta,loss,accuracy");
    assert!(rows[1].starts_with("-1,0,"), "{}", rows[1]);
    // --out where these options make no table is an error naming the flag.
    let o = sgdlab(&["probe", "hessian", "--model", a, "--samples", "20", "--out", csv.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--out") && e.contains("--density"), "{e}");
    // --dtype and --loss take only their values.
    let o = sgdlab(&["probe", "loss", "--model", a, "--dtype", "f16"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("f32"));
    let o = sgdlab(&["probe", "loss", "--model", a, "--loss", "hinge"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cross_entropy"));
}

/// A Sobolev-loss run (PROTOCOLS 2.4) from the example spec, shrunk (N = 64, 200 steps): full-batch
/// GD trains and writes metrics, and `probe hessian` measures its checkpoint under the same loss.
#[test]
fn sobolev_example_trains_and_its_checkpoint_is_probed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let spec = root().join("examples/sines-sobolev.toml");
    let data = "sines:n=64,freqs=2,step=1";
    let o = sgdlab(&[
        "--threads",
        "1",
        "train",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        &format!("data={data}"),
        "--set",
        "model=mlp:1-64-1:relu",
        "--set",
        "optimizer.lr=0.01",
        "--set",
        "budget.steps=200",
        "--set",
        "eval.every=50",
        "--json",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec = stdout_json(&o);
    assert_eq!(rec["status"], "completed");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let train: Vec<f64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["probe"] == "train" && v["name"] == "loss")
        .map(|v| v["value"].as_f64().unwrap())
        .collect();
    assert_eq!(train.len(), 5, "{metrics}");
    assert!(train[4] < train[0], "{train:?}");
    assert!(std::fs::read_to_string(out.join("spec.toml")).unwrap().contains("loss = \"sobolev:s=1\""));
    let c = out.join("final.safetensors");
    let c = c.to_str().unwrap();
    let o = sgdlab(&[
        "probe",
        "hessian",
        "--model",
        c,
        "--data",
        data,
        "--loss",
        "sobolev:s=1",
        "--top-k",
        "2",
        "--trace",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    let top: Vec<f64> = v["top_eigenvalues"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!(top.len() == 2 && top[0] >= top[1] && top[0] > 0.0, "{top:?}");
    assert_eq!(v["input"]["loss"], "sobolev:s=1");
    // The probe's loss is the trained one: the mean Sobolev loss over the whole grid.
    let o = sgdlab(&["probe", "loss", "--model", c, "--data", data, "--loss", "sobolev:s=1", "--json"]);
    let l = stdout_json(&o)["loss"].as_f64().unwrap();
    assert!((l - train[4]).abs() <= 1e-5 * train[4], "probe loss {l}, trained {}", train[4]);
    // A subset of the grid is refused, naming the flag.
    let o = sgdlab(&["probe", "hessian", "--model", c, "--data", data, "--loss", "sobolev:s=1", "--samples", "10"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--samples 0"));
}
