//! Sequential architectures of any layer kind (convolutions, pooling, batch norm, ...): a
//! per-example input shape and a list of PyTorch-like modules, one per `nn.Sequential` index.
//!
//! Grammar (one line; layers separated by `-`):
//!
//! ```text
//! seq:INPUT:LAYER-LAYER-...      INPUT = D | CxL | CxHxW (per example, e.g. 1x28x28)
//!
//! conv2d(OUT,K[,stride=S][,padding=P][,dilation=D][,groups=G][,bias=false])
//! conv1d(OUT,K[,...])            K, S, P, D: N, or HxW in 2-d (e.g. 3x5)
//! maxpool2d(K[,stride=S][,padding=P][,dilation=D])    stride defaults to K
//! maxpool1d(K[,...])
//! avgpool2d(K[,stride=S][,padding=P][,count_include_pad=false])
//! avgpool1d(K[,...])
//! adaptiveavgpool2d(N|HxW)       output size dividing the input (1 = global average)
//! flatten | flatten(2)           from dimension 1 (all) or 2 (keep the channels)
//! linear(OUT[,bias=false])
//! batchnorm1d | batchnorm2d [(eps=E,momentum=M|none,affine=false,track_running_stats=false)]
//! layernorm[(eps=E,affine=false)]          over the (flat) features
//! dropout(P)
//! ACT                            relu, leaky_relu(0.2), tanh, gelu, ..., identity
//! ```
//! Input sizes (channels, features) follow from the input shape, as in Keras or Flax. LeNet-5:
//! `seq:1x28x28:conv2d(6,5,padding=2)-relu-maxpool2d(2)-conv2d(16,5)-relu-maxpool2d(2)-flatten-linear(120)-relu-linear(84)-relu-linear(10)`.

use crate::activation::Activation;
use crate::layer::{AvgPool, BatchNorm, Conv, Dropout, Flatten, Layer, LayerNorm, Linear, MaxPool, Window};
use crate::shape::Shape;
use std::fmt;

/// PyTorch's default batch-norm and layer-norm epsilon.
pub const NORM_EPS: f64 = 1e-5;
/// PyTorch's default batch-norm momentum.
pub const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// One module of a sequential architecture, before its input shape is known. Pairs are
/// `(height, width)`; one-dimensional layers use `(1, n)` (padding `(0, n)`).
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    Linear {
        out: usize,
        bias: bool,
    },
    Conv {
        dims: usize,
        out: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        bias: bool,
    },
    MaxPool {
        dims: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
    },
    AvgPool {
        dims: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        count_include_pad: bool,
    },
    AdaptiveAvgPool {
        out: (usize, usize),
    },
    Flatten {
        start_dim: usize,
    },
    Activation(Activation),
    LayerNorm {
        eps: f64,
        affine: bool,
    },
    BatchNorm {
        dims: usize,
        eps: f64,
        momentum: Option<f64>,
        affine: bool,
        track_running_stats: bool,
    },
    Dropout {
        p: f64,
    },
}

/// A sequential architecture: the per-example input shape and the modules in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqSpec {
    pub input: Shape,
    pub layers: Vec<LayerSpec>,
}

impl LayerSpec {
    /// The layer this spec describes on inputs of shape `input`, or why it does not fit.
    pub fn build(&self, input: Shape) -> Result<Layer, String> {
        let (h, w) = input.spatial();
        let spatial = |dims: usize, what: &str| -> Result<(), String> {
            let want = dims + 1;
            if input.rank() != want {
                return Err(format!(
                    "{what} needs a {want}-d input per example ([C{}]), gets {input}",
                    [", L", ", H, W"][dims - 1]
                ));
            }
            Ok(())
        };
        let window = |kernel, stride, padding, dilation| Window { kernel, stride, padding, dilation, input: (h, w) };
        let layer = match *self {
            LayerSpec::Linear { out, bias } => Layer::Linear(Linear { in_dim: input.len(), out_dim: out, bias }),
            LayerSpec::Conv { dims, out, kernel, stride, padding, dilation, groups, bias } => {
                let name = if dims == 1 { "conv1d" } else { "conv2d" };
                spatial(dims, name)?;
                let c = input.channels();
                if groups == 0 || !c.is_multiple_of(groups) || out % groups != 0 {
                    return Err(format!(
                        "{name}: groups={groups} must divide the input channels ({c}) and the output channels ({out})"
                    ));
                }
                let window = window(kernel, stride, padding, dilation);
                window.output().map_err(|e| format!("{name}: {e}"))?;
                Layer::Conv(Conv { dims, in_channels: c, out_channels: out, groups, bias, window })
            }
            LayerSpec::MaxPool { dims, kernel, stride, padding, dilation } => {
                let name = if dims == 1 { "maxpool1d" } else { "maxpool2d" };
                spatial(dims, name)?;
                check_pool_padding(name, kernel, padding)?;
                let window = window(kernel, stride, padding, dilation);
                window.output().map_err(|e| format!("{name}: {e}"))?;
                if window.has_empty_window() {
                    return Err(format!("{name}: some window covers only padding"));
                }
                Layer::MaxPool(MaxPool { dims, channels: input.channels(), window })
            }
            LayerSpec::AvgPool { dims, kernel, stride, padding, count_include_pad } => {
                let name = if dims == 1 { "avgpool1d" } else { "avgpool2d" };
                spatial(dims, name)?;
                check_pool_padding(name, kernel, padding)?;
                let window = window(kernel, stride, padding, (1, 1));
                window.output().map_err(|e| format!("{name}: {e}"))?;
                if window.has_empty_window() {
                    return Err(format!("{name}: some window covers only padding"));
                }
                Layer::AvgPool(AvgPool { dims, channels: input.channels(), window, count_include_pad })
            }
            LayerSpec::AdaptiveAvgPool { out } => {
                spatial(2, "adaptiveavgpool2d")?;
                if out.0 == 0 || out.1 == 0 || h % out.0 != 0 || w % out.1 != 0 {
                    return Err(format!(
                        "adaptiveavgpool2d to {}x{} of a {h}x{w} input: only output sizes dividing the input are supported",
                        out.0, out.1
                    ));
                }
                let k = (h / out.0, w / out.1);
                let window = window(k, k, (0, 0), (1, 1));
                Layer::AvgPool(AvgPool { dims: 2, channels: input.channels(), window, count_include_pad: true })
            }
            LayerSpec::Flatten { start_dim } => {
                if !(start_dim == 1 || start_dim == 2) {
                    return Err(format!("flatten from dimension {start_dim} is not supported (only 1 and 2)"));
                }
                Layer::Flatten(Flatten { start_dim, features: input.len() })
            }
            LayerSpec::Activation(a) => Layer::Activation(a),
            LayerSpec::LayerNorm { eps, affine } => Layer::LayerNorm(LayerNorm { dim: input.len(), affine, eps }),
            LayerSpec::BatchNorm { dims, eps, momentum, affine, track_running_stats } => {
                let name = if dims == 1 { "batchnorm1d" } else { "batchnorm2d" };
                let ok = if dims == 1 { input.rank() <= 2 } else { input.rank() == 3 };
                if !ok {
                    let want = if dims == 1 { "[C] or [C, L]" } else { "[C, H, W]" };
                    return Err(format!("{name} needs {want} inputs per example, gets {input}"));
                }
                if !(eps > 0.0 && eps.is_finite()) || momentum.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
                    return Err(format!("{name}: eps must be positive and momentum in [0, 1]"));
                }
                Layer::BatchNorm(BatchNorm::new(dims, input, eps, momentum, affine, track_running_stats))
            }
            LayerSpec::Dropout { p } => Layer::Dropout(Dropout { p, features: input.len() }),
        };
        Ok(layer)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut args = Args::default();
        let name = match self {
            LayerSpec::Linear { out, bias } => {
                args.pos(out);
                args.flag("bias", *bias, true);
                "linear".to_string()
            }
            LayerSpec::Conv { dims, out, kernel, stride, padding, dilation, groups, bias } => {
                args.pos(out);
                args.pos(pair(*dims, *kernel));
                args.pair("stride", *dims, *stride, (1, 1));
                args.pair("padding", *dims, *padding, (0, 0));
                args.pair("dilation", *dims, *dilation, (1, 1));
                args.num("groups", *groups, 1);
                args.flag("bias", *bias, true);
                format!("conv{dims}d")
            }
            LayerSpec::MaxPool { dims, kernel, stride, padding, dilation } => {
                args.pos(pair(*dims, *kernel));
                args.pair("stride", *dims, *stride, *kernel);
                args.pair("padding", *dims, *padding, (0, 0));
                args.pair("dilation", *dims, *dilation, (1, 1));
                format!("maxpool{dims}d")
            }
            LayerSpec::AvgPool { dims, kernel, stride, padding, count_include_pad } => {
                args.pos(pair(*dims, *kernel));
                args.pair("stride", *dims, *stride, *kernel);
                args.pair("padding", *dims, *padding, (0, 0));
                args.flag("count_include_pad", *count_include_pad, true);
                format!("avgpool{dims}d")
            }
            LayerSpec::AdaptiveAvgPool { out } => {
                args.pos(pair(2, *out));
                "adaptiveavgpool2d".to_string()
            }
            LayerSpec::Flatten { start_dim } => {
                if *start_dim != 1 {
                    args.pos(start_dim);
                }
                "flatten".to_string()
            }
            LayerSpec::Activation(a) => a.to_string(),
            LayerSpec::LayerNorm { eps, affine } => {
                args.float("eps", *eps, NORM_EPS);
                args.flag("affine", *affine, true);
                "layernorm".to_string()
            }
            LayerSpec::BatchNorm { dims, eps, momentum, affine, track_running_stats } => {
                args.float("eps", *eps, NORM_EPS);
                match momentum {
                    None => args.0.push("momentum=none".into()),
                    Some(m) => args.float("momentum", *m, BATCH_NORM_MOMENTUM),
                }
                args.flag("affine", *affine, true);
                args.flag("track_running_stats", *track_running_stats, true);
                format!("batchnorm{dims}d")
            }
            LayerSpec::Dropout { p } => {
                args.pos(p);
                "dropout".to_string()
            }
        };
        if args.0.is_empty() { f.write_str(&name) } else { write!(f, "{name}({})", args.0.join(",")) }
    }
}

/// PyTorch refuses pooling padding above half the kernel (a window of padding only).
fn check_pool_padding(name: &str, kernel: (usize, usize), padding: (usize, usize)) -> Result<(), String> {
    if 2 * padding.0 > kernel.0 || 2 * padding.1 > kernel.1 {
        return Err(format!("{name}: padding should be at most half the kernel size"));
    }
    Ok(())
}

fn pair(dims: usize, v: (usize, usize)) -> String {
    if dims == 1 || v.0 == v.1 { v.1.to_string() } else { format!("{}x{}", v.0, v.1) }
}

/// Arguments of a printed layer: positional first, then the keys that differ from the default.
#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn pos(&mut self, v: impl fmt::Display) {
        self.0.push(v.to_string());
    }
    fn pair(&mut self, key: &str, dims: usize, v: (usize, usize), default: (usize, usize)) {
        if v != default {
            self.0.push(format!("{key}={}", pair(dims, v)));
        }
    }
    fn num(&mut self, key: &str, v: usize, default: usize) {
        if v != default {
            self.0.push(format!("{key}={v}"));
        }
    }
    fn float(&mut self, key: &str, v: f64, default: f64) {
        if v != default {
            self.0.push(format!("{key}={v}"));
        }
    }
    fn flag(&mut self, key: &str, v: bool, default: bool) {
        if v != default {
            self.0.push(format!("{key}={v}"));
        }
    }
}

impl SeqSpec {
    /// The layers and the shape entering each (the last entry is the output shape), or the first
    /// layer that does not fit, named by its index and kind.
    pub fn build(&self) -> Result<(Vec<Layer>, Vec<Shape>), String> {
        let mut shapes = vec![self.input];
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, spec) in self.layers.iter().enumerate() {
            let s = *shapes.last().expect("starts with the input");
            let name = spec.to_string();
            let layer = spec.build(s).map_err(|e| format!("layer {i} ({name}): {e}"))?;
            let out = layer.out_shape(s).map_err(|e| format!("layer {i} ({name}): {e}"))?;
            if out.checked_len().is_none() || out.is_empty() {
                return Err(format!("layer {i} ({name}): output shape {out} has no values or too many"));
            }
            layers.push(layer);
            shapes.push(out);
        }
        if layers.is_empty() {
            return Err("a sequential architecture needs at least one layer".into());
        }
        Ok((layers, shapes))
    }

    /// The activation shared by every activation layer, if there is exactly one kind.
    pub fn common_activation(&self) -> Option<Activation> {
        let mut acts = self.layers.iter().filter_map(|l| match l {
            LayerSpec::Activation(a) => Some(*a),
            _ => None,
        });
        let first = acts.next()?;
        acts.all(|a| a == first).then_some(first)
    }

    /// Parses `INPUT` and `LAYER-LAYER-...` (see the module documentation).
    pub fn parse(input: &str, layers: &str) -> Result<Self, String> {
        let input: Shape = input.trim().parse()?;
        let layers = split_top_level(layers, '-')
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_layer(s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = SeqSpec { input, layers };
        spec.build()?;
        Ok(spec)
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f)
    }
}

impl fmt::Display for SeqSpec {
    /// `1x28x28:conv2d(6,5)-relu-...` (the part after `seq:`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layers: Vec<String> = self.layers.iter().map(LayerSpec::to_string).collect();
        write!(f, "{}:{}", self.input, layers.join("-"))
    }
}

/// Splits at `sep` outside parentheses.
pub(crate) fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, ch) in s.char_indices() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The arguments of `name(a,b,key=value)`: positional and keyed, in order.
struct Parsed<'a> {
    name: &'a str,
    positional: Vec<&'a str>,
    keyed: Vec<(&'a str, &'a str)>,
}

fn split_call(s: &str) -> Result<Parsed<'_>, String> {
    let (name, rest) = match s.find('(') {
        Some(i) => {
            let inner = s[i + 1..].strip_suffix(')').ok_or_else(|| format!("layer '{s}': missing ')'"))?;
            (&s[..i], Some(inner))
        }
        None => (s, None),
    };
    let mut parsed = Parsed { name: name.trim(), positional: Vec::new(), keyed: Vec::new() };
    for a in rest.map(|r| split_top_level(r, ',')).unwrap_or_default() {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        match a.split_once('=') {
            Some((k, v)) => parsed.keyed.push((k.trim(), v.trim())),
            None if parsed.keyed.is_empty() => parsed.positional.push(a),
            None => return Err(format!("layer '{s}': positional argument '{a}' after a keyed one")),
        }
    }
    Ok(parsed)
}

fn num(s: &str, what: &str, layer: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("layer '{layer}': {what} '{s}' is not a non-negative integer"))
}

/// `N` or, in 2-d, `HxW`.
fn num_pair(s: &str, dims: usize, what: &str, layer: &str) -> Result<(usize, usize), String> {
    match (dims, s.split_once('x')) {
        (2, Some((a, b))) => Ok((num(a, what, layer)?, num(b, what, layer)?)),
        (_, Some(_)) => Err(format!("layer '{layer}': {what} '{s}' has two values for one dimension")),
        (1, None) => Ok((1, num(s, what, layer)?)),
        (_, None) => {
            let v = num(s, what, layer)?;
            Ok((v, v))
        }
    }
}

fn float(s: &str, what: &str, layer: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("layer '{layer}': {what} '{s}' is not a number")),
    }
}

fn boolean(s: &str, what: &str, layer: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("layer '{layer}': {what} '{s}' is not true or false")),
    }
}

/// Reads the keyed arguments through `f(key, value)`; an unknown key is an error listing `known`.
fn keys(
    p: &Parsed<'_>,
    layer: &str,
    known: &[&str],
    mut f: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    for &(k, v) in &p.keyed {
        if !known.contains(&k) {
            return Err(format!("layer '{layer}': unknown argument '{k}' (known: {})", known.join(", ")));
        }
        f(k, v)?;
    }
    Ok(())
}

fn positional_count(p: &Parsed<'_>, layer: &str, min: usize, max: usize, usage: &str) -> Result<(), String> {
    if p.positional.len() < min || p.positional.len() > max {
        return Err(format!("layer '{layer}': expected {usage}"));
    }
    Ok(())
}

fn parse_layer(s: &str) -> Result<LayerSpec, String> {
    let p = split_call(s)?;
    let dims_of = |name: &str| if name.ends_with("1d") { 1 } else { 2 };
    match p.name {
        "linear" => {
            positional_count(&p, s, 1, 1, "linear(OUT[,bias=false])")?;
            let mut bias = true;
            keys(&p, s, &["bias"], |_, v| {
                bias = boolean(v, "bias", s)?;
                Ok(())
            })?;
            Ok(LayerSpec::Linear { out: positive(num(p.positional[0], "width", s)?, "width", s)?, bias })
        }
        "conv1d" | "conv2d" => {
            let dims = dims_of(p.name);
            positional_count(&p, s, 2, 2, &format!("{}(OUT,KERNEL[,stride=..,padding=..,dilation=..,groups=..,bias=false])", p.name))?;
            let out = positive(num(p.positional[0], "output channels", s)?, "output channels", s)?;
            let kernel = num_pair(p.positional[1], dims, "kernel size", s)?;
            let (mut stride, mut padding, mut dilation) = ((1, 1), (0, 0), (1, 1));
            let (mut groups, mut bias) = (1, true);
            keys(&p, s, &["stride", "padding", "dilation", "groups", "bias"], |k, v| {
                match k {
                    "stride" => stride = num_pair(v, dims, k, s)?,
                    "padding" => {
                        padding = num_pair(v, dims, k, s)?;
                        if dims == 1 {
                            padding.0 = 0;
                        }
                    }
                    "dilation" => dilation = num_pair(v, dims, k, s)?,
                    "groups" => groups = num(v, k, s)?,
                    _ => bias = boolean(v, k, s)?,
                }
                Ok(())
            })?;
            Ok(LayerSpec::Conv { dims, out, kernel, stride, padding, dilation, groups, bias })
        }
        "maxpool1d" | "maxpool2d" | "avgpool1d" | "avgpool2d" => {
            let dims = dims_of(p.name);
            let max = p.name.starts_with("max");
            positional_count(&p, s, 1, 1, &format!("{}(KERNEL[,stride=..,padding=..])", p.name))?;
            let kernel = num_pair(p.positional[0], dims, "kernel size", s)?;
            let (mut stride, mut padding, mut dilation, mut count_include_pad) = (kernel, (0, 0), (1, 1), true);
            let known: &[&str] = if max { &["stride", "padding", "dilation"] } else { &["stride", "padding", "count_include_pad"] };
            keys(&p, s, known, |k, v| {
                match k {
                    "stride" => stride = num_pair(v, dims, k, s)?,
                    "padding" => {
                        padding = num_pair(v, dims, k, s)?;
                        if dims == 1 {
                            padding.0 = 0;
                        }
                    }
                    "dilation" => dilation = num_pair(v, dims, k, s)?,
                    _ => count_include_pad = boolean(v, k, s)?,
                }
                Ok(())
            })?;
            Ok(if max {
                LayerSpec::MaxPool { dims, kernel, stride, padding, dilation }
            } else {
                LayerSpec::AvgPool { dims, kernel, stride, padding, count_include_pad }
            })
        }
        "adaptiveavgpool2d" => {
            positional_count(&p, s, 1, 1, "adaptiveavgpool2d(N|HxW)")?;
            keys(&p, s, &[], |_, _| Ok(()))?;
            Ok(LayerSpec::AdaptiveAvgPool { out: num_pair(p.positional[0], 2, "output size", s)? })
        }
        "flatten" => {
            positional_count(&p, s, 0, 1, "flatten or flatten(START_DIM)")?;
            keys(&p, s, &[], |_, _| Ok(()))?;
            let start_dim = p.positional.first().map(|v| num(v, "start dimension", s)).transpose()?.unwrap_or(1);
            Ok(LayerSpec::Flatten { start_dim })
        }
        "layernorm" => {
            positional_count(&p, s, 0, 0, "layernorm[(eps=..,affine=false)]")?;
            let (mut eps, mut affine) = (NORM_EPS, true);
            keys(&p, s, &["eps", "affine"], |k, v| {
                match k {
                    "eps" => eps = float(v, k, s)?,
                    _ => affine = boolean(v, k, s)?,
                }
                Ok(())
            })?;
            if eps <= 0.0 {
                return Err(format!("layer '{s}': eps must be positive"));
            }
            Ok(LayerSpec::LayerNorm { eps, affine })
        }
        "batchnorm1d" | "batchnorm2d" => {
            positional_count(&p, s, 0, 0, &format!("{}[(eps=..,momentum=..,affine=false,track_running_stats=false)]", p.name))?;
            let (mut eps, mut momentum, mut affine, mut track) = (NORM_EPS, Some(BATCH_NORM_MOMENTUM), true, true);
            keys(&p, s, &["eps", "momentum", "affine", "track_running_stats"], |k, v| {
                match k {
                    "eps" => eps = float(v, k, s)?,
                    "momentum" if v == "none" => momentum = None,
                    "momentum" => momentum = Some(float(v, k, s)?),
                    "affine" => affine = boolean(v, k, s)?,
                    _ => track = boolean(v, k, s)?,
                }
                Ok(())
            })?;
            Ok(LayerSpec::BatchNorm { dims: dims_of(p.name), eps, momentum, affine, track_running_stats: track })
        }
        "dropout" => {
            positional_count(&p, s, 0, 1, "dropout(P)")?;
            keys(&p, s, &[], |_, _| Ok(()))?;
            let prob = p.positional.first().map(|v| float(v, "probability", s)).transpose()?.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&prob) {
                return Err(format!("layer '{s}': dropout probability {prob} is not in [0, 1]"));
            }
            Ok(LayerSpec::Dropout { p: prob })
        }
        _ => Activation::parse(s).map(LayerSpec::Activation).map_err(|_| {
            format!(
                "unknown layer '{s}' (known: conv1d, conv2d, maxpool1d, maxpool2d, avgpool1d, avgpool2d, adaptiveavgpool2d, flatten, linear, batchnorm1d, batchnorm2d, layernorm, dropout, and the activations relu, leaky_relu, tanh, sigmoid, erf, gelu, softplus, hat, identity)"
            )
        }),
    }
}

fn positive(v: usize, what: &str, layer: &str) -> Result<usize, String> {
    if v == 0 {
        return Err(format!("layer '{layer}': {what} must be positive"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENET: &str = "1x28x28:conv2d(6,5,padding=2)-relu-maxpool2d(2)-conv2d(16,5)-relu-maxpool2d(2)-flatten-linear(120)-relu-linear(84)-relu-linear(10)";

    fn parse(s: &str) -> Result<SeqSpec, String> {
        let (i, l) = s.split_once(':').unwrap();
        SeqSpec::parse(i, l)
    }

    #[test]
    fn lenet_parses_builds_and_round_trips() {
        let spec = parse(LENET).unwrap();
        assert_eq!(spec.to_string(), LENET);
        let (layers, shapes) = spec.build().unwrap();
        assert_eq!(layers.len(), 12);
        let dims: Vec<String> = shapes.iter().map(Shape::to_string).collect();
        assert_eq!(dims[..7], ["1x28x28", "6x28x28", "6x28x28", "6x14x14", "16x10x10", "16x10x10", "16x5x5"]);
        assert_eq!(shapes.last().unwrap(), &Shape::flat(10));
        let n: usize = layers.iter().map(Layer::num_params).sum();
        assert_eq!(n, 61_706);
    }

    #[test]
    fn every_option_round_trips() {
        for s in [
            "4x9x8:conv2d(4,3x2,stride=2x1,padding=1,dilation=2,groups=2,bias=false)-batchnorm2d(eps=0.001,momentum=none)-maxpool2d(2,stride=1,padding=1,dilation=2)-avgpool2d(3,stride=2,padding=1,count_include_pad=false)-adaptiveavgpool2d(1)-flatten-dropout(0.25)-linear(5,bias=false)-layernorm(affine=false)-batchnorm1d(affine=false,track_running_stats=false)-leaky_relu(0.2)",
            "2x20:conv1d(3,5,stride=2,padding=2)-maxpool1d(2)-avgpool1d(3,stride=1)-batchnorm1d-flatten(2)-flatten-tanh-linear(2)",
        ] {
            let spec = parse(s).unwrap();
            assert_eq!(spec.to_string(), s);
        }
    }

    #[test]
    fn bad_layers_name_the_layer() {
        for (s, msg) in [
            ("1x8x8:conv3d(2,3)", "unknown layer 'conv3d(2,3)'"),
            ("1x8x8:conv2d(2)", "expected conv2d(OUT,KERNEL"),
            ("1x8x8:conv2d(2,3,strid=2)", "unknown argument 'strid'"),
            ("1x8x8:conv2d(2,9)", "layer 0 (conv2d(2,9)): conv2d: a 9x9 window"),
            ("1x8x8:linear(3)", "layer 0 (linear(3)): linear layer gets a 1x8x8 input per example; flatten it first"),
            ("4:conv1d(2,3)", "conv1d needs a 2-d input"),
            ("3x8x8:conv2d(4,3,groups=2)", "groups=2 must divide the input channels (3)"),
            ("1x8x8:flatten-batchnorm2d", "batchnorm2d needs [C, H, W] inputs"),
            ("1x6x6:adaptiveavgpool2d(4)", "only output sizes dividing the input"),
            ("1x6x6:maxpool2d(2,padding=2)", "at most half the kernel"),
            ("1x6x6:dropout(1.5)", "not in [0, 1]"),
            ("0x6x6:relu", "'0' is not a positive integer"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(msg), "{s}: {e}");
        }
    }
}
