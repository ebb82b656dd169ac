//! Element-wise activations with their first and second derivatives.
//!
//! Each activation gives `f`, `f'` and `f''`, which is all the derivative engine needs: the vjp is
//! `f'(x) * g`, the jvp `f'(x) * dx`, and the tangent of the vjp `f''(x) * dx * g + f'(x) * dg`.
//! Piecewise-linear activations (ReLU, leaky ReLU, Hat, identity) have `f'' = 0` away from their
//! kinks; at a kink the one-sided derivative from the right is used (PyTorch's convention for ReLU
//! is `relu'(0) = 0`; we follow it: the derivative at a kink is that of the piece *below* it for
//! ReLU and leaky ReLU, and 0 at Hat's kinks 0 and 2, 1 at its peak 1 is taken from the left).

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Zip};
use sgdlab_linalg::Scalar;
use std::fmt;

/// An element-wise activation function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// x for x > 0, slope * x otherwise (PyTorch's default slope is 0.01).
    LeakyRelu { slope: f64 },
    /// tanh(x).
    Tanh,
    /// 1 / (1 + exp(-x)).
    Sigmoid,
    /// The error function erf(x) (Williams 1997; Yang & Salman 2019 use it for its closed-form
    /// kernels).
    Erf,
    /// x * Phi(x) with the exact normal CDF Phi (Hendrycks & Gimpel 2016; PyTorch's default GELU).
    Gelu,
    /// log(1 + exp(x)) (beta = 1).
    Softplus,
    /// Hat(x) = x on [0, 1], 2 - x on [1, 2], 0 elsewhere: the piecewise-linear B-spline of Hong et
    /// al. (2022), arXiv:2208.04924 (PROTOCOLS 2.3).
    Hat,
    /// x (deep linear networks).
    Identity,
}

const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

/// erf in precision `T` (libm's erf / erff).
#[inline]
pub fn erf<T: Scalar>(x: T) -> T {
    if T::NAME == "f32" {
        T::from_f64(libm::erff(x.to_f64() as f32) as f64)
    } else {
        T::from_f64(libm::erf(x.to_f64()))
    }
}

#[inline]
fn sigmoid<T: Scalar>(x: T) -> T {
    // Stable for large |x|.
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// log(1 + exp(x)), stable for large |x|.
#[inline]
pub fn softplus<T: Scalar>(x: T) -> T {
    if x > T::zero() { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }
}

impl Activation {
    /// All activations, for tests and listings (leaky ReLU with slope 0.1).
    pub const ALL: [Activation; 9] = [
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.1 },
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Erf,
        Activation::Gelu,
        Activation::Softplus,
        Activation::Hat,
        Activation::Identity,
    ];

    /// The points where the activation is not twice differentiable (tests sample away from them).
    pub fn kinks(&self) -> &'static [f64] {
        match self {
            Activation::Relu | Activation::LeakyRelu { .. } => &[0.0],
            Activation::Hat => &[0.0, 1.0, 2.0],
            _ => &[],
        }
    }

    /// True when f is positively homogeneous of degree 1 (ReLU, leaky ReLU, identity).
    pub fn is_homogeneous(&self) -> bool {
        matches!(self, Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity)
    }

    /// f(x).
    #[inline]
    pub fn f<T: Scalar>(&self, x: T) -> T {
        let zero = T::zero();
        let one = T::one();
        match *self {
            Activation::Relu => {
                if x > zero {
                    x
                } else {
                    zero
                }
            }
            Activation::LeakyRelu { slope } => {
                if x > zero {
                    x
                } else {
                    T::from_f64(slope) * x
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
            Activation::Erf => erf(x),
            Activation::Gelu => {
                let phi = T::from_f64(0.5) * (one + erf(x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)));
                x * phi
            }
            Activation::Softplus => softplus(x),
            Activation::Hat => {
                if x > zero && x <= one {
                    x
                } else if x > one && x < T::from_f64(2.0) {
                    T::from_f64(2.0) - x
                } else {
                    zero
                }
            }
            Activation::Identity => x,
        }
    }

    /// (f(x), f'(x), f''(x)) in one evaluation.
    #[inline]
    pub fn f012<T: Scalar>(&self, x: T) -> (T, T, T) {
        let zero = T::zero();
        let one = T::one();
        match *self {
            Activation::Relu => {
                if x > zero {
                    (x, one, zero)
                } else {
                    (zero, zero, zero)
                }
            }
            Activation::LeakyRelu { slope } => {
                let s = T::from_f64(slope);
                if x > zero { (x, one, zero) } else { (s * x, s, zero) }
            }
            Activation::Tanh => {
                let t = x.tanh();
                let d = one - t * t;
                (t, d, T::from_f64(-2.0) * t * d)
            }
            Activation::Sigmoid => {
                let s = sigmoid(x);
                let d = s * (one - s);
                (s, d, d * (one - T::from_f64(2.0) * s))
            }
            Activation::Erf => {
                let d = T::from_f64(FRAC_2_SQRT_PI) * (-x * x).exp();
                (erf(x), d, T::from_f64(-2.0) * x * d)
            }
            Activation::Gelu => {
                let cdf = T::from_f64(0.5) * (one + erf(x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)));
                let pdf = T::from_f64(FRAC_1_SQRT_2PI) * (T::from_f64(-0.5) * x * x).exp();
                (x * cdf, cdf + x * pdf, pdf * (T::from_f64(2.0) - x * x))
            }
            Activation::Softplus => {
                let s = sigmoid(x);
                (softplus(x), s, s * (one - s))
            }
            Activation::Hat => {
                if x > zero && x <= one {
                    (x, one, zero)
                } else if x > one && x < T::from_f64(2.0) {
                    (T::from_f64(2.0) - x, -one, zero)
                } else {
                    (zero, zero, zero)
                }
            }
            Activation::Identity => (x, one, zero),
        }
    }

    /// f'(x).
    #[inline]
    pub fn df<T: Scalar>(&self, x: T) -> T {
        match *self {
            Activation::Relu => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            Activation::LeakyRelu { slope } => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::from_f64(slope)
                }
            }
            Activation::Identity => T::one(),
            _ => self.f012(x).1,
        }
    }

    /// `f(x)` element-wise. The match on the activation sits outside the loop (here and in
    /// [`Activation::scale_by_derivative`]): inside it, the compiler kept a call per element;
    /// outside, the piecewise-linear cases compile to vector code (ReLU's passes on job L: about a
    /// third of the time, by perf).
    pub fn apply<T: Scalar>(&self, x: ArrayView2<'_, T>) -> Array2<T> {
        match *self {
            Activation::Relu => x.mapv(|v| Activation::Relu.f(v)),
            Activation::LeakyRelu { slope } => x.mapv(|v| Activation::LeakyRelu { slope }.f(v)),
            Activation::Hat => x.mapv(|v| Activation::Hat.f(v)),
            a => x.mapv(|v| a.f(v)),
        }
    }

    /// `g *= f'(x)` element-wise: the vjp of the activation at inputs `x`, in place.
    pub fn scale_by_derivative<T: Scalar>(&self, g: ArrayViewMut2<'_, T>, x: ArrayView2<'_, T>) {
        fn scale<T: Scalar>(g: ArrayViewMut2<'_, T>, x: ArrayView2<'_, T>, df: impl Fn(T) -> T) {
            Zip::from(g).and(x).for_each(|g, &xv| *g *= df(xv));
        }
        match *self {
            Activation::Relu => scale(g, x, |v| Activation::Relu.df(v)),
            Activation::LeakyRelu { slope } => scale(g, x, |v| Activation::LeakyRelu { slope }.df(v)),
            Activation::Hat => scale(g, x, |v| Activation::Hat.df(v)),
            a => scale(g, x, |v| a.df(v)),
        }
    }

    /// True when f'' is zero everywhere it exists (the R-op then skips the f'' term).
    pub fn is_piecewise_linear(&self) -> bool {
        matches!(self, Activation::Relu | Activation::LeakyRelu { .. } | Activation::Hat | Activation::Identity)
    }

    /// Parse a name as written in architecture strings: `relu`, `leaky_relu` (slope 0.01),
    /// `leaky_relu(0.2)`, `tanh`, `sigmoid`, `erf`, `gelu`, `softplus`, `hat`, `identity` (or
    /// `linear`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Ok(match s {
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu { slope: 0.01 },
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "erf" => Activation::Erf,
            "gelu" => Activation::Gelu,
            "softplus" => Activation::Softplus,
            "hat" => Activation::Hat,
            "identity" | "linear" => Activation::Identity,
            _ => {
                if let Some(arg) = s.strip_prefix("leaky_relu(").and_then(|r| r.strip_suffix(')')) {
                    let slope: f64 =
                        arg.trim().parse().map_err(|_| format!("leaky_relu slope '{arg}' is not a number"))?;
                    if !slope.is_finite() {
                        return Err(format!("leaky_relu slope '{arg}' is not finite"));
                    }
                    Activation::LeakyRelu { slope }
                } else {
                    return Err(format!(
                        "unknown activation '{s}' (known: relu, leaky_relu, leaky_relu(SLOPE), tanh, sigmoid, erf, gelu, softplus, hat, identity)"
                    ));
                }
            }
        })
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu { slope } if *slope == 0.01 => f.write_str("leaky_relu"),
            Activation::LeakyRelu { slope } => write!(f, "leaky_relu({slope})"),
            Activation::Tanh => f.write_str("tanh"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::Erf => f.write_str("erf"),
            Activation::Gelu => f.write_str("gelu"),
            Activation::Softplus => f.write_str("softplus"),
            Activation::Hat => f.write_str("hat"),
            Activation::Identity => f.write_str("identity"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences of f and f' match f' and f'' (away from kinks) in f64.
    #[test]
    fn derivatives_match_central_differences() {
        for act in Activation::ALL {
            for i in 0..41 {
                let x = -3.0 + 0.15 * i as f64 + 0.0123;
                if act.kinks().iter().any(|k| (x - k).abs() < 1e-3) {
                    continue;
                }
                let h = 1e-5;
                let (f, d1, d2) = act.f012(x);
                assert_eq!(f, act.f(x), "{act} f at {x}");
                assert_eq!(d1, act.df(x), "{act} df at {x}");
                let fd1 = (act.f(x + h) - act.f(x - h)) / (2.0 * h);
                let fd2 = (act.df(x + h) - act.df(x - h)) / (2.0 * h);
                assert!((fd1 - d1).abs() < 1e-8 * (1.0 + d1.abs()), "{act}: f'({x}) = {d1}, differences {fd1}");
                assert!((fd2 - d2).abs() < 1e-7 * (1.0 + d2.abs()), "{act}: f''({x}) = {d2}, differences {fd2}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for act in Activation::ALL {
            assert_eq!(Activation::parse(&act.to_string()).unwrap(), act);
        }
        assert_eq!(Activation::parse("leaky_relu").unwrap(), Activation::LeakyRelu { slope: 0.01 });
        assert!(Activation::parse("swish").unwrap_err().contains("unknown activation 'swish'"));
        assert!(Activation::parse("leaky_relu(x)").is_err());
    }

    #[test]
    fn hat_values() {
        let h = Activation::Hat;
        assert_eq!(h.f(0.5f64), 0.5);
        assert_eq!(h.f(1.5f64), 0.5);
        assert_eq!(h.f(2.5f64), 0.0);
        assert_eq!(h.f(-0.5f64), 0.0);
        assert_eq!(h.f(1.0f64), 1.0);
    }

    #[test]
    fn gelu_matches_known_value() {
        // GELU(1) = Phi(1) = 0.8413447460685429 (exact erf form).
        assert!((Activation::Gelu.f(1.0f64) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((Activation::Softplus.f(-800.0f64)).abs() < 1e-300);
        assert!((Activation::Softplus.f(800.0f64) - 800.0).abs() < 1e-12);
    }
}
