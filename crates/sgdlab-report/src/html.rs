//! HTML rendering of a study report and of the index of studies. Self-contained: inline CSS and
//! inline SVG, no scripts, no fetched resources; every record text goes through [`esc`].

use crate::Study;
use crate::format::{esc, fmt_num, fmt_opt};
use crate::records::{EffectRecord, KnobValue, Verdict, VerdictRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Version of this crate, written into every report.
const REPORT_VERSION: &str = env!("CARGO_PKG_VERSION");

const CSS: &str = r#"
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --green: #1a7f37; --red: #cf222e; --grey: #6e7781; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 36px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 26px; line-height: 1.25; margin: 4px 0 12px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
a { color: #0969da; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.86em; background: var(--soft); padding: 0 3px; border-radius: 3px; }
.kicker { color: var(--muted); font-size: 13px; margin: 0; }
.claim { margin: 12px 0 16px; padding: 10px 16px; border-left: 4px solid var(--line); background: var(--soft); font-size: 17px; }
.headline { margin-bottom: 18px; display: flex; align-items: center; flex-wrap: wrap; gap: 8px 18px; padding: 12px 16px; border: 1px solid var(--line); border-radius: 8px; }
.headline .badge { font-size: 16px; padding: 4px 14px; }
.headline .effect { font-size: 17px; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 1px 10px; border-radius: 12px; color: #fff; font-weight: 600; font-size: 13px; white-space: nowrap; }
.badge.reproduced { background: var(--green); }
.badge.not-reproduced { background: var(--red); }
.badge.inconclusive { background: var(--grey); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
th.metric { white-space: normal; text-align: right; min-width: 6em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.excluded td { color: var(--muted); background: #fff8f8; }
.status-diverged, .status-failed { color: var(--red); font-weight: 600; }
.status-running, .status-interrupted, .status-not-run { color: #9a6700; font-weight: 600; }
figure { margin: 18px 0 30px; }
figure svg { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
figcaption p { margin: 4px 0; }
figcaption ul { margin: 4px 0; padding-left: 20px; }
.warn { color: #9a6700; }
footer { margin-top: 40px; font-size: 12px; color: var(--muted); }
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n\
         <style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        esc(title)
    )
}

fn badge(v: Verdict) -> String {
    format!("<span class=\"badge {}\">{}</span>", v.css_class(), esc(v.as_str()))
}

fn level_percent(level: f64) -> String {
    fmt_num(100.0 * level) + "%"
}

/// "3.1 (95% CI 2.2 to 4.4)", plain text.
fn effect_text(e: Option<&EffectRecord>) -> String {
    match e {
        Some(e) => format!(
            "{} ({} CI {} to {})",
            fmt_opt(e.value),
            level_percent(e.level),
            fmt_opt(e.ci_low),
            fmt_opt(e.ci_high)
        ),
        None => "none given".into(),
    }
}

/// The group an effect belongs to, as text (`None` when the study has no groups).
fn group_text(g: &Option<serde_json::Value>) -> Option<String> {
    match g {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        // A group written as JSON text ("\"relu\"") reads as its string.
        Some(serde_json::Value::String(s)) => Some(serde_json::from_str::<String>(s).unwrap_or_else(|_| s.clone())),
        Some(other) => Some(other.to_string()),
    }
}

/// The headline effect, HTML.
fn effect_headline(e: Option<&EffectRecord>) -> String {
    match e {
        Some(e) => format!(
            "effect <b>{}</b> <span class=\"muted\">({} CI {} to {}{})</span>",
            esc(&fmt_opt(e.value)),
            level_percent(e.level),
            esc(&fmt_opt(e.ci_low)),
            esc(&fmt_opt(e.ci_high)),
            group_text(&e.group).map(|g| format!(", group {}", esc(&g))).unwrap_or_default()
        ),
        None => "<span class=\"muted\">no effect: verdict.json gives none</span>".into(),
    }
}

/// The effect rows of the verdict facts, HTML.
fn effect_facts(e: Option<&EffectRecord>) -> String {
    let Some(e) = e else {
        return "<dt>Effect</dt><dd>none given in verdict.json</dd>\n".into();
    };
    let mut out = format!(
        "<dt>Effect</dt><dd title=\"{}\">{}</dd>\n<dt>{} confidence interval</dt><dd>{} to {}</dd>\n\
         <dt>Interval method</dt><dd>{}</dd>\n",
        e.value.map(|x| x.to_string()).unwrap_or_default(),
        esc(&fmt_opt(e.value)),
        level_percent(e.level),
        esc(&fmt_opt(e.ci_low)),
        esc(&fmt_opt(e.ci_high)),
        esc(&e.method)
    );
    if let Some(g) = group_text(&e.group) {
        let _ = writeln!(out, "<dt>Headline group</dt><dd>{}</dd>", esc(&g));
    }
    out
}

fn mode(quick: bool) -> &'static str {
    if quick { "quick" } else { "full" }
}

fn code_list(ids: &[&str]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter().map(|id| format!("<code>{}</code>", esc(id))).collect::<Vec<_>>().join(" ")
}

/// A number cell: four significant digits shown, the full value on hover.
fn num_cell(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("<td class=\"num\" title=\"{}\">{}</td>", v, esc(&fmt_num(v))),
        None => "<td class=\"num muted\">n/a</td>".into(),
    }
}

fn knob_text(k: &Option<KnobValue>) -> String {
    k.as_ref().map(|k| k.text().to_string()).unwrap_or_else(|| "n/a".into())
}

/// The report of one study.
pub(crate) fn study_report(s: &Study) -> String {
    let v = &s.verdict;
    let mut b = String::new();
    let n_excluded = v.runs.excluded.len();

    // Header: claim, verdict, effect.
    let _ = writeln!(
        b,
        "<header>\n<p class=\"kicker\">sgdlab study <code>{}</code> &middot; survey section {} &middot; {} mode</p>\n\
         <h1>{}</h1>\n<blockquote class=\"claim\">{}</blockquote>\n<div class=\"headline\">{} \
         <span class=\"effect\">{}</span> \
         <span class=\"muted\">{} of {} planned runs used, {} excluded</span></div>\n</header>",
        esc(&v.study),
        esc(&v.section),
        mode(v.quick),
        esc(&v.title),
        esc(&v.claim),
        badge(v.verdict),
        effect_headline(v.effect.as_ref()),
        v.runs.used,
        v.runs.planned,
        n_excluded
    );
    if let Some(inc) = &v.incomplete {
        let _ = writeln!(
            b,
            "<p class=\"warn\"><b>Incomplete:</b> {} of {} planned runs had not finished; this verdict uses \
             the finished runs only (<code>sgdlab study status</code> lists the missing ones).</p>",
            inc.missing, inc.planned
        );
    }

    // Verdict.
    let _ = writeln!(
        b,
        "<section id=\"verdict\">\n<h2>Verdict</h2>\n<dl class=\"facts\">\n\
         <dt>Claim</dt><dd>{}</dd>\n\
         <dt>Survey section</dt><dd>{} (W. Gurnee, <i>Inductive Biases of SGD Training</i>)</dd>\n\
         <dt>Verdict</dt><dd>{}</dd>\n\
         <dt>Statistic</dt><dd><code>{}</code> of <code>{}</code>: {}</dd>\n\
         {}<dt>Decision rule</dt><dd>{}</dd>\n</dl>\n{}</section>",
        esc(&v.claim),
        esc(&v.section),
        badge(v.verdict),
        esc(&v.statistic.name),
        esc(&v.statistic.metric.to_string()),
        esc(&v.statistic.description),
        effect_facts(v.effect.as_ref()),
        esc(&v.decision_rule),
        group_effects(v)
    );

    // Runs used and excluded.
    let _ = writeln!(
        b,
        "<section id=\"runs\">\n<h2>Runs</h2>\n<p>{} runs planned, {} used by the verdict, {} excluded.</p>",
        v.runs.planned, v.runs.used, n_excluded
    );
    if n_excluded > 0 {
        b.push_str("<table>\n<thead><tr><th>excluded run</th><th>seed</th>");
        for k in &s.plan.knobs {
            let _ = write!(b, "<th>{}</th>", esc(k));
        }
        b.push_str("<th>status</th><th>step</th><th>message</th></tr></thead>\n<tbody>\n");
        for e in &v.runs.excluded {
            let run = s.runs.iter().find(|r| r.planned.id == e.id);
            let _ = write!(
                b,
                "<tr class=\"excluded\"><td><code>{}</code></td><td class=\"num\">{}</td>",
                esc(&e.id),
                run.map(|r| r.planned.seed.to_string()).unwrap_or_else(|| "n/a".into())
            );
            for i in 0..s.plan.knobs.len() {
                let text = run.map(|r| knob_text(&r.knobs[i])).unwrap_or_else(|| "n/a".into());
                let _ = write!(b, "<td>{}</td>", esc(&text));
            }
            let step = e.step.or_else(|| {
                run.and_then(|r| r.record.as_ref()).map(|rec| rec.diverged_at_step.unwrap_or(rec.steps_completed))
            });
            let message = e
                .message
                .clone()
                .or_else(|| e.reason.clone())
                .or_else(|| run.and_then(|r| r.record.as_ref()).and_then(|rec| rec.message.clone()));
            let _ = writeln!(
                b,
                "<td class=\"status-{}\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&e.status.replace(' ', "-")),
                esc(&e.status),
                step.map(|s| s.to_string()).unwrap_or_else(|| "n/a".into()),
                esc(message.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</tbody>\n</table>\n");
    }
    b.push_str("</section>\n");

    // Figures.
    if !s.figures.is_empty() {
        b.push_str("<section id=\"figures\">\n<h2>Figures</h2>\n");
        let excluded: Vec<&str> = v.runs.excluded.iter().map(|e| e.id.as_str()).collect();
        for f in &s.figures {
            let svg = f.svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
            let svg = svg.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(&f.spec.name)), 1);
            let _ = writeln!(
                b,
                "<figure id=\"figure-{name}\">\n<h3>{name}</h3>\n{svg}<figcaption>\n<p>{desc}</p>\n\
                 <p>Image <a href=\"figures/{name}.svg\">figures/{name}.svg</a> &middot; numbers \
                 <a href=\"figures/{name}.csv\">figures/{name}.csv</a> ({rows} rows)</p>",
                name = esc(&f.spec.name),
                desc = esc(&f.description),
                rows = f.csv_rows,
            );
            let mut notes = f.notes.clone();
            if !excluded.is_empty() {
                notes.push(format!("excluded runs, not plotted: {}", excluded.join(", ")));
            }
            if !notes.is_empty() {
                b.push_str("<ul>\n");
                for n in &notes {
                    let _ = writeln!(b, "<li>{}</li>", esc(n));
                }
                b.push_str("</ul>\n");
            }
            let _ = writeln!(
                b,
                "<p>Source: <code>runs/&lt;id&gt;/metrics.jsonl</code> of the used runs, rows with probe <code>{}</code> \
                 and name <code>{}</code>.</p>\n</figcaption>\n</figure>",
                esc(&f.spec.metric.probe),
                esc(&f.spec.metric.name)
            );
        }
        b.push_str("</section>\n");
    }

    per_run_table(s, &mut b);

    // Notes.
    b.push_str("<section id=\"notes\">\n<h2>Notes</h2>\n");
    if v.notes.is_empty() {
        b.push_str("<p class=\"muted\">verdict.json has no notes.</p>\n");
    } else {
        b.push_str("<ul>\n");
        for n in &v.notes {
            let _ = writeln!(b, "<li>{}</li>", esc(n));
        }
        b.push_str("</ul>\n");
    }
    if !s.checks.is_empty() {
        b.push_str("<h3 class=\"warn\">Inconsistencies found by the report</h3>\n<ul>\n");
        for c in &s.checks {
            let _ = writeln!(b, "<li class=\"warn\">{}</li>", esc(c));
        }
        b.push_str("</ul>\n");
    }
    b.push_str("</section>\n");

    provenance(s, &mut b);
    page(&format!("{} - sgdlab study report", v.title), &b)
}

/// The effect of every group, when the verdict was decided per group (HTML, or empty).
fn group_effects(v: &VerdictRecord) -> String {
    if v.groups.is_empty() {
        return String::new();
    }
    let mut b = String::from(
        "<h3>Effect per group</h3>\n<table>\n<thead><tr><th>group</th><th>effect</th><th>interval</th>\
         <th>seeds</th><th>verdict</th></tr></thead>\n<tbody>\n",
    );
    for g in &v.groups {
        let _ = writeln!(
            b,
            "<tr><td>{}</td>{}<td class=\"num\">{} to {}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&group_text(&g.group).unwrap_or_else(|| "all runs".into())),
            num_cell(g.value),
            esc(&fmt_opt(g.ci_low)),
            esc(&fmt_opt(g.ci_high)),
            g.seeds.map(|n| n.to_string()).unwrap_or_else(|| "n/a".into()),
            esc(g.verdict.as_deref().unwrap_or("n/a"))
        );
    }
    b.push_str("</tbody>\n</table>\n");
    b
}

fn per_run_table(s: &Study, b: &mut String) {
    let v = &s.verdict;
    let per_run: BTreeMap<&str, &crate::records::PerRunRecord> = v.per_run.iter().map(|r| (r.id.as_str(), r)).collect();
    // The statistic's metric first, then the others by name.
    let statistic_metric = v.statistic.metric.to_string();
    let mut metric_names: Vec<&str> = v
        .per_run
        .iter()
        .flat_map(|r| r.metrics.keys().map(String::as_str))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    metric_names.sort_by_key(|m| *m != statistic_metric);
    b.push_str("<section id=\"per-run\">\n<h2>Per-run results</h2>\n");
    b.push_str(
        "<p class=\"muted\">Status and steps from <code>runs/&lt;id&gt;/record.json</code>; metrics from \
         <code>verdict.json</code> <code>per_run</code>. Sorted by knob value, then seed.</p>\n",
    );
    b.push_str("<div class=\"scroll\"><table>\n<thead><tr><th>run</th><th>seed</th>");
    for k in &s.plan.knobs {
        let _ = write!(b, "<th>{}</th>", esc(k));
    }
    b.push_str("<th>status</th><th>steps</th><th>used</th>");
    for m in &metric_names {
        // Break long `probe/name` headers after the slash.
        let _ = write!(b, "<th class=\"metric\">{}</th>", esc(m).replace('/', "/<wbr>"));
    }
    b.push_str("</tr></thead>\n<tbody>\n");
    for r in &s.runs {
        let pr = per_run.get(r.planned.id.as_str());
        let (status, steps) = match (&r.record, pr) {
            (Some(rec), _) => {
                let steps = match rec.diverged_at_step {
                    Some(at) => format!("diverged at {at} of {}", rec.total_steps),
                    None => format!("{} of {}", rec.steps_completed, rec.total_steps),
                };
                (rec.status.as_str().to_string(), steps)
            }
            (None, Some(pr)) => (pr.status.clone(), "n/a".into()),
            (None, None) => ("not run".into(), "n/a".into()),
        };
        let _ = write!(
            b,
            "<tr{}><td><code>{}</code></td><td class=\"num\">{}</td>",
            if r.used { "" } else { " class=\"excluded\"" },
            esc(&r.planned.id),
            r.planned.seed
        );
        for k in &r.knobs {
            let _ = write!(b, "<td>{}</td>", esc(&knob_text(k)));
        }
        let _ = write!(
            b,
            "<td class=\"status-{}\">{}</td><td>{}</td><td>{}</td>",
            esc(&status.replace(' ', "-")),
            esc(&status),
            esc(&steps),
            if r.used { "yes" } else { "excluded" }
        );
        for m in &metric_names {
            b.push_str(&num_cell(pr.and_then(|p| p.metrics.get(*m).copied().flatten())));
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</tbody>\n</table></div>\n</section>\n");
}

/// Distinct values with how many runs hold each: "0.1.0 (5 runs), 0.1.1 (1 run)".
fn distinct_counts<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    if counts.is_empty() {
        return "no run records".into();
    }
    counts
        .iter()
        .map(|(v, n)| format!("<code>{}</code> ({n} run{})", esc(v), if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn provenance(s: &Study, b: &mut String) {
    let v = &s.verdict;
    let used: Vec<&str> = s.runs.iter().filter(|r| r.used).map(|r| r.planned.id.as_str()).collect();
    let excluded: Vec<&str> = v.runs.excluded.iter().map(|e| e.id.as_str()).collect();
    let records: Vec<_> = s.runs.iter().filter_map(|r| r.record.as_ref()).collect();
    let plan_hash = if s.plan.spec_hash == v.spec_hash {
        "plan.json agrees".to_string()
    } else {
        format!("<span class=\"warn\">plan.json says <code>{}</code></span>", esc(&s.plan.spec_hash))
    };
    let _ = writeln!(
        b,
        "<section id=\"provenance\">\n<h2>Provenance</h2>\n<dl class=\"facts\">\n\
         <dt>Study</dt><dd><code>{}</code>, section {}</dd>\n\
         <dt>Spec hash</dt><dd><code>{}</code> ({})</dd>\n\
         <dt>Mode</dt><dd>{}</dd>\n\
         <dt>sgdlab version</dt><dd>verdict: <code>{}</code>; runs: {}</dd>\n\
         <dt>Git revision</dt><dd>verdict: <code>{}</code>; runs: {}</dd>\n\
         <dt>Runs used ({})</dt><dd>{}</dd>\n\
         <dt>Runs excluded ({})</dt><dd>{}</dd>\n\
         <dt>Verdict numbers</dt><dd>verdict, statistic, effect, interval and per-run metrics are read from \
         <code>verdict.json</code>, as the study runner computed them; this report recomputes none of them</dd>\n\
         <dt>Run status</dt><dd><code>runs/&lt;id&gt;/record.json</code></dd>\n\
         <dt>Figures</dt><dd>aggregated over seeds by this report from <code>runs/&lt;id&gt;/metrics.jsonl</code> \
         of the used runs; each figure's CSV holds every plotted number</dd>\n\
         <dt>Report</dt><dd>built by sgdlab-report {} from the files above alone; rebuilding gives the same bytes</dd>\n\
         </dl>\n</section>",
        esc(&v.study),
        esc(&v.section),
        esc(&v.spec_hash),
        plan_hash,
        if v.quick { "quick (small budgets)" } else { "full" },
        esc(&v.sgdlab_version),
        distinct_counts(records.iter().map(|r| r.sgdlab_version.as_str())),
        esc(&v.git_revision),
        distinct_counts(records.iter().map(|r| r.git_revision.as_str())),
        used.len(),
        code_list(&used),
        excluded.len(),
        code_list(&excluded),
        REPORT_VERSION
    );
}

/// A study in the index.
pub(crate) struct IndexEntry {
    pub verdict: VerdictRecord,
    /// Relative URL of its report.
    pub link: String,
}

/// The index of studies.
pub(crate) fn index(entries: &[IndexEntry]) -> String {
    let mut b = String::new();
    let count = |v: Verdict| entries.iter().filter(|e| e.verdict.verdict == v).count();
    let _ = writeln!(
        b,
        "<header>\n<p class=\"kicker\">sgdlab &middot; claims of W. Gurnee, <i>Inductive Biases of SGD Training</i></p>\n\
         <h1>Studies</h1>\n<div class=\"headline\"><span>{} studies:</span> {} {} &middot; {} {} &middot; {} {}</div>\n</header>",
        entries.len(),
        count(Verdict::Reproduced),
        badge(Verdict::Reproduced),
        count(Verdict::NotReproduced),
        badge(Verdict::NotReproduced),
        count(Verdict::Inconclusive),
        badge(Verdict::Inconclusive),
    );
    b.push_str(
        "<section>\n<div class=\"scroll\"><table>\n<thead><tr><th>section</th><th>study</th><th>claim</th>\
         <th>verdict</th><th>effect (CI)</th><th>runs</th><th>mode</th></tr></thead>\n<tbody>\n",
    );
    for e in entries {
        let v = &e.verdict;
        let mut excluded: BTreeMap<&str, usize> = BTreeMap::new();
        for x in &v.runs.excluded {
            *excluded.entry(x.status.as_str()).or_default() += 1;
        }
        let excluded = if excluded.is_empty() {
            "none excluded".to_string()
        } else {
            let parts: Vec<String> = excluded.iter().map(|(s, n)| format!("{n} {}", esc(s))).collect();
            format!("excluded: {}", parts.join(", "))
        };
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td><a href=\"{}\">{}</a><br><code>{}</code></td><td>{}</td><td>{}</td>\
             <td>{}<br><span class=\"muted\"><code>{}</code> of <code>{}</code></span></td>\
             <td>{} of {} used<br><span class=\"muted\">{}</span></td><td>{}</td></tr>",
            esc(&v.section),
            esc(&e.link),
            esc(&v.title),
            esc(&v.study),
            esc(&v.claim),
            badge(v.verdict),
            esc(&effect_text(v.effect.as_ref())),
            esc(&v.statistic.name),
            esc(&v.statistic.metric.to_string()),
            v.runs.used,
            v.runs.planned,
            excluded,
            mode(v.quick)
        );
    }
    b.push_str("</tbody>\n</table></div>\n</section>\n");
    let versions = distinct_counts_studies(entries.iter().map(|e| e.verdict.sgdlab_version.as_str()));
    let revisions = distinct_counts_studies(entries.iter().map(|e| e.verdict.git_revision.as_str()));
    let _ = writeln!(
        b,
        "<footer>Provenance: each row is read from the study's <code>verdict.json</code>; its report gives the \
         runs and files behind every number. sgdlab version {versions}; git revision {revisions}. Index built by \
         sgdlab-report {REPORT_VERSION}.</footer>"
    );
    page("sgdlab studies", &b)
}

fn distinct_counts_studies<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let set: BTreeSet<&str> = values.collect();
    if set.is_empty() {
        return "n/a".into();
    }
    set.iter().map(|v| format!("<code>{}</code>", esc(v))).collect::<Vec<_>>().join(", ")
}
