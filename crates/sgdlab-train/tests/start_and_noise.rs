//! `init.from` (a run starting from another run's parameters) and noise matched to SGD's
//! (`noise = { kind = "match_sgd", ... }`, PROTOCOLS 8.1).

use ndarray::Array2;
use sgdlab_linalg::{RngStream, standard_normal};
use sgdlab_nn::{Batch, Loss, Model, Objective, Reduction, Targets, load_checkpoint};
use sgdlab_train::noise::{InjectedNoise, NoiseData, matched_noise, sgd_noise_diagonal};
use sgdlab_train::spec::{MatchShape, NoiseSpec};
use sgdlab_train::{NoHook, Progress, RunContext, RunOptions, RunRecord, RunSpec, RunStatus, train};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

fn ctx() -> RunContext {
    RunContext { sgdlab_version: "test".into(), git_revision: "test".into() }
}

fn run_in(spec: &RunSpec, dir: &Path, base: Option<&Path>, stop_at: Option<u64>) -> Result<RunRecord, String> {
    let stop = AtomicBool::new(false);
    let opts = RunOptions {
        out_dir: dir.to_path_buf(),
        stop: Some(&stop),
        context: ctx(),
        dataset: None,
        fresh: false,
        base_dir: base.map(Path::to_path_buf),
    };
    let mut cb = |p: &Progress| {
        if Some(p.step) == stop_at {
            stop.store(true, Ordering::SeqCst);
        }
    };
    train(spec, &opts, &mut NoHook, &mut cb).map_err(|e| e.to_string())
}

fn params(path: &Path) -> Vec<f64> {
    load_checkpoint::<f64>(path, None).unwrap().params.into_vec()
}

fn spec(text: &str) -> RunSpec {
    RunSpec::from_toml(text, "test.toml").unwrap()
}

const STAGE1: &str = r#"
seed = 2
model = "mlp:40-16-10:relu"
data = "mnist1d:n=300"
[optimizer]
name = "gd"
lr = 0.1
[budget]
steps = 30
[eval]
every = 10
train_subset = 0
[checkpoint]
every = 10
"#;

fn stage2(from: &str, optimizer: &str) -> RunSpec {
    spec(&format!(
        "seed = 2\nmodel = \"mlp:40-16-10:relu\"\ndata = \"mnist1d:n=300\"\n[init]\nfrom = \"{from}\"\n[optimizer]\n{optimizer}\n[budget]\nsteps = 40\n[eval]\nevery = 10\ntrain_subset = 0\n[checkpoint]\nevery = 20\n"
    ))
}

const SGD: &str = "name = \"sgd\"\nlr = 0.05\nbatch_size = 20";

#[test]
fn init_from_starts_from_exactly_those_parameters() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("source");
    assert_eq!(run_in(&spec(STAGE1), &src, None, None).unwrap().status, RunStatus::Completed);
    let start = params(&src.join("final.safetensors"));
    // A run of zero steps from the file ends where it started, bit for bit; the path is
    // relative to the base directory.
    let mut s = stage2("source/final.safetensors", SGD);
    s.budget.steps = Some(0);
    let out = base.path().join("zero");
    assert_eq!(run_in(&s, &out, Some(base.path()), None).unwrap().status, RunStatus::Completed);
    assert_eq!(params(&out.join("final.safetensors")), start);
    // Its first evaluation is the source's last one.
    let first_loss = |dir: &Path, step: u64| -> f64 {
        sgdlab_train::read_metrics(dir)
            .unwrap()
            .into_iter()
            .find(|m| m.probe == "train" && m.name == "loss" && m.step == step)
            .unwrap()
            .value
            .unwrap()
    };
    assert_eq!(first_loss(&out, 0), first_loss(&src, 30));
    // An absolute path works without a base directory.
    let mut s = stage2(&src.join("final.safetensors").display().to_string(), SGD);
    s.budget.steps = Some(0);
    let abs = base.path().join("abs");
    run_in(&s, &abs, None, None).unwrap();
    assert_eq!(params(&abs.join("final.safetensors")), start);
}

#[test]
fn init_from_errors_are_one_line_and_name_the_problem() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("source");
    run_in(&spec(STAGE1), &src, None, None).unwrap();
    let e =
        run_in(&stage2("nowhere/final.safetensors", SGD), &base.path().join("a"), Some(base.path()), None).unwrap_err();
    assert!(e.contains("init.from") && e.contains("does not exist") && !e.contains('\n'), "{e}");
    // Another architecture.
    let mut s = stage2("source/final.safetensors", SGD);
    s.model = "mlp:40-8-10:relu".parse().unwrap();
    let e = run_in(&s, &base.path().join("b"), Some(base.path()), None).unwrap_err();
    assert!(e.contains("init.from") && e.contains("mlp:40-16-10:relu") && !e.contains('\n'), "{e}");
    let e = RunSpec::from_toml(&STAGE1.replace("[optimizer]", "[init]\nfrom = \"\"\n[optimizer]"), "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("init.from is empty"), "{e}");
}

#[test]
fn a_run_from_another_resumes_bit_identically_after_a_kill() {
    let base = tempfile::tempdir().unwrap();
    run_in(&spec(STAGE1), &base.path().join("source"), None, None).unwrap();
    for opt in [
        SGD,
        "name = \"noisy_gd\"\nlr = 0.05\nnoise = { kind = \"match_sgd\", shape = \"diag\", batch_size = 20 }",
        "name = \"noisy_gd\"\nlr = 0.05\nnoise = { kind = \"match_sgd\", shape = \"hessian_top\", batch_size = 20, k = 3 }",
    ] {
        let s = stage2("source/final.safetensors", opt);
        let (a, b) = (base.path().join("full"), base.path().join("part"));
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
        assert_eq!(run_in(&s, &a, Some(base.path()), None).unwrap().status, RunStatus::Completed, "{opt}");
        let part = run_in(&s, &b, Some(base.path()), Some(20)).unwrap();
        assert_eq!((part.status, part.steps_completed), (RunStatus::Interrupted, 20), "{opt}");
        // A kill after the checkpoint: the record says running, the metrics run past it.
        let rec = b.join("record.json");
        let text = std::fs::read_to_string(&rec).unwrap().replace("\"interrupted\"", "\"running\"");
        std::fs::write(&rec, text).unwrap();
        let resumed = run_in(&s, &b, Some(base.path()), None).unwrap();
        assert_eq!(resumed.status, RunStatus::Completed, "{opt}");
        assert_eq!(
            std::fs::read_to_string(a.join("metrics.jsonl")).unwrap(),
            std::fs::read_to_string(b.join("metrics.jsonl")).unwrap(),
            "{opt}: metrics differ after resume"
        );
        assert_eq!(params(&a.join("final.safetensors")), params(&b.join("final.safetensors")), "{opt}");
    }
}

/// A tiny classification problem in f64: 9 examples, 4 features, 3 classes, MLP 4-5-3 (43
/// parameters).
struct Tiny {
    model: Model,
    theta: Vec<f64>,
    x: Array2<f64>,
    labels: Vec<u32>,
}

impl Tiny {
    fn new() -> Self {
        let model = Model::new(&"mlp:4-5-3:tanh".parse().unwrap());
        let mut rng = RngStream::new(11).rng();
        let theta: Vec<f64> = (0..model.num_params()).map(|_| 0.7 * standard_normal::<f64, _>(&mut rng)).collect();
        let x = Array2::from_shape_fn((9, 4), |_| standard_normal::<f64, _>(&mut rng));
        let labels = (0..9).map(|i| (i % 3) as u32).collect();
        Tiny { model, theta, x, labels }
    }
    fn data(&self) -> NoiseData<'_> {
        NoiseData { x: self.x.view(), labels: Some(&self.labels), values: None }
    }
    /// Sigma_SGD(B) = (N - B) / (B (N - 1)) (1/N) sum_i (g_i - g)(g_i - g)^T, built here from
    /// one gradient per example (independently of the chunked per-example pass).
    fn sgd_covariance(&self, b: usize) -> Array2<f64> {
        let n = self.x.nrows();
        let obj = Objective { loss: Loss::CrossEntropy, reduction: Reduction::Mean };
        let grads: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                let x = self.x.slice(ndarray::s![i..i + 1, ..]);
                let batch = Batch { x, targets: Targets::Classes(&self.labels[i..i + 1]) };
                self.model.loss_and_gradient(&self.theta, &batch, &obj).unwrap().gradient
            })
            .collect();
        let p = self.theta.len();
        let mean: Vec<f64> = (0..p).map(|j| grads.iter().map(|g| g[j]).sum::<f64>() / n as f64).collect();
        let mut c = Array2::<f64>::zeros((p, p));
        for g in &grads {
            for a in 0..p {
                for bb in 0..p {
                    c[(a, bb)] += (g[a] - mean[a]) * (g[bb] - mean[bb]);
                }
            }
        }
        let (nf, bf) = (n as f64, b as f64);
        c * ((nf - bf) / (bf * (nf - 1.0)) / nf)
    }
}

/// Relative tolerance of the diagonal of Sigma_SGD (two summation orders of the same numbers).
const TOL_EXACT: f64 = 1e-10;

#[test]
fn the_sgd_noise_diagonal_matches_an_explicit_covariance() {
    let t = Tiny::new();
    let c = t.sgd_covariance(4);
    let d = sgd_noise_diagonal(&t.model, &t.theta, &t.data(), Loss::CrossEntropy, 4).unwrap();
    for (j, &v) in d.diagonal.iter().enumerate() {
        assert!((v - c[(j, j)]).abs() <= TOL_EXACT * c[(j, j)].abs().max(1e-12), "{j}: {v} vs {}", c[(j, j)]);
    }
    assert!((d.trace - c.diag().sum()).abs() <= TOL_EXACT * d.trace);
    let e = sgd_noise_diagonal(&t.model, &t.theta, &t.data(), Loss::CrossEntropy, 10).unwrap_err();
    assert!(e.contains("batch_size = 10"), "{e}");
}

/// Samples drawn to check a covariance, and its tolerance: the relative Frobenius error of a
/// sample covariance of n Gaussian vectors is about sqrt((Tr C)^2 + ||C||_F^2) / (sqrt(n) ||C||_F)
/// (at most sqrt(D + 1 / n) ~ 0.03 here for the isotropic case with D = 43, n = 60000);
/// 0.08 leaves more than 2.5x that (seeded; fails with probability far below 1e-6).
const SAMPLES: usize = 60_000;
const TOL_COV: f64 = 0.08;

#[test]
fn matched_noise_has_the_covariance_of_its_definition() {
    let t = Tiny::new();
    let d = t.theta.len();
    let c = t.sgd_covariance(3);
    let tr = c.diag().sum();
    let data = t.data();
    let stream = RngStream::new(4);
    for shape in [MatchShape::Iso, MatchShape::Diag, MatchShape::HessianTop] {
        let spec = NoiseSpec::MatchSgd { shape, batch_size: 3, k: 4 };
        let noise: InjectedNoise<f64> =
            matched_noise(&spec, &t.model, &t.theta, &data, Loss::CrossEntropy, &stream).unwrap().unwrap();
        // The definition (crate::noise): same total variance as SGD, in the stated shape.
        let expected = match (&noise, shape) {
            (InjectedNoise::Isotropic { .. }, MatchShape::Iso) => Array2::eye(d) * (tr / d as f64),
            (InjectedNoise::Diagonal { .. }, MatchShape::Diag) => Array2::from_diag(&c.diag()),
            (InjectedNoise::Directions { directions, .. }, MatchShape::HessianTop) => {
                // Orthonormal rows, each an eigenvector of the Hessian.
                let g = directions.dot(&directions.t());
                assert!((&g - &Array2::<f64>::eye(4)).iter().all(|v| v.abs() < 1e-8), "{g}");
                let obj = Objective { loss: Loss::CrossEntropy, reduction: Reduction::Mean };
                let batch = Batch { x: t.x.view(), targets: Targets::Classes(&t.labels) };
                let hu = t.model.hvp_block(&t.theta, &batch, &obj, directions.view()).unwrap().hvps;
                for (u, h) in directions.rows().into_iter().zip(hu.rows()) {
                    let lambda = u.dot(&h);
                    let r = (&h - &(&u * lambda)).mapv(|v| v * v).sum().sqrt();
                    assert!(r <= 1e-3 * lambda.abs().max(1.0) * 10.0, "residual {r} of eigenvalue {lambda}");
                }
                directions.t().dot(directions) * (tr / 4.0)
            }
            (n, s) => panic!("{s:?} resolved to {n:?}"),
        };
        assert!((noise.total_variance(d) - tr).abs() <= 1e-8 * tr, "{shape:?}: {} vs {tr}", noise.total_variance(d));
        let exact = noise.covariance(d);
        assert!((&exact - &expected).iter().all(|v| v.abs() <= 1e-10 * tr), "{shape:?}");
        // The trainer's draw: sample covariance of SAMPLES draws.
        let mut rng = RngStream::new(9).child(&format!("{shape:?}")).rng();
        let mut sample = Array2::<f64>::zeros((d, d));
        let mut xi = vec![0.0f64; d];
        for _ in 0..SAMPLES {
            xi.iter_mut().for_each(|v| *v = 0.0);
            noise.add_to(&mut xi, &mut rng);
            let v = ndarray::ArrayView1::from(&xi[..]);
            for a in 0..d {
                for b in 0..d {
                    sample[(a, b)] += v[a] * v[b];
                }
            }
        }
        sample /= SAMPLES as f64;
        let err = (&sample - &expected).mapv(|v| v * v).sum().sqrt() / expected.mapv(|v| v * v).sum().sqrt();
        assert!(err < TOL_COV, "{shape:?}: relative Frobenius error {err} of the sample covariance");
        let sample_tr = sample.diag().sum();
        assert!((sample_tr - tr).abs() < 0.03 * tr, "{shape:?}: sample total variance {sample_tr} vs {tr}");
    }
}
