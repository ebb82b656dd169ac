//! The conformance suite (DESIGN.md section 3, STYLE.md "Testing numerical code"), in f64:
//!
//! * every layer: jvp against central differences; vjp by the dot-product test against the jvp;
//!   the R-operator (tangent of the vjp) against central differences of the vjp; per-example
//!   parameter cotangents summing to the batch ones and equal to the single-example ones; the
//!   second-order forward rule (`jet2`): its first tangent equals the jvp, its second the
//!   derivative of the jvp along the curve (central differences);
//! * every loss and reduction, over several architectures (each activation, layer norm, no bias,
//!   residual blocks): gradient against central differences of the loss; HVP against
//!   differences of the gradient; HVP symmetry; quadratic forms `v^T H v`, `v^T G v` by forward
//!   passes against differences and the products; GGN products against an explicit J^T H_z J built
//!   from finite differences of the logits; output jvp (parameters and inputs) against
//!   differences of the logits; per-example gradients summing to the gradient and equal to the
//!   single-example gradients; the input Jacobian against differences; activations ending in
//!   the logits;
//! * tiny nets (< 100 parameters, batches of 3 and 4): the explicit Hessian built from HVP columns
//!   equals the one from second differences of the loss, and is symmetric; its diagonal and a
//!   random quadratic form by second-order forward mode match the same differences.
//!
//! Inputs are drawn with fixed seeds; kinked activations (ReLU, leaky ReLU, Hat) are evaluated away
//! from their kinks (the harness checks the margin before differencing).

mod common;
use common::{assert_close, axpy, dot, randv};
use ndarray::{Array1, Array2, ArrayView2};
use sgdlab_linalg::{RngStream, StreamRng, standard_normal};
use sgdlab_nn::layer::Trace;
use sgdlab_nn::{
    Activation, ArchSpec, Batch, Layer, LayerNorm, Linear, Loss, Mode, Model, Objective, Reduction, SeqSpec, Targets,
};

/// Central-difference step (STYLE.md: about 6e-6 * max(1, |x|); directions have unit-scale
/// entries).
const H: f64 = 6e-6;
/// First derivatives by central differences: truncation O(h^2) ~ 1e-10, rounding O(eps/h) ~ 4e-11.
const TOL_FIRST: f64 = 2e-7;
/// Second derivatives from differences of exact gradients: same orders as above.
const TOL_SECOND: f64 = 2e-7;
/// Identities that hold exactly up to rounding (dot-product test, symmetry, sums).
const TOL_EXACT: f64 = 1e-11;
/// Hessian from Richardson-extrapolated second differences of the loss (steps 1e-3 and 5e-4):
/// truncation O(h^4) ~ 1e-10 of the scale, rounding eps * |L| / h^2 ~ 1e-9.
const TOL_HESSIAN_FD: f64 = 1e-7;
/// Minimum distance of any kinked pre-activation from its kink for differences to be valid.
const KINK_MARGIN: f64 = 1e-3;

fn randn(rng: &mut StreamRng, shape: (usize, usize)) -> Array2<f64> {
    Array2::from_shape_fn(shape, |_| standard_normal::<f64, _>(rng))
}

/// Smallest distance of the traced pass from any layer's non-differentiable points (kinks of
/// activations, ties in max-pool windows), over the whole (possibly nested) trace.
fn kink_margin(layers: &[Layer], traces: &[Trace<f64>]) -> f64 {
    layers.iter().zip(traces).map(|(l, t)| l.kink_distance(t)).fold(f64::INFINITY, f64::min)
}

// ---------------------------------------------------------------------------------------------
// Layer rules.

/// A layer of the table: its name, the layer, its input width, and the mode its passes run in.
struct LayerCase {
    name: String,
    layer: Layer,
    in_dim: usize,
    mode: Mode,
}

/// The layer that `spec` (architecture-string grammar) builds on inputs of shape `input`.
fn built(input: &str, spec: &str) -> (Layer, usize) {
    let seq = SeqSpec::parse(input, spec).unwrap();
    let (mut layers, shapes) = seq.build().unwrap();
    (layers.remove(0), shapes[0].len())
}

/// Random running statistics, so that evaluation-mode batch norm is not the identity.
fn with_running_stats(mut layer: Layer, seed: u64) -> Layer {
    if let Layer::BatchNorm(bn) = &mut layer {
        let mut rng = RngStream::new(seed).rng();
        for c in 0..bn.features {
            bn.running_mean[c] = 0.5 * standard_normal::<f64, _>(&mut rng);
            bn.running_var[c] = 0.5 + standard_normal::<f64, _>(&mut rng).abs();
        }
    }
    layer
}

fn train_mode(name: &str) -> Mode {
    Mode::Train { dropout: RngStream::new(17).child("dropout").child(name) }
}

fn all_layers() -> Vec<LayerCase> {
    let case =
        |name: &str, layer: Layer, in_dim: usize| LayerCase { name: name.into(), layer, in_dim, mode: Mode::Eval };
    let mut v: Vec<LayerCase> = vec![
        case("linear", Layer::Linear(Linear { in_dim: 5, out_dim: 4, bias: true }), 5),
        case("linear-nobias", Layer::Linear(Linear { in_dim: 3, out_dim: 6, bias: false }), 3),
        case("layernorm", Layer::LayerNorm(LayerNorm { dim: 6, affine: true, eps: 1e-5 }), 6),
        case("layernorm-plain", Layer::LayerNorm(LayerNorm { dim: 4, affine: false, eps: 1e-5 }), 4),
    ];
    for a in Activation::ALL {
        v.push(case(&format!("activation-{a}"), Layer::Activation(a), 5));
    }
    v.push(case(
        "residual-ln-gelu",
        Layer::Residual(vec![
            Layer::LayerNorm(LayerNorm { dim: 4, affine: true, eps: 1e-5 }),
            Layer::Linear(Linear { in_dim: 4, out_dim: 3, bias: true }),
            Layer::Activation(Activation::Gelu),
            Layer::Linear(Linear { in_dim: 3, out_dim: 4, bias: true }),
        ]),
        4,
    ));
    v.push(case(
        "residual-relu",
        Layer::Residual(vec![
            Layer::Linear(Linear { in_dim: 4, out_dim: 5, bias: true }),
            Layer::Activation(Activation::Relu),
            Layer::Linear(Linear { in_dim: 5, out_dim: 4, bias: false }),
        ]),
        4,
    ));
    v.push(case(
        "residual-nested-tanh",
        Layer::Residual(vec![Layer::Residual(vec![
            Layer::Linear(Linear { in_dim: 3, out_dim: 3, bias: true }),
            Layer::Activation(Activation::Tanh),
        ])]),
        3,
    ));
    // Shaped layers, built from architecture-string specs on awkward geometries.
    for (name, input, spec) in [
        ("conv2d", "2x5x5", "conv2d(3,3,padding=1)"),
        (
            "conv2d-stride-pad-dil-groups",
            "4x7x6",
            "conv2d(6,2x3,stride=2x1,padding=1x2,dilation=2x1,groups=2,bias=false)",
        ),
        ("conv2d-depthwise-stride3", "3x8x7", "conv2d(3,3,stride=3,padding=2,groups=3)"),
        ("conv1d-stride-pad-dil-groups", "2x11", "conv1d(4,3,stride=2,padding=1,dilation=2,groups=2)"),
        ("conv1d-nobias", "3x6", "conv1d(2,4,bias=false)"),
        // Unfoldings above a chunk each (layer/conv.rs): every batch runs in several chunks.
        ("conv2d-chunked", "3x20x20", "conv2d(4,5,padding=2)"),
        ("conv1d-chunked-groups", "4x3000", "conv1d(4,7,padding=3,groups=2)"),
        ("maxpool2d", "3x6x6", "maxpool2d(2)"),
        ("maxpool2d-overlap-pad-dil", "2x7x7", "maxpool2d(3,stride=2,padding=1,dilation=2)"),
        ("maxpool1d", "2x9", "maxpool1d(3,stride=2,padding=1)"),
        ("avgpool2d", "2x4x6", "avgpool2d(2)"),
        ("avgpool2d-pad-exclude", "2x5x5", "avgpool2d(3,stride=2,padding=1,count_include_pad=false)"),
        ("avgpool2d-pad-include", "1x5x4", "avgpool2d(2x3,stride=1,padding=1)"),
        ("avgpool1d", "3x7", "avgpool1d(3,stride=1,padding=1)"),
        ("adaptiveavgpool2d", "3x4x5", "adaptiveavgpool2d(1)"),
        ("adaptiveavgpool2d-2x1", "2x4x3", "adaptiveavgpool2d(2x1)"),
        ("flatten", "2x3x3", "flatten"),
        ("flatten-2", "2x3x3", "flatten(2)"),
        ("dropout", "6", "dropout(0.3)"),
        ("batchnorm2d", "3x3x4", "batchnorm2d"),
        ("batchnorm2d-plain", "2x3x3", "batchnorm2d(affine=false)"),
        ("batchnorm1d", "5", "batchnorm1d"),
        ("batchnorm1d-seq", "3x4", "batchnorm1d(eps=0.01)"),
    ] {
        let (layer, in_dim) = built(input, spec);
        v.push(case(name, with_running_stats(layer, 23), in_dim));
    }
    // Training mode: dropout masks, batch statistics (the examples are coupled), and batch norm
    // without running statistics (batch statistics in every mode).
    for (name, input, spec) in [
        ("dropout-train", "2x3x2", "dropout(0.4)"),
        ("batchnorm2d-train", "3x3x4", "batchnorm2d"),
        ("batchnorm2d-train-plain", "2x2x3", "batchnorm2d(affine=false)"),
        ("batchnorm1d-train", "5", "batchnorm1d"),
        ("batchnorm1d-seq-train", "3x4", "batchnorm1d"),
    ] {
        let (layer, in_dim) = built(input, spec);
        v.push(LayerCase { name: name.into(), layer, in_dim, mode: train_mode(name) });
    }
    let (layer, in_dim) = built("4", "batchnorm1d(track_running_stats=false)");
    v.push(case("batchnorm1d-no-running-stats", layer, in_dim));
    // A residual block of shaped layers: conv -> batch norm -> relu -> conv, shape-preserving.
    let seq = SeqSpec::parse("2x4x4", "conv2d(3,3,padding=1)-batchnorm2d-relu-conv2d(2,3,padding=1)").unwrap();
    let (layers, _) = seq.build().unwrap();
    let layers = layers.into_iter().map(|l| with_running_stats(l, 29)).collect();
    v.push(case("residual-conv-bn-relu", Layer::Residual(layers), 32));
    v
}

fn traced(layer: &Layer, p: &[f64], x: &Array2<f64>, mode: &Mode) -> (Array2<f64>, Trace<f64>) {
    layer.forward_traced_in(p, x.clone(), mode)
}

/// Draws inputs, resampling until kinked pre-activations are at least KINK_MARGIN away.
fn layer_inputs(
    layer: &Layer,
    p: &[f64],
    rng: &mut StreamRng,
    batch: usize,
    in_dim: usize,
    mode: &Mode,
) -> Array2<f64> {
    for _ in 0..100 {
        let x = randn(rng, (batch, in_dim));
        let (_, t) = traced(layer, p, &x, mode);
        if kink_margin(std::slice::from_ref(layer), std::slice::from_ref(&t)) > KINK_MARGIN {
            return x;
        }
    }
    panic!("could not draw inputs away from the kinks");
}

#[test]
fn every_layer_passes_jvp_vjp_and_r_operator_checks() {
    for LayerCase { name, layer, in_dim, mode } in all_layers() {
        for batch in [3usize, 4] {
            let mut rng = RngStream::new(11).child(&name).child(&batch.to_string()).rng();
            let np = layer.num_params();
            let out = layer.out_dim(in_dim);
            let mut p = randv(&mut rng, np);
            // Keep layer-norm gains away from zero and weights moderate.
            p.iter_mut().for_each(|v| *v *= 0.7);
            let x = layer_inputs(&layer, &p, &mut rng, batch, in_dim, &mode);
            let dx = randn(&mut rng, (batch, in_dim));
            let dp = randv(&mut rng, np);
            let u = randn(&mut rng, (batch, out));
            let du = randn(&mut rng, (batch, out));

            // jvp against central differences.
            let (y, trace) = traced(&layer, &p, &x, &mode);
            assert_close(
                &format!("{name}: traced forward"),
                y.as_slice().unwrap(),
                layer.forward_in(&p, x.view(), &mode).as_slice().unwrap(),
                0.0,
            );
            let (dy, tt) = layer.jvp(&p, Some(&dp), &trace, Some(dx.clone()));
            let yp = layer.forward_in(&axpy(&p, H, &dp), (&x + &(&dx * H)).view(), &mode);
            let ym = layer.forward_in(&axpy(&p, -H, &dp), (&x - &(&dx * H)).view(), &mode);
            let fd = (&yp - &ym) / (2.0 * H);
            assert_close(
                &format!("{name} b{batch}: jvp vs differences"),
                dy.as_slice().unwrap(),
                fd.as_slice().unwrap(),
                TOL_FIRST,
            );
            // Each tangent alone (None = zero tangent) is consistent with the joint one.
            let (dy_x, _) = layer.jvp(&p, None, &trace, Some(dx.clone()));
            let (dy_p, _) = layer.jvp(&p, Some(&dp), &trace, None);
            let sum = &dy_x + &dy_p;
            assert_close(
                &format!("{name}: jvp linear in (dx, dp)"),
                sum.as_slice().unwrap(),
                dy.as_slice().unwrap(),
                TOL_EXACT,
            );

            // Dot-product test: u . (J_x dx + J_p dp) = (J_x^T u) . dx + (J_p^T u) . dp.
            let mut gp = vec![0.0; np];
            let gx = layer.vjp(&p, &trace, u.view(), Some(&mut gp), true).unwrap();
            let lhs = (&u * &dy).sum();
            let rhs = (&gx * &dx).sum() + dot(&gp, &dp);
            assert!((lhs - rhs).abs() <= TOL_EXACT * (1.0 + lhs.abs()), "{name}: dot-product test {lhs} vs {rhs}");
            // need_gx = false still accumulates the parameter cotangent.
            let mut gp2 = vec![0.0; np];
            assert!(layer.vjp(&p, &trace, u.view(), Some(&mut gp2), false).is_none());
            assert_close(&format!("{name}: vjp without gx"), &gp2, &gp, 0.0);

            // The traced vjp (the plain backward pass the R-operator starts from) equals the vjp
            // and keeps the output cotangent.
            let mut gp_t = vec![0.0; np];
            let (gx_t, cot) = layer.vjp_traced(&p, &trace, u.clone(), Some(&mut gp_t), true);
            assert_close(
                &format!("{name}: traced vjp gx equals vjp gx"),
                gx_t.unwrap().as_slice().unwrap(),
                gx.as_slice().unwrap(),
                TOL_EXACT,
            );
            assert_close(&format!("{name}: traced vjp gp equals vjp gp"), &gp_t, &gp, TOL_EXACT);
            assert_close(
                &format!("{name}: traced output cotangent"),
                cot.output.as_slice().unwrap(),
                u.as_slice().unwrap(),
                0.0,
            );

            // R-operator against central differences of the vjp along (dx, dp, du).
            let mut dgp = vec![0.0; np];
            let dgx = layer.vjp_tangent(&p, &dp, &trace, &tt, &cot, du.clone(), &mut dgp, true).unwrap();
            // need_gx = false still accumulates the parameter tangent.
            let mut dgp2 = vec![0.0; np];
            assert!(layer.vjp_tangent(&p, &dp, &trace, &tt, &cot, du.clone(), &mut dgp2, false).is_none());
            assert_close(&format!("{name}: R-op without dgx"), &dgp2, &dgp, 0.0);
            let vjp_at = |s: f64| {
                let ps = axpy(&p, s, &dp);
                let xs = &x + &(&dx * s);
                let us = &u + &(&du * s);
                let (_, t) = traced(&layer, &ps, &xs, &mode);
                let mut g = vec![0.0; np];
                let gx = layer.vjp(&ps, &t, us.view(), Some(&mut g), true).unwrap();
                (gx, g)
            };
            let (gxp, gpp) = vjp_at(H);
            let (gxm, gpm) = vjp_at(-H);
            let fd_gx = (&gxp - &gxm) / (2.0 * H);
            let fd_gp: Vec<f64> = gpp.iter().zip(&gpm).map(|(a, b)| (a - b) / (2.0 * H)).collect();
            assert_close(
                &format!("{name} b{batch}: R-op dgx vs differences"),
                dgx.as_slice().unwrap(),
                fd_gx.as_slice().unwrap(),
                TOL_SECOND,
            );
            assert_close(&format!("{name} b{batch}: R-op dgp vs differences"), &dgp, &fd_gp, TOL_SECOND);

            // Second-order forward mode along p + t dp with the input on x + t dx + (t^2/2) d2x:
            // dy is the jvp; d2y is the t-derivative of the jvp along the curve (whose velocity is
            // dx + t d2x), checked by central differences of that (already verified) jvp.
            let d2x = randn(&mut rng, (batch, in_dim));
            let (jdy, jd2y) = layer.jet2(&p, &dp, &trace, Some(&dx), Some(&d2x));
            let jdy = jdy.expect("a moving input gives a tangent");
            assert_close(
                &format!("{name}: jet2 dy equals jvp"),
                jdy.as_slice().unwrap(),
                dy.as_slice().unwrap(),
                TOL_EXACT,
            );
            let jvp_along = |t: f64| {
                let xs = &x + &(&dx * t) + &(&d2x * (0.5 * t * t));
                let vel = &dx + &(&d2x * t);
                let (_, tr) = traced(&layer, &axpy(&p, t, &dp), &xs, &mode);
                layer.jvp(&axpy(&p, t, &dp), Some(&dp), &tr, Some(vel)).0
            };
            let fd_d2y = (&jvp_along(H) - &jvp_along(-H)) / (2.0 * H);
            let jd2y = jd2y.unwrap_or_else(|| Array2::zeros(fd_d2y.dim()));
            assert_close(
                &format!("{name} b{batch}: jet2 d2y vs differences of the jvp"),
                jd2y.as_slice().unwrap(),
                fd_d2y.as_slice().unwrap(),
                TOL_SECOND,
            );
            // A fixed input (None) is the same as zero tangents, and without d2x the jet is the
            // d2x = 0 case of the full one.
            let zero = Array2::zeros((batch, in_dim));
            let (a0, b0) = layer.jet2(&p, &dp, &trace, None, None);
            let (a1, b1) = layer.jet2(&p, &dp, &trace, Some(&zero), Some(&zero));
            let or_zero = |o: Option<Array2<f64>>| o.unwrap_or_else(|| Array2::zeros((batch, out)));
            for (what, a, b) in [("dy", a0, a1), ("d2y", b0, b1)] {
                assert_close(
                    &format!("{name}: jet2 {what} with fixed input"),
                    or_zero(a).as_slice().unwrap(),
                    or_zero(b).as_slice().unwrap(),
                    TOL_EXACT,
                );
            }
            let (_, b2) = layer.jet2(&p, &dp, &trace, Some(&dx), None);
            let (_, b3) = layer.jet2(&p, &dp, &trace, Some(&dx), Some(&zero));
            assert_close(
                &format!("{name}: jet2 d2y without d2x"),
                or_zero(b2).as_slice().unwrap(),
                or_zero(b3).as_slice().unwrap(),
                TOL_EXACT,
            );

            // Per-example parameter cotangents: rows sum to the batch cotangent and each row is
            // the single-example cotangent; every entry is written (the buffer starts as NaN). A
            // layer coupling the examples refuses, naming itself.
            let mut rows = Array2::from_elem((batch, np), f64::NAN);
            if layer.couples_examples(&mode) {
                let e = layer.vjp_per_example(&p, &trace, u.view(), rows.view_mut(), true).unwrap_err();
                assert!(e.contains(layer.kind()) && e.contains("couples the examples"), "{name}: {e}");
                continue;
            }
            let gx_pe = layer.vjp_per_example(&p, &trace, u.view(), rows.view_mut(), true).unwrap().unwrap();
            assert_close(
                &format!("{name}: per-example gx"),
                gx_pe.as_slice().unwrap(),
                gx.as_slice().unwrap(),
                TOL_EXACT,
            );
            let summed = rows.sum_axis(ndarray::Axis(0));
            assert_close(&format!("{name}: per-example rows sum"), summed.as_slice().unwrap(), &gp, TOL_EXACT);
            for i in 0..batch {
                let xi = x.slice(ndarray::s![i..i + 1, ..]).to_owned();
                let (_, ti) = traced(&layer, &p, &xi, &mode);
                let mut gi = vec![0.0; np];
                layer.vjp(&p, &ti, u.slice(ndarray::s![i..i + 1, ..]), Some(&mut gi), false);
                assert_close(&format!("{name}: per-example row {i}"), rows.row(i).as_slice().unwrap(), &gi, TOL_EXACT);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Model passes.

struct Case {
    arch: &'static str,
    loss: Loss,
    /// Regression targets instead of classes (MSE only).
    values: bool,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for act in ["relu", "leaky_relu(0.1)", "tanh", "sigmoid", "erf", "gelu", "softplus", "hat", "identity"] {
        let arch: &'static str = Box::leak(format!("mlp:4-6-5-3:{act}").into_boxed_str());
        v.push(Case { arch, loss: Loss::CrossEntropy, values: false });
    }
    v.push(Case { arch: "mlp:4-6-5-3:tanh:layernorm", loss: Loss::Mse, values: true });
    v.push(Case { arch: "mlp:4-6-5-3:gelu:nobias", loss: Loss::Mse, values: false });
    v.push(Case { arch: "mlp:4-6-1:softplus", loss: Loss::Logistic, values: false });
    v.push(Case { arch: "mlp:4-6-1:relu:layernorm", loss: Loss::Logistic, values: false });
    v.push(Case { arch: "resmlp:4-5x2-3:tanh:layernorm", loss: Loss::CrossEntropy, values: false });
    v.push(Case { arch: "resmlp:4-5x2-3:relu", loss: Loss::Mse, values: true });
    v.push(Case { arch: "resmlp:4-5x1-3:hat:nobias,layernorm", loss: Loss::CrossEntropy, values: false });
    // Convolutional nets with every shaped layer kind (batch norm with random running
    // statistics, evaluation mode).
    for (arch, loss, values) in [
        ("seq:1x6x6:conv2d(2,3,padding=1)-tanh-maxpool2d(2)-flatten-linear(3)", Loss::CrossEntropy, false),
        (
            "seq:2x5x5:conv2d(4,3,stride=2,padding=1,groups=2)-batchnorm2d-relu-avgpool2d(2,stride=1)-flatten-dropout(0.5)-linear(3)",
            Loss::CrossEntropy,
            false,
        ),
        (
            "seq:2x9:conv1d(3,3,dilation=2)-gelu-maxpool1d(2)-conv1d(2,2,bias=false)-softplus-flatten-linear(2)",
            Loss::Mse,
            true,
        ),
        ("seq:1x5x5:conv2d(2,3)-sigmoid-adaptiveavgpool2d(1)-flatten-batchnorm1d-linear(3)", Loss::CrossEntropy, false),
        (
            "seq:3x4x4:conv2d(3,3,padding=1,groups=3,bias=false)-leaky_relu(0.1)-avgpool2d(3,stride=1,padding=1,count_include_pad=false)-flatten-layernorm-erf-linear(1)",
            Loss::Logistic,
            false,
        ),
        ("seq:1x7:conv1d(2,3,stride=2,padding=1)-batchnorm1d-tanh-avgpool1d(2)-flatten-linear(2)", Loss::Mse, false),
    ] {
        v.push(Case { arch, loss, values });
    }
    v
}

struct Setup {
    model: Model,
    p: Vec<f64>,
    x: Array2<f64>,
    classes: Vec<u32>,
    values: Array2<f64>,
    use_values: bool,
}

impl Setup {
    fn batch(&self) -> Batch<'_, f64> {
        self.batch_of(self.x.view())
    }
    fn batch_of<'a>(&'a self, x: ArrayView2<'a, f64>) -> Batch<'a, f64> {
        let targets =
            if self.use_values { Targets::Values(self.values.view()) } else { Targets::Classes(&self.classes) };
        Batch { x, targets }
    }
}

/// The model of `arch` with random batch-norm running statistics (so that evaluation-mode batch
/// norm is not the identity).
fn model_with_running_stats(arch: &str) -> Model {
    let arch: ArchSpec = arch.parse().unwrap();
    let mut model = Model::new(&arch);
    let mut rng = RngStream::new(41).child(&arch.to_string()).rng();
    for b in model.buffers() {
        let values: Vec<f64> = match b.name.rsplit('.').next().unwrap() {
            "running_mean" => (0..b.values.len()).map(|_| 0.3 * standard_normal::<f64, _>(&mut rng)).collect(),
            "running_var" => (0..b.values.len()).map(|_| 0.5 + standard_normal::<f64, _>(&mut rng).abs()).collect(),
            _ => vec![7.0],
        };
        model.set_buffer(&b.name, &values).unwrap();
    }
    model
}

fn setup(case: &Case, batch: usize, seed: u64) -> Setup {
    let model = model_with_running_stats(case.arch);
    let mut rng = RngStream::new(seed).child(case.arch).child(&batch.to_string()).rng();
    let k = model.out_dim();
    for _ in 0..200 {
        let p: Vec<f64> = randv(&mut rng, model.num_params()).iter().map(|v| 0.6 * v).collect();
        // Hat nets need pre-activations inside (0, 2) to be alive: shift inputs.
        let x = randn(&mut rng, (batch, model.in_dim()));
        let classes: Vec<u32> =
            (0..batch).map(|i| if case.loss == Loss::Logistic { (i % 2) as u32 } else { (i % k) as u32 }).collect();
        let values = randn(&mut rng, (batch, k));
        let s = Setup { model: model.clone(), p, x, classes, values, use_values: case.values };
        if margin_ok(&s) {
            return s;
        }
    }
    panic!("{}: could not draw a point away from the kinks", case.arch);
}

fn margin_ok(s: &Setup) -> bool {
    // Re-run the forward pass layer by layer to get the traces the kink check needs.
    let mut h = s.x.clone();
    let mut traces = Vec::new();
    for (i, l) in s.model.layers().iter().enumerate() {
        let (y, t) = l.forward_traced(s.model.layer_params(i, &s.p), h);
        traces.push(t);
        h = y;
    }
    kink_margin(s.model.layers(), &traces) > KINK_MARGIN
}

fn objectives() -> [Reduction; 2] {
    [Reduction::Mean, Reduction::Sum]
}

#[test]
fn model_passes_match_finite_differences() {
    for case in cases() {
        for batch in [3usize, 4] {
            let s = setup(&case, batch, 5);
            let m = &s.model;
            let np = m.num_params();
            let mut rng = RngStream::new(6).child(case.arch).rng();
            let u = randv(&mut rng, np);
            let v = randv(&mut rng, np);
            let dx = randn(&mut rng, s.x.dim());
            for reduction in objectives() {
                let obj = Objective { loss: case.loss, reduction };
                let tag = format!("{} {:?} {reduction:?} b{batch}", case.arch, case.loss);
                let b = s.batch();
                let lg = m.loss_and_gradient(&s.p, &b, &obj).unwrap();
                assert!(
                    (lg.loss - m.loss(&s.p, &b, &obj).unwrap()).abs() <= TOL_EXACT * (1.0 + lg.loss.abs()),
                    "{tag}: loss"
                );
                // gradient_into writes every entry: what the buffer held does not matter.
                let mut g_nan = vec![f64::NAN; np];
                m.gradient_into(&s.p, &b, &obj, &mut g_nan).unwrap();
                assert_close(&format!("{tag}: gradient_into over NaN"), &g_nan, &lg.gradient, 0.0);

                // Gradient against central differences of the loss along v.
                let lp = m.loss(&axpy(&s.p, H, &v), &b, &obj).unwrap();
                let lm = m.loss(&axpy(&s.p, -H, &v), &b, &obj).unwrap();
                let fd = (lp - lm) / (2.0 * H);
                assert_close(&format!("{tag}: gradient . v"), &[dot(&lg.gradient, &v)], &[fd], TOL_FIRST);

                // HVP against differences of the gradient, and symmetry.
                let hv = m.hvp(&s.p, &b, &obj, &v).unwrap();
                let gp = m.loss_and_gradient(&axpy(&s.p, H, &v), &b, &obj).unwrap().gradient;
                let gm = m.loss_and_gradient(&axpy(&s.p, -H, &v), &b, &obj).unwrap().gradient;
                let fd_hv: Vec<f64> = gp.iter().zip(&gm).map(|(a, c)| (a - c) / (2.0 * H)).collect();
                assert_close(&format!("{tag}: HVP vs differences of the gradient"), &hv, &fd_hv, TOL_SECOND);
                let hu = m.hvp(&s.p, &b, &obj, &u).unwrap();
                let (a, c) = (dot(&u, &hv), dot(&v, &hu));
                assert!((a - c).abs() <= TOL_EXACT * (1.0 + a.abs()), "{tag}: HVP symmetry {a} vs {c}");
                // The block form equals the single form, and returns the same gradient.
                let vs = Array2::from_shape_vec((2, np), [v.clone(), u.clone()].concat()).unwrap();
                let block = m.hvp_block(&s.p, &b, &obj, vs.view()).unwrap();
                assert_close(&format!("{tag}: hvp_block row 0"), block.hvps.row(0).as_slice().unwrap(), &hv, 0.0);
                assert_close(&format!("{tag}: hvp_block row 1"), block.hvps.row(1).as_slice().unwrap(), &hu, 0.0);
                assert_close(&format!("{tag}: hvp_block gradient"), &block.gradient, &lg.gradient, TOL_EXACT);
                // Products from a cached forward pass equal fresh ones, bit for bit.
                let cache = m.hvp_cache(&s.p, &b, &obj).unwrap();
                let cached = m.hvp_cached(&s.p, &cache, &b, &obj, vs.view()).unwrap();
                assert_close(
                    &format!("{tag}: hvp_cached"),
                    cached.as_slice().unwrap(),
                    block.hvps.as_slice().unwrap(),
                    0.0,
                );
                assert!((cache.loss - lg.loss).abs() <= TOL_EXACT * (1.0 + lg.loss.abs()));
                let ggn_cached = m.ggn_vp_cached(&s.p, &cache, &b, &obj, vs.view()).unwrap();
                let ggn_fresh = m.ggn_vp_block(&s.p, &b, &obj, vs.view()).unwrap();
                assert_close(
                    &format!("{tag}: ggn_vp_cached"),
                    ggn_cached.as_slice().unwrap(),
                    ggn_fresh.as_slice().unwrap(),
                    0.0,
                );

                // Quadratic forms by second-order forward mode: v^T H v against v . (differences
                // of the gradient) and against the HVPs; cached = fresh, bit for bit.
                let q = m.hessian_quadratic_forms(&s.p, &b, &obj, vs.view()).unwrap();
                assert_close(&format!("{tag}: v^T H v vs differences"), &q[..1], &[dot(&v, &fd_hv)], TOL_SECOND);
                assert_close(&format!("{tag}: quadratic forms vs HVPs"), &q, &[dot(&v, &hv), dot(&u, &hu)], TOL_EXACT);
                let qc = m.hessian_quadratic_forms_cached(&s.p, &cache, &b, &obj, vs.view()).unwrap();
                assert_close(&format!("{tag}: cached quadratic forms"), &qc, &q, 0.0);

                // GGN: u . G v = (J u) . H_z (J v) with J u, J v from differences of the logits.
                let jd = |w: &[f64]| {
                    let zp = m.forward(&axpy(&s.p, H, w), s.x.view()).unwrap();
                    let zm = m.forward(&axpy(&s.p, -H, w), s.x.view()).unwrap();
                    (&zp - &zm) / (2.0 * H)
                };
                let (ju, jv) = (jd(&u), jd(&v));
                let z = m.forward(&s.p, s.x.view()).unwrap();
                let hjv = case.loss.hessian_vp(z.view(), &b.targets, jv.view(), reduction);
                let gv = m.ggn_vp(&s.p, &b, &obj, &v).unwrap();
                let gu = m.ggn_vp(&s.p, &b, &obj, &u).unwrap();
                assert_close(
                    &format!("{tag}: u.Gv vs (Ju).H_z(Jv)"),
                    &[dot(&u, &gv)],
                    &[(&ju * &hjv).sum()],
                    TOL_FIRST,
                );
                let (a, c) = (dot(&u, &gv), dot(&v, &gu));
                assert!((a - c).abs() <= TOL_EXACT * (1.0 + a.abs()), "{tag}: GGN symmetry {a} vs {c}");
                // GGN quadratic forms: v^T G v = (J v) . H_z (J v), from differences of the logits
                // and from the GGN products.
                let qg = m.ggn_quadratic_forms(&s.p, &b, &obj, vs.view()).unwrap();
                assert_close(&format!("{tag}: v^T G v vs differences"), &qg[..1], &[(&jv * &hjv).sum()], TOL_FIRST);
                assert_close(&format!("{tag}: GGN forms vs products"), &qg, &[dot(&v, &gv), dot(&u, &gu)], TOL_EXACT);
                let qgc = m.ggn_quadratic_forms_cached(&s.p, &cache, &b, &obj, vs.view()).unwrap();
                assert_close(&format!("{tag}: cached GGN forms"), &qgc, &qg, 0.0);

                // Per-example gradients: rows sum to the gradient; row i is the gradient of the
                // batch loss restricted to example i (same normaliser).
                let pe = m.per_example_gradients(&s.p, &b, &obj).unwrap();
                assert_close(
                    &format!("{tag}: per-example gradients sum"),
                    pe.sum_axis(ndarray::Axis(0)).as_slice().unwrap(),
                    &lg.gradient,
                    TOL_EXACT,
                );
                let full_scale: f64 = case.loss.scale(batch, m.out_dim(), reduction);
                for i in 0..batch {
                    let xi = s.x.slice(ndarray::s![i..i + 1, ..]);
                    let ci = [s.classes[i]];
                    let vi = s.values.slice(ndarray::s![i..i + 1, ..]);
                    let ti = if s.use_values { Targets::Values(vi) } else { Targets::Classes(&ci) };
                    let gi = m
                        .loss_and_gradient(
                            &s.p,
                            &Batch { x: xi, targets: ti },
                            &Objective { loss: case.loss, reduction: Reduction::Sum },
                        )
                        .unwrap()
                        .gradient;
                    let gi: Vec<f64> = gi.iter().map(|g| g * full_scale).collect();
                    assert_close(&format!("{tag}: per-example row {i}"), pe.row(i).as_slice().unwrap(), &gi, TOL_EXACT);
                }
            }

            // Output jvp along parameters and inputs against differences of the logits.
            let (z, dz) = m.output_jvp(&s.p, s.x.view(), Some(&v), Some(dx.view())).unwrap();
            let zp = m.forward(&axpy(&s.p, H, &v), (&s.x + &(&dx * H)).view()).unwrap();
            let zm = m.forward(&axpy(&s.p, -H, &v), (&s.x - &(&dx * H)).view()).unwrap();
            let fd = (&zp - &zm) / (2.0 * H);
            assert_close(
                &format!("{} b{batch}: output jvp", case.arch),
                dz.as_slice().unwrap(),
                fd.as_slice().unwrap(),
                TOL_FIRST,
            );
            assert_close(
                &format!("{} b{batch}: jvp logits", case.arch),
                z.as_slice().unwrap(),
                m.forward(&s.p, s.x.view()).unwrap().as_slice().unwrap(),
                0.0,
            );

            // Input Jacobian against differences along each input coordinate; norms.
            let jac = m.input_jacobian(&s.p, s.x.view()).unwrap();
            for d in 0..m.in_dim() {
                let mut e = Array2::zeros(s.x.dim());
                e.column_mut(d).fill(1.0);
                let zp = m.forward(&s.p, (&s.x + &(&e * H)).view()).unwrap();
                let zm = m.forward(&s.p, (&s.x - &(&e * H)).view()).unwrap();
                let fd = (&zp - &zm) / (2.0 * H);
                let col = jac.slice(ndarray::s![.., .., d]).to_owned();
                assert_close(
                    &format!("{} b{batch}: input Jacobian column {d}", case.arch),
                    col.as_slice().unwrap(),
                    fd.as_slice().unwrap(),
                    TOL_FIRST,
                );
            }
            let fro = m.input_jacobian_sq_frobenius(&s.p, s.x.view()).unwrap();
            let expect: Vec<f64> = jac.outer_iter().map(|a| a.iter().map(|x| x * x).sum()).collect();
            assert_close("input Jacobian norms", &fro, &expect, TOL_EXACT);

            // Activations end in the logits and have the layer widths.
            let acts = m.activations(&s.p, s.x.view()).unwrap();
            assert_eq!(acts.len(), m.layers().len());
            assert_close(
                "last activation = logits",
                acts.last().unwrap().as_slice().unwrap(),
                z.as_slice().unwrap(),
                0.0,
            );
        }
    }
}

/// The explicit Hessian of a tiny net (P < 100), built from HVP columns, equals the Hessian from
/// second differences of the loss (independent of every derivative rule), for batches of 3 and 4.
#[test]
fn explicit_hessian_of_tiny_nets_matches_second_differences() {
    let tiny = [
        Case { arch: "mlp:3-4-3-2:tanh", loss: Loss::CrossEntropy, values: false },
        Case { arch: "mlp:3-4-3-2:gelu:layernorm", loss: Loss::Mse, values: true },
        Case { arch: "resmlp:3-4x1-2:softplus:layernorm", loss: Loss::CrossEntropy, values: false },
        Case { arch: "mlp:3-5-1:sigmoid", loss: Loss::Logistic, values: false },
        Case { arch: "mlp:3-5-4-2:relu", loss: Loss::Mse, values: false },
        // Tiny convolutional nets: 47, 28, 22 and 42 parameters.
        Case { arch: "seq:1x4x4:conv2d(2,3)-tanh-flatten-linear(3)", loss: Loss::CrossEntropy, values: false },
        Case { arch: "seq:1x5x5:conv2d(2,2)-relu-maxpool2d(2)-flatten-linear(2)", loss: Loss::Mse, values: false },
        Case {
            arch: "seq:2x6:conv1d(2,3,padding=1,groups=2)-softplus-avgpool1d(2)-flatten-linear(2)",
            loss: Loss::CrossEntropy,
            values: false,
        },
        Case {
            arch: "seq:1x4x4:conv2d(2,3)-batchnorm2d-gelu-flatten-dropout(0.2)-linear(2)",
            loss: Loss::Mse,
            values: true,
        },
    ];
    let h = 1e-3;
    for case in &tiny {
        for batch in [3usize, 4] {
            let s = setup(case, batch, 21);
            let m = &s.model;
            let np = m.num_params();
            assert!(np < 100, "{}: {np} parameters", case.arch);
            let obj =
                Objective { loss: case.loss, reduction: if batch == 3 { Reduction::Mean } else { Reduction::Sum } };
            let b = s.batch();
            let eye = Array2::<f64>::eye(np);
            let hess = m.hvp_block(&s.p, &b, &obj, eye.view()).unwrap().hvps;
            // Symmetry of the materialised Hessian.
            let asym = (&hess - &hess.t()).iter().fold(0.0f64, |a, x| a.max(x.abs()));
            let scale = hess.iter().fold(1.0f64, |a, x| a.max(x.abs()));
            assert!(asym <= TOL_EXACT * scale, "{}: Hessian asymmetry {asym}", case.arch);
            // Second differences of the loss.
            let f = |i: usize, si: f64, j: usize, sj: f64| {
                let mut q = s.p.clone();
                q[i] += si;
                q[j] += sj;
                m.loss(&q, &b, &obj).unwrap()
            };
            let mut fd = Array2::<f64>::zeros((np, np));
            for i in 0..np {
                for j in 0..=i {
                    // Richardson extrapolation of the 4-point second difference over steps h and
                    // h/2 cancels the O(h^2) truncation term (curvature varies fast near layer
                    // norm), leaving O(h^4) + rounding.
                    let d =
                        |h: f64| (f(i, h, j, h) - f(i, h, j, -h) - f(i, -h, j, h) + f(i, -h, j, -h)) / (4.0 * h * h);
                    let v = (4.0 * d(h / 2.0) - d(h)) / 3.0;
                    fd[(i, j)] = v;
                    fd[(j, i)] = v;
                }
            }
            assert_close(
                &format!("{} b{batch}: explicit Hessian", case.arch),
                hess.as_slice().unwrap(),
                fd.as_slice().unwrap(),
                TOL_HESSIAN_FD,
            );
            // Quadratic forms against the same second differences: the diagonal (forms of the
            // coordinate vectors) and a random direction.
            let diag = m.hessian_quadratic_forms(&s.p, &b, &obj, eye.view()).unwrap();
            let fd_diag: Vec<f64> = (0..np).map(|i| fd[(i, i)]).collect();
            assert_close(&format!("{} b{batch}: diagonal by jets", case.arch), &diag, &fd_diag, TOL_HESSIAN_FD);
            let w = Array1::from(randv(&mut RngStream::new(22).child(case.arch).rng(), np));
            let qw = m.hessian_quadratic_forms(&s.p, &b, &obj, w.view().insert_axis(ndarray::Axis(0))).unwrap();
            assert_close(
                &format!("{} b{batch}: w^T H w by jets", case.arch),
                &qw,
                &[w.dot(&fd.dot(&w))],
                TOL_HESSIAN_FD,
            );
            // The GGN materialised is symmetric positive semi-definite.
            let ggn = m.ggn_vp_block(&s.p, &b, &obj, eye.view()).unwrap();
            let e = sgdlab_linalg::symmetric_eigen(ggn.view()).unwrap();
            assert!(e.values[0] >= -1e-12 * scale, "{}: GGN min eigenvalue {}", case.arch, e.values[0]);
        }
    }
}

/// The f32 paths agree with f64 to f32 precision.
#[test]
fn f32_passes_agree_with_f64() {
    let case = Case { arch: "resmlp:4-5x2-3:gelu:layernorm", loss: Loss::CrossEntropy, values: false };
    let s = setup(&case, 4, 8);
    let m = &s.model;
    let obj = Objective::mean(Loss::CrossEntropy);
    let v = randv(&mut RngStream::new(1).rng(), m.num_params());
    let g64 = m.loss_and_gradient(&s.p, &s.batch(), &obj).unwrap().gradient;
    let h64 = m.hvp(&s.p, &s.batch(), &obj, &v).unwrap();
    let p32: Vec<f32> = s.p.iter().map(|&x| x as f32).collect();
    let x32 = s.x.mapv(|x| x as f32);
    let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    let b32 = Batch { x: x32.view(), targets: Targets::Classes(&s.classes) };
    let g32: Vec<f64> = m.loss_and_gradient(&p32, &b32, &obj).unwrap().gradient.iter().map(|&x| x as f64).collect();
    let h32: Vec<f64> = m.hvp(&p32, &b32, &obj, &v32).unwrap().iter().map(|&x| x as f64).collect();
    // f32 epsilon is 1.2e-7; a few hundred operations deep, 1e-4 of the scale is generous but
    // 1000x tighter than any real bug.
    assert_close("f32 gradient", &g32, &g64, 1e-4);
    assert_close("f32 HVP", &h32, &h64, 1e-4);
    let vs64 = ndarray::ArrayView2::from_shape((1, v.len()), &v).unwrap();
    let vs32 = ndarray::ArrayView2::from_shape((1, v32.len()), &v32).unwrap();
    let q64 = m.hessian_quadratic_forms(&s.p, &s.batch(), &obj, vs64).unwrap();
    let q32 = m.hessian_quadratic_forms(&p32, &b32, &obj, vs32).unwrap();
    assert_close("f32 v^T H v", &[q32[0] as f64], &q64, 1e-4);
}

#[test]
fn shape_errors_are_errors_not_panics() {
    let m = Model::new(&"mlp:4-6-3:relu".parse().unwrap());
    let p = vec![0.0; m.num_params()];
    let x = Array2::<f64>::zeros((2, 5));
    assert!(m.forward(&p, x.view()).unwrap_err().to_string().contains("inputs have 5 features"));
    let x = Array2::<f64>::zeros((2, 4));
    assert!(m.forward(&p[1..], x.view()).unwrap_err().to_string().contains("parameter vector has"));
    let b = Batch { x: x.view(), targets: Targets::Classes(&[0, 7]) };
    assert!(m.loss(&p, &b, &Objective::mean(Loss::CrossEntropy)).unwrap_err().to_string().contains("label 7"));
    let b = Batch { x: x.view(), targets: Targets::Classes(&[0, 1]) };
    assert!(
        m.hvp(&p, &b, &Objective::mean(Loss::CrossEntropy), &[1.0])
            .unwrap_err()
            .to_string()
            .contains("direction has 1 entries")
    );
    // Cached products: a cache of another batch size, or directions of the wrong width.
    let obj = Objective::mean(Loss::CrossEntropy);
    let cache = m.hvp_cache(&p, &b, &obj).unwrap();
    let x3 = Array2::<f64>::zeros((3, 4));
    let b3 = Batch { x: x3.view(), targets: Targets::Classes(&[0, 1, 2]) };
    let vs = Array2::<f64>::zeros((1, m.num_params()));
    let short = Array2::<f64>::zeros((1, 2));
    assert!(m.hvp_cached(&p, &cache, &b3, &obj, vs.view()).unwrap_err().to_string().contains("cache of 2 examples"));
    assert!(m.ggn_vp_cached(&p, &cache, &b3, &obj, vs.view()).unwrap_err().to_string().contains("cache of 2 examples"));
    assert!(m.ggn_vp_cached(&p, &cache, &b, &obj, short.view()).unwrap_err().to_string().contains("directions have 2"));
}

/// MSE with unobserved (NaN) targets, as in matrix completion: gradient, HVP and GGN of the model
/// against differences, and the unobserved entries have no influence at all.
#[test]
fn masked_mse_passes_match_finite_differences() {
    let model = Model::new(&"mlp:4-6-3:tanh".parse::<ArchSpec>().unwrap());
    let mut rng = RngStream::new(31).rng();
    let p: Vec<f64> = randv(&mut rng, model.num_params()).iter().map(|v| 0.6 * v).collect();
    let x = randn(&mut rng, (5, 4));
    let mut y = randn(&mut rng, (5, 3));
    for (i, j) in [(0, 1), (2, 0), (2, 2), (4, 1)] {
        y[(i, j)] = f64::NAN;
    }
    let b = Batch { x: x.view(), targets: Targets::Values(y.view()) };
    let v = randv(&mut rng, model.num_params());
    for reduction in objectives() {
        let obj = Objective { loss: Loss::Mse, reduction };
        let lg = model.loss_and_gradient(&p, &b, &obj).unwrap();
        assert!(lg.loss.is_finite() && lg.gradient.iter().all(|g| g.is_finite()));
        let fd = (model.loss(&axpy(&p, H, &v), &b, &obj).unwrap() - model.loss(&axpy(&p, -H, &v), &b, &obj).unwrap())
            / (2.0 * H);
        assert_close("masked gradient . v", &[dot(&lg.gradient, &v)], &[fd], TOL_FIRST);
        let hv = model.hvp(&p, &b, &obj, &v).unwrap();
        let gp = model.loss_and_gradient(&axpy(&p, H, &v), &b, &obj).unwrap().gradient;
        let gm = model.loss_and_gradient(&axpy(&p, -H, &v), &b, &obj).unwrap().gradient;
        let fd_hv: Vec<f64> = gp.iter().zip(&gm).map(|(a, c)| (a - c) / (2.0 * H)).collect();
        assert_close("masked HVP", &hv, &fd_hv, TOL_SECOND);
        // Changing an unobserved target's position value changes nothing: compare with the
        // same targets where NaN entries are replaced by the model's own outputs (zero error).
        let z = model.forward(&p, x.view()).unwrap();
        let filled = ndarray::Zip::from(&y).and(&z).map_collect(|&t, &o| if t.is_nan() { o } else { t });
        let bf = Batch { x: x.view(), targets: Targets::Values(filled.view()) };
        let lf = model.loss_and_gradient(&p, &bf, &obj).unwrap();
        assert!((lf.loss - lg.loss).abs() < 1e-14);
        assert_close("masked = zero-error gradient", &lg.gradient, &lf.gradient, TOL_EXACT);
        let gv = model.ggn_vp(&p, &b, &obj, &v).unwrap();
        assert!(gv.iter().all(|g| g.is_finite()));
    }
    let bad = ndarray::Array2::from_elem((5, 3), f64::INFINITY);
    let e = model
        .loss(&p, &Batch { x: x.view(), targets: Targets::Values(bad.view()) }, &Objective::mean(Loss::Mse))
        .unwrap_err();
    assert!(e.to_string().contains("infinities are errors"));
}

/// Training mode (batch statistics in batch norm, fixed dropout masks): gradient against
/// differences of the training-mode loss, HVP against differences of the gradient and
/// symmetric, and on these tiny nets (< 100 parameters, batches of 3 and 4) the explicit Hessian
/// against second differences of the loss; per-example gradients refuse batch statistics naming
/// the layer, and are defined (summing to the gradient) with dropout alone; the running
/// statistics follow PyTorch's update.
#[test]
fn training_mode_passes_match_finite_differences() {
    let cases = [
        "seq:1x4x4:conv2d(2,3)-batchnorm2d-tanh-flatten-dropout(0.3)-linear(2)",
        "seq:3x3:conv1d(2,2)-batchnorm1d-gelu-flatten-linear(2)",
        "seq:5:linear(4)-batchnorm1d(affine=false)-softplus-linear(3)",
    ];
    for arch in cases {
        for batch in [3usize, 4] {
            let mut model = Model::new(&arch.parse::<ArchSpec>().unwrap());
            let np = model.num_params();
            assert!(np < 100, "{arch}: {np} parameters");
            let mut rng = RngStream::new(51).child(arch).child(&batch.to_string()).rng();
            let p: Vec<f64> = randv(&mut rng, np).iter().map(|v| 0.6 * v).collect();
            let x = randn(&mut rng, (batch, model.in_dim()));
            let classes: Vec<u32> = (0..batch).map(|i| (i % model.out_dim()) as u32).collect();
            let b = Batch { x: x.view(), targets: Targets::Classes(&classes) };
            let mode = train_mode(arch);
            let reduction = if batch == 3 { Reduction::Mean } else { Reduction::Sum };
            let obj = Objective { loss: Loss::CrossEntropy, reduction };
            let tag = format!("{arch} b{batch} train");
            let m = model.in_mode(&mode);
            let mut grad = vec![0.0; np];
            let step = m.gradient_into(&p, &b, &obj, &mut grad).unwrap();
            assert!((step.loss - m.loss(&p, &b, &obj).unwrap()).abs() < 1e-14 * (1.0 + step.loss.abs()));
            // The training loss differs from the evaluation loss (batch statistics, masks).
            assert!((step.loss - model.loss(&p, &b, &obj).unwrap()).abs() > 1e-6, "{tag}: train = eval loss");
            let v = randv(&mut rng, np);
            let u = randv(&mut rng, np);
            let fd = (m.loss(&axpy(&p, H, &v), &b, &obj).unwrap() - m.loss(&axpy(&p, -H, &v), &b, &obj).unwrap())
                / (2.0 * H);
            assert_close(&format!("{tag}: gradient . v"), &[dot(&grad, &v)], &[fd], TOL_FIRST);
            let hv = m.hvp(&p, &b, &obj, &v).unwrap();
            let hu = m.hvp(&p, &b, &obj, &u).unwrap();
            let grad_at = |q: &[f64]| {
                let mut g = vec![0.0; np];
                m.gradient_into(q, &b, &obj, &mut g).unwrap();
                g
            };
            let (gp, gm) = (grad_at(&axpy(&p, H, &v)), grad_at(&axpy(&p, -H, &v)));
            let fd_hv: Vec<f64> = gp.iter().zip(&gm).map(|(a, c)| (a - c) / (2.0 * H)).collect();
            assert_close(&format!("{tag}: HVP vs differences of the gradient"), &hv, &fd_hv, TOL_SECOND);
            let (a, c) = (dot(&u, &hv), dot(&v, &hu));
            assert!((a - c).abs() <= TOL_EXACT * (1.0 + a.abs()), "{tag}: HVP symmetry {a} vs {c}");
            // Explicit Hessian from HVP columns against second differences of the loss.
            let eye = Array2::<f64>::eye(np);
            let hess = m.hvp_block(&p, &b, &obj, eye.view()).unwrap().hvps;
            let f = |i: usize, si: f64, j: usize, sj: f64| {
                let mut q = p.clone();
                q[i] += si;
                q[j] += sj;
                m.loss(&q, &b, &obj).unwrap()
            };
            let h = 1e-3;
            let mut fdh = Array2::<f64>::zeros((np, np));
            for i in 0..np {
                for j in 0..=i {
                    let d =
                        |h: f64| (f(i, h, j, h) - f(i, h, j, -h) - f(i, -h, j, h) + f(i, -h, j, -h)) / (4.0 * h * h);
                    let val = (4.0 * d(h / 2.0) - d(h)) / 3.0;
                    fdh[(i, j)] = val;
                    fdh[(j, i)] = val;
                }
            }
            assert_close(
                &format!("{tag}: explicit Hessian"),
                hess.as_slice().unwrap(),
                fdh.as_slice().unwrap(),
                TOL_HESSIAN_FD,
            );
            // Per-example gradients: refused, naming the batch-norm layer.
            let e = m.per_example_gradients(&p, &b, &obj).unwrap_err().to_string();
            assert!(e.contains("batchnorm1d") || e.contains("batchnorm2d"), "{tag}: {e}");
            assert!(e.contains("layer 1 (") && e.contains("couples the examples"), "{tag}: {e}");
            // Running statistics: PyTorch's update from the batch statistics of the layer input.
            let bn_in = model.activations(&p, x.view()).unwrap()[0].clone();
            let shape = model.shapes()[1];
            let (c, s) = (shape.channels(), shape.len() / shape.channels());
            let before = model.buffers();
            model.update_running_stats(&step.batch_statistics);
            let after = model.buffers();
            for ch in 0..c {
                let vals: Vec<f64> =
                    (0..batch).flat_map(|i| (0..s).map(move |k| (i, ch * s + k))).map(|(i, k)| bn_in[(i, k)]).collect();
                let n = vals.len() as f64;
                let mean = vals.iter().sum::<f64>() / n;
                let var_unbiased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
                let rm = 0.9 * before[0].values[ch] + 0.1 * mean;
                let rv = 0.9 * before[1].values[ch] + 0.1 * var_unbiased;
                assert!((after[0].values[ch] - rm).abs() < 1e-12, "{tag}: running mean {ch}");
                assert!((after[1].values[ch] - rv).abs() < 1e-12, "{tag}: running var {ch}");
            }
            assert_eq!(after[2].values, vec![1.0], "{tag}: num_batches_tracked");
        }
    }
    // Dropout alone does not couple the examples: per-example gradients in training mode sum to
    // the training-mode gradient (the same masks).
    let model = Model::new(&"seq:6:linear(5)-tanh-dropout(0.5)-linear(3)".parse::<ArchSpec>().unwrap());
    let mut rng = RngStream::new(52).rng();
    let p = randv(&mut rng, model.num_params());
    let x = randn(&mut rng, (4, 6));
    let b = Batch { x: x.view(), targets: Targets::Classes(&[0, 1, 2, 0]) };
    let obj = Objective::mean(Loss::CrossEntropy);
    let mode = train_mode("dropout-only");
    let mut grad = vec![0.0; model.num_params()];
    model.in_mode(&mode).gradient_into(&p, &b, &obj, &mut grad).unwrap();
    let pe = model.in_mode(&mode).per_example_gradients(&p, &b, &obj).unwrap();
    assert_close("dropout per-example sum", pe.sum_axis(ndarray::Axis(0)).as_slice().unwrap(), &grad, TOL_EXACT);
    let eval = model.loss_and_gradient(&p, &b, &obj).unwrap().gradient;
    assert!(dot(&eval, &eval) > 0.0 && (0..grad.len()).any(|i| (grad[i] - eval[i]).abs() > 1e-6));
}
