//! Matrix-product throughput, sequential vs two threads, to place `PARALLEL_MIN_FLOPS`.
//!
//! `cargo bench -p sgdlab-linalg --bench matmul`; report GFLOP/s = 2 m k n / median time.
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use sgdlab_linalg::{matmul_into, set_threads};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul_f32");
    for &(m, k, n) in &[
        (32, 40, 100),
        (64, 64, 64),
        (128, 128, 128),
        (128, 256, 256),
        (128, 512, 512),
        (128, 784, 512),
        (512, 128, 512),
        (512, 128, 784),
        (1024, 1024, 1024),
    ] {
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i + 3 * j) % 7) as f32 * 0.1);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((2 * i + j) % 5) as f32 * 0.1);
        let mut out = Array2::<f32>::zeros((m, n));
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for threads in [1usize, 2] {
            g.bench_with_input(BenchmarkId::new(format!("t{threads}"), format!("{m}x{k}x{n}")), &threads, |bch, &t| {
                set_threads(t);
                bch.iter(|| matmul_into(out.view_mut(), false, a.view(), b.view(), 1.0));
                set_threads(1);
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
