//! Expanding a study into a frozen plan of runs with content-hash ids.

use crate::error::StudyError;
use crate::spec::{MeasureSpec, StudySpec};
use serde::{Deserialize, Serialize};
use sgdlab_train::{RunSpec, content_hash};
use std::collections::BTreeMap;

/// One planned run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    /// Content hash of the resolved run spec and the measurement schedule.
    pub id: String,
    pub index: usize,
    pub seed: u64,
    /// Axis name -> value.
    pub knobs: BTreeMap<String, serde_json::Value>,
    /// The resolved run spec (TOML).
    pub run_spec: String,
}

/// The frozen plan (`plan.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub study: String,
    pub title: String,
    pub section: String,
    pub spec_hash: String,
    pub quick: bool,
    pub knobs: Vec<String>,
    pub measure: Vec<MeasureSpec>,
    pub runs: Vec<PlannedRun>,
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn substitute(v: &mut toml::Value, vars: &[(String, String)]) {
    match v {
        toml::Value::String(s) => {
            for (k, val) in vars {
                *s = s.replace(&format!("{{{k}}}"), val);
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, vars)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| substitute(x, vars)),
        _ => {}
    }
}

fn set_path(t: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = t;
    for p in &parts[..parts.len() - 1] {
        let e = cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = e.as_table_mut().ok_or_else(|| format!("'{p}' in '{key}' is not a table"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl StudySpec {
    /// Expands the study into its runs (grid or zip over axes, times seeds), with `quick`
    /// overrides applied when asked. Every run spec is resolved and validated here, before
    /// anything runs.
    pub fn plan(&self, quick: bool) -> Result<Plan, StudyError> {
        let mut axes = self.axes.clone();
        let mut seeds = self.seeds.clone();
        let mut measure = self.measure.clone();
        if quick {
            if let Some(n) = self.quick.seeds {
                seeds.truncate(n.max(1));
            }
            for (name, vals) in &self.quick.axes {
                let a = axes.iter_mut().find(|a| &a.name == name).ok_or_else(|| {
                    StudyError::Spec(format!("{}: quick.axes names unknown axis '{name}'", self.name))
                })?;
                a.values = vals
                    .as_array()
                    .cloned()
                    .ok_or_else(|| StudyError::Spec(format!("{}: quick.axes.{name} must be a list", self.name)))?;
            }
            if let Some(s) = self.quick.samples {
                measure.iter_mut().for_each(|m| m.samples = m.samples.min(s));
            }
        }
        let combos: Vec<Vec<usize>> = if axes.is_empty() {
            vec![vec![]]
        } else if self.zip {
            (0..axes[0].values.len()).map(|i| vec![i; axes.len()]).collect()
        } else {
            let mut c: Vec<Vec<usize>> = vec![vec![]];
            for a in &axes {
                c = c
                    .into_iter()
                    .flat_map(|p| (0..a.values.len()).map(move |i| [p.clone(), vec![i]].concat()))
                    .collect();
            }
            c
        };
        let measure_json = serde_json::to_string(&measure).expect("serialises");
        let mut runs = Vec::new();
        for combo in &combos {
            for &seed in &seeds {
                let mut t = self.base.clone();
                let vars: Vec<(String, String)> =
                    axes.iter().zip(combo).map(|(a, &i)| (a.name.clone(), value_text(&a.values[i]))).collect();
                let mut tv = toml::Value::Table(t);
                substitute(&mut tv, &vars);
                t = tv.as_table().cloned().expect("a table");
                for (a, &i) in axes.iter().zip(combo) {
                    if let Some(key) = &a.key {
                        set_path(&mut t, key, a.values[i].clone())
                            .map_err(|m| StudyError::Spec(format!("{}: axis '{}': {m}", self.name, a.name)))?;
                    }
                }
                t.insert("seed".into(), toml::Value::Integer(seed as i64));
                let text = toml::to_string(&t).map_err(|e| StudyError::Spec(format!("{}: {e}", self.name)))?;
                let label = format!("{} run {}", self.name, runs.len());
                let mut spec = RunSpec::from_toml(&text, &label)?;
                if quick && !self.quick.set.is_empty() {
                    spec = spec.with_overrides(&self.quick.set, &label)?;
                }
                let run_spec = spec.to_toml();
                let id = content_hash(&format!("{run_spec}\n{measure_json}"));
                let knobs = axes.iter().zip(combo).map(|(a, &i)| (a.name.clone(), to_json(&a.values[i]))).collect();
                runs.push(PlannedRun { id, index: runs.len(), seed, knobs, run_spec });
            }
        }
        let mut ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(StudyError::Spec(format!(
                "{}: two planned runs are identical (an axis changes nothing?)",
                self.name
            )));
        }
        Ok(Plan {
            study: self.name.clone(),
            title: self.title.clone(),
            section: self.section.clone(),
            spec_hash: content_hash(&self.to_toml()),
            quick,
            knobs: axes.iter().map(|a| a.name.clone()).collect(),
            measure,
            runs,
        })
    }
}
