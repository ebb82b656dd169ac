//! Where things are in a study file: every key and value of a TOML text with its line, so that
//! an error found after parsing (an unknown probe, a misspelt metric, a bad run-spec key in
//! `[base]`) points into the user's file as `FILE:LINE: message`.

use std::fmt;
use toml::de::{DeTable, DeValue};

/// One step of a path into a TOML document: a key, or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Key(k) => f.write_str(k),
            Seg::Index(i) => write!(f, "{i}"),
        }
    }
}

/// A path into a TOML document, e.g. `claim.0.value.last`.
pub type Path = Vec<Seg>;

/// Builds a path from dotted text, numbers read as indices (`claim.0.value`).
pub fn path(dotted: &str) -> Path {
    dotted
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_or_else(|_| Seg::Key(s.to_string()), Seg::Index))
        .collect()
}

/// Every key and value of a document with its byte span.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    /// `(path, span of the key or array element, span of the value)`.
    entries: Vec<(Path, std::ops::Range<usize>, std::ops::Range<usize>)>,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl SpanIndex {
    /// Indexes `text`; a text that does not parse gives an empty index (the parse error is
    /// reported elsewhere, with its own position).
    pub fn new(text: &str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let mut idx = SpanIndex { entries: Vec::new(), line_starts };
        if let Ok(doc) = DeTable::parse(text) {
            let mut p = Vec::new();
            idx.walk_table(doc.get_ref(), &mut p);
        }
        idx
    }

    fn walk_table(&mut self, t: &DeTable<'_>, p: &mut Path) {
        for (k, v) in t.iter() {
            p.push(Seg::Key(k.get_ref().to_string()));
            self.entries.push((p.clone(), k.span(), v.span()));
            self.walk_value(v.get_ref(), p);
            p.pop();
        }
    }

    fn walk_value(&mut self, v: &DeValue<'_>, p: &mut Path) {
        match v {
            DeValue::Table(t) => self.walk_table(t, p),
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    p.push(Seg::Index(i));
                    self.entries.push((p.clone(), e.span(), e.span()));
                    self.walk_value(e.get_ref(), p);
                    p.pop();
                }
            }
            DeValue::String(_)
            | DeValue::Integer(_)
            | DeValue::Float(_)
            | DeValue::Boolean(_)
            | DeValue::Datetime(_) => {}
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// The line where `path` is written: its key, or for the longest prefix of it that the file
    /// holds, that prefix's key (a default the user did not write points at its table).
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.entries.iter().find(|(p, _, _)| p.as_slice() == &path[..n]))
            .map(|(_, k, _)| self.line_of(k.start))
    }

    /// The deepest path whose value contains `offset`.
    pub fn path_at(&self, offset: usize) -> Option<&Path> {
        self.entries
            .iter()
            .filter(|(_, k, v)| (k.start <= offset && offset < v.end.max(k.end)) || v.contains(&offset))
            .max_by_key(|(p, _, _)| p.len())
            .map(|(p, _, _)| p)
    }
}

/// Formats `FILE:LINE: message` (or `FILE: message` when the line is unknown).
pub fn at(file: &str, line: Option<usize>, message: impl fmt::Display) -> String {
    match line {
        Some(l) => format!("{file}:{l}: {message}"),
        None => format!("{file}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys_tables_and_array_elements() {
        let text = "name = \"x\"\n[base]\nmodel = \"m\"\n[base.optimizer]\nlr = 0.1\n\n[[claim]]\nid = \"a\"\nvalue = { last = \"hessian/top\" }\n[[claim]]\nid = \"b\"\n";
        let s = SpanIndex::new(text);
        assert_eq!(s.line(&path("name")), Some(1));
        assert_eq!(s.line(&path("base.optimizer.lr")), Some(5));
        assert_eq!(s.line(&path("claim.0.value.last")), Some(9));
        assert_eq!(s.line(&path("claim.1.id")), Some(11));
        // A key the file does not hold: the line of its nearest written ancestor.
        assert_eq!(s.line(&path("base.optimizer.momentum")), Some(4));
        let off = text.find("hessian/top").unwrap();
        assert_eq!(s.path_at(off).map(|p| p.len()), Some(4));
    }
}
