//! Training-loop tests: determinism, bit-identical resume, each optimiser against a
//! hand-computed step on a quadratic, the gradient-norm penalty against finite differences,
//! divergence, checkpoint schedule and malformed specs.

use ndarray::{Array1, Array2};
use ndarray_npy::write_npy;
use sgdlab_linalg::{RngStream, standard_normal};
use sgdlab_nn::{Batch, InitSpec, Loss, Model, Objective, Targets, load_checkpoint};
use sgdlab_train::{NoHook, Progress, RunContext, RunOptions, RunRecord, RunSpec, RunStatus, train};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

fn ctx() -> RunContext {
    RunContext { sgdlab_version: "test".into(), git_revision: "test".into() }
}

/// Options for a run into `dir` with the test context, nothing else set.
fn opts<'a>(dir: &Path, stop: Option<&'a AtomicBool>) -> RunOptions<'a> {
    RunOptions { out_dir: dir.to_path_buf(), stop, context: ctx(), dataset: None, fresh: false, base_dir: None }
}

fn run_in(spec: &RunSpec, dir: &Path, stop_at: Option<u64>) -> RunRecord {
    let stop = AtomicBool::new(false);
    let opts = opts(dir, Some(&stop));
    let mut cb = |p: &Progress| {
        if Some(p.step) == stop_at {
            stop.store(true, Ordering::SeqCst);
        }
    };
    train(spec, &opts, &mut NoHook, &mut cb).unwrap()
}

/// The final parameters, bit for bit (as f64, which represents every f32 exactly). The files'
/// bytes may differ: safetensors writes its metadata map in hash order.
fn final_params(dir: &Path) -> Vec<f64> {
    load_checkpoint::<f64>(&dir.join("final.safetensors"), None).unwrap().params.into_vec()
}

fn spec(text: &str) -> RunSpec {
    RunSpec::from_toml(text, "test.toml").unwrap()
}

const MNIST1D_SGD: &str = r#"
seed = 5
model = "mlp:40-32-10:relu"
data = "mnist1d:n=600"
[optimizer]
name = "sgd"
lr = 0.05
batch_size = 32
momentum = 0.9
nesterov = true
[budget]
steps = 100
[eval]
every = 25
train_subset = 200
log_every = 1
[checkpoint]
every = 50
"#;

#[test]
fn same_seed_gives_bit_identical_metrics_and_parameters() {
    for dtype in ["f32", "f64"] {
        let s = spec(&MNIST1D_SGD.replace("seed = 5", &format!("seed = 5\ndtype = \"{dtype}\"")));
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ra = run_in(&s, a.path(), None);
        let rb = run_in(&s, b.path(), None);
        assert_eq!(ra.status, RunStatus::Completed);
        assert_eq!(ra.final_metrics, rb.final_metrics);
        let ma = std::fs::read(a.path().join("metrics.jsonl")).unwrap();
        assert_eq!(ma, std::fs::read(b.path().join("metrics.jsonl")).unwrap());
        assert_eq!(final_params(a.path()), final_params(b.path()));
        // Another seed differs.
        let c = tempfile::tempdir().unwrap();
        run_in(&spec(&MNIST1D_SGD.replace("seed = 5", "seed = 6")), c.path(), None);
        assert_ne!(ma, std::fs::read(c.path().join("metrics.jsonl")).unwrap());
        // The metrics file is long-format JSON lines with the documented keys.
        let first: serde_json::Value =
            serde_json::from_str(std::str::from_utf8(&ma).unwrap().lines().next().unwrap()).unwrap();
        for k in ["step", "epoch", "probe", "name", "value"] {
            assert!(first.get(k).is_some(), "missing {k} in {first}");
        }
    }
}

#[test]
fn resume_after_interrupt_is_bit_identical() {
    let optimizers = [
        "name = \"sgd\"\nlr = 0.05\nbatch_size = 32\nmomentum = 0.9\nnesterov = true",
        "name = \"adam\"\nlr = 0.003\nbatch_size = 32",
        "name = \"entropy_sgd\"\nlr = 0.5\nbatch_size = 32\ninner_steps = 3",
        "name = \"label_noise_sgd\"\nlr = 0.05\nbatch_size = 32\nsigma = 0.2\nmomentum = 0.5",
    ];
    for opt in optimizers {
        let text =
            MNIST1D_SGD.replace("name = \"sgd\"\nlr = 0.05\nbatch_size = 32\nmomentum = 0.9\nnesterov = true", opt);
        let s = spec(&text);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let full = run_in(&s, a.path(), None);
        assert_eq!(full.status, RunStatus::Completed, "{opt}");
        // Interrupted right after step 50 (the stop flag is seen before step 51).
        let part = run_in(&s, b.path(), Some(50));
        assert_eq!(part.status, RunStatus::Interrupted, "{opt}");
        assert_eq!(part.steps_completed, 50);
        assert!(b.path().join("checkpoints/step-50.safetensors").exists());
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(b.path().join("record.json")).unwrap()).unwrap();
        assert_eq!(rec["status"], "interrupted");
        let resumed = run_in(&s, b.path(), None);
        assert_eq!(resumed.status, RunStatus::Completed, "{opt}");
        assert_eq!(resumed.steps_completed, 100);
        // One segment per interruption; an uninterrupted run has one.
        assert_eq!((full.segments, part.segments, resumed.segments), (1, 1, 2), "{opt}");
        let ma = std::fs::read_to_string(a.path().join("metrics.jsonl")).unwrap();
        let mb = std::fs::read_to_string(b.path().join("metrics.jsonl")).unwrap();
        assert_eq!(ma, mb, "{opt}: metrics differ after resume");
        assert_eq!(final_params(a.path()), final_params(b.path()), "{opt}");
        // A completed run is not run again.
        let again = run_in(&s, b.path(), None);
        assert_eq!(again.wall_time_s, resumed.wall_time_s);
        assert_eq!(again.segments, 2, "{opt}");
    }
}

/// A linear least-squares problem: L(theta) = (1/n) sum_i (x_i . theta - y_i)^2 (MSE, mean over
/// n * 1 elements), gradient (2/n) X^T (X theta - y), Hessian A = (2/n) X^T X.
struct Quadratic {
    dir: tempfile::TempDir,
    x: Array2<f64>,
    y: Array1<f64>,
}

impl Quadratic {
    fn new() -> Self {
        let x = ndarray::array![[1.0, 0.5, -1.0], [0.0, 2.0, 1.0], [1.5, -0.5, 0.5], [-1.0, 1.0, 2.0]];
        Self::with(x, ndarray::array![1.0, -2.0, 0.5, 3.0])
    }
    fn with(x: Array2<f64>, y: Array1<f64>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_npy(dir.path().join("x.npy"), &x).unwrap();
        write_npy(dir.path().join("y.npy"), &y).unwrap();
        Quadratic { dir, x, y }
    }
    fn grad(&self, th: &[f64]) -> Vec<f64> {
        let t = Array1::from(th.to_vec());
        let r = self.x.dot(&t) - &self.y;
        (self.x.t().dot(&r) * (2.0 / self.x.nrows() as f64)).to_vec()
    }
    fn hess_times(&self, v: &[f64]) -> Vec<f64> {
        let v = Array1::from(v.to_vec());
        (self.x.t().dot(&self.x.dot(&v)) * (2.0 / self.x.nrows() as f64)).to_vec()
    }
    fn spec(&self, optimizer: &str, steps: u64, extra: &str) -> RunSpec {
        let data =
            format!("npy:{},{}", self.dir.path().join("x.npy").display(), self.dir.path().join("y.npy").display());
        spec(&format!(
            "seed = 3\ndtype = \"f64\"\nmodel = \"mlp:3-1:identity:nobias\"\ndata = \"{data}\"\nloss = \"mse\"\n{extra}\n[optimizer]\n{optimizer}\n[budget]\nsteps = {steps}\n"
        ))
    }
    fn theta0(&self) -> Vec<f64> {
        let m = Model::new(&"mlp:3-1:identity:nobias".parse().unwrap());
        InitSpec::default().init::<f64>(&m, &RngStream::new(3)).into_vec()
    }
    fn run(&self, s: &RunSpec) -> Vec<f64> {
        let out = tempfile::tempdir().unwrap();
        let r = run_in(s, out.path(), None);
        assert_eq!(r.status, RunStatus::Completed);
        load_checkpoint::<f64>(&out.path().join("final.safetensors"), None).unwrap().params.into_vec()
    }
}

/// Hand computation and run agree to rounding (the full batch is summed in another order).
const TOL_STEP: f64 = 1e-12;

fn assert_vec(what: &str, a: &[f64], e: &[f64]) {
    for (i, (x, y)) in a.iter().zip(e).enumerate() {
        assert!((x - y).abs() <= TOL_STEP * (1.0 + y.abs()), "{what}[{i}]: got {x}, expected {y}");
    }
}

#[test]
fn each_optimiser_matches_a_hand_computed_step_on_a_quadratic() {
    let q = Quadratic::new();
    let t0 = q.theta0();
    let sub = |a: &[f64], s: f64, b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - s * y).collect() };

    // GD: theta1 = theta0 - lr g0.
    let got = q.run(&q.spec("name = \"gd\"\nlr = 0.1", 1, ""));
    assert_vec("gd", &got, &sub(&t0, 0.1, &q.grad(&t0)));

    // SGD with a full batch, heavy-ball momentum 0.9 and weight decay 0.1, two steps.
    let got = q.run(&q.spec("name = \"sgd\"\nlr = 0.1\nbatch_size = 4\nmomentum = 0.9\nweight_decay = 0.1", 2, ""));
    let d0: Vec<f64> = q.grad(&t0).iter().zip(&t0).map(|(g, t)| g + 0.1 * t).collect();
    let t1 = sub(&t0, 0.1, &d0);
    let d1: Vec<f64> = q.grad(&t1).iter().zip(&t1).map(|(g, t)| g + 0.1 * t).collect();
    let b1: Vec<f64> = d0.iter().zip(&d1).map(|(a, b)| 0.9 * a + b).collect();
    assert_vec("sgd momentum", &got, &sub(&t1, 0.1, &b1));

    // Adam and AdamW, two steps.
    for (name, wd) in [("adam", 0.0), ("adamw", 0.2)] {
        let got = q.run(&q.spec(&format!("name = \"{name}\"\nlr = 0.01\nbatch_size = 4\nweight_decay = {wd}"), 2, ""));
        let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8, 0.01);
        let mut th = t0.clone();
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        for t in 1..=2 {
            let g = q.grad(&th);
            for i in 0..3 {
                th[i] *= 1.0 - lr * wd;
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                th[i] -= lr / c1 * m[i] / (v[i].sqrt() / c2.sqrt() + eps);
            }
        }
        assert_vec(name, &got, &th);
    }

    // SAM: gradient at theta0 + rho g / |g|.
    let got = q.run(&q.spec("name = \"sam\"\nlr = 0.1\nbatch_size = 4\nrho = 0.05", 1, ""));
    let g = q.grad(&t0);
    let n = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    let tp: Vec<f64> = t0.iter().zip(&g).map(|(t, gi)| t + 0.05 * gi / (n + 1e-12)).collect();
    assert_vec("sam", &got, &sub(&t0, 0.1, &q.grad(&tp)));

    // Noisy GD (isotropic): the noise is the documented stream `noise/0` of the seed.
    let got = q.run(&q.spec("name = \"noisy_gd\"\nlr = 0.1\nnoise = { kind = \"isotropic\", sigma = 0.5 }", 1, ""));
    let mut rng = RngStream::new(3).child("noise").child("0").rng();
    let noisy: Vec<f64> = q.grad(&t0).iter().map(|g| g + 0.5 * standard_normal::<f64, _>(&mut rng)).collect();
    assert_vec("noisy_gd", &got, &sub(&t0, 0.1, &noisy));

    // Explicit gradient-norm penalty: gradient g + 2 mu A g.
    let got = q.run(&q.spec("name = \"gd\"\nlr = 0.05", 1, "[regularizer]\ngrad_norm = 0.3\nl2 = 0.01"));
    let g = q.grad(&t0);
    let ag = q.hess_times(&g);
    let full: Vec<f64> = (0..3).map(|i| g[i] + 0.6 * ag[i] + 0.01 * t0[i]).collect();
    assert_vec("grad_norm + l2", &got, &sub(&t0, 0.05, &full));

    // Label-noise SGD with MSE: targets (in the batch's shuffled order) plus sigma N(0,1) from
    // the stream `label-noise/0`.
    let got = q.run(&q.spec("name = \"label_noise_sgd\"\nlr = 0.1\nbatch_size = 4\nsigma = 0.3", 1, ""));
    let order =
        sgdlab_data::BatchPlan::new(4, 4, false, RngStream::new(3).child("batches")).unwrap().epoch(0)[0].clone();
    let mut rng = RngStream::new(3).child("label-noise").child("0").rng();
    let mut g = vec![0.0; 3];
    let t = Array1::from(t0.clone());
    for &i in &order {
        let yi = q.y[i] + 0.3 * standard_normal::<f64, _>(&mut rng);
        let r = q.x.row(i).dot(&t) - yi;
        for (gj, xij) in g.iter_mut().zip(q.x.row(i)) {
            *gj += 2.0 / 4.0 * r * xij;
        }
    }
    assert_vec("label_noise_sgd", &got, &sub(&t0, 0.1, &g));

    // Entropy-SGD without Langevin noise: two inner steps, then a Nesterov outer step along
    // x - mu (first momentum buffer = x - mu).
    let got = q.run(&q.spec("name = \"entropy_sgd\"\nlr = 0.5\nbatch_size = 4\ninner_steps = 2\ninner_lr = 0.1\ngamma0 = 0.03\nalpha = 0.25\nnoise = 0.0\nmomentum = 0.9", 1, ""));
    let (mut xp, mut mu) = (t0.clone(), t0.clone());
    for _ in 0..2 {
        let gp = q.grad(&xp);
        for i in 0..3 {
            xp[i] -= 0.1 * (gp[i] - 0.03 * (t0[i] - xp[i]));
            mu[i] = 0.75 * mu[i] + 0.25 * xp[i];
        }
    }
    let d: Vec<f64> = (0..3).map(|i| t0[i] - mu[i]).collect();
    let step: Vec<f64> = d.iter().map(|v| v + 0.9 * v).collect();
    assert_vec("entropy_sgd", &got, &sub(&t0, 0.5, &step));
}

/// The penalised objective F = L + mu ||grad L||^2 on a non-linear net: one GD step of the
/// trainer equals theta0 - lr * (central differences of F).
#[test]
fn gradient_norm_penalty_matches_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let x = Array2::from_shape_fn((6, 3), |(i, j)| ((i * 3 + j) as f64 * 0.7).sin());
    let y: Array1<i64> = ndarray::array![0, 1, 0, 1, 1, 0];
    write_npy(dir.path().join("x.npy"), &x).unwrap();
    write_npy(dir.path().join("y.npy"), &y).unwrap();
    let data = format!("npy:{},{}", dir.path().join("x.npy").display(), dir.path().join("y.npy").display());
    let text = format!(
        "seed = 1\ndtype = \"f64\"\nmodel = \"mlp:3-4-2:tanh\"\ndata = \"{data}\"\n[optimizer]\nname = \"gd\"\nlr = 0.2\n[regularizer]\ngrad_norm = 0.7\n[budget]\nsteps = 1\n"
    );
    let s = spec(&text);
    let out = tempfile::tempdir().unwrap();
    assert_eq!(run_in(&s, out.path(), None).status, RunStatus::Completed);
    let got = load_checkpoint::<f64>(&out.path().join("final.safetensors"), None).unwrap().params.into_vec();
    let model = Model::new(&"mlp:3-4-2:tanh".parse().unwrap());
    let t0 = InitSpec::default().init::<f64>(&model, &RngStream::new(1)).into_vec();
    let labels: Vec<u32> = y.iter().map(|&v| v as u32).collect();
    let batch = Batch { x: x.view(), targets: Targets::Classes(&labels) };
    let obj = Objective::mean(Loss::CrossEntropy);
    let f = |th: &[f64]| {
        let lg = model.loss_and_gradient(th, &batch, &obj).unwrap();
        lg.loss + 0.7 * lg.gradient.iter().map(|g| g * g).sum::<f64>()
    };
    let h = 1e-5;
    for i in 0..t0.len() {
        let (mut p, mut m) = (t0.clone(), t0.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (f(&p) - f(&m)) / (2.0 * h);
        let expect = t0[i] - 0.2 * fd;
        // Central differences: O(h^2) truncation plus eps/h rounding, both below 1e-9 here.
        assert!((got[i] - expect).abs() <= 1e-8, "param {i}: got {}, expected {expect}", got[i]);
    }
}

impl Quadratic {
    fn loss(&self, th: &[f64]) -> f64 {
        let r = self.x.dot(&Array1::from(th.to_vec())) - &self.y;
        r.dot(&r) / self.x.nrows() as f64
    }
}

/// The `optimizer/lr` rows of a run directory, in step order.
fn logged_lr(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["probe"] == "optimizer" && v["name"] == "lr")
        .map(|v| v["value"].as_f64().unwrap())
        .collect()
}

/// Normalised GD against a hand computation on the quadratic: plain GD at lr until the first
/// step whose loss is below `switch_loss`, then min(lr / L, max_lr), kept even when the loss
/// rises again (here it does: the normalised steps overshoot the minimum); the logged step
/// sizes are the ones taken; an interrupted and resumed run gives the same numbers.
#[test]
fn normalized_gd_matches_a_hand_computation_and_resumes_bit_identically() {
    // Three equations, three unknowns: the minimum loss is 0, so lr / L grows without bound and
    // the cap (above 2 / lambda_max) makes the iterates overshoot.
    let q = Quadratic::with(
        ndarray::array![[1.0, 0.5, -1.0], [0.0, 2.0, 1.0], [1.5, -0.5, 0.5]],
        ndarray::array![1.0, -2.0, 0.5],
    );
    let (lr, max_lr, steps) = (0.2, 3.0, 12usize);
    let t0 = q.theta0();
    let switch_loss = 0.05;
    let mut th = t0.clone();
    let (mut since, mut lrs, mut rose_after_switch) = (None, Vec::new(), false);
    for t in 0..steps {
        let l = q.loss(&th);
        if since.is_none() && l < switch_loss {
            since = Some(t);
        }
        rose_after_switch |= since.is_some_and(|s| t > s) && l >= switch_loss;
        let step = if since.is_some() { (lr / l).min(max_lr) } else { lr };
        lrs.push(step);
        let g = q.grad(&th);
        th = th.iter().zip(&g).map(|(x, gi)| x - step * gi).collect();
    }
    let since = since.expect("the loss falls below the threshold");
    assert!(since > 0, "switch at step {since}");
    assert!(rose_after_switch, "the test must see the loss above the threshold after the switch");
    assert!(lrs.contains(&max_lr) && lrs.iter().any(|&l| l > lr && l < max_lr), "{lrs:?}");
    let opt = format!("name = \"normalized_gd\"\nlr = {lr}\nmax_lr = {max_lr}\nswitch_loss = {switch_loss:?}");
    let s = q.spec(&opt, steps as u64, "[eval]\nlog_every = 1\n");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(run_in(&s, a.path(), None).status, RunStatus::Completed);
    let got = final_params(a.path());
    assert_vec("normalized_gd", &got, &th);
    let logged = logged_lr(a.path());
    assert_eq!(logged.len(), steps);
    assert_vec("normalized_gd step sizes", &logged, &lrs);
    // Interrupted after the switch, at a step whose loss is above the threshold: the resumed
    // run must keep the normalised step (the switch is checkpointed).
    let stop = (since + 1..steps).find(|&t| {
        lrs[t] != lr && {
            let mut x = t0.clone();
            for &l in &lrs[..t] {
                let g = q.grad(&x);
                x = x.iter().zip(&g).map(|(v, gi)| v - l * gi).collect();
            }
            q.loss(&x) >= switch_loss
        }
    });
    let stop = stop.expect("a step after the switch with the loss above the threshold") as u64;
    assert_eq!(run_in(&s, b.path(), Some(stop)).status, RunStatus::Interrupted);
    assert_eq!(run_in(&s, b.path(), None).status, RunStatus::Completed);
    assert_eq!(final_params(b.path()), got);
    assert_eq!(
        std::fs::read_to_string(a.path().join("metrics.jsonl")).unwrap(),
        std::fs::read_to_string(b.path().join("metrics.jsonl")).unwrap()
    );
}

#[test]
fn a_huge_learning_rate_diverges_with_its_step_recorded() {
    let s = spec(&MNIST1D_SGD.replace("lr = 0.05", "lr = 1e6"));
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(&s, dir.path(), None);
    assert_eq!(r.status, RunStatus::Diverged);
    let at = r.diverged_at_step.unwrap();
    assert!((1..100).contains(&at), "{at}");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("record.json")).unwrap()).unwrap();
    assert_eq!(rec["status"], "diverged");
    assert_eq!(rec["diverged_at_step"], at);
    assert!(!dir.path().join("final.safetensors").exists());
}

/// The steps at which `test/accuracy` was written.
fn eval_steps(dir: &Path) -> Vec<u64> {
    let mut s: Vec<u64> = sgdlab_train::read_metrics(dir)
        .unwrap()
        .into_iter()
        .filter(|m| m.probe == "test" && m.name == "accuracy")
        .map(|m| m.step)
        .collect();
    s.dedup();
    s
}

#[test]
fn evaluations_follow_every_at_and_log_spaced_steps() {
    // 100 steps, 10 log-spaced points round(100^(i/9)): 1, 2, 3, 5, 8, 13, 22, 36, 60, 100
    // (checked by hand: 100^(1/9) = 1.668), with step 0 and the steps listed in `at`.
    let s = spec(&MNIST1D_SGD.replace("every = 25\ntrain_subset", "log_spaced = 10\nat = [50, 51]\ntrain_subset"));
    let dir = tempfile::tempdir().unwrap();
    run_in(&s, dir.path(), None);
    assert_eq!(eval_steps(dir.path()), [0, 1, 2, 3, 5, 8, 13, 22, 36, 50, 51, 60, 100]);
    // With `every` as well: the union.
    let s = spec(&MNIST1D_SGD.replace("every = 25\ntrain_subset", "every = 40\nlog_spaced = 3\ntrain_subset"));
    let dir = tempfile::tempdir().unwrap();
    run_in(&s, dir.path(), None);
    assert_eq!(eval_steps(dir.path()), [0, 1, 10, 40, 80, 100]);
}

#[test]
fn checkpoints_follow_the_schedule_and_keep_the_latest() {
    let s = spec(&MNIST1D_SGD.replace("[checkpoint]\nevery = 50", "[checkpoint]\nevery = 20\nkeep = 2"));
    let dir = tempfile::tempdir().unwrap();
    run_in(&s, dir.path(), None);
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["step-60.safetensors", "step-60.state.safetensors", "step-80.safetensors", "step-80.state.safetensors"]
    );
    let resolved = std::fs::read_to_string(dir.path().join("spec.toml")).unwrap();
    assert_eq!(RunSpec::from_toml(&resolved, "spec.toml").unwrap(), s);
    // A checkpoint is a model file any probe can read.
    let ck = load_checkpoint::<f32>(&dir.path().join("checkpoints/step-80.safetensors"), None).unwrap();
    assert_eq!(ck.metadata["step"], "80");
}

#[test]
fn mismatched_data_and_spec_are_clear_errors() {
    let s = spec(&MNIST1D_SGD.replace("mlp:40-32-10:relu", "mlp:41-32-10:relu"));
    let dir = tempfile::tempdir().unwrap();
    let opts = opts(dir.path(), None);
    let e = train(&s, &opts, &mut NoHook, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("takes 41 inputs") && e.contains("40 features"), "{e}");
    let s = spec(&MNIST1D_SGD.replace("mlp:40-32-10:relu", "mlp:40-32-7:relu"));
    let e = train(&s, &opts, &mut NoHook, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("10 classes") && e.contains("7 outputs"), "{e}");
    // A directory holding another spec's run is not overwritten.
    let a = spec(MNIST1D_SGD);
    run_in(&a, dir.path(), None);
    let b = spec(&MNIST1D_SGD.replace("seed = 5", "seed = 8"));
    let e = train(&b, &opts, &mut NoHook, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("different spec"), "{e}");
}

#[test]
fn training_targets_stop_the_run_at_the_first_evaluation_reaching_them() {
    let text = MNIST1D_SGD
        .replace("[budget]\nsteps = 100", "[budget]\nsteps = 400\nuntil_train_accuracy = 0.5")
        .replace("every = 25", "every = 10");
    let s = spec(&text);
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(&s, dir.path(), None);
    assert_eq!(r.status, RunStatus::Completed);
    assert!(r.total_steps < 400 && r.total_steps.is_multiple_of(10), "{}", r.total_steps);
    assert_eq!(r.steps_completed, r.total_steps);
    assert!(r.final_metrics["train/accuracy"] >= 0.5);
    // The evaluation before the stop had not reached the target.
    let m = sgdlab_train::read_metrics(dir.path()).unwrap();
    let before = m.iter().find(|x| x.probe == "train" && x.name == "accuracy" && x.step == r.total_steps - 10).unwrap();
    assert!(before.value.unwrap() < 0.5);
    assert!(r.message.unwrap().contains("reached the training target"));
}

/// Interrupts `spec` right after step `at` into `dir`, leaving checkpoints at the schedule's
/// steps and at `at`.
fn interrupted_at(s: &RunSpec, dir: &Path, at: u64) {
    let r = run_in(s, dir, Some(at));
    assert_eq!((r.status, r.steps_completed), (RunStatus::Interrupted, at));
}

#[test]
fn a_torn_or_corrupt_newest_checkpoint_falls_back_to_the_previous_one() {
    let s = spec(&MNIST1D_SGD.replace("[checkpoint]\nevery = 50", "[checkpoint]\nevery = 20\nkeep = 3"));
    let reference = tempfile::tempdir().unwrap();
    run_in(&s, reference.path(), None);
    // Torn (truncated) parameters, then a flipped bit in the optimiser state.
    for (file, cut) in [("step-45.safetensors", true), ("step-45.state.safetensors", false)] {
        let dir = tempfile::tempdir().unwrap();
        interrupted_at(&s, dir.path(), 45);
        let path = dir.path().join("checkpoints").join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        if cut {
            bytes.truncate(bytes.len() / 2);
        } else {
            let n = bytes.len();
            bytes[n - 2] ^= 0x10;
        }
        std::fs::write(&path, &bytes).unwrap();
        let r = run_in(&s, dir.path(), None);
        assert_eq!(r.status, RunStatus::Completed, "{file}");
        assert_eq!(r.warnings.len(), 1, "{file}: {:?}", r.warnings);
        let w = &r.warnings[0];
        assert!(w.contains(file) && w.contains("resuming from the checkpoint of step 40 instead"), "{w}");
        assert!(w.contains(if cut { "not a valid safetensors file" } else { "checksum mismatch" }), "{w}");
        assert!(dir.path().join("checkpoints").join(format!("{file}.corrupt")).exists(), "kept for inspection");
        assert_eq!(final_params(dir.path()), final_params(reference.path()), "{file}");
        let ma = std::fs::read_to_string(reference.path().join("metrics.jsonl")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap(), ma, "{file}");
    }
}

#[test]
fn checkpoints_carry_their_provenance() {
    let s = spec(MNIST1D_SGD);
    let dir = tempfile::tempdir().unwrap();
    interrupted_at(&s, dir.path(), 30);
    let canonical = sgdlab_data::DatasetSpec::parse("mnist1d:n=600").unwrap().to_string();
    let m = load_checkpoint::<f32>(&dir.path().join("checkpoints/step-30.safetensors"), None).unwrap().metadata;
    assert_eq!(m[sgdlab_nn::DATA_METADATA_KEY], canonical);
    assert_eq!(m[sgdlab_nn::SEED_METADATA_KEY], "5");
    assert_eq!(m[sgdlab_nn::SPLIT_METADATA_KEY], "train");
    assert!(m[sgdlab_nn::CHECKSUM_METADATA_KEY].starts_with("crc32:"));
    run_in(&s, dir.path(), None);
    let m = load_checkpoint::<f32>(&dir.path().join("final.safetensors"), None).unwrap().metadata;
    assert_eq!((m[sgdlab_nn::DATA_METADATA_KEY].as_str(), m["step"].as_str()), (canonical.as_str(), "100"));
    // The canonical spec loads the same data the run trained on.
    let d = sgdlab_data::load_dataset(&m[sgdlab_nn::DATA_METADATA_KEY]).unwrap();
    assert_eq!(d.train().unwrap().len(), 480);
}

#[test]
fn inspect_run_trusts_a_record_only_when_its_files_agree() {
    use sgdlab_train::{RunState, inspect_run};
    let s = spec(MNIST1D_SGD);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(inspect_run(dir.path()), RunState::Missing);
    interrupted_at(&s, dir.path(), 30);
    assert!(matches!(inspect_run(dir.path()), RunState::Unfinished(r) if r.status == RunStatus::Interrupted));
    let done = run_in(&s, dir.path(), None);
    assert_eq!(
        done.metric_rows,
        Some(std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap().lines().count() as u64)
    );
    assert_eq!(inspect_run(dir.path()), RunState::Finished(done.clone()));
    let problem = |f: &dyn Fn(&Path)| {
        let d = tempfile::tempdir().unwrap();
        for name in ["spec.toml", "metrics.jsonl", "final.safetensors", "record.json"] {
            std::fs::copy(dir.path().join(name), d.path().join(name)).unwrap();
        }
        f(d.path());
        match inspect_run(d.path()) {
            RunState::Inconsistent { problem, .. } => problem,
            other => panic!("not inconsistent: {other:?}"),
        }
    };
    let p = problem(&|d| std::fs::remove_file(d.join("final.safetensors")).unwrap());
    assert!(p.contains("final.safetensors"), "{p}");
    let p = problem(&|d| {
        let t = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        let keep: Vec<&str> = t.lines().take(10).collect();
        std::fs::write(d.join("metrics.jsonl"), keep.join("\n") + "\n").unwrap();
    });
    assert!(p.contains("has 10 rows, the record says"), "{p}");
    let p = problem(&|d| {
        let t = std::fs::read_to_string(d.join("record.json")).unwrap();
        std::fs::write(d.join("record.json"), &t[..t.len() / 2]).unwrap();
    });
    assert!(p.contains("malformed record"), "{p}");
    let p = problem(&|d| {
        let t = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        std::fs::write(
            d.join("metrics.jsonl"),
            t + "{\"step\":3,\"epoch\":0.1,\"probe\":\"train\",\"name\":\"loss\",\"value\":1.0}\n",
        )
        .unwrap();
    });
    assert!(p.contains("rows, the record says") || p.contains("after step"), "{p}");
    let p = problem(&|d| std::fs::write(d.join("spec.toml"), "seed = 1\n").unwrap());
    assert!(p.contains("spec_hash"), "{p}");
}

#[test]
fn an_error_mid_run_leaves_a_failed_record() {
    struct Failing;
    impl sgdlab_train::MeasurementHook for Failing {
        fn due(&self, step: u64, _: u64) -> bool {
            step == 7
        }
        fn measure(
            &mut self,
            _: u64,
            _: u64,
            _: &Model,
            _: &sgdlab_nn::Params<f64>,
            _: &sgdlab_data::Dataset,
        ) -> Result<Vec<sgdlab_train::Measurement>, String> {
            Err("the probe broke".into())
        }
    }
    let s = spec(MNIST1D_SGD);
    let dir = tempfile::tempdir().unwrap();
    let opts = opts(dir.path(), None);
    let e = train(&s, &opts, &mut Failing, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("the probe broke"), "{e}");
    let rec = sgdlab_train::read_record(dir.path()).unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.steps_completed, 7);
    assert!(rec.message.unwrap().contains("measurement failed at step 7: the probe broke"));
}

#[test]
fn a_batch_larger_than_the_training_split_is_an_error() {
    let s = spec(&MNIST1D_SGD.replace("batch_size = 32", "batch_size = 481"));
    let dir = tempfile::tempdir().unwrap();
    let opts = opts(dir.path(), None);
    let e = train(&s, &opts, &mut NoHook, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("optimizer.batch_size = 481") && e.contains("480 examples of the train split"), "{e}");
    assert!(!dir.path().join("record.json").exists());
    let s = spec(&MNIST1D_SGD.replace("batch_size = 32", "batch_size = 480"));
    assert_eq!(run_in(&s, dir.path(), None).status, RunStatus::Completed, "the whole split is allowed");
}

#[test]
fn a_second_trainer_on_the_directory_is_refused() {
    let s = spec(MNIST1D_SGD);
    let dir = tempfile::tempdir().unwrap();
    let held = sgdlab_train::DirLock::acquire(dir.path()).unwrap();
    let opts = opts(dir.path(), None);
    let e = train(&s, &opts, &mut NoHook, &mut |_| {}).unwrap_err();
    assert!(matches!(e, sgdlab_train::TrainError::Busy { pid: Some(p), .. } if p == std::process::id()), "{e}");
    assert!(!dir.path().join("record.json").exists(), "nothing written");
    drop(held);
    assert_eq!(run_in(&s, dir.path(), None).status, RunStatus::Completed);
}

/// The hook sees Adam's second moment before each measurement: none at step 0 or for SGD; for
/// Adam after its first step, the optimiser's v (non-negative, one value per parameter), its step
/// count and its beta2 and eps.
#[test]
fn the_hook_receives_adams_second_moment_after_the_first_step() {
    /// What the hook saw of the state: (length of v, steps, beta2, eps, v finite and >= 0).
    type Seen = Option<(usize, u64, f64, f64, bool)>;
    #[derive(Default)]
    struct Recording {
        adam: Option<sgdlab_train::AdamSecondMoment>,
        seen: Vec<(u64, Seen)>,
    }
    impl sgdlab_train::MeasurementHook for Recording {
        fn due(&self, step: u64, _: u64) -> bool {
            step.is_multiple_of(10)
        }
        fn optimizer_state(&mut self, adam: Option<sgdlab_train::AdamSecondMoment>) {
            self.adam = adam;
        }
        fn measure(
            &mut self,
            step: u64,
            _: u64,
            _: &Model,
            _: &sgdlab_nn::Params<f64>,
            _: &sgdlab_data::Dataset,
        ) -> Result<Vec<sgdlab_train::Measurement>, String> {
            let s = self.adam.take().map(|a| {
                (a.exp_avg_sq.len(), a.steps, a.beta2, a.eps, a.exp_avg_sq.iter().all(|v| *v >= 0.0 && v.is_finite()))
            });
            self.seen.push((step, s));
            Ok(Vec::new())
        }
    }
    let adam = MNIST1D_SGD
        .replace("name = \"sgd\"", "name = \"adam\"\nbeta2 = 0.99\neps = 1e-7")
        .replace("momentum = 0.9\nnesterov = true\n", "")
        .replace("steps = 100", "steps = 20");
    for (text, is_adam) in [(adam, true), (MNIST1D_SGD.replace("steps = 100", "steps = 20"), false)] {
        let s = spec(&text);
        let dir = tempfile::tempdir().unwrap();
        let opts = opts(dir.path(), None);
        let mut hook = Recording::default();
        train(&s, &opts, &mut hook, &mut |_| {}).unwrap();
        let d = Model::new(&s.model).num_params();
        let steps: Vec<u64> = hook.seen.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, vec![0, 10, 20]);
        assert_eq!(hook.seen[0].1, None, "no state at step 0");
        for (step, got) in &hook.seen[1..] {
            if is_adam {
                assert_eq!(*got, Some((d, *step, 0.99, 1e-7, true)), "step {step}");
            } else {
                assert_eq!(*got, None, "SGD has no Adam state (step {step})");
            }
        }
    }
}
