//! Sliding windows over `[C, H, W]` examples (a `[C, L]` example is `[C, 1, L]`): the geometry
//! shared by convolutions and pooling layers, and the unfolding of an example into columns
//! (im2col) with its adjoint (col2im), which turn a convolution into matrix products.

use ndarray::{ArrayView2, ArrayViewMut2};
use sgdlab_linalg::Scalar;

/// A window's geometry on an input of fixed spatial size (PyTorch's `kernel_size`, `stride`,
/// `padding`, `dilation`; zero padding, `ceil_mode=False`). Output position `(oh, ow)` reads
/// input rows `oh * stride.0 - padding.0 + ki * dilation.0` for `ki < kernel.0` (columns alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    /// The input's `(height, width)`; `(1, length)` for one spatial dimension.
    pub input: (usize, usize),
}

fn out_len(n: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = n.checked_add(p.checked_mul(2)?)?;
    if s == 0 || padded < span {
        return None;
    }
    Some((padded - span) / s + 1)
}

impl Window {
    /// The output's `(height, width)`, or why the window does not fit the input.
    pub fn output(&self) -> Result<(usize, usize), String> {
        let (k, s, p, d, n) = (self.kernel, self.stride, self.padding, self.dilation, self.input);
        if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 {
            return Err("kernel size, stride and dilation must be positive".into());
        }
        match (out_len(n.0, k.0, s.0, p.0, d.0), out_len(n.1, k.1, s.1, p.1, d.1)) {
            (Some(h), Some(w)) => Ok((h, w)),
            _ => Err(format!(
                "a {}x{} window (dilation {}x{}, padding {}x{}) does not fit a {}x{} input",
                k.0, k.1, d.0, d.1, p.0, p.1, n.0, n.1
            )),
        }
    }

    /// Output positions per channel (`height * width` of the output).
    pub(crate) fn positions(&self) -> usize {
        let (h, w) = self.output().expect("validated when the layer was built");
        h * w
    }

    /// Input positions per channel.
    pub(crate) fn input_positions(&self) -> usize {
        self.input.0 * self.input.1
    }

    /// Kernel taps per channel.
    pub(crate) fn taps(&self) -> usize {
        self.kernel.0 * self.kernel.1
    }

    /// For tap `k` along one axis: the output range whose input index is inside the input, and
    /// the input index of output 0 (possibly negative).
    fn valid(n_in: usize, n_out: usize, s: usize, p: usize, d: usize, k: usize) -> (usize, usize, isize) {
        let start = (k * d) as isize - p as isize;
        // Output o reads start + o * s; valid when 0 <= start + o s < n_in.
        let lo = if start >= 0 { 0 } else { ((-start) as usize).div_ceil(s) };
        let hi = if start >= n_in as isize { 0 } else { ((n_in as isize - start - 1) as usize / s + 1).min(n_out) };
        (lo.min(hi), hi, start)
    }

    /// Unfolds the examples `xs` (`[n, channels * H * W]`, each row one example), appending to
    /// `cols` their `[channels * taps, n * positions]` row-major unfolding: row `(c, ki, kj)`
    /// holds, example after example, the input value each output position reads through that
    /// tap, 0 in the padding. (The appended block is zeroed in one go, then only the values
    /// inside the input are copied: a few long writes instead of many short ones.)
    pub(crate) fn im2col<T: Scalar>(&self, channels: usize, xs: ArrayView2<'_, T>, cols: &mut Vec<T>) {
        let (oh_n, ow_n) = self.output().expect("validated when the layer was built");
        let (h_n, w_n) = self.input;
        let xs = xs.as_standard_layout();
        let p = oh_n * ow_n;
        let start = cols.len();
        cols.resize(start + channels * self.taps() * xs.nrows() * p, T::zero());
        let mut blocks = cols[start..].chunks_exact_mut(p);
        for c in 0..channels {
            for ki in 0..self.kernel.0 {
                let (h_lo, h_hi, h0) = Self::valid(h_n, oh_n, self.stride.0, self.padding.0, self.dilation.0, ki);
                for kj in 0..self.kernel.1 {
                    let (w_lo, w_hi, w0) = Self::valid(w_n, ow_n, self.stride.1, self.padding.1, self.dilation.1, kj);
                    let first = (w0 + (w_lo * self.stride.1) as isize) as usize;
                    for x in xs.rows() {
                        let block = blocks.next().expect("sized above");
                        let x = x.to_slice().expect("standard layout");
                        let xc = &x[c * h_n * w_n..(c + 1) * h_n * w_n];
                        for oh in h_lo..h_hi {
                            let ih = (h0 + (oh * self.stride.0) as isize) as usize;
                            let src = &xc[ih * w_n..(ih + 1) * w_n];
                            let dst = &mut block[oh * ow_n + w_lo..oh * ow_n + w_hi];
                            if self.stride.1 == 1 {
                                dst.copy_from_slice(&src[first..first + (w_hi - w_lo)]);
                            } else {
                                for (o, d) in dst.iter_mut().enumerate() {
                                    *d = src[first + o * self.stride.1];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// True when some output position's window holds no input value (only padding).
    pub(crate) fn has_empty_window(&self) -> bool {
        let t = self.tap_table();
        (0..t.positions()).any(|o| t.taps(o).is_empty())
    }

    /// True when every window lies inside the input and reads consecutive values (no padding,
    /// no dilation): position `(oh, ow)` reads rows `oh * stride.0 + ki`, columns
    /// `ow * stride.1 + kj`.
    pub(crate) fn is_dense(&self) -> bool {
        self.padding == (0, 0) && self.dilation == (1, 1)
    }

    /// The adjoint of [`Window::im2col`]: adds every entry of `cols` (`[channels * taps, n *
    /// positions]`) into the input value it was read from, in `gx` (`[n, channels * H * W]`,
    /// added into, not overwritten).
    pub(crate) fn col2im_add<T: Scalar>(&self, channels: usize, cols: ArrayView2<'_, T>, mut gx: ArrayViewMut2<'_, T>) {
        let (oh_n, ow_n) = self.output().expect("validated when the layer was built");
        let (h_n, w_n) = self.input;
        let p = oh_n * ow_n;
        let mut row = 0;
        for c in 0..channels {
            for ki in 0..self.kernel.0 {
                let (h_lo, h_hi, h0) = Self::valid(h_n, oh_n, self.stride.0, self.padding.0, self.dilation.0, ki);
                for kj in 0..self.kernel.1 {
                    let (w_lo, w_hi, w0) = Self::valid(w_n, ow_n, self.stride.1, self.padding.1, self.dilation.1, kj);
                    let first = (w0 + (w_lo * self.stride.1) as isize) as usize;
                    let cr = cols.row(row);
                    let cr = cr.to_slice().expect("rows of an unfolding are contiguous");
                    row += 1;
                    for (j, mut g) in gx.rows_mut().into_iter().enumerate() {
                        let g = g.as_slice_mut().expect("rows of a fresh array are contiguous");
                        let gc = &mut g[c * h_n * w_n..(c + 1) * h_n * w_n];
                        let src = &cr[j * p..(j + 1) * p];
                        for oh in h_lo..h_hi {
                            let ih = (h0 + (oh * self.stride.0) as isize) as usize;
                            let dst = &mut gc[ih * w_n..(ih + 1) * w_n];
                            let seg = &src[oh * ow_n..(oh + 1) * ow_n];
                            if self.stride.1 == 1 {
                                for (d, &v) in dst[first..first + (w_hi - w_lo)].iter_mut().zip(&seg[w_lo..w_hi]) {
                                    *d += v;
                                }
                            } else {
                                for (o, &v) in seg[w_lo..w_hi].iter().enumerate() {
                                    dst[first + o * self.stride.1] += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The input values (inside the input) of every output position's window, in PyTorch's scan
    /// order (rows, then columns): position `o` reads `index[start[o]..start[o + 1]]` (indices
    /// within one channel).
    pub(crate) fn tap_table(&self) -> TapTable {
        let mut start = vec![0u32];
        let mut index = Vec::with_capacity(self.positions() * self.taps());
        let mut last = 0;
        self.for_each_tap(|o, k| {
            while last < o {
                start.push(index.len() as u32);
                last += 1;
            }
            index.push(k as u32);
        });
        while start.len() <= self.positions() {
            start.push(index.len() as u32);
        }
        TapTable { start, index }
    }

    /// Calls `f(position, input index)` for every input value (inside the input) of the window at
    /// each output position of one channel, in PyTorch's scan order (rows, then columns).
    pub(crate) fn for_each_tap(&self, mut f: impl FnMut(usize, usize)) {
        let (oh_n, ow_n) = self.output().expect("validated when the layer was built");
        let (h_n, w_n) = (self.input.0 as isize, self.input.1 as isize);
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let o = oh * ow_n + ow;
                for ki in 0..self.kernel.0 {
                    let ih = (oh * self.stride.0 + ki * self.dilation.0) as isize - self.padding.0 as isize;
                    if ih < 0 || ih >= h_n {
                        continue;
                    }
                    for kj in 0..self.kernel.1 {
                        let iw = (ow * self.stride.1 + kj * self.dilation.1) as isize - self.padding.1 as isize;
                        if iw < 0 || iw >= w_n {
                            continue;
                        }
                        f(o, (ih * w_n + iw) as usize);
                    }
                }
            }
        }
    }
}

/// The windows of a [`Window`] as lists of input indices (compressed rows).
pub(crate) struct TapTable {
    start: Vec<u32>,
    index: Vec<u32>,
}

impl TapTable {
    /// The input indices of output position `o`'s window.
    #[inline]
    pub(crate) fn taps(&self, o: usize) -> &[u32] {
        &self.index[self.start[o] as usize..self.start[o + 1] as usize]
    }

    /// Number of output positions.
    pub(crate) fn positions(&self) -> usize {
        self.start.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col against the definition, and col2im as its adjoint (<cols(x), c> = <x, col2im(c)>),
    /// on awkward geometries (stride, padding, dilation, one spatial dimension).
    #[test]
    fn im2col_matches_the_definition_and_col2im_is_its_adjoint() {
        let geoms = [
            Window { kernel: (3, 3), stride: (1, 1), padding: (1, 1), dilation: (1, 1), input: (5, 6) },
            Window { kernel: (2, 3), stride: (2, 1), padding: (0, 2), dilation: (2, 1), input: (7, 5) },
            Window { kernel: (1, 3), stride: (1, 2), padding: (0, 1), dilation: (1, 2), input: (1, 9) },
            Window { kernel: (5, 5), stride: (3, 3), padding: (2, 2), dilation: (1, 1), input: (4, 4) },
        ];
        for g in geoms {
            let (oh, ow) = g.output().unwrap();
            let (c, n) = (2, 3);
            let len = c * g.input.0 * g.input.1;
            let p = oh * ow;
            let x = ndarray::Array2::from_shape_fn((n, len), |(e, i)| ((e * len + i) as f64 * 0.37).sin());
            let k = c * g.taps();
            let mut cols = Vec::new();
            g.im2col(c, x.view(), &mut cols);
            assert_eq!(cols.len(), k * n * p);
            for e in 0..n {
                for ch in 0..c {
                    for ki in 0..g.kernel.0 {
                        for kj in 0..g.kernel.1 {
                            let row = (ch * g.kernel.0 + ki) * g.kernel.1 + kj;
                            for a in 0..oh {
                                for b in 0..ow {
                                    let ih = (a * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
                                    let iw = (b * g.stride.1 + kj * g.dilation.1) as isize - g.padding.1 as isize;
                                    let inside =
                                        ih >= 0 && iw >= 0 && ih < g.input.0 as isize && iw < g.input.1 as isize;
                                    let want = if inside {
                                        x[(e, ch * g.input.0 * g.input.1 + ih as usize * g.input.1 + iw as usize)]
                                    } else {
                                        0.0
                                    };
                                    let got = cols[row * n * p + e * p + a * ow + b];
                                    assert_eq!(got, want, "{g:?} example {e} row {row} at ({a}, {b})");
                                }
                            }
                        }
                    }
                }
            }
            let cvec = ndarray::Array2::from_shape_fn((k, n * p), |(r, j)| ((r * n * p + j) as f64 * 0.11).cos());
            let mut back = ndarray::Array2::zeros((n, len));
            g.col2im_add(c, cvec.view(), back.view_mut());
            let lhs: f64 = cols.iter().zip(cvec.iter()).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(back.iter()).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()), "{g:?}: {lhs} vs {rhs}");
        }
        let bad = Window { kernel: (5, 5), stride: (1, 1), padding: (0, 0), dilation: (1, 1), input: (3, 8) };
        assert!(bad.output().unwrap_err().contains("does not fit a 3x8 input"));
    }
}
