//! Registry entry of the shift-curvature probe (Bradley et al. 2021; PROTOCOLS 7.3).

use super::{MetricInfo, Needs, ProbeImpl, ProbeInput, ProbeOutput, details_of, scalar};
use crate::common::ProbeError;
use crate::curvature::{NewtonCgParams, ShiftCurvatureParams, ShiftData, shift_curvature};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::Scalar;

/// `shift-curvature`: curvature along the shift between the train and test minimisers.
pub struct ShiftCurvatureProbe;

/// Options of [`ShiftCurvatureProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct ShiftCurvatureOptions {
    /// L2 coefficient of both objectives L + (l2/2)||theta||^2 (every parameter); PROTOCOLS 7.3
    /// asks for a tiny 1e-4, for a unique minimiser.
    #[arg(long, value_name = "L2", default_value_t = 1e-4)]
    pub l2: f64,
    /// Both minimisations stop at ||grad (L + l2/2 ||theta||^2)|| < tol.
    #[arg(long, value_name = "TOL", default_value_t = 1e-6)]
    pub tol: f64,
    /// Newton iterations per minimisation at most (not converging is reported, not an error).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_iterations: usize,
    /// Conjugate-gradient steps (one HVP each) per Newton iteration at most.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub max_cg_iterations: usize,
    /// Split whose loss theta_tr minimises (from the checkpoint).
    #[arg(long, value_name = "NAME", default_value = "train")]
    pub train_split: String,
    /// Split whose loss theta_te minimises (from theta_tr).
    #[arg(long, value_name = "NAME", default_value = "test")]
    pub test_split: String,
    /// Tr H_train is exact (P quadratic forms) up to this many parameters, else Hutchinson.
    #[arg(long, value_name = "P", default_value_t = 2048)]
    pub exact_trace_max_params: usize,
    /// Hutchinson probes for Tr H_train above exact-trace-max-params.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub trace_probes: usize,
}

impl Default for ShiftCurvatureOptions {
    fn default() -> Self {
        let n = NewtonCgParams::default();
        ShiftCurvatureOptions {
            l2: n.l2,
            tol: n.tol,
            max_iterations: n.max_iterations,
            max_cg_iterations: n.max_cg_iterations,
            train_split: "train".into(),
            test_split: "test".into(),
            exact_trace_max_params: 2048,
            trace_probes: 30,
        }
    }
}

impl ProbeImpl for ShiftCurvatureProbe {
    const NAME: &'static str = "shift-curvature";
    const ABOUT: &'static str = "Shift-curvature delta^T H delta along delta = theta_te - theta_tr, the shift from \
        the train minimiser (reached from the checkpoint by Newton-CG on L_train + l2/2 ||theta||^2) to the test \
        minimiser (reached from theta_tr), against the gap L_test(theta_tr) - L_test(theta_te) and its quadratic \
        prediction delta^T H_test delta / 2 (Bradley et al. 2021; PROTOCOLS 7.3).";
    const NEEDS: Needs = Needs { loss: true, ..Needs::SPLITS };
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar("sc_train", "shift-curvature delta^T H_train delta", "H of L_train at theta_tr, one HVP"),
        MetricInfo::scalar("sc_test", "delta^T H_test delta", "H of L_test at theta_te, one HVP"),
        MetricInfo::scalar("normalised_sc_train", "delta^T H_train delta / ||delta||^2", "curvature along the shift"),
        MetricInfo::scalar(
            "normalised_sc_test",
            "delta^T H_test delta / ||delta||^2",
            "test curvature along the shift",
        ),
        MetricInfo::scalar("mean_curvature", "Tr H_train / P", "mean curvature at theta_tr (exact or Hutchinson)"),
        MetricInfo::scalar(
            "curvature_ratio",
            "shift curvature / mean curvature",
            "(delta^T H_train delta / ||delta||^2) / (Tr H_train / P): above 1 when the shift points up the curvature",
        ),
        MetricInfo::scalar("delta_norm", "||theta_te - theta_tr||", "length of the shift"),
        MetricInfo::scalar("relative_shift", "||delta|| / ||theta_tr||", "length of the shift relative to theta_tr"),
        MetricInfo::scalar("warm_start_distance", "||theta_tr - theta_0||", "distance from the checkpoint to theta_tr"),
        MetricInfo::scalar("gap", "test-loss gap L_test(theta_tr) - L_test(theta_te)", "without the L2 term"),
        MetricInfo::scalar("predicted_gap", "delta^T H_test delta / 2", "quadratic prediction of the gap"),
        MetricInfo::scalar("gap_ratio", "gap / (delta^T H_test delta / 2)", "1 when the quadratic prediction holds"),
        MetricInfo::scalar(
            "gap_ratio_train_hessian",
            "gap / (delta^T H_train delta / 2)",
            "the same with the training Hessian at theta_tr",
        ),
        MetricInfo::scalar("objective_gap", "F_test(theta_tr) - F_test(theta_te)", "the gap with the L2 term"),
        MetricInfo::scalar(
            "objective_gap_ratio",
            "objective gap / ((delta^T H_test delta + l2 ||delta||^2) / 2)",
            "1 when the quadratic prediction of the regularised objective holds (exact for quadratic losses)",
        ),
        MetricInfo::scalar("generalisation_gap", "L_test(theta_tr) - L_train(theta_tr)", "train-test loss gap"),
        MetricInfo::scalar("train_loss", "L_train(theta_tr)", "training loss at the train minimiser"),
        MetricInfo::scalar("test_loss", "L_test(theta_tr)", "test loss at the train minimiser"),
        MetricInfo::scalar("test_loss_at_test_min", "L_test(theta_te)", "test loss at the test minimiser"),
        MetricInfo::scalar("train_accuracy", "training accuracy at theta_tr", "on the train split"),
        MetricInfo::scalar("test_accuracy", "test accuracy at theta_tr", "on the test split"),
        MetricInfo::scalar("train_grad_norm", "final ||grad F_train||", "at theta_tr: below tol when converged"),
        MetricInfo::scalar("test_grad_norm", "final ||grad F_test||", "at theta_te: below tol when converged"),
        MetricInfo::scalar(
            "converged",
            "both minimisers converged",
            "1 when both gradient norms are below tol, else 0",
        ),
        MetricInfo::scalar("train_iterations", "Newton iterations (train)", "outer iterations to theta_tr"),
        MetricInfo::scalar("test_iterations", "Newton iterations (test)", "outer iterations to theta_te"),
        MetricInfo::scalar("hvps", "Hessian-vector products", "CG products of both minimisations"),
    ];
    type Options = ShiftCurvatureOptions;

    fn check(o: &ShiftCurvatureOptions) -> Result<(), String> {
        if !(o.l2.is_finite() && o.l2 >= 0.0) {
            return Err(format!("l2 must be finite and at least 0, got {}", o.l2));
        }
        if !(o.tol.is_finite() && o.tol > 0.0) {
            return Err(format!("tol must be positive and finite, got {}", o.tol));
        }
        if o.max_iterations == 0 || o.max_cg_iterations == 0 {
            return Err("max_iterations and max_cg_iterations must be at least 1".into());
        }
        if o.trace_probes < 2 {
            return Err(format!("trace_probes must be at least 2 (for a standard error), got {}", o.trace_probes));
        }
        if o.train_split == o.test_split {
            return Err(format!("train_split and test_split are both '{}': give two different splits", o.train_split));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &ShiftCurvatureOptions) -> Result<ProbeOutput, ProbeError> {
        let model = input.model()?;
        let start = input.params_as::<T>()?;
        let (train, train_evaluated) = input.named_set::<T>(&o.train_split)?;
        let (test, test_evaluated) = input.named_set::<T>(&o.test_split)?;
        let data =
            ShiftData { model, train: &train, test: &test, batch_size: input.eval.batch_size, loss: input.eval.loss };
        let params = ShiftCurvatureParams {
            newton: NewtonCgParams {
                l2: o.l2,
                tol: o.tol,
                max_iterations: o.max_iterations,
                max_cg_iterations: o.max_cg_iterations,
            },
            exact_trace_max_params: o.exact_trace_max_params,
            trace_probes: o.trace_probes,
        };
        let s = shift_curvature(&data, &start, &params, &input.stream)?;
        let (tr, te) = (&s.train_minimiser, &s.test_minimiser);
        let values = vec![
            scalar("sc_train", s.sc_train),
            scalar("sc_test", s.sc_test),
            scalar("normalised_sc_train", s.normalised_sc_train),
            scalar("normalised_sc_test", s.normalised_sc_test),
            scalar("mean_curvature", s.mean_curvature),
            scalar("curvature_ratio", s.curvature_ratio),
            scalar("delta_norm", s.delta_norm),
            scalar("relative_shift", s.delta_norm / s.theta_train_norm),
            scalar("warm_start_distance", s.warm_start_distance),
            scalar("gap", s.gap),
            scalar("predicted_gap", s.predicted_gap),
            scalar("gap_ratio", s.gap_ratio),
            scalar("gap_ratio_train_hessian", s.gap_ratio_train_hessian),
            scalar("objective_gap", s.objective_gap),
            scalar("objective_gap_ratio", s.objective_gap_ratio),
            scalar("generalisation_gap", s.generalisation_gap),
            scalar("train_loss", s.train_loss),
            scalar("test_loss", s.test_loss_at_train_min),
            scalar("test_loss_at_test_min", s.test_loss_at_test_min),
            scalar("train_accuracy", s.train_accuracy),
            scalar("test_accuracy", s.test_accuracy),
            scalar("train_grad_norm", tr.grad_norm),
            scalar("test_grad_norm", te.grad_norm),
            scalar("converged", f64::from(u8::from(tr.converged && te.converged))),
            scalar("train_iterations", tr.iterations as f64),
            scalar("test_iterations", te.iterations as f64),
            scalar("hvps", (tr.hvps + te.hvps) as f64),
        ];
        let text = format!(
            "theta_tr: {} Newton steps, {} HVPs, ||grad|| {:.2e} ({})\n\
             theta_te: {} Newton steps, {} HVPs, ||grad|| {:.2e} ({})\n\
             ||delta|| {:.4e} (relative {:.4e}), l2 {:e}\n\
             SC_train = delta^T H_train delta {:.6e}   SC_test {:.6e}\n\
             normalised SC_train {:.4e}   mean curvature Tr H/P {:.4e} ({})   ratio {:.4}\n\
             gap L_test(theta_tr) - L_test(theta_te) {:.6e}   SC_test/2 {:.6e}   ratio {:.4}\n\
             with L2: objective gap {:.6e}   (SC_test + l2 ||delta||^2)/2 {:.6e}   ratio {:.4}\n\
             L_train(theta_tr) {:.6}   L_test(theta_tr) {:.6}   L_test(theta_te) {:.6}\n",
            tr.iterations,
            tr.hvps,
            tr.grad_norm,
            tr.stopped,
            te.iterations,
            te.hvps,
            te.grad_norm,
            te.stopped,
            s.delta_norm,
            s.delta_norm / s.theta_train_norm,
            s.l2,
            s.sc_train,
            s.sc_test,
            s.normalised_sc_train,
            s.mean_curvature,
            if s.mean_curvature_exact { "exact" } else { "Hutchinson" },
            s.curvature_ratio,
            s.gap,
            s.predicted_gap,
            s.gap_ratio,
            s.objective_gap,
            s.predicted_objective_gap,
            s.objective_gap_ratio,
            s.train_loss,
            s.test_loss_at_train_min,
            s.test_loss_at_test_min,
        );
        let mut details = details_of(&s);
        details["matvecs"] = serde_json::json!(tr.hvps + te.hvps + 2);
        Ok(ProbeOutput::new(values, details, text).evaluated(vec![train_evaluated, test_evaluated]))
    }
}
