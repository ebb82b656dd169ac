//! Checkpoints as safetensors files with PyTorch names, and atomic, durable file writes.
//!
//! A checkpoint written by sgdlab carries the architecture string in its metadata under
//! [`ARCH_METADATA_KEY`] (`sgdlab.arch`, e.g. `mlp:40-100-100-10:relu`). A file written by PyTorch
//! (`safetensors.torch.save_file(model.state_dict(), path)` for an `nn.Sequential` of `Linear`
//! and activation modules) has no such key: pass the architecture explicitly (an architecture
//! string, or the text of `print(model)` read by [`crate::torch_text`]). Its names (`0.weight`,
//! `0.bias`, `2.weight`, ...) are exactly the layout of [`Model`]; batch-norm buffers
//! (`running_mean`, `running_var`, `num_batches_tracked`) are read into the model and written back.
//!
//! Other metadata keys written by sgdlab:
//! - [`CHECKSUM_METADATA_KEY`] (`sgdlab.checksum`): a CRC-32 of every tensor's name, dtype, shape
//!   and bytes, checked on load when present (a flipped bit is an error, not a silent resume);
//! - [`DATA_METADATA_KEY`], [`SEED_METADATA_KEY`], [`SPLIT_METADATA_KEY`] (`sgdlab.data`,
//!   `sgdlab.seed`, `sgdlab.split`): the canonical dataset spec, the run seed and the split the
//!   parameters were trained on (written by the trainer into every checkpoint).
//!
//! Loading refuses non-finite values (the error names the tensor and the first bad index) unless
//! [`LoadOptions::allow_nonfinite`] is set, for inspecting a diverged run.

use crate::arch::ArchSpec;
use crate::error::NnError;
use crate::model::Model;
use crate::params::Params;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sgdlab_linalg::Scalar;
use sgdlab_linalg::memory::Estimate;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metadata key holding the architecture string.
pub const ARCH_METADATA_KEY: &str = "sgdlab.arch";
/// The metadata key holding the checksum of the tensors (`crc32:xxxxxxxx`).
pub const CHECKSUM_METADATA_KEY: &str = "sgdlab.checksum";
/// The metadata key holding the canonical dataset spec the parameters were trained on.
pub const DATA_METADATA_KEY: &str = "sgdlab.data";
/// The metadata key holding the seed of the run that trained the parameters.
pub const SEED_METADATA_KEY: &str = "sgdlab.seed";
/// The metadata key holding the split of [`DATA_METADATA_KEY`] trained on (`train`, or `all` for a
/// dataset with a single split).
pub const SPLIT_METADATA_KEY: &str = "sgdlab.split";

/// A loaded checkpoint: the model it describes, its parameters, and all string metadata.
#[derive(Debug, Clone)]
pub struct Checkpoint<T> {
    pub model: Model,
    pub params: Params<T>,
    pub metadata: BTreeMap<String, String>,
}

/// How strictly a safetensors file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Accept NaN and infinite values (to inspect a diverged run); refused by default.
    pub allow_nonfinite: bool,
}

fn ck_err(path: &Path, message: impl Into<String>) -> NnError {
    NnError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in the same directory,
/// flushed and synced, renamed over the target, then the directory synced (so the rename itself
/// survives a crash). A crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NnError> {
    let io = |error| NnError::Io { path: path.to_path_buf(), error };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)?;
    sync_dir(dir).map_err(io)
}

/// Syncs a directory, so that the names created or renamed in it are durable. Filesystems that do
/// not support syncing a directory (`EINVAL`) are accepted as they are.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

/// Saves parameters as safetensors (F32 or F64 as `T`), with the architecture string, a
/// checksum and any extra metadata. The model must have been built from an [`ArchSpec`].
pub fn save_checkpoint<T: Scalar>(
    path: &Path,
    model: &Model,
    params: &Params<T>,
    extra: &[(&str, String)],
) -> Result<(), NnError> {
    let arch = model.arch().ok_or_else(|| ck_err(path, "only models built from an architecture spec can be saved"))?;
    if params.len() != model.num_params() {
        return Err(ck_err(path, format!("{} parameters for a model with {}", params.len(), model.num_params())));
    }
    let tensors: Vec<NamedTensor<'_, T>> = model
        .layout()
        .entries()
        .iter()
        .map(|e| (e.name.as_str(), e.shape.as_slice(), &params.as_slice()[e.offset..e.offset + e.len]))
        .collect();
    let mut meta: Vec<(&str, String)> = vec![(ARCH_METADATA_KEY, arch.to_string()), ("format", "pt".to_string())];
    meta.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    let buffers = model.buffers();
    // Batch-norm buffers as PyTorch stores them: statistics in the parameters' dtype, the batch
    // count as int64.
    let mut named: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, shape, v)| (n.to_string(), float_dtype::<T>(), shape.to_vec(), float_bytes(v)))
        .collect();
    for b in buffers {
        let (dtype, bytes) = if b.name.ends_with(".num_batches_tracked") {
            (Dtype::I64, b.values.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect())
        } else {
            let v: Vec<T> = b.values.iter().map(|&v| T::from_f64(v)).collect();
            (float_dtype::<T>(), float_bytes(&v))
        };
        named.push((b.name, dtype, b.shape, bytes));
    }
    serialize_atomic(path, &named, &meta)
}

fn float_dtype<T: Scalar>() -> Dtype {
    if T::NAME == "f32" { Dtype::F32 } else { Dtype::F64 }
}

fn float_bytes<T: Scalar>(values: &[T]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| {
            if T::NAME == "f32" {
                (v.to_f64() as f32).to_le_bytes().to_vec()
            } else {
                v.to_f64().to_le_bytes().to_vec()
            }
        })
        .collect()
}

/// Serialises `(name, dtype, shape, bytes)` tensors with metadata and writes them atomically.
fn serialize_atomic(
    path: &Path,
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    meta: &[(&str, String)],
) -> Result<(), NnError> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, b)| {
            Ok((name.clone(), TensorView::new(*dtype, shape.clone(), b).map_err(|err| ck_err(path, err.to_string()))?))
        })
        .collect::<Result<_, NnError>>()?;
    let mut meta: HashMap<String, String> = meta.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
    let sum = checksum(tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())));
    meta.insert(CHECKSUM_METADATA_KEY.to_string(), sum);
    let data = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| ck_err(path, e.to_string()))?;
    write_atomic(path, &data)
}

/// A named tensor to save: name, shape, row-major values.
pub type NamedTensor<'a, T> = (&'a str, &'a [usize], &'a [T]);

/// The checksum of a set of tensors: CRC-32 over each tensor, in name order, of its name, a zero
/// byte, its dtype name, its shape (u64 little-endian per dimension) and its data bytes.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crc32fast::Hasher::new();
    for (name, dtype, shape, data) in sorted {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(format!("{dtype:?}").as_bytes());
        for &d in shape {
            h.update(&(d as u64).to_le_bytes());
        }
        h.update(data);
    }
    format!("crc32:{:08x}", h.finalize())
}

/// Saves named tensors (F32 or F64 as `T`) with string metadata and a checksum
/// ([`CHECKSUM_METADATA_KEY`]) as a safetensors file, atomically.
pub fn save_tensors<T: Scalar>(
    path: &Path,
    tensors: &[NamedTensor<'_, T>],
    meta: &[(&str, String)],
) -> Result<(), NnError> {
    let named: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, shape, v)| (n.to_string(), float_dtype::<T>(), shape.to_vec(), float_bytes(v)))
        .collect();
    serialize_atomic(path, &named, meta)
}

/// Tensors read from a file: (name, shape, values), sorted by name, and the string metadata.
pub type LoadedTensors<T> = (Vec<(String, Vec<usize>, Vec<T>)>, BTreeMap<String, String>);

/// A safetensors file read and checked: its bytes and metadata, its checksum verified when it
/// has one.
struct RawFile {
    bytes: Vec<u8>,
    metadata: BTreeMap<String, String>,
}

impl RawFile {
    fn read(path: &Path) -> Result<Self, NnError> {
        let bytes = std::fs::read(path).map_err(|error| NnError::Io { path: path.to_path_buf(), error })?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| ck_err(path, format!("not a valid safetensors file: {e}")))?;
        let metadata: BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
        let raw = RawFile { bytes, metadata };
        raw.verify(path)?;
        Ok(raw)
    }

    fn tensors(&self, path: &Path) -> Result<SafeTensors<'_>, NnError> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| ck_err(path, format!("not a valid safetensors file: {e}")))
    }

    fn verify(&self, path: &Path) -> Result<(), NnError> {
        let st = self.tensors(path)?;
        let Some(want) = self.metadata.get(CHECKSUM_METADATA_KEY) else { return Ok(()) };
        let views = st.tensors();
        let got = checksum(views.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())));
        if &got != want {
            return Err(ck_err(
                path,
                format!("checksum mismatch: the tensors hash to {got}, the metadata says {want} (the file is corrupt)"),
            ));
        }
        Ok(())
    }
}

/// Loads every tensor of a safetensors file (F32 or F64, converted to `T`) with its metadata;
/// non-finite values are refused (see [`load_tensors_with`]).
pub fn load_tensors<T: Scalar>(path: &Path) -> Result<LoadedTensors<T>, NnError> {
    load_tensors_with(path, LoadOptions::default())
}

/// [`load_tensors`] with explicit [`LoadOptions`].
pub fn load_tensors_with<T: Scalar>(path: &Path, opts: LoadOptions) -> Result<LoadedTensors<T>, NnError> {
    let raw = RawFile::read(path)?;
    let st = raw.tensors(path)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let vals = decode::<T>(&view, &name, path, opts)?;
        out.push((name, view.shape().to_vec(), vals));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, raw.metadata))
}

/// `flat` as a row-major multi-index of `shape`, e.g. `[3, 7]`.
fn multi_index(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

fn decode<T: Scalar>(view: &TensorView<'_>, name: &str, path: &Path, opts: LoadOptions) -> Result<Vec<T>, NnError> {
    let d = view.data();
    let vals: Vec<f64> = match view.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        Dtype::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        other => return Err(ck_err(path, format!("tensor '{name}' has dtype {other:?}; supported: F32, F64"))),
    };
    if !opts.allow_nonfinite
        && let Some((i, v)) = vals.iter().enumerate().find(|(_, v)| !v.is_finite())
    {
        return Err(ck_err(
            path,
            format!(
                "tensor '{name}' holds a non-finite value ({v}) at index {:?}; pass --allow-nonfinite to inspect a diverged run",
                multi_index(i, view.shape())
            ),
        ));
    }
    Ok(vals.into_iter().map(T::from_f64).collect())
}

/// Loads a checkpoint. With `arch`, that architecture is used (a file whose own `sgdlab.arch`
/// names another architecture is an error); without it the file must carry `sgdlab.arch`.
/// Every tensor of the model (parameters, and the batch-norm buffers `running_mean`,
/// `running_var`, `num_batches_tracked`) must be present with its exact shape, and no other
/// tensor may be: each violation is an error naming the tensor. Non-finite values are refused
/// (see [`load_checkpoint_with`]).
pub fn load_checkpoint<T: Scalar>(path: &Path, arch: Option<&ArchSpec>) -> Result<Checkpoint<T>, NnError> {
    load_checkpoint_with(path, arch, LoadOptions::default())
}

/// [`load_checkpoint`] with explicit [`LoadOptions`].
pub fn load_checkpoint_with<T: Scalar>(
    path: &Path,
    arch: Option<&ArchSpec>,
    opts: LoadOptions,
) -> Result<Checkpoint<T>, NnError> {
    let raw = RawFile::read(path)?;
    let st = raw.tensors(path)?;
    let metadata = raw.metadata.clone();
    let arch: ArchSpec = match (arch, metadata.get(ARCH_METADATA_KEY)) {
        (Some(a), Some(s)) => {
            if s.parse::<ArchSpec>().ok().as_ref() != Some(a) {
                return Err(ck_err(
                    path,
                    format!(
                        "written for architecture '{s}', but architecture '{a}' was given (drop --arch, or give the right one)"
                    ),
                ));
            }
            a.clone()
        }
        (Some(a), None) => a.clone(),
        (None, Some(s)) => {
            s.parse().map_err(|e: NnError| ck_err(path, format!("metadata {ARCH_METADATA_KEY}: {e}")))?
        }
        (None, None) => {
            return Err(ck_err(
                path,
                format!(
                    "no '{ARCH_METADATA_KEY}' metadata (not written by sgdlab?): give the architecture, e.g. --arch mlp:784-100-10:relu"
                ),
            ));
        }
    };
    let p = arch.checked_num_params().unwrap_or(usize::MAX);
    Estimate::new(format!("loading {} ({arch}, {p} parameters)", path.display()))
        .array(&[p], 2 * std::mem::size_of::<T>())
        .check()?;
    let mut model = Model::new(&arch);
    let mut data = vec![T::zero(); model.num_params()];
    for e in model.layout().entries() {
        let view = st.tensor(&e.name).map_err(|_| {
            ck_err(path, format!("missing tensor '{}' (architecture {arch} needs shape {:?})", e.name, e.shape))
        })?;
        if view.shape() != e.shape.as_slice() {
            return Err(ck_err(
                path,
                format!("tensor '{}' has shape {:?}, architecture {arch} needs {:?}", e.name, view.shape(), e.shape),
            ));
        }
        let vals = decode::<T>(&view, &e.name, path, opts)?;
        data[e.offset..e.offset + e.len].copy_from_slice(&vals);
    }
    let buffers = model.buffers();
    for b in &buffers {
        let view = st.tensor(&b.name).map_err(|_| {
            ck_err(
                path,
                format!(
                    "missing tensor '{}' (a batch-norm buffer of architecture {arch}, shape {:?})",
                    b.name, b.shape
                ),
            )
        })?;
        if view.shape() != b.shape.as_slice() {
            return Err(ck_err(
                path,
                format!("tensor '{}' has shape {:?}, architecture {arch} needs {:?}", b.name, view.shape(), b.shape),
            ));
        }
        let vals: Vec<f64> = match view.dtype() {
            Dtype::I64 => {
                view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect()
            }
            _ => decode::<f64>(&view, &b.name, path, opts)?,
        };
        model.set_buffer(&b.name, &vals).map_err(|e| ck_err(path, e.to_string()))?;
    }
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    if let Some(extra) =
        names.iter().find(|n| model.layout().get(n).is_none() && !buffers.iter().any(|b| &b.name == *n))
    {
        return Err(ck_err(path, format!("unexpected tensor '{extra}': architecture {arch} has no such parameter")));
    }
    let params = Params::from_vec(model.layout().clone(), data)?;
    Ok(Checkpoint { model, params, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::InitSpec;
    use sgdlab_linalg::RngStream;

    #[test]
    fn round_trip_f32_and_f64() {
        let dir = tempfile::tempdir().unwrap();
        let arch: ArchSpec = "mlp:4-6-3:gelu:layernorm".parse().unwrap();
        let model = Model::new(&arch);
        let p64: Params<f64> = InitSpec::default().init(&model, &RngStream::new(9));
        let path = dir.path().join("a.safetensors");
        save_checkpoint(&path, &model, &p64, &[("step", "17".into())]).unwrap();
        let back: Checkpoint<f64> = load_checkpoint(&path, None).unwrap();
        assert_eq!(back.params, p64);
        assert_eq!(back.model, model);
        assert_eq!(back.metadata.get("step").map(String::as_str), Some("17"));
        assert_eq!(back.metadata.get(ARCH_METADATA_KEY).map(String::as_str), Some("mlp:4-6-3:gelu:layernorm"));
        let p32: Params<f32> = p64.cast();
        save_checkpoint(&path, &model, &p32, &[]).unwrap();
        let back: Checkpoint<f32> = load_checkpoint(&path, None).unwrap();
        assert_eq!(back.params, p32);
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn batch_norm_buffers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let arch: ArchSpec = "seq:2x4x4:conv2d(3,3)-batchnorm2d-relu-flatten-linear(2)".parse().unwrap();
        let mut model = Model::new(&arch);
        model.set_buffer("1.running_mean", &[0.5, -0.25, 1.0]).unwrap();
        model.set_buffer("1.running_var", &[2.0, 0.5, 1.5]).unwrap();
        model.set_buffer("1.num_batches_tracked", &[12.0]).unwrap();
        let p: Params<f32> = InitSpec::default().init(&model, &RngStream::new(2));
        let path = dir.path().join("bn.safetensors");
        save_checkpoint(&path, &model, &p, &[]).unwrap();
        let back: Checkpoint<f32> = load_checkpoint(&path, None).unwrap();
        assert_eq!(back.model.buffers(), model.buffers());
        assert_eq!(back.params, p);
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("1.num_batches_tracked").unwrap().dtype(), Dtype::I64);
        assert_eq!(st.tensor("1.running_var").unwrap().dtype(), Dtype::F32);
    }

    #[test]
    fn mismatches_are_errors_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let model = Model::new(&"mlp:4-6-3:relu".parse().unwrap());
        let p: Params<f32> = InitSpec::default().init(&model, &RngStream::new(1));
        let path = dir.path().join("m.safetensors");
        save_checkpoint(&path, &model, &p, &[]).unwrap();
        // A checkpoint that names its own architecture refuses another one.
        let tanh: ArchSpec = "mlp:4-6-3:tanh".parse().unwrap();
        let e = load_checkpoint::<f32>(&path, Some(&tanh)).unwrap_err().to_string();
        assert!(
            e.contains("written for architecture 'mlp:4-6-3:relu'") && e.contains("'mlp:4-6-3:tanh' was given"),
            "{e}"
        );
        assert!(load_checkpoint::<f32>(&path, Some(&model.arch().unwrap().clone())).is_ok());
        // Without metadata (as PyTorch writes them), the tensors are checked against the given one.
        let tensors: Vec<NamedTensor<'_, f32>> = model
            .layout()
            .entries()
            .iter()
            .map(|e| (e.name.as_str(), e.shape.as_slice(), &p.as_slice()[e.offset..e.offset + e.len]))
            .collect();
        save_tensors(&path, &tensors, &[]).unwrap();
        let wider: ArchSpec = "mlp:4-7-3:relu".parse().unwrap();
        let e = load_checkpoint::<f32>(&path, Some(&wider)).unwrap_err().to_string();
        assert!(e.contains("tensor '0.weight' has shape [6, 4]") && e.contains("needs [7, 4]"), "{e}");
        let nobias: ArchSpec = "mlp:4-6-3:relu:nobias".parse().unwrap();
        let e = load_checkpoint::<f32>(&path, Some(&nobias)).unwrap_err().to_string();
        assert!(e.contains("unexpected tensor '0.bias'"), "{e}");
        let deeper: ArchSpec = "mlp:4-6-3-3:relu".parse().unwrap();
        let e = load_checkpoint::<f32>(&path, Some(&deeper)).unwrap_err().to_string();
        assert!(e.contains("tensor '2.weight' has shape [3, 6]") || e.contains("missing tensor"), "{e}");
        std::fs::write(&path, b"garbage").unwrap();
        let e = load_checkpoint::<f32>(&path, None).unwrap_err().to_string();
        assert!(e.contains("m.safetensors") && e.contains("not a valid safetensors file"), "{e}");
        let e = load_checkpoint::<f32>(&dir.path().join("none.safetensors"), None).unwrap_err().to_string();
        assert!(e.contains("none.safetensors"), "{e}");
    }

    #[test]
    fn non_finite_values_are_refused_naming_tensor_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let model = Model::new(&"mlp:4-6-3:relu".parse().unwrap());
        let mut p: Params<f32> = InitSpec::default().init(&model, &RngStream::new(1));
        let off = model.layout().get("2.weight").unwrap().offset;
        p.as_mut_slice()[off + 6 + 4] = f32::NAN; // row 1, column 4 of the [3, 6] weight
        let path = dir.path().join("nan.safetensors");
        save_checkpoint(&path, &model, &p, &[]).unwrap();
        let e = load_checkpoint::<f32>(&path, None).unwrap_err().to_string();
        assert!(
            e.contains("nan.safetensors") && e.contains("tensor '2.weight'") && e.contains("at index [1, 4]"),
            "{e}"
        );
        assert!(e.contains("--allow-nonfinite") && !e.contains('\n'), "{e}");
        let opts = LoadOptions { allow_nonfinite: true };
        let ck = load_checkpoint_with::<f32>(&path, None, opts).unwrap();
        assert!(ck.params.as_slice()[off + 10].is_nan());
        assert!(load_tensors::<f64>(&path).unwrap_err().to_string().contains("tensor '2.weight'"));
        assert!(load_tensors_with::<f64>(&path, opts).is_ok());
        p.as_mut_slice()[off + 10] = f32::INFINITY;
        save_checkpoint(&path, &model, &p, &[]).unwrap();
        let e = load_checkpoint::<f64>(&path, None).unwrap_err().to_string();
        assert!(e.contains("non-finite value (inf)"), "{e}");
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let model = Model::new(&"mlp:4-6-3:relu".parse().unwrap());
        let p: Params<f32> = InitSpec::default().init(&model, &RngStream::new(2));
        let path = dir.path().join("c.safetensors");
        save_checkpoint(&path, &model, &p, &[]).unwrap();
        let ck = load_checkpoint::<f32>(&path, None).unwrap();
        assert!(ck.metadata[CHECKSUM_METADATA_KEY].starts_with("crc32:"));
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x01; // a low mantissa bit of the last value: still a finite float
        std::fs::write(&path, &bytes).unwrap();
        let e = load_checkpoint::<f32>(&path, None).unwrap_err().to_string();
        assert!(e.contains("c.safetensors") && e.contains("checksum mismatch"), "{e}");
        assert!(load_tensors::<f32>(&path).unwrap_err().to_string().contains("checksum mismatch"));
    }

    #[test]
    fn io_errors_say_the_reason_once() {
        let e = load_checkpoint::<f32>(Path::new("/nonexistent/x.safetensors"), None).unwrap_err();
        let chained = format!("{:#}", anyhow_like(&e));
        assert_eq!(chained.matches("No such file or directory").count(), 1, "{chained}");
    }

    /// The message and its `source()` chain joined by ": ", as anyhow's `{:#}` prints it.
    fn anyhow_like(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cur = c.source();
        }
        s
    }
}
