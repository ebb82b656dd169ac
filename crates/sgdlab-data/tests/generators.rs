//! Generators: the properties their papers and the protocols state.

mod common;

use common::shared_data;
use ndarray::{Array2, Axis};
use sgdlab_data::{
    BatchPlan, BooleanCubeSpec, BooleanTarget, CloneKind, GaussianCloneSpec, GaussianMixtureSpec, LmsSpec,
    MatrixCompletionSpec, Split, TeacherSpec, TeacherTargets, dataset_info, gaussian_clone, lms_slab_index,
    load_dataset,
};
use sgdlab_linalg::RngStream;

/// Slab membership from the protocol's numbers (PROTOCOLS 5), independent of the generator:
/// `Some(true)` positive slab, `Some(false)` negative slab, `None` in a gap.
fn protocol_slab_label(x: f64, k: usize, m: f64) -> Option<bool> {
    let a = x.abs();
    let s = (2.0 - 2.0 * (k as f64 - 1.0) * m) / k as f64;
    let inside = |lo: f64| a >= lo && a <= lo + s;
    match k {
        5 => {
            // Positives ±[(1 + 6m)/5, +s]; negatives centre [-s/2, s/2] or ±[(3 + 8m)/5, +s].
            if inside((1.0 + 6.0 * m) / 5.0) {
                Some(true)
            } else if a <= s / 2.0 || inside((3.0 + 8.0 * m) / 5.0) {
                Some(false)
            } else {
                None
            }
        }
        7 => {
            if inside(s / 2.0 + 2.0 * m) || inside(2.5 * s + 6.0 * m) {
                Some(true)
            } else if a <= s / 2.0 || inside(1.5 * s + 4.0 * m) {
                Some(false)
            } else {
                None
            }
        }
        _ => unreachable!(),
    }
}

fn unrotated(spec: &LmsSpec) -> sgdlab_data::LmsData {
    LmsSpec { rotate: false, ..spec.clone() }.generate().unwrap()
}

#[test]
fn lms5_linear_margin_and_every_slab_fully_predictive() {
    let spec = LmsSpec { n_train: 4000, n_test: 2000, ..LmsSpec::default() };
    let data = unrotated(&spec);
    let tr = data.dataset.train().unwrap();
    let (x, y) = (tr.features(), tr.labels().unwrap());
    // Linear coordinate: y = 1 iff x_0 > 0, with |x_0| >= margin 0.1 (and the gap is attained).
    let (mut min_pos, mut max_neg) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..tr.len() {
        let v = f64::from(x[[i, 0]]);
        if y[i] == 1 { min_pos = min_pos.min(v) } else { max_neg = max_neg.max(v) }
    }
    assert!(min_pos >= 0.1 - 1e-6 && max_neg <= -0.1 + 1e-6, "margin violated: {min_pos}, {max_neg}");
    assert!(min_pos < 0.101 && max_neg > -0.101, "gap wider than stated: {min_pos}, {max_neg}");
    // Every slab coordinate alone predicts the label for every example, with gaps of 2m.
    for j in 1..50 {
        for i in 0..tr.len() {
            let v = f64::from(x[[i, j]]);
            let label = protocol_slab_label(v, 5, 0.1);
            assert_eq!(label, Some(y[i] == 1), "coordinate {j}, example {i}: {v} with label {}", y[i]);
            assert_eq!(lms_slab_index(v, 5, 0.1).map(|s| s % 2 == 1), label);
        }
    }
    // Labels are fair coins and negatives sit in the centre slab with probability 3/4
    // (4000 draws: sd 0.008 and 0.01; tolerance 4 sd).
    let pos = y.iter().filter(|&&l| l == 1).count() as f64 / y.len() as f64;
    assert!((pos - 0.5).abs() < 0.032, "positive fraction {pos}");
    let negs: Vec<usize> = (0..tr.len()).filter(|&i| y[i] == 0).collect();
    let centre = negs.iter().filter(|&&i| f64::from(x[[i, 1]]).abs() <= 0.12).count() as f64 / negs.len() as f64;
    assert!((centre - 0.75).abs() < 0.04, "centre fraction {centre}");
}

#[test]
fn noisy_lms7_and_ms57() {
    let spec = LmsSpec { slabs: 7, linear_noise: 0.1, n_train: 4000, n_test: 1000, ..LmsSpec::default() };
    let data = unrotated(&spec);
    let tr = data.dataset.train().unwrap();
    let (x, y) = (tr.features(), tr.labels().unwrap());
    // Exactly 10% of the examples have the linear coordinate inside the margin.
    let inside = (0..tr.len()).filter(|&i| x[[i, 0]].abs() < 0.1).count();
    assert_eq!(inside, 400);
    let linear_acc = (0..tr.len()).filter(|&i| (x[[i, 0]] > 0.0) == (y[i] == 1)).count() as f64 / tr.len() as f64;
    // Expected 0.95 (half of the 10% land on the wrong side); sd of the 400 coin flips 0.0025.
    assert!((linear_acc - 0.95).abs() < 0.012, "linear accuracy {linear_acc}");
    for j in 1..50 {
        assert!((0..tr.len()).all(|i| protocol_slab_label(f64::from(x[[i, j]]), 7, 0.1) == Some(y[i] == 1)));
    }
    let ms = unrotated(&LmsSpec { n_train: 2000, n_test: 100, ..LmsSpec::ms(5, 7) });
    let tr = ms.dataset.train().unwrap();
    let (x, y) = (tr.features(), tr.labels().unwrap());
    assert!((0..tr.len()).all(|i| protocol_slab_label(f64::from(x[[i, 0]]), 5, 0.1) == Some(y[i] == 1)));
    assert!((0..tr.len()).all(|i| protocol_slab_label(f64::from(x[[i, 1]]), 7, 0.1) == Some(y[i] == 1)));
}

#[test]
fn lms_rotation_and_randomised_test_sets() {
    let spec = LmsSpec { n_train: 1000, n_test: 4000, ..LmsSpec::default() };
    let rotated = spec.generate().unwrap();
    let plain = unrotated(&spec);
    let r = rotated.rotation.clone().unwrap().mapv(f64::from);
    let rtr = r.t().dot(&r);
    let err = (&rtr - &Array2::<f64>::eye(50)).mapv(f64::abs).fold(0.0f64, |a, b| a.max(*b));
    assert!(err < 1e-5, "R^T R - I = {err}");
    // Rotated data = un-rotated data times R (same sample streams), for every split.
    for name in ["train", "test", "test-s-randomised", "test-sc-randomised"] {
        let a = rotated.dataset.split(name).unwrap().features().mapv(f64::from);
        let b = plain.dataset.split(name).unwrap().features().mapv(f64::from).dot(&r);
        let err = (&a - &b).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
        assert!(err < 1e-5, "{name}: max |x R - x_rot| = {err}");
    }
    let te = plain.dataset.test().unwrap();
    let s_rand = plain.dataset.split("test-s-randomised").unwrap();
    let sc_rand = plain.dataset.split("test-sc-randomised").unwrap();
    let y = te.labels().unwrap();
    let acc = |s: &Split, rule: &dyn Fn(&[f32]) -> bool| {
        (0..s.len()).filter(|&i| rule(s.features().row(i).as_slice().unwrap()) == (y[i] == 1)).count() as f64
            / s.len() as f64
    };
    let linear = |x: &[f32]| x[0] > 0.0;
    let slab = |x: &[f32]| protocol_slab_label(f64::from(x[1]), 5, 0.1) == Some(true);
    // S-randomised: the linear rule is at chance, the slab rule still perfect; S^c: the opposite.
    // 4000 examples: chance accuracy has sd 0.008; tolerance 0.04.
    assert_eq!(acc(te, &linear), 1.0);
    assert!((acc(s_rand, &linear) - 0.5).abs() < 0.04, "S-randomised linear accuracy {}", acc(s_rand, &linear));
    assert_eq!(acc(s_rand, &slab), 1.0);
    assert_eq!(acc(sc_rand, &linear), 1.0);
    assert!((acc(sc_rand, &slab) - 0.5).abs() < 0.04);
    // The randomised coordinates are a permutation of the originals; the others are untouched.
    let mut a: Vec<f32> = te.features().column(0).to_vec();
    let mut b: Vec<f32> = s_rand.features().column(0).to_vec();
    a.sort_by(f32::total_cmp);
    b.sort_by(f32::total_cmp);
    assert_eq!(a, b);
    assert_eq!(te.features().column(7), s_rand.features().column(7));
    assert_eq!(te.features().column(0), sc_rand.features().column(0));
}

#[test]
fn gaussian_clones_match_class_statistics() {
    let base = load_dataset("mnist1d:n=2000").unwrap();
    let tr = base.train().unwrap();
    let labels = tr.labels().unwrap();
    let class_stats = |s: &Split, c: u32| {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        let x = s.features().mapv(f64::from).select(Axis(0), &idx);
        let mu = x.mean_axis(Axis(0)).unwrap();
        let centred = &x - &mu;
        let cov = centred.t().dot(&centred) / (idx.len() as f64 - 1.0);
        (mu, cov, idx.len())
    };
    for kind in [CloneKind::Isotropic, CloneKind::Full] {
        let clone = gaussian_clone(&base, &GaussianCloneSpec { kind, ridge: 1e-3, seed: 1 }).unwrap();
        let ct = clone.train().unwrap();
        assert_eq!(ct.labels(), tr.labels());
        assert_eq!(clone.test().unwrap(), base.test().unwrap(), "the real test set is kept");
        for c in 0..10 {
            let (mr, cr, n) = class_stats(tr, c);
            let (mc, cc, _) = class_stats(ct, c);
            // Means: each coordinate's sd is at most ~1.6, so the clone's mean has se <= 1.6/sqrt(n)
            // (n ~ 160); 5 se.
            let tol = 5.0 * 1.6 / (n as f64).sqrt();
            let worst = (&mr - &mc).mapv(f64::abs).fold(0.0f64, |a, b| a.max(*b));
            assert!(worst < tol, "{kind:?} class {c}: mean differs by {worst} (tol {tol})");
            let (tr_r, tr_c) = (cr.diag().sum(), cc.diag().sum());
            // Total variance matches (chi-square with ~ n * d dof: relative sd ~ 0.03; tol 0.15).
            assert!((tr_c / tr_r - 1.0).abs() < 0.15, "{kind:?} class {c}: trace {tr_c} vs {tr_r}");
            let rel = (&cc - &cr).mapv(|v| v * v).sum().sqrt() / cr.mapv(|v| v * v).sum().sqrt();
            match kind {
                // Full clone: the covariance matches up to sampling error.
                CloneKind::Full => assert!(rel < 0.35, "class {c}: covariance relative error {rel}"),
                // Isotropic clone: it does not (MNIST-1D features are strongly correlated).
                CloneKind::Isotropic => assert!(rel > 0.5, "class {c}: isotropic clone too close: {rel}"),
            }
        }
    }
    assert!(load_dataset("gaussian-clone:of=(sines)").is_err(), "regression data cannot be cloned");
}

#[test]
fn gaussian_mixture_teacher_boolean_matrix_completion() {
    let spec = GaussianMixtureSpec { n_train: 4000, ..GaussianMixtureSpec::default() };
    let d = spec.generate().unwrap();
    let tr = d.train().unwrap();
    assert_eq!(tr.targets().class_counts().unwrap(), vec![2000, 2000]);
    let mu = spec.means();
    assert!((mu.row(0).dot(&mu.row(0)).sqrt() - 2.0).abs() < 1e-12);
    let idx: Vec<usize> = (0..tr.len()).filter(|&i| tr.labels().unwrap()[i] == 1).collect();
    let m1 = tr.features().mapv(f64::from).select(Axis(0), &idx).mean_axis(Axis(0)).unwrap();
    let worst = (&m1 - &mu.row(1)).mapv(f64::abs).fold(0.0f64, |a, b| a.max(*b));
    assert!(worst < 5.0 / (2000f64).sqrt(), "class-1 mean off by {worst}");

    // Teacher: targets are the teacher's forward pass of the inputs.
    let t = TeacherSpec { hidden: vec![5, 4], outputs: 2, bias_sd: 0.5, ..TeacherSpec::default() };
    let d = t.generate().unwrap();
    let te = d.test().unwrap();
    let teacher = t.teacher();
    assert_eq!(teacher.weights[0].dim(), (5, 10));
    let f = teacher.forward(&te.features().mapv(f64::from));
    // Independent forward pass for example 0.
    let x0 = te.features().row(0).mapv(f64::from);
    let h1 = (teacher.weights[0].dot(&x0) + &teacher.biases[0]).mapv(|v| v.max(0.0));
    let h2 = (teacher.weights[1].dot(&h1) + &teacher.biases[1]).mapv(|v| v.max(0.0));
    let out = teacher.weights[2].dot(&h2) + &teacher.biases[2];
    assert!((out[1] - f[[0, 1]]).abs() < 1e-12);
    let y = te.targets().values().unwrap();
    assert!((f64::from(y[[0, 1]]) - f[[0, 1]]).abs() < 1e-6);
    let c = TeacherSpec { targets: TeacherTargets::Classes, outputs: 3, ..t.clone() }.generate().unwrap();
    assert_eq!(c.num_classes(), Some(3));
    let noisy = TeacherSpec { noise: 0.5, ..t.clone() }.generate().unwrap();
    assert_eq!(noisy.test().unwrap(), d.test().unwrap(), "noise only on train");
    assert_ne!(noisy.train().unwrap(), d.train().unwrap());

    // Boolean cube: parity labels, monomials orthogonal to constants, ||x||^2 = d.
    let b = BooleanCubeSpec { d: 6, set: Some(vec![1, 4]), ..BooleanCubeSpec::default() }.generate().unwrap();
    let all = b.train().unwrap();
    assert_eq!(all.len(), 64);
    for (j, row) in all.features().rows().into_iter().enumerate() {
        assert_eq!(row.dot(&row), 6.0);
        let chi = row[1] * row[4];
        assert_eq!(all.labels().unwrap()[j], u32::from(chi < 0.0));
    }
    let m = BooleanCubeSpec { d: 7, target: BooleanTarget::Monomial, degree: Some(3), ..BooleanCubeSpec::default() }
        .generate()
        .unwrap();
    let v = m.train().unwrap().targets().values().unwrap();
    assert_eq!(v.sum(), 0.0);
    let s = load_dataset("boolean:d=5,target=and,set=0+1,n_train=16,seed=3").unwrap();
    assert_eq!((s.train().unwrap().len(), s.test().unwrap().len()), (16, 16));
    let total_and: usize = s.splits().iter().map(|x| x.targets().class_counts().unwrap()[1]).sum();
    assert_eq!(total_and, 8, "x_0 = x_1 = +1 on a quarter of the 32 points");

    // Matrix completion: rank 3 truth, exactly 30% observed, one-hot features.
    let spec = MatrixCompletionSpec::default();
    let mc = spec.generate().unwrap();
    let sv = sgdlab_linalg::singular_values(mc.truth.mapv(f64::from).view()).unwrap();
    assert!(sv[2] > 1e-2 * sv[0] && sv[3] < 1e-5 * sv[0], "singular values {:?}", &sv[..5]);
    assert_eq!(mc.observed_entries().len(), 307);
    let d = mc.to_dataset().unwrap();
    assert_eq!((d.train().unwrap().len(), d.test().unwrap().len(), d.dim()), (307, 717, 64));
    let (i, j) = mc.observed_entries()[5];
    let row = d.train().unwrap().features().row(5);
    assert_eq!((row.sum(), row[i], row[32 + j]), (2.0, 1.0, 1.0));
    assert_eq!(d.train().unwrap().targets().values().unwrap()[[5, 0]], mc.truth[[i, j]]);
}

#[test]
fn mnist_dominoes() {
    let mnist = shared_data().join("mnist");
    let spec = format!(
        "dominoes:of=(idx:{0}/t10k-images-idx3-ubyte.gz,{0}/t10k-labels-idx1-ubyte.gz|split:test=2000),top=0+1,bottom=4+9",
        mnist.display()
    );
    let d = load_dataset(&spec).unwrap();
    assert_eq!(d.image_shape().map(|s| (s.channels, s.height, s.width)), Some((1, 56, 28)));
    assert_eq!(d.split_names(), vec!["train", "test", "test-top-randomised", "test-bottom-randomised"]);
    let base = load_dataset(&format!(
        "idx:{0}/t10k-images-idx3-ubyte.gz,{0}/t10k-labels-idx1-ubyte.gz|split:test=2000",
        mnist.display()
    ))
    .unwrap();
    let bt = base.test().unwrap();
    let te = d.test().unwrap();
    // Each block of the first test dominoes is an image of the right class of the base test split.
    for k in 0..5 {
        let y = te.labels().unwrap()[k];
        let row = te.features().row(k);
        let (top, bottom) = (row.slice(ndarray::s![..784]), row.slice(ndarray::s![784..]));
        let class_of = |block: ndarray::ArrayView1<f32>| {
            (0..bt.len()).find(|&i| bt.features().row(i) == block).map(|i| bt.labels().unwrap()[i])
        };
        assert_eq!(class_of(top), Some([0, 1][y as usize]));
        assert_eq!(class_of(bottom), Some([4, 9][y as usize]));
    }
    // Bottom-randomised keeps every top block and permutes the bottom blocks as a whole.
    let br = d.split("test-bottom-randomised").unwrap();
    assert_eq!(br.features().slice(ndarray::s![.., ..784]), te.features().slice(ndarray::s![.., ..784]));
    assert_ne!(br.features().slice(ndarray::s![.., 784..]), te.features().slice(ndarray::s![.., 784..]));
    // Counts: min(#0, #4) + min(#1, #9) over the test images of each class.
    let counts = bt.targets().class_counts().unwrap();
    assert_eq!(te.len(), counts[0].min(counts[4]) + counts[1].min(counts[9]));
}

#[test]
fn batch_plan_over_a_generated_split_and_info_json() {
    let d = load_dataset("mnist1d:n=1000").unwrap();
    let tr = d.train().unwrap();
    let plan = BatchPlan::new(tr.len(), 64, true, RngStream::new(9).child("batches")).unwrap();
    assert_eq!(plan.batches_per_epoch(), 12);
    let batches = plan.epoch(3);
    assert_eq!(batches.len(), 12);
    let b = tr.select("batch", &batches[0]);
    assert_eq!(b.features().row(0), tr.features().row(batches[0][0]));
    let info = dataset_info(&d);
    let v = serde_json::to_value(&info).unwrap();
    assert_eq!(v["splits"]["train"]["n"], 800);
    assert_eq!(v["splits"]["test"]["shape"], serde_json::json!([200, 40]));
    assert_eq!(v["splits"]["train"]["classes"], 10);
    assert_eq!(v["splits"]["train"]["class_counts"].as_array().unwrap().len(), 10);
    let s = load_dataset("sines").unwrap();
    let v = serde_json::to_value(dataset_info(&s)).unwrap();
    assert!(v["splits"]["train"]["classes"].is_null() && v["splits"]["train"]["target_dim"] == 1);
}

/// Sizes are checked before allocating: a generator asked for 10^12 rows (or a matrix with 10^12
/// entries) fails with the memory estimate instead of aborting in the allocator.
#[test]
fn huge_generators_fail_with_their_memory_estimate() {
    for spec in [
        "mnist1d:n=1000000000000",
        "mnist1d:pad_max=18446744073709551615",
        "lms:n=1000000000000",
        "ms:n_test=1000000000000",
        "gaussian-mixture:n=1000000000000",
        "gaussian-mixture:d=1000000000000",
        "teacher:n=1000000000000",
        "teacher:hidden=1000000+1000000",
        "sines:n=1000000000000",
        "sines:freqs=18446744073709551615,step=2",
        "matrix-completion:rows=1000000,cols=1000000",
        "matrix-completion:rows=100000,cols=100000,layout=columns",
    ] {
        let e = sgdlab_data::load_dataset(spec).unwrap_err().to_string();
        assert!(e.contains("needs about") || e.contains("overflows"), "{spec}: {e}");
        assert!(!e.contains('\n'), "{spec}: {e}");
    }
}
