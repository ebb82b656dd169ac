//! `sgdlab probe NAME`: one subcommand per entry of the probe registry
//! (`sgdlab_probes::registry::ALL`), built from the entry's options and the shared flags its
//! needs call for. One load, one precision dispatch (the registry's) and one output path for
//! every probe; the numbers come from sgdlab-probes.

use crate::cmd_probe_common::{Loaded, SharedArgs, add_shared_args, checkpoint_steps, print};
use anyhow::{Context, Result, anyhow};
use clap::{ArgMatches, Command};
use serde_json::{Map, Value, json};
use sgdlab_linalg::RngStream;
use sgdlab_probes::registry::{self, CheckedOptions, InputSummary, MetricShape, Probe, ProbeInput, ProbeOutput};

const AFTER_HELP: &str = "\
Every probe of a checkpoint evaluates the data it was trained on (the checkpoint's sgdlab.data
metadata) unless --data names other data; a checkpoint without that metadata needs --data.
Examples are a seeded subset of --samples (1000 by default; 0 = the whole split), in batches of
--batch-size, in f64 unless --dtype f32. The output starts with what was evaluated (data and
where it came from, split, examples, subset or not); with --json, stdout is exactly one JSON
object: {\"probe\", \"input\", \"options\", ...the probe's results}.

Examples:
  sgdlab probe loss --model runs/x/final.safetensors
  sgdlab probe hessian --model ckpt.safetensors --data mnist1d --top-k 5 --trace --json
  sgdlab probe hessian --model ckpt.safetensors --exact --density --out density.csv
  sgdlab probe sharpness --model ckpt.safetensors --epsilon 1e-3 --epsilon 5e-4
  sgdlab probe landscape --model ckpt.safetensors --dims 2 --points 21 --out slice.csv
  sgdlab probe norms --model run/checkpoints/step-100.safetensors --model run/checkpoints/step-200.safetensors";

/// The probe chosen on the command line and its parsed flags.
#[derive(Debug)]
pub struct ProbeArgs {
    name: String,
    matches: ArgMatches,
}

/// The `probe` command's subcommands, one per registered probe.
fn subcommands(cmd: Command) -> Command {
    let cmd = cmd.subcommand_required(true).arg_required_else_help(true).after_help(AFTER_HELP);
    registry::ALL.iter().fold(cmd, |cmd, p| cmd.subcommand(subcommand(*p)))
}

/// One probe's subcommand: its options, then the shared flags its needs call for.
fn subcommand(p: &dyn Probe) -> Command {
    // The options' derive sets the about from their struct's doc comment: replace it after.
    let sub = p
        .augment_args(Command::new(p.name()))
        .about(p.about())
        .long_about(None::<&str>)
        .after_long_help(metrics_help(p));
    add_shared_args(sub, &p.needs(), p.series_about(), p.table())
}

/// The metrics a probe writes, for `--help`: name with shape and unit, then its meaning.
fn metrics_help(p: &dyn Probe) -> String {
    let mut t = format!("Metrics (`{}/NAME` in a study's records; which ones depends on the options):\n", p.name());
    for m in p.metrics() {
        let mut what: Vec<String> = m.unit.map(|u| format!("in {u}")).into_iter().collect();
        if let MetricShape::Vector { index } = m.shape {
            what.push(format!("a vector over {index}"));
        }
        let what = if what.is_empty() { String::new() } else { format!(" ({})", what.join(", ")) };
        t.push_str(&format!("  {}{what}\n      {}\n", m.name, m.meaning));
    }
    t
}

impl clap::FromArgMatches for ProbeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let (name, sub) = m.subcommand().ok_or_else(|| clap::Error::new(clap::error::ErrorKind::MissingSubcommand))?;
        Ok(ProbeArgs { name: name.to_string(), matches: sub.clone() })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = ProbeArgs::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for ProbeArgs {
    fn augment_args(cmd: Command) -> Command {
        subcommands(cmd)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        subcommands(cmd)
    }
}

/// Runs the probe named on the command line.
pub fn run(a: ProbeArgs) -> Result<()> {
    let probe =
        registry::find(&a.name).ok_or_else(|| anyhow!("unknown probe '{}' (known: {})", a.name, registry::names()))?;
    let options = probe.options_from_matches(&a.matches).map_err(|e| anyhow!("{}: {e}", a.name))?;
    let shared = SharedArgs::from_matches(&a.matches);
    let loaded = shared.load(&probe.needs())?;
    let eval = shared.eval_options(loaded.data.as_ref().map(|(_, p)| p));
    let measure = |params: Option<&sgdlab_nn::Params<f64>>| -> Result<ProbeOutput> {
        let input = ProbeInput {
            model: loaded.model.as_ref(),
            params,
            data: loaded.data.as_ref().map(|(d, _)| d),
            data_spec: loaded.data.as_ref().map(|(_, p)| p.spec.as_str()),
            eval: &eval,
            stream: RngStream::new(eval.seed),
            adam: None,
        };
        probe.measure(&input, &options, shared.dtype).map_err(|e| anyhow!("{}: {e}", a.name))
    };
    let series = probe.series_about().is_some() && (shared.models.len() > 1 || !shared.steps.is_empty());
    if series {
        let steps = checkpoint_steps(&shared.models, &shared.steps)?;
        let outputs = loaded.checkpoints.iter().map(|(_, ck)| measure(Some(&ck.params))).collect::<Result<Vec<_>>>()?;
        let summary = probe
            .series(&steps, &outputs, &options)
            .expect("a probe with a series summary")
            .map_err(|e| anyhow!("{}: {e}", a.name))?;
        emit_series(probe, &options, &shared, &loaded, &steps, &outputs, &summary)
    } else {
        let out = measure(loaded.checkpoints.first().map(|(_, ck)| &ck.params))?;
        emit_one(probe, &options, &shared, &loaded, &out)
    }
}

/// What was evaluated, for the header.
fn input_summary(probe: &dyn Probe, shared: &SharedArgs, loaded: &Loaded, out: &ProbeOutput) -> InputSummary {
    let needs = probe.needs();
    InputSummary {
        model: shared.models.iter().map(|p| p.display().to_string()).collect(),
        arch: loaded.model.as_ref().map(|m| m.describe()),
        num_params: loaded.model.as_ref().map(|m| m.num_params()),
        data: loaded.data.as_ref().map(|(_, p)| p.clone()),
        trained_on: loaded.trained_on.clone().filter(|t| !t.is_empty()),
        evaluated: out.evaluated.clone(),
        batch_size: needs.subsets().then_some(shared.batch_size),
        loss: needs.loss.then(|| shared.loss.to_string()),
        dtype: needs.model.then_some(shared.dtype.name()),
        seed: needs.seeded().then_some(shared.seed),
    }
}

/// `{"probe", "input", "options"}` followed by `details`' keys.
fn json_object(
    probe: &dyn Probe,
    options: &CheckedOptions,
    input: &InputSummary,
    details: &Value,
) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("probe".into(), json!(probe.name()));
    obj.insert("input".into(), serde_json::to_value(input).expect("the input summary serialises"));
    obj.insert("options".into(), probe.options_to_json(options));
    if let Value::Object(d) = details {
        for (k, v) in d {
            obj.insert(k.clone(), v.clone());
        }
    }
    obj
}

fn emit_one(
    probe: &dyn Probe,
    options: &CheckedOptions,
    shared: &SharedArgs,
    loaded: &Loaded,
    out: &ProbeOutput,
) -> Result<()> {
    let input = input_summary(probe, shared, loaded, out);
    let mut obj = json_object(probe, options, &input, &out.details);
    let mut text = format!("{}\n{}", input.text(probe.name()), out.text);
    if let Some(path) = &shared.out {
        let table = out.table.as_ref().ok_or_else(|| {
            anyhow!(
                "--out {}: {} wrote no table with these options ({})",
                path.display(),
                probe.name(),
                probe.table().unwrap_or("none")
            )
        })?;
        std::fs::write(path, table.to_csv()).with_context(|| format!("writing {}", path.display()))?;
        obj.insert("out".into(), json!(path.display().to_string()));
        text.push_str(&format!("table written to {}\n", path.display()));
    }
    print(&if shared.json { format!("{}\n", Value::Object(obj)) } else { text })
}

fn emit_series(
    probe: &dyn Probe,
    options: &CheckedOptions,
    shared: &SharedArgs,
    loaded: &Loaded,
    steps: &[u64],
    outputs: &[ProbeOutput],
    summary: &ProbeOutput,
) -> Result<()> {
    let input = input_summary(probe, shared, loaded, &outputs[0]);
    let checkpoints: Vec<Value> = shared
        .models
        .iter()
        .zip(steps)
        .zip(outputs)
        .map(|((path, step), out)| {
            let mut c = Map::new();
            c.insert("model".into(), json!(path.display().to_string()));
            c.insert("step".into(), json!(step));
            if let Value::Object(d) = &out.details {
                c.extend(d.clone());
            }
            Value::Object(c)
        })
        .collect();
    let mut obj = json_object(probe, options, &input, &Value::Object(Map::new()));
    obj.insert("checkpoints".into(), Value::Array(checkpoints));
    obj.insert("series".into(), summary.details.clone());
    let text = format!("{}\n{}", input.text(probe.name()), summary.text);
    print(&if shared.json { format!("{}\n", Value::Object(obj)) } else { text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Ids, long and short flags are unique within each probe's subcommand (probe options and
    /// shared flags meet there; clap checks this only in debug builds), and every flag says
    /// what it does.
    #[test]
    fn every_probe_subcommand_has_distinct_described_flags() {
        let cmd = subcommands(Command::new("probe"));
        assert_eq!(cmd.get_subcommands().count(), registry::ALL.len());
        for sub in cmd.get_subcommands() {
            let (mut ids, mut longs, mut shorts) = (HashSet::new(), HashSet::new(), HashSet::new());
            for arg in sub.get_arguments() {
                let what = format!("{} {}", sub.get_name(), arg.get_id());
                assert!(ids.insert(arg.get_id().clone()), "{what}: id twice");
                if let Some(l) = arg.get_long() {
                    assert!(longs.insert(l), "{what}: --{l} twice");
                }
                if let Some(c) = arg.get_short() {
                    assert!(shorts.insert(c), "{what}: -{c} twice");
                }
                assert!(arg.get_help().is_some_and(|h| !h.to_string().trim().is_empty()), "{what}: no help");
            }
            assert!(longs.contains("json"), "{}", sub.get_name());
        }
    }
}
