//! Cost of the model-level passes: gradient vs exact HVP vs GGN-vector product (DESIGN.md target:
//! HVP at most 2.5x a gradient on an MLP, 3x on a CNN), and per direction from a cached pass: HVP
//! vs the quadratic form `v^T H v` (second-order forward mode); per-example gradients (fresh
//! output, and into a caller's buffer). `cargo bench -p sgdlab-nn --bench passes`.
use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use sgdlab_linalg::RngStream;
use sgdlab_nn::{Batch, InitSpec, Loss, Model, Objective, Targets};

fn bench(c: &mut Criterion) {
    // The allocator setting of the `sgdlab` binary (without it, page faults from freshly mapped
    // buffers dominate the one-shot passes at the larger shape).
    sgdlab_linalg::keep_freed_memory();
    const LENET5: &str = "seq:1x28x28:conv2d(6,5,padding=2)-relu-maxpool2d(2)-conv2d(16,5)-relu-maxpool2d(2)-flatten-linear(120)-relu-linear(84)-relu-linear(10)";
    for (arch, batch) in [("mlp:40-100-100-10:relu", 32usize), ("mlp:784-512-512-10:relu", 128), (LENET5, 64)] {
        let model = Model::new(&arch.parse().unwrap());
        for dtype in ["f32", "f64"] {
            let name = if arch == LENET5 { "lenet5" } else { arch };
            let mut g = c.benchmark_group(format!("{name}/b{batch}/{dtype}"));
            macro_rules! run {
                ($t:ty) => {{
                    let p = InitSpec::default().init::<$t>(&model, &RngStream::new(0));
                    let x = Array2::<$t>::from_shape_fn((batch, model.in_dim()), |(i, j)| {
                        (((i * 7 + j * 13) % 17) as $t) / 17.0 - 0.5
                    });
                    let y: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
                    let b = Batch { x: x.view(), targets: Targets::Classes(&y) };
                    let obj = Objective::mean(Loss::CrossEntropy);
                    let v: Vec<$t> = (0..model.num_params()).map(|i| ((i % 11) as $t) * 0.01).collect();
                    let mut grad = vec![0.0 as $t; model.num_params()];
                    g.bench_function("gradient", |bch| {
                        bch.iter(|| model.gradient_into(p.as_slice(), &b, &obj, &mut grad).unwrap())
                    });
                    g.bench_function("hvp", |bch| bch.iter(|| model.hvp(p.as_slice(), &b, &obj, &v).unwrap()));
                    g.bench_function("ggn_vp", |bch| bch.iter(|| model.ggn_vp(p.as_slice(), &b, &obj, &v).unwrap()));
                    // Per direction from a cached forward (and backward) pass, as Lanczos and
                    // Hutchinson use them: an HVP vs the quadratic form v^T H v by second-order
                    // forward mode.
                    let cache = model.hvp_cache(p.as_slice(), &b, &obj).unwrap();
                    let vs = ndarray::ArrayView2::from_shape((1, v.len()), &v).unwrap();
                    g.bench_function("hvp_cached", |bch| {
                        bch.iter(|| model.hvp_cached(p.as_slice(), &cache, &b, &obj, vs).unwrap())
                    });
                    g.bench_function("quadratic_form_cached", |bch| {
                        bch.iter(|| model.hessian_quadratic_forms_cached(p.as_slice(), &cache, &b, &obj, vs).unwrap())
                    });
                }};
            }
            if dtype == "f32" {
                run!(f32)
            } else {
                run!(f64)
            }
            g.finish();
        }
    }
}

/// Per-example gradients `[batch, P]` (BackPACK's `BatchGrad`), f32: a fresh output each call, and
/// written into one reused buffer.
fn bench_per_example(c: &mut Criterion) {
    sgdlab_linalg::keep_freed_memory();
    const LENET5: &str = "seq:1x28x28:conv2d(6,5,padding=2)-relu-maxpool2d(2)-conv2d(16,5)-relu-maxpool2d(2)-flatten-linear(120)-relu-linear(84)-relu-linear(10)";
    for (name, arch, batch) in [("mlp:784-512-512-10", "mlp:784-512-512-10:relu", 128usize), ("lenet5", LENET5, 128)] {
        let model = Model::new(&arch.parse().unwrap());
        let p = InitSpec::default().init::<f32>(&model, &RngStream::new(0));
        let x = Array2::<f32>::from_shape_fn((batch, model.in_dim()), |(i, j)| (((i * 7 + j * 13) % 17) as f32) / 17.0);
        let y: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
        let b = Batch { x: x.view(), targets: Targets::Classes(&y) };
        let obj = Objective::mean(Loss::CrossEntropy);
        let mut g = c.benchmark_group(format!("per_example/{name}/b{batch}/f32"));
        g.sample_size(20);
        // The caller's buffer, reused (huge pages, as the fresh output gets).
        let shape = (batch, model.num_params());
        let mut out = Array2::from_shape_vec(shape, sgdlab_linalg::zeros_large::<f32>(shape.0 * shape.1)).unwrap();
        for threads in [1usize, 2] {
            sgdlab_linalg::set_threads(threads);
            g.bench_function(format!("fresh/{threads}t"), |bch| {
                bch.iter(|| {
                    sgdlab_linalg::on_compute_threads(|| model.per_example_gradients(p.as_slice(), &b, &obj).unwrap())
                })
            });
            g.bench_function(format!("into/{threads}t"), |bch| {
                bch.iter(|| {
                    sgdlab_linalg::on_compute_threads(|| {
                        model.per_example_gradients_into(p.as_slice(), &b, &obj, out.view_mut()).unwrap()
                    })
                })
            });
        }
        sgdlab_linalg::set_threads(1);
        g.finish();
    }
}

criterion_group!(benches, bench, bench_per_example);
criterion_main!(benches);
