//! Text helpers: numbers for people, HTML escaping, relative links.

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

/// An optional number (`null` in the record) for people.
pub(crate) fn fmt_opt(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "n/a".into())
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
    fn relative_urls() {
        assert_eq!(relative_url(Path::new("/o"), Path::new("/o/s/report.html")), "s/report.html");
        assert_eq!(relative_url(Path::new("/o/idx"), Path::new("/o/s 1/report.html")), "../s%201/report.html");
    }
}
