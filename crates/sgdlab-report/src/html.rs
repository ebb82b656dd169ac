//! The study report page. Self-contained: inline CSS and SVG, no scripts, nothing fetched;
//! every text from a record goes through [`esc`].

use crate::figures::Figure;
use crate::format::{esc, fmt_num, value_text};
use crate::study::Study;
use sgdlab_studies::records::{ClaimRecord, EffectRecord, RunState, Verdict};
use sgdlab_studies::spec::{DecisionSpec, Provenance};
use std::fmt::Write as _;

/// Version of this crate, written into every report.
pub(crate) const REPORT_VERSION: &str = env!("CARGO_PKG_VERSION");

const CSS: &str = r#"
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --green: #1a7f37; --red: #cf222e; --amber: #9a6700; --grey: #6e7781; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 36px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 27px; line-height: 1.25; margin: 4px 0 12px; }
h2 { font-size: 20px; margin: 38px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
a { color: #0969da; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.86em; background: var(--soft); padding: 0 3px; border-radius: 3px; overflow-wrap: anywhere; }
.kicker { color: var(--muted); font-size: 13px; margin: 0; }
blockquote.survey { margin: 12px 0 16px; padding: 10px 16px; border-left: 4px solid var(--line); background: var(--soft); font-size: 17px; }
blockquote.survey .who { display: block; font-size: 13px; color: var(--muted); margin-top: 4px; }
.headline { margin: 14px 0; display: flex; align-items: center; flex-wrap: wrap; gap: 8px 18px; padding: 12px 16px; border: 1px solid var(--line); border-radius: 8px; }
.headline .badge { font-size: 16px; padding: 4px 14px; }
.headline .summary { font-size: 17px; font-weight: 600; }
.banner { margin: 12px 0; padding: 10px 16px; border-radius: 8px; border: 1px solid; }
.banner.quick { background: #fff8c5; border-color: #d4a72c; }
.banner.incomplete { background: #ffebe9; border-color: #ff8182; }
.banner.checks { background: #fff8c5; border-color: #d4a72c; }
.banner p { margin: 4px 0; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 1px 10px; border-radius: 12px; color: #fff; font-weight: 600; font-size: 13px; white-space: nowrap; }
.badge.reproduced { background: var(--green); }
.badge.partly-reproduced { background: var(--amber); }
.badge.not-reproduced { background: var(--red); }
.badge.inconclusive { background: var(--grey); }
.tag { display: inline-block; padding: 0 6px; border-radius: 4px; border: 1px solid var(--line); background: var(--soft); font-size: 12px; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: nowrap; }
.tag.unverified { border-color: #d4a72c; background: #fff8c5; }
section.claim { margin-top: 30px; }
section.claim > h2 { display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
section.claim > h2 .id { color: var(--muted); font-weight: 400; font-size: 14px; }
.effect { margin: 10px 0 14px; padding: 10px 14px; border: 1px solid var(--line); border-radius: 8px; }
.effect .numbers { font-size: 17px; }
.effect svg { display: block; max-width: 100%; height: auto; margin-top: 6px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td svg { display: block; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.status-diverged, .status-failed { color: var(--red); font-weight: 600; }
.status-running, .status-interrupted, .status-missing { color: var(--amber); font-weight: 600; }
details { margin: 8px 0; }
summary { cursor: pointer; color: #0969da; }
figure { margin: 18px 0 30px; }
figure svg { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
figcaption p { margin: 4px 0; }
figcaption ul { margin: 4px 0; padding-left: 20px; }
.warn { color: var(--amber); }
ul.overview { padding-left: 20px; }
ul.overview li { margin: 4px 0; }
ul.claims { list-style: none; margin: 0; padding: 0; }
ul.claims li { margin: 2px 0; }
main:has(> .wide) { max-width: 1400px; }
table.survey td { font-size: 13px; }
table.survey td.claim { min-width: 16em; }
table.survey td.study { min-width: 11em; }
tr.none td { background: #fbfcfd; }
footer { margin-top: 40px; font-size: 12px; color: var(--muted); }
"#;

/// A whole page.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n\
         <style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        esc(title)
    )
}

/// A verdict badge.
pub(crate) fn badge(v: Verdict) -> String {
    format!("<span class=\"badge {}\">{}</span>", v.as_str().replace(' ', "-"), esc(v.as_str()))
}

/// The provenance tag with its meaning on hover.
pub(crate) fn provenance_tag(p: Provenance) -> String {
    let meaning = match p {
        Provenance::Paper => "from the paper, recalled with good confidence (re-check the figure before quoting)",
        Provenance::Unverified => "a number recalled but not checked against the paper",
        Provenance::Computed => "recomputed independently",
        Provenance::Code => "read in the official code",
    };
    let class = if p == Provenance::Unverified { " unverified" } else { "" };
    format!("<span class=\"tag{class}\" title=\"{}\">{}</span>", esc(meaning), esc(p.tag()))
}

/// A number for people, the full value on hover.
pub(crate) fn num(v: f64) -> String {
    format!("<span title=\"{v}\">{}</span>", esc(&fmt_num(v)))
}

/// "3.1 (95% interval 2.2 to 4.4)" in HTML.
pub(crate) fn effect_html(e: &EffectRecord) -> String {
    format!(
        "<b>{}</b> <span class=\"muted\">({}% interval {} to {})</span>",
        num(e.value),
        fmt_num(100.0 * e.level),
        num(e.ci_low),
        num(e.ci_high)
    )
}

/// The decision threshold in words: "> 2", "in [0.5, 2]".
fn threshold_words(d: &DecisionSpec) -> String {
    d.predicate()
}

/// A number line with the decision threshold (or target interval), the effect's interval and
/// the estimate: inline SVG.
pub(crate) fn effect_strip(e: &EffectRecord, d: &DecisionSpec, verdict: Verdict, width: u32) -> String {
    let h = 58.0;
    let w = f64::from(width);
    let thresholds = d.thresholds();
    let lo = thresholds.iter().copied().fold(e.ci_low.min(e.value), f64::min);
    let hi = thresholds.iter().copied().fold(e.ci_high.max(e.value), f64::max);
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    let (a, b) = (lo - 0.15 * span, hi + 0.15 * span);
    let (left, right) = (14.0, w - 14.0);
    let px = |v: f64| left + (v - a) / (b - a) * (right - left);
    let colour = match verdict {
        Verdict::Reproduced => "#1a7f37",
        Verdict::NotReproduced => "#cf222e",
        Verdict::PartlyReproduced => "#9a6700",
        Verdict::Inconclusive => "#6e7781",
    };
    let axis_y = 40.0;
    let mut s = format!(
        "<svg width=\"{width}\" height=\"{h}\" viewBox=\"0 0 {width} {h}\" role=\"img\" \
         aria-label=\"effect {} with interval {} to {} against threshold {}\" font-family=\"sans-serif\" font-size=\"12\">",
        esc(&fmt_num(e.value)),
        esc(&fmt_num(e.ci_low)),
        esc(&fmt_num(e.ci_high)),
        esc(&threshold_words(d))
    );
    if let DecisionSpec::Within([t0, t1]) = d {
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"8\" width=\"{:.1}\" height=\"40\" fill=\"#1a7f37\" fill-opacity=\"0.12\"/>",
            px(*t0),
            px(*t1) - px(*t0)
        );
    }
    let _ = write!(s, "<line x1=\"{left}\" x2=\"{right}\" y1=\"{axis_y}\" y2=\"{axis_y}\" stroke=\"#8c959f\"/>");
    for t in crate::figures::plot::linear_ticks(a, b, 6) {
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{axis_y}\" y2=\"{}\" stroke=\"#8c959f\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#59636e\">{}</text>",
            axis_y + 4.0,
            axis_y + 16.0,
            esc(&fmt_num(t)),
            x = px(t)
        );
    }
    for t in &thresholds {
        // The label on the side with room: right of the line, or left of it near the right end.
        let (anchor, dx) = if px(*t) > 0.7 * w { ("end", -4) } else { ("start", 4) };
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"4\" y2=\"{axis_y}\" stroke=\"#cf222e\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{x:.1}\" y=\"12\" dx=\"{dx}\" text-anchor=\"{anchor}\" fill=\"#cf222e\">threshold {}</text>",
            esc(&fmt_num(*t)),
            x = px(*t)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"26\" y2=\"26\" stroke=\"{colour}\" stroke-width=\"6\" stroke-linecap=\"round\"/>\
         <circle cx=\"{:.1}\" cy=\"26\" r=\"6\" fill=\"#fff\" stroke=\"{colour}\" stroke-width=\"2.5\"/></svg>",
        px(e.ci_low),
        px(e.ci_high),
        px(e.value)
    );
    s
}

/// The report of one study.
pub(crate) fn study_report(s: &Study, figures: &[Figure]) -> String {
    let v = &s.verdict;
    let mut b = String::new();
    header(s, &mut b);
    for (i, c) in v.claims.iter().enumerate() {
        claim_section(s, i, c, figures, &mut b);
    }
    let general: Vec<&Figure> = figures.iter().filter(|f| !v.claims.iter().any(|c| c.id == f.spec.claim)).collect();
    if !general.is_empty() {
        b.push_str("<section id=\"figures\">\n<h2>Other figures</h2>\n");
        for f in general {
            figure(f, &mut b);
        }
        b.push_str("</section>\n");
    }
    runs_section(s, &mut b);
    notes_section(s, &mut b);
    provenance_section(s, &mut b);
    page(&format!("{}: sgdlab study report", v.title), &b)
}

fn header(s: &Study, b: &mut String) {
    let v = &s.verdict;
    let survey = sgdlab_studies::survey::claim(&v.section);
    let _ = writeln!(
        b,
        "<header>\n<p class=\"kicker\">sgdlab study <code>{}</code> &middot; PROTOCOLS section {}{} &middot; {} run</p>\n\
         <h1>{}</h1>\n<blockquote class=\"survey\">{}<span class=\"who\">Survey claim{}</span></blockquote>",
        esc(&v.study),
        esc(&v.section),
        survey.map(|c| format!(" ({})", esc(c.family))).unwrap_or_default(),
        if v.quick { "quick" } else { "full" },
        esc(&v.title),
        esc(&v.survey_claim),
        survey.map(|c| format!(": {} &middot; {}", esc(c.paper), esc(c.claim))).unwrap_or_default(),
    );
    let _ = writeln!(
        b,
        "<div class=\"headline\">{} <span class=\"summary\">{}</span> <span class=\"muted\">{} of {} planned runs completed</span></div>",
        badge(v.verdict),
        esc(&v.summary),
        v.runs.completed,
        v.runs.planned
    );
    if !v.complete {
        let r = &v.runs;
        let parts: Vec<String> = [(r.running, "running"), (r.interrupted, "interrupted"), (r.missing, "not run yet")]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, w)| format!("{n} {w}"))
            .collect();
        let _ = writeln!(
            b,
            "<div class=\"banner incomplete\"><p><b>Incomplete study.</b> {} of {} planned runs have not finished ({}): \
             the verdicts below rest on the finished runs only. Run the study again to finish it \
             (<code>sgdlab study status</code> lists the runs).</p></div>",
            r.running + r.interrupted + r.missing,
            r.planned,
            parts.join(", ")
        );
    }
    if v.quick || !v.overrides.is_empty() {
        let list: Vec<String> = v.overrides.iter().map(|o| format!("<code>{}</code>", esc(o))).collect();
        let _ = writeln!(
            b,
            "<div class=\"banner quick\"><p><b>{}</b> Overrides of the study spec: {}.</p>{}</div>",
            if v.quick { "Quick run: a smaller version of the study, not the full one." } else { "Modified run." },
            if list.is_empty() { "none".to_string() } else { list.join(", ") },
            if v.quick_reason.is_empty() {
                String::new()
            } else {
                format!("<p>Why it still decides the claims: {}</p>", esc(&v.quick_reason))
            }
        );
    }
    if !s.checks.is_empty() {
        b.push_str("<div class=\"banner checks\"><p><b>The records disagree</b> (details under Notes).</p></div>\n");
    }
    b.push_str("<ul class=\"overview\">\n");
    for (i, c) in v.claims.iter().enumerate() {
        let _ = writeln!(
            b,
            "<li>{} <a href=\"#claim-{}\">Claim {}</a>: {}{}</li>",
            badge(c.verdict),
            esc(&c.id),
            i + 1,
            esc(&c.statement),
            c.effect.as_ref().map(|e| format!(" &middot; effect {}", effect_html(e))).unwrap_or_default()
        );
    }
    b.push_str("</ul>\n</header>\n");
}

/// The run's arm label and seed, by run id.
fn run_info<'a>(s: &'a Study, id: &str) -> Option<(usize, &'a sgdlab_studies::records::RunSummary)> {
    s.runs.iter().position(|r| r.summary.id == id).map(|i| (i, &s.runs[i].summary))
}

fn arm_cell(s: &Study, run: usize) -> String {
    let arm = s.arms.arm_of(run);
    format!(
        "<td><span class=\"swatch\" style=\"background:{}\"></span>{}</td>",
        crate::arms::css_colour(crate::arms::colour(arm)),
        esc(&s.arms.arm_label(arm))
    )
}

fn claim_section(s: &Study, i: usize, c: &ClaimRecord, figures: &[Figure], b: &mut String) {
    let _ = writeln!(
        b,
        "<section class=\"claim\" id=\"claim-{id}\">\n<h2>Claim {} {} <span class=\"id\">{id}</span></h2>\n<p>{}</p>",
        i + 1,
        badge(c.verdict),
        esc(&c.statement),
        id = esc(&c.id)
    );
    b.push_str("<div class=\"effect\">");
    match &c.effect {
        Some(e) => {
            let _ = write!(
                b,
                "<div class=\"numbers\">Effect {} &middot; threshold <b>{}</b></div>{}",
                effect_html(e),
                esc(&threshold_words(&c.decision)),
                effect_strip(e, &c.decision, c.verdict, 640)
            );
        }
        None => {
            let _ = write!(
                b,
                "<div class=\"numbers\">No effect could be formed &middot; threshold <b>{}</b></div><p class=\"warn\">{}</p>",
                esc(&threshold_words(&c.decision)),
                esc(c.reason.as_deref().unwrap_or("the verdict gives no reason"))
            );
        }
    }
    b.push_str("</div>\n");
    let metrics: Vec<String> = c.value_spec.metrics().iter().map(|m| format!("<code>{}</code>", esc(m))).collect();
    let _ = writeln!(
        b,
        "<dl class=\"facts\">\n<dt>Expected</dt><dd>{} {}{}</dd>\n<dt>Per-run value</dt><dd>{}{}</dd>\n\
         <dt>Statistic</dt><dd>{}</dd>\n<dt>Decision</dt><dd>{}</dd>\n{}<dt>Runs</dt><dd>{} used, {} excluded</dd>\n</dl>",
        esc(&c.expected),
        provenance_tag(c.provenance),
        if c.source.is_empty() {
            String::new()
        } else {
            format!(" <span class=\"muted\">source: {}</span>", esc(&c.source))
        },
        esc(&s.labels.describe(&c.value_spec)),
        if metrics.is_empty() {
            String::new()
        } else {
            format!(" <span class=\"muted\">(reads {})</span>", metrics.join(", "))
        },
        esc(&c.statistic),
        esc(&c.decision_rule),
        c.effect
            .as_ref()
            .map(|e| format!("<dt>Interval</dt><dd>{}; {} runs over {} seeds</dd>\n", esc(&e.method), e.runs, e.seeds))
            .unwrap_or_default(),
        c.runs_used,
        c.excluded.len()
    );
    if c.within.is_some() {
        groups_table(c, b);
    }
    excluded_table(s, c, b);
    per_run_values(s, c, b);
    for f in figures.iter().filter(|f| f.spec.claim == c.id) {
        figure(f, b);
    }
    b.push_str("</section>\n");
}

fn groups_table(c: &ClaimRecord, b: &mut String) {
    let within = c.within.as_deref().unwrap_or("");
    let _ = writeln!(
        b,
        "<h3>Within each value of {}</h3>\n<p class=\"muted\">The claim must hold in every group; the headline effect is \
         the group closest to failing.</p>\n<div class=\"scroll\"><table>\n<thead><tr><th>{}</th><th>verdict</th><th>effect</th>\
         <th>against the threshold</th><th>seeds</th></tr></thead>\n<tbody>",
        esc(&crate::format::axis_words(within)),
        esc(within)
    );
    for g in &c.groups {
        let group = g.group.as_ref().map(value_text).unwrap_or_else(|| "all runs".into());
        let (effect, strip, seeds) = match &g.effect {
            Some(e) => (effect_html(e), effect_strip(e, &c.decision, g.verdict, 360), e.seeds.to_string()),
            None => (
                format!("<span class=\"warn\">{}</span>", esc(g.reason.as_deref().unwrap_or("no effect"))),
                String::new(),
                "".into(),
            ),
        };
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}{}</td><td>{effect}</td><td>{strip}</td><td class=\"num\">{seeds}</td></tr>",
            esc(&group),
            badge(g.verdict),
            match (&g.reason, &g.effect) {
                (Some(r), Some(_)) => format!("<br><span class=\"muted\">{}</span>", esc(r)),
                _ => String::new(),
            }
        );
    }
    b.push_str("</tbody>\n</table></div>\n");
}

fn excluded_table(s: &Study, c: &ClaimRecord, b: &mut String) {
    if c.excluded.is_empty() {
        return;
    }
    let _ = writeln!(
        b,
        "<details{}><summary>Runs left out of this claim ({})</summary>\n<div class=\"scroll\"><table>\n<thead><tr><th>run</th>\
         <th>arm</th><th>seed</th><th>status</th><th>step</th><th>why</th></tr></thead>\n<tbody>",
        if c.excluded.len() <= 10 { " open" } else { "" },
        c.excluded.len()
    );
    for e in &c.excluded {
        let info = run_info(s, &e.id);
        let _ = writeln!(
            b,
            "<tr><td><code>{}</code></td>{}<td class=\"num\">{}</td><td class=\"status-{st}\">{st}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&e.id),
            info.map(|(i, _)| arm_cell(s, i)).unwrap_or_else(|| "<td></td>".into()),
            info.map(|(_, r)| r.seed.to_string()).unwrap_or_default(),
            e.step.map(|x| x.to_string()).unwrap_or_default(),
            esc(&e.reason),
            st = e.status.as_str()
        );
    }
    b.push_str("</tbody>\n</table></div>\n</details>\n");
}

fn per_run_values(s: &Study, c: &ClaimRecord, b: &mut String) {
    if c.per_run.is_empty() {
        return;
    }
    let order = s.run_order();
    let _ = writeln!(
        b,
        "<details><summary>Per-run values ({})</summary>\n<div class=\"scroll\"><table>\n<thead><tr><th>run</th><th>arm</th>\
         <th>seed</th><th>value</th></tr></thead>\n<tbody>",
        c.per_run.len()
    );
    for &i in &order {
        let r = &s.runs[i].summary;
        if let Some(p) = c.per_run.iter().find(|p| p.id == r.id) {
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code></td>{}<td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&r.id),
                arm_cell(s, i),
                r.seed,
                p.value.map(num).unwrap_or_else(|| "not finite".into())
            );
        }
    }
    b.push_str("</tbody>\n</table></div>\n</details>\n");
}

/// A figure with its caption, notes and files.
fn figure(f: &Figure, b: &mut String) {
    let svg = f.svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    let svg = svg.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(&f.title)), 1);
    let _ = writeln!(
        b,
        "<figure id=\"figure-{name}\">\n{svg}<figcaption>\n<p><b>{}.</b> {}{}</p>",
        esc(&f.title),
        esc(&f.caption),
        if f.spec.caption.is_empty() { String::new() } else { format!(" {}", esc(&f.spec.caption)) },
        name = esc(&f.spec.name),
    );
    if !f.notes.is_empty() {
        b.push_str("<ul>\n");
        for n in &f.notes {
            let _ = writeln!(b, "<li>{}</li>", esc(n));
        }
        b.push_str("</ul>\n");
    }
    let _ = writeln!(
        b,
        "<p>Files: <a href=\"figures/{name}.svg\">figures/{name}.svg</a> &middot; numbers \
         <a href=\"figures/{name}.csv\">figures/{name}.csv</a> ({} rows)</p>\n</figcaption>\n</figure>",
        f.csv_rows,
        name = esc(&f.spec.name)
    );
}

fn runs_section(s: &Study, b: &mut String) {
    let v = &s.verdict;
    let c = &v.runs;
    let states = [
        (c.completed, "completed"),
        (c.diverged, "diverged"),
        (c.failed, "failed"),
        (c.interrupted, "interrupted"),
        (c.running, "running"),
        (c.missing, "not run yet"),
    ];
    let parts: Vec<String> = states.iter().filter(|(n, _)| *n > 0).map(|(n, w)| format!("{n} {w}")).collect();
    let _ = writeln!(b, "<section id=\"runs\">\n<h2>Runs</h2>\n<p>{} planned: {}.</p>", c.planned, parts.join(", "));
    b.push_str(
        "<div class=\"scroll\"><table>\n<thead><tr><th>arm</th><th>runs</th><th>completed</th><th>steps (completed)</th>\
         <th>not completed</th></tr></thead>\n<tbody>\n",
    );
    for arm in 0..s.arms.arms.len() {
        let runs: Vec<usize> = (0..s.runs.len()).filter(|&i| s.arms.arm_of(i) == arm).collect();
        let done: Vec<u64> = runs
            .iter()
            .map(|&i| &s.runs[i].summary)
            .filter(|r| r.status == RunState::Completed)
            .filter_map(|r| r.step)
            .collect();
        let steps = match (done.iter().min(), done.iter().max()) {
            (Some(a), Some(z)) if a == z => a.to_string(),
            (Some(a), Some(z)) => format!("{a} to {z}"),
            _ => String::new(),
        };
        let others: Vec<String> = runs
            .iter()
            .map(|&i| &s.runs[i].summary)
            .filter(|r| r.status != RunState::Completed)
            .map(|r| match (r.status, r.step) {
                (RunState::Diverged, Some(st)) => format!("seed {} diverged at step {st}", r.seed),
                (st, _) => format!("seed {} {}", r.seed, st.as_str()),
            })
            .collect();
        let _ = writeln!(
            b,
            "<tr>{}<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            arm_cell(s, runs[0]),
            runs.len(),
            done.len(),
            steps,
            esc(&others.join("; "))
        );
    }
    b.push_str("</tbody>\n</table></div>\n");
    all_runs_table(s, b);
    b.push_str("</section>\n");
}

fn all_runs_table(s: &Study, b: &mut String) {
    let _ = writeln!(
        b,
        "<details><summary>Every run ({})</summary>\n<div class=\"scroll\"><table>\n<thead><tr><th>run</th><th>arm</th>\
         <th>seed</th><th>sweeps</th><th>status</th><th>step</th><th>message</th></tr></thead>\n<tbody>",
        s.runs.len()
    );
    for i in s.run_order() {
        let r = &s.runs[i].summary;
        let _ = writeln!(
            b,
            "<tr><td><code>{}</code></td>{}<td class=\"num\">{}</td><td>{}</td><td class=\"status-{st}\">{st}</td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&r.id),
            arm_cell(s, i),
            r.seed,
            esc(&r.sweeps.join(", ")),
            r.step.map(|x| x.to_string()).unwrap_or_default(),
            esc(r.message.as_deref().unwrap_or("")),
            st = r.status.as_str()
        );
    }
    b.push_str("</tbody>\n</table></div>\n</details>\n");
}

fn notes_section(s: &Study, b: &mut String) {
    b.push_str("<section id=\"notes\">\n<h2>Notes</h2>\n");
    if s.verdict.notes.is_empty() {
        b.push_str("<p class=\"muted\">The study has no notes.</p>\n");
    } else {
        b.push_str("<ul>\n");
        for n in &s.verdict.notes {
            let _ = writeln!(b, "<li>{}</li>", esc(n));
        }
        b.push_str("</ul>\n");
    }
    if !s.checks.is_empty() {
        b.push_str("<h3 class=\"warn\">Disagreements between the records</h3>\n<ul>\n");
        for c in &s.checks {
            let _ = writeln!(b, "<li class=\"warn\">{}</li>", esc(c));
        }
        b.push_str("</ul>\n");
    }
    b.push_str("</section>\n");
}

fn provenance_section(s: &Study, b: &mut String) {
    let v = &s.verdict;
    let hash = if s.plan.spec_hash == v.spec_hash {
        "plan.json agrees".to_string()
    } else {
        format!("<span class=\"warn\">plan.json says <code>{}</code></span>", esc(&s.plan.spec_hash))
    };
    let overrides: Vec<String> = v.overrides.iter().map(|o| format!("<code>{}</code>", esc(o))).collect();
    let _ = writeln!(
        b,
        "<section id=\"provenance\">\n<h2>Provenance</h2>\n<dl class=\"facts\">\n\
         <dt>Study</dt><dd><code>{}</code>, PROTOCOLS section {}</dd>\n\
         <dt>Spec hash</dt><dd><code>{}</code> ({hash})</dd>\n\
         <dt>Mode</dt><dd>{}; overrides: {}</dd>\n\
         <dt>sgdlab version</dt><dd><code>{}</code></dd>\n\
         <dt>Git revision</dt><dd><code>{}</code></dd>\n\
         <dt>Verdicts</dt><dd>read from <code>verdict.json</code> as the study computed them from the run records</dd>\n\
         <dt>Figures</dt><dd>drawn by this report from <code>runs/&lt;id&gt;/metrics.jsonl</code> of the completed runs; \
         each figure's CSV holds every number drawn</dd>\n\
         <dt>Report</dt><dd>sgdlab-report {REPORT_VERSION}, from the files above alone; a rebuild gives the same bytes</dd>\n\
         </dl>\n</section>",
        esc(&v.study),
        esc(&v.section),
        esc(&v.spec_hash),
        if v.quick { "quick" } else { "full" },
        if overrides.is_empty() { "none".to_string() } else { overrides.join(", ") },
        esc(&v.sgdlab_version),
        esc(&v.git_revision),
    );
}
