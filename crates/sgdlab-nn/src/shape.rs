//! The shape of one example's activation: `[features]`, `[channels, length]` or
//! `[channels, height, width]` (PyTorch's layouts without the batch dimension).
//!
//! A batch of activations is always stored as a row-major `[batch, len]` array whose row `i` is
//! example `i` flattened in PyTorch's order (`x.reshape(n, -1)` of an `[n, C, H, W]` tensor), so
//! a shape only says how a layer reads a row: feature `c * H * W + r * W + col` is pixel
//! `(c, r, col)`. A `Flatten` therefore moves no data.

use std::fmt;
use std::str::FromStr;

/// The per-example shape of an activation (without the batch dimension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    rank: usize,
    dims: [usize; 3],
}

impl Shape {
    /// `[features]`.
    pub fn flat(features: usize) -> Self {
        Shape { rank: 1, dims: [features, 1, 1] }
    }

    /// `[channels, length]` (the input of a `Conv1d`).
    pub fn seq(channels: usize, len: usize) -> Self {
        Shape { rank: 2, dims: [channels, len, 1] }
    }

    /// `[channels, height, width]` (the input of a `Conv2d`).
    pub fn image(channels: usize, height: usize, width: usize) -> Self {
        Shape { rank: 3, dims: [channels, height, width] }
    }

    /// A shape from its dimensions (1 to 3 of them).
    pub fn from_dims(dims: &[usize]) -> Option<Self> {
        match *dims {
            [d] => Some(Shape::flat(d)),
            [c, l] => Some(Shape::seq(c, l)),
            [c, h, w] => Some(Shape::image(c, h, w)),
            _ => None,
        }
    }

    /// Number of dimensions (1, 2 or 3).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The dimensions, e.g. `[1, 28, 28]`.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    /// Number of values per example (the product of the dimensions), `None` on overflow.
    pub fn checked_len(&self) -> Option<usize> {
        self.dims().iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Number of values per example (the row length of a batch).
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// True when an example has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels (the first dimension; the features of a flat shape).
    pub fn channels(&self) -> usize {
        self.dims[0]
    }

    /// `(height, width)` of the spatial part: `(1, length)` for `[C, L]`, `(1, 1)` for a flat shape.
    pub fn spatial(&self) -> (usize, usize) {
        match self.rank {
            1 => (1, 1),
            2 => (1, self.dims[1]),
            _ => (self.dims[1], self.dims[2]),
        }
    }
}

impl fmt::Display for Shape {
    /// `784`, `1x40`, `1x28x28`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.dims().iter().map(usize::to_string).collect();
        f.write_str(&parts.join("x"))
    }
}

impl FromStr for Shape {
    type Err = String;

    /// `C,H,W`, `CxHxW`, `C,L`, `CxL` or `D`, every dimension positive.
    fn from_str(s: &str) -> Result<Self, String> {
        let sep = if s.contains(',') { ',' } else { 'x' };
        let dims: Vec<usize> = s
            .split(sep)
            .map(|d| {
                let d = d.trim();
                match d.parse::<usize>() {
                    Ok(v) if v > 0 => Ok(v),
                    _ => {
                        Err(format!("shape '{s}': '{d}' is not a positive integer (expected e.g. 1,28,28 or 1x28x28)"))
                    }
                }
            })
            .collect::<Result<_, _>>()?;
        let shape = Shape::from_dims(&dims)
            .ok_or_else(|| format!("shape '{s}' has {} dimensions; expected 1 to 3 (D, C,L or C,H,W)", dims.len()))?;
        if shape.checked_len().is_none() {
            return Err(format!("shape '{s}' has more values than fit in memory"));
        }
        Ok(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!("1,28,28".parse::<Shape>().unwrap(), Shape::image(1, 28, 28));
        assert_eq!("3x32x32".parse::<Shape>().unwrap().to_string(), "3x32x32");
        assert_eq!("1x40".parse::<Shape>().unwrap(), Shape::seq(1, 40));
        assert_eq!("784".parse::<Shape>().unwrap(), Shape::flat(784));
        assert_eq!(Shape::image(3, 4, 5).len(), 60);
        assert_eq!(Shape::seq(2, 7).spatial(), (1, 7));
        for (bad, msg) in [("1,0,3", "'0' is not a positive"), ("1x2x3x4", "4 dimensions"), ("a", "'a'")] {
            let e = bad.parse::<Shape>().unwrap_err();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }
}
