//! MNIST-1D: the frozen files load, and the procedural generator agrees with them.

mod common;

use common::{accuracy, shared_data, softmax_regression};
use ndarray::{Array2, Axis};
use ndarray_npy::read_npy;
use sgdlab_data::{Dataset, Mnist1dSpec, Split, load_dataset, mnist1d_templates};

fn frozen() -> Dataset {
    let dir = shared_data().join("mnist1d");
    load_dataset(&format!("mnist1d-frozen:({})", dir.display())).unwrap()
}

/// Per-class mean curves `[10, 40]` and per-class per-position sds `[10, 40]` of a split.
fn class_curves(s: &Split) -> (Array2<f64>, Array2<f64>) {
    let labels = s.labels().unwrap();
    let x = s.features().mapv(f64::from);
    let mut mean = Array2::zeros((10, x.ncols()));
    let mut sd = Array2::zeros((10, x.ncols()));
    for c in 0..10u32 {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        let xc = x.select(Axis(0), &idx);
        mean.row_mut(c as usize).assign(&xc.mean_axis(Axis(0)).unwrap());
        sd.row_mut(c as usize).assign(&xc.std_axis(Axis(0), 0.0));
    }
    (mean, sd)
}

#[test]
fn frozen_files_load_with_the_published_counts() {
    let d = frozen();
    let (tr, te) = (d.train().unwrap(), d.test().unwrap());
    assert_eq!((tr.len(), tr.dim(), te.len()), (4000, 40, 1000));
    assert_eq!(tr.targets().class_counts().unwrap(), vec![398, 396, 411, 394, 394, 402, 401, 404, 402, 398]);
    assert_eq!(te.targets().class_counts().unwrap(), vec![102, 104, 89, 106, 106, 98, 99, 96, 98, 102]);
    assert_eq!(tr.labels().unwrap()[..10], [2, 6, 4, 5, 6, 6, 6, 0, 3, 1]);
    assert_eq!(te.labels().unwrap()[..10], [2, 6, 3, 9, 4, 3, 1, 9, 5, 2]);
    // The f64 copies, read through the same loader, round to the f32 files.
    let x64 =
        load_dataset(&format!("npy:{0}/x_train_f64.npy,{0}/y_train.npy", shared_data().join("mnist1d").display()))
            .unwrap();
    assert_eq!(x64.split("all").unwrap().features(), tr.features());
}

#[test]
fn templates_equal_the_published_ones() {
    let published: Array2<f64> = read_npy(shared_data().join("mnist1d/templates_x.npy")).unwrap();
    let ours = mnist1d_templates();
    let worst = (&published - &ours).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
    // Same formula in f64; only summation order can differ.
    assert!(worst < 1e-12, "max |published - ours| = {worst:e}");
}

/// Statistical agreement of the generator (seed 42, the published size) with the frozen set.
///
/// Calibration (measured when the test was written, seeds 1, 2, 3 and 42 against the frozen set,
/// and generated-vs-generated pairs): the RMS over positions of the difference of two class mean
/// curves is 0.03-0.07 for most classes and up to 0.125 for class 0 (the noisiest: its template
/// has the largest amplitude), also between two generated sets, so it is sampling noise; the RMS
/// difference of the per-position sd curves is at most 0.068; the ratio of within-class variances
/// is within 0.2% of 1. Tolerances: mean curves < 0.15, sd curves < 0.09, variance ratio within 1%.
/// These catch a wrong step: with no shear the sd curves differ by 0.124 and the variance ratio is
/// 0.982; without the correlated noise 0.145 and 0.960; with padding 48..=60 the ratio is 1.015;
/// without translation everything is off by 0.4-1.0.
#[test]
fn generator_matches_frozen_statistics() {
    let generated = Mnist1dSpec::default().generate().unwrap();
    let fr = frozen();
    let all = |d: &Dataset| Split::concat("all", &[d.train().unwrap(), d.test().unwrap()]).unwrap();
    let (g, f) = (all(&generated), all(&fr));
    assert_eq!(g.len(), 5000);
    let (gm, gs) = class_curves(&g);
    let (fm, fs) = class_curves(&f);
    for c in 0..10 {
        let rms_mean = ((&gm.row(c) - &fm.row(c)).mapv(|v| v * v).mean().unwrap()).sqrt();
        let rms_sd = ((&gs.row(c) - &fs.row(c)).mapv(|v| v * v).mean().unwrap()).sqrt();
        println!("class {c}: RMS difference of mean curves {rms_mean:.4}, of sd curves {rms_sd:.4}");
        assert!(rms_mean < 0.15, "class {c}: mean curves differ by RMS {rms_mean}");
        assert!(rms_sd < 0.09, "class {c}: sd curves differ by RMS {rms_sd}");
    }
    let within = |s: &Array2<f64>| s.mapv(|v| v * v).mean().unwrap();
    let (wg, wf) = (within(&gs), within(&fs));
    println!("within-class variance: generated {wg:.4}, frozen {wf:.4}");
    assert!((wg / wf - 1.0).abs() < 0.01, "within-class variance {wg} vs frozen {wf}");
    // Global statistics: both sets are standardised over all values.
    let gx = g.features().mapv(f64::from);
    assert!(gx.mean().unwrap().abs() < 1e-6 && (gx.std(0.0) - 1.0).abs() < 1e-6);
}

/// A softmax regression (plain gradient descent, fixed steps) trained on generated data scores on
/// the frozen test set within 5 points of one trained on the frozen train set. Both are linear
/// models on MNIST-1D (about 30-35% accuracy); the test set has 1000 examples, so each accuracy
/// has a sampling sd of about 1.5 points.
#[test]
fn model_trained_on_generated_data_scores_like_one_trained_on_frozen() {
    let generated = Mnist1dSpec::default().generate().unwrap();
    let fr = frozen();
    let te = fr.test().unwrap();
    let fit = |s: &Split| softmax_regression(s.features(), s.labels().unwrap(), 10, 500, 0.5);
    let (wg, bg) = fit(generated.train().unwrap());
    let (wf, bf) = fit(fr.train().unwrap());
    let acc_gen = accuracy(&wg, &bg, te.features(), te.labels().unwrap());
    let acc_frozen = accuracy(&wf, &bf, te.features(), te.labels().unwrap());
    println!("frozen test accuracy: trained on generated {acc_gen:.3}, on frozen {acc_frozen:.3}");
    assert!(acc_frozen > 0.2, "the linear baseline should beat chance clearly: {acc_frozen}");
    assert!((acc_gen - acc_frozen).abs() < 0.05, "generated {acc_gen} vs frozen {acc_frozen}");
}

#[test]
fn seeds_and_sizes() {
    let a = load_dataset("mnist1d:seed=7,n=1000").unwrap();
    let b = load_dataset("mnist1d:seed=7,n=1000").unwrap();
    let c = load_dataset("mnist1d:seed=8,n=1000").unwrap();
    assert_eq!(a.train().unwrap(), b.train().unwrap());
    assert_ne!(a.train().unwrap().features(), c.train().unwrap().features());
    assert_eq!((a.train().unwrap().len(), a.test().unwrap().len()), (800, 200));
    assert!(load_dataset("mnist1d:n=1001").is_err());
}
