//! The CSV behind a figure: one layout for every kind (the crate documentation lists the
//! columns and which kind fills which).

use crate::arms::Key;
use crate::format::{csv_field, csv_number, value_text};

/// The columns after `arm` and the axis columns.
pub(crate) const COLUMNS: [&str; 12] =
    ["row", "seed", "run_id", "step", "epoch", "index", "x", "value", "low", "high", "n", "label"];

/// What a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RowKind {
    /// One run's value (or one element of it).
    #[default]
    Run,
    /// The aggregate over the seeds of an arm or series.
    Mean,
    /// A reference line's value for an arm or series (mean over its runs).
    Reference,
}

impl RowKind {
    fn as_str(self) -> &'static str {
        match self {
            RowKind::Run => "run",
            RowKind::Mean => "mean",
            RowKind::Reference => "reference",
        }
    }
}

/// One CSV row; absent fields are empty cells.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    /// The series label (an arm, or a combination of axis values).
    pub arm: String,
    /// Values of every plan axis (empty: the rows do not share one value).
    pub axes: Key,
    pub kind: RowKind,
    pub seed: Option<u64>,
    pub run_id: String,
    pub step: Option<u64>,
    pub epoch: Option<f64>,
    pub index: Option<usize>,
    /// The plotted x coordinate as text (an axis value as the plan wrote it, or a number).
    pub x: String,
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub n: Option<usize>,
    pub label: String,
}

/// A CSV text being written, with its row count.
pub(crate) struct Csv {
    pub text: String,
    pub rows: usize,
    n_axes: usize,
}

/// The header: `arm`, one column per plan axis (`axis_<name>` when the name is a fixed
/// column), then the fixed columns.
pub(crate) fn header(axes: &[String]) -> String {
    let mut fields = vec!["arm".to_string()];
    let clashes = |a: &str| a == "arm" || COLUMNS.contains(&a);
    fields.extend(axes.iter().map(|a| if clashes(a) { format!("axis_{a}") } else { a.clone() }));
    fields.extend(COLUMNS.iter().map(|c| c.to_string()));
    let mut h = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    h.push('\n');
    h
}

impl Csv {
    pub fn new(axes: &[String]) -> Self {
        Csv { text: header(axes), rows: 0, n_axes: axes.len() }
    }

    pub fn row(&mut self, r: &Row) {
        let num = |v: Option<f64>| v.map(csv_number).unwrap_or_default();
        let mut fields = vec![csv_field(&r.arm)];
        for i in 0..self.n_axes {
            fields.push(r.axes.get(i).and_then(|v| v.as_ref()).map(|v| csv_field(&value_text(v))).unwrap_or_default());
        }
        fields.push(r.kind.as_str().to_string());
        fields.push(r.seed.map(|s| s.to_string()).unwrap_or_default());
        fields.push(csv_field(&r.run_id));
        fields.push(r.step.map(|s| s.to_string()).unwrap_or_default());
        fields.push(num(r.epoch));
        fields.push(r.index.map(|i| i.to_string()).unwrap_or_default());
        fields.push(csv_field(&r.x));
        fields.push(num(r.value));
        fields.push(num(r.low));
        fields.push(num(r.high));
        fields.push(r.n.map(|n| n.to_string()).unwrap_or_default());
        fields.push(csv_field(&r.label));
        self.text.push_str(&fields.join(","));
        self.text.push('\n');
        self.rows += 1;
    }
}

/// The axis values the given keys share (`None` where they differ).
pub(crate) fn common(keys: &[&Key]) -> Key {
    let Some(first) = keys.first() else { return Vec::new() };
    (0..first.len()).map(|i| if keys.iter().all(|k| k[i] == first[i]) { first[i].clone() } else { None }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_axes_and_avoids_clashes() {
        assert_eq!(
            header(&["batch_size".into(), "seed".into()]),
            "arm,batch_size,axis_seed,row,seed,run_id,step,epoch,index,x,value,low,high,n,label\n"
        );
    }
}
