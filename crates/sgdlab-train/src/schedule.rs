//! Learning-rate schedules.

use crate::spec::ScheduleSpec;

impl ScheduleSpec {
    fn warmup(&self) -> u64 {
        match self {
            ScheduleSpec::Constant { warmup_steps }
            | ScheduleSpec::Step { warmup_steps, .. }
            | ScheduleSpec::Cosine { warmup_steps, .. }
            | ScheduleSpec::LargeThenSmall { warmup_steps, .. } => *warmup_steps,
        }
    }

    /// The learning rate of update number `step` (0-based) out of `total`, for base rate `lr`.
    ///
    /// Linear warm-up: `lr * (step + 1) / warmup_steps` for `step < warmup_steps`; the schedule
    /// proper then runs on the same step count (it is not shifted).
    pub fn lr_at(&self, lr: f64, step: u64, total: u64) -> f64 {
        let w = self.warmup();
        let base = match self {
            ScheduleSpec::Constant { .. } => lr,
            ScheduleSpec::Step { step_size, milestones, gamma, .. } => {
                let k = if milestones.is_empty() {
                    step.checked_div(*step_size).unwrap_or(0)
                } else {
                    milestones.iter().filter(|&&m| step >= m).count() as u64
                };
                lr * gamma.powi(k as i32)
            }
            ScheduleSpec::Cosine { min_lr, .. } => {
                let t = if total <= 1 { 0.0 } else { step as f64 / (total - 1) as f64 };
                min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
            }
            ScheduleSpec::LargeThenSmall { switch_step, small_lr, .. } => {
                if step < *switch_step {
                    lr
                } else {
                    *small_lr
                }
            }
        };
        if step < w { base * (step + 1) as f64 / w as f64 } else { base }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_formulas() {
        let c = ScheduleSpec::Constant { warmup_steps: 4 };
        assert_eq!(c.lr_at(0.4, 0, 100), 0.1);
        assert_eq!(c.lr_at(0.4, 3, 100), 0.4);
        assert_eq!(c.lr_at(0.4, 50, 100), 0.4);
        let s = ScheduleSpec::Step { step_size: 10, milestones: vec![], gamma: 0.5, warmup_steps: 0 };
        assert_eq!(s.lr_at(1.0, 9, 100), 1.0);
        assert_eq!(s.lr_at(1.0, 10, 100), 0.5);
        assert_eq!(s.lr_at(1.0, 25, 100), 0.25);
        let m = ScheduleSpec::Step { step_size: 0, milestones: vec![5, 20], gamma: 0.1, warmup_steps: 0 };
        assert!((m.lr_at(1.0, 20, 100) - 0.01).abs() < 1e-15);
        let cos = ScheduleSpec::Cosine { min_lr: 0.0, warmup_steps: 0 };
        assert_eq!(cos.lr_at(2.0, 0, 11), 2.0);
        assert!((cos.lr_at(2.0, 5, 11) - 1.0).abs() < 1e-15);
        assert!(cos.lr_at(2.0, 10, 11).abs() < 1e-15);
        let ls = ScheduleSpec::LargeThenSmall { switch_step: 3, small_lr: 0.01, warmup_steps: 0 };
        assert_eq!((ls.lr_at(0.5, 2, 9), ls.lr_at(0.5, 3, 9)), (0.5, 0.01));
    }
}
