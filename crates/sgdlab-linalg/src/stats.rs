//! Statistics helpers that studies and probes reuse: ranks and rank correlation (with ties, as
//! `scipy.stats`), ordinary least squares with R^2, ROC AUC, plug-in entropies and (conditional)
//! mutual information of discrete variables in bits, quantiles, and percentile bootstrap
//! confidence intervals drawn from a named [`RngStream`].
//!
//! Everything works in f64 on slices; NaN inputs are rejected where they would make a rank or a
//! fit meaningless (the functions return NaN or an error, never panic, on degenerate input).

use crate::RngStream;
use ndarray::{Array1, ArrayView2};
use rand::RngExt;
use std::collections::BTreeMap;
use std::fmt;

/// A statistics helper given input it cannot work with (lengths differ, too few points, NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsError(pub String);

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for StatsError {}

fn same_len(what: &str, a: usize, b: usize) -> Result<(), StatsError> {
    if a != b {
        return Err(StatsError(format!("{what}: inputs have {a} and {b} entries")));
    }
    Ok(())
}

fn no_nan(what: &str, x: &[f64]) -> Result<(), StatsError> {
    if let Some(i) = x.iter().position(|v| v.is_nan()) {
        return Err(StatsError(format!("{what}: entry {i} is NaN")));
    }
    Ok(())
}

/// Arithmetic mean (NaN for an empty slice).
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Variance with `ddof` delta degrees of freedom (`ddof = 1`: the unbiased sample variance, as
/// `torch.std`; `ddof = 0`: the population variance, as `numpy.var`). NaN when `n <= ddof`.
pub fn variance(x: &[f64], ddof: usize) -> f64 {
    let n = x.len();
    if n <= ddof {
        return f64::NAN;
    }
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - ddof) as f64
}

/// Standard deviation with `ddof` delta degrees of freedom (see [`variance`]).
pub fn std_dev(x: &[f64], ddof: usize) -> f64 {
    variance(x, ddof).sqrt()
}

/// Median (the mean of the two middle values for an even count; NaN when empty or with NaN).
pub fn median(x: &[f64]) -> f64 {
    quantile(x, 0.5)
}

/// The `q`-quantile with linear interpolation between order statistics (NumPy's default
/// `method="linear"`: position `q (n - 1)` in the sorted sample). NaN when empty, when `q` is not
/// in `[0, 1]` or when `x` holds a NaN.
pub fn quantile(x: &[f64], q: f64) -> f64 {
    if x.is_empty() || !(0.0..=1.0).contains(&q) || x.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    if lo == hi { s[lo] } else { s[lo] + frac * (s[hi] - s[lo]) }
}

/// Ranks `1..=n` with ties given the average of the ranks they span (`scipy.stats.rankdata` with
/// `method="average"`). Infinite values are ordinary values (`+inf` ranks last). Errors on NaN.
pub fn ranks(x: &[f64]) -> Result<Vec<f64>, StatsError> {
    no_nan("ranks", x)?;
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        // `==` (not total_cmp) so that -0.0 and 0.0 tie, as in scipy.
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    Ok(r)
}

/// Pearson's correlation coefficient `cov(x, y) / (sd(x) sd(y))`; NaN when either input is
/// constant or has fewer than 2 points.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    same_len("pearson", x.len(), y.len())?;
    if x.len() < 2 {
        return Ok(f64::NAN);
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Ok(f64::NAN);
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Spearman's rank correlation: Pearson's correlation of the average ranks (ties handled as
/// `scipy.stats.spearmanr`). NaN when a variable is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    same_len("spearman", x.len(), y.len())?;
    pearson(&ranks(x)?, &ranks(y)?)
}

/// Kendall's tau-b: `(concordant - discordant) / sqrt((n0 - n1)(n0 - n2))` over all pairs, with
/// `n1`, `n2` the pairs tied in `x`, in `y` (as `scipy.stats.kendalltau`, variant b). NaN when a
/// variable is constant or there are fewer than 2 points. O(n^2), for the tens to thousands of
/// runs a study has.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    same_len("kendall_tau_b", x.len(), y.len())?;
    no_nan("kendall_tau_b", x)?;
    no_nan("kendall_tau_b", y)?;
    let n = x.len();
    let (mut s, mut tx, mut ty, mut n0) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = ((x[i] - x[j]).signum(), (y[i] - y[j]).signum());
            let (a, b) = (if x[i] == x[j] { 0.0 } else { a }, if y[i] == y[j] { 0.0 } else { b });
            n0 += 1;
            if a == 0.0 {
                tx += 1;
            }
            if b == 0.0 {
                ty += 1;
            }
            s += (a * b) as i64;
        }
    }
    let denom = (((n0 - tx) as f64) * ((n0 - ty) as f64)).sqrt();
    if n < 2 || denom == 0.0 {
        return Ok(f64::NAN);
    }
    Ok((s as f64 / denom).clamp(-1.0, 1.0))
}

/// An ordinary least-squares fit `y ~ intercept + slope * x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    pub slope: f64,
    pub intercept: f64,
    /// Coefficient of determination `1 - SS_res / SS_tot` (1 for a perfect fit; NaN when `y` is
    /// constant).
    pub r_squared: f64,
    /// Number of points.
    pub n: usize,
}

/// Least-squares line through `(x_i, y_i)`. Errors with fewer than 2 points, NaN, or constant `x`.
pub fn linear_fit(x: &[f64], y: &[f64]) -> Result<LinearFit, StatsError> {
    same_len("linear_fit", x.len(), y.len())?;
    no_nan("linear_fit (x)", x)?;
    no_nan("linear_fit (y)", y)?;
    let n = x.len();
    if n < 2 {
        return Err(StatsError(format!("linear_fit: need at least 2 points, got {n}")));
    }
    let (mx, my) = (mean(x), mean(y));
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    if sxx == 0.0 {
        return Err(StatsError("linear_fit: x is constant".into()));
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = x.iter().zip(y).map(|(a, b)| (b - intercept - slope * a).powi(2)).sum();
    let ss_tot: f64 = y.iter().map(|b| (b - my) * (b - my)).sum();
    let r_squared = if ss_tot == 0.0 { f64::NAN } else { 1.0 - ss_res / ss_tot };
    Ok(LinearFit { slope, intercept, r_squared, n })
}

/// An ordinary least-squares fit `y ~ X beta` with a design matrix `X` (`[n, p]`; include a
/// column of ones for an intercept).
#[derive(Debug, Clone, PartialEq)]
pub struct LeastSquaresFit {
    /// `beta`, one per column of `X`.
    pub coefficients: Vec<f64>,
    /// Residual sum of squares `||y - X beta||^2`.
    pub residual_sum_of_squares: f64,
    /// `1 - SS_res / SS_tot` with `SS_tot` around the mean of `y` (the usual R^2 when `X` holds an
    /// intercept column).
    pub r_squared: f64,
    /// Number of points.
    pub n: usize,
}

/// Least squares by Householder QR of the design matrix (no normal equations, so the condition
/// number is not squared). Errors when `n < p`, on NaN, or when `X` is rank deficient (a pivot
/// below `n * eps * max |R_jj|`).
pub fn least_squares(design: ArrayView2<'_, f64>, y: &[f64]) -> Result<LeastSquaresFit, StatsError> {
    let (n, p) = design.dim();
    same_len("least_squares", n, y.len())?;
    no_nan("least_squares (y)", y)?;
    if design.iter().any(|v| v.is_nan()) {
        return Err(StatsError("least_squares: the design matrix holds NaN".into()));
    }
    if n < p || p == 0 {
        return Err(StatsError(format!("least_squares: {n} points for {p} coefficients")));
    }
    let mut a = design.to_owned();
    let mut b = Array1::from(y.to_vec());
    let mut diag = vec![0.0; p];
    for j in 0..p {
        let norm = (j..n).map(|i| a[(i, j)] * a[(i, j)]).sum::<f64>().sqrt();
        let alpha = if a[(j, j)] > 0.0 { -norm } else { norm };
        diag[j] = alpha;
        if norm == 0.0 {
            continue;
        }
        // v = a[j.., j] - alpha e_1, stored in place.
        a[(j, j)] -= alpha;
        let vnorm2: f64 = (j..n).map(|i| a[(i, j)] * a[(i, j)]).sum();
        if vnorm2 == 0.0 {
            continue;
        }
        for c in j + 1..p {
            let s: f64 = (j..n).map(|i| a[(i, j)] * a[(i, c)]).sum::<f64>() * 2.0 / vnorm2;
            for i in j..n {
                a[(i, c)] -= s * a[(i, j)];
            }
        }
        let s: f64 = (j..n).map(|i| a[(i, j)] * b[i]).sum::<f64>() * 2.0 / vnorm2;
        for i in j..n {
            b[i] -= s * a[(i, j)];
        }
    }
    let rmax = diag.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = n as f64 * f64::EPSILON * rmax;
    if let Some(j) = diag.iter().position(|v| v.abs() <= tol) {
        return Err(StatsError(format!("least_squares: the design matrix is rank deficient (column {j})")));
    }
    let mut beta = vec![0.0; p];
    for j in (0..p).rev() {
        let s: f64 = (j + 1..p).map(|c| a[(j, c)] * beta[c]).sum();
        beta[j] = (b[j] - s) / diag[j];
    }
    let ss_res: f64 = (0..n)
        .map(|i| {
            let pred: f64 = (0..p).map(|c| design[(i, c)] * beta[c]).sum();
            (y[i] - pred).powi(2)
        })
        .sum();
    let my = mean(y);
    let ss_tot: f64 = y.iter().map(|v| (v - my) * (v - my)).sum();
    let r_squared = if ss_tot == 0.0 { f64::NAN } else { 1.0 - ss_res / ss_tot };
    Ok(LeastSquaresFit { coefficients: beta, residual_sum_of_squares: ss_res, r_squared, n })
}

/// Area under the ROC curve of `scores` for the binary labels `positive` (Mann-Whitney U over
/// `n_pos * n_neg`, ties counted one half; equals `sklearn.metrics.roc_auc_score`). NaN when one
/// class is absent. Errors on NaN scores.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Result<f64, StatsError> {
    same_len("roc_auc", scores.len(), positive.len())?;
    let r = ranks(scores)?;
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Ok(f64::NAN);
    }
    let rank_sum: f64 = r.iter().zip(positive).filter(|(_, p)| **p).map(|(r, _)| r).sum();
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Ok(u / (n_pos as f64 * n_neg as f64))
}

/// Counts in an ordered map: the entropy sums its terms in key order, so its last bit is the same
/// in every process (a `HashMap` sums in a per-process random order).
fn entropy_of_counts<K>(counts: &BTreeMap<K, usize>, n: usize) -> f64 {
    let n = n as f64;
    counts
        .values()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Plug-in (maximum-likelihood) Shannon entropy in bits of the empirical distribution of `x`.
/// 0 for an empty slice.
pub fn entropy_bits(x: &[u32]) -> f64 {
    let mut c: BTreeMap<u32, usize> = BTreeMap::new();
    for &v in x {
        *c.entry(v).or_default() += 1;
    }
    entropy_of_counts(&c, x.len())
}

fn joint_entropy_bits(cols: &[&[u32]]) -> f64 {
    let n = cols.first().map_or(0, |c| c.len());
    let mut c: BTreeMap<Vec<u32>, usize> = BTreeMap::new();
    for i in 0..n {
        *c.entry(cols.iter().map(|col| col[i]).collect()).or_default() += 1;
    }
    entropy_of_counts(&c, n)
}

/// Plug-in mutual information `I(X; Y) = H(X) + H(Y) - H(X, Y)` in bits, from the empirical joint
/// distribution of the paired samples (no bias correction). Non-negative up to rounding.
pub fn mutual_information_bits(x: &[u32], y: &[u32]) -> Result<f64, StatsError> {
    same_len("mutual_information_bits", x.len(), y.len())?;
    Ok((entropy_bits(x) + entropy_bits(y) - joint_entropy_bits(&[x, y])).max(0.0))
}

/// Plug-in conditional mutual information
/// `I(X; Y | Z) = H(X, Z) + H(Y, Z) - H(X, Y, Z) - H(Z)` in bits (no bias correction).
pub fn conditional_mutual_information_bits(x: &[u32], y: &[u32], z: &[u32]) -> Result<f64, StatsError> {
    same_len("conditional_mutual_information_bits", x.len(), y.len())?;
    same_len("conditional_mutual_information_bits", x.len(), z.len())?;
    let v =
        joint_entropy_bits(&[x, z]) + joint_entropy_bits(&[y, z]) - joint_entropy_bits(&[x, y, z]) - entropy_bits(z);
    Ok(v.max(0.0))
}

/// A percentile bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapCi {
    /// The statistic on the original sample.
    pub estimate: f64,
    /// Lower end: the `(1 - level) / 2` quantile of the bootstrap replicates.
    pub lower: f64,
    /// Upper end: the `(1 + level) / 2` quantile of the bootstrap replicates.
    pub upper: f64,
    /// Nominal coverage, e.g. 0.95.
    pub level: f64,
    /// Standard deviation of the replicates (the bootstrap standard error).
    pub standard_error: f64,
    /// Number of bootstrap replicates drawn.
    pub resamples: usize,
    /// Replicates whose statistic was NaN (left out of the quantiles).
    pub nan_replicates: usize,
}

/// Percentile bootstrap (Efron 1979) over `n` units: each replicate draws `n` indices uniformly
/// with replacement from `stream` and evaluates `statistic` on them; the interval is the
/// `(1 -+ level) / 2` quantiles of the replicates ([`quantile`]'s interpolation). Pass the
/// indices to a closure that reads paired data, so one function serves means, correlations and
/// differences alike. The same stream gives the same interval.
pub fn bootstrap_ci(
    n: usize,
    statistic: impl Fn(&[usize]) -> f64,
    resamples: usize,
    level: f64,
    stream: &RngStream,
) -> Result<BootstrapCi, StatsError> {
    if n == 0 || resamples == 0 {
        return Err(StatsError(format!("bootstrap_ci: need units and resamples, got n = {n}, {resamples} resamples")));
    }
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError(format!("bootstrap_ci: level {level} is not in (0, 1)")));
    }
    let all: Vec<usize> = (0..n).collect();
    let estimate = statistic(&all);
    let mut rng = stream.rng();
    let mut idx = vec![0usize; n];
    let mut reps = Vec::with_capacity(resamples);
    let mut nan_replicates = 0;
    for _ in 0..resamples {
        for v in idx.iter_mut() {
            *v = rng.random_range(0..n);
        }
        let s = statistic(&idx);
        if s.is_nan() {
            nan_replicates += 1;
        } else {
            reps.push(s);
        }
    }
    let alpha = (1.0 - level) / 2.0;
    Ok(BootstrapCi {
        estimate,
        lower: quantile(&reps, alpha),
        upper: quantile(&reps, 1.0 - alpha),
        level,
        standard_error: std_dev(&reps, 1),
        resamples,
        nan_replicates,
    })
}

/// [`bootstrap_ci`] of the mean of `x`.
pub fn bootstrap_mean_ci(
    x: &[f64],
    resamples: usize,
    level: f64,
    stream: &RngStream,
) -> Result<BootstrapCi, StatsError> {
    no_nan("bootstrap_mean_ci", x)?;
    bootstrap_ci(x.len(), |idx| idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64, resamples, level, stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed-form and scipy/sklearn reference values are exact up to a few roundings.
    const TOL: f64 = 1e-12;

    #[test]
    fn ranks_average_ties_like_scipy() {
        // scipy.stats.rankdata([0, 2, 3, 2]) = [1, 2.5, 4, 2.5].
        assert_eq!(ranks(&[0.0, 2.0, 3.0, 2.0]).unwrap(), vec![1.0, 2.5, 4.0, 2.5]);
        assert_eq!(ranks(&[f64::INFINITY, 1.0, f64::INFINITY]).unwrap(), vec![2.5, 1.0, 2.5]);
        assert!(ranks(&[1.0, f64::NAN]).is_err());
    }

    #[test]
    fn spearman_matches_scipy() {
        // A strictly monotone map gives exactly 1 (and -1 reversed).
        let x: Vec<f64> = (0..20).map(|i| i as f64 * 0.37 - 2.0).collect();
        let y: Vec<f64> = x.iter().map(|v| v.exp() + v.powi(3)).collect();
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < TOL);
        let yr: Vec<f64> = y.iter().map(|v| -v).collect();
        assert!((spearman(&x, &yr).unwrap() + 1.0).abs() < TOL);
        // scipy.stats.spearmanr([1,2,3,4,5], [5,6,7,8,7]).statistic = 0.8207826816681233
        // (= 8 / sqrt(95) with average ranks for the tie).
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
        assert!((r - 0.820_782_681_668_123_3).abs() < TOL, "{r}");
        // Ties in x: spearmanr([1,2,2,3],[1,2,3,4]) = sqrt(0.9) = 0.9486832980505138.
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((r - 0.948_683_298_050_513_8).abs() < TOL, "{r}");
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap().is_nan());
    }

    #[test]
    fn kendall_tau_b_matches_scipy() {
        // scipy.stats.kendalltau([1,2,3,4,5], [5,6,7,8,7]).statistic = 7 / sqrt(90)
        // (8 concordant, 1 discordant, 1 pair tied in y).
        let t = kendall_tau_b(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
        assert!((t - 7.0 / 90f64.sqrt()).abs() < TOL, "{t}");
        // A tie in x: kendalltau([1,2,2,3],[1,2,3,4]) = 5 / sqrt(30).
        let t = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((t - 5.0 / 30f64.sqrt()).abs() < TOL, "{t}");
        assert_eq!(kendall_tau_b(&[3.0, 2.0, 1.0], &[1.0, 2.0, 3.0]).unwrap(), -1.0);
        assert!(kendall_tau_b(&[1.0, 1.0], &[1.0, 2.0]).unwrap().is_nan());
        assert!(kendall_tau_b(&[1.0], &[1.0]).unwrap().is_nan());
        assert!(kendall_tau_b(&[1.0, f64::NAN], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn linear_fit_known_values() {
        // y = [2, 4, 5, 4] on x = 1..4: slope 0.7, intercept 2, R^2 = 1 - 2.3 / 4.75.
        let f = linear_fit(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 4.0]).unwrap();
        assert!((f.slope - 0.7).abs() < TOL && (f.intercept - 2.0).abs() < TOL);
        assert!((f.r_squared - (1.0 - 2.3 / 4.75)).abs() < TOL, "{f:?}");
        let exact = linear_fit(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]).unwrap();
        assert!((exact.r_squared - 1.0).abs() < TOL && (exact.slope - 2.0).abs() < TOL);
        assert!(linear_fit(&[1.0, 1.0], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn least_squares_recovers_coefficients() {
        // y = 1 - 2 x1 + 0.5 x2 exactly, design with an intercept column.
        let n = 12;
        let x = ndarray::Array2::from_shape_fn((n, 3), |(i, j)| match j {
            0 => 1.0,
            1 => (i as f64 * 0.7).sin(),
            _ => (i as f64 * 0.3).cos() * i as f64,
        });
        let y: Vec<f64> = (0..n).map(|i| 1.0 - 2.0 * x[(i, 1)] + 0.5 * x[(i, 2)]).collect();
        let f = least_squares(x.view(), &y).unwrap();
        for (b, want) in f.coefficients.iter().zip([1.0, -2.0, 0.5]) {
            assert!((b - want).abs() < 1e-12, "{:?}", f.coefficients);
        }
        assert!((f.r_squared - 1.0).abs() < 1e-12 && f.residual_sum_of_squares < 1e-20);
        // Agrees with linear_fit on one regressor.
        let xs = [1.0, 2.0, 3.0, 4.0];
        let d = ndarray::Array2::from_shape_fn((4, 2), |(i, j)| if j == 0 { 1.0 } else { xs[i] });
        let g = least_squares(d.view(), &[2.0, 4.0, 5.0, 4.0]).unwrap();
        assert!((g.coefficients[0] - 2.0).abs() < TOL && (g.coefficients[1] - 0.7).abs() < TOL);
        assert!((g.r_squared - (1.0 - 2.3 / 4.75)).abs() < TOL);
        let rank_deficient = ndarray::Array2::from_shape_fn((4, 2), |(i, _)| i as f64);
        assert!(least_squares(rank_deficient.view(), &[1.0, 2.0, 3.0, 4.0]).is_err());
    }

    #[test]
    fn auc_matches_sklearn() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75.
        let a = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((a - 0.75).abs() < TOL);
        // All tied: 0.5. Perfect separation: 1.
        assert!((roc_auc(&[0.3, 0.3, 0.3], &[true, false, true]).unwrap() - 0.5).abs() < TOL);
        assert!((roc_auc(&[0.0, 1.0, 2.0], &[false, true, true]).unwrap() - 1.0).abs() < TOL);
        assert!(roc_auc(&[0.0, 1.0], &[true, true]).unwrap().is_nan());
    }

    #[test]
    fn mutual_information_known_values() {
        let x = [0, 0, 1, 1];
        let y = [0, 1, 0, 1];
        let xor: Vec<u32> = x.iter().zip(&y).map(|(a, b)| a ^ b).collect();
        assert!((entropy_bits(&x) - 1.0).abs() < TOL);
        assert!((mutual_information_bits(&x, &x).unwrap() - 1.0).abs() < TOL);
        assert!(mutual_information_bits(&x, &y).unwrap().abs() < TOL);
        // X and Y independent, but given Z = X xor Y each determines the other: 1 bit.
        assert!((conditional_mutual_information_bits(&x, &y, &xor).unwrap() - 1.0).abs() < TOL);
        // I(X; Y | X) = 0.
        assert!(conditional_mutual_information_bits(&x, &xor, &x).unwrap().abs() < TOL);
        // A 4-symbol uniform variable has 2 bits.
        assert!((entropy_bits(&[0, 1, 2, 3, 3, 2, 1, 0]) - 2.0).abs() < TOL);
    }

    #[test]
    fn information_estimates_are_bit_identical_on_every_call() {
        // Eight unequal cells: the entropy's terms sum in a fixed order, so the last bit never
        // moves (with hashed counts it changed from call to call).
        let n = 1999;
        let f: Vec<u32> = (0..n).map(|i| u32::from(i % 3 == 0)).collect();
        let l: Vec<u32> = (0..n).map(|i| u32::from(i % 7 < 3)).collect();
        let y: Vec<u32> = (0..n).map(|i| u32::from((i * i) % 5 < 2)).collect();
        let first =
            (mutual_information_bits(&f, &y).unwrap(), conditional_mutual_information_bits(&f, &y, &l).unwrap());
        for _ in 0..200 {
            let again =
                (mutual_information_bits(&f, &y).unwrap(), conditional_mutual_information_bits(&f, &y, &l).unwrap());
            assert_eq!(first.0.to_bits(), again.0.to_bits());
            assert_eq!(first.1.to_bits(), again.1.to_bits());
        }
    }

    #[test]
    fn quantiles_follow_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], 0.25) = 1.75; median of 1..4 = 2.5.
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.25) - 1.75).abs() < TOL);
        assert!((median(&[4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < TOL);
        assert!((std_dev(&[1.0, 2.0, 3.0, 4.0], 1) - (5.0f64 / 3.0).sqrt()).abs() < TOL);
    }

    #[test]
    fn bootstrap_interval_of_a_mean_has_the_normal_width() {
        // n = 400 standard normal draws: the 95% percentile interval of the mean should be about
        // 2 * 1.96 * s / sqrt(n) wide; with 2000 replicates its width has a relative Monte-Carlo
        // error of a few percent, so 15% is a > 5-sigma band for seed 3.
        let mut rng = RngStream::new(3).child("data").rng();
        let x: Vec<f64> = (0..400).map(|_| crate::standard_normal::<f64, _>(&mut rng)).collect();
        let s = RngStream::new(3).child("bootstrap");
        let ci = bootstrap_mean_ci(&x, 2000, 0.95, &s).unwrap();
        let want = 2.0 * 1.959_964 * std_dev(&x, 1) / 20.0;
        let width = ci.upper - ci.lower;
        assert!((width / want - 1.0).abs() < 0.15, "width {width}, normal theory {want}");
        assert!(ci.lower < ci.estimate && ci.estimate < ci.upper);
        assert!((ci.standard_error - std_dev(&x, 1) / 20.0).abs() < 0.15 * std_dev(&x, 1) / 20.0);
        // Same stream, same interval; another stream, another one.
        assert_eq!(bootstrap_mean_ci(&x, 2000, 0.95, &s).unwrap(), ci);
        assert_ne!(bootstrap_mean_ci(&x, 2000, 0.95, &RngStream::new(4).child("bootstrap")).unwrap(), ci);
    }
}
