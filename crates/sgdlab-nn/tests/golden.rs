//! Golden values from an independent framework (JAX, float64; PyTorch for the checkpoint), made
//! by the scripts in `tests/golden/` at the repository root. Never regenerate them from sgdlab.

use ndarray::{Array2, ArrayView2};
use serde_json::Value;
use sgdlab_nn::{
    ArchSpec, Batch, Loss, Mode, Model, Objective, Reduction, Shape, Targets, arch_from_torch_text, load_checkpoint,
    load_tensors,
};
use std::path::PathBuf;

/// Golden values must match to 1e-9 relative, element by element; entries whose magnitude is
/// below 1e-4 of the vector's largest are compared against that scale instead (an absolute
/// floor, so that near-zero entries do not demand more digits than the computation has).
const GOLDEN_REL: f64 = 1e-9;
const FLOOR_FRACTION: f64 = 1e-4;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn read_json(name: &str) -> Value {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number array: {other}"),
    }
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    Array2::from_shape_vec((rows.len(), cols), flat(v)).unwrap()
}

fn assert_close(what: &str, actual: &[f64], expected: &[f64]) {
    assert_close_rel(what, actual, expected, GOLDEN_REL);
}

fn assert_close_rel(what: &str, actual: &[f64], expected: &[f64], rel: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut worst = (0.0, 0usize);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let err = (a - e).abs() / e.abs().max(FLOOR_FRACTION * scale).max(f64::MIN_POSITIVE);
        if err.is_nan() || err > worst.0 {
            worst = (err, i);
        }
    }
    let i = worst.1;
    if std::env::var_os("GOLDEN_REPORT").is_some() {
        eprintln!("{what}: worst relative error {:.2e}", worst.0);
    }
    assert!(
        !worst.0.is_nan() && worst.0 <= rel,
        "{what}: worst relative error {:.3e} at index {i}: expected {}, got {}",
        worst.0,
        expected[i],
        actual[i]
    );
}

/// Every quantity of one golden case (JAX's) against the model's, parameters in `param_names`
/// order: logits, loss, gradient, HVP, GGN-vector product, both quadratic forms, per-example
/// gradients, input Jacobian (and its norms when stored).
fn check_case(c: &Value, model: &Model) {
    let name = c["name"].as_str().unwrap();
    let names: Vec<&str> = c["param_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let layout_names: Vec<&str> = model.layout().entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, layout_names, "{name}: parameter order");
    if let Some(shapes) = c.get("param_shapes") {
        for e in model.layout().entries() {
            let want: Vec<usize> =
                shapes[&e.name].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(e.shape, want, "{name}: shape of {}", e.name);
        }
    }
    let p: Vec<f64> = names.iter().flat_map(|n| flat(&c["params"][*n])).collect();
    assert_eq!(p.len(), model.num_params());
    let x = matrix(&c["x"]);
    let loss: Loss = c["loss"].as_str().unwrap().parse().unwrap();
    let reduction = match c["reduction"].as_str().unwrap() {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        r => panic!("{r}"),
    };
    let obj = Objective { loss, reduction };
    let classes: Vec<u32>;
    let values: Array2<f64>;
    let targets = match loss {
        Loss::CrossEntropy => {
            classes = c["y"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            Targets::Classes(&classes)
        }
        Loss::Logistic => {
            classes = flat(&c["y"]).into_iter().map(|v| v as u32).collect();
            Targets::Classes(&classes)
        }
        Loss::Mse | Loss::Sobolev { .. } => {
            values = matrix(&c["y"]);
            Targets::Values(values.view())
        }
    };
    let batch = Batch { x: x.view(), targets };
    let v = flat(&c["v"]);

    let logits = model.forward(&p, x.view()).unwrap();
    assert_close(&format!("{name} logits"), logits.as_slice().unwrap(), &flat(&c["logits"]));
    let lg = model.loss_and_gradient(&p, &batch, &obj).unwrap();
    assert_close(&format!("{name} loss"), &[lg.loss], &[c["loss_value"].as_f64().unwrap()]);
    assert_close(&format!("{name} gradient"), &lg.gradient, &flat(&c["gradient"]));
    let hv = model.hvp(&p, &batch, &obj, &v).unwrap();
    assert_close(&format!("{name} hvp"), &hv, &flat(&c["hvp"]));
    let gv = model.ggn_vp(&p, &batch, &obj, &v).unwrap();
    assert_close(&format!("{name} ggn_vp"), &gv, &flat(&c["ggn_vp"]));
    // Quadratic forms by forward passes only against v . (JAX's H v) and v . (JAX's G v).
    let vs = ndarray::ArrayView2::from_shape((1, v.len()), &v).unwrap();
    let dot = |a: &[f64]| a.iter().zip(&v).map(|(x, y)| x * y).sum::<f64>();
    let q = model.hessian_quadratic_forms(&p, &batch, &obj, vs).unwrap();
    assert_close(&format!("{name} v^T H v"), &q, &[dot(&flat(&c["hvp"]))]);
    let qg = model.ggn_quadratic_forms(&p, &batch, &obj, vs).unwrap();
    assert_close(&format!("{name} v^T G v"), &qg, &[dot(&flat(&c["ggn_vp"]))]);
    let pe = model.per_example_gradients(&p, &batch, &obj).unwrap();
    assert_close(&format!("{name} per-example gradients"), pe.as_slice().unwrap(), &flat(&c["per_example_gradients"]));
    let jac = model.input_jacobian(&p, x.view()).unwrap();
    assert_close(&format!("{name} input Jacobian"), jac.as_slice().unwrap(), &flat(&c["input_jacobian"]));
    if let Some(norms) = c.get("input_jacobian_sq_frobenius") {
        let fro = model.input_jacobian_sq_frobenius(&p, x.view()).unwrap();
        assert_close(&format!("{name} input-Jacobian norms"), &fro, &flat(norms));
    }
}

#[test]
fn jax_golden_values_match() {
    let g = read_json("golden_mlp.json");
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let arch: ArchSpec = c["arch"].as_str().unwrap().parse().unwrap();
        check_case(c, &Model::new(&arch));
    }
}

/// Convolutional nets with every layer kind (conv1d/2d with stride, padding, dilation, groups;
/// max and average pooling, adaptive average pooling, flatten, dropout, batch norm 1d/2d with
/// running statistics, layer norm), against JAX's float64 autodiff of its own implementation.
/// The Sobolev-weighted loss against JAX (`jnp.fft`, float64): 1e-10 relative (same floor).
const SOBOLEV_GOLDEN_REL: f64 = 1e-10;

#[test]
fn jax_sobolev_golden_values_match() {
    let doc = read_json("golden_sobolev.json");
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let model = Model::new(&c["arch"].as_str().unwrap().parse::<ArchSpec>().unwrap());
        let names: Vec<&str> = c["param_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let layout: Vec<&str> = model.layout().entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, layout, "{name}: parameter order");
        let p: Vec<f64> = names.iter().flat_map(|n| flat(&c["params"][*n])).collect();
        let (x, y) = (matrix(&c["x"]), matrix(&c["y"]));
        assert_eq!(x.nrows(), c["n"].as_u64().unwrap() as usize, "{name}: grid size");
        let reduction = match c["reduction"].as_str().unwrap() {
            "mean" => Reduction::Mean,
            "sum" => Reduction::Sum,
            r => panic!("{r}"),
        };
        let obj = Objective { loss: Loss::Sobolev { s: c["s"].as_f64().unwrap() }, reduction };
        let batch = Batch { x: x.view(), targets: Targets::Values(y.view()) };
        let close =
            |what: &str, a: &[f64], e: &[f64]| assert_close_rel(&format!("{name} {what}"), a, e, SOBOLEV_GOLDEN_REL);
        close("logits", model.forward(&p, x.view()).unwrap().as_slice().unwrap(), &flat(&c["logits"]));
        let lg = model.loss_and_gradient(&p, &batch, &obj).unwrap();
        close("loss", &[lg.loss], &[c["loss"].as_f64().unwrap()]);
        close("gradient", &lg.gradient, &flat(&c["gradient"]));
        close("hvp", &model.hvp(&p, &batch, &obj, &flat(&c["v"])).unwrap(), &flat(&c["hvp"]));
    }
}

#[test]
fn jax_cnn_golden_values_match() {
    let g = read_json("golden_cnn.json");
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let mut kinds = std::collections::BTreeSet::new();
    for c in cases {
        let arch: ArchSpec = c["arch"].as_str().unwrap().parse().unwrap();
        let mut model = Model::new(&arch);
        assert_eq!(model.in_shape().dims(), flat(&c["input_shape"]).iter().map(|&d| d as usize).collect::<Vec<_>>());
        let buffers = c["buffers"].as_object().unwrap();
        for b in model.buffers() {
            if let Some(v) = buffers.get(&b.name) {
                model.set_buffer(&b.name, &flat(v)).unwrap();
            }
        }
        for l in model.layers() {
            kinds.insert(l.kind());
        }
        check_case(c, &model);
    }
    let all = [
        "conv1d",
        "conv2d",
        "maxpool1d",
        "maxpool2d",
        "avgpool1d",
        "avgpool2d",
        "batchnorm1d",
        "batchnorm2d",
        "flatten",
        "dropout",
        "layernorm",
        "linear",
        "activation",
    ];
    assert!(all.iter().all(|k| kinds.contains(k)), "kinds covered: {kinds:?}");
}

#[test]
fn pytorch_checkpoint_loads_with_arch_and_reproduces_logits() {
    let g = read_json("torch_sequential.json");
    let arch: ArchSpec = g["arch"].as_str().unwrap().parse().unwrap();
    let ck = load_checkpoint::<f32>(&golden_dir().join("torch_sequential.safetensors"), Some(&arch)).unwrap();
    let x64 = matrix(&g["x"]);
    let x: Array2<f32> = x64.mapv(|v| v as f32);
    let z = ck.model.forward(ck.params.as_slice(), x.view()).unwrap();
    let expected = flat(&g["logits"]);
    // f32 against PyTorch's f32: a few ulps of the largest logit (different summation order).
    for (a, e) in z.iter().zip(&expected) {
        assert!((*a as f64 - e).abs() <= 8.0 * f32::EPSILON as f64, "{a} vs {e}");
    }
    // Without the architecture the file cannot be interpreted, and that is said.
    let e = load_checkpoint::<f32>(&golden_dir().join("torch_sequential.safetensors"), None).unwrap_err().to_string();
    assert!(e.contains("sgdlab.arch") && e.contains("--arch"), "{e}");
    // The deliberately mis-shaped file names the tensor.
    let e = load_checkpoint::<f32>(&golden_dir().join("torch_sequential_bad_shape.safetensors"), Some(&arch))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'2.weight'") && e.contains("[5, 4]") && e.contains("torch_sequential_bad_shape.safetensors"),
        "{e}"
    );
    // f64 evaluation of the same weights matches PyTorch's f64 evaluation closely.
    let ck64 = load_checkpoint::<f64>(&golden_dir().join("torch_sequential.safetensors"), Some(&arch)).unwrap();
    let z64 = ck64.model.forward(ck64.params.as_slice(), ArrayView2::from(&x64)).unwrap();
    assert_close("torch f64 logits", z64.as_slice().unwrap(), &flat(&g["logits_f64"]));
}

/// A PyTorch model as saved (`print(model)` text, `state_dict` in safetensors) and PyTorch's
/// own outputs on a fixed batch (`tests/golden/make_torch_cnn.py`).
struct TorchModel {
    name: &'static str,
    json: Value,
    arch: ArchSpec,
}

/// Logits, loss, the loss gradient as (parameter name, values), and the model after the pass.
type TorchOutputs = (Vec<f64>, f64, Vec<(String, Vec<f64>)>, Model);

fn torch_model(name: &'static str) -> TorchModel {
    let json = read_json(&format!("{name}.json"));
    let text = std::fs::read_to_string(golden_dir().join(format!("{name}.txt"))).unwrap();
    let dims: Vec<usize> = flat(&json["input_shape"]).iter().map(|&d| d as usize).collect();
    let arch = arch_from_torch_text(&text, Shape::from_dims(&dims).unwrap()).unwrap();
    TorchModel { name, json, arch }
}

/// The model's outputs in precision `T`: logits, loss and gradient (by name), in the mode of the
/// reference (training mode: batch statistics; then the running statistics after that pass).
fn torch_outputs<T: sgdlab_linalg::Scalar>(t: &TorchModel) -> TorchOutputs {
    let path = golden_dir().join(format!("{}.safetensors", t.name));
    let ck = load_checkpoint::<T>(&path, Some(&t.arch)).unwrap();
    // The inputs are float32 data (shortest decimals in the file): widened exactly for float64.
    let x = matrix(&t.json["x"]).mapv(|v| T::from_f64(v as f32 as f64));
    let y: Vec<u32> = t.json["y"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let batch = Batch { x: x.view(), targets: Targets::Classes(&y) };
    let obj = Objective::mean(Loss::CrossEntropy);
    let mode = match t.json["mode"].as_str().unwrap() {
        "train" => Mode::Train { dropout: sgdlab_linalg::RngStream::new(0).child("dropout") },
        _ => Mode::Eval,
    };
    let mut model = ck.model;
    let p = ck.params.as_slice();
    let view = model.in_mode(&mode);
    let z = view.forward(p, x.view()).unwrap();
    let mut grad = vec![T::zero(); model.num_params()];
    let step = view.gradient_into(p, &batch, &obj, &mut grad).unwrap();
    model.update_running_stats(&step.batch_statistics);
    let by_name = model
        .layout()
        .entries()
        .iter()
        .map(|e| (e.name.clone(), grad[e.offset..e.offset + e.len].iter().map(|&v| v.to_f64()).collect()))
        .collect();
    (z.iter().map(|&v| v.to_f64()).collect(), step.loss.to_f64(), by_name, model)
}

/// LeNet-5 on MNIST images and a model with BatchNorm2d (evaluation mode), Dropout and a grouped
/// convolution, loaded from PyTorch's `print(model)` text and `state_dict`, reproduce PyTorch's
/// logits (float32 to a few ulps of the largest logit, float64 to 1e-9) and its loss gradient;
/// a third model in training mode also its batch-statistics pass and running statistics.
#[test]
fn pytorch_cnns_load_from_print_text_and_reproduce_outputs() {
    for name in ["torch_lenet5", "torch_bn_dropout", "torch_bn_train"] {
        let t = torch_model(name);
        let names: Vec<&str> = t.json["state_dict"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let model = Model::new(&t.arch);
        let ours: Vec<String> = model
            .layout()
            .entries()
            .iter()
            .map(|e| e.name.clone())
            .chain(model.buffers().into_iter().map(|b| b.name))
            .collect();
        let mut sorted = ours.clone();
        sorted.sort();
        let mut theirs: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        theirs.sort();
        assert_eq!(sorted, theirs, "{name}: state_dict names");
        let (grads, _) = load_tensors::<f64>(&golden_dir().join(t.json["gradient_file"].as_str().unwrap())).unwrap();
        let grad_of = |prefix: &str, g: &[(String, Vec<f64>)]| -> (Vec<f64>, Vec<f64>) {
            let mut want = Vec::new();
            let mut got = Vec::new();
            for (n, v) in g {
                let (_, _, w) = grads.iter().find(|(k, _, _)| *k == format!("{prefix}/{n}")).unwrap();
                want.extend_from_slice(w);
                got.extend_from_slice(v);
            }
            (got, want)
        };

        // float32 against PyTorch's float32.
        let (z32, loss32, g32, m32) = torch_outputs::<f32>(&t);
        let expected = flat(&t.json["logits"]);
        let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let worst = z32.iter().zip(&expected).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
        let ulp = f32::EPSILON as f64 * scale;
        if std::env::var_os("GOLDEN_REPORT").is_some() {
            eprintln!("{name} f32 logits: worst {worst:.2e} = {:.1} ulp of the largest logit", worst / ulp);
        }
        assert!(worst <= 8.0 * ulp, "{name}: f32 logits differ by {worst:.3e} ({:.1} ulp)", worst / ulp);
        assert!((loss32 - t.json["loss"].as_f64().unwrap()).abs() <= 8.0 * f32::EPSILON as f64 * loss32.abs().max(1.0));
        // The f32 gradient: two f32 computations in different orders, each a few ulps of the
        // largest entry off (measured: at most 2).
        let (got, want) = grad_of("f32", &g32);
        let gscale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let gworst = got.iter().zip(&want).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
        if std::env::var_os("GOLDEN_REPORT").is_some() {
            eprintln!(
                "{name} f32 gradient: worst {gworst:.2e} of scale {gscale:.2e} ({:.1e} relative)",
                gworst / gscale
            );
        }
        assert!(
            gworst <= 16.0 * f32::EPSILON as f64 * gscale,
            "{name}: f32 gradient differs by {gworst:.3e} (scale {gscale:.3e})"
        );

        // float64 (the same weights) against PyTorch's float64.
        let (z64, loss64, g64, m64) = torch_outputs::<f64>(&t);
        assert_close(&format!("{name} f64 logits"), &z64, &flat(&t.json["logits_f64"]));
        assert_close(&format!("{name} f64 loss"), &[loss64], &[t.json["loss_f64"].as_f64().unwrap()]);
        let (got, want) = grad_of("f64", &g64);
        assert_close(&format!("{name} f64 gradient"), &got, &want);

        // Training mode: the running statistics after the pass, as PyTorch updated them.
        if let Some(after) = t.json.get("running_after") {
            for (m, tol) in [(&m32, 1e-6), (&m64, 1e-6)] {
                for b in m.buffers() {
                    let want = flat(&after[&b.name]);
                    for (a, e) in b.values.iter().zip(&want) {
                        assert!((a - e).abs() <= tol * e.abs().max(1.0), "{name} {}: {a} vs {e}", b.name);
                    }
                }
            }
        }
    }
}

/// `--arch-file` errors are one line naming the problem: an unsupported module (with its index),
/// a printed architecture that does not match the state_dict (naming the tensor).
#[test]
fn print_text_errors_name_the_module_or_tensor() {
    let lenet = std::fs::read_to_string(golden_dir().join("torch_lenet5.txt")).unwrap();
    let img = Shape::image(1, 28, 28);
    let bad = lenet.replace("(4): ReLU()", "(4): ELU(alpha=1.0)");
    let e = arch_from_torch_text(&bad, img).unwrap_err();
    assert!(e.contains("module 4 ELU: not supported") && !e.contains('\n'), "{e}");
    let wider = lenet.replace("Conv2d(1, 6,", "Conv2d(1, 8,").replace("Conv2d(6, 16,", "Conv2d(8, 16,");
    let arch = arch_from_torch_text(&wider, img).unwrap();
    let e =
        load_checkpoint::<f32>(&golden_dir().join("torch_lenet5.safetensors"), Some(&arch)).unwrap_err().to_string();
    assert!(
        e.contains("tensor '0.weight' has shape [6, 1, 5, 5]") && e.contains("needs [8, 1, 5, 5]") && !e.contains('\n'),
        "{e}"
    );
    let e = arch_from_torch_text(&lenet, Shape::image(1, 32, 32)).unwrap_err();
    assert!(e.contains("module 7 Linear: in_features=400, but its input has 576 features"), "{e}");
}
