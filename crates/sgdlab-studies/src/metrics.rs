//! The metrics a study's runs write: the trainer's own (`train/loss`, `test/accuracy`, ...) and
//! those of each measurement (`label/name`, described by the probe registry), with labels and
//! units for validation and for figures.

use crate::records::PlannedMeasure;
use sgdlab_probes::registry::{self, MetricInfo, MetricShape};
use std::collections::BTreeMap;

/// The metrics every training run writes (probe, metric).
pub const TRAINER: &[(&str, MetricInfo)] = &[
    ("train", MetricInfo::scalar("loss", "training loss", "mean loss over the evaluated training examples")),
    (
        "train",
        MetricInfo::scalar(
            "accuracy",
            "training accuracy",
            "fraction of evaluated training examples classified correctly",
        ),
    ),
    ("test", MetricInfo::scalar("loss", "test loss", "mean loss over the test split")),
    ("test", MetricInfo::scalar("accuracy", "test accuracy", "fraction of test examples classified correctly")),
    ("batch", MetricInfo::scalar("loss", "minibatch loss", "the loss of the minibatch of a step")),
    ("optimizer", MetricInfo::scalar("lr", "learning rate", "the step size of a step")),
];

/// Every metric a plan's runs can write, `probe/name` -> its description.
pub fn known(measures: &[PlannedMeasure]) -> BTreeMap<String, MetricInfo> {
    let mut out: BTreeMap<String, MetricInfo> = TRAINER.iter().map(|(p, m)| (format!("{p}/{}", m.name), *m)).collect();
    for m in measures {
        if let Some(probe) = registry::find(&m.spec.probe) {
            for name in &m.metrics {
                let short = name.rsplit_once('/').map_or(name.as_str(), |(_, n)| n);
                if let Some(info) = probe.metric(short) {
                    out.insert(name.clone(), *info);
                }
            }
        }
    }
    out
}

/// Whether a known metric is a vector.
pub fn is_vector(known: &BTreeMap<String, MetricInfo>, name: &str) -> Option<bool> {
    known.get(name).map(|m| matches!(m.shape, MetricShape::Vector { .. }))
}

/// The closest known name to a misspelt one, if it is close (for "did you mean").
pub fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known.map(|k| (edit_distance(name, k), k)).filter(|(d, k)| *d <= 3.max(k.len() / 4)).min().map(|(_, k)| k)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_for_misspelt_metrics() {
        let names = ["hessian/top_eigenvalue", "train/loss", "test/accuracy"];
        assert_eq!(closest("hessian/top_eigenvalu", names.iter().copied()), Some("hessian/top_eigenvalue"));
        assert_eq!(closest("tset/accuracy", names.iter().copied()), Some("test/accuracy"));
        assert_eq!(closest("sharpness/sharpness", names.iter().copied()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
