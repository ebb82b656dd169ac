//! `sgdlab data`: inspect dataset specs (shapes, class counts, feature statistics, sample plots).
//!
//! Numbers come from `sgdlab_data::dataset_info`; this file only parses arguments, prints and
//! draws.

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use sgdlab_data::{Dataset, SPEC_GRAMMAR, Split, dataset_info, examples_per_class, load_dataset};
use std::path::{Path, PathBuf};

/// Inspect datasets.
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// `sgdlab data` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Shapes, class counts and feature statistics of a dataset spec.
    Info {
        /// Dataset spec, e.g. `mnist1d`, `mnist1d:seed=7,n=10000`,
        /// `idx:IMAGES.gz,LABELS.gz|split:test=2000|pool2` (grammar: `sgdlab data specs`).
        spec: String,
        /// Print exactly one JSON object on stdout (splits -> n, shape, classes, class_counts, ...).
        #[arg(long)]
        json: bool,
        /// Draw a few examples per class to this SVG file (curves for 1-D data, images for images).
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Examples per class in the plot.
        #[arg(long, default_value_t = 4, value_name = "N")]
        per_class: usize,
        /// Split to draw (default: `train` if there is one, else the first split).
        #[arg(long, value_name = "NAME")]
        split: Option<String>,
    },
    /// Print the dataset spec grammar: every source, transform, key and default.
    Specs,
}

/// Run `sgdlab data ...`.
pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Specs => {
            print!("{SPEC_GRAMMAR}");
            Ok(())
        }
        DataCommand::Info { spec, json, plot, per_class, split } => {
            let data = load_dataset(&spec)?;
            let info = dataset_info(&data);
            if json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                print!("{info}");
            }
            if let Some(path) = plot {
                let s = match &split {
                    Some(name) => data.split(name)?,
                    None => data.train().or_else(|_| data.split(data.split_names()[0]))?,
                };
                plot_examples(&data, s, per_class.max(1), &path)
                    .with_context(|| format!("cannot draw {}", path.display()))?;
                eprintln!("wrote {} (split `{}`)", path.display(), s.name());
            }
            Ok(())
        }
    }
}

fn plot_examples(data: &Dataset, split: &Split, per_class: usize, path: &Path) -> Result<()> {
    let groups = examples_per_class(split, per_class);
    if groups.is_empty() {
        return Err(anyhow!("split `{}` has no examples", split.name()));
    }
    match (data.image_shape(), split.labels()) {
        (Some(shape), _) => plot_images(split, &groups, shape, path),
        (None, Some(_)) => plot_curves(split, &groups, path),
        (None, None) if split.dim() == 1 => plot_function(split, path),
        (None, None) => plot_curves(split, &groups, path),
    }
}

fn draw_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("{e}")
}

/// One row per class, `per_class` images per row; each image scaled to its own min..max.
fn plot_images(split: &Split, groups: &[(u32, Vec<usize>)], shape: sgdlab_data::ImageShape, path: &Path) -> Result<()> {
    let cols = groups.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let px = (96 / shape.height.max(shape.width)).max(1) as i32;
    let (cw, ch) = (shape.width as i32 * px + 8, shape.height as i32 * px + 8);
    let label_w = 70;
    let size = ((label_w + cols as i32 * cw) as u32, (groups.len() as i32 * ch + 8) as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let plane = shape.height * shape.width;
    for (r, (class, idx)) in groups.iter().enumerate() {
        let y0 = 4 + r as i32 * ch;
        let label = if split.labels().is_some() { format!("class {class}") } else { "examples".to_string() };
        root.draw(&Text::new(label, (4, y0 + ch / 2 - 6), ("sans-serif", 13))).map_err(draw_err)?;
        for (c, &i) in idx.iter().enumerate() {
            let x = split.features().row(i);
            let (lo, hi) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let scale = |v: f32| if hi > lo { (255.0 * (v - lo) / (hi - lo)) as u8 } else { 0 };
            let x0 = label_w + c as i32 * cw + 4;
            for row in 0..shape.height {
                for col in 0..shape.width {
                    let at = |ch: usize| scale(x[ch * plane + row * shape.width + col]);
                    let color = if shape.channels >= 3 {
                        RGBColor(at(0), at(1), at(2))
                    } else {
                        let v = 255 - at(0);
                        RGBColor(v, v, v)
                    };
                    let (px0, py0) = (x0 + col as i32 * px, y0 + row as i32 * px);
                    root.draw(&Rectangle::new([(px0, py0), (px0 + px, py0 + px)], color.filled())).map_err(draw_err)?;
                }
            }
        }
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// One panel per class with the feature curves of its examples (feature index on the x axis).
fn plot_curves(split: &Split, groups: &[(u32, Vec<usize>)], path: &Path) -> Result<()> {
    let ncols = groups.len().min(5);
    let nrows = groups.len().div_ceil(ncols);
    let root = SVGBackend::new(path, (ncols as u32 * 260, nrows as u32 * 200)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let x = split.features();
    let all: Vec<usize> = groups.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let (lo, hi) = all
        .iter()
        .flat_map(|&i| x.row(i).to_vec())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
    let d = split.dim().max(2);
    let panels = root.split_evenly((nrows, ncols));
    for ((class, idx), area) in groups.iter().zip(panels.iter()) {
        let caption = if split.labels().is_some() { format!("class {class}") } else { "examples".to_string() };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(20)
            .y_label_area_size(34)
            .build_cartesian_2d(0f32..(d - 1) as f32, lo..hi)
            .map_err(draw_err)?;
        chart.configure_mesh().x_labels(5).y_labels(5).draw().map_err(draw_err)?;
        for (k, &i) in idx.iter().enumerate() {
            let pts: Vec<(f32, f32)> = x.row(i).iter().enumerate().map(|(j, &v)| (j as f32, v)).collect();
            chart.draw_series(LineSeries::new(pts, &Palette99::pick(k))).map_err(draw_err)?;
        }
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// A 1-D regression set: the target (first output) against the feature, as points.
fn plot_function(split: &Split, path: &Path) -> Result<()> {
    let Some(y) = split.targets().values() else {
        return Err(anyhow!("split `{}` has no regression targets", split.name()));
    };
    let pts: Vec<(f32, f32)> = (0..split.len()).map(|i| (split.features()[[i, 0]], y[[i, 0]])).collect();
    let fold = |f: fn(&(f32, f32)) -> f32| {
        pts.iter().map(f).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
    };
    let ((x0, x1), (y0, y1)) = (fold(|p| p.0), fold(|p| p.1));
    let root = SVGBackend::new(path, (720, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("split {}: target vs feature", split.name()), ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(40)
        .build_cartesian_2d(x0..x1.max(x0 + 1e-6), y0..y1.max(y0 + 1e-6))
        .map_err(draw_err)?;
    chart.configure_mesh().draw().map_err(draw_err)?;
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, BLUE.filled()))).map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}
