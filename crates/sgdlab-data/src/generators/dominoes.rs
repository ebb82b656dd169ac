//! Two-block "dominoes" made of image pairs.

use crate::transform::{choose, randomise_columns};
use crate::{DataError, Dataset, ImageShape, Split, Targets};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::RngStream;

/// Dominoes (Shah et al., "The Pitfalls of Simplicity Bias in Neural Networks", NeurIPS 2020,
/// whose MNIST-CIFAR images stack an MNIST digit on a CIFAR image; here both blocks come from one
/// image dataset, e.g. MNIST 0 vs 1 on top of the harder MNIST 4 vs 9). A binary label `y` is
/// shared by both blocks: the top block is an image of class `top[y]`, the bottom block one of
/// class `bottom[y]`, stacked vertically into a `C x 2H x W` image.
///
/// In every split of the base set, the images of each needed class are shuffled (stream
/// `dominoes/<split>`) and paired without reuse, so `min(#top[y], #bottom[y])` dominoes are made
/// for each `y`; they are then shuffled. For each split `s` whose name starts with `test`, two
/// randomised copies are added (Shah et al.'s randomisation: one permutation of the examples moves
/// a whole block): `s-top-randomised` and `s-bottom-randomised`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DominoesSpec {
    /// Classes of the top block for `y = 0` and `y = 1`.
    pub top: (u32, u32),
    /// Classes of the bottom block for `y = 0` and `y = 1`.
    pub bottom: (u32, u32),
    /// Seed.
    pub seed: u64,
}

impl Default for DominoesSpec {
    /// MNIST 0/1 (simple) on top of 4/9 (harder), as in the CPU protocol.
    fn default() -> Self {
        DominoesSpec { top: (0, 1), bottom: (4, 9), seed: 0 }
    }
}

impl DominoesSpec {
    /// Dominoes from the images of `base`.
    pub fn generate(&self, base: &Dataset) -> Result<Dataset, DataError> {
        let Some(shape) = base.image_shape() else {
            return Err(DataError::invalid(base.name(), "dominoes need image data"));
        };
        let c = base.num_classes().ok_or_else(|| DataError::invalid(base.name(), "dominoes need class labels"))?;
        for l in [self.top.0, self.top.1, self.bottom.0, self.bottom.1] {
            if l as usize >= c {
                return Err(DataError::invalid(base.name(), format!("class {l} does not exist ({c} classes)")));
            }
        }
        let out_shape = ImageShape { channels: shape.channels, height: 2 * shape.height, width: shape.width };
        let plane = shape.height * shape.width;
        let root = RngStream::new(self.seed).child("dominoes");
        let mut splits = Vec::new();
        for s in base.splits() {
            let labels = s.labels().unwrap_or(&[]);
            let mut rng = root.child(s.name()).rng();
            let mut pool = |class: u32| -> Vec<usize> {
                let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
                choose(&mut rng, members.len(), members.len()).into_iter().map(|j| members[j]).collect()
            };
            let mut pairs: Vec<(usize, usize, u32)> = Vec::new();
            for (y, (t, b)) in [(0u32, (self.top.0, self.bottom.0)), (1, (self.top.1, self.bottom.1))] {
                let (pt, pb) = (pool(t), pool(b));
                pairs.extend(pt.iter().zip(&pb).map(|(&i, &j)| (i, j, y)));
            }
            let order = choose(&mut rng, pairs.len(), pairs.len());
            let x = s.features();
            let mut out = Array2::<f32>::zeros((pairs.len(), out_shape.len()));
            let mut y = Vec::with_capacity(pairs.len());
            for (r, &k) in order.iter().enumerate() {
                let (ti, bi, label) = pairs[k];
                for ch in 0..shape.channels {
                    for p in 0..plane {
                        out[[r, ch * 2 * plane + p]] = x[[ti, ch * plane + p]];
                        out[[r, ch * 2 * plane + plane + p]] = x[[bi, ch * plane + p]];
                    }
                }
                y.push(label);
            }
            if pairs.is_empty() {
                return Err(DataError::invalid(
                    base.name(),
                    format!("split `{}` has no images of the domino classes", s.name()),
                ));
            }
            let split = Split::new(s.name(), out, Targets::Classes { labels: y, num_classes: 2 })?;
            if s.name().starts_with("test") {
                let top: Vec<usize> =
                    (0..shape.channels).flat_map(|ch| (0..plane).map(move |p| ch * 2 * plane + p)).collect();
                let bottom: Vec<usize> = top.iter().map(|i| i + plane).collect();
                let t = randomise_columns(
                    &split,
                    &top,
                    &format!("{}-top-randomised", s.name()),
                    &root.child(&format!("{}-top", s.name())),
                )?;
                let b = randomise_columns(
                    &split,
                    &bottom,
                    &format!("{}-bottom-randomised", s.name()),
                    &root.child(&format!("{}-bottom", s.name())),
                )?;
                splits.push(split);
                splits.push(t);
                splits.push(b);
            } else {
                splits.push(split);
            }
        }
        Dataset::new(format!("dominoes({})", base.name()), Some(out_shape), splits)
    }
}
