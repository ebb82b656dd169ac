//! How a command is told a model's architecture: `--arch STRING`, or `--arch-file FILE` (the
//! text of PyTorch's `print(model)`) with `--input-shape C,H,W`. Shared by `probe`, `model` and
//! `train`; the parsing itself lives in sgdlab-nn.

use anyhow::{Result, anyhow, bail};
use sgdlab_nn::{ArchSpec, Shape, load_arch_file};
use std::path::Path;

/// The architecture the flags give, if any; each misuse is a one-line error naming the flag.
pub fn resolve_arch(
    arch: Option<&str>,
    arch_file: Option<&Path>,
    input_shape: Option<&str>,
) -> Result<Option<ArchSpec>> {
    match (arch, arch_file, input_shape) {
        (Some(_), Some(_), _) => bail!("give --arch or --arch-file, not both"),
        (Some(_), None, Some(_)) | (None, None, Some(_)) => {
            bail!("--input-shape goes with --arch-file (an architecture string states its own input)")
        }
        (Some(a), None, None) => Ok(Some(a.parse()?)),
        (None, Some(f), None) => {
            bail!("--arch-file {} needs --input-shape C,H,W (the shape of one example, e.g. 1,28,28)", f.display())
        }
        (None, Some(f), Some(s)) => {
            let shape: Shape = s.parse().map_err(|e| anyhow!("--input-shape: {e}"))?;
            Ok(Some(load_arch_file(f, shape)?))
        }
        (None, None, None) => Ok(None),
    }
}
