//! The index page: the survey's table, every PROTOCOLS section in order with its studies, their
//! claims, verdicts, effects and intervals; "no study yet" where a section has none.

use crate::format::esc;
use crate::html::{REPORT_VERSION, badge, effect_html};
use sgdlab_studies::records::{Verdict, VerdictRecord};
use sgdlab_studies::survey::{CLAIMS, SurveyClaim};
use std::fmt::Write as _;

/// A study in the index.
pub(crate) struct Entry {
    pub verdict: VerdictRecord,
    /// Relative URL of its report.
    pub link: String,
}

/// A built-in study that was not run, with the reason (e.g. data that is not on this machine).
#[derive(Debug, Clone, PartialEq)]
pub struct NotRun {
    pub name: String,
    pub section: String,
    pub reason: String,
}

/// The index page.
pub(crate) fn page(entries: &[Entry], not_run: &[NotRun]) -> String {
    let mut b = String::new();
    let sections_with = CLAIMS.iter().filter(|c| entries.iter().any(|e| e.verdict.section == c.section)).count();
    let count = |v: Verdict| entries.iter().filter(|e| e.verdict.verdict == v).count();
    let counts: Vec<String> =
        [Verdict::Reproduced, Verdict::PartlyReproduced, Verdict::NotReproduced, Verdict::Inconclusive]
            .iter()
            .map(|&v| {
                format!("<span class=\"badge {}\">{} {}</span>", v.as_str().replace(' ', "-"), count(v), v.as_str())
            })
            .collect();
    let _ = writeln!(
        b,
        "<header>\n<p class=\"kicker\">sgdlab &middot; the claims of the survey <i>Inductive Biases of SGD Training</i> \
         (PROTOCOLS.md)</p>\n<h1>Survey claims and their studies</h1>\n<div class=\"headline\"><span class=\"summary\">{} of \
         {} sections have a study</span> <span>{} {}:</span> {}</div>\n</header>",
        sections_with,
        CLAIMS.len(),
        entries.len(),
        if entries.len() == 1 { "study" } else { "studies" },
        counts.join(" ")
    );
    b.push_str(
        "<section>\n<div class=\"scroll\"><table class=\"survey\">\n<thead><tr><th>section</th><th>family</th><th>paper</th>\
         <th>claim</th><th>study</th><th>verdict</th><th>claims: verdict, effect and interval</th></tr></thead>\n<tbody>\n",
    );
    for c in CLAIMS {
        let mine: Vec<&Entry> = entries.iter().filter(|e| e.verdict.section == c.section).collect();
        let skipped: Vec<&NotRun> = not_run.iter().filter(|n| n.section == c.section).collect();
        section_rows(c, &mine, &skipped, &mut b);
    }
    b.push_str("</tbody>\n</table></div>\n</section>\n");
    let other: Vec<&Entry> =
        entries.iter().filter(|e| sgdlab_studies::survey::claim(&e.verdict.section).is_none()).collect();
    if !other.is_empty() {
        b.push_str(
            "<section>\n<h2>Studies of no survey section</h2>\n<div class=\"scroll\"><table>\n<thead><tr><th>section</th>\
             <th>study</th><th>verdict</th><th>claims: verdict, effect and interval</th></tr></thead>\n<tbody>\n",
        );
        for e in other {
            let _ = writeln!(b, "<tr><td>{}</td>{}</tr>", esc(&e.verdict.section), study_cells(e));
        }
        b.push_str("</tbody>\n</table></div>\n</section>\n");
    }
    let _ = writeln!(
        b,
        "<footer>Each row is read from the study's <code>verdict.json</code>; its report gives the runs and files behind every \
         number. Index built by sgdlab-report {REPORT_VERSION}.</footer>"
    );
    crate::html::page("sgdlab: survey claims and their studies", &format!("<div class=\"wide\">{b}</div>"))
}

/// The rows of one section: one per study (the section's cells spanning them), or "no study yet".
fn section_rows(c: &SurveyClaim, mine: &[&Entry], skipped: &[&NotRun], b: &mut String) {
    let span = (mine.len() + skipped.len()).max(1);
    let head = format!(
        "<td rowspan=\"{span}\"><b>{}</b></td><td rowspan=\"{span}\">{}</td><td rowspan=\"{span}\">{}</td><td rowspan=\"{span}\" class=\"claim\">{}</td>",
        esc(c.section),
        esc(c.family),
        esc(c.paper),
        esc(c.claim)
    );
    if mine.is_empty() && skipped.is_empty() {
        let _ = writeln!(b, "<tr class=\"none\">{head}<td colspan=\"3\" class=\"muted\">no study yet</td></tr>");
        return;
    }
    for (i, e) in mine.iter().enumerate() {
        let _ = writeln!(b, "<tr>{}{}</tr>", if i == 0 { head.as_str() } else { "" }, study_cells(e));
    }
    for (i, n) in skipped.iter().enumerate() {
        let _ = writeln!(
            b,
            "<tr class=\"none\">{}<td><code>{}</code></td><td><span class=\"muted\">not run</span></td><td class=\"muted\">{}</td></tr>",
            if i == 0 && mine.is_empty() { head.as_str() } else { "" },
            esc(&n.name),
            esc(&n.reason)
        );
    }
}

/// Study, verdict and claims cells.
fn study_cells(e: &Entry) -> String {
    let v = &e.verdict;
    let claims: Vec<String> = v
        .claims
        .iter()
        .map(|c| {
            let effect = match &c.effect {
                Some(x) => effect_html(x),
                None => format!(
                    "<span class=\"muted\">no effect: {}</span>",
                    esc(c.reason.as_deref().unwrap_or("none formed"))
                ),
            };
            format!(
                "<li>{} <code>{}</code> {effect} <span class=\"muted\">&middot; threshold {}</span></li>",
                badge(c.verdict),
                esc(&c.id),
                esc(&c.decision.predicate())
            )
        })
        .collect();
    format!(
        "<td class=\"study\"><a href=\"{}\">{}</a><br><code>{}</code>{}</td><td>{}<br><span class=\"muted\">{}</span>{}</td><td><ul class=\"claims\">{}</ul></td>",
        esc(&e.link),
        esc(&v.title),
        esc(&v.study),
        if v.quick { " <span class=\"tag\">quick</span>" } else { "" },
        badge(v.verdict),
        esc(&v.summary),
        if v.complete { "" } else { "<br><span class=\"warn\">incomplete</span>" },
        claims.join("")
    )
}
