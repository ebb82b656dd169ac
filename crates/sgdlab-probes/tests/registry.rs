//! The probe registry as a contract: for every registered probe, the command line's defaults are
//! the options' defaults, unknown options are refused by name, a measurement with default
//! options writes exactly the metrics `written` promises (names, order, shapes) in f64 and f32,
//! and every metric is described. Data provenance: no silent default data.

use serde_json::{Value, json};
use sgdlab_data::{Dataset, load_dataset};
use sgdlab_linalg::RngStream;
use sgdlab_nn::{ArchSpec, InitSpec, Loss, Model, Params, save_checkpoint};
use sgdlab_probes::registry::{
    self, DataSource, EvalOptions, MetricShape, MetricValue, Precision, Probe, ProbeInput, ProbeOutput, TrainedOn,
    resolve_data,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The keys `sgdlab probe NAME --json` puts before a probe's details.
const HEADER_KEYS: [&str; 3] = ["probe", "input", "options"];

/// A tiny model and data a probe can measure (every probe runs on it with default options).
struct Fixture {
    arch: &'static str,
    data: Option<&'static str>,
    options: Value,
    /// The loss curvature refers to (cross-entropy unless the probe needs another).
    loss: Loss,
}

const CLASSES: &str = "gaussian-mixture:classes=3,d=6,n=60,n_test=30";
const BINARY: &str = "lms:k=5,d=6,n=100,n_test=50";

fn fixture(probe: &str, dir: &Path) -> Fixture {
    let f = |arch, data: Option<&'static str>| Fixture { arch, data, options: json!({}), loss: Loss::CrossEntropy };
    match probe {
        "spectral-bias" => f("mlp:1-8-1:tanh", Some("sines:n=32,freqs=3,step=2")),
        "randomisation" | "performance-correlation" => f("mlp:6-8-2:relu", Some(BINARY)),
        "lesion" | "path-lengths" => f("resmlp:6-8x2-3:relu", Some(CLASSES)),
        "prior-functions" => f("mlp:7-8-1:relu", None),
        "iterate-tails" => Fixture {
            arch: "mlp:6-1:identity",
            data: Some("teacher:d=6,hidden=none,n=200,n_test=10,noise=0.1"),
            options: json!({ "chains": 200, "steps": 100, "hill_k": 10 }),
            loss: Loss::CrossEntropy,
        },
        // Ma & Ying's bound is derived for the mse loss only.
        "sobolev-flatness" => Fixture { loss: Loss::Mse, ..f("mlp:6-8-8-3:relu", Some(CLASSES)) },
        "interpolate" => Fixture {
            arch: "mlp:6-8-8-3:relu",
            data: Some(CLASSES),
            options: json!({ "to": other_checkpoint("mlp:6-8-8-3:relu", dir) }),
            loss: Loss::CrossEntropy,
        },
        _ => f("mlp:6-8-8-3:relu", Some(CLASSES)),
    }
}

fn model(arch: &str) -> Model {
    Model::new(&arch.parse::<ArchSpec>().unwrap())
}

fn init(m: &Model, seed: u64) -> Params<f64> {
    InitSpec::default().init(m, &RngStream::new(seed))
}

/// A second checkpoint of `arch` (other initial parameters), for interpolate's `to`.
fn other_checkpoint(arch: &str, dir: &Path) -> PathBuf {
    let m = model(arch);
    let path = dir.join("other.safetensors");
    save_checkpoint(&path, &m, &init(&m, 2), &[]).unwrap();
    path
}

/// Everything one measurement of `probe` on its fixture needs.
struct Setup {
    model: Option<Model>,
    params: Option<Params<f64>>,
    data: Option<(Dataset, String)>,
    eval: EvalOptions,
}

fn setup(probe: &dyn Probe, f: &Fixture) -> Setup {
    let needs = probe.needs();
    let model = needs.model.then(|| model(f.arch));
    let params = model.as_ref().filter(|_| needs.params).map(|m| init(m, 1));
    let data = needs.data_needed().then(|| {
        let spec = f.data.or(needs.default_data).unwrap_or_else(|| panic!("{}: no data in its fixture", probe.name()));
        (load_dataset(spec).unwrap(), spec.to_string())
    });
    // Batches of 16 so that sums over several (unequal) batches are exercised.
    Setup { model, params, data, eval: EvalOptions { batch_size: 16, loss: f.loss, ..EvalOptions::default() } }
}

fn measure(probe: &dyn Probe, s: &Setup, options: &Value, precision: Precision) -> ProbeOutput {
    try_measure(probe, s, options, precision).unwrap_or_else(|e| panic!("{} in {precision:?}: {e}", probe.name()))
}

fn try_measure(probe: &dyn Probe, s: &Setup, options: &Value, precision: Precision) -> Result<ProbeOutput, String> {
    let checked = probe.options_from_json(options.clone()).unwrap_or_else(|e| panic!("{}: {e}", probe.name()));
    let input = ProbeInput {
        model: s.model.as_ref(),
        params: s.params.as_ref(),
        data: s.data.as_ref().map(|(d, _)| d),
        data_spec: s.data.as_ref().map(|(_, spec)| spec.as_str()),
        eval: &s.eval,
        stream: RngStream::new(0).child(probe.name()),
        adam: None,
    };
    probe.measure(&input, &checked, precision).map_err(|e| e.to_string())
}

/// Names and shapes of `out` against what the probe promises for `options`.
fn check_output(probe: &dyn Probe, options: &Value, out: &ProbeOutput, what: &str) {
    let name = probe.name();
    let checked = probe.options_from_json(options.clone()).unwrap();
    let names: Vec<&str> = out.values.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, probe.written(&checked), "{name} ({what}): values vs written(options)");
    for (n, v) in &out.values {
        let info = probe.metric(n).unwrap_or_else(|| panic!("{name}: value {n} has no MetricInfo"));
        match (info.shape, v) {
            (MetricShape::Scalar, MetricValue::Scalar(_)) => {}
            (MetricShape::Vector { .. }, MetricValue::Vector(x)) => {
                assert!(!x.is_empty(), "{name}/{n} ({what}): an empty vector");
            }
            (shape, value) => panic!("{name}/{n} ({what}): declared {shape:?}, written {value:?}"),
        }
    }
    let details = out.details.as_object().unwrap_or_else(|| panic!("{name}: details are not a JSON object"));
    for k in HEADER_KEYS {
        assert!(!details.contains_key(k), "{name}: details key '{k}' collides with the output header");
    }
    assert_eq!(out.evaluated.is_empty(), !probe.needs().data_needed(), "{name}: evaluated splits vs needs");
    for e in &out.evaluated {
        assert!(e.examples <= e.of && e.examples > 0 && e.subset == (e.examples < e.of), "{name}: {e:?}");
    }
    if out.table.is_some() {
        assert!(probe.table().is_some(), "{name} returned a table but declares none");
    }
}

#[test]
fn every_probe_measures_with_default_options_in_f64_and_f32() {
    let dir = tempfile::tempdir().unwrap();
    for probe in registry::ALL {
        let f = fixture(probe.name(), dir.path());
        let s = setup(*probe, &f);
        for precision in [Precision::F64, Precision::F32] {
            let out = measure(*probe, &s, &f.options, precision);
            check_output(*probe, &f.options, &out, precision.name());
            assert!(!out.text.trim().is_empty(), "{}: no text", probe.name());
        }
    }
}

#[test]
fn cli_defaults_equal_option_defaults() {
    for probe in registry::ALL {
        let cmd = probe.augment_args(clap::Command::new(probe.name()));
        let m = cmd.try_get_matches_from([probe.name()]).unwrap_or_else(|e| panic!("{}: {e}", probe.name()));
        let from_flags = probe.options_json_from_matches(&m).unwrap();
        assert_eq!(from_flags, probe.default_options(), "{}: clap defaults vs Default", probe.name());
        // The options round-trip through JSON (what a study's plan stores).
        if let Ok(checked) = probe.options_from_json(probe.default_options()) {
            assert_eq!(probe.options_to_json(&checked), probe.default_options(), "{}", probe.name());
        }
    }
}

#[test]
fn unknown_options_and_wrong_types_are_refused_by_name() {
    for probe in registry::ALL {
        let e = probe.options_from_json(json!({ "no_such_option": 1 })).err().unwrap_or_else(|| {
            panic!("{} accepted an unknown option", probe.name());
        });
        assert!(e.contains("no_such_option"), "{}: {e}", probe.name());
    }
    let hessian = registry::find("hessian").unwrap();
    let e = hessian.options_from_json(json!({ "trace": true, "top_k": "three" })).err().unwrap();
    assert!(e.contains("top_k"), "{e}");
    let e = hessian.options_from_json(json!({ "operator": "gnn" })).err().unwrap();
    assert!(e.contains("operator") && e.contains("gnn"), "{e}");
    // Checks beyond types, before anything runs.
    let e = hessian.options_from_json(json!({ "top_k": 0 })).err().unwrap();
    assert!(e.contains("say what to compute"), "{e}");
    let e = hessian.options_from_json(json!({ "top_k": 300, "max_iters": 200 })).err().unwrap();
    assert!(e.contains("max_iters"), "{e}");
    let e = registry::find("landscape").unwrap().options_from_json(json!({ "range": f64::NAN })).err();
    assert!(e.is_some(), "a NaN range was accepted");
    assert!(registry::find("interpolate").unwrap().options_from_json(json!({})).is_err(), "interpolate without `to`");
}

#[test]
fn a_list_option_takes_a_single_value() {
    // As the built-in studies write them: `options = { epsilon = 1e-3, steps = 20 }`.
    let sharpness = registry::find("sharpness").unwrap();
    let one = sharpness.options_from_json(json!({ "epsilon": 1e-3, "steps": 20 })).unwrap();
    assert_eq!(sharpness.options_to_json(&one), json!({ "epsilon": [1e-3], "steps": 20 }));
    let e = sharpness.options_from_json(json!({ "epsilon": "small" })).err().unwrap();
    assert!(e.contains("epsilon"), "{e}");
}

#[test]
fn every_metric_is_described_and_names_are_unique() {
    let mut probes = HashSet::new();
    for probe in registry::ALL {
        assert!(probes.insert(probe.name()), "probe {} registered twice", probe.name());
        assert_eq!(registry::find(probe.name()).map(|p| p.name()), Some(probe.name()));
        assert!(!probe.about().trim().is_empty(), "{}: no description", probe.name());
        let mut names = HashSet::new();
        for m in probe.metrics() {
            assert!(names.insert(m.name), "{}/{} declared twice", probe.name(), m.name);
            assert!(!m.label.trim().is_empty() && !m.meaning.trim().is_empty(), "{}/{}", probe.name(), m.name);
            assert!(m.unit.is_none_or(|u| !u.trim().is_empty()), "{}/{}: empty unit", probe.name(), m.name);
            if let MetricShape::Vector { index } = m.shape {
                assert!(!index.trim().is_empty(), "{}/{}: vector without index", probe.name(), m.name);
            }
        }
        assert!(!names.is_empty(), "{} writes no metric", probe.name());
    }
    assert_eq!(probes.len(), 26);
    assert!(registry::find("no-such-probe").is_none());
    assert!(registry::names().contains("neural-collapse"));
}

#[test]
fn written_follows_the_options() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("hessian", json!({ "top_k": 2, "bottom_k": 1, "trace": true, "probes": 4, "exact": true, "density": true })),
        ("hessian", json!({ "top_k": 0, "trace": true, "probes": 4, "operator": "ggn" })),
        ("hessian", json!({ "operator": "fisher-mc", "top_k": 2, "hutchpp": true, "trace": true, "probes": 6 })),
        ("sharpness", json!({ "epsilon": [1e-3, 5e-4], "steps": 2 })),
        ("landscape", json!({ "dims": 2, "points": 3 })),
        ("representation-rank", json!({ "layer": "logits", "centring": "mean" })),
        ("representation-rank", json!({ "layer": "input", "layers": "all" })),
        ("weight-spectra", json!({ "eps": [0.1] })),
        ("weight-spectra", json!({ "eps": [0.1], "spectrum_layer": 1 })),
        ("kernel-spectrum", json!({ "depth": [0, 3], "kernel": "ntk", "activation": "erf", "dim": 4 })),
        ("prior-functions", json!({ "networks": 500, "condition": true })),
        ("ncc-depth", json!({ "test_split": "none" })),
        ("neural-collapse", json!({ "test_split": "none" })),
    ];
    for (name, options) in cases {
        let probe = registry::find(name).unwrap();
        let mut f = fixture(name, dir.path());
        if name == "prior-functions" {
            // Conditioning needs a train/test split of the cube.
            f.data = Some("boolean:d=7,n_train=4");
        }
        let out = measure(probe, &setup(probe, &f), &options, Precision::F64);
        check_output(probe, &options, &out, &options.to_string());
    }
    let hessian = registry::find("hessian").unwrap();
    let written = hessian.written(&hessian.options_from_json(json!({ "trace": true })).unwrap());
    assert!(written.contains(&"trace") && written.contains(&"trace_stderr") && written.contains(&"top_eigenvalue"));
    let written = hessian.written(&hessian.options_from_json(json!({})).unwrap());
    assert!(!written.contains(&"trace") && !written.contains(&"eigenvalues"), "{written:?}");
    let spectra = registry::find("weight-spectra").unwrap();
    let written = spectra.written(&spectra.options_from_json(json!({})).unwrap());
    assert!(!written.contains(&"singular_values") && written.contains(&"eps_rank_by_layer"), "{written:?}");
}

#[test]
fn performance_correlation_writes_the_explained_fraction_and_the_accuracy_gap() {
    // explained_fraction = mu_Y(F;L) / I(F;Y) and accuracy_gap = acc(F) - acc(L), from the same
    // measurement's own numbers (an untrained net on LMS-5: some information, well below L's).
    let dir = tempfile::tempdir().unwrap();
    let probe = registry::find("performance-correlation").unwrap();
    let out =
        measure(probe, &setup(probe, &fixture("performance-correlation", dir.path())), &json!({}), Precision::F64);
    let v = |name: &str| match out.value(name).unwrap() {
        MetricValue::Scalar(x) => *x,
        MetricValue::Vector(_) => panic!("{name}: a scalar"),
    };
    let (mu, mi) = (v("performance_correlation"), v("mi_f_y"));
    if mi > 0.0 {
        assert!((v("explained_fraction") - mu / mi).abs() < 1e-12, "{} vs {mu} / {mi}", v("explained_fraction"));
    } else {
        assert!(v("explained_fraction").is_nan());
    }
    assert!((v("accuracy_gap") - (v("accuracy_f") - v("accuracy_l"))).abs() < 1e-15);
    assert!(v("accuracy_l") > 0.9 && v("accuracy_gap") < 0.0, "L fits LMS-5, the untrained net does not");
}

#[test]
fn weight_spectra_writes_the_normalised_spectrum_of_the_chosen_layer() {
    // sigma_i(W / ||W||_F): squares sum to 1, descending, and as many values above eps as the
    // epsilon-rank of that layer says; a layer the model lacks is an error naming it.
    let dir = tempfile::tempdir().unwrap();
    let probe = registry::find("weight-spectra").unwrap();
    let f = fixture("weight-spectra", dir.path());
    let out = measure(probe, &setup(probe, &f), &json!({ "eps": [0.05], "spectrum_layer": 1 }), Precision::F64);
    let MetricValue::Vector(sv) = out.value("singular_values").unwrap().clone() else { panic!("a vector") };
    let MetricValue::Vector(ranks) = out.value("eps_rank_by_layer").unwrap().clone() else { panic!("a vector") };
    assert!((sv.iter().map(|s| s * s).sum::<f64>() - 1.0).abs() < 1e-12, "{sv:?}");
    assert!(sv.windows(2).all(|w| w[0] >= w[1]), "{sv:?}");
    assert_eq!(sv.iter().filter(|s| **s > 0.05).count() as f64, ranks[1]);
    let err = try_measure(probe, &setup(probe, &f), &json!({ "spectrum_layer": 99 }), Precision::F64).unwrap_err();
    assert!(err.contains("spectrum_layer 99"), "{err}");
}

#[test]
fn options_change_the_numbers_they_name() {
    // Distinct options give distinct values where the maths says so: a ggn top eigenvalue is
    // not the Hessian's on a non-linear net away from a minimum; the logits' rank is not the
    // last hidden layer's; a test split yields numbers where `none` yields NaN.
    let dir = tempfile::tempdir().unwrap();
    let value = |name: &str, options: Value, metric: &str| -> MetricValue {
        let probe = registry::find(name).unwrap();
        let out = measure(probe, &setup(probe, &fixture(name, dir.path())), &options, Precision::F64);
        out.value(metric).unwrap().clone()
    };
    let h = value("hessian", json!({}), "top_eigenvalue");
    let g = value("hessian", json!({ "operator": "ggn" }), "top_eigenvalue");
    assert_ne!(h, g);
    let last = value("representation-rank", json!({}), "effective_rank");
    let logits = value("representation-rank", json!({ "layer": "logits" }), "effective_rank");
    let by_layer = value("representation-rank", json!({}), "effective_rank_by_layer");
    let MetricValue::Vector(v) = by_layer else { panic!("a vector") };
    assert_eq!(logits, MetricValue::Scalar(v[v.len() - 1]));
    assert_eq!(last, MetricValue::Scalar(v[v.len() - 2]));
    let MetricValue::Scalar(with) = value("neural-collapse", json!({}), "nc4_test") else { panic!() };
    let MetricValue::Scalar(without) = value("neural-collapse", json!({ "test_split": "none" }), "nc4_test") else {
        panic!()
    };
    assert!(with.is_finite() && without.is_nan(), "{with} {without}");
}

#[test]
fn an_unknown_representation_layer_names_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    let probe = registry::find("representation-rank").unwrap();
    let s = setup(probe, &fixture("representation-rank", dir.path()));
    let checked = probe.options_from_json(json!({ "layer": "7" })).unwrap();
    let input = ProbeInput {
        model: s.model.as_ref(),
        params: s.params.as_ref(),
        data: s.data.as_ref().map(|(d, _)| d),
        data_spec: None,
        eval: &s.eval,
        stream: RngStream::new(0),
        adam: None,
    };
    let e = probe.measure(&input, &checked, Precision::F64).err().unwrap().to_string();
    assert!(e.contains("'7'") && e.contains("logits") && e.contains("input"), "{e}");
}

#[test]
fn a_probe_refuses_missing_inputs_and_data_that_does_not_fit() {
    let probe = registry::find("loss").unwrap();
    let checked = probe.options_from_json(json!({})).unwrap();
    let eval = EvalOptions::default();
    let m = model("mlp:5-4-3:relu");
    let p = init(&m, 0);
    let data = load_dataset(CLASSES).unwrap();
    fn input<'a>(m: &'a Model, p: &'a Params<f64>, data: Option<&'a Dataset>, eval: &'a EvalOptions) -> ProbeInput<'a> {
        ProbeInput {
            model: Some(m),
            params: Some(p),
            data,
            data_spec: Some(CLASSES),
            eval,
            stream: RngStream::new(0),
            adam: None,
        }
    }
    let e = probe.measure(&input(&m, &p, None, &eval), &checked, Precision::F64).err().unwrap().to_string();
    assert!(e.contains("needs data"), "{e}");
    let e = probe.measure(&input(&m, &p, Some(&data), &eval), &checked, Precision::F64).err().unwrap().to_string();
    assert!(e.contains("takes 5 inputs") && e.contains("6 features") && e.contains(CLASSES), "{e}");
}

#[test]
fn series_summarise_checkpoints_with_the_library_fits() {
    let dir = tempfile::tempdir().unwrap();
    // Norms: parameters scaled by 1, 2, 3, 4 grow linearly in the step; the linear fit is exact.
    let norms = registry::find("norms").unwrap();
    let f = fixture("norms", dir.path());
    let base = setup(norms, &f);
    let checked = norms.options_from_json(json!({})).unwrap();
    let outputs: Vec<ProbeOutput> = (1..=4)
        .map(|k| {
            let mut s = setup(norms, &f);
            let p = base.params.as_ref().unwrap();
            s.params = Some(
                Params::from_vec(p.layout().clone(), p.as_slice().iter().map(|v| v * k as f64).collect()).unwrap(),
            );
            measure(norms, &s, &json!({}), Precision::F64)
        })
        .collect();
    let summary = norms.series(&[10, 20, 30, 40], &outputs, &checked).unwrap().unwrap();
    let r2 = summary.scalar("linear_r_squared").unwrap();
    assert!((r2 - 1.0).abs() < 1e-12, "linear R^2 {r2}");
    assert!(summary.details["growth"]["best"] == "linear", "{}", summary.details);
    // Spectral bias: the time to learn comes from each checkpoint's residual vector.
    let sb = registry::find("spectral-bias").unwrap();
    let s = setup(sb, &fixture("spectral-bias", dir.path()));
    let opts = json!({ "threshold": 2.0 });
    let out = measure(sb, &s, &opts, Precision::F64);
    let summary = sb.series(&[5, 9], &[out.clone(), out], &sb.options_from_json(opts).unwrap()).unwrap().unwrap();
    // Every residual is below 2 (they are at most about 1 for an untrained net), so each
    // frequency is learned at the first step.
    assert_eq!(summary.vector("time_to_learn").unwrap(), &[5.0, 5.0, 5.0]);
    assert!(
        registry::find("hessian")
            .unwrap()
            .series(&[], &[], &registry::find("hessian").unwrap().options_from_json(json!({})).unwrap())
            .is_none()
    );
}

#[test]
fn data_comes_from_the_flag_the_checkpoint_or_an_error() {
    let needs = registry::find("loss").unwrap().needs();
    let path = Path::new("run/final.safetensors");
    let none = TrainedOn::default();
    let trained = TrainedOn { data: Some("mnist1d:n=500".into()), split: Some("train".into()), seed: Some("3".into()) };
    let given = resolve_data(Some("sines"), Some((path, &trained)), &needs).unwrap().unwrap();
    assert_eq!((given.spec.as_str(), given.source), ("sines", DataSource::Given));
    let own = resolve_data(None, Some((path, &trained)), &needs).unwrap().unwrap();
    assert_eq!((own.spec.as_str(), own.source), ("mnist1d:n=500", DataSource::Checkpoint));
    assert_eq!(own.trained_split.as_deref(), Some("train"));
    let e = resolve_data(None, Some((path, &none)), &needs).unwrap_err();
    assert_eq!(e, "run/final.safetensors: this checkpoint does not say what data it was trained on: pass --data SPEC");
    // Probes without a checkpoint: their own stated default, or an error; none for no data.
    let prior = registry::find("prior-functions").unwrap().needs();
    let d = resolve_data(None, None, &prior).unwrap().unwrap();
    assert_eq!((d.spec.as_str(), d.source), ("boolean:d=7", DataSource::ProbeDefault));
    assert!(resolve_data(None, None, &needs).is_err());
    let kernel = registry::find("kernel-spectrum").unwrap().needs();
    assert_eq!(resolve_data(Some("mnist1d"), None, &kernel).unwrap(), None);
}
