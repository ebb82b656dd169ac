//! Text helpers: numbers for people, axis values and names, HTML escaping, CSV fields,
//! relative links.

use std::path::{Component, Path, PathBuf};

/// A number with four significant digits for tables and tick labels (`1.235e-5` outside
/// [1e-3, 1e5)); full precision lives in the CSV files and the `title` of table cells.
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}"))
    } else {
        let s = format!("{v:.3e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
            None => s,
        }
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s.to_string() }
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An axis value as the plan wrote it, for people and CSV cells: text without quotes, numbers
/// and booleans as JSON writes them (`32`, `0.001`, `true`).
pub(crate) fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An axis name in words: `lr` is "learning rate", underscores are spaces (`batch_size` is
/// "batch size").
pub(crate) fn axis_words(name: &str) -> String {
    match name {
        "lr" => "learning rate".into(),
        other => other.replace('_', " "),
    }
}

/// Quotes a CSV field when it holds a comma, quote, line break or edge space (RFC 4180).
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Shortest text that reads back as the same f64; empty when not finite.
pub(crate) fn csv_number(v: f64) -> String {
    if v.is_finite() { format!("{v}") } else { String::new() }
}

/// Percent-encodes one path segment of a relative URL (keeps unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The relative URL from directory `from` to path `to` (both absolute and normalised).
pub(crate) fn relative_url(from: &Path, to: &Path) -> String {
    let f: Vec<Component<'_>> = from.components().collect();
    let t: Vec<Component<'_>> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c.as_os_str());
    }
    rel.components().map(|c| encode_segment(&c.as_os_str().to_string_lossy())).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_four_significant_digits() {
        assert_eq!(fmt_num(3.1), "3.1");
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(12345.0), "12345");
        assert_eq!(fmt_num(0.001234), "0.001234");
        assert_eq!(fmt_num(-0.5), "-0.5");
        assert_eq!(fmt_num(1.5e-5), "1.5e-5");
        assert_eq!(fmt_num(2e6), "2e6");
        assert_eq!(fmt_num(0.0), "0");
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("sgd"), "sgd");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_number(0.1), "0.1");
        assert_eq!(csv_number(f64::NAN), "");
    }

    #[test]
    fn relative_urls() {
        assert_eq!(relative_url(Path::new("/o"), Path::new("/o/s/report.html")), "s/report.html");
        assert_eq!(relative_url(Path::new("/o/idx"), Path::new("/o/s 1/report.html")), "../s%201/report.html");
    }
}
