//! CIFAR-10 binary batches (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`).
//!
//! Each file is a sequence of 3073-byte records: one label byte (0..9), then 3072 pixel bytes,
//! channel-major (1024 red, 1024 green, 1024 blue), each channel 32x32 row-major.

use super::{read_maybe_gzip, where_};
use crate::{DataError, Dataset, ImageShape, Split, Targets};
use ndarray::Array2;
use sgdlab_linalg::memory::Estimate;
use std::path::Path;

/// Bytes per record: 1 label + 3 x 32 x 32 pixels.
pub const CIFAR10_RECORD_BYTES: usize = 3073;
/// The image shape of CIFAR-10, `3 x 32 x 32`.
pub const CIFAR10_IMAGE: ImageShape = ImageShape { channels: 3, height: 32, width: 32 };

/// One binary batch: `[n, 3072]` features (pixel / 255, channel-major as in the file) and labels.
pub fn read_cifar10_batch(path: impl AsRef<Path>) -> Result<(Array2<f32>, Vec<u32>), DataError> {
    let path = path.as_ref();
    let (bytes, gz) = read_maybe_gzip(path)?;
    let w = where_(gz);
    if bytes.is_empty() {
        return Err(DataError::format(path, 0, format!("empty file: a CIFAR-10 batch holds 3073-byte records{w}")));
    }
    let n = bytes.len() / CIFAR10_RECORD_BYTES;
    let rest = bytes.len() % CIFAR10_RECORD_BYTES;
    if rest != 0 {
        return Err(DataError::format(
            path,
            bytes.len() as u64,
            format!(
                "truncated: record {n} (from byte {}) has {rest} of its {CIFAR10_RECORD_BYTES} bytes{w}",
                n * CIFAR10_RECORD_BYTES
            ),
        ));
    }
    Estimate::new(format!("{}: {n} CIFAR-10 images as f32", path.display()))
        .array(&[n, CIFAR10_RECORD_BYTES], 4)
        .check()?;
    let mut labels = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n * (CIFAR10_RECORD_BYTES - 1));
    for (i, rec) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
        if rec[0] >= 10 {
            return Err(DataError::format(
                path,
                (i * CIFAR10_RECORD_BYTES) as u64,
                format!("label {} of record {i} is not a CIFAR-10 class (0..9){w}", rec[0]),
            ));
        }
        labels.push(u32::from(rec[0]));
        data.extend(rec[1..].iter().map(|&b| f32::from(b) / 255.0));
    }
    let x = Array2::from_shape_vec((n, CIFAR10_RECORD_BYTES - 1), data)
        .map_err(|e| DataError::file(path, e.to_string()))?;
    Ok((x, labels))
}

/// A CIFAR-10 binary directory: split `train` from `data_batch_{k}.bin` for each `k` in
/// `train_batches` (in that order), split `test` from `test_batch.bin`. Every named file must exist.
pub fn load_cifar10_dir(name: &str, dir: impl AsRef<Path>, train_batches: &[u32]) -> Result<Dataset, DataError> {
    let dir = dir.as_ref();
    if train_batches.is_empty() {
        return Err(DataError::invalid(name, "no CIFAR-10 training batches named"));
    }
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for k in train_batches {
        let (x, y) = read_cifar10_batch(dir.join(format!("data_batch_{k}.bin")))?;
        xs.push(x);
        ys.extend(y);
    }
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let x = ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| DataError::invalid(name, e.to_string()))?;
    let train = Split::new("train", x, Targets::Classes { labels: ys, num_classes: 10 })?;
    let (xt, yt) = read_cifar10_batch(dir.join("test_batch.bin"))?;
    let test = Split::new("test", xt, Targets::Classes { labels: yt, num_classes: 10 })?;
    Dataset::new(name, Some(CIFAR10_IMAGE), vec![train, test])
}
