//! Registry entries of the rank measures (PROTOCOLS 1): weight spectra and the effective rank of
//! representations.

use super::{MetricInfo, Needs, ProbeImpl, ProbeInput, ProbeOutput, details_of, scalar, vector};
use crate::common::ProbeError;
use crate::simplicity::{
    Centring, DEFAULT_EPS_RANK_THRESHOLDS, EmbeddingLayers, LayerRank, RepresentationRankParams, WeightSpectraParams,
    representation_rank, weight_spectra,
};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::Scalar;
use std::fmt::Write as _;

/// `weight-spectra`: spectra of every linear weight.
pub struct WeightSpectraProbe;

/// Options of [`WeightSpectraProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct WeightSpectraOptions {
    /// Thresholds of the epsilon-rank #{sigma_i(W/||W||_F) > eps} (comma-separated); the metric
    /// `eps_rank_by_layer` is for the first.
    #[serde(deserialize_with = "super::one_or_many")]
    #[arg(long, value_delimiter = ',', value_name = "EPS", default_values_t = DEFAULT_EPS_RANK_THRESHOLDS)]
    pub eps: Vec<f64>,
    /// Also write the whole spectrum of one weight (0-based, among the linear weights in layout
    /// order) as `singular_values`: sigma_i(W / ||W||_F), descending.
    #[arg(long, value_name = "N")]
    pub spectrum_layer: Option<usize>,
}

impl Default for WeightSpectraOptions {
    fn default() -> Self {
        WeightSpectraOptions { eps: DEFAULT_EPS_RANK_THRESHOLDS.to_vec(), spectrum_layer: None }
    }
}

const LINEAR: &str = "linear layer, in layout order";

impl ProbeImpl for WeightSpectraProbe {
    const NAME: &'static str = "weight-spectra";
    const ABOUT: &'static str = "Singular values, ||W||_2/||W||_F, stable rank, effective rank and epsilon-rank \
        of every linear weight (Timor et al. 2022; Galanti & Poggio 2022; PROTOCOLS 1.1-1.2). No data needed.";
    const NEEDS: Needs = Needs::CHECKPOINT;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "mean_norm_ratio",
            "mean ||W||_2 / ||W||_F",
            "mean over linear layers of the spectral-to-Frobenius norm ratio",
        ),
        MetricInfo::scalar("mean_stable_rank", "mean stable rank", "mean over linear layers of ||W||_F^2 / ||W||_2^2"),
        MetricInfo::scalar(
            "mean_hidden_stable_rank",
            "mean hidden stable rank",
            "mean stable rank over all but the first and last linear layers (NaN with fewer than 3)",
        ),
        MetricInfo::vector("spectral_norm_by_layer", "||W||_2", LINEAR, "largest singular value of each weight"),
        MetricInfo::vector("frobenius_norm_by_layer", "||W||_F", LINEAR, "Frobenius norm of each weight"),
        MetricInfo::vector("norm_ratio_by_layer", "||W||_2 / ||W||_F", LINEAR, "norm ratio of each weight"),
        MetricInfo::vector("stable_rank_by_layer", "stable rank", LINEAR, "||W||_F^2 / ||W||_2^2 of each weight"),
        MetricInfo::vector(
            "effective_rank_by_layer",
            "effective rank",
            LINEAR,
            "exp of the entropy of the normalised singular values of each weight (Roy & Vetterli 2007)",
        ),
        MetricInfo::vector(
            "eps_rank_by_layer",
            "epsilon-rank",
            LINEAR,
            "singular values of W / ||W||_F above the first eps threshold, per weight",
        ),
        MetricInfo::vector(
            "singular_values",
            "sigma_i / ||W||_F",
            "singular value, descending",
            "the normalised singular values of the weight chosen by spectrum_layer",
        ),
    ];
    type Options = WeightSpectraOptions;

    fn written(o: &WeightSpectraOptions) -> Vec<&'static str> {
        let all = Self::METRICS.iter().map(|m| m.name);
        all.filter(|n| o.spectrum_layer.is_some() || *n != "singular_values").collect()
    }

    fn check(o: &WeightSpectraOptions) -> Result<(), String> {
        if o.eps.is_empty() {
            return Err("eps: give at least one threshold".into());
        }
        if let Some(e) = o.eps.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
            return Err(format!("eps thresholds must be positive and finite, got {e}"));
        }
        Ok(())
    }

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &WeightSpectraOptions) -> Result<ProbeOutput, ProbeError> {
        let params = input.params_as::<T>()?;
        let est = weight_spectra(input.model()?, &params, &WeightSpectraParams { eps: o.eps.clone() })?;
        let per = |f: &dyn Fn(&crate::simplicity::MatrixSpectrum) -> f64| -> Vec<f64> {
            est.layers.iter().map(|w| f(&w.spectrum)).collect()
        };
        let mut values = vec![
            scalar("mean_norm_ratio", est.mean_norm_ratio),
            scalar("mean_stable_rank", est.mean_stable_rank),
            scalar("mean_hidden_stable_rank", est.mean_hidden_stable_rank),
            vector("spectral_norm_by_layer", per(&|s| s.spectral_norm)),
            vector("frobenius_norm_by_layer", per(&|s| s.frobenius_norm)),
            vector("norm_ratio_by_layer", per(&|s| s.norm_ratio)),
            vector("stable_rank_by_layer", per(&|s| s.stable_rank)),
            vector("effective_rank_by_layer", per(&|s| s.effective_rank)),
            vector("eps_rank_by_layer", per(&|s| s.eps_ranks[0].rank as f64)),
        ];
        if let Some(l) = o.spectrum_layer {
            let Some(w) = est.layers.get(l) else {
                return Err(ProbeError::Invalid(format!(
                    "spectrum_layer {l}: the model has {} linear weights (0 to {})",
                    est.layers.len(),
                    est.layers.len().saturating_sub(1)
                )));
            };
            let f = w.spectrum.frobenius_norm;
            let sv = w.spectrum.singular_values.iter().map(|s| if f > 0.0 { s / f } else { 0.0 }).collect();
            values.push(vector("singular_values", sv));
        }
        let mut t =
            String::from("layer         shape        ||W||_2    ||W||_F    ratio   srank   erank   eps-ranks\n");
        for w in &est.layers {
            let s = &w.spectrum;
            let eps: Vec<String> = s.eps_ranks.iter().map(|e| format!("{}@{:e}", e.rank, e.eps)).collect();
            let _ = writeln!(
                t,
                "{:<13} {:<12} {:>9.4} {:>10.4} {:>7.4} {:>7.3} {:>7.3}   {} (of {})",
                w.name,
                format!("{}x{}", w.shape[0], w.shape[1]),
                s.spectral_norm,
                s.frobenius_norm,
                s.norm_ratio,
                s.stable_rank,
                s.effective_rank,
                eps.join(" "),
                s.max_rank
            );
        }
        let _ = writeln!(
            t,
            "mean ratio {:.4}, mean stable rank {:.3}, mean hidden stable rank {:.3}",
            est.mean_norm_ratio, est.mean_stable_rank, est.mean_hidden_stable_rank
        );
        Ok(ProbeOutput::new(values, details_of(&est), t))
    }
}

/// `representation-rank`: effective rank of each layer's embeddings.
pub struct RepresentationRankProbe;

/// Options of [`RepresentationRankProbe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct RepresentationRankOptions {
    /// Representation layers: `blocks` (input, each Linear[+LN]+activation group or residual
    /// block, logits) or `all` (every top-level layer).
    #[arg(long, value_enum, default_value_t = EmbeddingLayers::Blocks)]
    pub layers: EmbeddingLayers,
    /// Centre the embeddings (subtract the mean over samples) before the spectrum.
    #[arg(long, value_enum, default_value_t = Centring::None)]
    pub centring: Centring,
    /// The layer of the scalar metrics: `last` (the last representation before the logits),
    /// `logits`, or a layer name (`input`, or the PyTorch index of a top-level layer).
    #[arg(long, value_name = "LAYER", default_value = "last")]
    pub layer: String,
}

impl Default for RepresentationRankOptions {
    fn default() -> Self {
        RepresentationRankOptions { layers: EmbeddingLayers::Blocks, centring: Centring::None, layer: "last".into() }
    }
}

const REPRESENTATION: &str = "representation layer (depth: 0 = input)";

/// The layer `name` of a representation-rank estimate: `last` (the one before the logits),
/// `logits`, or by name.
fn chosen_layer<'e>(layers: &'e [LayerRank], name: &str) -> Result<&'e LayerRank, ProbeError> {
    let found = match name {
        "last" => layers.len().checked_sub(2).and_then(|i| layers.get(i)),
        "logits" => layers.last(),
        other => layers.iter().find(|l| l.layer.name == other),
    };
    found.ok_or_else(|| {
        let names: Vec<&str> = layers.iter().map(|l| l.layer.name.as_str()).collect();
        ProbeError::Invalid(format!("no representation layer '{name}' (layers: last, logits, {})", names.join(", ")))
    })
}

impl ProbeImpl for RepresentationRankProbe {
    const NAME: &'static str = "representation-rank";
    const ABOUT: &'static str = "Effective rank (Roy & Vetterli) of each layer's embeddings, in the \
        embedding-matrix and Gram conventions (Huh et al. 2021; PROTOCOLS 1.3).";
    const NEEDS: Needs = Needs::EVAL;
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo::scalar(
            "effective_rank",
            "effective rank of the representation",
            "exp of the entropy of the normalised singular values of the chosen layer's embeddings",
        ),
        MetricInfo::scalar(
            "effective_rank_gram",
            "effective rank (Gram convention)",
            "the same on squared singular values (the eigenvalues of the Gram matrix)",
        ),
        MetricInfo::scalar(
            "stable_rank",
            "stable rank of the representation",
            "||Phi||_F^2 / ||Phi||_2^2 of the chosen layer's embeddings",
        ),
        MetricInfo::vector("effective_rank_by_layer", "effective rank", REPRESENTATION, "effective rank per layer"),
        MetricInfo::vector(
            "effective_rank_gram_by_layer",
            "effective rank (Gram convention)",
            REPRESENTATION,
            "Gram-convention effective rank per layer",
        ),
        MetricInfo::vector("stable_rank_by_layer", "stable rank", REPRESENTATION, "stable rank per layer"),
    ];
    type Options = RepresentationRankOptions;

    fn measure<T: Scalar>(input: &ProbeInput<'_>, o: &RepresentationRankOptions) -> Result<ProbeOutput, ProbeError> {
        let e = input.evaluation::<T>()?;
        let opts = RepresentationRankParams { layers: o.layers, centring: o.centring };
        let est = representation_rank(e.model, &e.params, &e.set, &opts)?;
        let chosen = chosen_layer(&est.layers, &o.layer)?;
        let per = |f: fn(&LayerRank) -> f64| -> Vec<f64> { est.layers.iter().map(f).collect() };
        let values = vec![
            scalar("effective_rank", chosen.effective_rank),
            scalar("effective_rank_gram", chosen.effective_rank_gram),
            scalar("stable_rank", chosen.stable_rank),
            vector("effective_rank_by_layer", per(|l| l.effective_rank)),
            vector("effective_rank_gram_by_layer", per(|l| l.effective_rank_gram)),
            vector("stable_rank_by_layer", per(|l| l.stable_rank)),
        ];
        let mut t = format!(
            "{} samples, centring {:?}\nlayer   depth kind        dim   erank   erank(Gram)  srank\n",
            est.samples, est.centring
        );
        for r in &est.layers {
            let mark = if std::ptr::eq(r, chosen) { "  <- scalar metrics" } else { "" };
            let _ = writeln!(
                t,
                "{:<7} {:>5} {:<10} {:>4} {:>8.3} {:>11.3} {:>7.3}{mark}",
                r.layer.name,
                r.layer.depth,
                r.layer.kind,
                r.layer.dim,
                r.effective_rank,
                r.effective_rank_gram,
                r.stable_rank
            );
        }
        let mut details = details_of(&est);
        details["layer"] = serde_json::json!(chosen.layer.name);
        Ok(ProbeOutput::new(values, details, t).evaluated(vec![e.evaluated]))
    }
}
