//! Text for one-line error messages.

use std::borrow::Cow;

/// `s` with its control characters escaped (`\n` as `\\n`, `\t` as `\\t`, others as `\\u{..}`),
/// so that an error quoting user input (a spec string, a `--set` value, a third-party parser's
/// message) stays on one line. Text without control characters is returned as is.
pub fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(one_line("mlp:40-10:relu é"), Cow::Borrowed("mlp:40-10:relu é")));
        assert_eq!(one_line("a\nb\tc\r\u{0}d"), "a\\nb\\tc\\r\\u{0}d");
    }
}
