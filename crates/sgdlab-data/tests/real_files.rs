//! Loaders on the real files in shared/data (read in place).

mod common;

use common::shared_data;
use sgdlab_data::loaders::{read_idx_images, read_idx_labels, read_npy_features, read_npy_targets};
use sgdlab_data::{ImageShape, Targets, dataset_info, load_dataset};

fn mnist_spec(rest: &str) -> String {
    let d = shared_data().join("mnist");
    format!("idx:{0}/t10k-images-idx3-ubyte.gz,{0}/t10k-labels-idx1-ubyte.gz{rest}", d.display())
}

#[test]
fn mnist_test_set_labels_and_images() {
    let labels = read_idx_labels(shared_data().join("mnist/t10k-labels-idx1-ubyte.gz"), 10).unwrap();
    assert_eq!(labels.len(), 10_000);
    assert_eq!(labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let d = load_dataset(&mnist_spec("")).unwrap();
    let all = d.split("all").unwrap();
    assert_eq!(d.image_shape(), Some(ImageShape { channels: 1, height: 28, width: 28 }));
    assert_eq!((all.len(), all.dim()), (10_000, 784));
    assert_eq!(all.labels().unwrap()[0], 7);
    assert_eq!(all.targets().class_counts().unwrap(), vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    // Pixel mean 33.79 / 255 (README); values in [0, 1] with both ends reached.
    let x = all.features();
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
    assert!((mean * 255.0 - 33.79).abs() < 0.01, "pixel mean {}", mean * 255.0);
    assert_eq!(x.iter().cloned().fold(f32::INFINITY, f32::min), 0.0);
    assert_eq!(x.iter().cloned().fold(f32::NEG_INFINITY, f32::max), 1.0);
    // The first image is a 7: ink in the top bar (row 7) and none in the corners.
    let img = x.row(0);
    assert!((6..22).any(|c| img[7 * 28 + c] > 0.5));
    assert_eq!(img[0] + img[27] + img[27 * 28], 0.0);
}

#[test]
fn mnist_training_labels() {
    let labels = read_idx_labels(shared_data().join("mnist/train-labels-idx1-ubyte.gz"), 10).unwrap();
    assert_eq!(labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let mut counts = [0usize; 10];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
}

#[test]
fn mnist_protocol_pipeline_split_pool_standardise() {
    let d = load_dataset(&mnist_spec("|split:test=2000,seed=1|pool2|standardise")).unwrap();
    let (tr, te) = (d.train().unwrap(), d.test().unwrap());
    assert_eq!((tr.len(), te.len(), d.dim()), (8000, 2000, 196));
    assert_eq!(d.image_shape(), Some(ImageShape { channels: 1, height: 14, width: 14 }));
    let total: Vec<usize> = tr
        .targets()
        .class_counts()
        .unwrap()
        .iter()
        .zip(te.targets().class_counts().unwrap())
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(total, vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    // Train features have mean 0 and sd 1 (or sd 0 for always-blank pixels) per feature.
    let info = dataset_info(&d);
    let p = info.splits["train"].per_feature.as_ref().unwrap();
    assert!(p.mean_min.abs() < 1e-4 && p.mean_max.abs() < 1e-4, "{p:?}");
    assert!((p.sd_max - 1.0).abs() < 1e-4, "{p:?}");
    // Pooling agrees with a direct 2x2 average of the raw image.
    let raw = load_dataset(&mnist_spec("")).unwrap();
    let pooled = raw.avg_pool_2x2().unwrap();
    let (x, y) = (raw.split("all").unwrap().features(), pooled.split("all").unwrap().features());
    let direct = (x[[0, 6 * 28 + 10]] + x[[0, 6 * 28 + 11]] + x[[0, 7 * 28 + 10]] + x[[0, 7 * 28 + 11]]) / 4.0;
    assert!(direct > 0.0, "pick an inked block");
    assert_eq!(y[[0, 3 * 14 + 5]], direct);
}

#[test]
fn mnist_even_odd_and_pairs() {
    let d = load_dataset(&mnist_spec("|binarise:even-odd")).unwrap();
    let all = d.split("all").unwrap();
    assert_eq!(all.len(), 10_000);
    // Odd digits 1, 3, 5, 7, 9: 1135 + 1010 + 892 + 1028 + 1009.
    assert_eq!(all.targets().class_counts().unwrap(), vec![10_000 - 5074, 5074]);
    let p = load_dataset(&mnist_spec("|binarise:neg=4,pos=9")).unwrap();
    assert_eq!(p.split("all").unwrap().targets().class_counts().unwrap(), vec![982, 1009]);
    let s = load_dataset(&mnist_spec("|subset:n=5000,split=all,seed=3")).unwrap();
    assert_eq!(s.split("all").unwrap().targets().class_counts().unwrap(), vec![500; 10]);
}

#[test]
fn sklearn_digits() {
    let dir = shared_data().join("sklearn_digits");
    let d = load_dataset(&format!("npy:{0}/x.npy,{0}/y.npy,image=1x8x8", dir.display())).unwrap();
    let all = d.split("all").unwrap();
    assert_eq!((all.len(), all.dim(), d.num_classes()), (1797, 64, Some(10)));
    assert_eq!(d.image_shape(), Some(ImageShape { channels: 1, height: 8, width: 8 }));
    assert_eq!(all.targets().class_counts().unwrap(), vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert_eq!(all.labels().unwrap()[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The u8 copy, read through the same loader, is 16 times the f32 one.
    let (raw, _) = read_npy_features(dir.join("x_raw_u8.npy")).unwrap();
    assert_eq!(raw.mapv(|v| v / 16.0), *all.features());
    assert!(matches!(read_npy_targets(dir.join("y.npy"), Some(10)).unwrap(), Targets::Classes { num_classes: 10, .. }));
    // Labels out of the stated class count are an error naming the file and byte.
    let e = read_npy_targets(dir.join("y.npy"), Some(5)).unwrap_err().to_string();
    assert!(e.contains("y.npy: byte ") && e.contains("label 5 of example 5 is not in 0..5"), "{e}");
}

#[test]
fn image_loader_shapes() {
    let (x, shape) = read_idx_images(shared_data().join("mnist/t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((x.nrows(), x.ncols(), shape.len()), (10_000, 784, 784));
}

#[test]
fn mnist_source_finds_the_test_set_in_a_data_directory() {
    // `mnist:DIR` reads the two files of DIR; it is the same data as the explicit idx spec.
    let dir = shared_data().join("mnist");
    let a = load_dataset(&format!("mnist:{}", dir.display())).unwrap();
    let b = load_dataset(&mnist_spec("")).unwrap();
    assert_eq!(a.split("all").unwrap().features(), b.split("all").unwrap().features());
    assert_eq!(a.image_shape(), Some(ImageShape { channels: 1, height: 28, width: 28 }));
    // A directory without the files is a one-line error naming the files and how to fix it.
    let empty = tempfile::tempdir().unwrap();
    let e = load_dataset(&format!("mnist:{}", empty.path().display())).unwrap_err().to_string();
    assert!(e.contains("t10k-images-idx3-ubyte.gz") && !e.contains('\n'), "{e}");
    assert!(sgdlab_data::DatasetSpec::parse("mnist:a,b").is_err());
    assert_eq!(sgdlab_data::DatasetSpec::parse("mnist|pool2").unwrap().to_string(), "mnist|pool2");
}
