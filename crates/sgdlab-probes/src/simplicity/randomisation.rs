//! Simplicity-bias randomisation tests (PROTOCOLS 5).

use super::{agreement, labels_of, logits_of, predicted_classes, stats_err};
use crate::{EvalSet, ProbeError};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::Scalar;
use sgdlab_linalg::stats::roc_auc;
use sgdlab_nn::Model;

/// Accuracy and AUC on one evaluation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitScore {
    /// The split's name (`test`, `test-s-randomised`, `test-sc-randomised`, ...).
    pub split: String,
    pub samples: usize,
    /// Fraction of correct predictions (arg-max, or a single logit > 0).
    pub accuracy: f64,
    /// ROC AUC of the score of class 1 (`z_1 - z_0` for two logits, `z` for one), for binary
    /// labels; `None` otherwise.
    pub auc: Option<f64>,
}

/// Scores on the standard and randomised test sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomisationEstimate {
    pub splits: Vec<SplitScore>,
}

impl RandomisationEstimate {
    /// The score of the split called `name`.
    pub fn get(&self, name: &str) -> Option<&SplitScore> {
        self.splits.iter().find(|s| s.split == name)
    }
}

/// Accuracy and (binary) AUC of the model on one labelled set, logits computed in batches.
pub fn score_split<T: Scalar>(
    model: &Model,
    params: &[T],
    name: &str,
    set: &EvalSet<T>,
    batch_size: usize,
) -> Result<SplitScore, ProbeError> {
    let labels = labels_of(set, "the randomisation test")?;
    let z = logits_of(model, params, set.x.view(), batch_size)?;
    let accuracy = agreement(&predicted_classes(z.view()), labels);
    let binary = labels.iter().all(|&y| y <= 1) && model.out_dim() <= 2;
    let auc = if binary {
        let scores: Vec<f64> = z
            .rows()
            .into_iter()
            .map(|r| if r.len() == 1 { r[0].to_f64() } else { r[1].to_f64() - r[0].to_f64() })
            .collect();
        let pos: Vec<bool> = labels.iter().map(|&y| y == 1).collect();
        Some(roc_auc(&scores, &pos).map_err(stats_err)?)
    } else {
        None
    };
    Ok(SplitScore { split: name.to_string(), samples: set.len(), accuracy, auc })
}

/// The randomisation test of Shah, Tamuly, Raghunathan, Jain & Netrapalli (2020, "The pitfalls
/// of simplicity bias in neural networks", NeurIPS, arXiv:2006.07710; PROTOCOLS 5): accuracy and
/// AUC on the standard test set and on test sets whose simple coordinates `S` (or all the other
/// coordinates `S^c`) were permuted across examples in the un-rotated basis (the LMS generator's
/// splits `test-s-randomised` and `test-sc-randomised`, the dominoes' `test-top-randomised` and
/// `test-bottom-randomised`). A model that relies only on `S` scores chance on the S-randomised set
/// (AUC about 0.5) and its standard score on the S^c-randomised one.
pub fn randomisation_scores<T: Scalar>(
    model: &Model,
    params: &[T],
    sets: &[(&str, &EvalSet<T>)],
    batch_size: usize,
) -> Result<RandomisationEstimate, ProbeError> {
    let splits =
        sets.iter().map(|(name, set)| score_split(model, params, name, set, batch_size)).collect::<Result<_, _>>()?;
    Ok(RandomisationEstimate { splits })
}
