//! Arms, series and their colours.
//!
//! An *arm* is a combination of axis values: the runs that differ only by seed. Its key lists the
//! run's value of every axis of the plan (in `plan.json` `axes` order; `None` where the run's
//! sweeps do not have that axis). Arms are sorted by their values (numbers numerically, then
//! text; a missing value first) and numbered; arm `i` has colour `i` of the palette in every
//! figure of the study.
//!
//! Axes that do not tell arms apart are left out of labels: an axis with one value, and an axis
//! whose value follows from the axes before it (the `arch` of a zipped `depth`/`arch` sweep).
//!
//! A figure's *series* are groups of runs drawn in one colour: arms, or (in `final_vs_axis`,
//! where the x axis runs over arms) the combinations of the remaining axes. When every series of
//! a figure is one arm, it gets the arm's colour; otherwise series are numbered among the
//! study's combinations of the same axes, so a series has the same colour in every figure that
//! groups by the same axes.

use crate::format::{axis_words, value_text};
use plotters::style::RGBColor;
use sgdlab_studies::verdict::value_order;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A run's values of some axes (`None`: the run has no value of that axis).
pub(crate) type Key = Vec<Option<serde_json::Value>>;

/// Tableau 10, in order.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];

/// Colour number `i` (the palette repeats after 10).
pub(crate) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The colour as CSS (`#4e79a7`).
pub(crate) fn css_colour(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn cmp_value(a: &Option<serde_json::Value>, b: &Option<serde_json::Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => value_order(x, y),
    }
}

/// Orders keys value by value.
pub(crate) fn cmp_key(a: &Key, b: &Key) -> Ordering {
    a.iter().zip(b).map(|(x, y)| cmp_value(x, y)).find(|o| o.is_ne()).unwrap_or(a.len().cmp(&b.len()))
}

/// Sorted, without repeats.
fn distinct(mut keys: Vec<Key>) -> Vec<Key> {
    keys.sort_by(cmp_key);
    keys.dedup();
    keys
}

/// The arms of a study and the axis values of every planned run.
pub(crate) struct Arms {
    /// Every axis of the plan.
    pub axes: Vec<String>,
    /// The axes that tell arms apart (indices into `axes`).
    pub shown: Vec<usize>,
    /// Every planned run's values of all axes (plan order).
    pub run_keys: Vec<Key>,
    /// The arms (keys over `shown`), sorted.
    pub arms: Vec<Key>,
}

impl Arms {
    /// The arms of planned runs with these axis values.
    pub fn new(axes: &[String], runs: &[&BTreeMap<String, serde_json::Value>]) -> Self {
        let run_keys: Vec<Key> = runs.iter().map(|a| axes.iter().map(|k| a.get(k).cloned()).collect()).collect();
        let all: Vec<&Key> = run_keys.iter().collect();
        let shown = distinguishing(&all, &[], axes.len());
        let arms = distinct(run_keys.iter().map(|k| restrict(k, &shown)).collect());
        Arms { axes: axes.to_vec(), shown, run_keys, arms }
    }

    /// The index of an axis.
    pub fn axis(&self, name: &str) -> Option<usize> {
        self.axes.iter().position(|a| a == name)
    }

    /// The arm number of planned run `run`.
    pub fn arm_of(&self, run: usize) -> usize {
        let k = restrict(&self.run_keys[run], &self.shown);
        self.arms.iter().position(|a| *a == k).expect("every run's arm is listed")
    }

    /// The axes that tell the given runs apart, starting with `first` (kept in the order given),
    /// then every other axis that varies among them and does not follow from those before it.
    pub fn series_axes(&self, runs: &[usize], first: &[usize]) -> Vec<usize> {
        let keys: Vec<&Key> = runs.iter().map(|&r| &self.run_keys[r]).collect();
        let mut out = first.to_vec();
        out.extend(distinguishing(&keys, first, self.axes.len()));
        out
    }

    /// Colours for series over `axes` with these keys: arm colours when every key is one arm of
    /// the study, else numbers among the study's distinct keys over `axes`.
    pub fn series_colours(&self, axes: &[usize], keys: &[Key]) -> Vec<RGBColor> {
        let arm_of_key = |key: &Key| -> Option<usize> {
            let mut arms = self
                .run_keys
                .iter()
                .enumerate()
                .filter(|(_, k)| restrict(k, axes) == *key)
                .map(|(i, _)| self.arm_of(i))
                .collect::<Vec<_>>();
            arms.sort_unstable();
            arms.dedup();
            (arms.len() == 1).then(|| arms[0])
        };
        let single: Option<Vec<usize>> = keys.iter().map(arm_of_key).collect();
        match single {
            Some(arms) => arms.into_iter().map(colour).collect(),
            None => {
                let all = distinct(self.run_keys.iter().map(|k| restrict(k, axes)).collect());
                keys.iter().map(|k| colour(all.iter().position(|a| a == k).unwrap_or(0))).collect()
            }
        }
    }

    /// A key over `axes` in words: "batch size = 32, activation = relu" (empty: "all runs").
    pub fn label(&self, axes: &[usize], key: &Key) -> String {
        let parts: Vec<String> = axes
            .iter()
            .zip(key)
            .filter_map(|(&a, v)| v.as_ref().map(|v| format!("{} = {}", axis_words(&self.axes[a]), value_text(v))))
            .collect();
        if parts.is_empty() { "all runs".into() } else { parts.join(", ") }
    }

    /// The values of a key over `axes`, without the axis names: "32, relu".
    pub fn values(&self, key: &Key) -> String {
        let parts: Vec<String> = key.iter().map(|v| v.as_ref().map_or_else(|| "none".into(), value_text)).collect();
        if parts.is_empty() { "all runs".into() } else { parts.join(", ") }
    }

    /// The names of `axes` in words: "batch size, act".
    pub fn heading(&self, axes: &[usize]) -> String {
        axes.iter().map(|&a| axis_words(&self.axes[a])).collect::<Vec<_>>().join(", ")
    }

    /// The label of arm `i`.
    pub fn arm_label(&self, i: usize) -> String {
        self.label(&self.shown, &self.arms[i])
    }
}

/// The values of `axes` in `key` (full key over all axes).
pub(crate) fn restrict(key: &Key, axes: &[usize]) -> Key {
    axes.iter().map(|&a| key[a].clone()).collect()
}

/// Axes (other than `given`) that take at least two values among `keys` and do not follow from
/// `given` and the axes chosen before them.
fn distinguishing(keys: &[&Key], given: &[usize], n_axes: usize) -> Vec<usize> {
    let mut chosen: Vec<usize> = given.to_vec();
    let mut out = Vec::new();
    for a in 0..n_axes {
        if given.contains(&a) {
            continue;
        }
        let mut values: Vec<&serde_json::Value> = keys.iter().filter_map(|k| k[a].as_ref()).collect();
        values.sort_by(|x, y| value_order(x, y));
        values.dedup();
        if values.len() < 2 || follows_from(keys, &chosen, a) {
            continue;
        }
        chosen.push(a);
        out.push(a);
    }
    out
}

/// Whether the value of axis `a` is the same in all keys that agree on `from`, and every key
/// with a value of `a` has values of all of `from` (a run of another sweep, without the `from`
/// axes, carries its own information).
fn follows_from(keys: &[&Key], from: &[usize], a: usize) -> bool {
    let mut seen: Vec<(Key, &Option<serde_json::Value>)> = Vec::new();
    for k in keys {
        let f = restrict(k, from);
        if k[a].is_some() && f.iter().any(Option::is_none) {
            return false;
        }
        match seen.iter().find(|(g, _)| *g == f) {
            Some((_, v)) if *v != &k[a] => return false,
            Some(_) => {}
            None => seen.push((f, &k[a])),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn axes(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn zipped_axes_and_constant_axes_are_not_shown() {
        let names = vec!["depth".to_string(), "arch".to_string(), "lr".to_string()];
        let mut runs = Vec::new();
        for (d, a) in [(1, "mlp:a"), (4, "mlp:abcd"), (2, "mlp:ab")] {
            for _seed in 0..2 {
                runs.push(axes(&[("depth", json!(d)), ("arch", json!(a)), ("lr", json!(0.1))]));
            }
        }
        let refs: Vec<_> = runs.iter().collect();
        let arms = Arms::new(&names, &refs);
        assert_eq!(arms.shown, vec![0]);
        assert_eq!(arms.arms.len(), 3);
        // Sorted numerically: depth 1, 2, 4.
        assert_eq!(arms.arm_label(1), "depth = 2");
        assert_eq!(arms.arm_of(2), 2);
    }

    #[test]
    fn series_of_a_partial_grouping_keep_their_colour_and_arms_keep_theirs() {
        let names = vec!["depth".to_string(), "act".to_string()];
        let mut runs = Vec::new();
        for d in [1, 2] {
            for a in ["relu", "identity"] {
                runs.push(axes(&[("depth", json!(d)), ("act", json!(a))]));
            }
        }
        let refs: Vec<_> = runs.iter().collect();
        let arms = Arms::new(&names, &refs);
        assert_eq!(arms.shown, vec![0, 1]);
        // Grouped by act alone: two series, each spanning two arms, numbered among act values.
        let keys = vec![vec![Some(json!("relu"))], vec![Some(json!("identity"))]];
        assert_eq!(arms.series_colours(&[1], &keys), vec![colour(1), colour(0)]);
        // Grouped by both axes: the arm colours.
        let keys = vec![vec![Some(json!(2)), Some(json!("identity"))]];
        assert_eq!(arms.series_colours(&[0, 1], &keys), vec![colour(2)]);
        assert_eq!(arms.series_axes(&[0, 1, 2, 3], &[0]), vec![0, 1]);
        assert_eq!(arms.series_axes(&[0, 2], &[0]), vec![0], "act is constant among these runs");
    }

    #[test]
    fn runs_without_an_axis_of_another_sweep() {
        // One-at-a-time sweeps: the base point has both axes, the others one each.
        let names = vec!["lr".to_string(), "batch_size".to_string()];
        let runs = [
            axes(&[("lr", json!(0.1)), ("batch_size", json!(32))]),
            axes(&[("lr", json!(0.01))]),
            axes(&[("batch_size", json!(128))]),
        ];
        let refs: Vec<_> = runs.iter().collect();
        let arms = Arms::new(&names, &refs);
        assert_eq!(arms.arms.len(), 3);
        assert_eq!(arms.arm_label(0), "batch size = 128");
        assert_eq!(arms.arm_label(1), "learning rate = 0.01");
        // Within the lr sweep (runs 0 and 1) only lr varies.
        assert_eq!(arms.series_axes(&[0, 1], &[]), vec![0]);
    }
}
