//! Truncated, corrupted and wrong files: each is a one-line error naming the file and the byte
//! offset, never a panic. Files are written to a temporary directory.

mod common;

use common::shared_data;
use flate2::write::GzEncoder;
use ndarray::{Array1, Array2};
use sgdlab_data::loaders::{
    load_cifar10_dir, read_cifar10_batch, read_idx_images, read_idx_labels, read_npy_features, read_npy_targets,
};
use sgdlab_data::{DataError, ImageShape, load_dataset};
use std::io::Write;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        b.extend(d.to_be_bytes());
    }
    b.extend((0..n * rows * cols).map(|i| (i % 256) as u8));
    b
}

/// The error as text, checked to be one line naming the file and (if given) the byte offset.
fn check(e: DataError, file: &Path, offset: Option<u64>, needle: &str) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "not one line: {s}");
    assert!(s.contains(&file.display().to_string()), "does not name {}: {s}", file.display());
    if let Some(o) = offset {
        assert!(s.contains(&format!("byte {o}:")), "does not name byte {o}: {s}");
        assert!(matches!(e, DataError::Format { offset, .. } if offset == o), "{e:?}");
    }
    assert!(s.contains(needle), "does not say `{needle}`: {s}");
    s
}

#[test]
fn idx_truncated_wrong_magic_bad_label_trailing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let good = idx_labels(&[0, 1, 2, 3, 4, 5]);
    let p = write(dir.path(), "labels", &good);
    assert_eq!(read_idx_labels(&p, 10).unwrap(), vec![0, 1, 2, 3, 4, 5]);
    // Truncated payload: the file ends at byte 12 of the declared 14.
    let p = write(dir.path(), "short", &good[..12]);
    check(read_idx_labels(&p, 10).unwrap_err(), &p, Some(12), "truncated");
    // Truncated header.
    let p = write(dir.path(), "tiny", &good[..6]);
    check(read_idx_labels(&p, 10).unwrap_err(), &p, Some(6), "dimension sizes");
    let p = write(dir.path(), "empty", &[]);
    check(read_idx_labels(&p, 10).unwrap_err(), &p, Some(0), "magic number");
    // An image file read as labels, and a non-IDX file.
    let p = write(dir.path(), "images-as-labels", &idx_images(2, 2, 2));
    check(read_idx_labels(&p, 10).unwrap_err(), &p, Some(0), "bad IDX magic number 0x00000803");
    let p = write(dir.path(), "text", b"hello world, not idx");
    check(read_idx_images(&p).unwrap_err(), &p, Some(0), "bad IDX magic number 0x68656c6c");
    // A label out of range at example 3 = byte 8 + 3.
    let p = write(dir.path(), "badlabel", &idx_labels(&[0, 1, 2, 12, 4]));
    check(read_idx_labels(&p, 10).unwrap_err(), &p, Some(11), "label 12 of example 3");
    // Trailing bytes.
    let mut long = good.clone();
    long.extend([9, 9]);
    let p = write(dir.path(), "long", &long);
    check(read_idx_labels(&p, 10).unwrap_err(), &p, Some(14), "2 unexpected bytes");
    // The same checks through gzip name the offset in the decompressed data.
    let p = write(dir.path(), "short.gz", &gz(&good[..12]));
    check(read_idx_labels(&p, 10).unwrap_err(), &p, Some(12), "decompressed");
}

#[test]
fn truncated_and_corrupted_gzip_of_the_real_mnist_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(shared_data().join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let half = real.len() / 2;
    let p = write(dir.path(), "t10k-labels-half.gz", &real[..half]);
    let s = check(read_idx_labels(&p, 10).unwrap_err(), &p, Some(half as u64), "gzip stream is truncated or corrupt");
    assert!(s.contains("compressed file"), "{s}");
    let mut bad = real.clone();
    for b in &mut bad[100..140] {
        *b ^= 0x5a;
    }
    let p = write(dir.path(), "t10k-labels-flipped.gz", &bad);
    assert!(read_idx_labels(&p, 10).is_err());
}

#[test]
fn truncation_anywhere_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let labels = idx_labels(&[1, 2, 3, 4, 5, 6, 7]);
    let images = idx_images(3, 4, 5);
    let npy_path = dir.path().join("x.npy");
    ndarray_npy::write_npy(&npy_path, &Array2::<f32>::ones((3, 4))).unwrap();
    let npy = std::fs::read(&npy_path).unwrap();
    let cifar: Vec<u8> = (0..2 * 3073).map(|i| if i % 3073 == 0 { 3 } else { 7 }).collect();
    for cut in 0..npy.len() {
        let p = write(dir.path(), "cut.npy", &npy[..cut]);
        check(read_npy_features(&p).unwrap_err(), &p, None, "");
    }
    for cut in 0..labels.len() {
        let p = write(dir.path(), "cut-labels", &labels[..cut]);
        check(read_idx_labels(&p, 10).unwrap_err(), &p, None, "");
        let p = write(dir.path(), "cut-labels.gz", &gz(&labels[..cut]));
        check(read_idx_labels(&p, 10).unwrap_err(), &p, None, "");
    }
    for cut in 0..images.len() {
        let p = write(dir.path(), "cut-images", &images[..cut]);
        check(read_idx_images(&p).unwrap_err(), &p, None, "");
    }
    for cut in (0..cifar.len()).step_by(97).filter(|c| c % 3073 != 0) {
        let p = write(dir.path(), "cut.bin", &cifar[..cut]);
        check(read_cifar10_batch(&p).unwrap_err(), &p, Some(cut as u64), "truncated");
    }
}

#[test]
fn npy_wrong_magic_truncated_dtype_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    ndarray_npy::write_npy(&x, &Array2::<f64>::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f64)).unwrap();
    let (f, img) = read_npy_features(&x).unwrap();
    assert_eq!((f.dim(), f[[4, 2]], img), ((5, 3), 14.0, None));
    let bytes = std::fs::read(&x).unwrap();
    let header = bytes.len() - 5 * 3 * 8;
    // Truncated data: the error names where the file ends and where the data should.
    let p = write(dir.path(), "short.npy", &bytes[..bytes.len() - 3]);
    check(
        read_npy_features(&p).unwrap_err(),
        &p,
        Some((bytes.len() - 3) as u64),
        &format!("ends at byte {}", bytes.len()),
    );
    // Truncated header.
    let p = write(dir.path(), "header.npy", &bytes[..20]);
    check(read_npy_features(&p).unwrap_err(), &p, Some(20), "inside the .npy header");
    // Wrong magic.
    let mut wrong = bytes.clone();
    wrong[1] = b'X';
    let p = write(dir.path(), "magic.npy", &wrong);
    check(read_npy_features(&p).unwrap_err(), &p, Some(0), "not a .npy file");
    // Trailing bytes.
    let mut long = bytes.clone();
    long.push(0);
    let p = write(dir.path(), "long.npy", &long);
    check(read_npy_features(&p).unwrap_err(), &p, Some(bytes.len() as u64), "1 unexpected bytes");
    // Unsupported dtype.
    let p = dir.path().join("i16.npy");
    ndarray_npy::write_npy(&p, &Array1::<i16>::zeros(4)).unwrap();
    check(read_npy_targets(&p, None).unwrap_err(), &p, Some(10), "dtype '<i2' is not supported");
    // A negative i64 label at example 2: byte header + 2 * 8.
    let p = dir.path().join("y.npy");
    ndarray_npy::write_npy(&p, &Array1::<i64>::from(vec![0, 1, -1, 2, 0])).unwrap();
    let yb = std::fs::read(&p).unwrap();
    let yheader = yb.len() - 5 * 8;
    check(read_npy_targets(&p, None).unwrap_err(), &p, Some((yheader + 16) as u64), "label -1 of example 2");
    // A NaN feature names its byte.
    let p = dir.path().join("nan.npy");
    ndarray_npy::write_npy(&p, &Array2::<f32>::from_shape_vec((2, 2), vec![0.0, 1.0, f32::NAN, 0.0]).unwrap()).unwrap();
    let nb = std::fs::read(&p).unwrap().len();
    check(read_npy_features(&p).unwrap_err(), &p, Some((nb - 16 + 8) as u64), "feature 0 of example 1 is NaN");
    // Mismatched lengths of a pair.
    let p = dir.path().join("y4.npy");
    ndarray_npy::write_npy(&p, &Array1::<u8>::from(vec![0, 1, 1, 0])).unwrap();
    let e = load_dataset(&format!("npy:{},{}", x.display(), p.display())).unwrap_err();
    check(e, &p, None, "has 4 targets but");
    let _ = header;
}

#[test]
fn idx_pair_mismatch_and_four_file_spec() {
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "img.gz", &gz(&idx_images(3, 2, 2)));
    let lab = write(dir.path(), "lab", &idx_labels(&[1, 2, 3]));
    let lab2 = write(dir.path(), "lab2", &idx_labels(&[1, 2]));
    let d = load_dataset(&format!("idx:{0},{1},{0},{1}", img.display(), lab.display())).unwrap();
    assert_eq!(d.split_names(), vec!["train", "test"]);
    assert_eq!(d.image_shape(), Some(ImageShape { channels: 1, height: 2, width: 2 }));
    assert_eq!(d.train().unwrap().features()[[1, 0]], 4.0 / 255.0);
    let e = load_dataset(&format!("idx:{},{}", img.display(), lab2.display())).unwrap_err();
    check(e, &lab2, None, "has 2 labels but");
    // A missing file is an I/O error naming it.
    let missing = dir.path().join("missing.gz");
    let e = load_dataset(&format!("idx:{},{}", missing.display(), lab.display())).unwrap_err();
    check(e, &missing, None, "cannot read");
    // Fashion-MNIST-style class count check: labels >= classes are rejected.
    let e = load_dataset(&format!("idx:{},{},classes=3", img.display(), lab.display())).unwrap_err();
    check(e, &lab, Some(10), "label 3 of example 2");
}

#[test]
fn cifar10_records_layout_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Two records: labels 3 and 9; pixel (c, r, q) of record k = (k + c * 7 + r + q) mod 256.
    let record = |k: usize, label: u8| {
        let mut b = vec![label];
        for c in 0..3 {
            for r in 0..32 {
                for q in 0..32 {
                    b.push(((k + c * 7 + r + q) % 256) as u8);
                }
            }
        }
        b
    };
    let batch: Vec<u8> = [record(0, 3), record(1, 9)].concat();
    write(dir.path(), "data_batch_1.bin", &batch);
    write(dir.path(), "test_batch.bin", &record(5, 0));
    let d = load_dataset(&format!("cifar10:{},batches=1", dir.path().display())).unwrap();
    assert_eq!(d.image_shape(), Some(ImageShape { channels: 3, height: 32, width: 32 }));
    let tr = d.train().unwrap();
    assert_eq!((tr.len(), tr.dim(), tr.labels().unwrap()), (2, 3072, &[3, 9][..]));
    // Channel 2, row 4, column 5 of record 1: (1 + 14 + 4 + 5) / 255.
    assert_eq!(tr.features()[[1, 2 * 1024 + 4 * 32 + 5]], 24.0 / 255.0);
    assert_eq!(d.test().unwrap().len(), 1);
    // A missing batch names its file; a label >= 10 names its record's byte.
    let e = load_cifar10_dir("c", dir.path(), &[1, 2]).unwrap_err();
    check(e, &dir.path().join("data_batch_2.bin"), None, "cannot read");
    let bad: Vec<u8> = [record(0, 3), record(1, 10)].concat();
    let p = write(dir.path(), "bad.bin", &bad);
    check(read_cifar10_batch(&p).unwrap_err(), &p, Some(3073), "label 10 of record 1");
}
