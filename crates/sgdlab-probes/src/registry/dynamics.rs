//! Registry entries of the function-level and training-dynamics measures (PROTOCOLS 4, 5, 6,
//! 9.2): geometric complexity, simplicity-bias randomisation, performance correlation, parameter
//! norms, saturation, feature sparsity.

use super::{Evaluated, MetricInfo, Needs, ProbeImpl, ProbeInput, ProbeOutput, Series, details_of, scalar, vector};
use crate::common::{EvalSet, ProbeError};
use crate::simplicity::{
    DEFAULT_CORRELATION_THRESHOLD, DEFAULT_SATURATION_SCALE, EmbeddingLayers, FeatureSparsityParams,
    LogisticRegressionParams, SaturationParams, feature_sparsity, fit_logistic_regression_cached, geometric_complexity,
    norm_growth_fits, parameter_norms, performance_correlation_of_model, randomisation_scores, saturation,
};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::Scalar;
use std::fmt::Write as _;

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}

// ---------------------------------------------------------------------------------------------
// geometric-complexity

/// `geometric-complexity`: the mean squared Frobenius norm of the logits' input Jacobian.
pub struct GeometricComplexityProbe;

/// Options of [`GeometricComplexityProbe`] (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct GeometricComplexityOptions {}

impl ProbeImpl for GeometricComplexityProbe {
    const NAME: &'static str = "geometric-complexity";
    const ABOUT: &'static str = "Geometric complexity: mean squared Frobenius norm of the logits' input \
        Jacobian, exact (Dherin et al. 2022; PROTOCOLS 4).";
    const NEEDS: Needs = Needs::EVAL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "geometric_complexity",
            "geometric complexity",
            "mean over examples of ||d logits / d x||_F^2",
        ),
        MetricInfo::scalar(
            "geometric_complexity_stderr",
            "standard error of the geometric complexity",
            "sample sd over examples / sqrt(n)",
        ),
        MetricInfo::scalar("min", "smallest ||J||_F^2", "smallest per-example squared Jacobian norm"),
        MetricInfo::scalar("max", "largest ||J||_F^2", "largest per-example squared Jacobian norm"),
        MetricInfo::scalar("backward_passes", "backward passes", "one per logit per batch"),
    ];
    type Options = GeometricComplexityOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, _: &GeometricComplexityOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let g = geometric_complexity(e.model, &e.params, &e.set, input.eval.batch_size)?;
        let values = vec![
            scalar("geometric_complexity", g.value),
            scalar("geometric_complexity_stderr", g.standard_error),
            scalar("min", g.min),
            scalar("max", g.max),
            scalar("backward_passes", g.backward_passes as f64),
        ];
        let t = format!(
            "geometric complexity {:.6e} +- {:.2e} (n = {}, min {:.4e}, max {:.4e})\n",
            g.value, g.standard_error, g.samples, g.min, g.max
        );
        Ok(ProbeOutput::new(values, details_of(&g), t).evaluated(vec![e.evaluated]))
    }
}

// ---------------------------------------------------------------------------------------------
// randomisation

/// `randomisation`: accuracy on the test split and its randomised copies.
pub struct RandomisationProbe;

/// Options of [`RandomisationProbe`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct RandomisationOptions {
    /// Splits to score (comma-separated). Without it: `test` and every `test-*-randomised` split
    /// of the data, in the data's order.
    #[serde(deserialize_with = "super::one_or_many")]
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub splits: Vec<String>,
}

const SPLIT: &str = "split, in the order of `splits` (default: test, then the randomised splits)";

impl ProbeImpl for RandomisationProbe {
    const NAME: &'static str = "randomisation";
    const ABOUT: &'static str = "Accuracy and AUC on the test split and on every *-randomised test split (LMS/MS, \
        dominoes) (Shah et al. 2020; PROTOCOLS 5).";
    const NEEDS: Needs = Needs::SPLITS;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::vector("accuracy_by_split", "accuracy", SPLIT, "accuracy on each scored split"),
        MetricInfo::vector("auc_by_split", "AUC", SPLIT, "ROC AUC on each split (binary tasks; NaN otherwise)"),
    ];
    type Options = RandomisationOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &RandomisationOptions) -> Result<ProbeOutput, ProbeError> {
        let data = input.data()?;
        let names: Vec<String> = if o.splits.is_empty() {
            data.split_names()
                .into_iter()
                .filter(|n| *n == "test" || (n.starts_with("test-") && n.ends_with("randomised")))
                .map(str::to_string)
                .collect()
        } else {
            o.splits.clone()
        };
        if names.is_empty() {
            return Err(ProbeError::Invalid(format!(
                "{} has no test or test-*-randomised splits; name the splits to score",
                input.data_spec.unwrap_or(data.name())
            )));
        }
        let params = input.params_as::<T>()?;
        let sets: Vec<(EvalSet<T>, Evaluated)> =
            names.iter().map(|n| input.named_set::<T>(n)).collect::<Result<_, _>>()?;
        let refs: Vec<(&str, &EvalSet<T>)> = names.iter().map(String::as_str).zip(sets.iter().map(|s| &s.0)).collect();
        let r = randomisation_scores(input.model()?, &params, &refs, input.eval.batch_size)?;
        let values = vec![
            vector("accuracy_by_split", r.splits.iter().map(|s| s.accuracy).collect()),
            vector("auc_by_split", r.splits.iter().map(|s| s.auc.unwrap_or(f64::NAN)).collect()),
        ];
        let mut t = String::from("split                     n   accuracy      AUC\n");
        for s in &r.splits {
            let _ = writeln!(t, "{:<22} {:>6} {:>10.4} {:>8}", s.split, s.samples, s.accuracy, fmt_opt(s.auc));
        }
        let evaluated = sets.into_iter().map(|s| s.1).collect();
        Ok(ProbeOutput::new(values, details_of(&r), t).evaluated(evaluated))
    }
}

// ---------------------------------------------------------------------------------------------
// performance-correlation

/// `performance-correlation`: what the network knows beyond a linear baseline.
pub struct PerformanceCorrelationProbe;

/// Options of [`PerformanceCorrelationProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct PerformanceCorrelationOptions {
    /// Split the logistic-regression baseline is fitted on (all of it).
    #[arg(long, value_name = "NAME", default_value = "train")]
    pub baseline_split: String,
    /// Held-out split the informations are estimated on (a seeded subset of --samples examples).
    #[arg(long, value_name = "NAME", default_value = "test")]
    pub eval_split: String,
    /// Ridge penalty of the baseline on its weights.
    #[arg(long, value_name = "L2", default_value_t = 1e-4)]
    pub l2: f64,
}

impl Default for PerformanceCorrelationOptions {
    fn default() -> Self {
        PerformanceCorrelationOptions { baseline_split: "train".into(), eval_split: "test".into(), l2: 1e-4 }
    }
}

impl ProbeImpl for PerformanceCorrelationProbe {
    const NAME: &'static str = "performance-correlation";
    const ABOUT: &'static str = "Performance correlation mu_Y(F;L) = I(F;Y) - I(F;Y|L) of the network F with a \
        logistic-regression baseline L, plug-in estimates in bits (Nakkiran et al. 2019; PROTOCOLS 6.1).";
    const NEEDS: Needs = Needs::SPLITS;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "performance_correlation",
            "performance correlation mu_Y(F;L)",
            "I(F;Y) - I(F;Y|L): how much of the network's information about the label the baseline explains",
        )
        .with_unit("bits"),
        MetricInfo::scalar("mi_f_y", "I(F;Y)", "mutual information of network predictions and labels")
            .with_unit("bits"),
        MetricInfo::scalar("mi_l_y", "I(L;Y)", "mutual information of baseline predictions and labels")
            .with_unit("bits"),
        MetricInfo::scalar("cmi_f_y_given_l", "I(F;Y|L)", "what the network knows about Y beyond the baseline")
            .with_unit("bits"),
        MetricInfo::scalar("cmi_l_y_given_f", "I(L;Y|F)", "what the baseline knows about Y beyond the network")
            .with_unit("bits"),
        MetricInfo::scalar(
            "explained_fraction",
            "fraction explained by L",
            "mu_Y(F;L) / I(F;Y): the share of the network's information about the label that the baseline explains \
             (missing when I(F;Y) = 0: nothing to explain)",
        ),
        MetricInfo::scalar("accuracy_f", "network accuracy", "accuracy of the network on the held-out split"),
        MetricInfo::scalar("accuracy_l", "baseline accuracy", "accuracy of the baseline on the held-out split"),
        MetricInfo::scalar(
            "accuracy_gap",
            "accuracy F - L",
            "network accuracy minus baseline accuracy on the held-out split (Nakkiran et al.'s T0: the first step \
             where it reaches -0.01)",
        ),
        MetricInfo::scalar("agreement", "agreement", "fraction of held-out examples where network and baseline agree"),
        MetricInfo::scalar(
            "baseline_train_accuracy",
            "baseline training accuracy",
            "accuracy of the baseline on the split it was fitted on",
        ),
    ];
    type Options = PerformanceCorrelationOptions;

    fn measure<T: Scalar>(
        input: &ProbeInput<'_>,
        o: &PerformanceCorrelationOptions,
    ) -> Result<ProbeOutput, ProbeError> {
        let params = input.params_as::<T>()?;
        let base = input.data()?.split(&o.baseline_split).map_err(|e| ProbeError::Invalid(e.to_string()))?;
        let base_set = EvalSet::<T>::from_split(base, 0, &input.stream);
        let labels = base_set
            .labels
            .as_deref()
            .ok_or_else(|| ProbeError::Invalid("the baseline split has no class labels".into()))?;
        let lr = fit_logistic_regression_cached(
            base_set.x.view(),
            labels,
            &LogisticRegressionParams { l2: o.l2, ..Default::default() },
        )?;
        let (eval, evaluated) = input.named_set::<T>(&o.eval_split)?;
        let pc = performance_correlation_of_model(input.model()?, &params, &eval, &lr, input.eval.batch_size)?;
        let values = vec![
            scalar("performance_correlation", pc.performance_correlation),
            scalar("mi_f_y", pc.mi_f_y),
            scalar("mi_l_y", pc.mi_l_y),
            scalar("cmi_f_y_given_l", pc.cmi_f_y_given_l),
            scalar("cmi_l_y_given_f", pc.cmi_l_y_given_f),
            scalar(
                "explained_fraction",
                if pc.mi_f_y > 0.0 { pc.performance_correlation / pc.mi_f_y } else { f64::NAN },
            ),
            scalar("accuracy_f", pc.accuracy_f),
            scalar("accuracy_l", pc.accuracy_l),
            scalar("accuracy_gap", pc.accuracy_f - pc.accuracy_l),
            scalar("agreement", pc.agreement),
            scalar("baseline_train_accuracy", lr.train_accuracy),
        ];
        let t = format!(
            "baseline: logistic regression on {} (train accuracy {:.4}, converged {})\n\
             on {} ({} examples): accuracy F {:.4}, L {:.4}, agreement {:.4}\n\
             I(F;Y) {:.4} bits   I(L;Y) {:.4}   I(F;Y|L) {:.4}   I(L;Y|F) {:.4}\n\
             mu_Y(F;L) = I(F;Y) - I(F;Y|L) = {:.4} bits\n",
            o.baseline_split,
            lr.train_accuracy,
            lr.converged,
            o.eval_split,
            pc.samples,
            pc.accuracy_f,
            pc.accuracy_l,
            pc.agreement,
            pc.mi_f_y,
            pc.mi_l_y,
            pc.cmi_f_y_given_l,
            pc.cmi_l_y_given_f,
            pc.performance_correlation
        );
        let mut details = details_of(&pc);
        details["baseline"] = serde_json::json!({
            "split": o.baseline_split,
            "l2": o.l2,
            "train_accuracy": lr.train_accuracy,
            "loss": lr.loss,
            "iterations": lr.iterations,
            "converged": lr.converged,
            "gradient_norm": lr.gradient_norm,
        });
        details["eval_split"] = serde_json::json!(o.eval_split);
        Ok(ProbeOutput::new(values, details, t).evaluated(vec![Evaluated::whole(base), evaluated]))
    }
}

// ---------------------------------------------------------------------------------------------
// norms

/// `norms`: parameter norms, and their growth over a run's checkpoints.
pub struct NormsProbe;

/// Options of [`NormsProbe`] (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct NormsOptions {}

impl ProbeImpl for NormsProbe {
    const NAME: &'static str = "norms";
    const ABOUT: &'static str = "Parameter norms: total, per tensor, per layer (Merrill et al. 2021; PROTOCOLS \
        6.3). No data needed.";
    const NEEDS: Needs = Needs::CHECKPOINT;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar("total_norm", "parameter norm ||theta||", "Euclidean norm of all parameters"),
        MetricInfo::vector("norm_by_layer", "layer norm", "layer, in layout order", "norm of each layer's tensors"),
        MetricInfo::vector("norm_by_tensor", "tensor norm", "named tensor, in layout order", "norm of each tensor"),
    ];
    const SERIES: Option<Series<NormsOptions>> = Some(Series {
        about: "fits of the norm's growth against sqrt(t), log(t), t and a power law (at least 3 checkpoints \
            after step 0)",
        summarise: norms_series,
    });
    type Options = NormsOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, _: &NormsOptions) -> Result<ProbeOutput, ProbeError> {
        let params = input.params_as::<T>()?;
        let n = parameter_norms(input.model()?, &params)?;
        let values = vec![
            scalar("total_norm", n.total),
            vector("norm_by_layer", n.layers.iter().map(|l| l.norm).collect()),
            vector("norm_by_tensor", n.tensors.iter().map(|l| l.norm).collect()),
        ];
        let mut t = format!("||theta|| = {:.6}\n", n.total);
        for l in &n.layers {
            let _ = writeln!(t, "  layer {:<8} {:.6}", l.name, l.norm);
        }
        Ok(ProbeOutput::new(values, details_of(&n), t))
    }
}

fn norms_series(steps: &[u64], outputs: &[ProbeOutput], _: &NormsOptions) -> Result<ProbeOutput, ProbeError> {
    let rho: Vec<f64> = outputs
        .iter()
        .map(|o| o.scalar("total_norm").ok_or_else(|| ProbeError::Invalid("norms outputs lack total_norm".into())))
        .collect::<Result<_, _>>()?;
    let mut t = String::new();
    for (s, r) in steps.iter().zip(&rho) {
        let _ = writeln!(t, "step {s:<10} ||theta|| = {r:.6}");
    }
    let fits = if steps.iter().filter(|&&s| s > 0).count() >= 3 {
        let ts: Vec<f64> = steps.iter().map(|&s| s as f64).collect();
        Some(norm_growth_fits(&ts, &rho)?)
    } else {
        let _ = writeln!(t, "fewer than 3 checkpoints after step 0: no growth fits");
        None
    };
    let mut values = vec![vector("total_norm", rho.clone())];
    if let Some(f) = &fits {
        let _ = writeln!(
            t,
            "fits over {} checkpoints: R^2 sqrt {:.4}, log {:.4}, linear {:.4} (best {}); power law exponent {:.4} \
             (R^2 {:.4})",
            f.points,
            f.sqrt.r_squared,
            f.log.r_squared,
            f.linear.r_squared,
            f.best,
            f.power.exponent,
            f.power.r_squared
        );
        values.extend([
            scalar("sqrt_r_squared", f.sqrt.r_squared),
            scalar("log_r_squared", f.log.r_squared),
            scalar("linear_r_squared", f.linear.r_squared),
            scalar("power_exponent", f.power.exponent),
            scalar("power_r_squared", f.power.r_squared),
        ]);
    }
    Ok(ProbeOutput::new(values, serde_json::json!({ "growth": fits }), t))
}

// ---------------------------------------------------------------------------------------------
// saturation and sparsity

/// `saturation`: how far each layer is from its infinite-norm limit.
pub struct SaturationProbe;

/// Options of [`SaturationProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct SaturationOptions {
    /// The factor rho every parameter is multiplied by.
    #[arg(long, value_name = "RHO", default_value_t = DEFAULT_SATURATION_SCALE)]
    pub scale: f64,
    /// Representation layers.
    #[arg(long, value_enum, default_value_t = EmbeddingLayers::Blocks)]
    pub layers: EmbeddingLayers,
}

impl Default for SaturationOptions {
    fn default() -> Self {
        let d = SaturationParams::default();
        SaturationOptions { scale: d.scale, layers: d.layers }
    }
}

const AFTER_INPUT: &str = "representation layer after the input (the last is the logits)";

impl ProbeImpl for SaturationProbe {
    const NAME: &'static str = "saturation";
    const ABOUT: &'static str = "Saturation: cosine between every layer's output at theta and at rho * theta \
        (Merrill et al. 2021; PROTOCOLS 6.3).";
    const NEEDS: Needs = Needs::EVAL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "output_cosine",
            "saturation of the logits",
            "mean cosine between the logits at theta and at rho theta (1 = saturated)",
        ),
        MetricInfo::vector("mean_cosine_by_layer", "saturation", AFTER_INPUT, "mean cosine per layer"),
        MetricInfo::vector("min_cosine_by_layer", "smallest cosine", AFTER_INPUT, "smallest cosine per layer"),
    ];
    type Options = SaturationOptions;

    fn check(o: &SaturationOptions) -> Result<(), String> {
        if !o.scale.is_finite() {
            return Err(format!("scale must be finite, got {}", o.scale));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &SaturationOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let s = saturation(e.model, &e.params, &e.set, &SaturationParams { scale: o.scale, layers: o.layers })?;
        let values = vec![
            scalar("output_cosine", s.output_cosine),
            vector("mean_cosine_by_layer", s.layers.iter().map(|l| l.mean_cosine).collect()),
            vector("min_cosine_by_layer", s.layers.iter().map(|l| l.min_cosine).collect()),
        ];
        let mut t = format!("cosine between outputs at theta and {} theta:\n", s.scale);
        for l in &s.layers {
            let _ = writeln!(
                t,
                "  layer {:<6} {:<10} mean {:.6}  min {:.6}  undefined {}",
                l.layer.name, l.layer.kind, l.mean_cosine, l.min_cosine, l.undefined
            );
        }
        Ok(ProbeOutput::new(values, details_of(&s), t).evaluated(vec![e.evaluated]))
    }
}

/// `sparsity`: the fraction of active ReLU units.
pub struct SparsityProbe;

/// Options of [`SparsityProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct SparsityOptions {
    /// |Pearson| correlation above which a unit duplicates another.
    #[arg(long, value_name = "R", default_value_t = DEFAULT_CORRELATION_THRESHOLD)]
    pub correlation_threshold: f64,
}

impl Default for SparsityOptions {
    fn default() -> Self {
        SparsityOptions { correlation_threshold: DEFAULT_CORRELATION_THRESHOLD }
    }
}

const ACTIVATION: &str = "activation layer, in model order";

impl ProbeImpl for SparsityProbe {
    const NAME: &'static str = "sparsity";
    const ABOUT: &'static str = "Feature sparsity: fraction of active ReLU units, with and without \
        de-duplication of highly correlated units (Andriushchenko et al. 2023; PROTOCOLS 9.2).";
    const NEEDS: Needs = Needs::EVAL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::vector(
            "active_fraction_by_layer",
            "active fraction",
            ACTIVATION,
            "fraction of positive entries of the examples x units activation matrix",
        ),
        MetricInfo::vector(
            "dead_units_by_layer",
            "dead units",
            ACTIVATION,
            "units never active on the evaluated examples",
        ),
        MetricInfo::vector(
            "duplicate_units_by_layer",
            "duplicate units",
            ACTIVATION,
            "live units removed as near-duplicates of another",
        ),
        MetricInfo::vector(
            "active_fraction_deduplicated_by_layer",
            "active fraction (de-duplicated)",
            ACTIVATION,
            "positive entries of the kept units over examples x all units",
        ),
        MetricInfo::vector(
            "active_fraction_among_kept_by_layer",
            "active fraction among kept units",
            ACTIVATION,
            "positive entries of the kept units over examples x kept units",
        ),
    ];
    type Options = SparsityOptions;

    fn check(o: &SparsityOptions) -> Result<(), String> {
        if !(o.correlation_threshold > 0.0 && o.correlation_threshold <= 1.0) {
            return Err(format!("correlation_threshold must be in (0, 1], got {}", o.correlation_threshold));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &SparsityOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let opts =
            FeatureSparsityParams { correlation_threshold: o.correlation_threshold, batch_size: input.eval.batch_size };
        let s = feature_sparsity(e.model, &e.params, &e.set, &opts)?;
        let per = |f: fn(&crate::simplicity::LayerSparsity) -> f64| -> Vec<f64> { s.layers.iter().map(f).collect() };
        let values = vec![
            vector("active_fraction_by_layer", per(|l| l.active_fraction)),
            vector("dead_units_by_layer", per(|l| l.dead_units as f64)),
            vector("duplicate_units_by_layer", per(|l| l.duplicate_units as f64)),
            vector("active_fraction_deduplicated_by_layer", per(|l| l.active_fraction_deduplicated)),
            vector("active_fraction_among_kept_by_layer", per(|l| l.active_fraction_among_kept)),
        ];
        let mut t = String::from("layer   units  active   dead  duplicates  kept  active (dedup)  active among kept\n");
        for l in &s.layers {
            let _ = writeln!(
                t,
                "{:<7} {:>5} {:>7.4} {:>6} {:>11} {:>5} {:>15.4} {:>18.4}",
                l.name,
                l.units,
                l.active_fraction,
                l.dead_units,
                l.duplicate_units,
                l.kept_units,
                l.active_fraction_deduplicated,
                l.active_fraction_among_kept
            );
        }
        Ok(ProbeOutput::new(values, details_of(&s), t).evaluated(vec![e.evaluated]))
    }
}
