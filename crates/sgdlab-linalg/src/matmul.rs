//! General matrix products on ndarray views, computed by faer.

use crate::Scalar;
use faer::{Accum, MatMut, MatRef, Par};
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Products with fewer multiply-adds than this (m * k * n) run on one thread.
///
/// Measured with `cargo bench -p sgdlab-linalg --bench matmul` on the 2-core development machine
/// (see the bench's doc): a second thread slows 64x64x64 down several-fold and pays off from about
/// 128x256x256 upward, so the threshold sits at 128 * 256 * 256 multiply-adds.
pub const PARALLEL_MIN_FLOPS: usize = 128 * 256 * 256;

static THREADS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// Set while this thread runs one side of [`join_sequential`]: its products then use one thread.
    static SEQUENTIAL: Cell<bool> = const { Cell::new(false) };
}

/// Set how many threads large products may use (1 = always sequential; 0 = all cores).
///
/// Studies run several runs at once, each single-threaded; a single large job may use all cores.
pub fn set_threads(n: usize) {
    let n = if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n };
    THREADS.store(n, Ordering::Relaxed);
    faer::set_global_parallelism(if n > 1 { Par::rayon(n) } else { Par::Seq });
}

/// The thread count set by [`set_threads`] (1 unless set).
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Runs `f` on one of the threads that parallel products use (rayon's global pool) when there
/// are several ([`set_threads`]), on the caller otherwise.
///
/// A parallel product started from outside the pool wakes a pool thread to run it and then the
/// caller again, on top of waking the helper threads; started from a pool thread it runs there
/// and wakes only the helpers. Wrapping a whole pass with several products (a training step)
/// saves those wake-ups for every product. Results do not change.
pub fn on_compute_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if threads() > 1 && rayon::current_thread_index().is_none() { rayon::scope(|_| f()) } else { f() }
}

/// Runs `a` and `b` at the same time, each on one thread with sequential products, when products
/// may use several threads; one after the other otherwise. Results are the same either way.
///
/// For two independent products of similar size (a linear layer's weight cotangent and input
/// cotangent) this beats splitting each over the threads: each thread runs one whole product,
/// and one thread is woken instead of one per product (job L at 2 threads, measured: 0.95 s ->
/// 0.88 s in-loop).
pub fn join_sequential<RA: Send, RB: Send>(a: impl FnOnce() -> RA + Send, b: impl FnOnce() -> RB + Send) -> (RA, RB) {
    if threads() > 1 { rayon::join(|| sequential(a), || sequential(b)) } else { (a(), b()) }
}

/// Runs `f` with sequential products on this thread.
fn sequential<R>(f: impl FnOnce() -> R) -> R {
    let was = SEQUENTIAL.with(|s| s.replace(true));
    let r = f();
    SEQUENTIAL.with(|s| s.set(was));
    r
}

/// `f` applied to every part, results in the parts' order. With `parallel` and several threads
/// for products ([`set_threads`], not inside [`join_sequential`] or another `map_parts`), the
/// parts are cut into one run of consecutive parts per thread, each run on one thread with
/// sequential products (as [`join_sequential`]); otherwise they run in order on the caller.
///
/// The parts are the unit of work (a fixed chunk of examples, say): as long as `f(part)` depends
/// on the part alone, the results are the same for every thread count. A caller that reduces
/// over the parts adds the results in order. Pass `parallel = false` for work too small to pay
/// for waking a thread.
pub fn map_parts<P: Send, R: Send>(parts: Vec<P>, parallel: bool, f: &(impl Fn(P) -> R + Sync)) -> Vec<R> {
    fn on<P: Send, R: Send>(mut parts: Vec<P>, t: usize, f: &(impl Fn(P) -> R + Sync)) -> Vec<R> {
        if t <= 1 || parts.len() <= 1 {
            return sequential(|| parts.into_iter().map(f).collect());
        }
        let t1 = t / 2;
        let tail = parts.split_off(parts.len() * t1 / t);
        let (mut a, b) = rayon::join(|| on(parts, t1, f), || on(tail, t - t1, f));
        a.extend(b);
        a
    }
    let t = if SEQUENTIAL.with(Cell::get) { 1 } else { threads() };
    if parallel && t > 1 && parts.len() > 1 { on(parts, t, f) } else { parts.into_iter().map(f).collect() }
}

fn as_faer<'a, T: Scalar>(a: &ArrayView2<'a, T>) -> MatRef<'a, T> {
    let (m, n) = a.dim();
    let s = a.strides();
    // SAFETY: the pointer, shape and (element) strides come from a live ndarray view, which
    // guarantees every addressed element is in bounds for the view's lifetime.
    unsafe { MatRef::from_raw_parts(a.as_ptr(), m, n, s[0], s[1]) }
}

fn as_faer_mut<'a, T: Scalar>(c: &'a mut ArrayViewMut2<'_, T>) -> MatMut<'a, T> {
    let (m, n) = c.dim();
    let s = c.strides().to_vec();
    // SAFETY: as above; the mutable view is uniquely borrowed for 'a and ndarray forbids
    // overlapping elements in a mutable view.
    unsafe { MatMut::from_raw_parts_mut(c.as_mut_ptr(), m, n, s[0], s[1]) }
}

/// `c = beta * c + alpha * a b` (`beta` is 0 or 1), with any strides (pass `a.t()` for a
/// transpose; it costs nothing).
///
/// With `beta == 0`, `c` is overwritten and its previous contents (even NaN) are ignored.
///
/// # Panics
/// If the shapes do not conform (a programming error, not an input error).
pub fn matmul_into<T: Scalar>(
    mut c: ArrayViewMut2<'_, T>,
    beta_one: bool,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "matmul: inner dimensions differ ({m}x{k} times {k2}x{n})");
    assert_eq!(c.dim(), (m, n), "matmul: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !beta_one {
            c.fill(T::zero());
        }
        return;
    }
    let t = if SEQUENTIAL.with(Cell::get) { 1 } else { threads() };
    if t > 1 && m.saturating_mul(k).saturating_mul(n) >= PARALLEL_MIN_FLOPS {
        split_product(c, beta_one, a, b, alpha, t);
    } else {
        product(c, beta_one, a, b, alpha, Par::Seq);
    }
}

/// Rows (or columns) of `c` per thread below which [`split_product`] leaves the split to faer.
const MIN_SPLIT: usize = 16;

/// `c = beta * c + alpha * a b` on `t` threads: `c` is cut in two along its longer side (rows of
/// `a` or columns of `b`) and each part computed on its share of the threads, down to one
/// sequential product per thread (so no thread waits on another inside a product).
///
/// Measured (`cargo bench -p sgdlab-linalg --bench matmul`, 2 threads, f32): 20-30% less time
/// than faer's own two-thread products at the MLP pass shapes (128x784x512: 0.51 ms -> 0.37 ms;
/// 512x128x512: 0.29 ms -> 0.23 ms) and at 1024^3 (7.8 ms -> 6.8 ms).
fn split_product<T: Scalar>(
    c: ArrayViewMut2<'_, T>,
    beta_one: bool,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    t: usize,
) {
    let (m, n) = c.dim();
    let (t1, t2) = (t / 2, t - t / 2);
    if t == 1 {
        product(c, beta_one, a, b, alpha, Par::Seq);
    } else if m >= n && m >= MIN_SPLIT * t {
        let (c1, c2) = c.split_at(Axis(0), m * t1 / t);
        let (a1, a2) = a.split_at(Axis(0), m * t1 / t);
        rayon::join(|| split_product(c1, beta_one, a1, b, alpha, t1), || split_product(c2, beta_one, a2, b, alpha, t2));
    } else if n >= MIN_SPLIT * t {
        let (c1, c2) = c.split_at(Axis(1), n * t1 / t);
        let (b1, b2) = b.split_at(Axis(1), n * t1 / t);
        rayon::join(|| split_product(c1, beta_one, a, b1, alpha, t1), || split_product(c2, beta_one, a, b2, alpha, t2));
    } else {
        // Thin output (a long inner dimension): faer splits it its own way.
        product(c, beta_one, a, b, alpha, Par::rayon(t));
    }
}

fn product<T: Scalar>(
    mut c: ArrayViewMut2<'_, T>,
    beta_one: bool,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    alpha: T,
    par: Par,
) {
    let accum = if beta_one { Accum::Add } else { Accum::Replace };
    faer::linalg::matmul::matmul(as_faer_mut(&mut c), accum, as_faer(&a), as_faer(&b), alpha, par);
    clear_upper_vector_state();
}

/// Clears the upper halves of the AVX registers after faer's AVX-512 kernels.
///
/// Measured: without it, the plain SSE code that follows a product (all of sgdlab's element-wise
/// code in a baseline x86-64 build, and glibc's `expf`) ran about 25x slower (a 32x10 softmax
/// cross-entropy took 84 us instead of 3.4 us after a product): the AVX-to-SSE transition
/// penalty of a dirty upper state. One `vzeroupper` per product removes it.
#[inline]
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx")]
        fn zeroupper() {
            std::arch::x86_64::_mm256_zeroupper()
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is available, which is all `vzeroupper` requires.
            unsafe { zeroupper() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    fn naive(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                c[(i, j)] = (0..a.ncols()).map(|l| a[(i, l)] * b[(l, j)]).sum();
            }
        }
        c
    }

    #[test]
    fn products_match_naive_for_all_layouts() {
        let a = Array2::from_shape_fn((5, 7), |(i, j)| (i as f64 + 1.0) * 0.3 - j as f64 * 0.7);
        let b = Array2::from_shape_fn((7, 3), |(i, j)| (i * j) as f64 * 0.1 - 1.0);
        let bf = Array2::from_shape_vec((7, 3).f(), b.t().iter().copied().collect()).unwrap();
        assert_eq!(bf, b);
        let expect = naive(&a, &b);
        for bb in [b.view(), bf.view()] {
            let mut c = Array2::from_elem((5, 3), f64::NAN);
            matmul_into(c.view_mut(), false, a.view(), bb, 1.0);
            for (x, y) in c.iter().zip(expect.iter()) {
                assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
        // Transposed operand, accumulate, scale.
        let at = a.t().to_owned();
        let mut c = expect.clone();
        matmul_into(c.view_mut(), true, at.t(), b.view(), 2.0);
        for (x, y) in c.iter().zip(expect.iter()) {
            assert!((x - 3.0 * y).abs() <= 1e-12 * (1.0 + y.abs()));
        }
    }

    #[test]
    fn split_products_match_sequential_ones_for_all_layouts() {
        // Above the threshold, split by rows (m >= n) and by columns (n > m), with transposed
        // operands and accumulation; a long inner dimension exercises faer's blocking over k.
        use rand::RngExt;
        let mut rng = crate::RngStream::new(7).rng();
        for &(m, k, n) in &[(301, 200, 150), (97, 300, 301), (40, 3000, 90)] {
            assert!(m * k * n >= PARALLEL_MIN_FLOPS);
            let a = Array2::from_shape_fn((k, m), |_| rng.random::<f32>() - 0.5);
            let b = Array2::from_shape_fn((k, n), |_| rng.random::<f32>() - 0.5);
            let c0 = Array2::from_shape_fn((m, n), |_| rng.random::<f32>() - 0.5);
            let (mut c1, mut c2) = (c0.clone(), c0.clone());
            matmul_into(c1.view_mut(), true, a.t(), b.view(), 0.5);
            set_threads(2);
            matmul_into(c2.view_mut(), true, a.t(), b.view(), 0.5);
            set_threads(1);
            let worst = c1.iter().zip(c2.iter()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert_eq!(worst, 0.0, "{m}x{k}x{n}: split product differs from the sequential one by {worst}");
        }
    }

    #[test]
    fn parts_keep_their_order_on_any_thread_count() {
        for t in [1, 2, 3] {
            set_threads(t);
            for n in [0usize, 1, 2, 5, 17] {
                let parts: Vec<usize> = (0..n).collect();
                let out = map_parts(parts, true, &|i| (i, SEQUENTIAL.with(Cell::get) || threads() == 1));
                assert_eq!(out.iter().map(|r| r.0).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
                if n > 1 {
                    assert!(out.iter().all(|r| r.1), "parts run with sequential products");
                }
            }
        }
        set_threads(1);
    }

    #[test]
    fn threaded_products_equal_sequential_ones() {
        let a = Array2::from_shape_fn((160, 300), |(i, j)| ((i * 31 + j * 17) % 13) as f32 - 6.0);
        let b = Array2::from_shape_fn((300, 400), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let mut c1 = Array2::zeros((160, 400));
        let mut c2 = Array2::zeros((160, 400));
        matmul_into(c1.view_mut(), false, a.view(), b.view(), 1.0);
        set_threads(2);
        matmul_into(c2.view_mut(), false, a.view(), b.view(), 1.0);
        set_threads(1);
        // Integer-valued inputs: every partial sum is exact in f32, so any order agrees.
        assert_eq!(c1, c2);
    }
}
