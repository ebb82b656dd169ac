//! Same model, parameters and batch give the same bits on 1 and 2 compute threads
//! (`sgdlab_linalg::set_threads`; DESIGN.md: results independent of threads): the forward pass,
//! the gradient, per-example gradients (fresh and into a buffer), HVPs and Hessian quadratic
//! forms, on LeNet-5 at batch 64 (large enough for the convolutions to split their chunks of
//! examples over the threads, layer/conv.rs) and on an MLP whose products split by rows.
//!
//! `set_threads` is process-wide; this file is its own test binary and holds one test, so no
//! other test runs at the same time.

use ndarray::Array2;
use sgdlab_linalg::RngStream;
use sgdlab_nn::{Batch, InitSpec, Loss, Model, Objective, Targets};

/// Everything the passes return, flattened, on `threads` threads.
fn passes(arch: &str, batch: usize, threads: usize) -> Vec<Vec<f32>> {
    sgdlab_linalg::set_threads(threads);
    let model = Model::new(&arch.parse().unwrap());
    let p = InitSpec::default().init::<f32>(&model, &RngStream::new(3));
    let x = Array2::<f32>::from_shape_fn((batch, model.in_dim()), |(i, j)| ((i * 7 + j * 13) % 17) as f32 / 17.0 - 0.4);
    let y: Vec<u32> = (0..batch as u32).map(|i| (i * 3) % 10).collect();
    let b = Batch { x: x.view(), targets: Targets::Classes(&y) };
    let obj = Objective::mean(Loss::CrossEntropy);
    let v: Vec<f32> = (0..model.num_params()).map(|i| ((i % 11) as f32 - 5.0) * 0.01).collect();
    let out = sgdlab_linalg::on_compute_threads(|| {
        let logits = model.forward(p.as_slice(), x.view()).unwrap();
        let mut grad = vec![0.0f32; model.num_params()];
        model.gradient_into(p.as_slice(), &b, &obj, &mut grad).unwrap();
        let rows = model.per_example_gradients(p.as_slice(), &b, &obj).unwrap();
        let mut into = Array2::from_elem(rows.dim(), f32::NAN);
        model.per_example_gradients_into(p.as_slice(), &b, &obj, into.view_mut()).unwrap();
        let hv = model.hvp(p.as_slice(), &b, &obj, &v).unwrap();
        let vs = ndarray::ArrayView2::from_shape((1, v.len()), &v).unwrap();
        let q = model.hessian_quadratic_forms(p.as_slice(), &b, &obj, vs).unwrap();
        vec![logits.into_iter().collect(), grad, rows.into_iter().collect(), into.into_iter().collect(), hv, q]
    });
    sgdlab_linalg::set_threads(1);
    out
}

#[test]
fn passes_give_the_same_bits_on_one_and_two_threads() {
    const LENET5: &str = "seq:1x28x28:conv2d(6,5,padding=2)-relu-maxpool2d(2)-conv2d(16,5)-relu-maxpool2d(2)-flatten-linear(120)-relu-linear(84)-relu-linear(10)";
    let names = ["forward", "gradient", "per-example", "per-example into", "hvp", "quadratic form"];
    for (arch, batch) in [(LENET5, 64), ("mlp:784-256-10:relu", 128)] {
        let one = passes(arch, batch, 1);
        let two = passes(arch, batch, 2);
        for ((a, b), name) in one.iter().zip(&two).zip(names) {
            assert_eq!(a.len(), b.len());
            let differ = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
            assert_eq!(differ, 0, "{arch}: {name}: {differ} of {} values differ between 1 and 2 threads", a.len());
        }
        assert!(one[2].iter().zip(&one[3]).all(|(x, y)| x.to_bits() == y.to_bits()), "{arch}: fresh vs into");
    }
}
