//! Cost of the model-level passes: gradient vs exact HVP vs GGN-vector product (DESIGN.md target:
//! HVP at most 3x a gradient on the same batch), and per direction from a cached pass: HVP vs the
//! quadratic form `v^T H v` (second-order forward mode). `cargo bench -p sgdlab-nn --bench passes`.
use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use sgdlab_linalg::RngStream;
use sgdlab_nn::{Batch, InitSpec, Loss, Model, Objective, Targets};

fn bench(c: &mut Criterion) {
    // The allocator setting of the `sgdlab` binary (without it, page faults from freshly mapped
    // buffers dominate the one-shot passes at the larger shape).
    sgdlab_linalg::keep_freed_memory();
    for (arch, batch) in [("mlp:40-100-100-10:relu", 32usize), ("mlp:784-512-512-10:relu", 128)] {
        let model = Model::new(&arch.parse().unwrap());
        for dtype in ["f32", "f64"] {
            let mut g = c.benchmark_group(format!("{arch}/b{batch}/{dtype}"));
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

criterion_group!(benches, bench);
criterion_main!(benches);
