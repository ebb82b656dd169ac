//! Golden values from an independent framework (JAX, float64; PyTorch for the checkpoint), made
//! by the scripts in `tests/golden/` at the repository root. Never regenerate them from sgdlab.

use ndarray::{Array2, ArrayView2};
use serde_json::Value;
use sgdlab_nn::{ArchSpec, Batch, Loss, Model, Objective, Reduction, Targets, load_checkpoint};
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
        !worst.0.is_nan() && worst.0 <= GOLDEN_REL,
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
        Loss::Mse => {
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
