//! Simplicity and representation probes against closed forms (PROTOCOLS 1-6, 9.2).
//!
//! Every network here is built by hand (named PyTorch tensors) so that the expected value of each
//! measure follows from a formula, not from running the code under test.

use ndarray::{Array1, Array2, array};
use sgdlab_data::{LmsSpec, SinesSpec, SumOfSines};
use sgdlab_linalg::{RngStream, orthonormal_rows, standard_normal, symmetric_eigen};
use sgdlab_nn::{ArchSpec, InitSpec, Model, Params};
use sgdlab_probes::EvalSet;
use sgdlab_probes::simplicity::*;

/// Closed forms computed with a handful of floating-point operations.
const EXACT: f64 = 1e-12;
/// Closed forms reached through a decomposition (SVD, eigensolver) or a long sum.
const DECOMP: f64 = 1e-10;

fn model(arch: &str) -> Model {
    Model::new(&arch.parse::<ArchSpec>().unwrap())
}

/// Writes `values` (row-major, PyTorch shape) into the tensor `name` of `p`.
fn set(m: &Model, p: &mut [f64], name: &str, values: &[f64]) {
    let e = m.layout().get(name).unwrap_or_else(|| panic!("no tensor {name}"));
    assert_eq!(e.len, values.len(), "{name}");
    p[e.offset..e.offset + e.len].copy_from_slice(values);
}

fn eye(n: usize) -> Vec<f64> {
    (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect()
}

fn gaussian(rows: usize, cols: usize, seed: u64, name: &str) -> Array2<f64> {
    let mut r = RngStream::new(seed).child(name).rng();
    Array2::from_shape_fn((rows, cols), |_| standard_normal::<f64, _>(&mut r))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

// ---------------------------------------------------------------------------------------------
// 1. Rank

#[test]
fn effective_and_stable_rank_closed_forms() {
    // Identity n x n: erank = srank = n, ||W||_2/||W||_F = 1/sqrt(n), eps-rank n.
    for n in [1usize, 4, 9] {
        let s = matrix_spectrum(Array2::from_shape_vec((n, n), eye(n)).unwrap().view(), &[1e-3, 1e-2]).unwrap();
        assert!(close(s.effective_rank, n as f64, DECOMP), "erank(I_{n}) = {}", s.effective_rank);
        assert!(close(s.stable_rank, n as f64, DECOMP));
        assert!(close(s.norm_ratio, 1.0 / (n as f64).sqrt(), DECOMP));
        assert_eq!(s.eps_ranks.iter().map(|e| e.rank).collect::<Vec<_>>(), vec![n, n]);
    }
    // Rank one: ratio 1, stable and effective rank 1, eps-rank 1.
    let u = array![1.0, -2.0, 0.5];
    let v = array![3.0, 1.0];
    let w = Array2::from_shape_fn((3, 2), |(i, j)| u[i] * v[j]);
    let s = matrix_spectrum(w.view(), &[1e-3]).unwrap();
    assert!(
        close(s.norm_ratio, 1.0, DECOMP) && close(s.stable_rank, 1.0, DECOMP) && close(s.effective_rank, 1.0, DECOMP)
    );
    assert_eq!(s.eps_ranks[0].rank, 1);
    // diag(3, 2, 1): Frobenius sqrt(14); eps-rank at 0.27 counts 3/sqrt14 = 0.80 and 2/sqrt14 =
    // 0.53 only; erank = exp(H(3/6, 2/6, 1/6)).
    let d = Array2::from_diag(&array![3.0, 2.0, 1.0]);
    let s = matrix_spectrum(d.view(), &[0.27, 0.25]).unwrap();
    assert_eq!((s.eps_ranks[0].rank, s.eps_ranks[1].rank), (2, 3));
    let h: f64 = [0.5f64, 1.0 / 3.0, 1.0 / 6.0].iter().map(|p| -p * p.ln()).sum();
    assert!(close(s.effective_rank, h.exp(), DECOMP));
    assert!(close(s.stable_rank, 14.0 / 9.0, DECOMP));
}

#[test]
fn weight_spectra_of_a_hand_built_network() {
    let m = model("mlp:3-3-2-2:relu");
    let mut p = vec![0.0; m.num_params()];
    set(&m, &mut p, "0.weight", &eye(3));
    set(&m, &mut p, "2.weight", &[1.0, 2.0, 0.0, 2.0, 4.0, 0.0]); // rank one
    set(&m, &mut p, "4.weight", &[0.0, 5.0, 3.0, 0.0]); // singular values 5, 3
    set(&m, &mut p, "0.bias", &[7.0, 7.0, 7.0]); // biases are not part of the spectra
    let e = weight_spectra(&m, &p, &WeightSpectraParams::default()).unwrap();
    let names: Vec<&str> = e.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["0.weight", "2.weight", "4.weight"]);
    assert_eq!(e.layers[1].shape, [2, 3]);
    let sr: Vec<f64> = e.layers.iter().map(|l| l.spectrum.stable_rank).collect();
    let want = [3.0, 1.0, 34.0 / 25.0];
    for (a, b) in sr.iter().zip(want) {
        assert!(close(*a, b, DECOMP), "{sr:?}");
    }
    assert!(close(e.mean_stable_rank, want.iter().sum::<f64>() / 3.0, DECOMP));
    assert!(close(e.mean_hidden_stable_rank, 1.0, DECOMP));
    assert!(close(e.layers[2].spectrum.singular_values[0], 5.0, DECOMP));
    assert!(close(e.layers[2].spectrum.singular_values[1], 3.0, DECOMP));
}

#[test]
fn representation_rank_of_known_embeddings() {
    // A linear network with identity weights passes X through, so every layer's embedding is X =
    // Q diag(3, 2, 1) with Q orthonormal columns orthogonal to the ones vector (zero column
    // means): erank = exp(H(s / sum s)), Gram erank = exp(H(s^2 / sum s^2)), with or without
    // centring; shifting every row by a constant changes the uncentred value only.
    let n = 12;
    let mut g = gaussian(n, 4, 1, "x");
    g.column_mut(0).fill(1.0);
    let q = orthonormal_rows(g.t()).t().to_owned(); // n x 4, first column ~ ones
    let s = [3.0, 2.0, 1.0];
    let x = Array2::from_shape_fn((n, 3), |(i, j)| q[(i, j + 1)] * s[j]);
    let m = model("mlp:3-3-3:identity");
    let mut p = vec![0.0; m.num_params()];
    set(&m, &mut p, "0.weight", &eye(3));
    set(&m, &mut p, "2.weight", &eye(3));
    let h = |v: &[f64]| -> f64 {
        let t: f64 = v.iter().sum();
        v.iter().map(|a| -(a / t) * (a / t).ln()).sum::<f64>().exp()
    };
    let want = h(&s);
    let want_gram = h(&[9.0, 4.0, 1.0]);
    for centring in [Centring::None, Centring::Mean] {
        let est = representation_rank(
            &m,
            &p,
            &EvalSet::new(x.clone(), None, None),
            &RepresentationRankParams { layers: EmbeddingLayers::All, centring },
        )
        .unwrap();
        assert_eq!(est.layers.len(), 4); // input, linear, activation, linear
        for l in &est.layers {
            assert!(
                close(l.effective_rank, want, DECOMP),
                "{centring:?} {}: {} vs {want}",
                l.layer.name,
                l.effective_rank
            );
            assert!(close(l.effective_rank_gram, want_gram, DECOMP));
            assert!(l.effective_rank_gram <= l.effective_rank);
        }
    }
    let shifted = &x + &array![5.0, -1.0, 2.0];
    let centred = representation_rank(
        &m,
        &p,
        &EvalSet::new(shifted.clone(), None, None),
        &RepresentationRankParams { layers: EmbeddingLayers::Blocks, centring: Centring::Mean },
    )
    .unwrap();
    assert!(close(centred.layers[1].effective_rank, want, DECOMP));
    let raw =
        representation_rank(&m, &p, &EvalSet::new(shifted, None, None), &RepresentationRankParams::default()).unwrap();
    assert!(!close(raw.layers[1].effective_rank, want, 1e-3));
    // Blocks: input, then the output of the hidden activation, then the logits.
    let names: Vec<&str> = centred.layers.iter().map(|l| l.layer.name.as_str()).collect();
    assert_eq!(names, ["input", "1", "2"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Spectral bias

#[test]
fn dft_recovers_the_amplitude_of_a_pure_sine() {
    let n = 64;
    let v: Vec<f64> =
        (0..n).map(|j| 2.5 * (2.0 * std::f64::consts::PI * 7.0 * j as f64 / n as f64 + 1.1).sin() + 0.75).collect();
    let a = dft_amplitudes(&v);
    assert_eq!(a.len(), n / 2 + 1);
    for (k, &amp) in a.iter().enumerate() {
        let want = match k {
            0 => 0.75,
            7 => 2.5,
            _ => 0.0,
        };
        assert!((amp - want).abs() < DECOMP, "bin {k}: {amp}, want {want}");
    }
    // Nyquist bin: A cos(pi N z) alternates +-A.
    let alt: Vec<f64> = (0..n).map(|j| if j % 2 == 0 { 1.5 } else { -1.5 }).collect();
    assert!((dft_amplitudes(&alt)[n / 2] - 1.5).abs() < DECOMP);
}

#[test]
fn spectral_bias_residuals_of_known_functions() {
    // The zero network has residual -lambda: Delta_i = 1 and nothing learned, whatever the
    // phases and amplitudes; a constant network c shows |c| in bin 0 and still Delta_i = 1.
    let spec = SinesSpec { amplitudes: sgdlab_data::Amplitudes::Increasing, ..SinesSpec::default() };
    let target = spec.target();
    let m = model("mlp:1-8-1:relu");
    let zero = vec![0.0; m.num_params()];
    let e = spectral_bias(&m, &zero, &target, spec.n, &|z| z).unwrap();
    assert_eq!(e.frequencies, (1..=10).map(|i| 5 * i).collect::<Vec<_>>());
    for i in 0..10 {
        assert!((e.residual[i] - 1.0).abs() < DECOMP && e.learned[i].abs() < DECOMP, "{i}: {:?}", e.residual);
    }
    assert!((e.relative_error - 1.0).abs() < EXACT);
    // A linear model f(z) = c (bias only): residual at every k_i stays 1, bin 0 holds |c|.
    let m1 = model("mlp:1-1:relu");
    let e = spectral_bias(&m1, &[0.0, 0.3], &target, spec.n, &|z| z).unwrap();
    assert!((e.network_spectrum[0] - 0.3).abs() < DECOMP && e.residual.iter().all(|r| (r - 1.0).abs() < DECOMP));
    // Inputs are validated: a frequency at or above Nyquist, a network that is not 1 -> 1.
    let one = SumOfSines { frequencies: vec![100], amplitudes: vec![1.0], phases: vec![0.0] };
    assert!(spectral_bias(&m, &zero, &one, 200, &|z| z).is_err());
    assert!(spectral_bias(&model("mlp:2-1:relu"), &[0.0; 3], &target, 200, &|z| z).is_err());
}

#[test]
fn time_to_learn_and_its_rank_correlation() {
    let k = [5, 10, 15, 20];
    let steps = [0, 100, 200, 300];
    // Frequency i drops below 0.1 at step 100 i; the last is never learned.
    let r = vec![
        vec![0.9, 0.9, 0.9, 0.9],
        vec![0.05, 0.9, 0.9, 0.9],
        vec![0.05, 0.09, 0.5, 0.9],
        vec![0.05, 0.09, 0.2, 0.9],
    ];
    let t = time_to_learn(&k, &steps, &r, 0.1).unwrap();
    assert_eq!(t.steps, vec![Some(100), Some(200), None, None]);
    assert_eq!(t.learned, 2);
    // Ranks of t: 1, 2, 3.5, 3.5 against 1..4: Spearman = sqrt(0.9) (scipy's value).
    assert!((t.spearman - 0.9f64.sqrt()).abs() < EXACT, "{}", t.spearman);
    assert!(time_to_learn(&k, &[0, 0, 1, 2], &r, 0.1).is_err());
}

// ---------------------------------------------------------------------------------------------
// 3. Effective depth and neural collapse

#[test]
fn ncc_effective_depth_of_a_hand_built_xor_network() {
    // XOR on (+-1, +-1): both class centres of the input are 0, so the input's NCC error is 1/2
    // (ties go to class 0). The hidden ReLU layer h = (relu(x1 + x2), relu(-x1 - x2)) maps class 0
    // to (2, 0) and (0, 2) (centre (1, 1)) and class 1 to (0, 0): NCC error 0 at depth 1.
    let x =
        array![[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]];
    let y = vec![0u32, 0, 1, 1, 0, 1, 0, 1];
    let m = model("mlp:2-2-2:relu");
    let mut p = vec![0.0; m.num_params()];
    set(&m, &mut p, "0.weight", &[1.0, 1.0, -1.0, -1.0]);
    set(&m, &mut p, "2.weight", &[1.0, 1.0, -1.0, -1.0]);
    let train = EvalSet::new(x.clone(), Some(y.clone()), None);
    let est = ncc_depth(&m, &p, &train, Some(&train), &NccDepthParams { batch_size: 4, ..NccDepthParams::default() })
        .unwrap();
    let errs: Vec<f64> = est.layers.iter().map(|l| l.train_error).collect();
    assert_eq!(est.layers.iter().map(|l| l.layer.depth).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!((errs[0] - 0.5).abs() < EXACT && errs[1].abs() < EXACT, "{errs:?}");
    assert_eq!(est.effective_depth, Some(1));
    assert_eq!(est.max_depth, 2);
    // Test centres are the training centres: the same set gives the same errors.
    assert_eq!(est.layers.iter().map(|l| l.test_error.unwrap()).collect::<Vec<_>>(), errs);
    assert_eq!(effective_depth(&[0.3, 0.2, 0.005, 0.0], 0.01), Some(2));
    assert_eq!(effective_depth(&[0.3, 0.2], 0.01), None);
}

/// Simplex ETF means in `p` dimensions: `sqrt(C/(C-1)) (e_c - 1/C)` rotated by a random `p x C`
/// matrix with orthonormal columns, scaled by `r`.
fn simplex_etf(c: usize, p: usize, r: f64, seed: u64) -> Array2<f64> {
    let u = orthonormal_rows(gaussian(c, p, seed, "etf").view()); // c x p, orthonormal rows
    let s = (c as f64 / (c as f64 - 1.0)).sqrt();
    let centred = Array2::from_shape_fn((c, c), |(i, j)| s * (if i == j { 1.0 } else { 0.0 } - 1.0 / c as f64));
    centred.dot(&u) * r
}

#[test]
fn neural_collapse_of_perfectly_collapsed_features_is_zero() {
    let (c, p, per) = (4, 6, 5);
    let means = simplex_etf(c, p, 2.0, 3);
    let labels: Vec<u32> = (0..c * per).map(|i| (i % c) as u32).collect();
    let shift = array![0.3, -1.0, 2.0, 0.0, 0.5, 1.5]; // a global mean, removed by mu_G
    let h = Array2::from_shape_fn((c * per, p), |(i, j)| means[(labels[i] as usize, j)] + shift[j]);
    // Self-dual classifier W = M~^T (rows = centred means), bias chosen so W h + b = W M~.
    let w = means.clone();
    let b: Vec<f64> = (0..c).map(|k| -w.row(k).dot(&shift)).collect();
    let e = collapse_metrics(
        h.view(),
        &labels,
        c,
        w.view(),
        Some(&b),
        Some((h.view(), &labels)),
        &NeuralCollapseParams::default(),
    )
    .unwrap();
    for (name, v) in [
        ("nc1", e.nc1),
        ("equinorm_means", e.equinorm_means),
        ("equinorm_weights", e.equinorm_weights),
        ("equiangular_std_means", e.equiangular_std_means),
        ("angle_deviation_means", e.angle_deviation_means),
        ("angle_deviation_weights", e.angle_deviation_weights),
        ("etf_deviation_means", e.etf_deviation_means),
        ("etf_deviation_weights", e.etf_deviation_weights),
        ("nc3_papyan", e.nc3_papyan),
        ("nc3_zhu", e.nc3_zhu),
        ("nc4_train", e.nc4_train),
    ] {
        assert!(v.abs() < DECOMP, "{name} = {v:e}");
    }
    assert_eq!(e.sigma_b_rank, c - 1);
    assert_eq!((e.nc4_test, e.train_accuracy, e.test_accuracy), (Some(0.0), 1.0, Some(1.0)));
    // A non-ETF (unequal norms) breaks equinorm but not NC1.
    let mut skewed = means.clone();
    skewed.row_mut(0).mapv_inplace(|v| 2.0 * v);
    let h2 = Array2::from_shape_fn((c * per, p), |(i, j)| skewed[(labels[i] as usize, j)]);
    let e2 = collapse_metrics(h2.view(), &labels, c, w.view(), None, None, &NeuralCollapseParams::default()).unwrap();
    assert!(e2.nc1.abs() < DECOMP && e2.equinorm_means > 0.1 && e2.etf_deviation_means > 0.05);
}

#[test]
fn nc1_matches_the_explicit_inverse_when_sigma_b_is_invertible() {
    // C = 4 classes in p = 3 dimensions with unequal class sizes: Sigma_B has full rank 3, so
    // its pseudo-inverse is the inverse; compare with Tr(Sigma_W Sigma_B^{-1}) / C built densely.
    let (c, p, n) = (4usize, 3usize, 40usize);
    let labels: Vec<u32> = (0..n).map(|i| ((i * 7) % 11 % c) as u32).collect();
    let centres = gaussian(c, p, 5, "centres") * 3.0;
    let h = Array2::from_shape_fn((n, p), |(i, j)| centres[(labels[i] as usize, j)]) + gaussian(n, p, 5, "noise");
    let w = gaussian(c, p, 5, "w");
    let e = collapse_metrics(h.view(), &labels, c, w.view(), None, None, &NeuralCollapseParams::default()).unwrap();
    // Dense reference.
    let mut mu = Array2::<f64>::zeros((c, p));
    let mut cnt = vec![0.0; c];
    for (i, &y) in labels.iter().enumerate() {
        let mut r = mu.row_mut(y as usize);
        r += &h.row(i);
        cnt[y as usize] += 1.0;
    }
    for (mut row, n) in mu.rows_mut().into_iter().zip(&cnt) {
        row.mapv_inplace(|v| v / n);
    }
    let mg: Array1<f64> = h.mean_axis(ndarray::Axis(0)).unwrap();
    let mut sw = Array2::<f64>::zeros((p, p));
    for (i, &y) in labels.iter().enumerate() {
        let d = &h.row(i) - &mu.row(y as usize);
        sw += &(d.clone().insert_axis(ndarray::Axis(1)).dot(&d.insert_axis(ndarray::Axis(0))));
    }
    sw /= n as f64;
    let mt = &mu - &mg;
    let sb = mt.t().dot(&mt) / c as f64;
    let eig = symmetric_eigen(sb.view()).unwrap();
    let inv = eig.vectors.dot(&Array2::from_diag(&eig.values.mapv(|l| 1.0 / l))).dot(&eig.vectors.t());
    let want = sw.dot(&inv).diag().sum() / c as f64;
    assert_eq!(e.sigma_b_rank, 3);
    assert!(close(e.nc1, want, 1e-9), "nc1 {} vs dense {want}", e.nc1);
}

#[test]
fn neural_collapse_of_a_model_reads_its_penultimate_layer() {
    // The model's features (input of the last linear layer) fed to collapse_metrics directly
    // must give the same numbers as neural_collapse on the model.
    let m = model("mlp:5-6-3:tanh");
    let p = InitSpec::default().init::<f64>(&m, &RngStream::new(2)).into_vec();
    let x = gaussian(30, 5, 2, "x");
    let y: Vec<u32> = (0..30).map(|i| (i % 3) as u32).collect();
    let set = EvalSet::new(x.clone(), Some(y.clone()), None);
    let opts = NeuralCollapseParams { batch_size: 7, ..NeuralCollapseParams::default() };
    let e = neural_collapse(&m, &p, &set, Some(&set), &opts).unwrap();
    let acts = m.activations(&p, x.view()).unwrap();
    let w = Params::from_vec(m.layout().clone(), p.clone()).unwrap();
    let w2 = w.tensor("2.weight").unwrap().into_dimensionality::<ndarray::Ix2>().unwrap().to_owned();
    let b2: Vec<f64> = w.tensor("2.bias").unwrap().iter().copied().collect();
    let f = collapse_metrics(acts[1].view(), &y, 3, w2.view(), Some(&b2), Some((acts[1].view(), &y)), &opts).unwrap();
    assert!(close(e.nc1, f.nc1, EXACT) && close(e.nc3_zhu, f.nc3_zhu, EXACT) && e.nc4_train == f.nc4_train);
    assert_eq!(e.nc4_test, Some(e.nc4_train));
}

// ---------------------------------------------------------------------------------------------
// 4. Geometric complexity

#[test]
fn geometric_complexity_of_linear_maps_is_the_frobenius_norm() {
    // f(x) = A x + b: GC = ||A||_F^2 on any data; a deep linear net: ||A3 A2 A1||_F^2.
    let m = model("mlp:4-3:relu"); // a single linear layer, no activation
    let a = gaussian(3, 4, 7, "a");
    let mut p = vec![0.0; m.num_params()];
    set(&m, &mut p, "0.weight", a.as_slice().unwrap());
    set(&m, &mut p, "0.bias", &[1.0, -2.0, 0.5]);
    let x = gaussian(25, 4, 7, "x") * 10.0;
    let gc = geometric_complexity(&m, &p, &EvalSet::new(x.clone(), None, None), 10).unwrap();
    let fro2: f64 = a.iter().map(|v| v * v).sum();
    assert!(close(gc.value, fro2, DECOMP) && gc.standard_error < DECOMP && gc.samples == 25);
    let m3 = model("mlp:4-5-5-2:identity");
    let p3 = InitSpec::default().init::<f64>(&m3, &RngStream::new(8)).into_vec();
    let pr = Params::from_vec(m3.layout().clone(), p3.clone()).unwrap();
    let t = |n: &str| pr.tensor(n).unwrap().into_dimensionality::<ndarray::Ix2>().unwrap().to_owned();
    let prod = t("4.weight").dot(&t("2.weight")).dot(&t("0.weight"));
    let gc3 = geometric_complexity(&m3, &p3, &EvalSet::new(x.clone(), None, None), 0).unwrap();
    assert!(close(gc3.value, prod.iter().map(|v| v * v).sum::<f64>(), DECOMP));
    // The f32 path agrees to f32 accuracy (relative 1e-5 >> 30 roundings of 6e-8).
    let set32: EvalSet<f32> = EvalSet::new(x, None, None).cast();
    let p32: Vec<f32> = p3.iter().map(|&v| v as f32).collect();
    let g32 = geometric_complexity(&m3, &p32, &set32, 0).unwrap();
    assert!(close(g32.value, gc3.value, 1e-5), "{} vs {}", g32.value, gc3.value);
}

// ---------------------------------------------------------------------------------------------
// 3.3 Residual lesions and path lengths

/// A linear residual MLP whose blocks are `x + b x` (W1 = I, W2 = b I) and whose stem and head
/// are given, all biases zero.
fn scalar_residual(blocks: usize, b: f64) -> (Model, Vec<f64>) {
    let m = model(&format!("resmlp:3-3x{blocks}-2:identity:nobias"));
    let mut p = vec![0.0; m.num_params()];
    set(&m, &mut p, "0.weight", &[1.0, 0.5, 0.0, -1.0, 2.0, 0.3, 0.2, 0.0, 1.0]);
    for i in 1..=blocks {
        set(&m, &mut p, &format!("{i}.0.weight"), &eye(3));
        let bi: Vec<f64> = eye(3).iter().map(|v| v * b).collect();
        set(&m, &mut p, &format!("{i}.2.weight"), &bi);
    }
    set(&m, &mut p, &format!("{}.weight", blocks + 1), &[1.0, -1.0, 0.5, 0.0, 2.0, -1.0]);
    (m, p)
}

#[test]
fn lesions_of_scalar_blocks_keep_every_prediction() {
    // Each block multiplies by (1 + b) > 0 and the head has no bias, so deleting any set of
    // blocks rescales the logits by a positive factor: every prediction, hence every accuracy,
    // equals the baseline exactly.
    let (m, p) = scalar_residual(5, 0.3);
    let x = gaussian(40, 3, 9, "x");
    let y: Vec<u32> = (0..40).map(|i| (i % 2) as u32).collect();
    let set = EvalSet::new(x, Some(y), None);
    let est = residual_lesions(&m, &p, &set, &LesionParams { max_deleted: 3, draws: 4 }, &RngStream::new(1)).unwrap();
    assert_eq!(est.units.len(), 5);
    assert!(est.single.iter().all(|s| s.drop == 0.0) && est.median_single_drop == 0.0);
    assert_eq!(est.random.len(), 3);
    assert!(est.random.iter().all(|r| r.mean_accuracy == est.baseline_accuracy && r.sd_accuracy == 0.0));
    // forward_with_lesions with two deletions: logits = head (1.3)^3 stem x.
    let units = lesion_units(&m);
    let x1 = array![[0.2, -0.4, 1.0]];
    let z = forward_with_lesions(&m, &p, x1.view(), &units, &[0, 3]).unwrap();
    let full = forward_with_lesions(&m, &p, x1.view(), &units, &[]).unwrap();
    for (a, b) in z.iter().zip(full.iter()) {
        assert!(close(a * 1.3f64.powi(2), *b, EXACT), "{z} vs {full}");
    }
    // Plain networks: width-preserving groups only.
    let plain = model("mlp:4-6-6-6-3:relu:layernorm");
    let u: Vec<(String, std::ops::Range<usize>)> =
        lesion_units(&plain).into_iter().map(|u| (u.name, u.layers)).collect();
    assert_eq!(u, vec![("3".to_string(), 3..6), ("6".to_string(), 6..9)]);
}

#[test]
fn path_gradients_of_scalar_blocks_decay_as_b_to_the_k() {
    // Through k branches of the blocks x + b x the gradient is multiplied by b^k (skips by 1):
    // the mean norm is b^k times that of the cotangent at the last block's output, exactly, for
    // every draw; log slope ln b, R^2 = 1.
    let (n, b) = (6, 0.4);
    let (m, p) = scalar_residual(n, b);
    let x = gaussian(16, 3, 10, "x");
    let y: Vec<u32> = (0..16).map(|i| (i % 2) as u32).collect();
    let set = EvalSet::new(x, Some(y), None);
    let est = path_length_gradients(
        &m,
        &p,
        &set,
        &PathLengthParams { draws: 3, ..PathLengthParams::default() },
        &RngStream::new(2),
    )
    .unwrap();
    assert_eq!((est.blocks, est.points.len()), (n, n + 1));
    let g0 = est.points[0].mean_gradient_norm;
    for pt in &est.points {
        assert!(close(pt.mean_gradient_norm, g0 * b.powi(pt.length as i32), 1e-12), "k = {}", pt.length);
        assert!(pt.sd_over_draws <= 1e-12 * g0);
    }
    assert!(close(est.log_slope, b.ln(), 1e-12) && close(est.log_r_squared, 1.0, 1e-12));
    assert_eq!(est.points[2].paths, 15.0);
    // C(6, k) 0.4^k peaks at k = 2 (15 x 0.16 = 2.4 vs 6 x 0.4 = 2.4 at k = 1: a tie within
    // rounding, so accept either).
    assert!(est.peak_length == 1 || est.peak_length == 2, "{}", est.peak_length);
    assert!(
        path_length_gradients(
            &model("mlp:3-2:relu"),
            &[0.0; 8],
            &set,
            &PathLengthParams::default(),
            &RngStream::new(0)
        )
        .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Simplicity-bias randomisation

#[test]
fn a_model_of_the_linear_coordinate_only_fails_the_s_randomised_test() {
    // Un-rotated LMS-5: z_1 - z_0 = 2 x_0 reads only the (perfectly separating, margin 0.1)
    // linear coordinate. Standard and S^c-randomised: accuracy and AUC exactly 1. S-randomised:
    // x_0 permuted, AUC ~ 0.5 with null sd sqrt((n+1) / (12 n_pos n_neg)) ~ 0.013 for n = 2000;
    // a 0.06 band is > 4 sd (seed 0).
    let data = LmsSpec { n_train: 10, n_test: 2000, rotate: false, ..LmsSpec::default() }.generate().unwrap().dataset;
    let m = model("mlp:50-2:relu");
    let mut p = vec![0.0; m.num_params()];
    let mut w = vec![0.0; 100];
    w[0] = -1.0;
    w[50] = 1.0;
    set(&m, &mut p, "0.weight", &w);
    let stream = RngStream::new(0);
    let sets: Vec<(String, EvalSet<f64>)> = ["test", "test-s-randomised", "test-sc-randomised"]
        .iter()
        .map(|s| (s.to_string(), EvalSet::from_split(data.split(s).unwrap(), 0, &stream)))
        .collect();
    let refs: Vec<(&str, &EvalSet<f64>)> = sets.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let e = randomisation_scores(&m, &p, &refs, 512).unwrap();
    let (t, s, sc) =
        (e.get("test").unwrap(), e.get("test-s-randomised").unwrap(), e.get("test-sc-randomised").unwrap());
    assert_eq!((t.accuracy, t.auc, sc.accuracy, sc.auc), (1.0, Some(1.0), 1.0, Some(1.0)));
    assert!((s.auc.unwrap() - 0.5).abs() < 0.06 && (s.accuracy - 0.5).abs() < 0.06, "{s:?}");
}

// ---------------------------------------------------------------------------------------------
// 6. Training dynamics

#[test]
fn performance_correlation_of_f_equal_l_is_the_information_of_l() {
    // mu_Y(F; L) with F = L: I(F; Y | F) = 0, so mu = I(L; Y); and the identity
    // mu = I(L; Y) - I(L; Y | F) holds on the plug-in estimates.
    let y: Vec<u32> = (0..200).map(|i| ((i * 37) % 7 % 2) as u32).collect();
    let l: Vec<u32> = y.iter().enumerate().map(|(i, &v)| if i % 5 == 0 { 1 - v } else { v }).collect();
    let pc = performance_correlation(&l, &l, &y).unwrap();
    assert!(close(pc.performance_correlation, pc.mi_l_y, EXACT) && pc.cmi_f_y_given_l.abs() < EXACT);
    // Closed form for a binary symmetric channel with 80% agreement and balanced-ish labels:
    // I = H(Y) + H(L) - H(Y, L), checked against the counts directly.
    let n = y.len() as f64;
    let mut counts = [[0.0f64; 2]; 2];
    for (&a, &b) in l.iter().zip(&y) {
        counts[a as usize][b as usize] += 1.0;
    }
    let h = |ps: &[f64]| -> f64 { ps.iter().filter(|p| **p > 0.0).map(|p| -p * p.log2()).sum() };
    let pl = [counts[0][0] + counts[0][1], counts[1][0] + counts[1][1]].map(|c| c / n);
    let py = [counts[0][0] + counts[1][0], counts[0][1] + counts[1][1]].map(|c| c / n);
    let pj: Vec<f64> = counts.iter().flatten().map(|c| c / n).collect();
    assert!(close(pc.mi_l_y, h(&pl) + h(&py) - h(&pj), EXACT));
    let f: Vec<u32> = y.iter().enumerate().map(|(i, &v)| if i % 3 == 0 { 1 - v } else { v }).collect();
    let g = performance_correlation(&f, &l, &y).unwrap();
    assert!(close(g.performance_correlation, g.mi_l_y - g.cmi_l_y_given_f, 1e-12));
}

#[test]
fn logistic_regression_reaches_the_closed_form_optimum() {
    // x in {-1, +1}: at +1 three positives and one negative, at -1 the reverse. Without a ridge
    // the MLE has sigmoid(w + b) = 3/4 and sigmoid(-w + b) = 1/4: b = 0, w = ln 3.
    let x = array![[1.0], [1.0], [1.0], [1.0], [-1.0], [-1.0], [-1.0], [-1.0]];
    let y = [1, 1, 1, 0, 0, 0, 0, 1];
    let lr =
        fit_logistic_regression(x.view(), &y, &LogisticRegressionParams { l2: 0.0, ..Default::default() }).unwrap();
    assert!(lr.converged && lr.gradient_norm < 1e-10, "{lr:?}");
    assert!(close(lr.weights[0], 3f64.ln(), 1e-9) && lr.bias.abs() < 1e-9, "{lr:?}");
    assert_eq!(lr.predict(x.view()), vec![1, 1, 1, 1, 0, 0, 0, 0]);
    // On separable data the (default) ridge keeps the weights finite; they point along the
    // separating direction (1, 0, -1/2) (cosine > 0.99 for seed 11; the ridge optimum need not
    // separate every point, so accuracy >= 0.95).
    let xs = gaussian(60, 3, 11, "sep");
    let ys: Vec<u32> = xs.rows().into_iter().map(|r| u32::from(r[0] - 0.5 * r[2] > 0.0)).collect();
    let lr = fit_logistic_regression(xs.view(), &ys, &LogisticRegressionParams::default()).unwrap();
    assert!(lr.converged && lr.train_accuracy >= 0.95 && lr.weights.iter().all(|w| w.is_finite()), "{lr:?}");
    let dir = [1.0, 0.0, -0.5];
    let cos = lr.weights.iter().zip(dir).map(|(a, b)| a * b).sum::<f64>()
        / (lr.weights.iter().map(|a| a * a).sum::<f64>().sqrt() * 1.25f64.sqrt());
    assert!(cos > 0.99, "cos {cos}");
    assert!(fit_logistic_regression(x.view(), &[0, 1, 2, 0, 0, 0, 0, 0], &Default::default()).is_err());
}

#[test]
fn norm_growth_fits_recover_the_growth_law() {
    // rho = 3 + 2 sqrt(t): the power fit finds exponent 1/2, the sqrt fit is exact and best.
    let t: Vec<f64> = (0..=40).map(|i| (i * 50) as f64).collect();
    let rho: Vec<f64> = t.iter().map(|&s| 3.0 + 2.0 * s.sqrt()).collect();
    let g = norm_growth_fits(&t, &rho).unwrap();
    assert_eq!((g.best.as_str(), g.points), ("sqrt", 40)); // t = 0 is dropped
    assert!(
        close(g.sqrt.r_squared, 1.0, EXACT) && close(g.sqrt.slope, 2.0, 1e-10) && close(g.sqrt.intercept, 3.0, 1e-9)
    );
    assert!((g.power.exponent - 0.5).abs() < 1e-4, "{:?}", g.power);
    assert!(g.linear.r_squared < 0.99 && g.log.r_squared < 0.99);
    // rho = 5 + ln t: log is best; a linear series: linear is best, exponent 1.
    let rho: Vec<f64> = t.iter().map(|&s| 5.0 + s.max(1.0).ln()).collect();
    assert_eq!(norm_growth_fits(&t, &rho).unwrap().best, "log");
    let rho: Vec<f64> = t.iter().map(|&s| 1.0 + 0.01 * s).collect();
    let g = norm_growth_fits(&t, &rho).unwrap();
    assert!(g.best == "linear" && (g.power.exponent - 1.0).abs() < 1e-4);
}

#[test]
fn parameter_norms_group_tensors_by_layer() {
    let m = model("resmlp:2-2x1-1:relu:layernorm");
    let p: Vec<f64> = (0..m.num_params()).map(|i| (i % 5) as f64 - 2.0).collect();
    let e = parameter_norms(&m, &p).unwrap();
    assert!(close(e.total, p.iter().map(|v| v * v).sum::<f64>().sqrt(), EXACT));
    let names: Vec<&str> = e.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["0", "1.0", "1.1", "1.3", "2"]);
    let sq: f64 = e.layers.iter().map(|l| l.norm * l.norm).sum();
    assert!(close(sq, e.total * e.total, EXACT));
    assert_eq!(e.tensors.len(), m.layout().entries().len());
}

#[test]
fn saturation_of_homogeneous_networks_is_one() {
    // A bias-free ReLU network is positively homogeneous: h(rho theta) = rho^depth h(theta), so
    // every cosine is 1. A tanh network with biases is not.
    let m = model("mlp:4-8-8-3:relu:nobias");
    let p = InitSpec::default().init::<f64>(&m, &RngStream::new(3)).into_vec();
    let set = EvalSet::new(gaussian(20, 4, 3, "x"), None, None);
    let s = saturation(&m, &p, &set, &SaturationParams::default()).unwrap();
    assert_eq!(s.layers.len(), 3);
    for l in &s.layers {
        assert!((l.mean_cosine - 1.0).abs() < 1e-12 && (l.min_cosine - 1.0).abs() < 1e-12 || l.undefined > 0, "{l:?}");
    }
    assert!((s.output_cosine - 1.0).abs() < 1e-12);
    let mt = model("mlp:4-8-3:tanh");
    let mut pt = InitSpec::default().init::<f64>(&mt, &RngStream::new(3)).into_vec();
    set_biases(&mt, &mut pt, 0.7);
    let st = saturation(&mt, &pt, &set, &SaturationParams::default()).unwrap();
    assert!(st.output_cosine < 0.9999, "{}", st.output_cosine);
}

fn set_biases(m: &Model, p: &mut [f64], v: f64) {
    for e in m.layout().entries() {
        if e.name.ends_with("bias") {
            p[e.offset..e.offset + e.len].iter_mut().for_each(|b| *b = v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 9.2 Feature sparsity

#[test]
fn feature_sparsity_counts_active_dead_and_duplicate_units() {
    // Units: relu(x0), relu(2 x0) (a duplicate, correlation 1), relu(x1), and a dead unit
    // (weights 0, bias -1). On the four inputs below the activations are [1,0,2,0], [2,0,4,0],
    // [1,2,0,0], [0,0,0,0]: 6 of 16 entries active. De-duplication (reference order) removes
    // unit 0 (correlated with unit 1, still present); units 1 and 2 correlate at -5/11, kept:
    // 4 active entries / 16 = 0.25, and 4 / 8 among the kept units.
    let m = model("mlp:2-4-1:relu");
    let mut p = vec![0.0; m.num_params()];
    set(&m, &mut p, "0.weight", &[1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    set(&m, &mut p, "0.bias", &[0.0, 0.0, 0.0, -1.0]);
    let x = array![[1.0, 1.0], [-1.0, 2.0], [2.0, -1.0], [-2.0, -2.0]];
    let e = feature_sparsity(
        &m,
        &p,
        &EvalSet::new(x, None, None),
        &FeatureSparsityParams { batch_size: 3, ..Default::default() },
    )
    .unwrap();
    assert_eq!(e.layers.len(), 1);
    let l = &e.layers[0];
    assert_eq!((l.name.as_str(), l.units, l.dead_units, l.duplicate_units, l.kept_units), ("1", 4, 1, 1, 2));
    assert!((l.active_fraction - 0.375).abs() < EXACT);
    assert!(
        (l.active_fraction_deduplicated - 0.25).abs() < EXACT && (l.active_fraction_among_kept - 0.5).abs() < EXACT
    );
    // Activations inside residual blocks are found and named by their path.
    let r = model("resmlp:2-4x2-1:relu");
    let pr = InitSpec::default().init::<f64>(&r, &RngStream::new(1)).into_vec();
    let er = feature_sparsity(&r, &pr, &EvalSet::new(gaussian(9, 2, 1, "x"), None, None), &Default::default()).unwrap();
    assert_eq!(er.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["1.1", "2.1"]);
}

#[test]
fn the_remembered_logistic_regression_is_the_fresh_fit_and_keyed_by_its_inputs() {
    use sgdlab_probes::simplicity::fit_logistic_regression_cached;
    let xs = gaussian(60, 3, 12, "cache");
    let ys: Vec<u32> = xs.rows().into_iter().map(|r| u32::from(r[1] > 0.2)).collect();
    let opts = LogisticRegressionParams::default();
    let fresh = fit_logistic_regression(xs.view(), &ys, &opts).unwrap();
    let a = fit_logistic_regression_cached(xs.view(), &ys, &opts).unwrap();
    let b = fit_logistic_regression_cached(xs.view(), &ys, &opts).unwrap();
    assert_eq!(*a, fresh);
    assert!(std::sync::Arc::ptr_eq(&a, &b), "the second call is the remembered fit");
    // Other labels, another ridge or another precision are other fits.
    let flipped: Vec<u32> = ys.iter().map(|y| 1 - y).collect();
    let c = fit_logistic_regression_cached(xs.view(), &flipped, &opts).unwrap();
    assert_eq!(*c, fit_logistic_regression(xs.view(), &flipped, &opts).unwrap());
    let ridge = LogisticRegressionParams { l2: 1e-2, ..opts };
    assert_eq!(
        *fit_logistic_regression_cached(xs.view(), &ys, &ridge).unwrap(),
        fit_logistic_regression(xs.view(), &ys, &ridge).unwrap()
    );
    let x32 = xs.mapv(|v| v as f32);
    let d = fit_logistic_regression_cached(x32.view(), &ys, &opts).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &d));
}
