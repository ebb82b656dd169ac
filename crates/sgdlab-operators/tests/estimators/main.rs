//! Estimators on dense matrices `Q^T diag(lambda) Q` with known spectra (flat, power law,
//! outliers, indefinite, repeated), built from a seeded Haar-random orthogonal `Q`.
//!
//! Statistical assertions use fixed seeds; each states its failure probability for a seed drawn
//! at random, so that a failure after a change is a signal, not bad luck.

mod common;
mod lanczos;
mod operators;
mod power;
mod properties;
mod slq;
mod spectrum;
mod trace;
