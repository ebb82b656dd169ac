//! `sgdlab model`: the parameter layout of an architecture or a checkpoint.

use crate::arch_args::resolve_arch;
use anyhow::{Result, bail};
use sgdlab_nn::{LoadOptions, Model, Params, load_checkpoint_with};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  sgdlab model mlp:40-100-100-10:relu\n  sgdlab model --checkpoint run/final.safetensors\n  sgdlab model --checkpoint torch.safetensors --arch mlp:784-100-10:relu --json"
)]
pub struct ModelArgs {
    /// Architecture string, e.g. mlp:40-100-100-10:relu, mlp:40-100x3-10:tanh:layernorm,
    /// resmlp:196-64x12-10:relu:layernorm (options: nobias, layernorm).
    arch: Option<String>,
    /// A safetensors checkpoint (sgdlab's, or PyTorch's nn.Sequential state_dict with --arch).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Architecture for a checkpoint without sgdlab metadata.
    #[arg(long = "arch", value_name = "ARCH")]
    arch_flag: Option<String>,
    /// The architecture as PyTorch prints it (`print(model)` of an nn.Sequential), with --input-shape.
    #[arg(long, value_name = "FILE")]
    arch_file: Option<PathBuf>,
    /// Shape of one input example for --arch-file: C,H,W or CxHxW.
    #[arg(long, value_name = "SHAPE")]
    input_shape: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Accept NaN and infinite values in the checkpoint (to inspect a diverged run).
    #[arg(long)]
    allow_nonfinite: bool,
}

pub fn run(a: ModelArgs) -> Result<()> {
    let arch_text = a.arch_flag.or(a.arch);
    let arch = resolve_arch(arch_text.as_deref(), a.arch_file.as_deref(), a.input_shape.as_deref())?;
    let (model, params): (Model, Option<Params<f64>>) = match (&a.checkpoint, arch) {
        (Some(path), arch) => {
            let opts = LoadOptions { allow_nonfinite: a.allow_nonfinite };
            let ck = load_checkpoint_with::<f64>(path, arch.as_ref(), opts)?;
            (ck.model, Some(ck.params))
        }
        (None, Some(arch)) => (Model::new(&arch), None),
        (None, None) => {
            bail!("give an architecture (e.g. sgdlab model mlp:40-100-10:relu, or --arch-file) or --checkpoint FILE")
        }
    };
    let norms = params.as_ref().map(|p| p.tensor_norms());
    if a.json {
        let tensors: Vec<_> = model
            .layout()
            .entries()
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut o = serde_json::json!({"name": e.name, "shape": e.shape, "offset": e.offset, "len": e.len});
                if let Some(n) = &norms {
                    o["norm"] = serde_json::json!(n[i].1);
                }
                o
            })
            .collect();
        let out = serde_json::json!({
            "arch": model.describe(),
            "in_dim": model.in_dim(),
            "in_shape": model.in_shape().dims(),
            "out_dim": model.out_dim(),
            "num_params": model.num_params(),
            "norm": params.as_ref().map(|p| p.norm()),
            "tensors": tensors,
        });
        println!("{out}");
    } else {
        println!("{}: {} -> {}, {} parameters", model.describe(), model.in_dim(), model.out_dim(), model.num_params());
        println!("{:<16} {:<14} {:>10}{}", "name", "shape", "numel", if norms.is_some() { "        norm" } else { "" });
        for (i, e) in model.layout().entries().iter().enumerate() {
            let shape = format!("{:?}", e.shape);
            match &norms {
                Some(n) => println!("{:<16} {:<14} {:>10} {:>11.5}", e.name, shape, e.len, n[i].1),
                None => println!("{:<16} {:<14} {:>10}", e.name, shape, e.len),
            }
        }
    }
    Ok(())
}
