//! Plans: every check made before anything runs, with errors pointing into the user's file; the
//! overrides of the command line (`--seeds`, `--set`) and quick mode changing the plan as stated;
//! sweeps expanded into deduplicated runs.

use sgdlab_studies::plan::plan;
use sgdlab_studies::{LoadedStudy, load_study};

/// A small study: line numbers below refer to this text.
const STUDY: &str = r#"name = "tiny"
title = "Tiny"
section = "7.1"
survey_claim = "test"
seeds = [0, 1, 2]

[base]
model = "mlp:40-16-10:relu"
data = "mnist1d:n=500"

[base.optimizer]
name = "sgd"
lr = 0.1
batch_size = 32

[base.budget]
steps = 20

[[sweep]]
name = "lr"
[[sweep.axis]]
name = "lr"
key = "optimizer.lr"
values = [0.05, 0.1, 0.2]

[[sweep]]
name = "batch"
[[sweep.axis]]
name = "batch_size"
key = "optimizer.batch_size"
values = [16, 32]

[[measure]]
probe = "loss"
samples = 100

[[claim]]
id = "c"
statement = "s"
value = { last = "loss/loss" }
statistic = { spearman = { axis = "lr" } }
population = { sweep = "lr" }
decision = { less = 0.0 }
expected = "e"
provenance = "paper"

[quick]
set = ["seeds=[0, 1]", "base.budget.steps=5"]
"#;

fn load(text: &str) -> Result<LoadedStudy, String> {
    LoadedStudy::parse(text, "s.toml", false, &[]).map_err(|e| e.to_string())
}

fn plan_err(text: &str) -> String {
    match load(text) {
        Err(e) => e,
        Ok(st) => plan(&st).map(|_| ()).unwrap_err().to_string(),
    }
}

/// The line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).expect("needle in text")].matches('\n').count() + 1
}

#[test]
fn one_at_a_time_sweeps_share_the_base_point() {
    let st = load(STUDY).unwrap();
    let p = plan(&st).unwrap();
    // lr: 3 values, batch: 2 values, 3 seeds; the base (lr 0.1, batch 32) is planned by both.
    assert_eq!(p.runs.len(), (3 + 2 - 1) * 3);
    let shared: Vec<_> = p.runs.iter().filter(|r| r.sweeps.len() == 2).collect();
    assert_eq!(shared.len(), 3);
    assert!(shared.iter().all(|r| r.axes["lr"] == 0.1 && r.axes["batch_size"] == 32));
    assert_eq!(p.sweeps, vec!["lr", "batch"]);
    assert_eq!(p.axes, vec!["lr", "batch_size"]);
    assert_eq!(p.measure[0].metrics, vec!["loss/loss", "loss/accuracy", "loss/grad_norm"]);
    // Plans are deterministic.
    assert_eq!(p, plan(&load(STUDY).unwrap()).unwrap());
}

#[test]
fn seeds_set_and_quick_change_the_plan_as_stated() {
    let q = plan(&LoadedStudy::parse(STUDY, "s.toml", true, &[]).unwrap()).unwrap();
    assert!(q.quick);
    assert_eq!(q.runs.len(), 4 * 2);
    assert!(q.runs.iter().all(|r| r.run_spec.contains("steps = 5")));
    assert_eq!(q.overrides, vec!["seeds=[0, 1]", "base.budget.steps=5"]);
    let seeds = sgdlab_studies::overrides::parse_seeds("3-7").unwrap();
    let o = vec![sgdlab_studies::overrides::seeds_override(&seeds), "sweep.lr.axis.lr.values=[0.3, 0.6]".to_string()];
    let p = plan(&LoadedStudy::parse(STUDY, "s.toml", false, &o).unwrap()).unwrap();
    assert_eq!(p.runs.len(), (2 + 2) * 5);
    assert!(p.runs.iter().all(|r| (3..=7).contains(&r.seed)));
    assert!(p.runs.iter().any(|r| r.axes.get("lr") == Some(&serde_json::json!(0.6))));
    // The same overrides from the command line, through a built-in study.
    let b = load_study("batch-sharpness", false, &["seeds=[7]".into()]).unwrap();
    assert_eq!(b.spec.seeds, vec![7]);
    let e =
        LoadedStudy::parse(STUDY, "s.toml", false, &["sweep.lrr.axis.lr.values=[1.0]".into()]).unwrap_err().to_string();
    assert!(e.contains("s.toml") && e.contains("no element named 'lrr'") && e.contains("lr, batch"), "{e}");
    let e = LoadedStudy::parse(STUDY, "s.toml", false, &["base.budget.steps=many".into()]).unwrap_err().to_string();
    assert!(e.contains("expects an integer"), "{e}");
}

#[test]
fn first_seeds_runs_a_costly_block_with_the_first_seeds_only() {
    let t = STUDY.replace("name = \"lr\"\n[[sweep.axis]]", "name = \"lr\"\nfirst_seeds = 1\n[[sweep.axis]]");
    let p = plan(&load(&t).unwrap()).unwrap();
    // lr: 3 values x seed 0 only; batch: 2 values x 3 seeds; the base point (lr 0.1, batch 32)
    // with seed 0 is planned by both blocks.
    assert_eq!(p.runs.len(), 3 + 2 * 3 - 1);
    let lr_only: Vec<_> = p.runs.iter().filter(|r| r.sweeps == ["lr"]).collect();
    assert_eq!(lr_only.len(), 2);
    assert!(lr_only.iter().all(|r| r.seed == 0));
    assert!(p.runs.iter().filter(|r| r.sweeps.contains(&"lr".to_string())).all(|r| r.seed == 0));
    // It follows --seeds: the first of 5..=7 is 5; more than there are means all of them.
    let o = vec![sgdlab_studies::overrides::seeds_override(&[5, 6, 7])];
    let p = plan(&LoadedStudy::parse(&t, "s.toml", false, &o).unwrap()).unwrap();
    assert!(p.runs.iter().filter(|r| r.sweeps.contains(&"lr".to_string())).all(|r| r.seed == 5));
    let all = plan(&load(&t.replace("first_seeds = 1", "first_seeds = 9")).unwrap()).unwrap();
    assert_eq!(all.runs.len(), (3 + 2 - 1) * 3);
    // Zero is an error naming the key and the sweep.
    let e = plan_err(&t.replace("first_seeds = 1", "first_seeds = 0"));
    assert!(e.starts_with("s.toml:") && e.contains("first_seeds = 0") && e.contains("sweep 'lr'"), "{e}");
}

#[test]
fn misspelt_probe_option_axis_and_metric_fail_at_plan_time_with_file_and_line() {
    let t = STUDY.replace("probe = \"loss\"", "probe = \"los\"");
    let e = plan_err(&t);
    assert_eq!(e.lines().count(), 1);
    assert!(
        e.starts_with(&format!("s.toml:{}:", line_of(&t, "probe = \"los\""))) && e.contains("unknown probe 'los'"),
        "{e}"
    );

    let t = STUDY.replace("samples = 100", "samples = 100\noptions = { tpo_k = 3 }");
    let e = plan_err(&t);
    assert!(e.starts_with(&format!("s.toml:{}:", line_of(&t, "options = "))) && e.contains("tpo_k"), "{e}");

    let t = STUDY.replace("{ spearman = { axis = \"lr\" } }", "{ spearman = { axis = \"eta\" } }");
    let e = plan_err(&t);
    assert!(
        e.starts_with(&format!("s.toml:{}:", line_of(&t, "statistic = { spearman")))
            && e.contains("'eta' is not an axis"),
        "{e}"
    );

    let t = STUDY.replace("{ last = \"loss/loss\" }", "{ last = \"loss/los\" }");
    let e = plan_err(&t);
    assert!(e.starts_with(&format!("s.toml:{}:", line_of(&t, "value = { last"))), "{e}");
    assert!(e.contains("metric 'loss/los' is not written") && e.contains("did you mean 'loss/loss'"), "{e}");

    let t = STUDY.replace("population = { sweep = \"lr\" }", "population = { sweep = \"lrs\" }");
    assert!(plan_err(&t).contains("sweep 'lrs' does not exist"));

    // A bad run-spec key in [base] points at its line in the user's file, not at a generated file.
    let t = STUDY.replace("lr = 0.1\n", "lr = 0.1\nmomentun = 0.9\n");
    let e = plan_err(&t);
    assert!(
        e.starts_with(&format!("s.toml:{}:", line_of(&t, "momentun"))) && e.contains("unknown field `momentun`"),
        "{e}"
    );
    // ... and a bad axis key at the axis.
    let t = STUDY.replace("key = \"optimizer.batch_size\"", "key = \"optimizer.batchsize\"");
    let e = plan_err(&t);
    assert!(e.starts_with(&format!("s.toml:{}:", line_of(&t, "optimizer.batchsize"))), "{e}");
}

#[test]
fn non_finite_thresholds_and_malformed_claims_are_refused() {
    for (from, to, want) in [
        ("decision = { less = 0.0 }", "decision = { less = nan }", "not finite"),
        ("decision = { less = 0.0 }", "decision = { within = [2.0, 1.0] }", "is empty"),
        ("id = \"c\"", "id = \"c d\"", "letters, digits"),
        ("seeds = [0, 1, 2]", "seeds = []", "seeds must not be empty"),
        ("seeds = [0, 1, 2]", "seeds = [0, 0]", "given twice"),
        ("values = [16, 32]", "values = []", "has no values"),
        ("value = { last = \"loss/loss\" }", "value = { ratio = [{ last = \"loss/loss\" }] }", "two values"),
        ("value = { last = \"loss/loss\" }", "value = { axis = \"depth\" }", "does not sweep"),
        ("expected = \"e\"", "expected = \"e\"\nlevel = 1.5", "(0, 1)"),
        ("statistic = { spearman", "statistic = { speerman", "unknown variant"),
    ] {
        let t = STUDY.replace(from, to);
        assert_ne!(t, STUDY, "{from}");
        let e = plan_err(&t);
        assert!(e.contains(want) && e.starts_with("s.toml"), "{to}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

#[test]
fn paired_fraction_vectors_and_from_step_are_checked_at_plan_time() {
    let paired = "statistic = { paired_fraction = { a = { batch_size = 16 }, b = { batch_size = 32 }, difference = { less = 0.0 }, elements_at_least = 0.8 } }\npopulation = { sweep = \"batch\" }";
    let series = "value = { series = { metric = \"loss/loss\", from_step = 1 } }";
    let ok = STUDY
        .replace("statistic = { spearman = { axis = \"lr\" } }\npopulation = { sweep = \"lr\" }", paired)
        .replace("value = { last = \"loss/loss\" }", series);
    assert_ne!(ok, STUDY);
    let st = load(&ok).unwrap();
    plan(&st).unwrap();
    // A vector value under another statistic, a share outside (0, 1], an unknown arm axis, and a
    // measurement that can never be due are one-line errors pointing into the file.
    for (from, to, want) in [
        (paired, "statistic = \"mean\"", "only paired_fraction compares vectors"),
        ("elements_at_least = 0.8", "elements_at_least = 1.5", "must lie in (0, 1]"),
        ("a = { batch_size = 16 }", "a = { batch = 16 }", "'batch' is not an axis"),
        ("samples = 100", "samples = 100\nat = \"init\"\nfrom_step = 5", "never measures"),
        (series, "value = { series = { metric = \"los/loss\" } }", "did you mean"),
    ] {
        let t = ok.replace(from, to);
        assert_ne!(t, ok, "{from}");
        let e = plan_err(&t);
        assert!(e.contains(want) && e.starts_with("s.toml"), "{to}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

#[test]
fn a_template_that_a_sweep_does_not_fill_is_an_error() {
    let t = STUDY.replace("model = \"mlp:40-16-10:relu\"", "model = \"mlp:40-16-10:{act}\"").replace(
        "[[sweep]]\nname = \"batch\"",
        "[[sweep]]\nname = \"acts\"\n[[sweep.axis]]\nname = \"act\"\nvalues = [\"relu\"]\n\n[[sweep]]\nname = \"batch\"",
    );
    let e = plan_err(&t);
    assert!(e.contains("uses {act}, which sweep 'lr' does not set"), "{e}");
}

#[test]
fn every_builtin_study_plans_in_both_modes() {
    for b in sgdlab_studies::BUILTIN {
        for quick in [false, true] {
            let st = load_study(b.name, quick, &[]).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            let p = plan(&st).unwrap_or_else(|e| panic!("{} (quick {quick}): {e}", b.name));
            assert!(!p.runs.is_empty());
            assert_eq!(p.quick, quick);
        }
    }
}

#[test]
fn every_builtin_study_has_a_ci_size_that_plans() {
    for b in sgdlab_studies::BUILTIN {
        let st = load_study(b.name, false, &[]).unwrap();
        assert!(
            !st.spec.ci.set.is_empty(),
            "{}: no [ci] overrides (tests/builtin_ci.rs runs every study at CI size)",
            b.name
        );
        let ci = load_study(b.name, false, &st.spec.ci.set).unwrap_or_else(|e| panic!("{} [ci]: {e}", b.name));
        let p = plan(&ci).unwrap_or_else(|e| panic!("{} [ci]: {e}", b.name));
        assert!(!p.runs.is_empty());
    }
}

#[test]
fn seed_templates_fill_base_strings_with_each_run_seed() {
    let t = STUDY.replace("data = \"mnist1d:n=500\"", "data = \"mnist1d:n=500,seed={seed}\"");
    let p = plan(&load(&t).unwrap()).unwrap();
    for r in &p.runs {
        assert!(r.run_spec.contains(&format!("seed={}", r.seed)), "{}", r.run_spec);
    }
    // `seed` cannot be an axis: runs already vary by seed.
    let t = STUDY.replace("name = \"batch_size\"\nkey", "name = \"seed\"\nkey");
    assert!(plan_err(&t).contains("'seed' is not an axis name"), "{}", plan_err(&t));
}

/// A measurement whose options come from axes: `{name}` as the whole string is typed.
const TEMPLATED: &str = r#"name = "tpl"
title = "T"
section = "2.2"
survey_claim = "test"
seeds = [0, 1]

[base]
model = "mlp:7-8-1:{act}"
data = "boolean:d=7"
loss = "logistic"

[base.optimizer]
name = "gd"
lr = 0.1

[base.budget]
steps = 0

[[sweep]]
name = "prior"
mode = "zip"
[[sweep.axis]]
name = "act"
values = ["relu", "erf"]
[[sweep.axis]]
name = "sw2"
values = [2.0, 4.0]

[[measure]]
probe = "prior-functions"
at = "init"
options = { sigma_w2 = "{sw2}", networks = 50 }

[[claim]]
id = "c"
statement = "s"
value = { last = "prior-functions/most_frequent_probability" }
statistic = { ratio = { numerator = { act = "relu" }, denominator = { act = "erf" } } }
decision = { greater = 1.0 }
expected = "e"
provenance = "paper"
"#;

#[test]
fn axis_templates_in_measurement_options_are_resolved_per_run_and_checked() {
    use sgdlab_studies::measure::options_for_run;
    let st = load(TEMPLATED).unwrap();
    let p = plan(&st).unwrap();
    assert_eq!(p.runs.len(), 4);
    for r in &p.runs {
        let o = options_for_run(&p.measure[0].spec.options, &r.axes);
        assert_eq!(o["sigma_w2"], r.axes["sw2"], "typed, not text");
        assert_eq!(o["networks"], 50);
    }
    // A value the probe refuses names the sweep point; an option naming an axis that a sweep
    // does not set is an error.
    let bad = TEMPLATED.replace("values = [2.0, 4.0]", "values = [2.0, \"wide\"]");
    let e = plan_err(&bad);
    assert!(e.contains("s.toml:") && e.contains("sw2 = \"wide\""), "{e}");
    let unset = TEMPLATED.replace("networks = 50", "networks = \"{width}\"").replace(
        "[[measure]]",
        "[[sweep]]\nname = \"w\"\n[[sweep.axis]]\nname = \"width\"\nvalues = [10]\n\n[[measure]]",
    );
    let e = plan_err(&unset);
    assert!(e.contains("{width}, which sweep 'prior' does not set"), "{e}");
}

/// Two stages: `escape` starts from the final parameters of `minimum`'s run of the same seed.
const STAGED: &str = r#"name = "staged"
title = "Staged"
section = "8.1"
survey_claim = "test"
seeds = [0, 1]

[base]
model = "mlp:40-16-10:relu"
data = "mnist1d:n=300"

[base.optimizer]
name = "gd"
lr = 0.1

[base.budget]
steps = 6

[[sweep]]
name = "minimum"
[[sweep.axis]]
name = "stage1_steps"
key = "budget.steps"
values = [10]

[[sweep]]
name = "escape"
from = { sweep = "minimum" }
[[sweep.axis]]
name = "lr"
key = "optimizer.lr"
values = [0.05, 0.2]

[[claim]]
id = "c"
statement = "s"
value = { greatest = [{ last = "train/loss" }, { constant = 0.0 }] }
population = { sweep = "escape" }
statistic = "mean"
decision = { greater = 0.0 }
expected = "e"
provenance = "paper"
"#;

#[test]
fn a_sweep_from_another_starts_each_run_from_the_source_of_its_seed() {
    let p = plan(&load(STAGED).unwrap()).unwrap();
    assert_eq!(p.runs.len(), 2 + 2 * 2);
    let sources: Vec<_> = p.runs.iter().filter(|r| r.sweeps == ["minimum"]).collect();
    for r in p.runs.iter().filter(|r| r.sweeps == ["escape"]) {
        let src = sources.iter().find(|s| s.seed == r.seed).unwrap();
        assert_eq!(r.from.as_deref(), Some(src.id.as_str()));
        let rs = sgdlab_train::RunSpec::from_toml(&r.run_spec, "plan").unwrap();
        assert_eq!(rs.init.from, Some(format!("runs/{}/final.safetensors", src.id)));
    }
    assert!(sources.iter().all(|s| s.from.is_none()));
    // A changed source changes the dependent runs' ids too.
    let changed = plan(&load(&STAGED.replace("values = [10]", "values = [12]")).unwrap()).unwrap();
    let escape_ids = |p: &sgdlab_studies::PlanRecord| -> Vec<String> {
        p.runs.iter().filter(|r| r.sweeps == ["escape"]).map(|r| r.id.clone()).collect()
    };
    assert!(escape_ids(&p).iter().all(|id| !escape_ids(&changed).contains(id)));
    // plan.json without `from` keys for runs that have none (older plans read the same).
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(json.matches("\"from\":").count(), 4);
}

#[test]
fn a_bad_from_is_an_error_pointing_at_it() {
    let e = plan_err(&STAGED.replace("from = { sweep = \"minimum\" }", "from = { sweep = \"minimun\" }"));
    assert!(e.contains(&format!("s.toml:{}:", line_of(STAGED, "from = {"))), "{e}");
    assert!(e.contains("not a sweep declared before it") && e.contains("earlier sweeps: minimum"), "{e}");
    // A source with two runs per seed needs `where`.
    let two = STAGED.replace("values = [10]", "values = [10, 20]");
    let e = plan_err(&two);
    assert!(e.contains("plans 2 runs with seed 0") && e.contains("from.where"), "{e}");
    let picked =
        two.replace("from = { sweep = \"minimum\" }", "from = { sweep = \"minimum\", where = { stage1_steps = 20 } }");
    let p = plan(&load(&picked).unwrap()).unwrap();
    let src =
        p.runs.iter().find(|r| r.seed == 1 && r.axes.get("stage1_steps") == Some(&serde_json::json!(20))).unwrap();
    assert!(p.runs.iter().filter(|r| r.sweeps == ["escape"] && r.seed == 1).all(|r| r.from.as_ref() == Some(&src.id)));
    let e = plan_err(
        &two.replace("from = { sweep = \"minimum\" }", "from = { sweep = \"minimum\", where = { stage1_steps = 30 } }"),
    );
    assert!(e.contains("plans no run with seed 0, stage1_steps = 30"), "{e}");
}
