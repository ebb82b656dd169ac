//! Readers for the standard on-disk formats: IDX (MNIST, Fashion-MNIST, KMNIST), CIFAR-10 binary
//! batches and NumPy `.npy`. Every reader validates magic numbers, dimensions, lengths and label
//! ranges, and reports a bad file as one [`DataError`] naming the file and the byte offset.

mod cifar;
mod idx;
mod npy;

pub use cifar::{CIFAR10_IMAGE, CIFAR10_RECORD_BYTES, load_cifar10_dir, read_cifar10_batch};
pub use idx::{load_idx_pair, read_idx_images, read_idx_labels};
pub use npy::{load_npy_pair, read_npy_features, read_npy_targets};

use crate::DataError;
use std::io::Read;
use std::path::Path;

/// The bytes of a file, decompressed if it starts with the gzip magic bytes `1f 8b` (whatever its
/// name). Returns the bytes and whether they were decompressed.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<(Vec<u8>, bool), DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
        return Ok((raw, false));
    }
    struct Counting<'a> {
        inner: &'a [u8],
        consumed: usize,
    }
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.consumed += n;
            Ok(n)
        }
    }
    let mut counting = Counting { inner: &raw, consumed: 0 };
    let mut out = Vec::new();
    // A small gzip file can expand to any size: stop at the memory limit instead of aborting.
    let limit = sgdlab_linalg::memory::limit();
    let cap = limit.map_or(u64::MAX, |l| l.bytes);
    let result = flate2::read::GzDecoder::new(&mut counting).take(cap.saturating_add(1)).read_to_end(&mut out);
    if out.len() as u64 > cap {
        return Err(DataError::file(
            path,
            format!(
                "decompresses to more than {}, the memory {}",
                sgdlab_linalg::memory::format_bytes(u128::from(cap)),
                if limit.is_some_and(|l| l.source == sgdlab_linalg::memory::LimitSource::Override) {
                    "limit set by --max-memory"
                } else {
                    "available"
                }
            ),
        ));
    }
    match result {
        Ok(_) => Ok((out, true)),
        Err(e) => Err(DataError::format(
            path,
            counting.consumed as u64,
            format!(
                "gzip stream is truncated or corrupt after {} decompressed bytes ({e}); the offset is in the compressed file",
                out.len()
            ),
        )),
    }
}

/// "" or " of the decompressed data", for offsets in messages.
pub(crate) fn where_(gz: bool) -> &'static str {
    if gz { " (offset in the decompressed data)" } else { "" }
}
