//! Checkpoints as safetensors files with PyTorch names, and atomic file writes.
//!
//! A checkpoint written by sgdlab carries the architecture string in its metadata under
//! [`ARCH_METADATA_KEY`] (`sgdlab.arch`, e.g. `mlp:40-100-100-10:relu`). A file written by PyTorch
//! (`safetensors.torch.save_file(model.state_dict(), path)` for an `nn.Sequential` of `Linear`
//! and activation modules) has no such key: pass the architecture explicitly. Its names
//! (`0.weight`, `0.bias`, `2.weight`, ...) are exactly the layout of [`Model`].

use crate::arch::ArchSpec;
use crate::error::NnError;
use crate::model::Model;
use crate::params::Params;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sgdlab_linalg::Scalar;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metadata key holding the architecture string.
pub const ARCH_METADATA_KEY: &str = "sgdlab.arch";
/// The metadata key holding the resolved data spec the parameters were trained on (e.g.
/// `mnist1d:n=1000`); probes use it when no data is given.
pub const DATA_METADATA_KEY: &str = "sgdlab.data";
/// The metadata key holding the split the parameters were trained on (e.g. `train`).
pub const SPLIT_METADATA_KEY: &str = "sgdlab.split";
/// The metadata key holding the seed of the training run.
pub const SEED_METADATA_KEY: &str = "sgdlab.seed";

/// A loaded checkpoint: the model it describes, its parameters, and all string metadata.
#[derive(Debug, Clone)]
pub struct Checkpoint<T> {
    pub model: Model,
    pub params: Params<T>,
    pub metadata: BTreeMap<String, String>,
}

fn ck_err(path: &Path, message: impl Into<String>) -> NnError {
    NnError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed and
/// synced, then renamed over the target. A crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NnError> {
    let io = |source| NnError::Io { path: path.to_path_buf(), source };
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
    result.map_err(io)
}

/// Saves parameters as safetensors (F32 or F64 as `T`), with the architecture string and any
/// extra metadata. The model must have been built from an [`ArchSpec`].
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
    save_tensors(path, &tensors, &meta)
}

/// A named tensor to save: name, shape, row-major values.
pub type NamedTensor<'a, T> = (&'a str, &'a [usize], &'a [T]);

/// Saves named tensors (F32 or F64 as `T`) with string metadata as a safetensors file, atomically.
pub fn save_tensors<T: Scalar>(
    path: &Path,
    tensors: &[NamedTensor<'_, T>],
    meta: &[(&str, String)],
) -> Result<(), NnError> {
    let dtype = if T::NAME == "f32" { Dtype::F32 } else { Dtype::F64 };
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| {
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
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            Ok((
                name.to_string(),
                TensorView::new(dtype, shape.to_vec(), b).map_err(|err| ck_err(path, err.to_string()))?,
            ))
        })
        .collect::<Result<_, NnError>>()?;
    let meta: HashMap<String, String> = meta.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
    let data = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| ck_err(path, e.to_string()))?;
    write_atomic(path, &data)
}

/// Tensors read from a file: (name, shape, values), sorted by name, and the string metadata.
pub type LoadedTensors<T> = (Vec<(String, Vec<usize>, Vec<T>)>, BTreeMap<String, String>);

/// Loads every tensor of a safetensors file (F32 or F64, converted to `T`) with its metadata.
pub fn load_tensors<T: Scalar>(path: &Path) -> Result<LoadedTensors<T>, NnError> {
    let bytes = std::fs::read(path).map_err(|source| NnError::Io { path: path.to_path_buf(), source })?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| ck_err(path, format!("not a valid safetensors file: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| ck_err(path, format!("not a valid safetensors file: {e}")))?;
    let meta: BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let vals = decode::<T>(&view, &name, path)?;
        out.push((name, view.shape().to_vec(), vals));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, meta))
}

fn decode<T: Scalar>(view: &TensorView<'_>, name: &str, path: &Path) -> Result<Vec<T>, NnError> {
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => {
            d.chunks_exact(4).map(|c| T::from_f64(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)).collect()
        }
        Dtype::F64 => {
            d.chunks_exact(8).map(|c| T::from_f64(f64::from_le_bytes(c.try_into().expect("8 bytes")))).collect()
        }
        other => return Err(ck_err(path, format!("tensor '{name}' has dtype {other:?}; supported: F32, F64"))),
    })
}

/// Loads a checkpoint. With `arch`, that architecture is used (it overrides the file's
/// `sgdlab.arch`); without it the file must carry `sgdlab.arch`. Every tensor of the model must
/// be present with its exact shape, and no other tensor may be: each violation is an error naming
/// the tensor.
pub fn load_checkpoint<T: Scalar>(path: &Path, arch: Option<&ArchSpec>) -> Result<Checkpoint<T>, NnError> {
    let bytes = std::fs::read(path).map_err(|source| NnError::Io { path: path.to_path_buf(), source })?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| ck_err(path, format!("not a valid safetensors file: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| ck_err(path, format!("not a valid safetensors file: {e}")))?;
    let metadata: BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let arch: ArchSpec = match (arch, metadata.get(ARCH_METADATA_KEY)) {
        (Some(a), _) => a.clone(),
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
    let model = Model::new(&arch);
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
        let vals = decode::<T>(&view, &e.name, path)?;
        data[e.offset..e.offset + e.len].copy_from_slice(&vals);
    }
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    if let Some(extra) = names.iter().find(|n| model.layout().get(n).is_none()) {
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
    fn mismatches_are_errors_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let model = Model::new(&"mlp:4-6-3:relu".parse().unwrap());
        let p: Params<f32> = InitSpec::default().init(&model, &RngStream::new(1));
        let path = dir.path().join("m.safetensors");
        save_checkpoint(&path, &model, &p, &[]).unwrap();
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
}
