//! Allocator tuning for programs that run the passes in a loop, and large write-once outputs.

use crate::Scalar;

/// Keeps freed memory in the process instead of returning it to the kernel after every pass.
///
/// The passes allocate activation-sized arrays (megabytes) and free them again on every step or
/// Hessian-vector product. glibc serves blocks this size with fresh `mmap`s and trims the heap
/// on free, so each pass page-faults its memory back in: an HVP of MLP 784-512-512-10 at batch
/// 128 costs 4.2x a gradient that way and 2.4x with this setting (`cargo bench -p sgdlab-nn
/// --bench passes`). Raising the mmap and trim thresholds (glibc's largest mmap threshold is
/// 32 MiB on 64-bit) keeps those pages mapped; peak memory is unchanged, it is only not handed
/// back between passes.
///
/// Call it once at the start of `main`, before any thread exists (the `sgdlab` binary and the
/// benches do). A no-op outside Linux with glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is documented to be called before
    // the allocator is used concurrently, which "once at start-up" ensures. A rejected value
    // leaves the default in place (harmless).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Bytes from which [`zeros_large`] zeroes a heap buffer on all compute threads.
pub const PARALLEL_ZEROS_BYTES: usize = 4 << 20;

/// Bytes above which [`zeros_large`] asks for transparent huge pages and writes of a write-once
/// output go through [`scale_into_streaming`]: well beyond the last-level cache of the
/// development machine.
pub const LARGE_BYTES: usize = 32 << 20;

/// `n` zeros for an output that will be written once, at large sizes backed by 2 MiB pages when
/// the kernel allows them (`madvise(MADV_HUGEPAGE)`, Linux's "madvise" mode of transparent huge
/// pages): a fresh multi-hundred-megabyte buffer is otherwise faulted in 4 KiB at a time, which
/// dominated per-example gradients (343 MB at MLP 784-512-512-10, batch 128: 0.60 s of page
/// faults out of 0.70 s). The values are zeros either way.
///
/// Below [`LARGE_BYTES`] the buffer comes from the process's heap (see [`keep_freed_memory`]),
/// already mapped, and is zeroed by writing: from [`PARALLEL_ZEROS_BYTES`] on, that write is split
/// over the compute threads ([`crate::map_parts`]; LeNet-5's per-example gradients at batch 128
/// are 31.6 MB).
pub fn zeros_large<T: Scalar>(n: usize) -> Vec<T> {
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if (PARALLEL_ZEROS_BYTES..LARGE_BYTES).contains(&bytes) && crate::threads() > 1 {
        let mut v = Vec::with_capacity(n);
        let parts: Vec<_> = v.spare_capacity_mut()[..n].chunks_mut(n.div_ceil(crate::threads())).collect();
        crate::map_parts(parts, true, &|part: &mut [std::mem::MaybeUninit<T>]| {
            part.iter_mut().for_each(|x| {
                x.write(T::zero());
            })
        });
        // SAFETY: the parts cover the first n values of the capacity, and each was written.
        unsafe { v.set_len(n) };
        return v;
    }
    let v = vec![T::zero(); n];
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if n * std::mem::size_of::<T>() >= LARGE_BYTES {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + n * std::mem::size_of::<T>();
        let (a, b) = (start.div_ceil(HUGE) * HUGE, end / HUGE * HUGE);
        if b > a {
            // SAFETY: [a, b) lies inside the live allocation of `v`; madvise only changes how the
            // kernel backs those pages (the contents stay zero), and a refusal is harmless.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}

/// `dst[i] = a * src[i]`; with `streaming`, on x86-64 with AVX, through non-temporal stores that
/// skip the caches and the read of each destination line before it is written. For outputs far
/// larger than the caches, written once (per-example gradients), this halves the memory traffic
/// (measured on the development machine: 196 MB in 12-16 ms against 21-30 ms). Call
/// [`streaming_fence`] after the last streaming write. The values are the same either way.
#[inline]
pub fn scale_into_streaming<T: Scalar>(dst: &mut [T], src: &[T], a: T, streaming: bool) {
    assert_eq!(dst.len(), src.len(), "scale_into_streaming: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if streaming && std::is_x86_feature_detected!("avx") {
        use std::any::TypeId;
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: T is f32 (checked), so the casts are identities; AVX was detected.
            unsafe {
                stream_f32(
                    dst.as_mut_ptr() as *mut f32,
                    src.as_ptr() as *const f32,
                    dst.len(),
                    *(&a as *const T as *const f32),
                );
            }
            return;
        }
        if TypeId::of::<T>() == TypeId::of::<f64>() {
            // SAFETY: T is f64 (checked); AVX was detected.
            unsafe {
                stream_f64(
                    dst.as_mut_ptr() as *mut f64,
                    src.as_ptr() as *const f64,
                    dst.len(),
                    *(&a as *const T as *const f64),
                );
            }
            return;
        }
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = a * s;
    }
}

/// Orders earlier streaming stores before later memory operations (a no-op elsewhere).
pub fn streaming_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sfence has no preconditions (SSE is part of x86-64).
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
}

/// # Safety
/// `dst` and `src` valid for `n` values; AVX available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn stream_f32(dst: *mut f32, src: *const f32, n: usize, a: f32) {
    use std::arch::x86_64::{_mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_stream_ps};
    // SAFETY (whole body): indices stay below n; streaming stores go to 32-byte-aligned addresses.
    unsafe {
        let mut i = 0;
        while i < n && !(dst.add(i) as usize).is_multiple_of(32) {
            *dst.add(i) = a * *src.add(i);
            i += 1;
        }
        let va = _mm256_set1_ps(a);
        while i + 8 <= n {
            _mm256_stream_ps(dst.add(i), _mm256_mul_ps(va, _mm256_loadu_ps(src.add(i))));
            i += 8;
        }
        while i < n {
            *dst.add(i) = a * *src.add(i);
            i += 1;
        }
    }
}

/// # Safety
/// `dst` and `src` valid for `n` values; AVX available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn stream_f64(dst: *mut f64, src: *const f64, n: usize, a: f64) {
    use std::arch::x86_64::{_mm256_loadu_pd, _mm256_mul_pd, _mm256_set1_pd, _mm256_stream_pd};
    // SAFETY (whole body): as in stream_f32, four values per store.
    unsafe {
        let mut i = 0;
        while i < n && !(dst.add(i) as usize).is_multiple_of(32) {
            *dst.add(i) = a * *src.add(i);
            i += 1;
        }
        let va = _mm256_set1_pd(a);
        while i + 4 <= n {
            _mm256_stream_pd(dst.add(i), _mm256_mul_pd(va, _mm256_loadu_pd(src.add(i))));
            i += 4;
        }
        while i < n {
            *dst.add(i) = a * *src.add(i);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_and_plain_stores_write_the_same_values() {
        for n in [0usize, 1, 3, 4, 5, 8, 9, 17, 64, 1001] {
            let src: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let (mut a, mut b) = (vec![f32::NAN; n + 1], vec![0.0f32; n + 1]);
            // Offset by one element so that the unaligned head runs too.
            scale_into_streaming(&mut a[1..], &src, 1.5, true);
            streaming_fence();
            scale_into_streaming(&mut b[1..], &src, 1.5, false);
            assert_eq!(a[1..], b[1..]);
            let src64: Vec<f64> = src.iter().map(|&v| v as f64).collect();
            let (mut c, mut d) = (vec![0.0f64; n + 1], vec![0.0f64; n + 1]);
            scale_into_streaming(&mut c[1..], &src64, -2.0, true);
            streaming_fence();
            scale_into_streaming(&mut d[1..], &src64, -2.0, false);
            assert_eq!(c, d);
        }
    }

    #[test]
    fn large_zeros_are_zeros() {
        let z: Vec<f64> = zeros_large(LARGE_BYTES / 8 + 3);
        assert!(z.iter().all(|&v| v == 0.0));
        // Zeroed on two threads (below LARGE_BYTES), an odd length.
        crate::set_threads(2);
        let z: Vec<f32> = zeros_large(PARALLEL_ZEROS_BYTES / 4 + 7);
        crate::set_threads(1);
        assert_eq!(z.len(), PARALLEL_ZEROS_BYTES / 4 + 7);
        assert!(z.iter().all(|&v| v == 0.0));
    }
}
