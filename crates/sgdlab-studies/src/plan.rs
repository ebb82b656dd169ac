//! Expanding a study into its frozen plan, and checking everything before anything runs: every
//! measurement's probe and options (through the probe registry), every run spec (each error
//! pointing into the study file's `[base]` or at the axis that set the key), and every metric a
//! claim or figure reads.
//!
//! Each sweep block expands the base over its axes (grid or zip) and the seeds. Runs of different
//! blocks with the same resolved spec are one run (a base point shared by one-at-a-time sweeps),
//! belonging to every block that planned it; within one block two identical runs are an error
//! (an axis that changes nothing).

use crate::error::StudyError;
use crate::metrics;
use crate::records::{PlanRecord, PlannedMeasure, PlannedRun};
use crate::span::{self, Seg, SpanIndex};
use crate::spec::{LoadedStudy, SweepMode, SweepSpec};
use sgdlab_probes::registry;
use sgdlab_train::{RunSpec, content_hash};
use std::collections::BTreeMap;

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
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) | toml::Value::Datetime(_) => {}
    }
}

/// The first `{name}` template left in a string of `v` whose name is one of `names`.
fn leftover_template(v: &toml::Value, names: &[&str]) -> Option<String> {
    match v {
        toml::Value::String(s) => names.iter().find(|n| s.contains(&format!("{{{n}}}"))).map(|n| n.to_string()),
        toml::Value::Array(a) => a.iter().find_map(|x| leftover_template(x, names)),
        toml::Value::Table(t) => t.values().find_map(|x| leftover_template(x, names)),
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) | toml::Value::Datetime(_) => None,
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
    serde_json::to_value(v).expect("TOML values are JSON values")
}

/// The combinations of a sweep's axis values (indices per axis).
fn combos(sw: &SweepSpec) -> Vec<Vec<usize>> {
    if sw.axis.is_empty() {
        return vec![vec![]];
    }
    match sw.mode {
        SweepMode::Zip => (0..sw.axis[0].values.len()).map(|i| vec![i; sw.axis.len()]).collect(),
        SweepMode::Grid => {
            let mut c: Vec<Vec<usize>> = vec![vec![]];
            for a in &sw.axis {
                c = c
                    .into_iter()
                    .flat_map(|p| (0..a.values.len()).map(move |i| [p.clone(), vec![i]].concat()))
                    .collect();
            }
            c
        }
    }
}

/// Every point of every sweep (the base alone without sweeps): its sweep's name and axis values.
fn axis_points(st: &LoadedStudy) -> Vec<(String, BTreeMap<String, serde_json::Value>)> {
    if st.spec.sweep.is_empty() {
        return vec![("base".into(), BTreeMap::new())];
    }
    let mut out = Vec::new();
    for sw in &st.spec.sweep {
        for combo in combos(sw) {
            out.push((
                sw.name.clone(),
                sw.axis.iter().zip(&combo).map(|(a, &i)| (a.name.clone(), to_json(&a.values[i]))).collect(),
            ));
        }
    }
    out
}

/// Checks each measurement against the registry and resolves its options.
fn plan_measures(st: &LoadedStudy) -> Result<Vec<PlannedMeasure>, StudyError> {
    let mut out = Vec::new();
    for (i, m) in st.spec.measure.iter().enumerate() {
        let at = |k: &str| span::path(&format!("measure.{i}.{k}"));
        let probe = registry::find(&m.probe).ok_or_else(|| {
            st.error_at(&at("probe"), format!("unknown probe '{}' (known: {})", m.probe, registry::names()))
        })?;
        let axes = st.axis_names();
        if crate::measure::option_templates(&m.options, &axes).is_empty() {
            let json = serde_json::to_value(&m.options).expect("TOML tables are JSON objects");
            let opts = probe
                .options_from_json(json)
                .map_err(|e| st.error_at(&at("options"), format!("probe '{}': {e}", m.probe)))?;
            let metrics = probe.written(&opts).iter().map(|n| format!("{}/{n}", m.label())).collect();
            out.push(PlannedMeasure { spec: m.clone(), resolved_options: probe.options_to_json(&opts), metrics });
            continue;
        }
        // Options with `{axis}` templates are resolved per run: check them for every point of
        // every sweep, and take the metrics from the first.
        let mut first = None;
        for (sw, vars) in axis_points(st) {
            let names: Vec<&str> = vars.keys().map(String::as_str).collect();
            let json = crate::measure::options_for_run(&m.options, &vars);
            let json_toml: toml::Table = serde_json::from_value(json.clone()).unwrap_or_default();
            if let Some(n) = crate::measure::option_templates(&json_toml, &axes).first()
                && !names.contains(n)
            {
                return Err(
                    st.error_at(&at("options"), format!("the options use {{{n}}}, which sweep '{sw}' does not set"))
                );
            }
            let opts = probe.options_from_json(json).map_err(|e| {
                let point: String = vars.iter().map(|(k, v)| format!(", {k} = {v}")).collect();
                st.error_at(&at("options"), format!("probe '{}' (sweep '{sw}'{point}): {e}", m.probe))
            })?;
            first.get_or_insert_with(|| (probe.options_to_json(&opts), probe.written(&opts)));
        }
        let (resolved_options, written) = first.expect("a study has at least one sweep point");
        let metrics = written.iter().map(|n| format!("{}/{n}", m.label())).collect();
        out.push(PlannedMeasure { spec: m.clone(), resolved_options, metrics });
    }
    Ok(out)
}

/// Checks that every metric a claim or figure reads is written, and that claim values are
/// numbers per run.
fn check_metrics(st: &LoadedStudy, measures: &[PlannedMeasure]) -> Result<(), StudyError> {
    let known = metrics::known(measures);
    let unknown = |name: &str| {
        let hint = metrics::closest(name, known.keys().map(String::as_str))
            .map(|c| format!(" (did you mean '{c}'?)"))
            .unwrap_or_default();
        format!("metric '{name}' is not written by the trainer or any [[measure]]{hint}")
    };
    let is_vec = |n: &str| metrics::is_vector(&known, n);
    for (i, c) in st.spec.claim.iter().enumerate() {
        let at = span::path(&format!("claim.{i}.value"));
        if let Some(m) = c.value.metrics().into_iter().find(|m| !known.contains_key(*m)) {
            return Err(st.error_at(&at, unknown(m)));
        }
        match c.value.is_vector(&is_vec) {
            Ok(false) => {}
            Ok(true) if matches!(c.statistic, crate::spec::StatisticSpec::PairedFraction(_)) => {}
            Ok(true) => {
                return Err(st.error_at(&at, "a claim needs one number per run, but this value is a vector (use element, reduce or a correlation; only paired_fraction compares vectors)"));
            }
            Err(e) => return Err(st.error_at(&at, e)),
        }
    }
    for (i, f) in st.spec.figure.iter().enumerate() {
        let at = |k: &str| span::path(&format!("figure.{i}.{k}"));
        for (k, name) in [("metric", &f.metric), ("x_metric", &f.x_metric)] {
            if !name.is_empty() && !known.contains_key(name) {
                return Err(st.error_at(&at(k), unknown(name)));
            }
        }
        for (k, v) in [("y", &f.y), ("x_value", &f.x_value)] {
            if let Some(v) = v {
                if let Some(m) = v.metrics().into_iter().find(|m| !known.contains_key(*m)) {
                    return Err(st.error_at(&at(k), unknown(m)));
                }
                v.is_vector(&is_vec).map_err(|e| st.error_at(&at(k), e))?;
            }
        }
        for r in &f.reference {
            if let Some(m) = r.value.metrics().into_iter().find(|m| !known.contains_key(*m)) {
                return Err(st.error_at(&at("reference"), unknown(m)));
            }
        }
    }
    Ok(())
}

/// Checks that the partner runs that claims and figures name (`partner`, `paired`) are planned:
/// some run has the axis values of each `where`.
fn check_partners(st: &LoadedStudy, runs: &[PlannedRun]) -> Result<(), StudyError> {
    let values = st.spec.claim.iter().enumerate().map(|(i, c)| (format!("claim.{i}.value"), &c.value)).chain(
        st.spec.figure.iter().enumerate().flat_map(|(i, f)| {
            [("y", &f.y), ("x_value", &f.x_value)]
                .into_iter()
                .filter_map(move |(k, v)| v.as_ref().map(|v| (format!("figure.{i}.{k}"), v)))
                .chain(f.reference.iter().map(move |r| (format!("figure.{i}.reference"), &r.value)))
        }),
    );
    for (path, v) in values {
        for arm in v.partner_arms() {
            if !runs.iter().any(|r| crate::statistic::in_arm(arm, &r.axes)) {
                return Err(st.error_at(
                    &span::path(&path),
                    format!(
                        "partner/paired where = {{ {} }} matches no planned run",
                        crate::statistic::describe_arm(arm)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Parses one run's spec; an error points into the study file: at the axis that set the key, or
/// at the key in `[base]`.
fn resolve_run(
    st: &LoadedStudy,
    table: &toml::Table,
    sweep: (usize, &SweepSpec),
    where_: &str,
) -> Result<RunSpec, StudyError> {
    let text = toml::to_string(table).map_err(|e| StudyError::Spec(format!("{}: [base]: {e}", st.file)))?;
    if let Err(e) = toml::from_str::<RunSpec>(&text) {
        // Find the key the error is about in the generated text, then in the user's file.
        let generated = SpanIndex::new(&text);
        let mut key: Vec<Seg> = e.span().and_then(|s| generated.path_at(s.start).cloned()).unwrap_or_default();
        // An unknown key's span is its whole table: name the key itself.
        if let Some(k) = e.message().strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
            key.push(Seg::Key(k.to_string()));
        }
        let dotted: String = key.iter().map(ToString::to_string).collect::<Vec<_>>().join(".");
        let msg = format!("[base] ({where_}): {}", e.message().replace('\n', " ").trim_end());
        let (si, sw) = sweep;
        if let Some(j) = sw.axis.iter().position(|a| a.key.as_deref() == Some(dotted.as_str())) {
            return Err(st.error_at(&span::path(&format!("sweep.{si}.axis.{j}.key")), msg));
        }
        let mut p = vec![Seg::Key("base".into())];
        p.extend(key);
        return Err(st.error_at(&p, msg));
    }
    let mut rs = RunSpec::from_toml(&text, "[base]").map_err(|e| {
        let m = e.to_string();
        st.error_at(&[Seg::Key("base".into())], format!("{} ({where_})", m.trim()))
    })?;
    // A study's runs checkpoint on wall time unless the study says otherwise, so that a run
    // killed mid-way (kill -9, a node lost) resumes near where it stopped rather than at step 0.
    // Checkpoints do not change a run's numbers (resumes are byte-identical).
    if rs.checkpoint.every == 0 && rs.checkpoint.every_seconds == 0 && !mentions_checkpoint(table) {
        rs.checkpoint.every_seconds = STUDY_CHECKPOINT_SECONDS;
    }
    Ok(rs)
}

/// (sweep, seed) -> the axis values and id of each run the sweep planned with that seed.
type PlannedBySweep = BTreeMap<(String, u64), Vec<(BTreeMap<String, serde_json::Value>, String)>>;

/// The id of the one run of sweep `f.sweep` with `seed` and the axis values `f.filter`.
fn source_run(planned: &PlannedBySweep, f: &crate::spec::FromSpec, seed: u64) -> Result<String, String> {
    let runs = planned.get(&(f.sweep.clone(), seed)).map_or(&[][..], Vec::as_slice);
    let matching: Vec<&String> =
        runs.iter().filter(|(axes, _)| crate::statistic::in_arm(&f.filter, axes)).map(|(_, id)| id).collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!("from: sweep '{}' plans no run with seed {seed}{}", f.sweep, describe_filter(&f.filter))),
        many => Err(format!(
            "from: sweep '{}' plans {} runs with seed {seed}{}; pick one with from.where = {{ axis = value }}",
            f.sweep,
            many.len(),
            describe_filter(&f.filter)
        )),
    }
}

fn describe_filter(filter: &crate::spec::Arm) -> String {
    filter.iter().map(|(k, v)| format!(", {k} = {v}")).collect()
}

/// Wall time between checkpoints of a study run whose `[base]` sets no `[checkpoint]` table.
pub const STUDY_CHECKPOINT_SECONDS: u64 = 30;

fn mentions_checkpoint(table: &toml::Table) -> bool {
    table
        .get("checkpoint")
        .and_then(toml::Value::as_table)
        .is_some_and(|t| t.contains_key("every") || t.contains_key("every_seconds"))
}

/// Expands and checks a loaded study into its plan.
pub fn plan(st: &LoadedStudy) -> Result<PlanRecord, StudyError> {
    let spec = &st.spec;
    let measure = plan_measures(st)?;
    check_metrics(st, &measure)?;
    let implicit =
        [SweepSpec { name: "base".into(), mode: SweepMode::Grid, axis: Vec::new(), from: None, first_seeds: None }];
    let sweeps: &[SweepSpec] = if spec.sweep.is_empty() { &implicit } else { &spec.sweep };
    let all_axes = st.axis_names();
    let measure_json = serde_json::to_string(&measure).expect("serialises");
    let mut runs: Vec<PlannedRun> = Vec::new();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    // (sweep, seed) -> the (axes, id) of the runs it planned, for `from` of later sweeps.
    let mut planned: PlannedBySweep = BTreeMap::new();
    for (si, sw) in sweeps.iter().enumerate() {
        let mut ids_here = std::collections::BTreeSet::new();
        for combo in combos(sw) {
            let vars: Vec<(String, String)> =
                sw.axis.iter().zip(&combo).map(|(a, &i)| (a.name.clone(), value_text(&a.values[i]))).collect();
            let mut tv = toml::Value::Table(spec.base.clone());
            substitute(&mut tv, &vars);
            if let Some(n) = leftover_template(&tv, &all_axes) {
                return Err(st.error_at(
                    &[Seg::Key("base".into())],
                    format!("[base] uses {{{n}}}, which sweep '{}' does not set", sw.name),
                ));
            }
            let mut t = tv.as_table().cloned().expect("a table");
            for (a, &i) in sw.axis.iter().zip(&combo) {
                if let Some(key) = &a.key {
                    set_path(&mut t, key, a.values[i].clone()).map_err(|m| {
                        st.error_at(&span::path(&format!("sweep.{si}.axis")), format!("axis '{}': {m}", a.name))
                    })?;
                }
            }
            let axes: BTreeMap<String, serde_json::Value> =
                sw.axis.iter().zip(&combo).map(|(a, &i)| (a.name.clone(), to_json(&a.values[i]))).collect();
            for &seed in sw.seeds(&spec.seeds) {
                // `{seed}` in a string of [base] is the run's seed (e.g. a data seed).
                let mut tv = toml::Value::Table(t.clone());
                substitute(&mut tv, &[("seed".to_string(), seed.to_string())]);
                let mut t = tv.as_table().cloned().expect("a table");
                t.insert(
                    "seed".into(),
                    toml::Value::Integer(
                        i64::try_from(seed)
                            .map_err(|_| st.error_at(&span::path("seeds"), format!("seed {seed} is too large")))?,
                    ),
                );
                let where_ = format!(
                    "sweep '{}'{}, seed {seed}",
                    sw.name,
                    axes.iter().map(|(k, v)| format!(", {k} = {v}")).collect::<String>()
                );
                let from = match &sw.from {
                    Some(f) => {
                        let src = source_run(&planned, f, seed).map_err(|m| {
                            st.error_at(&span::path(&format!("sweep.{si}.from")), format!("sweep '{}': {m}", sw.name))
                        })?;
                        let path = format!("runs/{src}/final.safetensors");
                        set_path(&mut t, "init.from", toml::Value::String(path)).map_err(|m| {
                            st.error_at(&span::path(&format!("sweep.{si}.from")), format!("init.from: {m}"))
                        })?;
                        Some(src)
                    }
                    None => None,
                };
                let rs = resolve_run(st, &t, (si, sw), &where_)?;
                let run_spec = rs.to_toml();
                let id = content_hash(&format!("{run_spec}\n{measure_json}"));
                planned.entry((sw.name.clone(), seed)).or_default().push((axes.clone(), id.clone()));
                if !ids_here.insert(id.clone()) {
                    return Err(st.error_at(
                        &span::path(&format!("sweep.{si}")),
                        format!("sweep '{}' plans two identical runs ({where_}): an axis changes nothing", sw.name),
                    ));
                }
                match by_id.get(&id) {
                    Some(&k) => {
                        let r = &mut runs[k];
                        r.sweeps.push(sw.name.clone());
                        for (a, v) in &axes {
                            r.axes.entry(a.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    None => {
                        by_id.insert(id.clone(), runs.len());
                        runs.push(PlannedRun {
                            id,
                            index: runs.len(),
                            seed,
                            axes: axes.clone(),
                            sweeps: vec![sw.name.clone()],
                            run_spec,
                            from,
                        });
                    }
                }
            }
        }
    }
    check_partners(st, &runs)?;
    Ok(PlanRecord {
        study: spec.name.clone(),
        title: spec.title.clone(),
        section: spec.section.clone(),
        spec_hash: content_hash(&spec.to_toml()),
        quick: st.quick,
        overrides: st.overrides.clone(),
        axes: all_axes.iter().map(|s| s.to_string()).collect(),
        sweeps: sweeps.iter().map(|s| s.name.clone()).collect(),
        measure,
        runs,
    })
}
