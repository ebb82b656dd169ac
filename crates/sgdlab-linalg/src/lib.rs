//! Linear algebra for sgdlab: the [`Scalar`] trait (f32 and f64), matrix products and
//! decompositions backed by [faer](https://docs.rs/faer) on [`ndarray`] containers, and seeded
//! random streams derived by name ([`RngStream`]).
//!
//! Products run sequentially below a measured size threshold and on `threads()` threads above it
//! (see [`set_threads`] and [`PARALLEL_MIN_FLOPS`]). [`memory`] checks sizes and memory needs before
//! large allocations.

mod alloc;
mod decomp;
mod matmul;
pub mod memory;
mod rng;
mod scalar;
pub mod stats;
pub mod text;

pub use alloc::{
    LARGE_BYTES, PARALLEL_ZEROS_BYTES, keep_freed_memory, scale_into_streaming, streaming_fence, zeros_large,
};
pub use decomp::{DecompError, SymmetricEigen, orthonormal_rows, singular_values, symmetric_eigen};
pub use matmul::{
    PARALLEL_MIN_FLOPS, join_sequential, map_parts, matmul_into, on_compute_threads, set_threads, threads,
};
pub use ndarray;
pub use rng::{RngStream, StreamRng, standard_normal};
pub use scalar::Scalar;
