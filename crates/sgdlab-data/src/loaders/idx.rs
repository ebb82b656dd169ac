//! IDX files (LeCun's MNIST format; also Fashion-MNIST and KMNIST), gzipped or not.
//!
//! Layout: a big-endian u32 magic number `0x0000TTNN` (`TT` = 0x08 for unsigned bytes, `NN` = the
//! number of dimensions: 3 for images, 1 for labels), then `NN` big-endian u32 dimension sizes,
//! then the data in row-major order.

use super::{read_maybe_gzip, where_};
use crate::{DataError, ImageShape, Split, Targets};
use ndarray::Array2;
use sgdlab_linalg::memory::Estimate;
use std::path::Path;

struct Idx {
    dims: Vec<usize>,
    header_len: usize,
    bytes: Vec<u8>,
    gz: bool,
}

fn parse_idx(path: &Path, want_ndim: u8, what: &str) -> Result<Idx, DataError> {
    let (bytes, gz) = read_maybe_gzip(path)?;
    let w = where_(gz);
    let expected_magic = 0x0800 | u32::from(want_ndim);
    if bytes.len() < 4 {
        return Err(DataError::format(
            path,
            bytes.len() as u64,
            format!("file ends inside the 4-byte IDX magic number{w}"),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] != want_ndim {
        return Err(DataError::format(
            path,
            0,
            format!("bad IDX magic number 0x{magic:08x}: an {what} file starts with 0x{expected_magic:08x}{w}"),
        ));
    }
    let header_len = 4 + 4 * usize::from(want_ndim);
    if bytes.len() < header_len {
        return Err(DataError::format(
            path,
            bytes.len() as u64,
            format!("file ends inside the IDX dimension sizes (the header has {header_len} bytes){w}"),
        ));
    }
    let mut dims = Vec::with_capacity(usize::from(want_ndim));
    for k in 0..usize::from(want_ndim) {
        let o = 4 + 4 * k;
        let d = u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        if d == 0 {
            return Err(DataError::format(path, o as u64, format!("IDX dimension {k} is 0{w}")));
        }
        dims.push(d);
    }
    let payload = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(payload) = payload else {
        return Err(DataError::format(path, 4, format!("IDX dimensions {dims:?} overflow{w}")));
    };
    let end = header_len + payload;
    let shape = dims.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
    if bytes.len() < end {
        return Err(DataError::format(
            path,
            bytes.len() as u64,
            format!(
                "truncated: the header declares dimensions {shape} ({payload} data bytes, ending at byte {end}), but the file ends here{w}"
            ),
        ));
    }
    if bytes.len() > end {
        return Err(DataError::format(
            path,
            end as u64,
            format!("{} unexpected bytes after the {shape} data{w}", bytes.len() - end),
        ));
    }
    Ok(Idx { dims, header_len, bytes, gz })
}

/// Images of an IDX file with magic `0x00000803` (n x rows x cols unsigned bytes), as `[n,
/// rows*cols]` features scaled to `[0, 1]` (pixel / 255) and the image shape `1 x rows x cols`.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<(Array2<f32>, ImageShape), DataError> {
    let path = path.as_ref();
    let idx = parse_idx(path, 3, "image")?;
    let (n, rows, cols) = (idx.dims[0], idx.dims[1], idx.dims[2]);
    Estimate::new(format!("{}: {n} images of {rows}x{cols} as f32", path.display())).array(&idx.dims, 4).check()?;
    let data: Vec<f32> = idx.bytes[idx.header_len..].iter().map(|&b| f32::from(b) / 255.0).collect();
    let x = Array2::from_shape_vec((n, rows * cols), data).map_err(|e| DataError::file(path, e.to_string()))?;
    Ok((x, ImageShape { channels: 1, height: rows, width: cols }))
}

/// Labels of an IDX file with magic `0x00000801`; each must be `< num_classes` (the error names
/// the byte offset of the first that is not).
pub fn read_idx_labels(path: impl AsRef<Path>, num_classes: usize) -> Result<Vec<u32>, DataError> {
    let path = path.as_ref();
    let idx = parse_idx(path, 1, "label")?;
    let labels = &idx.bytes[idx.header_len..];
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| usize::from(**l) >= num_classes) {
        return Err(DataError::format(
            path,
            (idx.header_len + i) as u64,
            format!("label {l} of example {i} is not below the class count {num_classes}{}", where_(idx.gz)),
        ));
    }
    Ok(labels.iter().map(|&l| u32::from(l)).collect())
}

/// An IDX image file and its label file as one split; errors if their counts differ.
pub fn load_idx_pair(
    name: &str,
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    num_classes: usize,
) -> Result<(Split, ImageShape), DataError> {
    let (x, shape) = read_idx_images(images.as_ref())?;
    let y = read_idx_labels(labels.as_ref(), num_classes)?;
    if y.len() != x.nrows() {
        return Err(DataError::file(
            labels.as_ref(),
            format!("has {} labels but {} has {} images", y.len(), images.as_ref().display(), x.nrows()),
        ));
    }
    Ok((Split::new(name, x, Targets::Classes { labels: y, num_classes })?, shape))
}
