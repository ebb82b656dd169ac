//! Dataset spec strings, parsed in one place.
//!
//! See [`SPEC_GRAMMAR`] for the grammar, every source and transform, every key and its default.

use crate::generators::{
    Activation, Amplitudes, BooleanCubeSpec, BooleanTarget, CloneKind, CompletionLayout, DominoesSpec,
    GaussianCloneSpec, GaussianMixtureSpec, LmsSpec, MatrixCompletionSpec, Mnist1dSpec, SimpleCoordinate, SinesSpec,
    TeacherSpec, TeacherTargets, gaussian_clone,
};
use crate::loaders::{load_cifar10_dir, load_idx_pair, load_npy_pair};
use crate::transform::StandardiseBy;
use crate::{DataError, Dataset, ImageShape};
use sgdlab_linalg::RngStream;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The spec grammar, printed by `sgdlab data specs` and quoted in errors.
pub const SPEC_GRAMMAR: &str = "\
A dataset spec is a source followed by transforms, each `NAME[:ARGS]`, joined by `|`:
    SOURCE[:ARGS] ( | TRANSFORM[:ARGS] )*        ARGS = ARG(,ARG)*   ARG = KEY=VALUE or a path
A value containing `,` `|` or `=` (a nested spec, a path) is wrapped in parentheses: of=(mnist1d|pool2).
Lists use `+` (hidden=100+100). Unknown keys are errors. Defaults in brackets.

Sources
  mnist1d              procedural MNIST-1D: seed [42], n total examples [5000], train fraction [0.8],
                       pad_min [36], pad_max [60], scale [0.4], translation [48], corr_noise [0.25],
                       iid_noise [0.02], shear [0.75], length [40]        -> train/test
  mnist1d-frozen:DIR   x_train.npy, y_train.npy, x_test.npy, y_test.npy in DIR -> train/test
  npy:X,Y[,XT,YT]      .npy features (f32/f64/u8/i32/i64; [n,d], [n,h,w] or [n,c,h,w]) and targets (1-D
                       integers = classes, floats = regression): classes [max label + 1], image [none]
                       (CxHxW for flat features, e.g. 1x8x8)     -> all (2 files) or train/test (4 files)
  idx:IMAGES,LABELS[,TEST_IMAGES,TEST_LABELS]  MNIST/Fashion-MNIST/KMNIST IDX, gzipped or not, pixels/255:
                       classes [10]                               -> all or train/test
  mnist[:DIR]          the MNIST test set (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, 10,000
                       images, pixels/255) in DIR, else $SGDLAB_DATA/mnist, data/mnist or
                       ../shared/data/mnist (the first that has both files) -> all
  cifar10:DIR          CIFAR-10 binary batches, pixels/255: batches [1+2+3+4+5] -> train/test
  sines                sum of sines on a periodic grid: n [200], freqs [10], step [5],
                       amplitudes [equal] (equal|increasing), input [unit] (unit: x = z in [0,1);
                       centred: x = 2z - 1 in [-1,1)), seed [0] -> train (x -> lambda(z))
  lms                  LMS-k: k [5] (3|5|7), d [50], complex [d-1], n [20000], n_test [5000], margin [0.1],
                       noise [0] (linear-margin noise fraction; noisy LMS-7 = lms:k=7,noise=0.1),
                       rotate [true], seed [0] -> train/test/test-s-randomised/test-sc-randomised
  ms                   MS-k: like lms with a slab simple coordinate: k [7], simple [k], no noise key
  gaussian-mixture     classes [2], d [20], n [200], n_test [1000], separation [2], sd [1], seed [0]
  gaussian-clone       of=(SPEC) (required), kind [full] (iso|full), ridge [0.001], seed [0]
                       -> the train split of SPEC replaced by its Gaussian clone
  teacher              d [10], hidden [3] (list, or none), out [1], act [relu] (relu|tanh|linear),
                       bias_sd [0], n [50], n_test [2000], noise [0], targets [regression]
                       (regression|classes), seed [0] -> train/test
  boolean              {-1,1}^d: d [7], target [parity] (parity|monomial|and|random), degree [d],
                       set [first degree coordinates] (e.g. 0+2+4), n_train [all points], seed [0]
                       -> train (whole cube) or train/test
  matrix-completion    rows [32], cols [32], rank [3], observed [0.3], layout [entries] (entries|columns),
                       seed [0] -> train (observed entries) / test (hidden): entries = one example per
                       entry with one-hot row|col features; columns = one example per column (one-hot
                       e_c -> M[:, c], entries of the other split NaN = unobserved)
  dominoes             of=(SPEC) (required; image data with train/test splits), top [0+1], bottom [4+9],
                       seed [0] -> each split, plus test-top-randomised and test-bottom-randomised

Transforms
  split                hold out a test set: test (count, or fraction < 1) (required), from [all], seed [0]
  subset               balanced random subset: n (required), split [train], seed [0]
  binarise             neg=CLASSES,pos=CLASSES (e.g. neg=4,pos=9), or the preset `binarise:even-odd`
  label-noise          fraction (required), split [train], seed [0]: that fraction gets a wrong label
  random-labels        fraction [1], split [train], seed [0]: that fraction gets a uniform random label
  pool2                2x2 average pooling of images (MNIST 28x28 -> 14x14)
  standardise          from [train], by [feature] (feature|global)
  unit-norm            scale every example to unit Euclidean norm
Examples: mnist1d:seed=7,n=10000   idx:IMG.gz,LBL.gz|split:test=2000|pool2|standardise   boolean:d=7
";

/// The data source of a spec.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// `mnist1d`.
    Mnist1d(Mnist1dSpec),
    /// `mnist1d-frozen:DIR`.
    Mnist1dFrozen {
        /// Directory with `x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy`.
        dir: PathBuf,
    },
    /// `npy:X,Y[,XT,YT]`.
    Npy {
        /// Features and targets files; one pair (`all`) or two (`train`, `test`).
        files: Vec<(PathBuf, PathBuf)>,
        /// Class count (`None`: inferred as the largest label + 1).
        classes: Option<usize>,
        /// Image shape for flat features.
        image: Option<ImageShape>,
    },
    /// `idx:IMAGES,LABELS[,TEST_IMAGES,TEST_LABELS]`.
    Idx {
        /// Image and label files; one pair (`all`) or two (`train`, `test`).
        files: Vec<(PathBuf, PathBuf)>,
        /// Class count.
        classes: usize,
    },
    /// `mnist[:DIR]`: the MNIST test set (10,000 images) from a data directory, found as
    /// [`mnist_test_dir`] says.
    Mnist {
        /// The directory of `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz`
        /// (`None`: looked up when loaded).
        dir: Option<PathBuf>,
    },
    /// `cifar10:DIR`.
    Cifar10 {
        /// Directory of the binary batches.
        dir: PathBuf,
        /// Training batch numbers.
        batches: Vec<u32>,
    },
    /// `sines`.
    Sines(SinesSpec),
    /// `lms` or `ms`.
    Lms(LmsSpec),
    /// `gaussian-mixture`.
    GaussianMixture(GaussianMixtureSpec),
    /// `gaussian-clone`.
    GaussianClone {
        /// Clone parameters.
        spec: GaussianCloneSpec,
        /// The cloned dataset.
        of: Box<DatasetSpec>,
    },
    /// `teacher`.
    Teacher(TeacherSpec),
    /// `boolean`.
    Boolean(BooleanCubeSpec),
    /// `matrix-completion`.
    MatrixCompletion(MatrixCompletionSpec),
    /// `dominoes`.
    Dominoes {
        /// Block classes.
        spec: DominoesSpec,
        /// The image dataset the blocks come from.
        of: Box<DatasetSpec>,
    },
}

/// Size of a held-out test set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TestSize {
    /// This many examples.
    Count(usize),
    /// `round(fraction * n)` examples.
    Fraction(f64),
}

/// Classes of a binarisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinariseSpec {
    /// Even classes negative, odd positive.
    EvenOdd,
    /// Explicit class sets.
    Classes {
        /// Relabelled 0.
        negative: Vec<u32>,
        /// Relabelled 1.
        positive: Vec<u32>,
    },
}

/// One transform of a spec (see [`Dataset`]'s transform methods).
#[derive(Debug, Clone, PartialEq)]
pub enum TransformSpec {
    /// `split`: [`Dataset::split_off_test`].
    Split {
        /// Held-out size.
        test: TestSize,
        /// Split to cut.
        from: String,
        /// Seed (stream `split`).
        seed: u64,
    },
    /// `subset`: [`Dataset::balanced_subset`].
    Subset {
        /// Examples kept.
        n: usize,
        /// Split.
        split: String,
        /// Seed (stream `subset`).
        seed: u64,
    },
    /// `binarise`: [`Dataset::binarise`].
    Binarise(BinariseSpec),
    /// `label-noise`: [`Dataset::with_label_noise`].
    LabelNoise {
        /// Fraction of wrong labels.
        fraction: f64,
        /// Split.
        split: String,
        /// Seed (stream `label-noise`).
        seed: u64,
    },
    /// `random-labels`: [`Dataset::with_random_labels`].
    RandomLabels {
        /// Fraction of re-drawn labels.
        fraction: f64,
        /// Split.
        split: String,
        /// Seed (stream `random-labels`).
        seed: u64,
    },
    /// `pool2`: [`Dataset::avg_pool_2x2`].
    Pool2,
    /// `standardise`: [`Dataset::standardise`].
    Standardise {
        /// Statistics split.
        from: String,
        /// Per feature or global.
        by: StandardiseBy,
    },
    /// `unit-norm`: [`Dataset::unit_norm`].
    UnitNorm,
}

/// A parsed dataset spec: a source and transforms applied in order.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    /// Where the data comes from.
    pub source: SourceSpec,
    /// Applied in order.
    pub transforms: Vec<TransformSpec>,
}

// ---------------------------------------------------------------------------------------------
// Tokenising

/// Split `s` at `sep` outside parentheses; errors on unbalanced parentheses.
fn split_top(spec: &str, s: &str, sep: char) -> Result<Vec<String>, DataError> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(DataError::spec(spec, "unbalanced `)`"));
                }
            }
            _ => {}
        }
        if ch == sep && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    if depth != 0 {
        return Err(DataError::spec(spec, "unbalanced `(`"));
    }
    parts.push(cur);
    Ok(parts)
}

/// Position of the first `ch` outside parentheses.
fn find_top(s: &str, ch: char) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c == ch && depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// `(inner)` -> `inner` when the outer parentheses match each other.
fn unwrap_parens(s: &str) -> &str {
    let t = s.trim();
    if t.starts_with('(') && t.ends_with(')') {
        let inner = &t[1..t.len() - 1];
        let mut depth = 0i32;
        for c in inner.chars() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        return t;
                    }
                }
                _ => {}
            }
        }
        if depth == 0 {
            return inner;
        }
    }
    t
}

/// The arguments of one segment, checked against the allowed keys.
struct Args<'a> {
    spec: &'a str,
    name: String,
    allowed: &'static [&'static str],
    positional: Vec<String>,
    keys: Vec<(String, String)>,
}

impl<'a> Args<'a> {
    fn new(
        spec: &'a str,
        name: &str,
        raw: Option<&str>,
        allowed: &'static [&'static str],
        positional: &[usize],
    ) -> Result<Self, DataError> {
        let mut args = Args { spec, name: name.to_string(), allowed, positional: Vec::new(), keys: Vec::new() };
        if let Some(raw) = raw {
            for part in split_top(spec, raw, ',')? {
                let part = part.trim();
                if part.is_empty() {
                    return Err(args.err("empty argument (two commas in a row, or a trailing comma)"));
                }
                match find_top(part, '=') {
                    Some(i) => {
                        let (k, v) = (part[..i].trim(), unwrap_parens(&part[i + 1..]));
                        if !allowed.contains(&k) {
                            return Err(args.err(&format!("unknown key `{k}`; {}", args.allowed_text())));
                        }
                        if args.keys.iter().any(|(kk, _)| kk == k) {
                            return Err(args.err(&format!("key `{k}` given twice")));
                        }
                        args.keys.push((k.to_string(), v.to_string()));
                    }
                    None => args.positional.push(unwrap_parens(part).to_string()),
                }
            }
        }
        if !positional.contains(&args.positional.len()) {
            let want = match positional {
                [0] => "no paths".to_string(),
                [n] => format!("{n} path(s)"),
                many => format!("{} paths", many.iter().map(usize::to_string).collect::<Vec<_>>().join(" or ")),
            };
            let got = if args.positional.is_empty() {
                "none".to_string()
            } else {
                format!("`{}`", args.positional.join("`, `"))
            };
            return Err(args.err(&format!(
                "takes {want} before its keys, got {got}; {} (a value needs KEY=VALUE)",
                args.allowed_text()
            )));
        }
        Ok(args)
    }

    fn allowed_text(&self) -> String {
        if self.allowed.is_empty() {
            "it takes no keys".to_string()
        } else {
            format!("allowed keys: {}", self.allowed.join(", "))
        }
    }

    fn err(&self, message: &str) -> DataError {
        DataError::spec(self.spec, format!("`{}`: {message}", self.name))
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn parse<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, DataError> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| self.err(&format!("key `{key}`: `{v}` is not {what}"))),
        }
    }

    fn uint(&self, key: &str, default: usize) -> Result<usize, DataError> {
        Ok(self.parse(key, "a non-negative integer")?.unwrap_or(default))
    }

    fn seed(&self, default: u64) -> Result<u64, DataError> {
        Ok(self.parse("seed", "a non-negative integer")?.unwrap_or(default))
    }

    fn float(&self, key: &str, default: f64) -> Result<f64, DataError> {
        let v: f64 = self.parse(key, "a number")?.unwrap_or(default);
        if v.is_finite() { Ok(v) } else { Err(self.err(&format!("key `{key}` must be finite"))) }
    }

    fn required<T>(&self, key: &str, v: Option<T>) -> Result<T, DataError> {
        v.ok_or_else(|| self.err(&format!("key `{key}` is required; {}", self.allowed_text())))
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, DataError> {
        match self.raw(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(self.err(&format!("key `{key}`: `{v}` is not true or false"))),
        }
    }

    fn choice<T: Copy>(&self, key: &str, options: &[(&str, T)], default: T) -> Result<T, DataError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => options.iter().find(|(n, _)| *n == v).map(|(_, t)| *t).ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.err(&format!("key `{key}`: `{v}` is not one of {}", names.join(", ")))
            }),
        }
    }

    fn list<T: FromStr>(&self, key: &str) -> Result<Option<Vec<T>>, DataError> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => {
                v.split('+').map(|x| x.trim().parse::<T>()).collect::<Result<Vec<T>, _>>().map(Some).map_err(|_| {
                    self.err(&format!("key `{key}`: `{v}` is not a `+`-separated list of non-negative integers"))
                })
            }
        }
    }

    fn pair(&self, key: &str, default: (u32, u32)) -> Result<(u32, u32), DataError> {
        match self.list::<u32>(key)? {
            None => Ok(default),
            Some(v) if v.len() == 2 => Ok((v[0], v[1])),
            Some(_) => Err(self.err(&format!("key `{key}` needs two classes, e.g. {key}=0+1"))),
        }
    }

    fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or(default).to_string()
    }

    fn nested(&self, key: &str) -> Result<Box<DatasetSpec>, DataError> {
        let raw = self.required(key, self.raw(key))?;
        DatasetSpec::parse(raw).map(Box::new).map_err(|e| match e {
            DataError::Spec { message, spec } => self.err(&format!("in {key}=({spec}): {message}")),
            other => other,
        })
    }

    fn path_pairs(&self) -> Vec<(PathBuf, PathBuf)> {
        self.positional.chunks(2).map(|c| (PathBuf::from(&c[0]), PathBuf::from(&c[1]))).collect()
    }
}

fn parse_image(args: &Args<'_>) -> Result<Option<ImageShape>, DataError> {
    let Some(v) = args.raw("image") else { return Ok(None) };
    let dims: Vec<usize> = v
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| args.err(&format!("key `image`: `{v}` is not CxHxW (e.g. 1x8x8)")))?;
    match dims[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok(Some(ImageShape { channels: c, height: h, width: w })),
        _ => Err(args.err(&format!("key `image`: `{v}` is not CxHxW with positive sizes (e.g. 1x8x8)"))),
    }
}

const KNOWN_SOURCES: &str = "mnist1d, mnist1d-frozen, npy, idx, mnist, cifar10, sines, lms, ms, gaussian-mixture, gaussian-clone, teacher, boolean, matrix-completion, dominoes";
const KNOWN_TRANSFORMS: &str = "split, subset, binarise, label-noise, random-labels, pool2, standardise, unit-norm";

fn parse_source(spec: &str, name: &str, raw: Option<&str>) -> Result<SourceSpec, DataError> {
    Ok(match name {
        "mnist1d" => {
            let a = Args::new(
                spec,
                name,
                raw,
                &[
                    "seed",
                    "n",
                    "train",
                    "pad_min",
                    "pad_max",
                    "scale",
                    "translation",
                    "corr_noise",
                    "iid_noise",
                    "shear",
                    "length",
                ],
                &[0],
            )?;
            let d = Mnist1dSpec::default();
            SourceSpec::Mnist1d(Mnist1dSpec {
                seed: a.seed(d.seed)?,
                num_samples: a.uint("n", d.num_samples)?,
                train_fraction: a.float("train", d.train_fraction)?,
                padding: (a.uint("pad_min", d.padding.0)?, a.uint("pad_max", d.padding.1)?),
                scale_coeff: a.float("scale", d.scale_coeff)?,
                max_translation: a.uint("translation", d.max_translation)?,
                corr_noise_scale: a.float("corr_noise", d.corr_noise_scale)?,
                iid_noise_scale: a.float("iid_noise", d.iid_noise_scale)?,
                shear_scale: a.float("shear", d.shear_scale)?,
                final_seq_length: a.uint("length", d.final_seq_length)?,
            })
        }
        "mnist1d-frozen" => {
            let a = Args::new(spec, name, raw, &[], &[1])?;
            SourceSpec::Mnist1dFrozen { dir: PathBuf::from(&a.positional[0]) }
        }
        "npy" => {
            let a = Args::new(spec, name, raw, &["classes", "image"], &[2, 4])?;
            SourceSpec::Npy {
                files: a.path_pairs(),
                classes: a.parse("classes", "a non-negative integer")?,
                image: parse_image(&a)?,
            }
        }
        "idx" => {
            let a = Args::new(spec, name, raw, &["classes"], &[2, 4])?;
            SourceSpec::Idx { files: a.path_pairs(), classes: a.uint("classes", 10)? }
        }
        "mnist" => {
            let a = Args::new(spec, name, raw, &[], &[0, 1])?;
            SourceSpec::Mnist { dir: a.positional.first().map(PathBuf::from) }
        }
        "cifar10" => {
            let a = Args::new(spec, name, raw, &["batches"], &[1])?;
            SourceSpec::Cifar10 {
                dir: PathBuf::from(&a.positional[0]),
                batches: a.list("batches")?.unwrap_or_else(|| vec![1, 2, 3, 4, 5]),
            }
        }
        "sines" => {
            let a = Args::new(spec, name, raw, &["n", "freqs", "step", "amplitudes", "input", "seed"], &[0])?;
            let d = SinesSpec::default();
            SourceSpec::Sines(SinesSpec {
                n: a.uint("n", d.n)?,
                num_freqs: a.uint("freqs", d.num_freqs)?,
                freq_step: a.uint("step", d.freq_step)?,
                amplitudes: a.choice(
                    "amplitudes",
                    &[("equal", Amplitudes::Equal), ("increasing", Amplitudes::Increasing)],
                    d.amplitudes,
                )?,
                seed: a.seed(d.seed)?,
                centred: a.choice("input", &[("unit", false), ("centred", true)], d.centred)?,
            })
        }
        "lms" | "ms" => {
            let lms = name == "lms";
            let allowed: &'static [&'static str] = if lms {
                &["k", "d", "complex", "n", "n_test", "margin", "noise", "rotate", "seed"]
            } else {
                &["k", "simple", "d", "complex", "n", "n_test", "margin", "rotate", "seed"]
            };
            let a = Args::new(spec, name, raw, allowed, &[0])?;
            let d = LmsSpec::default();
            let k = a.uint("k", if lms { 5 } else { 7 })?;
            let dim = a.uint("d", d.d)?;
            if dim == 0 {
                return Err(a.err("key `d` must be at least 1"));
            }
            SourceSpec::Lms(LmsSpec {
                simple: if lms { SimpleCoordinate::Linear } else { SimpleCoordinate::Slabs(a.uint("simple", k)?) },
                slabs: k,
                d: dim,
                complex: a.uint("complex", dim - 1)?,
                n_train: a.uint("n", d.n_train)?,
                n_test: a.uint("n_test", d.n_test)?,
                margin: a.float("margin", d.margin)?,
                linear_noise: a.float("noise", 0.0)?,
                rotate: a.boolean("rotate", d.rotate)?,
                seed: a.seed(d.seed)?,
            })
        }
        "gaussian-mixture" => {
            let a = Args::new(spec, name, raw, &["classes", "d", "n", "n_test", "separation", "sd", "seed"], &[0])?;
            let d = GaussianMixtureSpec::default();
            SourceSpec::GaussianMixture(GaussianMixtureSpec {
                classes: a.uint("classes", d.classes)?,
                d: a.uint("d", d.d)?,
                n_train: a.uint("n", d.n_train)?,
                n_test: a.uint("n_test", d.n_test)?,
                separation: a.float("separation", d.separation)?,
                sd: a.float("sd", d.sd)?,
                seed: a.seed(d.seed)?,
            })
        }
        "gaussian-clone" => {
            let a = Args::new(spec, name, raw, &["of", "kind", "ridge", "seed"], &[0])?;
            let d = GaussianCloneSpec::default();
            SourceSpec::GaussianClone {
                spec: GaussianCloneSpec {
                    kind: a.choice("kind", &[("iso", CloneKind::Isotropic), ("full", CloneKind::Full)], d.kind)?,
                    ridge: a.float("ridge", d.ridge)?,
                    seed: a.seed(d.seed)?,
                },
                of: a.nested("of")?,
            }
        }
        "teacher" => {
            let a = Args::new(
                spec,
                name,
                raw,
                &["d", "hidden", "out", "act", "bias_sd", "n", "n_test", "noise", "targets", "seed"],
                &[0],
            )?;
            let d = TeacherSpec::default();
            let hidden = match a.raw("hidden") {
                Some("none") => Vec::new(),
                _ => a.list("hidden")?.unwrap_or(d.hidden),
            };
            SourceSpec::Teacher(TeacherSpec {
                d: a.uint("d", d.d)?,
                hidden,
                outputs: a.uint("out", d.outputs)?,
                activation: a.choice(
                    "act",
                    &[("relu", Activation::Relu), ("tanh", Activation::Tanh), ("linear", Activation::Linear)],
                    d.activation,
                )?,
                bias_sd: a.float("bias_sd", d.bias_sd)?,
                n_train: a.uint("n", d.n_train)?,
                n_test: a.uint("n_test", d.n_test)?,
                noise: a.float("noise", d.noise)?,
                targets: a.choice(
                    "targets",
                    &[("regression", TeacherTargets::Regression), ("classes", TeacherTargets::Classes)],
                    d.targets,
                )?,
                seed: a.seed(d.seed)?,
            })
        }
        "boolean" => {
            let a = Args::new(spec, name, raw, &["d", "target", "degree", "set", "n_train", "seed"], &[0])?;
            let d = BooleanCubeSpec::default();
            if a.raw("degree").is_some() && a.raw("set").is_some() {
                return Err(a.err("give `degree` or `set`, not both"));
            }
            SourceSpec::Boolean(BooleanCubeSpec {
                d: a.uint("d", d.d)?,
                target: a.choice(
                    "target",
                    &[
                        ("parity", BooleanTarget::Parity),
                        ("monomial", BooleanTarget::Monomial),
                        ("and", BooleanTarget::And),
                        ("random", BooleanTarget::Random),
                    ],
                    d.target,
                )?,
                degree: a.parse("degree", "a non-negative integer")?,
                set: a.list("set")?,
                n_train: a.parse("n_train", "a non-negative integer")?,
                seed: a.seed(d.seed)?,
            })
        }
        "matrix-completion" => {
            let a = Args::new(spec, name, raw, &["rows", "cols", "rank", "observed", "layout", "seed"], &[0])?;
            let d = MatrixCompletionSpec::default();
            SourceSpec::MatrixCompletion(MatrixCompletionSpec {
                rows: a.uint("rows", d.rows)?,
                cols: a.uint("cols", d.cols)?,
                rank: a.uint("rank", d.rank)?,
                observed: a.float("observed", d.observed)?,
                seed: a.seed(d.seed)?,
                layout: a.choice(
                    "layout",
                    &[("entries", CompletionLayout::Entries), ("columns", CompletionLayout::Columns)],
                    d.layout,
                )?,
            })
        }
        "dominoes" => {
            let a = Args::new(spec, name, raw, &["of", "top", "bottom", "seed"], &[0])?;
            let d = DominoesSpec::default();
            SourceSpec::Dominoes {
                spec: DominoesSpec {
                    top: a.pair("top", d.top)?,
                    bottom: a.pair("bottom", d.bottom)?,
                    seed: a.seed(d.seed)?,
                },
                of: a.nested("of")?,
            }
        }
        other => {
            let hint = if KNOWN_TRANSFORMS.split(", ").any(|t| t == other) {
                " (it is a transform: put it after `|`)"
            } else {
                ""
            };
            return Err(DataError::spec(spec, format!("unknown dataset `{other}`{hint}; known: {KNOWN_SOURCES}")));
        }
    })
}

fn parse_transform(spec: &str, name: &str, raw: Option<&str>) -> Result<TransformSpec, DataError> {
    Ok(match name {
        "split" => {
            let a = Args::new(spec, name, raw, &["test", "from", "seed"], &[0])?;
            let t = a.required("test", a.raw("test"))?;
            let test = match t.parse::<usize>() {
                Ok(n) => TestSize::Count(n),
                Err(_) => match t.parse::<f64>() {
                    Ok(f) if f > 0.0 && f < 1.0 => TestSize::Fraction(f),
                    _ => return Err(a.err(&format!("key `test`: `{t}` is neither a count nor a fraction in (0, 1)"))),
                },
            };
            TransformSpec::Split { test, from: a.string("from", "all"), seed: a.seed(0)? }
        }
        "subset" => {
            let a = Args::new(spec, name, raw, &["n", "split", "seed"], &[0])?;
            let n = a.parse("n", "a non-negative integer")?;
            TransformSpec::Subset { n: a.required("n", n)?, split: a.string("split", "train"), seed: a.seed(0)? }
        }
        "binarise" => {
            let a = Args::new(spec, name, raw, &["neg", "pos"], &[0, 1])?;
            match (a.positional.first().map(String::as_str), a.list::<u32>("neg")?, a.list::<u32>("pos")?) {
                (Some("even-odd"), None, None) => TransformSpec::Binarise(BinariseSpec::EvenOdd),
                (None, Some(negative), Some(positive)) => {
                    TransformSpec::Binarise(BinariseSpec::Classes { negative, positive })
                }
                _ => {
                    return Err(
                        a.err("write `binarise:even-odd` or `binarise:neg=CLASSES,pos=CLASSES` (e.g. neg=0,pos=1)")
                    );
                }
            }
        }
        "label-noise" | "random-labels" => {
            let a = Args::new(spec, name, raw, &["fraction", "split", "seed"], &[0])?;
            let fraction = if name == "label-noise" {
                let f = a.parse("fraction", "a number")?;
                a.required("fraction", f)?
            } else {
                a.float("fraction", 1.0)?
            };
            if !(0.0..=1.0).contains(&fraction) {
                return Err(a.err(&format!("key `fraction`: {fraction} is not in [0, 1]")));
            }
            let (split, seed) = (a.string("split", "train"), a.seed(0)?);
            if name == "label-noise" {
                TransformSpec::LabelNoise { fraction, split, seed }
            } else {
                TransformSpec::RandomLabels { fraction, split, seed }
            }
        }
        "pool2" => {
            Args::new(spec, name, raw, &[], &[0])?;
            TransformSpec::Pool2
        }
        "standardise" => {
            let a = Args::new(spec, name, raw, &["from", "by"], &[0])?;
            TransformSpec::Standardise {
                from: a.string("from", "train"),
                by: a.choice(
                    "by",
                    &[("feature", StandardiseBy::Feature), ("global", StandardiseBy::Global)],
                    StandardiseBy::Feature,
                )?,
            }
        }
        "unit-norm" => {
            Args::new(spec, name, raw, &[], &[0])?;
            TransformSpec::UnitNorm
        }
        other => {
            let hint = if KNOWN_SOURCES.split(", ").any(|t| t == other) {
                " (it is a dataset: it must come first)"
            } else {
                ""
            };
            return Err(DataError::spec(spec, format!("unknown transform `{other}`{hint}; known: {KNOWN_TRANSFORMS}")));
        }
    })
}

fn name_and_args(segment: &str) -> (&str, Option<&str>) {
    match find_top(segment, ':') {
        Some(i) => (segment[..i].trim(), Some(&segment[i + 1..])),
        None => (segment.trim(), None),
    }
}

impl DatasetSpec {
    /// Parse a spec string (grammar: [`SPEC_GRAMMAR`]).
    pub fn parse(spec: &str) -> Result<DatasetSpec, DataError> {
        let segments = split_top(spec, spec.trim(), '|')?;
        let (name, raw) = name_and_args(&segments[0]);
        if name.is_empty() {
            return Err(DataError::spec(spec, format!("empty dataset name; known: {KNOWN_SOURCES}")));
        }
        let source = parse_source(spec, name, raw)?;
        let transforms = segments[1..]
            .iter()
            .map(|seg| {
                let (name, raw) = name_and_args(seg);
                parse_transform(spec, name, raw)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DatasetSpec { source, transforms })
    }

    /// Load or generate the dataset and apply the transforms; the dataset is named by the
    /// canonical spec (`self.to_string()`).
    pub fn load(&self) -> Result<Dataset, DataError> {
        let mut data = self.load_source()?;
        for t in &self.transforms {
            data = apply(&data, t)?;
        }
        Ok(data.renamed(self.to_string()))
    }

    fn load_source(&self) -> Result<Dataset, DataError> {
        let name = self.to_string();
        match &self.source {
            SourceSpec::Mnist1d(s) => s.generate(),
            SourceSpec::Mnist1dFrozen { dir } => {
                let (train, _) = load_npy_pair("train", dir.join("x_train.npy"), dir.join("y_train.npy"), Some(10))?;
                let (test, _) = load_npy_pair("test", dir.join("x_test.npy"), dir.join("y_test.npy"), Some(10))?;
                Dataset::new(name, None, vec![train, test])
            }
            SourceSpec::Npy { files, classes, image } => {
                let mut splits = Vec::new();
                let mut shape = *image;
                let names: &[&str] = if files.len() == 1 { &["all"] } else { &["train", "test"] };
                // Infer the class count over every file when it is not given.
                let mut loaded = Vec::new();
                for ((x, y), split) in files.iter().zip(names) {
                    loaded.push(load_npy_pair(split, x, y, *classes)?);
                }
                let c = loaded.iter().filter_map(|(s, _)| s.targets().num_classes()).max();
                for (s, img) in loaded {
                    if image.is_none() {
                        if shape.is_some() && img.is_some() && shape != img {
                            return Err(DataError::invalid(&name, "the feature files have different image shapes"));
                        }
                        shape = shape.or(img);
                    }
                    let s = match (s.targets().clone(), c) {
                        (crate::Targets::Classes { labels, .. }, Some(c)) => {
                            let (n, x, _) = s.into_parts();
                            crate::Split::new(n, x, crate::Targets::Classes { labels, num_classes: c })?
                        }
                        _ => s,
                    };
                    splits.push(s);
                }
                Dataset::new(name, shape, splits)
            }
            SourceSpec::Idx { files, classes } => {
                let names: &[&str] = if files.len() == 1 { &["all"] } else { &["train", "test"] };
                let mut splits = Vec::new();
                let mut shape = None;
                for ((x, y), split) in files.iter().zip(names) {
                    let (s, img) = load_idx_pair(split, x, y, *classes)?;
                    if shape.is_some_and(|sh| sh != img) {
                        return Err(DataError::file(
                            x,
                            format!("images are {img}, but the first file's are {}", shape.unwrap_or(img)),
                        ));
                    }
                    shape = Some(img);
                    splits.push(s);
                }
                Dataset::new(name, shape, splits)
            }
            SourceSpec::Mnist { dir } => {
                let dir = match dir {
                    Some(d) => d.clone(),
                    None => mnist_test_dir()?,
                };
                let (x, y) = (dir.join(MNIST_TEST_FILES[0]), dir.join(MNIST_TEST_FILES[1]));
                let (s, img) = load_idx_pair("all", &x, &y, 10)?;
                Dataset::new(name, Some(img), vec![s])
            }
            SourceSpec::Cifar10 { dir, batches } => load_cifar10_dir(&name, dir, batches),
            SourceSpec::Sines(s) => s.generate(),
            SourceSpec::Lms(s) => Ok(s.generate()?.dataset),
            SourceSpec::GaussianMixture(s) => s.generate(),
            SourceSpec::GaussianClone { spec, of } => gaussian_clone(&of.load()?, spec),
            SourceSpec::Teacher(s) => s.generate(),
            SourceSpec::Boolean(s) => s.generate(),
            SourceSpec::MatrixCompletion(s) => s.generate()?.to_dataset_with(s.layout),
            SourceSpec::Dominoes { spec, of } => spec.generate(&of.load()?),
        }
    }
}

fn apply(data: &Dataset, t: &TransformSpec) -> Result<Dataset, DataError> {
    let stream = |seed: u64, name: &str| RngStream::new(seed).child(name);
    match t {
        TransformSpec::Split { test, from, seed } => {
            let n = data.split(from)?.len();
            let k = match *test {
                TestSize::Count(k) => k,
                TestSize::Fraction(f) => (f * n as f64).round() as usize,
            };
            data.split_off_test(from, k, &stream(*seed, "split"))
        }
        TransformSpec::Subset { n, split, seed } => data.balanced_subset(split, *n, &stream(*seed, "subset")),
        TransformSpec::Binarise(BinariseSpec::EvenOdd) => {
            let c =
                data.num_classes().ok_or_else(|| DataError::invalid(data.name(), "binarisation needs class labels"))?
                    as u32;
            let even: Vec<u32> = (0..c).filter(|l| l % 2 == 0).collect();
            let odd: Vec<u32> = (0..c).filter(|l| l % 2 == 1).collect();
            data.binarise(&even, &odd)
        }
        TransformSpec::Binarise(BinariseSpec::Classes { negative, positive }) => data.binarise(negative, positive),
        TransformSpec::LabelNoise { fraction, split, seed } => {
            data.with_label_noise(split, *fraction, &stream(*seed, "label-noise"))
        }
        TransformSpec::RandomLabels { fraction, split, seed } => {
            data.with_random_labels(split, *fraction, &stream(*seed, "random-labels"))
        }
        TransformSpec::Pool2 => data.avg_pool_2x2(),
        TransformSpec::Standardise { from, by } => data.standardise(from, *by),
        TransformSpec::UnitNorm => data.unit_norm(),
    }
}

impl FromStr for DatasetSpec {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetSpec::parse(s)
    }
}

/// Parse and load a spec string in one call.
pub fn load_dataset(spec: &str) -> Result<Dataset, DataError> {
    DatasetSpec::parse(spec)?.load()
}

// ---------------------------------------------------------------------------------------------
// Canonical form: every key written out, so that a record names exactly what was used.

/// The MNIST test set's files, as distributed.
pub const MNIST_TEST_FILES: [&str; 2] = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];

/// Where `mnist` (without a directory) finds the MNIST test set: `$SGDLAB_DATA/mnist`, then
/// `data/mnist` and `../shared/data/mnist` (relative to the working directory), the first holding
/// both [`MNIST_TEST_FILES`]. The error lists the places looked at and how to point at the files.
pub fn mnist_test_dir() -> Result<PathBuf, DataError> {
    let mut candidates = Vec::new();
    if let Some(root) = std::env::var_os("SGDLAB_DATA") {
        candidates.push(PathBuf::from(root).join("mnist"));
    }
    candidates.push(PathBuf::from("data/mnist"));
    candidates.push(PathBuf::from("../shared/data/mnist"));
    if let Some(d) = candidates.iter().find(|d| MNIST_TEST_FILES.iter().all(|f| d.join(f).is_file())) {
        return Ok(d.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    Err(DataError::invalid(
        "mnist",
        format!(
            "the MNIST test set ({}) is not in {}; set SGDLAB_DATA to a directory holding mnist/, or write mnist:DIR",
            MNIST_TEST_FILES.join(", "),
            looked.join(", ")
        ),
    ))
}

fn path_arg(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    if s.contains([',', '|', '=', '(', ')', ':']) { format!("({s})") } else { s }
}

fn join_list<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join("+")
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Mnist1d(s) => write!(
                f,
                "mnist1d:seed={},n={},train={},pad_min={},pad_max={},scale={},translation={},corr_noise={},iid_noise={},shear={},length={}",
                s.seed,
                s.num_samples,
                s.train_fraction,
                s.padding.0,
                s.padding.1,
                s.scale_coeff,
                s.max_translation,
                s.corr_noise_scale,
                s.iid_noise_scale,
                s.shear_scale,
                s.final_seq_length
            ),
            SourceSpec::Mnist1dFrozen { dir } => write!(f, "mnist1d-frozen:{}", path_arg(dir)),
            SourceSpec::Npy { files, classes, image } => {
                let paths: Vec<String> = files.iter().flat_map(|(x, y)| [path_arg(x), path_arg(y)]).collect();
                write!(f, "npy:{}", paths.join(","))?;
                if let Some(c) = classes {
                    write!(f, ",classes={c}")?;
                }
                if let Some(i) = image {
                    write!(f, ",image={i}")?;
                }
                Ok(())
            }
            SourceSpec::Idx { files, classes } => {
                let paths: Vec<String> = files.iter().flat_map(|(x, y)| [path_arg(x), path_arg(y)]).collect();
                write!(f, "idx:{},classes={classes}", paths.join(","))
            }
            SourceSpec::Mnist { dir: None } => write!(f, "mnist"),
            SourceSpec::Mnist { dir: Some(d) } => write!(f, "mnist:{}", path_arg(d)),
            SourceSpec::Cifar10 { dir, batches } => {
                write!(f, "cifar10:{},batches={}", path_arg(dir), join_list(batches))
            }
            SourceSpec::Sines(s) => write!(
                f,
                "sines:n={},freqs={},step={},amplitudes={},{}seed={}",
                s.n,
                s.num_freqs,
                s.freq_step,
                match s.amplitudes {
                    Amplitudes::Equal => "equal",
                    Amplitudes::Increasing => "increasing",
                },
                if s.centred { "input=centred," } else { "" },
                s.seed
            ),
            SourceSpec::Lms(s) => {
                match s.simple {
                    SimpleCoordinate::Linear => write!(f, "lms:k={}", s.slabs)?,
                    SimpleCoordinate::Slabs(k) => write!(f, "ms:k={},simple={k}", s.slabs)?,
                }
                write!(f, ",d={},complex={},n={},n_test={},margin={}", s.d, s.complex, s.n_train, s.n_test, s.margin)?;
                if s.simple == SimpleCoordinate::Linear {
                    write!(f, ",noise={}", s.linear_noise)?;
                }
                write!(f, ",rotate={},seed={}", s.rotate, s.seed)
            }
            SourceSpec::GaussianMixture(s) => write!(
                f,
                "gaussian-mixture:classes={},d={},n={},n_test={},separation={},sd={},seed={}",
                s.classes, s.d, s.n_train, s.n_test, s.separation, s.sd, s.seed
            ),
            SourceSpec::GaussianClone { spec, of } => write!(
                f,
                "gaussian-clone:of=({of}),kind={},ridge={},seed={}",
                match spec.kind {
                    CloneKind::Isotropic => "iso",
                    CloneKind::Full => "full",
                },
                spec.ridge,
                spec.seed
            ),
            SourceSpec::Teacher(s) => write!(
                f,
                "teacher:d={},hidden={},out={},act={},bias_sd={},n={},n_test={},noise={},targets={},seed={}",
                s.d,
                if s.hidden.is_empty() { "none".to_string() } else { join_list(&s.hidden) },
                s.outputs,
                match s.activation {
                    Activation::Relu => "relu",
                    Activation::Tanh => "tanh",
                    Activation::Linear => "linear",
                },
                s.bias_sd,
                s.n_train,
                s.n_test,
                s.noise,
                match s.targets {
                    TeacherTargets::Regression => "regression",
                    TeacherTargets::Classes => "classes",
                },
                s.seed
            ),
            SourceSpec::Boolean(s) => {
                let target = match s.target {
                    BooleanTarget::Parity => "parity",
                    BooleanTarget::Monomial => "monomial",
                    BooleanTarget::And => "and",
                    BooleanTarget::Random => "random",
                };
                write!(f, "boolean:d={},target={target}", s.d)?;
                match (&s.set, s.degree) {
                    (Some(set), _) => write!(f, ",set={}", join_list(set))?,
                    (None, Some(k)) => write!(f, ",degree={k}")?,
                    (None, None) => write!(f, ",degree={}", s.d)?,
                }
                if let Some(k) = s.n_train {
                    write!(f, ",n_train={k}")?;
                }
                write!(f, ",seed={}", s.seed)
            }
            SourceSpec::MatrixCompletion(s) => write!(
                f,
                "matrix-completion:rows={},cols={},rank={},observed={},layout={},seed={}",
                s.rows,
                s.cols,
                s.rank,
                s.observed,
                match s.layout {
                    CompletionLayout::Entries => "entries",
                    CompletionLayout::Columns => "columns",
                },
                s.seed
            ),
            SourceSpec::Dominoes { spec, of } => write!(
                f,
                "dominoes:of=({of}),top={}+{},bottom={}+{},seed={}",
                spec.top.0, spec.top.1, spec.bottom.0, spec.bottom.1, spec.seed
            ),
        }
    }
}

impl fmt::Display for TransformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransformSpec::Split { test, from, seed } => {
                let t = match test {
                    TestSize::Count(k) => k.to_string(),
                    TestSize::Fraction(x) => x.to_string(),
                };
                write!(f, "split:test={t},from={from},seed={seed}")
            }
            TransformSpec::Subset { n, split, seed } => write!(f, "subset:n={n},split={split},seed={seed}"),
            TransformSpec::Binarise(BinariseSpec::EvenOdd) => write!(f, "binarise:even-odd"),
            TransformSpec::Binarise(BinariseSpec::Classes { negative, positive }) => {
                write!(f, "binarise:neg={},pos={}", join_list(negative), join_list(positive))
            }
            TransformSpec::LabelNoise { fraction, split, seed } => {
                write!(f, "label-noise:fraction={fraction},split={split},seed={seed}")
            }
            TransformSpec::RandomLabels { fraction, split, seed } => {
                write!(f, "random-labels:fraction={fraction},split={split},seed={seed}")
            }
            TransformSpec::Pool2 => write!(f, "pool2"),
            TransformSpec::Standardise { from, by } => write!(
                f,
                "standardise:from={from},by={}",
                match by {
                    StandardiseBy::Feature => "feature",
                    StandardiseBy::Global => "global",
                }
            ),
            TransformSpec::UnitNorm => write!(f, "unit-norm"),
        }
    }
}

impl fmt::Display for DatasetSpec {
    /// The canonical spec: every key written out; parsing it gives back an equal spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        for t in &self.transforms {
            write!(f, "|{t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        DatasetSpec::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_keys() {
        let d = DatasetSpec::parse("mnist1d").unwrap();
        assert_eq!(d.source, SourceSpec::Mnist1d(Mnist1dSpec::default()));
        let d = DatasetSpec::parse("mnist1d:seed=7,n=10000").unwrap();
        assert_eq!(
            d.source,
            SourceSpec::Mnist1d(Mnist1dSpec { seed: 7, num_samples: 10000, ..Mnist1dSpec::default() })
        );
        let d = DatasetSpec::parse("lms:k=5,d=50,n=20000").unwrap();
        let SourceSpec::Lms(l) = d.source else { panic!("not lms") };
        assert_eq!((l.slabs, l.d, l.complex, l.n_train, l.simple), (5, 50, 49, 20000, SimpleCoordinate::Linear));
        let d = DatasetSpec::parse("npy:X.npy,Y.npy").unwrap();
        assert_eq!(
            d.source,
            SourceSpec::Npy {
                files: vec![(PathBuf::from("X.npy"), PathBuf::from("Y.npy"))],
                classes: None,
                image: None
            }
        );
        let d = DatasetSpec::parse("idx:a.gz,b.gz|split:test=2000|pool2|standardise").unwrap();
        assert_eq!(d.transforms.len(), 3);
        assert_eq!(d.transforms[0], TransformSpec::Split { test: TestSize::Count(2000), from: "all".into(), seed: 0 });
        let d = DatasetSpec::parse("gaussian-clone:kind=iso,of=(mnist1d:seed=3,n=100|standardise)").unwrap();
        let SourceSpec::GaussianClone { spec, of } = d.source else { panic!("not a clone") };
        assert_eq!(spec.kind, CloneKind::Isotropic);
        assert_eq!(of.transforms.len(), 1);
        let d = DatasetSpec::parse("teacher:hidden=100+50,act=tanh").unwrap();
        let SourceSpec::Teacher(t) = d.source else { panic!("not teacher") };
        assert_eq!(t.hidden, vec![100, 50]);
    }

    #[test]
    fn errors_name_the_problem_and_the_allowed_keys() {
        let e = err("mnist1d:seed=7,foo=3");
        assert!(e.contains("unknown key `foo`") && e.contains("allowed keys: seed, n, train"), "{e}");
        assert!(e.starts_with("dataset spec `mnist1d:seed=7,foo=3`"), "{e}");
        assert!(err("mnist1d:n=abc").contains("`abc` is not a non-negative integer"));
        assert!(err("mnistld").contains("unknown dataset `mnistld`; known: mnist1d"));
        assert!(err("mnist1d|pool3").contains("unknown transform `pool3`"));
        assert!(err("pool2").contains("it is a transform"));
        assert!(err("npy:X.npy").contains("takes 2 or 4 paths"));
        assert!(err("mnist1d:7").contains("takes no paths"));
        assert!(err("mnist1d:seed=1,seed=2").contains("given twice"));
        assert!(err("gaussian-clone:kind=iso").contains("key `of` is required"));
        assert!(err("gaussian-clone:of=(mnist1d:bad=1)").contains("unknown key `bad`"));
        assert!(err("label-noise").contains("it is a transform"));
        assert!(err("mnist1d|label-noise:fraction=2").contains("not in [0, 1]"));
        assert!(err("lms:rotate=yes").contains("not true or false"));
        assert!(err("sines:amplitudes=loud").contains("not one of equal, increasing"));
        assert!(err("mnist1d:seed=(7").contains("unbalanced"));
        assert!(err("ms:noise=0.1").contains("unknown key `noise`"));
    }

    #[test]
    fn canonical_form_round_trips() {
        for s in [
            "mnist1d",
            "mnist1d:seed=7,n=10000",
            "npy:X.npy,Y.npy,classes=10,image=1x8x8",
            "npy:a,b,c,d",
            "idx:(dir,with,commas/a.gz),b.gz|split:test=0.2|pool2|standardise:by=global",
            "cifar10:/data/cifar,batches=1+2",
            "sines:amplitudes=increasing",
            "lms:k=7,noise=0.1,rotate=false",
            "ms:k=7,simple=5",
            "gaussian-mixture",
            "gaussian-clone:of=(idx:a,b|split:test=2000|pool2),kind=full,ridge=0.001",
            "teacher:hidden=none,targets=classes,out=3",
            "boolean:d=5,target=and,set=0+1,n_train=16",
            "boolean:d=10,target=monomial,degree=3",
            "matrix-completion",
            "matrix-completion:layout=columns,rank=2",
            "dominoes:of=(idx:a,b|split:test=2000),top=0+1,bottom=4+9",
            "mnist1d|subset:n=1000|label-noise:fraction=0.25|random-labels|binarise:even-odd|unit-norm",
            "mnist1d|binarise:neg=0+2,pos=1",
        ] {
            let a = DatasetSpec::parse(s).unwrap();
            let canon = a.to_string();
            let b = DatasetSpec::parse(&canon).unwrap_or_else(|e| panic!("{s} -> {canon}: {e}"));
            assert_eq!(a, b, "{s} -> {canon}");
        }
    }
}
