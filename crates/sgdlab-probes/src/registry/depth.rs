//! Registry entries of the depth measures (PROTOCOLS 3): NCC separability and effective depth,
//! neural collapse, residual lesions, gradient per path length.

use super::{Evaluated, MetricInfo, Needs, ProbeImpl, ProbeInput, ProbeOutput, details_of, scalar, vector};
use crate::common::{EvalSet, ProbeError};
use crate::simplicity::{
    DEFAULT_PINV_RTOL, EmbeddingLayers, LesionParams, NccDepthParams, NeuralCollapseParams, PathLengthParams,
    ncc_depth, neural_collapse, path_length_gradients, residual_lesions,
};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::Scalar;
use std::fmt::Write as _;

/// The held-out split of probes with an optional test evaluation: `option` (`none`: no test
/// split), else `test` if the data has one, drawn like the evaluation set.
fn test_set<T: Scalar>(
    input: &ProbeInput<'_>,
    option: &Option<String>,
) -> Result<Option<(EvalSet<T>, Evaluated)>, ProbeError> {
    let name = match option.as_deref() {
        Some("none") => None,
        Some(s) => Some(s.to_string()),
        None => input.data()?.split("test").ok().map(|_| "test".to_string()),
    };
    name.map(|n| input.named_set::<T>(&n)).transpose()
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}

/// NaN for a missing value (a metric row that exists but has no number).
fn or_nan(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// ncc-depth

/// `ncc-depth`: nearest-class-centre error per layer and the effective depth.
pub struct NccDepthProbe;

/// Options of [`NccDepthProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct NccDepthOptions {
    /// Split of the test NCC error (centres from the evaluation split); `none` to skip. Without
    /// it: `test`, if the data has one.
    #[arg(long, value_name = "NAME")]
    pub test_split: Option<String>,
    /// Error level of the effective depth d_eps = min{l : err_l <= eps}.
    #[arg(long, value_name = "EPS", default_value_t = 0.01)]
    pub eps: f64,
    /// Representation layers.
    #[arg(long, value_enum, default_value_t = EmbeddingLayers::Blocks)]
    pub layers: EmbeddingLayers,
}

impl Default for NccDepthOptions {
    fn default() -> Self {
        let d = NccDepthParams::default();
        NccDepthOptions { test_split: None, eps: d.eps, layers: d.layers }
    }
}

const DEPTH: &str = "representation layer (depth: 0 = input)";

impl ProbeImpl for NccDepthProbe {
    const NAME: &'static str = "ncc-depth";
    const ABOUT: &'static str = "Nearest-class-centre error of every layer on train and test, and the \
        epsilon-effective depth (Galanti et al. 2022; PROTOCOLS 3.1).";
    const NEEDS: Needs = Needs::EVAL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "effective_depth",
            "effective depth",
            "first depth whose NCC training error is at most eps (NaN: no layer reaches it)",
        ),
        MetricInfo::scalar("max_depth", "depth", "number of representation layers after the input"),
        MetricInfo::vector(
            "train_error_by_layer",
            "NCC training error",
            DEPTH,
            "fraction of evaluated examples whose nearest class centre is not their class",
        ),
        MetricInfo::vector(
            "test_error_by_layer",
            "NCC test error",
            DEPTH,
            "the same on the test split with the training centres (NaN without a test split)",
        ),
    ];
    type Options = NccDepthOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &NccDepthOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let test = test_set::<T>(input, &o.test_split)?;
        let opts = NccDepthParams { layers: o.layers, eps: o.eps, batch_size: input.eval.batch_size };
        let est = ncc_depth(e.model, &e.params, &e.set, test.as_ref().map(|t| &t.0), &opts)?;
        let values = vec![
            scalar("effective_depth", est.effective_depth.map_or(f64::NAN, |d| d as f64)),
            scalar("max_depth", est.max_depth as f64),
            vector("train_error_by_layer", est.layers.iter().map(|l| l.train_error).collect()),
            vector("test_error_by_layer", est.layers.iter().map(|l| or_nan(l.test_error)).collect()),
        ];
        let mut t = String::from("depth layer   kind        dim   train err   test err\n");
        for r in &est.layers {
            let _ = writeln!(
                t,
                "{:>5} {:<7} {:<10} {:>4} {:>10.4} {:>10}",
                r.layer.depth,
                r.layer.name,
                r.layer.kind,
                r.layer.dim,
                r.train_error,
                fmt_opt(r.test_error)
            );
        }
        let d = est.effective_depth.map_or("none".to_string(), |d| d.to_string());
        let _ = writeln!(t, "effective depth (eps {}): {d} of {}", est.eps, est.max_depth);
        let mut evaluated = vec![e.evaluated];
        evaluated.extend(test.map(|t| t.1));
        Ok(ProbeOutput::new(values, details_of(&est), t).evaluated(evaluated))
    }
}

// ---------------------------------------------------------------------------------------------
// neural-collapse

/// `neural-collapse`: NC1-NC4 of the penultimate features.
pub struct NeuralCollapseProbe;

/// Options of [`NeuralCollapseProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct NeuralCollapseOptions {
    /// Split of the test NC4 (with the training means); `none` to skip. Without it: `test`, if
    /// the data has one.
    #[arg(long, value_name = "NAME")]
    pub test_split: Option<String>,
    /// Relative cut-off of the pseudo-inverse of Sigma_B (eigenvalues below rtol * max are 0).
    #[arg(long, value_name = "RTOL", default_value_t = DEFAULT_PINV_RTOL)]
    pub pinv_rtol: f64,
}

impl Default for NeuralCollapseOptions {
    fn default() -> Self {
        NeuralCollapseOptions { test_split: None, pinv_rtol: DEFAULT_PINV_RTOL }
    }
}

impl ProbeImpl for NeuralCollapseProbe {
    const NAME: &'static str = "neural-collapse";
    const ABOUT: &'static str = "Neural collapse NC1-NC4 of the penultimate features, both NC3 normalisations \
        (Papyan, Han & Donoho 2020; PROTOCOLS 3.2).";
    const NEEDS: Needs = Needs::EVAL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar("nc1", "NC1", "Tr(Sigma_W Sigma_B^+) / C: within-class variability (0 = collapsed)"),
        MetricInfo::scalar("sigma_b_rank", "rank of Sigma_B", "eigenvalues of Sigma_B kept in the pseudo-inverse"),
        MetricInfo::scalar("equinorm_means", "NC2 equinorm (means)", "std / mean of the centred class-mean norms"),
        MetricInfo::scalar("equinorm_weights", "NC2 equinorm (weights)", "std / mean of the classifier row norms"),
        MetricInfo::scalar(
            "equiangular_std_means",
            "NC2 equiangularity (means)",
            "std over class pairs of the cosines of centred class means",
        ),
        MetricInfo::scalar(
            "equiangular_std_weights",
            "NC2 equiangularity (weights)",
            "std over class pairs of the cosines of classifier rows",
        ),
        MetricInfo::scalar(
            "angle_deviation_means",
            "NC2 maximal-angle deviation (means)",
            "mean |cos + 1/(C-1)| over pairs of centred class means (0 = simplex ETF)",
        ),
        MetricInfo::scalar(
            "angle_deviation_weights",
            "NC2 maximal-angle deviation (weights)",
            "mean |cos + 1/(C-1)| over pairs of classifier rows",
        ),
        MetricInfo::scalar(
            "etf_deviation_means",
            "NC2 ETF deviation (means)",
            "Frobenius distance of the normalised Gram matrix of the means to the simplex ETF",
        ),
        MetricInfo::scalar("etf_deviation_weights", "NC2 ETF deviation (weights)", "the same for the classifier rows"),
        MetricInfo::scalar(
            "nc3_papyan",
            "NC3 (Papyan normalisation)",
            "|| W^T / ||W||_F - M / ||M||_F ||_F^2: self-duality of classifier and means",
        ),
        MetricInfo::scalar("nc3_zhu", "NC3 (Zhu normalisation)", "distance of the normalised W M to the simplex ETF"),
        MetricInfo::scalar(
            "nc4_train",
            "NC4 (train)",
            "fraction of examples where the classifier and the nearest class mean disagree",
        ),
        MetricInfo::scalar("nc4_test", "NC4 (test)", "the same on the test split (NaN without a test split)"),
        MetricInfo::scalar("train_accuracy", "training accuracy", "accuracy on the evaluated examples"),
        MetricInfo::scalar("test_accuracy", "test accuracy", "accuracy on the test split (NaN without one)"),
    ];
    type Options = NeuralCollapseOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &NeuralCollapseOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let test = test_set::<T>(input, &o.test_split)?;
        let opts = NeuralCollapseParams { pinv_rtol: o.pinv_rtol, batch_size: input.eval.batch_size };
        let n = neural_collapse(e.model, &e.params, &e.set, test.as_ref().map(|t| &t.0), &opts)?;
        let values = vec![
            scalar("nc1", n.nc1),
            scalar("sigma_b_rank", n.sigma_b_rank as f64),
            scalar("equinorm_means", n.equinorm_means),
            scalar("equinorm_weights", n.equinorm_weights),
            scalar("equiangular_std_means", n.equiangular_std_means),
            scalar("equiangular_std_weights", n.equiangular_std_weights),
            scalar("angle_deviation_means", n.angle_deviation_means),
            scalar("angle_deviation_weights", n.angle_deviation_weights),
            scalar("etf_deviation_means", n.etf_deviation_means),
            scalar("etf_deviation_weights", n.etf_deviation_weights),
            scalar("nc3_papyan", n.nc3_papyan),
            scalar("nc3_zhu", n.nc3_zhu),
            scalar("nc4_train", n.nc4_train),
            scalar("nc4_test", or_nan(n.nc4_test)),
            scalar("train_accuracy", n.train_accuracy),
            scalar("test_accuracy", or_nan(n.test_accuracy)),
        ];
        let t = format!(
            "NC1 Tr(Sw Sb+)/C            {:.6e}  (Sigma_B rank {})\n\
             NC2 equinorm means/weights  {:.4} / {:.4}\n\
             NC2 cos std means/weights   {:.4} / {:.4}\n\
             NC2 |cos+1/(C-1)| m/w       {:.4} / {:.4}\n\
             NC2 ETF deviation m/w       {:.4} / {:.4}\n\
             NC3 Papyan / Zhu            {:.4} / {:.4}\n\
             NC4 train / test            {:.4} / {}\n\
             accuracy train / test       {:.4} / {}\n",
            n.nc1,
            n.sigma_b_rank,
            n.equinorm_means,
            n.equinorm_weights,
            n.equiangular_std_means,
            n.equiangular_std_weights,
            n.angle_deviation_means,
            n.angle_deviation_weights,
            n.etf_deviation_means,
            n.etf_deviation_weights,
            n.nc3_papyan,
            n.nc3_zhu,
            n.nc4_train,
            fmt_opt(n.nc4_test),
            n.train_accuracy,
            fmt_opt(n.test_accuracy)
        );
        let mut evaluated = vec![e.evaluated];
        evaluated.extend(test.map(|t| t.1));
        Ok(ProbeOutput::new(values, details_of(&n), t).evaluated(evaluated))
    }
}

// ---------------------------------------------------------------------------------------------
// lesion and path-lengths

/// `lesion`: accuracy with residual blocks deleted at test time.
pub struct LesionProbe;

/// Options of [`LesionProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct LesionOptions {
    /// Largest number of blocks deleted at random.
    #[arg(long, value_name = "K", default_value_t = 8)]
    pub max_deleted: usize,
    /// Random draws per number of deleted blocks.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub draws: usize,
}

impl Default for LesionOptions {
    fn default() -> Self {
        let d = LesionParams::default();
        LesionOptions { max_deleted: d.max_deleted, draws: d.draws }
    }
}

const UNIT: &str = "deletable block, in model order";
const DELETED: &str = "blocks deleted at random, k = 1, 2, ...";

impl ProbeImpl for LesionProbe {
    const NAME: &'static str = "lesion";
    const ABOUT: &'static str = "Test-time lesions: accuracy with each residual block (or width-preserving layer \
        of a plain net) deleted, and with k random blocks deleted (Veit et al. 2016; PROTOCOLS 3.3).";
    const NEEDS: Needs = Needs::EVAL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar("baseline_accuracy", "accuracy", "accuracy of the intact network"),
        MetricInfo::scalar(
            "median_single_drop",
            "median accuracy drop",
            "median over blocks of the accuracy lost by deleting that block alone",
        ),
        MetricInfo::vector("single_accuracy", "accuracy with one block deleted", UNIT, "accuracy without the block"),
        MetricInfo::vector("single_drop", "accuracy drop", UNIT, "baseline accuracy minus single_accuracy"),
        MetricInfo::vector(
            "random_mean_accuracy",
            "accuracy with k blocks deleted",
            DELETED,
            "mean accuracy over random draws of k deleted blocks",
        ),
        MetricInfo::vector("random_sd_accuracy", "sd of accuracy", DELETED, "its standard deviation over draws"),
        MetricInfo::vector("random_min_accuracy", "worst accuracy", DELETED, "its minimum over draws"),
    ];
    type Options = LesionOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &LesionOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let opts = LesionParams { max_deleted: o.max_deleted, draws: o.draws };
        let l = residual_lesions(e.model, &e.params, &e.set, &opts, &input.stream)?;
        let values = vec![
            scalar("baseline_accuracy", l.baseline_accuracy),
            scalar("median_single_drop", l.median_single_drop),
            vector("single_accuracy", l.single.iter().map(|s| s.accuracy).collect()),
            vector("single_drop", l.single.iter().map(|s| s.drop).collect()),
            vector("random_mean_accuracy", l.random.iter().map(|r| r.mean_accuracy).collect()),
            vector("random_sd_accuracy", l.random.iter().map(|r| r.sd_accuracy).collect()),
            vector("random_min_accuracy", l.random.iter().map(|r| r.min_accuracy).collect()),
        ];
        let kind = l.units.first().map_or("", |u| u.kind.as_str());
        let mut t =
            format!("baseline accuracy {:.4} ({} {kind} units)\nsingle lesions:\n", l.baseline_accuracy, l.units.len());
        for s in &l.single {
            let _ = writeln!(t, "  delete {:<6} accuracy {:.4}  drop {:+.4}", s.unit, s.accuracy, s.drop);
        }
        let _ = writeln!(t, "median drop {:.4}\nrandom lesions:", l.median_single_drop);
        for r in &l.random {
            let _ = writeln!(
                t,
                "  k = {:<2} accuracy {:.4} +- {:.4} (min {:.4}, {} draws)",
                r.deleted, r.mean_accuracy, r.sd_accuracy, r.min_accuracy, r.draws
            );
        }
        Ok(ProbeOutput::new(values, details_of(&l), t).evaluated(vec![e.evaluated]))
    }
}

/// `path-lengths`: gradient carried by paths through k residual branches.
pub struct PathLengthsProbe;

/// Options of [`PathLengthsProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct PathLengthsOptions {
    /// Random block subsets per path length.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub draws: usize,
}

impl Default for PathLengthsOptions {
    fn default() -> Self {
        PathLengthsOptions { draws: 20 }
    }
}

const LENGTH: &str = "path length k = 0, 1, ..., blocks";

impl ProbeImpl for PathLengthsProbe {
    const NAME: &'static str = "path-lengths";
    const ABOUT: &'static str = "Gradient magnitude carried by paths through exactly k residual branches (Veit \
        et al. 2016; PROTOCOLS 3.3).";
    const NEEDS: Needs = Needs::ALL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "log_slope",
            "slope of ln |gradient| per path length",
            "least-squares slope of ln(mean gradient norm) against k (< 0: exponential decay)",
        ),
        MetricInfo::scalar("log_intercept", "intercept of ln |gradient|", "intercept of that fit"),
        MetricInfo::scalar("log_r_squared", "R^2 of the log fit", "coefficient of determination of that fit"),
        MetricInfo::scalar(
            "peak_length",
            "path length of the largest total contribution",
            "k maximising C(n, k) times the gradient per path",
        ),
        MetricInfo::vector(
            "mean_gradient_norm",
            "gradient norm per path",
            LENGTH,
            "mean per-example loss-gradient norm at the first block's input, through one path of length k",
        ),
        MetricInfo::vector(
            "total_contribution",
            "total gradient of paths of length k",
            LENGTH,
            "C(n, k) times the gradient per path",
        ),
        MetricInfo::vector("paths", "number of paths", LENGTH, "C(n, k)"),
    ];
    type Options = PathLengthsOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &PathLengthsOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let opts = PathLengthParams { draws: o.draws, loss: input.eval.loss };
        let p = path_length_gradients(e.model, &e.params, &e.set, &opts, &input.stream)?;
        let values = vec![
            scalar("log_slope", p.log_slope),
            scalar("log_intercept", p.log_intercept),
            scalar("log_r_squared", p.log_r_squared),
            scalar("peak_length", p.peak_length as f64),
            vector("mean_gradient_norm", p.points.iter().map(|q| q.mean_gradient_norm).collect()),
            vector("total_contribution", p.points.iter().map(|q| q.total_contribution).collect()),
            vector("paths", p.points.iter().map(|q| q.paths).collect()),
        ];
        let mut t = String::from("k    paths      |grad| per path   total contribution\n");
        for q in &p.points {
            let _ = writeln!(
                t,
                "{:<4} {:>9.0} {:>14.4e} {:>18.4e}",
                q.length, q.paths, q.mean_gradient_norm, q.total_contribution
            );
        }
        let _ = writeln!(
            t,
            "ln|grad| ~ {:.4} k + {:.4} (R^2 {:.4}); total contribution peaks at k = {} of {}",
            p.log_slope, p.log_intercept, p.log_r_squared, p.peak_length, p.blocks
        );
        Ok(ProbeOutput::new(values, details_of(&p), t).evaluated(vec![e.evaluated]))
    }
}
