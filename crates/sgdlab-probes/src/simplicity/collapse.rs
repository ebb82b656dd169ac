//! Nearest-class-centre separability per layer and effective depth (PROTOCOLS 3.1), and neural
//! collapse NC1-NC4 (PROTOCOLS 3.2).

use super::{EmbeddingLayer, EmbeddingLayers, agreement, check_params, embedding_layers, embeddings, labels_of};
use crate::{EvalSet, ProbeError};
use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::stats::std_dev;
use sgdlab_linalg::{Scalar, symmetric_eigen};
use sgdlab_nn::{Layer, Model};

/// Class sums and counts of embeddings.
struct ClassMeans {
    means: Array2<f64>,
    counts: Vec<usize>,
}

fn class_means(h: ArrayView2<'_, f64>, labels: &[u32], num_classes: usize) -> ClassMeans {
    let mut means = Array2::<f64>::zeros((num_classes, h.ncols()));
    let mut counts = vec![0usize; num_classes];
    for (row, &y) in h.rows().into_iter().zip(labels) {
        let mut m = means.row_mut(y as usize);
        m += &row;
        counts[y as usize] += 1;
    }
    for (mut m, &c) in means.rows_mut().into_iter().zip(&counts) {
        if c > 0 {
            m /= c as f64;
        }
    }
    ClassMeans { means, counts }
}

/// Nearest class centre of each row of `h` (Euclidean; classes without examples are never
/// chosen; ties go to the lower class).
fn ncc_predict(h: ArrayView2<'_, f64>, cm: &ClassMeans) -> Vec<u32> {
    h.rows()
        .into_iter()
        .map(|r| {
            let mut best = (f64::INFINITY, 0u32);
            for (c, m) in cm.means.rows().into_iter().enumerate() {
                if cm.counts[c] == 0 {
                    continue;
                }
                let d: f64 = r.iter().zip(m.iter()).map(|(a, b)| (a - b) * (a - b)).sum();
                if d < best.0 {
                    best = (d, c as u32);
                }
            }
            best.1
        })
        .collect()
}

fn num_classes_of<T>(sets: &[&EvalSet<T>]) -> usize {
    sets.iter()
        .map(|s| {
            s.num_classes
                .unwrap_or(0)
                .max(s.labels.as_ref().and_then(|l| l.iter().max()).map_or(0, |&m| m as usize + 1))
        })
        .max()
        .unwrap_or(0)
}

/// The epsilon-effective depth: the first depth whose NCC training error is at most `eps`
/// (Galanti, Galanti & Ben-Shaul 2022, arXiv:2202.09028). `errors[l]` is the error at depth `l`.
pub fn effective_depth(errors: &[f64], eps: f64) -> Option<usize> {
    errors.iter().position(|&e| e <= eps)
}

/// Options of [`ncc_depth`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NccDepthParams {
    pub layers: EmbeddingLayers,
    /// The error level of the effective depth (PROTOCOLS 3.1 uses 0.01).
    pub eps: f64,
    /// Examples per forward pass (0 = all at once).
    pub batch_size: usize,
}

impl Default for NccDepthParams {
    fn default() -> Self {
        NccDepthParams { layers: EmbeddingLayers::Blocks, eps: 0.01, batch_size: 1000 }
    }
}

/// NCC errors at one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NccLayer {
    #[serde(flatten)]
    pub layer: EmbeddingLayer,
    /// Fraction of training examples whose nearest training class centre is not their class.
    pub train_error: f64,
    /// The same on the test set, with the training centres.
    pub test_error: Option<f64>,
}

/// NCC separability of every representation layer and the effective depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NccDepthEstimate {
    pub eps: f64,
    /// [`effective_depth`] of the training errors (`None`: no layer reaches `eps`).
    pub effective_depth: Option<usize>,
    /// Number of representation layers after the input (the largest possible depth).
    pub max_depth: usize,
    pub layers: Vec<NccLayer>,
    pub train_samples: usize,
    pub test_samples: Option<usize>,
    pub num_classes: usize,
}

/// Nearest-class-centre error per layer and epsilon-effective depth (Galanti, Galanti &
/// Ben-Shaul 2022, "On the implicit bias towards minimal depth of deep neural networks",
/// arXiv:2202.09028; PROTOCOLS 3.1). For the embedding `f_l` of each representation layer
/// (depth 0 = the input; see [`EmbeddingLayers`], post-activation by default), class centres
/// `mu_c^l` are the means over the training examples of class `c`; the NCC classifier is
/// `h_l(x) = argmin_c ||f_l(x) - mu_c^l||` and `err_l` the fraction of examples with
/// `h_l(x) != y`, on the training set and (with the training centres) on the test set;
/// `d_eps = min { l : err_l(train) <= eps }`.
pub fn ncc_depth<T: Scalar>(
    model: &Model,
    params: &[T],
    train: &EvalSet<T>,
    test: Option<&EvalSet<T>>,
    opts: &NccDepthParams,
) -> Result<NccDepthEstimate, ProbeError> {
    check_params(model, params)?;
    let ytr = labels_of(train, "NCC depth")?;
    if train.is_empty() {
        return Err(ProbeError::Invalid("NCC depth needs training examples".into()));
    }
    let yte = test.map(|t| labels_of(t, "NCC depth")).transpose()?;
    let mut sets = vec![train];
    sets.extend(test);
    let c = num_classes_of(&sets);
    let sel = embedding_layers(model, opts.layers);
    // Pass 1: training class means per layer, accumulated over batches.
    let mut sums: Vec<Array2<f64>> = sel.iter().map(|l| Array2::zeros((c, l.dim))).collect();
    let mut counts = vec![0usize; c];
    for r in train.batches(opts.batch_size) {
        let embs = embeddings(model, params, train.x.slice(ndarray::s![r.clone(), ..]), opts.layers)?;
        for ((_, e), s) in embs.iter().zip(sums.iter_mut()) {
            for (row, &y) in e.rows().into_iter().zip(&ytr[r.clone()]) {
                let mut m = s.row_mut(y as usize);
                m.zip_mut_with(&row, |a, &b| *a += b.to_f64());
            }
        }
        for &y in &ytr[r] {
            counts[y as usize] += 1;
        }
    }
    let cms: Vec<ClassMeans> = sums
        .into_iter()
        .map(|mut s| {
            for (mut m, &n) in s.rows_mut().into_iter().zip(&counts) {
                if n > 0 {
                    m /= n as f64;
                }
            }
            ClassMeans { means: s, counts: counts.clone() }
        })
        .collect();
    // Pass 2: NCC predictions.
    let errors = |set: &EvalSet<T>, y: &[u32]| -> Result<Vec<f64>, ProbeError> {
        let mut wrong = vec![0usize; sel.len()];
        for r in set.batches(opts.batch_size) {
            let embs = embeddings(model, params, set.x.slice(ndarray::s![r.clone(), ..]), opts.layers)?;
            for (l, (_, e)) in embs.iter().enumerate() {
                let pred = ncc_predict(e.mapv(|v| v.to_f64()).view(), &cms[l]);
                wrong[l] += pred.iter().zip(&y[r.clone()]).filter(|(p, t)| p != t).count();
            }
        }
        Ok(wrong.into_iter().map(|w| w as f64 / set.len().max(1) as f64).collect())
    };
    let tr = errors(train, ytr)?;
    let te = match (test, yte) {
        (Some(t), Some(y)) => Some(errors(t, y)?),
        _ => None,
    };
    let layers: Vec<NccLayer> = sel
        .into_iter()
        .enumerate()
        .map(|(l, layer)| NccLayer { layer, train_error: tr[l], test_error: te.as_ref().map(|e| e[l]) })
        .collect();
    Ok(NccDepthEstimate {
        eps: opts.eps,
        effective_depth: effective_depth(&tr, opts.eps),
        max_depth: layers.len() - 1,
        layers,
        train_samples: train.len(),
        test_samples: test.map(EvalSet::len),
        num_classes: c,
    })
}

/// The relative tolerance of the pseudo-inverse of `Sigma_B` in NC1: eigenvalues below
/// `rtol * lambda_max` are treated as zero (Papyan, Han & Donoho's companion code passes
/// `rcond = 1e-6` to `scipy.linalg.pinv`, recalled not re-read; `Sigma_B` has rank `C - 1` for
/// balanced classes).
pub const DEFAULT_PINV_RTOL: f64 = 1e-6;

/// Options of [`neural_collapse`] and [`collapse_metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NeuralCollapseParams {
    /// See [`DEFAULT_PINV_RTOL`].
    pub pinv_rtol: f64,
    /// Examples per forward pass (0 = all at once).
    pub batch_size: usize,
}

impl Default for NeuralCollapseParams {
    fn default() -> Self {
        NeuralCollapseParams { pinv_rtol: DEFAULT_PINV_RTOL, batch_size: 1000 }
    }
}

/// Neural-collapse metrics of the penultimate features and the last linear layer.
///
/// Notation: `h_i` penultimate feature of example `i` (`N` examples, `C` classes), `mu_c` class
/// means, `mu_G` the global mean over all examples, `M~ = [mu_c - mu_G]_c` (`p x C`), `W` the
/// classifier (`C x p`, rows `w_c`), `b` its bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuralCollapseEstimate {
    pub num_classes: usize,
    /// Training examples the metrics use.
    pub samples: usize,
    /// Feature dimension `p`.
    pub feature_dim: usize,
    /// NC1 = `Tr(Sigma_W Sigma_B^+) / C`, `Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`,
    /// `Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T`.
    pub nc1: f64,
    /// Eigenvalues of `Sigma_B` kept in the pseudo-inverse.
    pub sigma_b_rank: usize,
    /// NC2 equinorm of the means: `std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||` (sample standard
    /// deviation, n - 1, as `torch.std`).
    pub equinorm_means: f64,
    /// NC2 equinorm of the classifier rows: `std_c ||w_c|| / mean_c ||w_c||`.
    pub equinorm_weights: f64,
    /// NC2 equiangularity: sample std over pairs `c < c'` of `cos(mu_c - mu_G, mu_c' - mu_G)`.
    pub equiangular_std_means: f64,
    /// The same for `cos(w_c, w_c')`.
    pub equiangular_std_weights: f64,
    /// NC2 maximal-angle deviation: mean over pairs `c != c'` of `|cos(mu_c - mu_G, mu_c' - mu_G) +
    /// 1/(C-1)|` (0 for a simplex ETF).
    pub angle_deviation_means: f64,
    /// The same for the classifier rows.
    pub angle_deviation_weights: f64,
    /// NC2 as one number (Zhu et al. 2021, tding1/Neural-Collapse):
    /// `|| G / ||G||_F - (I - 11^T/C) / sqrt(C-1) ||_F` with `G = M~^T M~`.
    pub etf_deviation_means: f64,
    /// The same with `G = W W^T`.
    pub etf_deviation_weights: f64,
    /// NC3, Papyan et al.'s normalisation: `|| W^T / ||W||_F - M~ / ||M~||_F ||_F^2`.
    pub nc3_papyan: f64,
    /// NC3, Zhu et al.'s normalisation (tding1/Neural-Collapse `compute_W_H_relation`):
    /// `|| W M~ / ||W M~||_F - (I - 11^T/C) / sqrt(C-1) ||_F`.
    pub nc3_zhu: f64,
    /// NC4 on the training set: `(1/N) sum_i 1[argmax_c (w_c . h_i + b_c) != argmin_c ||h_i - mu_c||]`.
    pub nc4_train: f64,
    /// NC4 on the test set (training means).
    pub nc4_test: Option<f64>,
    /// Accuracy of the network's classifier on the features.
    pub train_accuracy: f64,
    pub test_accuracy: Option<f64>,
}

/// Penultimate features (the input of the last layer) of a set, and the logits.
fn penultimate<T: Scalar>(
    model: &Model,
    params: &[T],
    x: ArrayView2<'_, T>,
    batch_size: usize,
) -> Result<(Array2<f64>, Array2<f64>), ProbeError> {
    let layers = model.layers();
    let last = layers.len() - 1;
    let n = x.nrows();
    let b = if batch_size == 0 { n.max(1) } else { batch_size };
    let mut feats = Vec::new();
    let mut logits = Vec::new();
    if x.ncols() != model.in_dim() {
        return Err(ProbeError::Invalid(format!(
            "inputs have {} features, the model takes {}",
            x.ncols(),
            model.in_dim()
        )));
    }
    for s in (0..n).step_by(b) {
        let mut h = x.slice(ndarray::s![s..(s + b).min(n), ..]).to_owned();
        for (i, l) in layers[..last].iter().enumerate() {
            h = l.forward(model.layer_params(i, params), h.view());
        }
        let z = layers[last].forward(model.layer_params(last, params), h.view());
        feats.push(h.mapv(|v| v.to_f64()));
        logits.push(z.mapv(|v| v.to_f64()));
    }
    let cat = |v: Vec<Array2<f64>>, d: usize| -> Array2<f64> {
        if v.is_empty() {
            return Array2::zeros((0, d));
        }
        let views: Vec<_> = v.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(0), &views).expect("batches share their width")
    };
    let Layer::Linear(lin) = &layers[last] else { unreachable!("checked by the caller") };
    Ok((cat(feats, lin.in_dim), cat(logits, lin.out_dim)))
}

/// Neural collapse NC1-NC4 (Papyan, Han & Donoho 2020, "Prevalence of neural collapse during
/// the terminal phase of deep learning training", PNAS 117(40), arXiv:2008.08186; NC1 as in
/// tding1/Neural-Collapse; NC3 in both published normalisations; PROTOCOLS 3.2) of the
/// penultimate features (the input of the model's last layer, which must be linear) on the
/// training set, with NC4 also on a test set (training means). See [`NeuralCollapseEstimate`]
/// for every formula and [`collapse_metrics`] for the computation from features.
pub fn neural_collapse<T: Scalar>(
    model: &Model,
    params: &[T],
    train: &EvalSet<T>,
    test: Option<&EvalSet<T>>,
    opts: &NeuralCollapseParams,
) -> Result<NeuralCollapseEstimate, ProbeError> {
    check_params(model, params)?;
    let last = model.layers().len() - 1;
    let Layer::Linear(lin) = &model.layers()[last] else {
        return Err(ProbeError::Invalid("neural collapse needs a model whose last layer is linear".into()));
    };
    let ytr = labels_of(train, "neural collapse")?;
    let yte = test.map(|t| labels_of(t, "neural collapse")).transpose()?;
    let mut sets = vec![train];
    sets.extend(test);
    let c = num_classes_of(&sets);
    if c != lin.out_dim {
        return Err(ProbeError::Invalid(format!("{c} classes but the classifier has {} outputs", lin.out_dim)));
    }
    let lp: Vec<f64> = model.layer_params(last, params).iter().map(|&v| v.to_f64()).collect();
    let w = ArrayView2::from_shape((lin.out_dim, lin.in_dim), &lp[..lin.out_dim * lin.in_dim]).expect("[out, in]");
    let bias = lin.bias.then(|| &lp[lin.out_dim * lin.in_dim..]);
    let (h, _) = penultimate(model, params, train.x.view(), opts.batch_size)?;
    let test_feats = match (test, yte) {
        (Some(t), Some(y)) => Some((penultimate(model, params, t.x.view(), opts.batch_size)?.0, y)),
        _ => None,
    };
    collapse_metrics(h.view(), ytr, c, w, bias, test_feats.as_ref().map(|(f, y)| (f.view(), *y)), opts)
}

fn cv(x: &[f64]) -> f64 {
    std_dev(x, 1) / (x.iter().sum::<f64>() / x.len() as f64)
}

fn fro(a: &Array2<f64>) -> f64 {
    a.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// `|| G / ||G||_F - (I - 11^T/C) / sqrt(C-1) ||_F`.
fn etf_deviation(g: &Array2<f64>) -> f64 {
    let c = g.nrows();
    let gn = fro(g);
    let s = 1.0 / ((c - 1) as f64).sqrt();
    let mut d = 0.0;
    for i in 0..c {
        for j in 0..c {
            let target = s * (if i == j { 1.0 } else { 0.0 } - 1.0 / c as f64);
            d += (g[(i, j)] / gn - target).powi(2);
        }
    }
    d.sqrt()
}

/// (sample std of cos over pairs c < c', mean |cos + 1/(C-1)| over pairs) of the rows of `v`.
fn angles(v: &Array2<f64>) -> (f64, f64) {
    let c = v.nrows();
    let mut cos = Vec::new();
    for i in 0..c {
        for j in i + 1..c {
            cos.push(super::cosine(&v.row(i).to_vec(), &v.row(j).to_vec()).unwrap_or(f64::NAN));
        }
    }
    let dev = cos.iter().map(|x| (x + 1.0 / (c - 1) as f64).abs()).sum::<f64>() / cos.len() as f64;
    (std_dev(&cos, 1), dev)
}

/// NC1-NC4 from penultimate features `h` (`[N, p]`), their labels, the classifier `weight`
/// (`[C, p]`) and `bias`, and optionally test features with labels (see
/// [`NeuralCollapseEstimate`] for the formulas). The pseudo-inverse of `Sigma_B` is taken through
/// the `C x C` matrix `M~^T M~ / C`, which has the same non-zero eigenvalues, so `Sigma_W` and
/// `Sigma_B` (`p x p`) are never formed: `Tr(Sigma_W Sigma_B^+) = sum_{lambda_i > rtol
/// lambda_max} u_i^T Sigma_W u_i / lambda_i`.
pub fn collapse_metrics(
    h: ArrayView2<'_, f64>,
    labels: &[u32],
    num_classes: usize,
    weight: ArrayView2<'_, f64>,
    bias: Option<&[f64]>,
    test: Option<(ArrayView2<'_, f64>, &[u32])>,
    opts: &NeuralCollapseParams,
) -> Result<NeuralCollapseEstimate, ProbeError> {
    let (n, p) = h.dim();
    let c = num_classes;
    if labels.len() != n {
        return Err(ProbeError::Invalid(format!("{n} feature rows but {} labels", labels.len())));
    }
    if c < 2 {
        return Err(ProbeError::Invalid("neural collapse needs at least 2 classes".into()));
    }
    if weight.dim() != (c, p) {
        return Err(ProbeError::Invalid(format!("classifier is {:?}, expected [{c}, {p}]", weight.dim())));
    }
    if let Some(&y) = labels.iter().find(|&&y| y as usize >= c) {
        return Err(ProbeError::Invalid(format!("label {y} is not below {c} classes")));
    }
    let cm = class_means(h, labels, c);
    if let Some(k) = cm.counts.iter().position(|&k| k == 0) {
        return Err(ProbeError::Invalid(format!("class {k} has no training examples")));
    }
    let mu_g = h.mean_axis(Axis(0)).expect("examples exist");
    // M~ as rows (C x p): mu_c - mu_G.
    let mt: Array2<f64> = &cm.means - &mu_g;
    // NC1 through the C x C problem.
    let a = mt.dot(&mt.t()) / c as f64;
    let eig = symmetric_eigen(a.view()).map_err(|e| ProbeError::Invalid(e.0))?;
    let lmax = eig.values.iter().fold(0.0f64, |m, v| m.max(*v));
    let mut within = h.to_owned();
    for (mut r, &y) in within.rows_mut().into_iter().zip(labels) {
        r -= &cm.means.row(y as usize);
    }
    let mut nc1 = 0.0;
    let mut rank = 0;
    for (i, &lam) in eig.values.iter().enumerate() {
        if lmax <= 0.0 || lam <= opts.pinv_rtol * lmax {
            continue;
        }
        rank += 1;
        // u = M~ v / sqrt(C lambda): unit eigenvector of Sigma_B.
        let u = mt.t().dot(&eig.vectors.column(i)) / (c as f64 * lam).sqrt();
        let proj = within.dot(&u);
        let quad = proj.iter().map(|v| v * v).sum::<f64>() / n as f64;
        nc1 += quad / lam;
    }
    nc1 /= c as f64;
    let w = weight.to_owned();
    let mean_norms: Vec<f64> = mt.rows().into_iter().map(|r| r.dot(&r).sqrt()).collect();
    let w_norms: Vec<f64> = w.rows().into_iter().map(|r| r.dot(&r).sqrt()).collect();
    let (std_m, dev_m) = angles(&mt);
    let (std_w, dev_w) = angles(&w);
    let wm = w.dot(&mt.t()); // W M~ (C x C)
    let nc3_zhu = etf_deviation(&wm);
    let (wf, mf) = (fro(&w), fro(&mt));
    let nc3_papyan = w.iter().zip(mt.iter()).map(|(a, b)| (a / wf - b / mf).powi(2)).sum::<f64>();
    let classify = |f: ArrayView2<'_, f64>| -> Vec<u32> {
        let mut z = f.dot(&w.t());
        if let Some(b) = bias {
            for mut r in z.rows_mut() {
                r.iter_mut().zip(b).for_each(|(v, bb)| *v += bb);
            }
        }
        super::predicted_classes(z.view())
    };
    let net = classify(h);
    let ncc = ncc_predict(h, &cm);
    let (nc4_test, test_accuracy) = match test {
        Some((f, y)) => {
            if f.ncols() != p || f.nrows() != y.len() {
                return Err(ProbeError::Invalid("test features do not match the training features".into()));
            }
            let a = classify(f);
            let b = ncc_predict(f, &cm);
            (Some(1.0 - agreement(&a, &b)), Some(agreement(&a, y)))
        }
        None => (None, None),
    };
    Ok(NeuralCollapseEstimate {
        num_classes: c,
        samples: n,
        feature_dim: p,
        nc1,
        sigma_b_rank: rank,
        equinorm_means: cv(&mean_norms),
        equinorm_weights: cv(&w_norms),
        equiangular_std_means: std_m,
        equiangular_std_weights: std_w,
        angle_deviation_means: dev_m,
        angle_deviation_weights: dev_w,
        etf_deviation_means: etf_deviation(&mt.dot(&mt.t())),
        etf_deviation_weights: etf_deviation(&w.dot(&w.t())),
        nc3_papyan,
        nc3_zhu,
        nc4_train: 1.0 - agreement(&net, &ncc),
        nc4_test,
        train_accuracy: agreement(&net, labels),
        test_accuracy,
    })
}
