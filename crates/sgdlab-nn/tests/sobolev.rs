//! Conformance of the Sobolev-weighted loss (PROTOCOLS 2.4) through a model, in f64, on a tiny
//! MLP `mlp:1-8-8-1:tanh` (97 parameters; tanh, so no kinks) on 1-periodic grids of N = 16 and
//! N = 15 points, for s in {-1, 0, 1, 2} and both reductions:
//!
//! * the loss against `r^T A r` with `A = F^* diag(w) F` built from an O(N^2) DFT matrix (an
//!   independent reference: no FFT), and the output gradient and Hessian against `2 c A r`,
//!   `2 c A dz`;
//! * the parameter gradient against central differences of the loss (every coordinate); HVPs
//!   against central differences of the gradient; HVP symmetry `u^T H v = v^T H u`;
//! * GGN products against an explicit `J^T (2 c A) J v`, `J` the `[N, P]` Jacobian of the outputs
//!   by central differences of the forward pass;
//! * Hessian and GGN quadratic forms against `v^T H v`, `v^T G v` from the products;
//! * `s = 0` against `Mse` (Mean and Sum): loss, gradient, HVP and GGN product;
//! * per-example gradients and losses refused with an error that names the loss;
//! * the explicit Hessian (HVP columns) against Richardson-extrapolated second differences of
//!   the loss.
//!
//! Tolerances are those of `conformance.rs` (same steps, same error model), scale-relative: an
//! error is divided by `max(1, |expected|_inf)`.

mod common;
use common::{assert_close, axpy, dot, randv};
use ndarray::{Array1, Array2};
use sgdlab_linalg::{RngStream, standard_normal};
use sgdlab_nn::{ArchSpec, Batch, InitSpec, Loss, Model, Objective, Reduction, Targets};

/// Central-difference step (STYLE.md: about 6e-6 * max(1, |x|)).
const H: f64 = 6e-6;
/// First derivatives by central differences: truncation O(h^2) ~ 1e-10 and rounding
/// O(eps |L| / h) of the scale.
const TOL_FIRST: f64 = 2e-7;
/// Second derivatives from differences of exact gradients: same orders.
const TOL_SECOND: f64 = 2e-7;
/// Identities that hold up to rounding (FFT against the dense DFT, symmetry, s = 0 against MSE).
const TOL_EXACT: f64 = 1e-11;
/// `s = 0` against MSE: the FFT round trip is exact up to a few ulps.
const TOL_MSE: f64 = 1e-12;
/// Hessian from Richardson-extrapolated second differences of the loss (steps 1e-3 and 5e-4).
const TOL_HESSIAN_FD: f64 = 1e-7;

const ARCH: &str = "mlp:1-8-8-1:tanh";
const EXPONENTS: [f64; 4] = [-1.0, 0.0, 1.0, 2.0];
const GRIDS: [usize; 2] = [16, 15];

/// `A = F^* diag(w) F` by the dense unitary DFT matrix (O(N^2)), `k` in `(-N/2, N/2]`: the
/// reference every FFT result is compared with.
fn naive_sobolev_matrix(n: usize, s: f64) -> Array2<f64> {
    let freq = |j: usize| if 2 * j <= n { j as f64 } else { j as f64 - n as f64 };
    let mut a = Array2::zeros((n, n));
    for p in 0..n {
        for q in 0..n {
            // (F^* W F)_pq = (1/N) sum_k w_k exp(2 pi i k (p - q) / N); real since w_k = w_{-k}.
            let mut re = 0.0;
            for k in 0..n {
                let w = (1.0 + freq(k) * freq(k)).powf(s);
                let angle = 2.0 * std::f64::consts::PI * (k as f64) * (p as f64 - q as f64) / n as f64;
                re += w * angle.cos();
            }
            a[(p, q)] = re / n as f64;
        }
    }
    a
}

struct Grid {
    model: Model,
    p: Vec<f64>,
    x: Array2<f64>,
    y: Array2<f64>,
}

impl Grid {
    /// `N` grid points `x_j = j / N`, a smooth periodic target, seeded parameters (He/LeCun
    /// default init scaled up so that tanh is well inside its nonlinear range).
    fn new(n: usize, seed: u64) -> Grid {
        let model = Model::new(&ARCH.parse::<ArchSpec>().unwrap());
        let mut p = InitSpec::default().init::<f64>(&model, &RngStream::new(seed)).into_vec();
        let mut rng = RngStream::new(seed).child("bias").rng();
        p.iter_mut().for_each(|v| *v = 1.5 * *v + 0.1 * standard_normal::<f64, _>(&mut rng));
        let x = Array2::from_shape_fn((n, 1), |(j, _)| j as f64 / n as f64);
        let tau = 2.0 * std::f64::consts::PI;
        let y = x.mapv(|t| (tau * t).sin() + 0.5 * (3.0 * tau * t).cos() + 0.25 * (7.0 * tau * t).sin());
        Grid { model, p, x, y }
    }

    fn batch(&self) -> Batch<'_, f64> {
        Batch { x: self.x.view(), targets: Targets::Values(self.y.view()) }
    }

    fn n(&self) -> usize {
        self.x.nrows()
    }

    fn outputs(&self, p: &[f64]) -> Vec<f64> {
        self.model.forward(p, self.x.view()).unwrap().iter().copied().collect()
    }

    /// The `[N, P]` Jacobian of the outputs by central differences of the forward pass.
    fn jacobian_fd(&self) -> Array2<f64> {
        let np = self.model.num_params();
        let mut j = Array2::zeros((self.n(), np));
        for c in 0..np {
            let mut e = vec![0.0; np];
            e[c] = 1.0;
            let zp = self.outputs(&axpy(&self.p, H, &e));
            let zm = self.outputs(&axpy(&self.p, -H, &e));
            for r in 0..self.n() {
                j[(r, c)] = (zp[r] - zm[r]) / (2.0 * H);
            }
        }
        j
    }
}

fn factor(reduction: Reduction, n: usize) -> f64 {
    match reduction {
        Reduction::Mean => 1.0 / n as f64,
        Reduction::Sum => 1.0,
    }
}

fn cases() -> Vec<(usize, f64, Reduction)> {
    let mut v = Vec::new();
    for n in GRIDS {
        for s in EXPONENTS {
            for r in [Reduction::Mean, Reduction::Sum] {
                v.push((n, s, r));
            }
        }
    }
    v
}

#[test]
fn loss_and_output_derivatives_match_a_dense_dft() {
    for (n, s, reduction) in cases() {
        let g = Grid::new(n, 3);
        let loss = Loss::Sobolev { s };
        let what = format!("N={n} {loss} {reduction:?}");
        let z = g.model.forward(&g.p, g.x.view()).unwrap();
        let r: Vec<f64> = z.iter().zip(g.y.iter()).map(|(a, b)| a - b).collect();
        let a = naive_sobolev_matrix(n, s);
        let c = factor(reduction, n);
        let ar = a.dot(&Array1::from(r.clone()));
        let expected = c * dot(&r, ar.as_slice().unwrap());
        let got = g.model.loss(&g.p, &g.batch(), &Objective { loss, reduction }).unwrap();
        assert_close(&format!("{what}: loss"), &[got], &[expected], TOL_EXACT);
        let targets = Targets::Values(g.y.view());
        let (v, gz) = loss.value_and_grad(z.view(), &targets, reduction);
        assert_close(&format!("{what}: value_and_grad value"), &[v], &[expected], TOL_EXACT);
        let expected_gz: Vec<f64> = ar.iter().map(|v| 2.0 * c * v).collect();
        assert_close(&format!("{what}: output gradient"), gz.as_slice().unwrap(), &expected_gz, TOL_EXACT);
        let dz = Array2::from_shape_vec((n, 1), randv(&mut RngStream::new(4).rng(), n)).unwrap();
        let hz = loss.hessian_vp(z.view(), &targets, dz.view(), reduction);
        let expected_hz: Vec<f64> = a.dot(&dz.column(0)).iter().map(|v| 2.0 * c * v).collect();
        assert_close(&format!("{what}: output Hessian product"), hz.as_slice().unwrap(), &expected_hz, TOL_EXACT);
    }
}

#[test]
fn gradient_hvp_ggn_and_forms_match_differences_and_explicit_matrices() {
    for (n, s, reduction) in cases() {
        let g = Grid::new(n, 5);
        let m = &g.model;
        let np = m.num_params();
        let obj = Objective { loss: Loss::Sobolev { s }, reduction };
        let what = format!("N={n} {} {reduction:?}", obj.loss);
        let b = g.batch();
        let loss_at = |p: &[f64]| m.loss(p, &b, &obj).unwrap();
        let grad_at = |p: &[f64]| m.loss_and_gradient(p, &b, &obj).unwrap().gradient;

        // Gradient against central differences, every coordinate.
        let grad = grad_at(&g.p);
        let fd: Vec<f64> = (0..np)
            .map(|i| {
                let mut e = vec![0.0; np];
                e[i] = 1.0;
                (loss_at(&axpy(&g.p, H, &e)) - loss_at(&axpy(&g.p, -H, &e))) / (2.0 * H)
            })
            .collect();
        assert_close(&format!("{what}: gradient vs differences"), &grad, &fd, TOL_FIRST);

        // HVP against differences of the gradient, and symmetry.
        let mut rng = RngStream::new(6).child(&what).rng();
        let u = randv(&mut rng, np);
        let v = randv(&mut rng, np);
        let hv = m.hvp(&g.p, &b, &obj, &v).unwrap();
        let hu = m.hvp(&g.p, &b, &obj, &u).unwrap();
        let fd_hv: Vec<f64> = grad_at(&axpy(&g.p, H, &v))
            .iter()
            .zip(grad_at(&axpy(&g.p, -H, &v)))
            .map(|(a, b)| (a - b) / (2.0 * H))
            .collect();
        assert_close(&format!("{what}: HVP vs differences of the gradient"), &hv, &fd_hv, TOL_SECOND);
        let (uhv, vhu) = (dot(&u, &hv), dot(&v, &hu));
        assert_close(&format!("{what}: u^T H v = v^T H u"), &[uhv], &[vhu], TOL_EXACT);

        // GGN product against J^T (2 c A) J v with J by differences of the outputs.
        let j = g.jacobian_fd();
        let a = naive_sobolev_matrix(n, s) * (2.0 * factor(reduction, n));
        let jv = j.dot(&Array1::from(v.clone()));
        let expected_gv = j.t().dot(&a.dot(&jv));
        let gv = m.ggn_vp(&g.p, &b, &obj, &v).unwrap();
        assert_close(&format!("{what}: GGN vs J^T (2cA) J v"), &gv, expected_gv.as_slice().unwrap(), TOL_FIRST);

        // Quadratic forms by forward passes against the products.
        let vs = Array2::from_shape_vec((2, np), [u.clone(), v.clone()].concat()).unwrap();
        let hq = m.hessian_quadratic_forms(&g.p, &b, &obj, vs.view()).unwrap();
        assert_close(&format!("{what}: v^T H v by jets"), &hq, &[dot(&u, &hu), dot(&v, &hv)], TOL_EXACT);
        let gu = m.ggn_vp(&g.p, &b, &obj, &u).unwrap();
        let gq = m.ggn_quadratic_forms(&g.p, &b, &obj, vs.view()).unwrap();
        assert_close(&format!("{what}: v^T G v by jvps"), &gq, &[dot(&u, &gu), dot(&v, &gv)], TOL_EXACT);
        // The cached variants (what the probes' operators use) agree with the uncached ones.
        let cache = m.hvp_cache(&g.p, &b, &obj).unwrap();
        let hq_cached = m.hessian_quadratic_forms_cached(&g.p, &cache, &b, &obj, vs.view()).unwrap();
        assert_close(&format!("{what}: cached Hessian forms"), &hq_cached, &hq, TOL_EXACT);
        let gvs = m.ggn_vp_cached(&g.p, &cache, &b, &obj, vs.view()).unwrap();
        assert_close(&format!("{what}: cached GGN products"), gvs.row(1).as_slice().unwrap(), &gv, TOL_EXACT);
        let hvs = m.hvp_cached(&g.p, &cache, &b, &obj, vs.view()).unwrap();
        assert_close(&format!("{what}: cached HVPs"), hvs.row(1).as_slice().unwrap(), &hv, TOL_EXACT);
    }
}

#[test]
fn exponent_zero_is_mse() {
    for n in GRIDS {
        let g = Grid::new(n, 7);
        let m = &g.model;
        let b = g.batch();
        let v = randv(&mut RngStream::new(8).rng(), m.num_params());
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let sob = Objective { loss: Loss::Sobolev { s: 0.0 }, reduction };
            let mse = Objective { loss: Loss::Mse, reduction };
            let what = format!("N={n} {reduction:?}: sobolev:s=0 vs mse");
            let (ls, lm) = (m.loss_and_gradient(&g.p, &b, &sob).unwrap(), m.loss_and_gradient(&g.p, &b, &mse).unwrap());
            assert_close(&format!("{what} loss"), &[ls.loss], &[lm.loss], TOL_MSE);
            assert_close(&format!("{what} gradient"), &ls.gradient, &lm.gradient, TOL_MSE);
            let (hs, hm) = (m.hvp(&g.p, &b, &sob, &v).unwrap(), m.hvp(&g.p, &b, &mse, &v).unwrap());
            assert_close(&format!("{what} HVP"), &hs, &hm, TOL_MSE);
            let (gs, gm) = (m.ggn_vp(&g.p, &b, &sob, &v).unwrap(), m.ggn_vp(&g.p, &b, &mse, &v).unwrap());
            assert_close(&format!("{what} GGN"), &gs, &gm, TOL_MSE);
        }
        // L_0 (Sum) = N * MSE (Mean).
        let l0 = m.loss(&g.p, &b, &Objective { loss: Loss::Sobolev { s: 0.0 }, reduction: Reduction::Sum }).unwrap();
        let mse = m.loss(&g.p, &b, &Objective::mean(Loss::Mse)).unwrap();
        assert_close(&format!("N={n}: L_0 = N * MSE"), &[l0], &[n as f64 * mse], TOL_MSE);
    }
}

#[test]
fn per_example_quantities_are_refused_naming_the_loss() {
    let g = Grid::new(16, 9);
    let obj = Objective::mean(Loss::Sobolev { s: 1.0 });
    let e = g.model.per_example_gradients(&g.p, &g.batch(), &obj).unwrap_err().to_string();
    assert!(e.contains("per-example gradients") && e.contains("sobolev:s=1") && e.contains("couples"), "{e}");
    let z = g.model.forward(&g.p, g.x.view()).unwrap();
    let e = obj.loss.per_example(z.view(), &Targets::Values(g.y.view())).unwrap_err().to_string();
    assert!(e.contains("per-example losses") && e.contains("sobolev:s=1"), "{e}");
    // Targets the loss cannot take are errors from every pass, not panics.
    let classes: Vec<u32> = vec![0; 16];
    let bad = Batch { x: g.x.view(), targets: Targets::Classes(&classes) };
    let e = g.model.loss(&g.p, &bad, &obj).unwrap_err().to_string();
    assert!(e.contains("sobolev:s=1") && e.contains("real-valued"), "{e}");
    let mut y = g.y.clone();
    y[(3, 0)] = f64::NAN;
    let e = g.model.hvp(&g.p, &Batch { x: g.x.view(), targets: Targets::Values(y.view()) }, &obj, &g.p).unwrap_err();
    assert!(e.to_string().contains("grid point 3"), "{e}");
    let wide = Model::new(&"mlp:1-4-2:tanh".parse::<ArchSpec>().unwrap());
    let pw = vec![0.1; wide.num_params()];
    let y2 = Array2::<f64>::zeros((16, 2));
    let e = wide.loss(&pw, &Batch { x: g.x.view(), targets: Targets::Values(y2.view()) }, &obj).unwrap_err();
    assert!(e.to_string().contains("needs 1 output"), "{e}");
}

/// The explicit Hessian of the tiny net (97 parameters) from HVP columns against second
/// differences of the loss (independent of every derivative rule); its GGN is PSD.
#[test]
fn explicit_hessian_matches_second_differences() {
    let h = 1e-3;
    for (n, s, reduction) in [(16, -1.0, Reduction::Sum), (16, 2.0, Reduction::Mean), (15, 1.0, Reduction::Sum)] {
        let g = Grid::new(n, 11);
        let m = &g.model;
        let np = m.num_params();
        assert!(np < 200, "{np} parameters");
        let obj = Objective { loss: Loss::Sobolev { s }, reduction };
        let what = format!("N={n} {} {reduction:?}", obj.loss);
        let b = g.batch();
        let eye = Array2::<f64>::eye(np);
        let hess = m.hvp_block(&g.p, &b, &obj, eye.view()).unwrap().hvps;
        let scale = hess.iter().fold(1.0f64, |a, x| a.max(x.abs()));
        let asym = (&hess - &hess.t()).iter().fold(0.0f64, |a, x| a.max(x.abs()));
        assert!(asym <= TOL_EXACT * scale, "{what}: Hessian asymmetry {asym}");
        let f = |i: usize, si: f64, j: usize, sj: f64| {
            let mut q = g.p.clone();
            q[i] += si;
            q[j] += sj;
            m.loss(&q, &b, &obj).unwrap()
        };
        let mut fd = Array2::<f64>::zeros((np, np));
        for i in 0..np {
            for j in 0..=i {
                let d = |h: f64| (f(i, h, j, h) - f(i, h, j, -h) - f(i, -h, j, h) + f(i, -h, j, -h)) / (4.0 * h * h);
                let v = (4.0 * d(h / 2.0) - d(h)) / 3.0;
                fd[(i, j)] = v;
                fd[(j, i)] = v;
            }
        }
        assert_close(
            &format!("{what}: explicit Hessian"),
            hess.as_slice().unwrap(),
            fd.as_slice().unwrap(),
            TOL_HESSIAN_FD,
        );
        let ggn = m.ggn_vp_block(&g.p, &b, &obj, eye.view()).unwrap();
        let e = sgdlab_linalg::symmetric_eigen(ggn.view()).unwrap();
        let gscale = ggn.iter().fold(1.0f64, |a, x| a.max(x.abs()));
        // A is positive definite (w_k > 0): J^T A J is PSD for every s.
        assert!(e.values[0] >= -1e-12 * gscale, "{what}: GGN min eigenvalue {}", e.values[0]);
    }
}

/// The f32 path (FFT in f64, converted) agrees with f64 to f32 precision.
#[test]
fn f32_agrees_with_f64() {
    let g = Grid::new(16, 13);
    let obj = Objective::mean(Loss::Sobolev { s: 1.0 });
    let l64 = g.model.loss_and_gradient(&g.p, &g.batch(), &obj).unwrap();
    let p32: Vec<f32> = g.p.iter().map(|&v| v as f32).collect();
    let (x32, y32) = (g.x.mapv(|v| v as f32), g.y.mapv(|v| v as f32));
    let b32 = Batch { x: x32.view(), targets: Targets::Values(y32.view()) };
    let l32 = g.model.loss_and_gradient(&p32, &b32, &obj).unwrap();
    let g32: Vec<f64> = l32.gradient.iter().map(|&v| f64::from(v)).collect();
    // f32 epsilon 1.2e-7, a few hundred operations deep.
    assert_close("f32 loss", &[f64::from(l32.loss)], &[l64.loss], 1e-4);
    assert_close("f32 gradient", &g32, &l64.gradient, 1e-4);
}
