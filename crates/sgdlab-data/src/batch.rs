//! Seeded batch plans: the order in which a split's examples are visited, epoch by epoch.

use crate::DataError;
use rand::seq::SliceRandom;
use sgdlab_linalg::RngStream;

/// The mini-batches of every epoch over `n` examples.
///
/// Epoch `e`'s order is a uniform random permutation drawn from the child stream `epoch-{e}` of
/// the plan's stream (or the identity when `shuffle` is off), cut into consecutive batches of
/// `batch_size`; the last, smaller batch is kept unless `drop_last`. Because each epoch's order
/// depends only on the stream and `e`, a run resumed at any epoch needs no stored RNG state, and
/// two plans with the same stream give the same batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    n: usize,
    batch_size: usize,
    drop_last: bool,
    shuffle: bool,
    stream: RngStream,
}

impl BatchPlan {
    /// A shuffled plan over `n` examples. `batch_size >= n` gives one full batch per epoch.
    /// Errors if `n` or `batch_size` is zero.
    pub fn new(n: usize, batch_size: usize, drop_last: bool, stream: RngStream) -> Result<BatchPlan, DataError> {
        if n == 0 {
            return Err(DataError::invalid("batch plan", "cannot batch an empty split"));
        }
        if batch_size == 0 {
            return Err(DataError::invalid("batch plan", "batch size must be at least 1"));
        }
        Ok(BatchPlan { n, batch_size, drop_last, shuffle: true, stream })
    }

    /// An unshuffled plan (every epoch visits `0..n` in order), e.g. for evaluation.
    pub fn sequential(n: usize, batch_size: usize) -> Result<BatchPlan, DataError> {
        let mut plan = BatchPlan::new(n, batch_size, false, RngStream::new(0))?;
        plan.shuffle = false;
        Ok(plan)
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false (a plan has at least one example).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The batch size (the last batch of an epoch may be smaller unless `drop_last`).
    pub fn batch_size(&self) -> usize {
        self.batch_size.min(self.n)
    }

    /// Batches in every epoch: `ceil(n / b)`, or `floor(n / b)` with `drop_last` (at least 1:
    /// a batch size above `n` gives one batch of all examples).
    pub fn batches_per_epoch(&self) -> usize {
        let b = self.batch_size();
        if self.drop_last { self.n / b } else { self.n.div_ceil(b) }
    }

    /// The permutation of `0..n` visited in epoch `e` (including any examples dropped at the end).
    pub fn epoch_order(&self, e: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.n).collect();
        if self.shuffle {
            let mut rng = self.stream.child(&format!("epoch-{e}")).rng();
            order.shuffle(&mut rng);
        }
        order
    }

    /// The batches of epoch `e`, each a list of example indices.
    pub fn epoch(&self, e: u64) -> Vec<Vec<usize>> {
        let b = self.batch_size();
        let order = self.epoch_order(e);
        order.chunks(b).take(self.batches_per_epoch()).map(<[usize]>::to_vec).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cover_every_example_once_and_differ() {
        let plan = BatchPlan::new(10, 3, false, RngStream::new(5).child("batches")).unwrap();
        assert_eq!(plan.batches_per_epoch(), 4);
        let e0 = plan.epoch(0);
        let e1 = plan.epoch(1);
        assert_eq!(e0.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let mut all: Vec<usize> = e0.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_ne!(e0, e1);
        // Resuming: a fresh plan from the same stream gives the same epoch 1.
        let again = BatchPlan::new(10, 3, false, RngStream::new(5).child("batches")).unwrap();
        assert_eq!(again.epoch(1), e1);
    }

    #[test]
    fn drop_last_and_full_batch() {
        let plan = BatchPlan::new(10, 3, true, RngStream::new(1)).unwrap();
        assert_eq!(plan.batches_per_epoch(), 3);
        assert!(plan.epoch(7).iter().all(|b| b.len() == 3));
        let full = BatchPlan::new(10, 64, true, RngStream::new(1)).unwrap();
        assert_eq!(full.batches_per_epoch(), 1);
        assert_eq!(full.epoch(0)[0].len(), 10);
        let seq = BatchPlan::sequential(5, 2).unwrap();
        assert_eq!(seq.epoch(3), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert!(BatchPlan::new(0, 3, false, RngStream::new(1)).is_err());
        assert!(BatchPlan::new(3, 0, false, RngStream::new(1)).is_err());
    }
}
