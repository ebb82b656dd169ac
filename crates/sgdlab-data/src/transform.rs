//! Transforms the studies need: held-out splits, balanced subsets, class-pair binarisation, label
//! noise and random labels, 2x2 average pooling, standardisation, unit-norm scaling, and
//! randomising a block of coordinates.
//!
//! Every transform returns a new [`Dataset`] and draws its randomness from the [`RngStream`] it is
//! given (by convention a child named after the transform, e.g. `child("label-noise")`).

use crate::{DataError, Dataset, ImageShape, Split, Targets};
use ndarray::{Array2, Axis};
use rand::RngExt;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::RngStream;

/// Features whose standard deviation (in the statistics split) is below this are only centred,
/// not scaled (e.g. MNIST's always-blank border pixels).
pub const MIN_SD: f64 = 1e-6;

/// How [`Dataset::standardise`] pools its statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StandardiseBy {
    /// One mean and sd per feature.
    Feature,
    /// One mean and sd over all features and examples.
    Global,
}

/// Per-feature affine statistics: `x' = (x - mean) / sd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardisation {
    /// Mean per feature.
    pub mean: Vec<f64>,
    /// Standard deviation per feature (population, i.e. divided by n), floored to 1 below
    /// [`MIN_SD`].
    pub sd: Vec<f64>,
}

impl Standardisation {
    /// Apply to every split of `data`.
    pub fn apply(&self, data: &Dataset) -> Result<Dataset, DataError> {
        if self.mean.len() != data.dim() {
            return Err(DataError::invalid(
                data.name(),
                format!("standardisation has {} features, the data {}", self.mean.len(), data.dim()),
            ));
        }
        map_features(data, |x| {
            let mut x = x.clone();
            for mut row in x.rows_mut() {
                for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.sd) {
                    *v = ((f64::from(*v) - m) / s) as f32;
                }
            }
            Ok(x)
        })
    }
}

fn map_features(
    data: &Dataset,
    mut f: impl FnMut(&Array2<f32>) -> Result<Array2<f32>, DataError>,
) -> Result<Dataset, DataError> {
    let splits = data
        .splits()
        .iter()
        .map(|s| Split::new(s.name(), f(s.features())?, s.targets().clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Dataset::new(data.name(), data.image_shape(), splits)
}

fn map_split(
    data: &Dataset,
    name: &str,
    f: impl FnOnce(&Split) -> Result<Split, DataError>,
) -> Result<Dataset, DataError> {
    let split = data.split(name)?;
    let new = f(split)?;
    data.with_split(name, new)
}

fn class_labels<'a>(data: &Dataset, split: &'a Split, what: &str) -> Result<(&'a [u32], usize), DataError> {
    match split.targets() {
        Targets::Classes { labels, num_classes } => Ok((labels, *num_classes)),
        Targets::Regression(_) => {
            Err(DataError::invalid(data.name(), format!("{what} needs class labels; the targets are real-valued")))
        }
    }
}

fn check_fraction(data: &Dataset, what: &str, fraction: f64) -> Result<(), DataError> {
    if (0.0..=1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(DataError::invalid(data.name(), format!("{what}: fraction {fraction} is not in [0, 1]")))
    }
}

/// `k` distinct indices out of `0..n`, uniformly at random, in random order.
pub(crate) fn choose(rng: &mut impl rand::Rng, n: usize, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let (chosen, _) = idx.partial_shuffle(rng, k);
    chosen.to_vec()
}

impl Dataset {
    /// Replace split `from` (usually `all`) by `train` (the first `n - test` examples of a random
    /// permutation, in permuted order) and `test` (the remaining `test` examples).
    pub fn split_off_test(&self, from: &str, test: usize, stream: &RngStream) -> Result<Dataset, DataError> {
        let split = self.split(from)?;
        if test == 0 || test >= split.len() {
            return Err(DataError::invalid(
                self.name(),
                format!("cannot hold out {test} of the {} examples of split `{from}`", split.len()),
            ));
        }
        let mut order: Vec<usize> = (0..split.len()).collect();
        order.shuffle(&mut stream.rng());
        let (tr, te) = order.split_at(split.len() - test);
        let mut splits: Vec<Split> = self.splits().iter().filter(|s| s.name() != from).cloned().collect();
        for s in ["train", "test"] {
            if splits.iter().any(|x| x.name() == s) {
                return Err(DataError::invalid(self.name(), format!("split `{s}` exists already")));
            }
        }
        splits.insert(0, split.select("test", te));
        splits.insert(0, split.select("train", tr));
        Dataset::new(self.name(), self.image_shape(), splits)
    }

    /// Replace split `split` by a class-balanced random subset of `n` examples (`n / C` of each of
    /// the `C` classes, kept in their original order). Errors if `n` is not a multiple of `C` or a
    /// class has too few examples.
    pub fn balanced_subset(&self, split: &str, n: usize, stream: &RngStream) -> Result<Dataset, DataError> {
        map_split(self, split, |s| {
            let (labels, c) = class_labels(self, s, "a balanced subset")?;
            if c == 0 || n == 0 || !n.is_multiple_of(c) {
                return Err(DataError::invalid(
                    self.name(),
                    format!("a balanced subset of {n} is not possible with {c} classes"),
                ));
            }
            let per = n / c;
            let mut rng = stream.rng();
            let mut keep = Vec::with_capacity(n);
            for class in 0..c as u32 {
                let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
                if members.len() < per {
                    return Err(DataError::invalid(
                        self.name(),
                        format!(
                            "class {class} of split `{split}` has {} examples, fewer than the {per} a balanced subset of {n} needs",
                            members.len()
                        ),
                    ));
                }
                keep.extend(choose(&mut rng, members.len(), per).into_iter().map(|j| members[j]));
            }
            keep.sort_unstable();
            Ok(s.select(split, &keep))
        })
    }

    /// Keep, in every split, only the examples whose class is in `negative` or `positive`, and
    /// relabel them 0 (negative) and 1 (positive). E.g. `binarise(&[0], &[1])`, or even vs odd:
    /// `binarise(&[0, 2, 4, 6, 8], &[1, 3, 5, 7, 9])`.
    pub fn binarise(&self, negative: &[u32], positive: &[u32]) -> Result<Dataset, DataError> {
        let c = self.num_classes().ok_or_else(|| DataError::invalid(self.name(), "binarisation needs class labels"))?;
        if negative.is_empty() || positive.is_empty() {
            return Err(DataError::invalid(
                self.name(),
                "binarisation needs at least one negative and one positive class",
            ));
        }
        for &l in negative.iter().chain(positive) {
            if l as usize >= c {
                return Err(DataError::invalid(
                    self.name(),
                    format!("class {l} does not exist (the data has {c} classes)"),
                ));
            }
        }
        if let Some(l) = negative.iter().find(|l| positive.contains(l)) {
            return Err(DataError::invalid(self.name(), format!("class {l} is both negative and positive")));
        }
        let splits = self
            .splits()
            .iter()
            .map(|s| {
                let labels = s.labels().unwrap_or(&[]);
                let keep: Vec<usize> =
                    (0..s.len()).filter(|&i| negative.contains(&labels[i]) || positive.contains(&labels[i])).collect();
                let new_labels = keep.iter().map(|&i| u32::from(positive.contains(&labels[i]))).collect();
                Split::new(
                    s.name(),
                    s.features().select(Axis(0), &keep),
                    Targets::Classes { labels: new_labels, num_classes: 2 },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Dataset::new(self.name(), self.image_shape(), splits)
    }

    /// Label noise: exactly `round(fraction * n)` examples of split `split`, chosen uniformly
    /// without replacement, get a label drawn uniformly from the *other* classes (so exactly that
    /// fraction of the labels is wrong).
    pub fn with_label_noise(&self, split: &str, fraction: f64, stream: &RngStream) -> Result<Dataset, DataError> {
        check_fraction(self, "label noise", fraction)?;
        map_split(self, split, |s| {
            let (labels, c) = class_labels(self, s, "label noise")?;
            if c < 2 {
                return Err(DataError::invalid(self.name(), "label noise needs at least two classes"));
            }
            let mut labels = labels.to_vec();
            let mut rng = stream.rng();
            let k = (fraction * labels.len() as f64).round() as usize;
            for i in choose(&mut rng, labels.len(), k) {
                let r = rng.random_range(0..c as u32 - 1);
                labels[i] = if r >= labels[i] { r + 1 } else { r };
            }
            Split::new(split, s.features().clone(), Targets::Classes { labels, num_classes: c })
        })
    }

    /// Random labels (Zhang et al., 2017, "Understanding deep learning requires rethinking
    /// generalization"): exactly `round(fraction * n)` examples of split `split`, chosen uniformly
    /// without replacement, get a label drawn uniformly from *all* classes (so about
    /// `fraction * (C - 1) / C` of the labels end up wrong). `fraction = 1` gives fully random labels.
    pub fn with_random_labels(&self, split: &str, fraction: f64, stream: &RngStream) -> Result<Dataset, DataError> {
        check_fraction(self, "random labels", fraction)?;
        map_split(self, split, |s| {
            let (labels, c) = class_labels(self, s, "random labels")?;
            let mut labels = labels.to_vec();
            let mut rng = stream.rng();
            let k = (fraction * labels.len() as f64).round() as usize;
            for i in choose(&mut rng, labels.len(), k) {
                labels[i] = rng.random_range(0..c as u32);
            }
            Split::new(split, s.features().clone(), Targets::Classes { labels, num_classes: c })
        })
    }

    /// 2x2 average pooling of image data (`C x H x W` to `C x H/2 x W/2`; MNIST 28x28 to 14x14 =
    /// 196 features). Errors without an image shape or with an odd height or width.
    pub fn avg_pool_2x2(&self) -> Result<Dataset, DataError> {
        let Some(shape) = self.image_shape() else {
            return Err(DataError::invalid(self.name(), "2x2 pooling needs image data (no image shape)"));
        };
        if shape.height % 2 != 0 || shape.width % 2 != 0 {
            return Err(DataError::invalid(
                self.name(),
                format!("2x2 pooling needs an even height and width, not {shape}"),
            ));
        }
        let out = ImageShape { channels: shape.channels, height: shape.height / 2, width: shape.width / 2 };
        let (h, w, oh, ow) = (shape.height, shape.width, out.height, out.width);
        let splits = self
            .splits()
            .iter()
            .map(|s| {
                let mut y = Array2::<f32>::zeros((s.len(), out.len()));
                for (x, mut yr) in s.features().rows().into_iter().zip(y.rows_mut()) {
                    for c in 0..shape.channels {
                        for r in 0..oh {
                            for q in 0..ow {
                                let p = |rr: usize, qq: usize| x[c * h * w + rr * w + qq];
                                let v = p(2 * r, 2 * q)
                                    + p(2 * r, 2 * q + 1)
                                    + p(2 * r + 1, 2 * q)
                                    + p(2 * r + 1, 2 * q + 1);
                                yr[c * oh * ow + r * ow + q] = 0.25 * v;
                            }
                        }
                    }
                }
                Split::new(s.name(), y, s.targets().clone())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Dataset::new(self.name(), Some(out), splits)
    }

    /// Mean and sd of split `from` (population sd; sds below [`MIN_SD`] are replaced by 1).
    pub fn standardisation(&self, from: &str, by: StandardiseBy) -> Result<Standardisation, DataError> {
        let s = self.split(from)?;
        if s.is_empty() {
            return Err(DataError::invalid(self.name(), format!("split `{from}` is empty")));
        }
        let x = s.features().mapv(f64::from);
        let (mean, sd) = match by {
            StandardiseBy::Feature => {
                let mean = x.mean_axis(Axis(0)).map(|m| m.to_vec()).unwrap_or_default();
                let sd = x.std_axis(Axis(0), 0.0).to_vec();
                (mean, sd)
            }
            StandardiseBy::Global => {
                let m = x.mean().unwrap_or(0.0);
                let sd = x.std(0.0);
                (vec![m; s.dim()], vec![sd; s.dim()])
            }
        };
        let sd = sd.into_iter().map(|v| if v < MIN_SD { 1.0 } else { v }).collect();
        Ok(Standardisation { mean, sd })
    }

    /// Standardise every split with the statistics of split `from` (normally `train`).
    pub fn standardise(&self, from: &str, by: StandardiseBy) -> Result<Dataset, DataError> {
        self.standardisation(from, by)?.apply(self)
    }

    /// Scale every example to unit Euclidean norm (all-zero examples are left at zero).
    pub fn unit_norm(&self) -> Result<Dataset, DataError> {
        map_features(self, |x| {
            let mut x = x.clone();
            for mut row in x.rows_mut() {
                let norm = row.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
                if norm > 0.0 {
                    row.mapv_inplace(|v| (f64::from(v) / norm) as f32);
                }
            }
            Ok(x)
        })
    }
}

/// Randomise a block of coordinates (Shah et al., 2020, "The Pitfalls of Simplicity Bias in Neural
/// Networks"): one uniform random permutation `p` of the examples, then `x[i, c] = x[p(i), c]` for
/// every column `c` in `columns`, so the block of each example comes from another (random)
/// example and loses its correlation with the label, while the other columns are untouched.
pub fn randomise_columns(split: &Split, columns: &[usize], name: &str, stream: &RngStream) -> Result<Split, DataError> {
    if let Some(c) = columns.iter().find(|&&c| c >= split.dim()) {
        return Err(DataError::invalid(split.name(), format!("column {c} does not exist ({} features)", split.dim())));
    }
    let mut perm: Vec<usize> = (0..split.len()).collect();
    perm.shuffle(&mut stream.rng());
    let src = split.features();
    let mut x = src.clone();
    for (i, &p) in perm.iter().enumerate() {
        for &c in columns {
            x[[i, c]] = src[[p, c]];
        }
    }
    Split::new(name, x, split.targets().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        let x = Array2::from_shape_fn((12, 4), |(i, j)| (i * 4 + j) as f32);
        let labels = (0..12).map(|i| (i % 3) as u32).collect();
        let train = Split::new("train", x.clone(), Targets::Classes { labels, num_classes: 3 }).unwrap();
        let test = Split::new(
            "test",
            x.slice(ndarray::s![..6, ..]).to_owned(),
            Targets::Classes { labels: vec![0, 1, 2, 0, 1, 2], num_classes: 3 },
        )
        .unwrap();
        Dataset::new("toy", Some(ImageShape { channels: 1, height: 2, width: 2 }), vec![train, test]).unwrap()
    }

    #[test]
    fn pooling_averages_each_2x2_block() {
        let d = toy().avg_pool_2x2().unwrap();
        assert_eq!(d.dim(), 1);
        assert_eq!(d.image_shape().unwrap(), ImageShape { channels: 1, height: 1, width: 1 });
        assert_eq!(d.train().unwrap().features()[[2, 0]], (8.0 + 9.0 + 10.0 + 11.0) / 4.0);
    }

    #[test]
    fn label_noise_changes_exactly_the_fraction() {
        let d = toy();
        let n = d.with_label_noise("train", 0.5, &RngStream::new(3).child("label-noise")).unwrap();
        let before = d.train().unwrap().labels().unwrap();
        let after = n.train().unwrap().labels().unwrap();
        assert_eq!(before.iter().zip(after).filter(|(a, b)| a != b).count(), 6);
        assert_eq!(n.test().unwrap(), d.test().unwrap());
        let r = d.with_random_labels("train", 1.0, &RngStream::new(3)).unwrap();
        assert!(r.train().unwrap().labels().unwrap().iter().all(|&l| l < 3));
        assert!(d.with_label_noise("train", 1.5, &RngStream::new(3)).is_err());
    }

    #[test]
    fn binarise_balanced_standardise() {
        let d = toy();
        let b = d.binarise(&[0], &[2]).unwrap();
        assert_eq!(b.train().unwrap().len(), 8);
        assert_eq!(b.train().unwrap().labels().unwrap()[..2], [0, 1]);
        assert!(d.binarise(&[0], &[0]).is_err());
        assert!(d.binarise(&[0], &[3]).is_err());
        let s = d.balanced_subset("train", 6, &RngStream::new(1)).unwrap();
        assert_eq!(s.train().unwrap().targets().class_counts().unwrap(), vec![2, 2, 2]);
        assert!(d.balanced_subset("train", 7, &RngStream::new(1)).is_err());
        assert!(d.balanced_subset("train", 15, &RngStream::new(1)).is_err());
        let z = d.standardise("train", StandardiseBy::Feature).unwrap();
        let x = z.train().unwrap().features();
        for j in 0..4 {
            let col = x.column(j);
            let m = col.mean().unwrap();
            let v = col.mapv(|a| (a - m) * (a - m)).mean().unwrap();
            assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4, "column {j}: mean {m} var {v}");
        }
    }

    #[test]
    fn split_off_test_and_randomise() {
        let t = toy();
        let d = Dataset::new("t", None, vec![t.train().unwrap().clone().renamed("all")]).unwrap();
        let s = d.split_off_test("all", 4, &RngStream::new(2)).unwrap();
        assert_eq!(s.split_names(), vec!["train", "test"]);
        assert_eq!((s.train().unwrap().len(), s.test().unwrap().len()), (8, 4));
        let r = randomise_columns(t.train().unwrap(), &[0, 1], "r", &RngStream::new(4)).unwrap();
        let x = t.train().unwrap().features();
        // Columns 2 and 3 untouched; columns 0 and 1 moved together (row i takes row p(i)'s block).
        assert_eq!(r.features().column(3), x.column(3));
        for i in 0..12 {
            let src = (r.features()[[i, 0]] / 4.0) as usize;
            assert_eq!(r.features()[[i, 1]], x[[src, 1]]);
        }
    }
}
