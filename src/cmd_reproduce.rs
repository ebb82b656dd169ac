//! `sgdlab reproduce`: every built-in study, then an index page. Until the studies land (issue
//! "Studies, verdicts, reports"), it checks the derivative engine on built-in data and says what
//! is not built yet.

use anyhow::Result;
use sgdlab_linalg::RngStream;
use sgdlab_nn::{ArchSpec, Batch, InitSpec, Loss, Model, Objective, Targets};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {
    /// Small budgets: a smoke run of every study.
    #[arg(long)]
    quick: bool,
    /// Runs in parallel (default: the number of cores), each single-threaded.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "results")]
    out: PathBuf,
}

pub fn run(a: ReproduceArgs) -> Result<()> {
    let _ = (&a.jobs, &a.out);
    println!("sgdlab {}", crate::VERSION);
    println!(
        "Built-in studies are not built yet (they land with the studies issue); checking the derivative engine instead."
    );
    // A synthetic batch stands in for the built-in data until the data crate is wired here.
    let arch: ArchSpec = "mlp:40-100-100-10:relu".parse()?;
    let model = Model::new(&arch);
    let params = InitSpec::default().init::<f64>(&model, &RngStream::new(42));
    let n = if a.quick { 64 } else { 512 };
    let mut rng = RngStream::new(42).child("reproduce/inputs").rng();
    let x = ndarray::Array2::from_shape_fn((n, 40), |_| sgdlab_linalg::standard_normal::<f64, _>(&mut rng));
    let y: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let batch = Batch { x: x.view(), targets: Targets::Classes(&y) };
    let obj = Objective::mean(Loss::CrossEntropy);
    let lg = model.loss_and_gradient(params.as_slice(), &batch, &obj)?;
    let gnorm = lg.gradient.iter().map(|g| g * g).sum::<f64>().sqrt();
    let hg = model.hvp(params.as_slice(), &batch, &obj, &lg.gradient)?;
    let curvature = lg.gradient.iter().zip(&hg).map(|(a, b)| a * b).sum::<f64>() / (gnorm * gnorm);
    println!(
        "{arch}: {} parameters, loss {:.6}, |grad| {:.6}, curvature along the gradient g.Hg/|g|^2 = {:.6}",
        model.num_params(),
        lg.loss,
        gnorm,
        curvature
    );
    Ok(())
}
