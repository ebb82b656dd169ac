//! PyTorch models as saved: the text of `print(model)` for an `nn.Sequential`, read into a
//! sequential architecture ([`crate::SeqSpec`]) whose parameter names are the model's own
//! `state_dict` names (`3.weight`: indices count every module, Flatten, Dropout and activations
//! included, as PyTorch's do).
//!
//! ```
//! use sgdlab_nn::{Shape, arch_from_torch_text};
//! let text = "Sequential(
//!   (0): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))
//!   (1): ReLU()
//!   (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
//!   (3): Flatten(start_dim=1, end_dim=-1)
//!   (4): Linear(in_features=1176, out_features=10, bias=True)
//! )";
//! let arch = arch_from_torch_text(text, Shape::image(1, 28, 28)).unwrap();
//! assert_eq!(arch.to_string(), "seq:1x28x28:conv2d(6,5,padding=2)-relu-maxpool2d(2)-flatten-linear(10)");
//! ```
//!
//! Modules: `Conv1d`, `Conv2d` (zero padding; `padding='same'` when symmetric), `MaxPool1d`,
//! `MaxPool2d`, `AvgPool1d`, `AvgPool2d`, `AdaptiveAvgPool2d` (output sizes dividing the input),
//! `Flatten`, `Linear`, `LayerNorm` (over every feature of a flat input), `BatchNorm1d`,
//! `BatchNorm2d`, `Dropout`, `Identity` and the activations `ReLU`, `LeakyReLU`, `Tanh`,
//! `Sigmoid`, `GELU` (exact), `Softplus` (beta 1; PyTorch's linear branch above `threshold`
//! differs from the exact function by less than `exp(-threshold)`). PyTorch does not print
//! `AvgPool`'s `ceil_mode` and `count_include_pad`; their defaults are assumed. Anything else is
//! a one-line error naming the module and its index.

use crate::activation::Activation;
use crate::arch::ArchSpec;
use crate::arch::seq::{LayerSpec, SeqSpec, split_top_level};
use crate::error::NnError;
use crate::shape::Shape;
use std::path::Path;

/// [`arch_from_torch_text`] on the text in the file `path` (e.g. written by
/// `open("arch.txt", "w").write(str(model))`); errors name the file.
pub fn load_arch_file(path: &Path, input: Shape) -> Result<ArchSpec, NnError> {
    let text = std::fs::read_to_string(path).map_err(|error| NnError::Io { path: path.to_path_buf(), error })?;
    arch_from_torch_text(&text, input).map_err(|message| NnError::ArchFile { path: path.to_path_buf(), message })
}

/// The sequential architecture that `text` (PyTorch's `print(model)` of an `nn.Sequential`)
/// describes on inputs of per-example shape `input`; a one-line error naming the offending
/// module and its index otherwise.
pub fn arch_from_torch_text(text: &str, input: Shape) -> Result<ArchSpec, String> {
    let text = text.trim();
    let body = text.strip_prefix("Sequential(").and_then(|b| b.strip_suffix(')')).ok_or_else(|| {
        "not the text of an nn.Sequential (expected 'Sequential(' ... ')' as print(model) writes it)".to_string()
    })?;
    let mut layers = Vec::new();
    let mut shape = input;
    for (i, line) in body.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        let (key, module) = line
            .strip_prefix('(')
            .and_then(|l| l.split_once("): "))
            .ok_or_else(|| format!("line '{line}' is not '(INDEX): Module(...)' (a nested module is not supported)"))?;
        if key != i.to_string() {
            return Err(format!(
                "module '{key}' at position {i}: only modules named by their index (nn.Sequential(m0, m1, ...)) are supported"
            ));
        }
        let spec = module_spec(module, shape).map_err(|e| format!("module {i} {}: {e}", module_name(module)))?;
        let layer = spec.build(shape).map_err(|e| format!("module {i} {}: {e}", module_name(module)))?;
        shape = layer.out_shape(shape).map_err(|e| format!("module {i} {}: {e}", module_name(module)))?;
        layers.push(spec);
    }
    ArchSpec::sequential(SeqSpec { input, layers }).map_err(|e| e.to_string())
}

fn module_name(module: &str) -> &str {
    module.split('(').next().unwrap_or(module).trim()
}

/// A module's arguments as PyTorch prints them.
struct Args<'a> {
    positional: Vec<&'a str>,
    keyed: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    fn parse(inner: &'a str) -> Self {
        let mut a = Args { positional: Vec::new(), keyed: Vec::new() };
        for part in split_top_level(inner, ',').into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((k, v)) if !k.contains('(') => a.keyed.push((k.trim(), v.trim())),
                _ => a.positional.push(part),
            }
        }
        a
    }

    /// The argument at position `pos` or named `key`.
    fn get(&self, pos: Option<usize>, key: &str) -> Option<&'a str> {
        self.keyed
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .or_else(|| pos.and_then(|p| self.positional.get(p).copied()))
    }

    fn require(&self, pos: Option<usize>, key: &str) -> Result<&'a str, String> {
        self.get(pos, key).ok_or_else(|| format!("missing argument {key}"))
    }

    /// Errors for keys outside `known`.
    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        match self.keyed.iter().find(|(k, _)| !known.contains(k)) {
            Some((k, v)) => Err(format!("argument {k}={v} is not supported")),
            None => Ok(()),
        }
    }
}

fn int(v: &str, what: &str) -> Result<usize, String> {
    v.trim().parse().map_err(|_| format!("{what}={v} is not a non-negative integer"))
}

/// `5`, `(5,)` or `(5, 3)`: the values.
fn ints(v: &str, what: &str) -> Result<Vec<usize>, String> {
    let v = v.trim();
    match v.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        Some(inner) => inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| int(s, what)).collect(),
        None => Ok(vec![int(v, what)?]),
    }
}

/// A size argument of a `dims`-dimensional layer as `(height, width)` (`(1, n)` in 1-d).
fn size_pair(v: &str, dims: usize, what: &str, one_d_first: usize) -> Result<(usize, usize), String> {
    match (dims, ints(v, what)?.as_slice()) {
        (1, [a]) => Ok((one_d_first, *a)),
        (2, [a]) => Ok((*a, *a)),
        (2, [a, b]) => Ok((*a, *b)),
        _ => Err(format!("{what}={v} does not have {dims} value(s)")),
    }
}

fn boolean(v: &str, what: &str) -> Result<bool, String> {
    match v.trim() {
        "True" => Ok(true),
        "False" => Ok(false),
        _ => Err(format!("{what}={v} is not True or False")),
    }
}

fn float(v: &str, what: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("{what}={v} is not a number")),
    }
}

fn unquote(v: &str) -> &str {
    v.trim().trim_matches('\'').trim_matches('"')
}

const SUPPORTED: &str = "Conv1d, Conv2d, MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Linear, LayerNorm, BatchNorm1d, BatchNorm2d, Dropout, Identity, ReLU, LeakyReLU, Tanh, Sigmoid, GELU, Softplus";

/// The layer spec of one printed module on inputs of shape `shape`, with PyTorch's stated input
/// sizes checked against it.
fn module_spec(module: &str, shape: Shape) -> Result<LayerSpec, String> {
    let module = module.trim();
    let name = module_name(module);
    if module.ends_with('(') {
        return Err("nested modules are not supported (only a flat nn.Sequential)".into());
    }
    let inner = module[name.len()..]
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("'{module}' is not Module(arguments)"))?;
    let a = Args::parse(inner);
    let no_args = |spec: LayerSpec| -> Result<LayerSpec, String> {
        a.check_known(&["inplace"])?;
        if !a.positional.is_empty() {
            return Err(format!("unexpected arguments '{inner}'"));
        }
        Ok(spec)
    };
    match name {
        "ReLU" => no_args(LayerSpec::Activation(Activation::Relu)),
        "Tanh" => no_args(LayerSpec::Activation(Activation::Tanh)),
        "Sigmoid" => no_args(LayerSpec::Activation(Activation::Sigmoid)),
        "Identity" => {
            a.check_known(&[])?;
            Ok(LayerSpec::Activation(Activation::Identity))
        }
        "LeakyReLU" => {
            a.check_known(&["negative_slope", "inplace"])?;
            let slope =
                a.get(Some(0), "negative_slope").map(|v| float(v, "negative_slope")).transpose()?.unwrap_or(0.01);
            Ok(LayerSpec::Activation(Activation::LeakyRelu { slope }))
        }
        "GELU" => {
            a.check_known(&["approximate"])?;
            match a.get(None, "approximate").map(unquote) {
                None | Some("none") => Ok(LayerSpec::Activation(Activation::Gelu)),
                Some(other) => Err(format!("approximate='{other}' is not supported (only the exact GELU)")),
            }
        }
        "Softplus" => {
            a.check_known(&["beta", "threshold"])?;
            let beta = a.get(Some(0), "beta").map(|v| float(v, "beta")).transpose()?.unwrap_or(1.0);
            if beta != 1.0 {
                return Err(format!("beta={beta} is not supported (only beta=1)"));
            }
            Ok(LayerSpec::Activation(Activation::Softplus))
        }
        "Linear" => {
            a.check_known(&["in_features", "out_features", "bias"])?;
            let inf = int(a.require(Some(0), "in_features")?, "in_features")?;
            let out = int(a.require(Some(1), "out_features")?, "out_features")?;
            let bias = a.get(Some(2), "bias").map(|v| boolean(v, "bias")).transpose()?.unwrap_or(true);
            if shape.rank() == 1 && inf != shape.len() {
                return Err(format!("in_features={inf}, but its input has {} features", shape.len()));
            }
            Ok(LayerSpec::Linear { out, bias })
        }
        "Conv1d" | "Conv2d" => conv_spec(name, &a, shape),
        "MaxPool1d" | "MaxPool2d" | "AvgPool1d" | "AvgPool2d" => pool_spec(name, &a),
        "AdaptiveAvgPool2d" => {
            a.check_known(&["output_size"])?;
            let v = a.require(Some(0), "output_size")?;
            let (h, w) = shape.spatial();
            let parts: Vec<&str> = match v.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
                Some(inner) => inner.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
                None => vec![v, v],
            };
            let [ph, pw] = parts.as_slice() else { return Err(format!("output_size={v} does not have 2 values")) };
            let size = |p: &str, full: usize| if p == "None" { Ok(full) } else { int(p, "output_size") };
            Ok(LayerSpec::AdaptiveAvgPool { out: (size(ph, h)?, size(pw, w)?) })
        }
        "Flatten" => {
            a.check_known(&["start_dim", "end_dim"])?;
            let start = a.get(Some(0), "start_dim").unwrap_or("1");
            let end = a.get(Some(1), "end_dim").unwrap_or("-1");
            if end.trim() != "-1" {
                return Err(format!("end_dim={end} is not supported (only -1)"));
            }
            Ok(LayerSpec::Flatten { start_dim: int(start, "start_dim")? })
        }
        "Dropout" => {
            a.check_known(&["p", "inplace"])?;
            let p = a.get(Some(0), "p").map(|v| float(v, "p")).transpose()?.unwrap_or(0.5);
            Ok(LayerSpec::Dropout { p })
        }
        "LayerNorm" => {
            a.check_known(&["eps", "elementwise_affine", "bias"])?;
            let dims = ints(a.require(Some(0), "normalized_shape")?, "normalized_shape")?;
            if dims != shape.dims() {
                return Err(format!(
                    "normalized_shape {dims:?} is not the whole example {:?}; only layer norm over every feature is supported",
                    shape.dims()
                ));
            }
            let eps = a.get(Some(1), "eps").map(|v| float(v, "eps")).transpose()?.unwrap_or(1e-5);
            let affine = a
                .get(None, "elementwise_affine")
                .map(|v| boolean(v, "elementwise_affine"))
                .transpose()?
                .unwrap_or(true);
            let bias = a.get(None, "bias").map(|v| boolean(v, "bias")).transpose()?.unwrap_or(true);
            if affine && !bias {
                return Err("elementwise_affine=True with bias=False is not supported".into());
            }
            Ok(LayerSpec::LayerNorm { eps, affine })
        }
        "BatchNorm1d" | "BatchNorm2d" => {
            a.check_known(&["eps", "momentum", "affine", "track_running_stats", "bias"])?;
            let c = int(a.require(Some(0), "num_features")?, "num_features")?;
            if c != shape.channels() {
                return Err(format!(
                    "num_features={c}, but its input has shape {shape} ({} channels)",
                    shape.channels()
                ));
            }
            let eps = a.get(Some(1), "eps").map(|v| float(v, "eps")).transpose()?.unwrap_or(1e-5);
            let momentum = match a.get(Some(2), "momentum") {
                Some("None") => None,
                Some(v) => Some(float(v, "momentum")?),
                None => Some(0.1),
            };
            let affine = a.get(Some(3), "affine").map(|v| boolean(v, "affine")).transpose()?.unwrap_or(true);
            let bias = a.get(None, "bias").map(|v| boolean(v, "bias")).transpose()?.unwrap_or(affine);
            if affine && !bias {
                return Err("affine=True with bias=False is not supported".into());
            }
            let track = a
                .get(Some(4), "track_running_stats")
                .map(|v| boolean(v, "track_running_stats"))
                .transpose()?
                .unwrap_or(true);
            let dims = if name == "BatchNorm1d" { 1 } else { 2 };
            Ok(LayerSpec::BatchNorm { dims, eps, momentum, affine, track_running_stats: track })
        }
        _ => Err(format!("not supported (supported: {SUPPORTED})")),
    }
}

fn conv_spec(name: &str, a: &Args<'_>, shape: Shape) -> Result<LayerSpec, String> {
    a.check_known(&["kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode"])?;
    let dims = if name == "Conv1d" { 1 } else { 2 };
    let cin = int(a.require(Some(0), "in_channels")?, "in_channels")?;
    let out = int(a.require(Some(1), "out_channels")?, "out_channels")?;
    if cin != shape.channels() || shape.rank() != dims + 1 {
        return Err(format!("in_channels={cin}, but its input has shape {shape} per example"));
    }
    let kernel = size_pair(a.require(Some(2), "kernel_size")?, dims, "kernel_size", 1)?;
    let pair = |key: &str, default: (usize, usize), first: usize| -> Result<(usize, usize), String> {
        a.get(None, key).map(|v| size_pair(v, dims, key, first)).transpose().map(|v| v.unwrap_or(default))
    };
    let stride = pair("stride", (1, 1), 1)?;
    let dilation = pair("dilation", (1, 1), 1)?;
    let padding = match a.get(None, "padding").map(unquote) {
        None | Some("valid") => (0, 0),
        Some("same") => {
            let half = |k: usize, d: usize| {
                let total = d * (k - 1);
                if total.is_multiple_of(2) {
                    Ok(total / 2)
                } else {
                    Err("padding='same' with an even kernel span pads unevenly; not supported".to_string())
                }
            };
            if stride != (1, 1) {
                return Err("padding='same' needs stride 1".into());
            }
            (if dims == 1 { 0 } else { half(kernel.0, dilation.0)? }, half(kernel.1, dilation.1)?)
        }
        Some(v) => size_pair(v, dims, "padding", 0)?,
    };
    if let Some(mode) = a.get(None, "padding_mode").map(unquote)
        && mode != "zeros"
    {
        return Err(format!("padding_mode='{mode}' is not supported (only zeros)"));
    }
    let groups = a.get(None, "groups").map(|v| int(v, "groups")).transpose()?.unwrap_or(1);
    let bias = a.get(None, "bias").map(|v| boolean(v, "bias")).transpose()?.unwrap_or(true);
    Ok(LayerSpec::Conv { dims, out, kernel, stride, padding, dilation, groups, bias })
}

fn pool_spec(name: &str, a: &Args<'_>) -> Result<LayerSpec, String> {
    let dims = if name.ends_with("1d") { 1 } else { 2 };
    let max = name.starts_with("Max");
    if max {
        a.check_known(&["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"])?;
    } else {
        a.check_known(&["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"])?;
    }
    let kernel = size_pair(a.require(Some(0), "kernel_size")?, dims, "kernel_size", 1)?;
    let stride = match a.get(Some(1), "stride") {
        None | Some("None") => kernel,
        Some(v) => size_pair(v, dims, "stride", 1)?,
    };
    let padding = a.get(Some(2), "padding").map(|v| size_pair(v, dims, "padding", 0)).transpose()?.unwrap_or((0, 0));
    if a.get(None, "ceil_mode").map(|v| boolean(v, "ceil_mode")).transpose()? == Some(true) {
        return Err("ceil_mode=True is not supported".into());
    }
    if max {
        let dilation =
            a.get(Some(3), "dilation").map(|v| size_pair(v, dims, "dilation", 1)).transpose()?.unwrap_or((1, 1));
        Ok(LayerSpec::MaxPool { dims, kernel, stride, padding, dilation })
    } else {
        if a.get(None, "divisor_override").is_some_and(|v| v != "None") {
            return Err("divisor_override is not supported".into());
        }
        let count_include_pad =
            a.get(None, "count_include_pad").map(|v| boolean(v, "count_include_pad")).transpose()?.unwrap_or(true);
        Ok(LayerSpec::AvgPool { dims, kernel, stride, padding, count_include_pad })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of `print(model)` of `nn.Sequential(*modules)`.
    fn sequential(modules: &[&str]) -> String {
        let body: Vec<String> = modules.iter().enumerate().map(|(i, m)| format!("  ({i}): {m}")).collect();
        format!("Sequential(\n{}\n)", body.join("\n"))
    }

    #[test]
    fn every_supported_module_as_pytorch_prints_it() {
        let text = sequential(&[
            "Conv2d(3, 8, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=1, bias=False)",
            "BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)",
            "ReLU(inplace=True)",
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)",
            "Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=same, groups=4)",
            "AvgPool2d(kernel_size=3, stride=1, padding=1)",
            "AdaptiveAvgPool2d(output_size=(1, 1))",
            "Flatten(start_dim=1, end_dim=-1)",
            "Dropout(p=0.25, inplace=False)",
            "Linear(in_features=8, out_features=6, bias=True)",
            "LayerNorm((6,), eps=1e-05, elementwise_affine=True, bias=True)",
            "BatchNorm1d(6, eps=0.001, momentum=None, affine=False, track_running_stats=False)",
            "LeakyReLU(negative_slope=0.2)",
            "GELU(approximate='none')",
            "Softplus(beta=1.0, threshold=20.0)",
            "Identity()",
            "Tanh()",
            "Sigmoid()",
            "Linear(in_features=6, out_features=3, bias=False)",
        ]);
        let arch = arch_from_torch_text(&text, "3,16,12".parse().unwrap()).unwrap();
        assert_eq!(
            arch.to_string(),
            "seq:3x16x12:conv2d(8,3x5,stride=2x1,padding=1x2,dilation=2x1,bias=false)-batchnorm2d-relu-maxpool2d(2)-conv2d(8,3,padding=1,groups=4)-avgpool2d(3,stride=1,padding=1)-adaptiveavgpool2d(1)-flatten-dropout(0.25)-linear(6)-layernorm-batchnorm1d(eps=0.001,momentum=none,affine=false,track_running_stats=false)-leaky_relu(0.2)-gelu-softplus-identity-tanh-sigmoid-linear(3,bias=false)"
        );
        let one_d = sequential(&[
            "Conv1d(1, 4, kernel_size=(3,), stride=(2,), padding=(1,))",
            "MaxPool1d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)",
            "AvgPool1d(kernel_size=(2,), stride=(2,), padding=(0,))",
            "BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)",
            "Flatten(start_dim=1, end_dim=-1)",
            "Linear(in_features=20, out_features=2, bias=True)",
        ]);
        let arch = arch_from_torch_text(&one_d, "1x40".parse().unwrap()).unwrap();
        assert_eq!(
            arch.to_string(),
            "seq:1x40:conv1d(4,3,stride=2,padding=1)-maxpool1d(2)-avgpool1d(2)-batchnorm1d-flatten-linear(2)"
        );
    }

    #[test]
    fn errors_are_one_line_naming_module_and_index() {
        let img: Shape = "1x8x8".parse().unwrap();
        for (modules, msg) in [
            (
                vec!["Conv3d(1, 2, kernel_size=(3, 3, 3), stride=(1, 1, 1))"],
                "module 0 Conv3d: not supported (supported: Conv1d",
            ),
            (vec!["ReLU()", "ELU(alpha=1.0)"], "module 1 ELU: not supported"),
            (
                vec!["Conv2d(3, 2, kernel_size=(3, 3), stride=(1, 1))"],
                "module 0 Conv2d: in_channels=3, but its input has shape 1x8x8",
            ),
            (
                vec!["Flatten(start_dim=1, end_dim=-1)", "Linear(in_features=60, out_features=2, bias=True)"],
                "module 1 Linear: in_features=60, but its input has 64 features",
            ),
            (
                vec!["BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"],
                "module 0 BatchNorm2d: num_features=4",
            ),
            (
                vec!["Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding_mode=circular)"],
                "padding_mode='circular' is not supported",
            ),
            (
                vec!["MaxPool2d(kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=True)"],
                "module 0 MaxPool2d: ceil_mode=True is not supported",
            ),
            (vec!["GELU(approximate='tanh')"], "approximate='tanh' is not supported"),
            (
                vec!["Linear(in_features=64, out_features=2, bias=True)"],
                "module 0 Linear: linear layer gets a 1x8x8 input per example; flatten it first",
            ),
            (vec!["Sequential(", "  (0): ReLU()", ")"], "module 0 Sequential: nested modules are not supported"),
        ] {
            let e = arch_from_torch_text(&sequential(&modules), img).unwrap_err();
            assert!(e.contains(msg) && !e.contains('\n'), "{modules:?}: {e}");
        }
        let e = arch_from_torch_text("Net(\n  (conv): Conv2d(1, 2, 3)\n)", img).unwrap_err();
        assert!(e.contains("not the text of an nn.Sequential"), "{e}");
        let e = arch_from_torch_text("Sequential(\n  (conv1): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))\n)", img)
            .unwrap_err();
        assert!(e.contains("module 'conv1' at position 0"), "{e}");
    }
}
