//! Summaries of a dataset: shapes, class counts, feature statistics; and the examples to draw.

use crate::{Dataset, ImageShape, Split, Targets};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Statistics of a set of values (f64 accumulation; population sd).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueStats {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (divided by the count).
    pub sd: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl ValueStats {
    fn of(values: impl Iterator<Item = f32>) -> Option<ValueStats> {
        let (mut n, mut s, mut s2) = (0usize, 0.0f64, 0.0f64);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            let v = f64::from(v);
            n += 1;
            s += v;
            s2 += v * v;
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if n == 0 {
            return None;
        }
        let mean = s / n as f64;
        let sd = (s2 / n as f64 - mean * mean).max(0.0).sqrt();
        Some(ValueStats { mean, sd, min: lo, max: hi })
    }
}

/// Summary of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// Number of examples.
    pub n: usize,
    /// Shape of the split's feature array: `[n, d]`, or `[n, C, H, W]` for images.
    pub shape: Vec<usize>,
    /// Class count (`None` for regression).
    pub classes: Option<usize>,
    /// Examples per class (`None` for regression).
    pub class_counts: Option<Vec<usize>>,
    /// Regression target width (`None` for classes).
    pub target_dim: Option<usize>,
    /// Statistics over every feature value of the split.
    pub features: Option<ValueStats>,
    /// Statistics over every regression target value (`None` for classes).
    pub targets: Option<ValueStats>,
    /// Spread of the per-feature means and sds: the smallest and largest per-feature mean, the
    /// smallest and largest per-feature sd.
    pub per_feature: Option<PerFeatureRange>,
}

/// Range of per-feature statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerFeatureRange {
    /// Smallest per-feature mean.
    pub mean_min: f64,
    /// Largest per-feature mean.
    pub mean_max: f64,
    /// Smallest per-feature sd.
    pub sd_min: f64,
    /// Largest per-feature sd.
    pub sd_max: f64,
}

/// Summary of a dataset (what `sgdlab data info` prints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The dataset's name (canonical spec).
    pub name: String,
    /// Features per example.
    pub dim: usize,
    /// Image shape, if any.
    pub image_shape: Option<ImageShape>,
    /// Split name -> summary.
    pub splits: BTreeMap<String, SplitInfo>,
}

fn split_info(s: &Split, image: Option<ImageShape>) -> SplitInfo {
    let x = s.features();
    let per_feature = if s.is_empty() {
        None
    } else {
        let mut r = PerFeatureRange {
            mean_min: f64::INFINITY,
            mean_max: f64::NEG_INFINITY,
            sd_min: f64::INFINITY,
            sd_max: f64::NEG_INFINITY,
        };
        for col in x.columns() {
            if let Some(v) = ValueStats::of(col.iter().copied()) {
                r.mean_min = r.mean_min.min(v.mean);
                r.mean_max = r.mean_max.max(v.mean);
                r.sd_min = r.sd_min.min(v.sd);
                r.sd_max = r.sd_max.max(v.sd);
            }
        }
        (s.dim() > 0).then_some(r)
    };
    SplitInfo {
        n: s.len(),
        shape: match image {
            Some(i) => vec![s.len(), i.channels, i.height, i.width],
            None => vec![s.len(), s.dim()],
        },
        classes: s.targets().num_classes(),
        class_counts: s.targets().class_counts(),
        target_dim: s.targets().values().map(|v| v.ncols()),
        features: ValueStats::of(x.iter().copied()),
        targets: s.targets().values().and_then(|v| ValueStats::of(v.iter().copied())),
        per_feature,
    }
}

/// The summary of every split of `data`.
pub fn dataset_info(data: &Dataset) -> DatasetInfo {
    DatasetInfo {
        name: data.name().to_string(),
        dim: data.dim(),
        image_shape: data.image_shape(),
        splits: data.splits().iter().map(|s| (s.name().to_string(), split_info(s, data.image_shape()))).collect(),
    }
}

impl fmt::Display for DatasetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset {}", self.name)?;
        match self.image_shape {
            Some(i) => writeln!(f, "features: {} per example (images {i})", self.dim)?,
            None => writeln!(f, "features: {} per example", self.dim)?,
        }
        for (name, s) in &self.splits {
            let shape: Vec<String> = s.shape.iter().map(usize::to_string).collect();
            write!(f, "split {name}: n = {}, shape [{}]", s.n, shape.join(", "))?;
            match (&s.classes, &s.class_counts, s.target_dim) {
                (Some(c), Some(counts), _) => {
                    let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
                    writeln!(f, ", {c} classes, counts [{}]", counts.join(", "))?;
                }
                (_, _, Some(k)) => writeln!(f, ", regression targets of width {k}")?,
                _ => writeln!(f)?,
            }
            if let Some(v) = &s.features {
                writeln!(f, "  features: mean {:.4}, sd {:.4}, min {:.4}, max {:.4}", v.mean, v.sd, v.min, v.max)?;
            }
            if let Some(p) = &s.per_feature {
                writeln!(
                    f,
                    "  per feature: means in [{:.4}, {:.4}], sds in [{:.4}, {:.4}]",
                    p.mean_min, p.mean_max, p.sd_min, p.sd_max
                )?;
            }
            if let Some(v) = &s.targets {
                writeln!(f, "  targets: mean {:.4}, sd {:.4}, min {:.4}, max {:.4}", v.mean, v.sd, v.min, v.max)?;
            }
        }
        Ok(())
    }
}

/// The first `per_class` examples of each class of `split`, as `(class, indices)` in class order
/// (classes without examples are skipped); for regression, `(0, the first per_class examples)`.
pub fn examples_per_class(split: &Split, per_class: usize) -> Vec<(u32, Vec<usize>)> {
    match split.targets() {
        Targets::Classes { labels, num_classes } => (0..*num_classes as u32)
            .map(|c| (c, (0..labels.len()).filter(|&i| labels[i] == c).take(per_class).collect::<Vec<_>>()))
            .filter(|(_, v)| !v.is_empty())
            .collect(),
        Targets::Regression(_) => vec![(0, (0..split.len().min(per_class)).collect())],
    }
}
