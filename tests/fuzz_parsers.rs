//! Fuzzed parsers: every parser of user input fed random and mutated inputs must return (never
//! panic, never abort in the allocator) and, when it refuses, say why in one line.
//!
//! Inputs are valid examples mutated by random edits (insert, delete, replace a character or
//! byte; splice in a hostile token such as a 20-digit number, `nan` or a separator), plus purely
//! random ones. Parsers covered: architecture strings, dataset specs, run-spec TOML, `--set`
//! overrides, safetensors checkpoints, `.npy`, IDX (plain and gzipped) and CIFAR-10 batches. A
//! failing case is kept by proptest in `tests/fuzz_parsers.proptest-regressions` (committed) and
//! replayed first on every run.

use proptest::prelude::*;
use proptest::test_runner::Config;
use sgdlab_data::DatasetSpec;
use sgdlab_data::loaders::{read_cifar10_batch, read_idx_images, read_idx_labels, read_npy_features, read_npy_targets};
use sgdlab_nn::{ArchSpec, InitSpec, Model, load_checkpoint, load_tensors};
use sgdlab_train::RunSpec;
use std::io::Write;

/// Tokens spliced into text inputs: separators of every grammar, huge and odd numbers, words.
const TOKENS: &[&str] = &[
    ":",
    "-",
    "x",
    ",",
    "|",
    "=",
    "(",
    ")",
    "+",
    ".",
    " ",
    "0",
    "1",
    "99999999999999999999",
    "18446744073709551615",
    "9223372036854775808",
    "1e308",
    "-1",
    "nan",
    "inf",
    "-inf",
    "relu",
    "nobias",
    "layernorm",
    "mlp",
    "resmlp",
    "mnist1d",
    "n=",
    "seed=",
    "[",
    "]",
    "\"",
    "'",
    "\n",
    "#",
    "é",
    "\u{0}",
    "lr",
    "{",
    "}",
];

/// One edit of a text: (kind, position, token index).
fn text_edits() -> impl Strategy<Value = Vec<(u8, usize, usize)>> {
    prop::collection::vec((0u8..3, any::<usize>(), 0..TOKENS.len()), 0..6)
}

fn mutate_text(base: &str, edits: &[(u8, usize, usize)]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for &(kind, pos, tok) in edits {
        let at = if chars.is_empty() { 0 } else { pos % (chars.len() + 1) };
        match kind {
            0 => {
                let t: Vec<char> = TOKENS[tok].chars().collect();
                chars.splice(at..at, t);
            }
            1 => {
                if at < chars.len() {
                    chars.remove(at);
                }
            }
            _ => {
                if at < chars.len() {
                    chars.splice(at..=at, TOKENS[tok].chars());
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// One edit of a byte string: (kind, position, byte).
fn byte_edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((0u8..4, any::<usize>(), any::<u8>()), 0..8)
}

fn mutate_bytes(base: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(kind, pos, byte) in edits {
        let at = if b.is_empty() { 0 } else { pos % (b.len() + 1) };
        match kind {
            0 => b.insert(at, byte),
            1 if at < b.len() => {
                b.remove(at);
            }
            2 if at < b.len() => b[at] = byte,
            // Truncate: the commonest real corruption.
            3 => b.truncate(at),
            _ => {}
        }
    }
    b
}

fn one_line(e: &impl std::fmt::Display) -> Result<(), TestCaseError> {
    let s = e.to_string();
    prop_assert!(!s.is_empty() && !s.contains('\n'), "error is not one line: {s:?}");
    Ok(())
}

fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

const ARCHS: &[&str] = &[
    "mlp:40-100-100-10:relu",
    "mlp:40-100x3-10:gelu:nobias,layernorm",
    "mlp:40-100-10:leaky_relu(0.2):nobias:layernorm",
    "resmlp:196-64x12-10:relu:layernorm",
    "mlp:1-1024-1:hat",
];

const SPECS: &[&str] = &[
    "mnist1d:seed=7,n=10000",
    "idx:(dir,with,commas/a.gz),b.gz|split:test=0.2|pool2|standardise:by=global",
    "gaussian-clone:of=(idx:a,b|split:test=2000|pool2),kind=full,ridge=0.001",
    "teacher:hidden=100+50,act=tanh,targets=classes,out=3",
    "boolean:d=5,target=and,set=0+1,n_train=16",
    "mnist1d|subset:n=1000|label-noise:fraction=0.25|random-labels|binarise:even-odd|unit-norm",
    "lms:k=7,noise=0.1,rotate=false",
    "npy:X.npy,Y.npy,classes=10,image=1x8x8",
];

const RUN_TOML: &str = r#"seed = 3
model = "mlp:40-100-10:relu"
data = "mnist1d:n=500"
[init]
scale = 1.0
[optimizer]
name = "sgd"
lr = 0.1
batch_size = 32
momentum = 0.9
[schedule]
kind = "step"
step_size = 10
gamma = 0.5
[budget]
epochs = 2
[eval]
every = 10
at = [1, 5]
[checkpoint]
every = 5
"#;

const SET_KEYS: &[&str] = &[
    "optimizer.lr",
    "optimizer.momentum",
    "optimizer.batch_size",
    "seed",
    "data",
    "model",
    "init.scale",
    "eval.at",
    "budget.steps",
    "optimizer.name",
    "schedule.gamma",
    "checkpoint.every_seconds",
    "optimizer",
    "a.b.c",
    "optimizer.lr.x",
];

/// `n` cases, or `PROPTEST_CASES` when set (for a longer hunt).
fn cases(n: u32) -> Config {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(n);
    Config { cases: n, ..Config::default() }
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn architecture_strings(base in 0..ARCHS.len(), edits in text_edits()) {
        let s = mutate_text(ARCHS[base], &edits);
        match s.parse::<ArchSpec>() {
            Ok(a) => {
                // Whatever parses has a countable size and round-trips.
                prop_assert!(a.checked_num_params().is_some());
                prop_assert_eq!(a.to_string().parse::<ArchSpec>().unwrap(), a);
            }
            Err(e) => one_line(&e)?,
        }
    }

    #[test]
    fn dataset_specs(base in 0..SPECS.len(), edits in text_edits()) {
        let s = mutate_text(SPECS[base], &edits);
        match DatasetSpec::parse(&s) {
            Ok(d) => {
                let canon = d.to_string();
                let back = DatasetSpec::parse(&canon);
                prop_assert!(back.is_ok(), "{s} -> {canon}: {:?}", back.err());
                prop_assert_eq!(back.unwrap(), d);
            }
            Err(e) => one_line(&e)?,
        }
    }

    #[test]
    fn run_spec_toml(edits in text_edits()) {
        let s = mutate_text(RUN_TOML, &edits);
        if let Err(e) = RunSpec::from_toml(&s, "fuzz.toml") {
            one_line(&e)?;
        }
    }

    #[test]
    fn set_overrides(key in 0..SET_KEYS.len(), value in 0..TOKENS.len(), edits in text_edits()) {
        let spec = RunSpec::from_toml(RUN_TOML, "base.toml").unwrap();
        let raw = mutate_text(TOKENS[value], &edits);
        let ov = format!("{}={raw}", SET_KEYS[key]);
        match spec.with_overrides(std::slice::from_ref(&ov), "base.toml") {
            // An accepted override gives a spec that is valid again after a round trip.
            Ok(s) => prop_assert!(RunSpec::from_toml(&s.to_toml(), "resolved.toml").is_ok(), "{ov}"),
            Err(e) => one_line(&e)?,
        }
    }
}

fn valid_checkpoint() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let model = Model::new(&"mlp:3-4-2:tanh".parse().unwrap());
    let p = InitSpec::default().init::<f32>(&model, &sgdlab_linalg::RngStream::new(5));
    sgdlab_nn::save_checkpoint(&path, &model, &p, &[("step", "7".into())]).unwrap();
    std::fs::read(&path).unwrap()
}

/// A `.npy` file (format 1.0) of little-endian f32 values.
fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        out.extend(d.to_be_bytes());
    }
    out.extend((0..n * rows * cols).map(|i| (i % 251) as u8));
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn safetensors_checkpoints(edits in byte_edits(), random in prop::collection::vec(any::<u8>(), 0..64), pick_random in any::<bool>()) {
        let bytes = if pick_random { random } else { mutate_bytes(&valid_checkpoint(), &edits) };
        let (_d, path) = write_temp(&bytes, "c.safetensors");
        if let Err(e) = load_checkpoint::<f64>(&path, None) {
            one_line(&e)?;
        }
        let arch: ArchSpec = "mlp:3-4-2:tanh".parse().unwrap();
        if let Err(e) = load_checkpoint::<f32>(&path, Some(&arch)) {
            one_line(&e)?;
        }
        if let Err(e) = load_tensors::<f32>(&path) {
            one_line(&e)?;
        }
    }

    #[test]
    fn npy_files(edits in byte_edits(), targets in any::<bool>()) {
        let base = if targets { npy_f32(&[4], &[0.0, 1.0, 2.0, 1.0]) } else { npy_f32(&[2, 3], &[0.5; 6]) };
        let (_d, path) = write_temp(&mutate_bytes(&base, &edits), "a.npy");
        if let Err(e) = read_npy_features(&path) {
            one_line(&e)?;
        }
        if let Err(e) = read_npy_targets(&path, None) {
            one_line(&e)?;
        }
    }

    #[test]
    fn idx_files(edits in byte_edits(), gz in any::<bool>(), labels in any::<bool>()) {
        let base = if labels {
            let mut b = vec![0, 0, 8, 1];
            b.extend(5u32.to_be_bytes());
            b.extend([0, 1, 2, 3, 4]);
            b
        } else {
            idx_images(3, 4, 5)
        };
        let base = if gz { gzip(&base) } else { base };
        let (_d, path) = write_temp(&mutate_bytes(&base, &edits), "a.idx");
        if let Err(e) = read_idx_images(&path) {
            one_line(&e)?;
        }
        if let Err(e) = read_idx_labels(&path, 10) {
            one_line(&e)?;
        }
    }

    #[test]
    fn cifar_batches(edits in byte_edits(), gz in any::<bool>()) {
        let mut base = Vec::new();
        for r in 0..2u8 {
            base.push(r);
            base.extend(std::iter::repeat_n(r.wrapping_mul(37), 3072));
        }
        let base = if gz { gzip(&base) } else { base };
        let (_d, path) = write_temp(&mutate_bytes(&base, &edits), "data_batch_1.bin");
        if let Err(e) = read_cifar10_batch(&path) {
            one_line(&e)?;
        }
    }
}

/// Hostile headers that declare enormous sizes: an error before any allocation, never an abort.
#[test]
fn headers_declaring_huge_sizes_are_errors() {
    let mut huge_npy = npy_f32(&[1_000_000_000_000, 40], &[]);
    huge_npy.extend([0u8; 16]);
    let (_d, p) = write_temp(&huge_npy, "huge.npy");
    let e = read_npy_features(&p).unwrap_err().to_string();
    assert!(e.contains("truncated") || e.contains("needs about"), "{e}");
    let (_d, p) = write_temp(&idx_images(u32::MAX, u32::MAX, u32::MAX)[..16], "huge.idx");
    let e = read_idx_images(&p).unwrap_err().to_string();
    assert!(e.contains("huge.idx") && !e.contains('\n'), "{e}");
    // A gzip bomb: 1 GiB of zeros in a ~1 MB file, read under a 64 MiB limit.
    let zeros = vec![0u8; 1 << 20];
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    let (_d, p) = write_temp(&enc.finish().unwrap(), "bomb.gz");
    sgdlab_linalg::memory::set_max_memory(Some(64 << 20));
    let e = read_idx_images(&p).unwrap_err().to_string();
    sgdlab_linalg::memory::set_max_memory(None);
    assert!(e.contains("bomb.gz") && e.contains("decompresses to more than 67.1 MB"), "{e}");
}
