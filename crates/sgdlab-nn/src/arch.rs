//! Architecture specs: the short strings used everywhere (`mlp:40-100-100-10:relu`) and the same
//! as a TOML table.
//!
//! Grammar (one line, `:`-separated; options after the activation may also be separated by `,`):
//!
//! ```text
//! mlp:D0-D1-...-Dn:ACT[:OPTION...]        Linear(D0,D1), ACT, Linear(D1,D2), ACT, ..., Linear(Dn-1,Dn)
//! resmlp:IN-WIDTHxBLOCKS-OUT:ACT[:OPTION...]
//!         Linear(IN,WIDTH), then BLOCKS residual blocks x + Linear(ACT(Linear([LN](x)))), then
//!         Linear(WIDTH,OUT) (Veit et al. 2016, as in PROTOCOLS 3.3)
//! seq:INPUT:LAYER-LAYER-...              any sequence of layers on a shaped input, e.g. LeNet-5:
//!         seq:1x28x28:conv2d(6,5,padding=2)-relu-maxpool2d(2)-conv2d(16,5)-relu-maxpool2d(2)-flatten-linear(120)-relu-linear(84)-relu-linear(10)
//!         (layer grammar in [`seq`]; `--arch-file` reads PyTorch's `print(model)` into the same form)
//! ```
//! A width may be repeated with `x`: `mlp:40-100x3-10:relu` is `mlp:40-100-100-100-10:relu`.
//! Options: `nobias` (linear layers without bias), `layernorm` (mlp: a LayerNorm after every hidden
//! linear layer, before the activation; resmlp: a LayerNorm at the start of every residual branch).
//! Activations: see [`Activation::parse`].
//!
//! As a TOML table (unknown keys are errors):
//! ```toml
//! [model]
//! kind = "mlp"              # or "resmlp"
//! widths = [40, 100, 100, 10] # resmlp: [IN, WIDTH, OUT]
//! activation = "relu"
//! bias = true               # default true
//! layernorm = false         # default false
//! blocks = 12               # resmlp only
//! ```
//! A `seq` architecture has the string form only.

use crate::activation::Activation;
use crate::error::NnError;
use crate::shape::Shape;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub mod seq;

pub use seq::{LayerSpec, SeqSpec};

/// The family of an architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchKind {
    /// A plain multi-layer perceptron.
    Mlp,
    /// A residual MLP: stem, residual blocks, head.
    Resmlp,
    /// Any sequence of layers on a shaped input (convolutional nets, `--arch-file`).
    Seq,
}

/// A declarative description of a network; [`crate::Model::new`] builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchSpec {
    pub kind: ArchKind,
    /// mlp: all layer widths from input to output; resmlp: `[in, width, out]`.
    pub widths: Vec<usize>,
    pub activation: Activation,
    pub bias: bool,
    pub layernorm: bool,
    /// Number of residual blocks (resmlp only; 0 for mlp).
    pub blocks: usize,
    /// The layers of a `seq` architecture (whose `widths` are then `[input len, output len]`,
    /// `activation` the common one or identity); `None` for mlp and resmlp.
    pub seq: Option<SeqSpec>,
}

/// The most layers (widths of an mlp, blocks of a resmlp) an architecture may have: a bound
/// checked before the layer list is built, so that a mistyped repeat count is an error, not an
/// allocation of terabytes.
pub const MAX_LAYERS: usize = 100_000;

impl ArchSpec {
    /// A plain MLP with biases and no layer norm.
    pub fn mlp(widths: &[usize], activation: Activation) -> Self {
        ArchSpec {
            kind: ArchKind::Mlp,
            widths: widths.to_vec(),
            activation,
            bias: true,
            layernorm: false,
            blocks: 0,
            seq: None,
        }
    }

    /// A sequential architecture, checked (every layer fits its input).
    pub fn sequential(spec: SeqSpec) -> Result<Self, NnError> {
        let err = |message: String| NnError::Arch { spec: format!("seq:{spec}"), message };
        let (_, shapes) = spec.build().map_err(err)?;
        let out = shapes.last().expect("an input and one shape per layer");
        if out.rank() != 1 {
            return Err(err(format!("the output has shape {out} per example; end with flatten and linear")));
        }
        let arch = ArchSpec {
            kind: ArchKind::Seq,
            widths: vec![spec.input.len(), out.len()],
            activation: spec.common_activation().unwrap_or(Activation::Identity),
            bias: true,
            layernorm: false,
            blocks: 0,
            seq: Some(spec),
        };
        if arch.checked_num_params().is_none() {
            return Err(NnError::Arch {
                spec: arch.to_string(),
                message: "the parameter count overflows a 64-bit integer".into(),
            });
        }
        Ok(arch)
    }

    /// The per-example input shape (`[in_dim]` for mlp and resmlp).
    pub fn input_shape(&self) -> Shape {
        self.seq.as_ref().map_or(Shape::flat(self.in_dim()), |s| s.input)
    }

    /// Input dimension.
    pub fn in_dim(&self) -> usize {
        self.widths[0]
    }

    /// Output dimension (number of logits).
    pub fn out_dim(&self) -> usize {
        *self.widths.last().expect("validated: widths is never empty")
    }

    /// The number of parameters, in checked arithmetic (`None` when it overflows `usize`): the
    /// count [`crate::Model::num_params`] will have, known before any layer is built.
    pub fn checked_num_params(&self) -> Option<usize> {
        let b = usize::from(self.bias);
        let linear = |i: usize, o: usize| i.checked_mul(o)?.checked_add(b * o);
        let norm = |d: usize| if self.layernorm { d.checked_mul(2) } else { Some(0) };
        let w = &self.widths;
        match self.kind {
            ArchKind::Mlp => (0..w.len().saturating_sub(1)).try_fold(0usize, |acc, i| {
                let hidden = if i + 2 < w.len() { norm(w[i + 1])? } else { 0 };
                acc.checked_add(linear(w[i], w[i + 1])?)?.checked_add(hidden)
            }),
            ArchKind::Resmlp => {
                let (i, h, o) = (*w.first()?, *w.get(1)?, *w.get(2)?);
                let block = norm(h)?.checked_add(linear(h, h)?.checked_mul(2)?)?;
                linear(i, h)?.checked_add(block.checked_mul(self.blocks)?)?.checked_add(linear(h, o)?)
            }
            // The layers' parameter shapes, multiplied out in checked arithmetic (`None` also when
            // the layers do not fit together; `validate` reports that first).
            ArchKind::Seq => {
                let (layers, _) = self.seq.as_ref()?.build().ok()?;
                let mut entries = Vec::new();
                for (i, l) in layers.iter().enumerate() {
                    l.param_entries(&i.to_string(), &mut entries);
                }
                entries.iter().try_fold(0usize, |acc, (_, shape)| {
                    acc.checked_add(shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?)
                })
            }
        }
    }

    fn validate(self, spec: &str) -> Result<Self, NnError> {
        let err = |message: String| NnError::Arch { spec: spec.to_string(), message };
        if self.widths.contains(&0) {
            return Err(err("widths must be positive".into()));
        }
        if self.widths.len().max(self.blocks) > MAX_LAYERS {
            return Err(err(format!("more than {MAX_LAYERS} layers")));
        }
        match self.kind {
            ArchKind::Mlp => {
                if self.widths.len() < 2 {
                    return Err(err("an mlp needs at least an input and an output width (e.g. mlp:40-10:relu)".into()));
                }
                if self.blocks != 0 {
                    return Err(err("'blocks' applies to resmlp only".into()));
                }
            }
            ArchKind::Resmlp => {
                if self.widths.len() != 3 {
                    return Err(err("a resmlp is IN-WIDTHxBLOCKS-OUT (e.g. resmlp:196-64x12-10:relu)".into()));
                }
                if self.blocks == 0 {
                    return Err(err("a resmlp needs at least one block".into()));
                }
            }
            ArchKind::Seq => {
                if self.seq.is_none() {
                    return Err(err(
                        "a seq architecture is written seq:INPUT:LAYER-LAYER-... (string form only)".into()
                    ));
                }
            }
        }
        if self.checked_num_params().is_none() {
            return Err(err("the parameter count overflows a 64-bit integer".into()));
        }
        Ok(self)
    }
}

fn parse_widths(s: &str, spec: &str) -> Result<(Vec<usize>, Vec<usize>), NnError> {
    // Returns the widths and, per listed item, the repeat count (for resmlp's WIDTHxBLOCKS).
    let err = |message: String| NnError::Arch { spec: spec.to_string(), message };
    let mut widths = Vec::new();
    let mut repeats = Vec::new();
    for item in s.split('-') {
        let (w, r) = match item.split_once('x') {
            Some((w, r)) => (w, r.parse::<usize>().map_err(|_| err(format!("bad repeat count in '{item}'")))?),
            None => (item, 1),
        };
        let w: usize =
            w.trim().parse().map_err(|_| err(format!("'{item}' is not a width (expected e.g. 40-100-10)")))?;
        widths.push(w);
        repeats.push(r);
    }
    Ok((widths, repeats))
}

impl FromStr for ArchSpec {
    type Err = NnError;

    fn from_str(spec: &str) -> Result<Self, NnError> {
        let err = |message: String| NnError::Arch { spec: spec.to_string(), message };
        let mut parts = spec.trim().split(':');
        let kind = match parts.next().unwrap_or("") {
            "mlp" => ArchKind::Mlp,
            "resmlp" => ArchKind::Resmlp,
            "seq" => {
                let (input, layers) = spec.trim().strip_prefix("seq:").unwrap_or("").split_once(':').ok_or_else(|| {
                    err("a seq architecture is seq:INPUT:LAYER-LAYER-... (e.g. seq:1x28x28:conv2d(6,5)-relu-flatten-linear(10))".into())
                })?;
                let seq = SeqSpec::parse(input, layers).map_err(err)?;
                return ArchSpec::sequential(seq);
            }
            other => return Err(err(format!("unknown kind '{other}' (known: mlp, resmlp, seq)"))),
        };
        let widths_str = parts.next().ok_or_else(|| err("missing widths (e.g. mlp:40-100-10:relu)".into()))?;
        let act_str = parts.next().ok_or_else(|| err("missing activation (e.g. mlp:40-100-10:relu)".into()))?;
        let activation = Activation::parse(act_str).map_err(err)?;
        let mut bias = true;
        let mut layernorm = false;
        for opt in parts.flat_map(|p| p.split(',')) {
            match opt.trim() {
                "nobias" => bias = false,
                "layernorm" => layernorm = true,
                "" => {}
                other => return Err(err(format!("unknown option '{other}' (known: nobias, layernorm)"))),
            }
        }
        let (w, r) = parse_widths(widths_str, spec)?;
        let (widths, blocks) = match kind {
            ArchKind::Mlp => {
                if r.iter().try_fold(0usize, |a, &k| a.checked_add(k)).is_none_or(|n| n > MAX_LAYERS) {
                    return Err(err(format!("more than {MAX_LAYERS} layers")));
                }
                let mut widths = Vec::new();
                for (w, r) in w.iter().zip(&r) {
                    widths.extend(std::iter::repeat_n(*w, *r));
                }
                (widths, 0)
            }
            ArchKind::Resmlp => {
                if w.len() != 3
                    || r[0] != 1
                    || r[2] != 1
                    || !widths_str.split('-').nth(1).is_some_and(|m| m.contains('x'))
                {
                    return Err(err("a resmlp is IN-WIDTHxBLOCKS-OUT (e.g. resmlp:196-64x12-10:relu)".into()));
                }
                (w, r[1])
            }
            ArchKind::Seq => unreachable!("parsed above"),
        };
        ArchSpec { kind, widths, activation, bias, layernorm, blocks, seq: None }.validate(spec)
    }
}

impl fmt::Display for ArchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ArchKind::Mlp => {
                f.write_str("mlp:")?;
                // Compress runs of equal hidden widths only when it is unambiguous and shorter.
                let ws: Vec<String> = self.widths.iter().map(|w| w.to_string()).collect();
                f.write_str(&ws.join("-"))?;
            }
            ArchKind::Resmlp => {
                write!(f, "resmlp:{}-{}x{}-{}", self.widths[0], self.widths[1], self.blocks, self.widths[2])?;
            }
            ArchKind::Seq => {
                let seq = self.seq.as_ref().expect("a seq architecture holds its layers");
                return write!(f, "seq:{seq}");
            }
        }
        write!(f, ":{}", self.activation)?;
        if !self.bias {
            f.write_str(":nobias")?;
        }
        if self.layernorm {
            f.write_str(":layernorm")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchTable {
    kind: ArchKind,
    widths: Vec<usize>,
    activation: String,
    #[serde(default = "default_true")]
    bias: bool,
    #[serde(default)]
    layernorm: bool,
    #[serde(default)]
    blocks: usize,
}

fn default_true() -> bool {
    true
}

impl Serialize for ArchSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ArchSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Table(ArchTable),
        }
        use serde::de::Error;
        match Either::deserialize(d).map_err(|_| {
            D::Error::custom(
                "model must be an architecture string like \"mlp:40-100-10:relu\" or a table with keys kind, widths, activation, bias, layernorm, blocks",
            )
        })? {
            Either::Text(s) => s.parse().map_err(D::Error::custom),
            Either::Table(t) => {
                let activation = Activation::parse(&t.activation).map_err(D::Error::custom)?;
                let spec = ArchSpec {
                    kind: t.kind,
                    widths: t.widths,
                    activation,
                    bias: t.bias,
                    layernorm: t.layernorm,
                    blocks: t.blocks,
                    seq: None,
                };
                let text = spec.to_string();
                spec.validate(&text).map_err(D::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "mlp:40-100-100-10:relu",
            "mlp:40-10:tanh:nobias",
            "mlp:40-100-10:leaky_relu(0.2):nobias:layernorm",
            "resmlp:196-64x12-10:relu:layernorm",
            "mlp:1-1024-1:hat",
        ] {
            let a: ArchSpec = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        let a: ArchSpec = "mlp:40-100x3-10:gelu:nobias,layernorm".parse().unwrap();
        assert_eq!(a.widths, vec![40, 100, 100, 100, 10]);
        assert!(!a.bias && a.layernorm);
        let r: ArchSpec = "resmlp:196-64x12-10:relu".parse().unwrap();
        assert_eq!((r.widths.clone(), r.blocks), (vec![196, 64, 10], 12));
    }

    #[test]
    fn bad_strings_give_named_errors() {
        let cases = [
            ("cnn:1-2:relu", "unknown kind 'cnn'"),
            ("mlp:40-a-10:relu", "'a' is not a width"),
            ("mlp:40-100-10", "missing activation"),
            ("mlp:40-100-10:swish", "unknown activation 'swish'"),
            ("mlp:40-100-10:relu:dropout", "unknown option 'dropout'"),
            ("mlp:40:relu", "at least an input and an output"),
            ("mlp:40-0-10:relu", "widths must be positive"),
            ("resmlp:196-64-10:relu", "IN-WIDTHxBLOCKS-OUT"),
            ("resmlp:196-64x0-10:relu", "at least one block"),
            ("mlp:1-9223372036854775808-1-1:relu:nobias", "parameter count overflows"),
            ("mlp:40-100x1000000000000-10:relu", "more than 100000 layers"),
            ("mlp:40-100x18446744073709551615-100x2-10:relu", "more than 100000 layers"),
            ("resmlp:4-4x1000000000000-4:relu", "more than 100000 layers"),
            ("mlp:40-99999999999999999999999-10:relu", "is not a width"),
        ];
        for (s, msg) in cases {
            let e = s.parse::<ArchSpec>().unwrap_err().to_string();
            assert!(e.contains(msg) && e.contains(s), "{s}: {e}");
        }
    }

    #[test]
    fn checked_parameter_count_is_the_model_count() {
        for s in [
            "mlp:40-100-100-10:relu",
            "mlp:40-10:tanh:nobias",
            "mlp:4-8-3:relu:layernorm:nobias",
            "mlp:4-8x3-3:gelu:layernorm",
            "resmlp:6-4x2-3:tanh:layernorm",
            "resmlp:196-64x12-10:relu:nobias",
        ] {
            let a: ArchSpec = s.parse().unwrap();
            assert_eq!(a.checked_num_params(), Some(crate::Model::new(&a).num_params()), "{s}");
        }
    }

    #[test]
    fn toml_string_and_table_forms() {
        #[derive(Deserialize)]
        struct W {
            model: ArchSpec,
        }
        let a: W = toml::from_str("model = \"mlp:40-100-10:relu\"").unwrap();
        let b: W = toml::from_str("[model]\nkind = \"mlp\"\nwidths = [40, 100, 10]\nactivation = \"relu\"\n").unwrap();
        assert_eq!(a.model, b.model);
        let c: W = toml::from_str(
            "[model]\nkind = \"resmlp\"\nwidths = [196, 64, 10]\nactivation = \"relu\"\nblocks = 3\nlayernorm = true\n",
        )
        .unwrap();
        assert_eq!(c.model.to_string(), "resmlp:196-64x3-10:relu:layernorm");
        let bad = toml::from_str::<W>("[model]\nkind = \"mlp\"\nwidths = [4, 2]\nactivation = \"relu\"\ndepth = 3\n");
        assert!(bad.is_err());
    }
}
