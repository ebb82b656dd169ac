//! Allocator tuning for programs that run the passes in a loop.

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
