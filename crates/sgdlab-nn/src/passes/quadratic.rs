//! Quadratic forms of the Hessian and the Gauss-Newton matrix by forward passes only.
//!
//! `v^T H v = d^2/dt^2 L(p + t v)` at `t = 0`. With the logits moving as
//! `z(t) = z + t dz + (t^2/2) d2z` (second-order forward mode, [`Layer::jet2`]), the chain rule
//! through the loss gives `v^T H v = dz^T H_z dz + g_z^T d2z`, `g_z` and `H_z` the gradient and
//! Hessian of the reduced loss in the logits. Dropping the second term leaves the Gauss-Newton
//! form `v^T G v = dz^T H_z dz`, which needs only the jvp. Hutchinson's trace estimator needs
//! nothing else, and on an MLP a form costs about 55% of the multiply-adds of a Hessian-vector
//! product (no backward pass).
//!
//! [`Layer::jet2`]: crate::Layer::jet2

use super::{Batch, Forward, HvpCache, Objective};
use crate::error::NnError;
use crate::layer::{Mode, Trace};
use crate::model::Model;
use ndarray::{Array2, ArrayView2};
use sgdlab_linalg::Scalar;

impl Model {
    /// The logits' first and second t-derivatives along `p + t v` (`None` = zero).
    fn jet2_pass<T: Scalar>(&self, p: &[T], v: &[T], traces: &[Trace<T>]) -> (Option<Array2<T>>, Option<Array2<T>>) {
        let (mut h, mut h2) = (None, None);
        for (i, (l, t)) in self.layers().iter().zip(traces).enumerate() {
            let r = self.offset(i)..self.offset(i) + l.num_params();
            (h, h2) = l.jet2(&p[r.clone()], &v[r], t, h.as_ref(), h2.as_ref());
        }
        (h, h2)
    }

    /// `v_j^T H v_j` for each row `v_j` of `vs` (`[k, num_params]`), exact, by second-order
    /// forward mode (no backward pass; see the module documentation).
    pub fn hessian_quadratic_forms<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<Vec<T>, NnError> {
        self.check_batch(p, batch, obj)?;
        self.check_directions(&vs)?;
        // The forward pass and the logit gradient are all the forms need (no backward pass).
        let f = self.forward_traced(p, batch.x, &Mode::Eval);
        let (_, gz) = obj.loss.value_and_grad(f.logits.view(), &batch.targets, obj.reduction);
        Ok(self.quadratic_forms_with(p, &f, Some(&gz), batch, obj, vs))
    }

    /// [`Model::hessian_quadratic_forms`] from a cached forward pass of the same parameters and
    /// batch ([`Model::hvp_cache`]).
    pub fn hessian_quadratic_forms_cached<T: Scalar>(
        &self,
        p: &[T],
        cache: &HvpCache<T>,
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<Vec<T>, NnError> {
        self.check_cached(p, cache, batch, &vs)?;
        // g_z: the cotangent of the last layer's output (the logits). A model without layers has
        // no parameters, and both kinds of form are then zero.
        let gz = cache.cotangents.last().map(|c| &c.output);
        Ok(self.quadratic_forms_with(p, &cache.forward, gz, batch, obj, vs))
    }

    /// `v_j^T G v_j = (J v_j)^T H_z (J v_j)` for each row of `vs`: the generalised Gauss-Newton
    /// quadratic forms, from one jvp each.
    pub fn ggn_quadratic_forms<T: Scalar>(
        &self,
        p: &[T],
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<Vec<T>, NnError> {
        self.check_batch(p, batch, obj)?;
        self.check_directions(&vs)?;
        let f = self.forward_traced(p, batch.x, &Mode::Eval);
        Ok(self.quadratic_forms_with(p, &f, None, batch, obj, vs))
    }

    /// [`Model::ggn_quadratic_forms`] from a cached forward pass ([`Model::hvp_cache`]).
    pub fn ggn_quadratic_forms_cached<T: Scalar>(
        &self,
        p: &[T],
        cache: &HvpCache<T>,
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Result<Vec<T>, NnError> {
        self.check_cached(p, cache, batch, &vs)?;
        Ok(self.quadratic_forms_with(p, &cache.forward, None, batch, obj, vs))
    }

    /// The Hessian forms when the logit gradient `gz` is given, the GGN forms otherwise.
    fn quadratic_forms_with<T: Scalar>(
        &self,
        p: &[T],
        f: &Forward<T>,
        gz: Option<&Array2<T>>,
        batch: &Batch<'_, T>,
        obj: &Objective,
        vs: ArrayView2<'_, T>,
    ) -> Vec<T> {
        let dot = |a: &Array2<T>, b: &Array2<T>| a.iter().zip(b).map(|(&x, &y)| x * y).sum::<T>();
        vs.rows()
            .into_iter()
            .map(|v| {
                let v = v.as_standard_layout();
                let v = v.as_slice().expect("standard layout");
                let (dz, d2z) = if gz.is_some() {
                    self.jet2_pass(p, v, &f.traces)
                } else {
                    let (dz, _) = self.jvp_pass(p, Some(v), &f.traces, None);
                    (Some(dz), None)
                };
                let Some(dz) = dz else { return T::zero() };
                let hz = obj.loss.hessian_vp(f.logits.view(), &batch.targets, dz.view(), obj.reduction);
                let mut q = dot(&dz, &hz);
                if let (Some(d2z), Some(gz)) = (d2z, gz) {
                    q += dot(gz, &d2z);
                }
                q
            })
            .collect()
    }
}
