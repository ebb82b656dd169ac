//! Statistics across runs with percentile-bootstrap confidence intervals over seeds.
//!
//! The bootstrap unit is the seed: a resample draws seeds with replacement and takes every run
//! of each drawn seed, so the runs of one seed (its arms, its points of a sweep) stay together,
//! and paired statistics (ratio, difference) pair the arms of one seed. A statistic that cannot
//! be formed (an arm without runs, a ratio of non-positive values, too few points for a
//! correlation) is not a number: it is an error saying why, and the claim reports no effect.

use crate::records::EffectRecord;
use crate::spec::{Arm, StatisticSpec};
use sgdlab_linalg::RngStream;
use sgdlab_linalg::stats::{self, bootstrap_ci};
use std::collections::BTreeMap;

/// One run's value as a statistic sees it.
#[derive(Debug, Clone, Copy)]
pub struct Obs<'a> {
    pub seed: u64,
    pub axes: &'a BTreeMap<String, serde_json::Value>,
    pub value: f64,
    /// The elements of a vector value (`paired_fraction` only; empty for a number, whose one
    /// element is `value`).
    pub elements: &'a [f64],
}

impl Obs<'_> {
    /// The value's elements: the vector's, or the number alone.
    pub fn elements(&self) -> &[f64] {
        if self.elements.is_empty() { std::slice::from_ref(&self.value) } else { self.elements }
    }
}

/// Whether a TOML value (from a spec) equals a JSON value (from a plan): numbers by value, so
/// `2000` matches `2000.0`.
pub fn same_value(spec: &toml::Value, plan: &serde_json::Value) -> bool {
    match (spec, plan) {
        (toml::Value::Integer(a), p) => p.as_f64() == Some(*a as f64),
        (toml::Value::Float(a), p) => p.as_f64() == Some(*a),
        (toml::Value::String(a), p) => p.as_str() == Some(a),
        (toml::Value::Boolean(a), p) => p.as_bool() == Some(*a),
        (toml::Value::Array(_) | toml::Value::Table(_) | toml::Value::Datetime(_), _) => {
            serde_json::to_value(spec).ok().as_ref() == Some(plan)
        }
    }
}

/// Whether a run with these axis values belongs to the arm.
pub fn in_arm(arm: &Arm, axes: &BTreeMap<String, serde_json::Value>) -> bool {
    arm.iter().all(|(k, v)| axes.get(k).is_some_and(|x| same_value(v, x)))
}

/// An arm in words: `batch_size = 2000`.
pub fn describe_arm(arm: &Arm) -> String {
    if arm.is_empty() {
        return "all runs".into();
    }
    arm.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
}

/// The statistic in words.
pub fn describe(s: &StatisticSpec) -> String {
    match s {
        StatisticSpec::Mean => "mean over runs".into(),
        StatisticSpec::Median => "median over runs".into(),
        StatisticSpec::Ratio { numerator, denominator } => format!(
            "geometric mean over seeds of value({}) / value({}), paired by seed",
            describe_arm(numerator),
            describe_arm(denominator)
        ),
        StatisticSpec::Difference { a, b } => {
            format!("mean over seeds of value({}) - value({}), paired by seed", describe_arm(a), describe_arm(b))
        }
        StatisticSpec::Spearman { axis } => format!("Spearman correlation of the value with {axis} over runs"),
        StatisticSpec::Kendall { axis } => format!("Kendall's tau-b of the value with {axis} over runs"),
        StatisticSpec::Slope { axis, log_x, log_y } => format!(
            "least-squares slope of {} against {} over runs",
            if *log_y { "log10(value)" } else { "the value" },
            if *log_x { format!("log10({axis})") } else { axis.clone() }
        ),
        StatisticSpec::Fraction(d) => format!("fraction of runs whose value is {}", d.predicate()),
        StatisticSpec::GapRecovered { a, b, c } => format!(
            "gap recovered (mean C - mean B) / (mean A - mean B), A = {}, B = {}, C = {}",
            describe_arm(a),
            describe_arm(b),
            describe_arm(c)
        ),
        StatisticSpec::PairedFraction(p) => format!(
            "fraction of seeds in which value({}) - value({}) is {} in {} of the elements, paired by seed",
            describe_arm(&p.a),
            describe_arm(&p.b),
            p.difference.predicate(),
            if p.elements_at_least >= 1.0 { "all".to_string() } else { format!("at least {}", p.elements_at_least) }
        ),
    }
}

/// The bootstrap units of a statistic: per seed, the indices of its observations.
fn units(obs: &[Obs<'_>]) -> Vec<(u64, Vec<usize>)> {
    let mut by: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, o) in obs.iter().enumerate() {
        by.entry(o.seed).or_default().push(i);
    }
    by.into_iter().collect()
}

/// The one observation of `seed` in `arm` (an error if there are several).
fn arm_value(obs: &[Obs<'_>], ids: &[usize], arm: &Arm) -> Result<Option<f64>, String> {
    Ok(arm_obs(obs, ids, arm)?.map(|i| obs[i].value))
}

/// The index of the one observation of `seed` in `arm` (an error if there are several).
fn arm_obs(obs: &[Obs<'_>], ids: &[usize], arm: &Arm) -> Result<Option<usize>, String> {
    let mut found = ids.iter().filter(|&&i| in_arm(arm, obs[i].axes));
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some(&i), None) => Ok(Some(i)),
        (Some(&i), Some(_)) => Err(format!(
            "seed {} has several runs with {}: restrict the population or decide within an axis",
            obs[i].seed,
            describe_arm(arm)
        )),
    }
}

fn axis_of(o: &Obs<'_>, axis: &str) -> Result<f64, String> {
    let v = o.axes.get(axis).ok_or_else(|| format!("a run has no axis '{axis}'"))?;
    v.as_f64().ok_or_else(|| format!("axis '{axis}' must be numeric for this statistic, got {v}"))
}

fn arm_mean(obs: &[Obs<'_>], idx: &[usize], arm: &Arm) -> f64 {
    let v: Vec<f64> = idx.iter().filter(|&&i| in_arm(arm, obs[i].axes)).map(|&i| obs[i].value).collect();
    if v.is_empty() { f64::NAN } else { stats::mean(&v) }
}

/// How a statistic is computed on a resample: from per-unit paired numbers, or from the pooled
/// observations.
enum Prepared {
    /// One number per unit (log-ratios, differences); the statistic is their mean, then `exp`
    /// for ratios.
    Paired { per_unit: Vec<f64>, exp: bool },
    /// The pooled observations of the drawn units.
    Pooled,
}

/// The statistic, its interval and the number of seeds it rests on.
pub fn effect(
    spec: &StatisticSpec,
    obs: &[Obs<'_>],
    level: f64,
    resamples: usize,
    stream: &RngStream,
) -> Result<EffectRecord, String> {
    if obs.is_empty() {
        return Err("no run has a value".into());
    }
    let all_units = units(obs);
    // Paired statistics keep the seeds that have both arms.
    let prepared = match spec {
        StatisticSpec::Ratio { numerator, denominator }
        | StatisticSpec::Difference { a: numerator, b: denominator } => {
            let ratio = matches!(spec, StatisticSpec::Ratio { .. });
            let mut per_unit = Vec::new();
            for (seed, ids) in &all_units {
                if let (Some(a), Some(b)) = (arm_value(obs, ids, numerator)?, arm_value(obs, ids, denominator)?) {
                    if ratio {
                        if !(a > 0.0 && b > 0.0) {
                            return Err(format!("a ratio needs positive values; seed {seed} has {a} and {b}"));
                        }
                        per_unit.push((a / b).ln());
                    } else {
                        per_unit.push(a - b);
                    }
                }
            }
            if per_unit.is_empty() {
                let count = |arm: &Arm| obs.iter().filter(|o| in_arm(arm, o.axes)).count();
                return Err(format!(
                    "no seed has runs in both arms ({}: {} runs; {}: {} runs)",
                    describe_arm(numerator),
                    count(numerator),
                    describe_arm(denominator),
                    count(denominator)
                ));
            }
            Prepared::Paired { per_unit, exp: ratio }
        }
        StatisticSpec::PairedFraction(p) => {
            let mut per_unit = Vec::new();
            for (seed, ids) in &all_units {
                if let (Some(i), Some(j)) = (arm_obs(obs, ids, &p.a)?, arm_obs(obs, ids, &p.b)?) {
                    let (x, y) = (obs[i].elements(), obs[j].elements());
                    if x.len() != y.len() {
                        return Err(format!(
                            "seed {seed}: the arms' values have {} and {} elements; paired_fraction compares them \
                             element by element",
                            x.len(),
                            y.len()
                        ));
                    }
                    let holds = x.iter().zip(y).filter(|(u, v)| p.difference.holds(*u - *v)).count();
                    per_unit.push(if holds as f64 >= p.elements_at_least * x.len() as f64 - 1e-9 { 1.0 } else { 0.0 });
                }
            }
            if per_unit.is_empty() {
                let count = |arm: &Arm| obs.iter().filter(|o| in_arm(arm, o.axes)).count();
                return Err(format!(
                    "no seed has runs in both arms ({}: {} runs; {}: {} runs)",
                    describe_arm(&p.a),
                    count(&p.a),
                    describe_arm(&p.b),
                    count(&p.b)
                ));
            }
            Prepared::Paired { per_unit, exp: false }
        }
        StatisticSpec::GapRecovered { a, b, c } => {
            for arm in [a, b, c] {
                if !obs.iter().any(|o| in_arm(arm, o.axes)) {
                    return Err(format!("arm {} has no runs", describe_arm(arm)));
                }
            }
            Prepared::Pooled
        }
        StatisticSpec::Spearman { axis } | StatisticSpec::Kendall { axis } | StatisticSpec::Slope { axis, .. } => {
            for o in obs {
                axis_of(o, axis)?;
            }
            Prepared::Pooled
        }
        StatisticSpec::Mean | StatisticSpec::Median | StatisticSpec::Fraction(_) => Prepared::Pooled,
    };
    let pooled = |chosen: &[usize]| -> f64 {
        let idx: Vec<usize> = chosen.iter().flat_map(|&u| all_units[u].1.iter().copied()).collect();
        let vals = || idx.iter().map(|&i| obs[i].value).collect::<Vec<f64>>();
        match spec {
            StatisticSpec::Mean => stats::mean(&vals()),
            StatisticSpec::Median => stats::median(&vals()),
            StatisticSpec::Fraction(d) => {
                idx.iter().filter(|&&i| d.holds(obs[i].value)).count() as f64 / idx.len().max(1) as f64
            }
            StatisticSpec::Spearman { axis } | StatisticSpec::Kendall { axis } => {
                let x: Vec<f64> = idx.iter().map(|&i| axis_of(&obs[i], axis).unwrap_or(f64::NAN)).collect();
                let r = if matches!(spec, StatisticSpec::Spearman { .. }) {
                    stats::spearman(&x, &vals())
                } else {
                    stats::kendall_tau_b(&x, &vals())
                };
                r.unwrap_or(f64::NAN)
            }
            StatisticSpec::Slope { axis, log_x, log_y } => {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                for &i in &idx {
                    let a = axis_of(&obs[i], axis).unwrap_or(f64::NAN);
                    let (a, b) =
                        (if *log_x { a.log10() } else { a }, if *log_y { obs[i].value.log10() } else { obs[i].value });
                    if a.is_finite() && b.is_finite() {
                        x.push(a);
                        y.push(b);
                    }
                }
                stats::linear_fit(&x, &y).map_or(f64::NAN, |f| f.slope)
            }
            StatisticSpec::GapRecovered { a, b, c } => {
                let (ma, mb, mc) = (arm_mean(obs, &idx, a), arm_mean(obs, &idx, b), arm_mean(obs, &idx, c));
                if ma == mb { f64::NAN } else { (mc - mb) / (ma - mb) }
            }
            StatisticSpec::Ratio { .. } | StatisticSpec::Difference { .. } | StatisticSpec::PairedFraction(_) => {
                f64::NAN
            }
        }
    };
    let (n_units, runs) = match &prepared {
        Prepared::Paired { per_unit, .. } => (per_unit.len(), 2 * per_unit.len()),
        Prepared::Pooled => (all_units.len(), obs.len()),
    };
    let stat = |chosen: &[usize]| -> f64 {
        match &prepared {
            Prepared::Paired { per_unit, exp } => {
                let m = chosen.iter().map(|&i| per_unit[i]).sum::<f64>() / chosen.len() as f64;
                if *exp { m.exp() } else { m }
            }
            Prepared::Pooled => pooled(chosen),
        }
    };
    let ci = bootstrap_ci(n_units, stat, resamples, level, stream).map_err(|e| e.to_string())?;
    if !ci.estimate.is_finite() {
        return Err(format!("the statistic is undefined on these runs ({} runs, {n_units} seeds)", obs.len()));
    }
    if !(ci.lower.is_finite() && ci.upper.is_finite()) {
        return Err(format!(
            "the bootstrap interval is undefined ({} of {resamples} resamples gave no value)",
            ci.nan_replicates
        ));
    }
    Ok(EffectRecord {
        value: ci.estimate,
        ci_low: ci.lower,
        ci_high: ci.upper,
        level,
        seeds: n_units,
        runs,
        method: format!(
            "percentile bootstrap over seeds ({n_units} seeds), {resamples} resamples{}",
            if ci.nan_replicates > 0 { format!(", {} without a value", ci.nan_replicates) } else { String::new() }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DecisionSpec;
    use serde_json::json;

    fn axes(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn arm(k: &str, v: i64) -> Arm {
        [(k.to_string(), toml::Value::Integer(v))].into()
    }

    fn stream() -> RngStream {
        RngStream::new(0).child("test")
    }

    #[test]
    fn paired_ratio_is_the_geometric_mean_of_per_seed_ratios() {
        let a32 = axes(&[("b", json!(32))]);
        let a2k = axes(&[("b", json!(2000.0))]);
        // Ratios 2 and 8 per seed: geometric mean 4.
        let obs = [
            Obs { seed: 0, axes: &a32, value: 1.0, elements: &[] },
            Obs { seed: 0, axes: &a2k, value: 2.0, elements: &[] },
            Obs { seed: 1, axes: &a32, value: 0.5, elements: &[] },
            Obs { seed: 1, axes: &a2k, value: 4.0, elements: &[] },
        ];
        let s = StatisticSpec::Ratio { numerator: arm("b", 2000), denominator: arm("b", 32) };
        let e = effect(&s, &obs, 0.95, 1000, &stream()).unwrap();
        assert!((e.value - 4.0).abs() < 1e-12, "{e:?}");
        assert!(e.ci_low >= 2.0 - 1e-12 && e.ci_high <= 8.0 + 1e-12);
        assert_eq!((e.seeds, e.runs), (2, 4));
        let d = StatisticSpec::Difference { a: arm("b", 2000), b: arm("b", 32) };
        assert!((effect(&d, &obs, 0.95, 1000, &stream()).unwrap().value - 2.25).abs() < 1e-12);
    }

    #[test]
    fn a_missing_arm_gives_no_effect_and_says_why() {
        let a32 = axes(&[("b", json!(32))]);
        let obs = [
            Obs { seed: 0, axes: &a32, value: 1.0, elements: &[] },
            Obs { seed: 1, axes: &a32, value: 2.0, elements: &[] },
        ];
        let s = StatisticSpec::Ratio { numerator: arm("b", 2000), denominator: arm("b", 32) };
        let e = effect(&s, &obs, 0.95, 1000, &stream()).unwrap_err();
        assert!(e.contains("no seed has runs in both arms") && e.contains("b = 2000: 0 runs"), "{e}");
        let neg = [Obs { seed: 0, axes: &a32, value: -1.0, elements: &[] }];
        let e = effect(
            &StatisticSpec::Ratio { numerator: arm("b", 32), denominator: arm("b", 32) },
            &neg,
            0.95,
            100,
            &stream(),
        );
        assert!(e.unwrap_err().contains("positive"));
        assert!(effect(&StatisticSpec::Mean, &[], 0.95, 100, &stream()).is_err());
    }

    #[test]
    fn correlations_slopes_fractions_and_gaps() {
        let ax: Vec<_> = (1..=4).map(|i| axes(&[("lr", json!(f64::from(i))), ("arm", json!(i))])).collect();
        let mut obs = Vec::new();
        for seed in 0..3u64 {
            for (i, a) in ax.iter().enumerate() {
                obs.push(Obs { seed, axes: a, value: 10f64.powi(2 * i as i32 + 1) + seed as f64, elements: &[] });
            }
        }
        // Three runs per lr value (ties in the axis): scipy.stats.spearmanr / kendalltau of the same
        // 12 points give 0.9716254134469436 and 0.9045340337332908.
        let sp = effect(&StatisticSpec::Spearman { axis: "lr".into() }, &obs, 0.95, 500, &stream()).unwrap();
        assert!((sp.value - 0.971_625_413_446_943_6).abs() < 1e-12, "{sp:?}");
        let kd = effect(&StatisticSpec::Kendall { axis: "lr".into() }, &obs, 0.95, 500, &stream()).unwrap();
        assert!((kd.value - 0.904_534_033_733_290_8).abs() < 1e-12, "{kd:?}");
        let fr = effect(&StatisticSpec::Fraction(DecisionSpec::Greater(500.0)), &obs, 0.95, 500, &stream()).unwrap();
        assert!((fr.value - 0.75).abs() < 1e-12, "3 of the 4 values per seed exceed 500: {fr:?}");
        // log10(10^(2 lr - 1) + seed) against lr: numpy.polyfit of the same 12 points gives slope
        // 1.9878996608987602.
        let sl =
            effect(&StatisticSpec::Slope { axis: "lr".into(), log_x: false, log_y: true }, &obs, 0.95, 500, &stream())
                .unwrap();
        assert!((sl.value - 1.987_899_660_898_760_2).abs() < 1e-12, "{sl:?}");
        // Arms 1, 2, 3: means 10+1, 1000+1, 1e5+1: C recovers (1001 - 11) / (100001 - 11) of the gap.
        let g = StatisticSpec::GapRecovered { a: arm("arm", 3), b: arm("arm", 1), c: arm("arm", 2) };
        let e = effect(&g, &obs, 0.95, 500, &stream()).unwrap();
        assert!((e.value - 990.0 / 99990.0).abs() < 1e-12, "{e:?}");
        let m = effect(&StatisticSpec::Median, &obs, 0.95, 500, &stream()).unwrap();
        assert!(m.ci_low <= m.value && m.value <= m.ci_high);
    }

    #[test]
    fn paired_fraction_counts_seeds_whose_elements_mostly_satisfy_the_predicate() {
        use crate::spec::PairedFractionSpec;
        let sgd = axes(&[("opt", json!(1))]);
        let adam = axes(&[("opt", json!(2))]);
        // Five checkpoints per run. Seed 0: sgd below adam at all 5; seed 1: at 4 of 5; seed 2:
        // at 3 of 5; seed 3: adam has no run (left out).
        let a = [[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 3.0], [1.0, 1.0, 1.0, 3.0, 3.0]];
        let b = [2.0; 5];
        let mut obs = Vec::new();
        for (seed, x) in a.iter().enumerate() {
            obs.push(Obs { seed: seed as u64, axes: &sgd, value: f64::NAN, elements: x });
            obs.push(Obs { seed: seed as u64, axes: &adam, value: f64::NAN, elements: &b });
        }
        obs.push(Obs { seed: 3, axes: &sgd, value: f64::NAN, elements: &b });
        let spec = |share: f64| {
            StatisticSpec::PairedFraction(PairedFractionSpec {
                a: arm("opt", 1),
                b: arm("opt", 2),
                difference: DecisionSpec::Less(0.0),
                elements_at_least: share,
            })
        };
        let e = effect(&spec(0.8), &obs, 0.95, 500, &stream()).unwrap();
        assert!((e.value - 2.0 / 3.0).abs() < 1e-12 && e.seeds == 3, "seeds 0 and 1 of 3 count: {e:?}");
        assert!((effect(&spec(1.0), &obs, 0.95, 500, &stream()).unwrap().value - 1.0 / 3.0).abs() < 1e-12);
        assert!((effect(&spec(0.6), &obs, 0.95, 500, &stream()).unwrap().value - 1.0).abs() < 1e-12);
        // Numbers: one element each; seed 0 has 1 - 2 < 0, seed 1 has 3 - 2 > 0.
        let nums = [
            Obs { seed: 0, axes: &sgd, value: 1.0, elements: &[] },
            Obs { seed: 0, axes: &adam, value: 2.0, elements: &[] },
            Obs { seed: 1, axes: &sgd, value: 3.0, elements: &[] },
            Obs { seed: 1, axes: &adam, value: 2.0, elements: &[] },
        ];
        assert!((effect(&spec(1.0), &nums, 0.95, 500, &stream()).unwrap().value - 0.5).abs() < 1e-12);
        // Vectors of different lengths are refused, naming the seed.
        let short = [Obs { seed: 0, axes: &sgd, value: 1.0, elements: &[1.0, 2.0] }, nums[1]];
        let err = effect(&spec(1.0), &short, 0.95, 500, &stream()).unwrap_err();
        assert!(err.contains("seed 0") && err.contains("2 and 1 elements"), "{err}");
        let err = effect(&spec(1.0), &nums[..1], 0.95, 500, &stream()).unwrap_err();
        assert!(err.contains("no seed has runs in both arms"), "{err}");
    }

    #[test]
    fn ties_and_constant_values_give_no_correlation() {
        let a = axes(&[("lr", json!(1.0))]);
        let obs = [
            Obs { seed: 0, axes: &a, value: 1.0, elements: &[] },
            Obs { seed: 1, axes: &a, value: 2.0, elements: &[] },
        ];
        let e = effect(&StatisticSpec::Spearman { axis: "lr".into() }, &obs, 0.95, 100, &stream()).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
    }
}
