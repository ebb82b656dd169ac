//! Sequential vs two-thread faer products at the shapes of sgdlab's MLP passes and around
//! `PARALLEL_MIN_FLOPS` (128 * 256 * 256 multiply-adds). Prints a Markdown table of medians.
//!
//! Each (shape, mode) is timed in rounds that alternate the two modes, so a load change on a
//! shared machine hits both alike; the median of per-round medians is reported. Before each shape
//! it waits for a quiet machine, and it reports the CPU that other processes used meanwhile
//! (machine-wide busy time from /proc/stat minus this process's; Linux only): a row with a
//! foreign load above ~0.2 cores is contaminated and should be measured again.
//!
//! `LAYOUT=row` stores every operand row-major (as sgdlab's ndarray arrays reach faer through
//! `matmul_into`); the default is faer's native column-major. `ROUNDS` (default 15).
use faer::{Accum, Mat, Par};
use std::time::Instant;

fn time_product(m: usize, k: usize, n: usize, par: Par, reps: usize) -> f64 {
    // LAYOUT=row: every operand row-major (column stride 1), as sgdlab's ndarray arrays reach
    // faer through matmul_into; otherwise faer's native column-major.
    let row = std::env::var("LAYOUT").is_ok_and(|l| l == "row");
    let a = Mat::<f32>::from_fn(if row { k } else { m }, if row { m } else { k }, |i, j| ((i + 3 * j) % 7) as f32 * 0.1);
    let b = Mat::<f32>::from_fn(if row { n } else { k }, if row { k } else { n }, |i, j| ((2 * i + j) % 5) as f32 * 0.1);
    let mut c = if row { Mat::<f32>::zeros(n, m) } else { Mat::<f32>::zeros(m, n) };
    let (a, b) = if row { (a.as_ref().transpose(), b.as_ref().transpose()) } else { (a.as_ref(), b.as_ref()) };
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        let cm = if row { c.as_mut().transpose_mut() } else { c.as_mut() };
        faer::linalg::matmul::matmul(cm, Accum::Replace, a, b, 1.0, par);
        ts.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    ts.sort_by(|x, y| x.partial_cmp(y).unwrap());
    ts[reps / 2]
}

/// (machine-wide busy ticks, this process's CPU ticks), from /proc (Linux).
fn ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let busy = if v.len() >= 7 { v[0] + v[1] + v[2] + v[5] + v[6] } else { 0 };
    let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = me.rsplit_once(')').map(|x| x.1).unwrap_or("");
    // Fields after the command: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime ... (tpgid may be -1); utime and stime are the 12th and 13th.
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let own = num(11) + num(12);
    (busy, own)
}

/// Waits (up to 10 minutes) until other processes use less than 0.15 of a core over 1 s.
fn wait_quiet() -> f64 {
    let t0 = Instant::now();
    loop {
        let (b0, o0) = ticks();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let (b1, o1) = ticks();
        let foreign = (b1 - b0).saturating_sub(o1 - o0) as f64 / 100.0;
        if foreign < 0.15 || t0.elapsed().as_secs() > 600 {
            return foreign;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    v[v.len() / 2]
}

fn main() {
    // (m, k, n): rows of the batch, inner, outer. Forward products of the two benchmark MLPs,
    // their backward weight products (out x batch x in), and a ladder around the threshold.
    let shapes: &[(usize, usize, usize, &str)] = &[
        (32, 40, 100, "job S fwd layer 1"),
        (32, 100, 100, "job S fwd layer 2"),
        (100, 32, 100, "job S dW layer 2"),
        (64, 64, 64, ""),
        (128, 512, 10, "job L fwd layer 3"),
        (96, 96, 96, ""),
        (128, 128, 128, ""),
        (64, 128, 256, ""),
        (128, 128, 256, ""),
        (64, 256, 256, ""),
        (192, 192, 192, ""),
        (128, 192, 256, ""),
        (128, 256, 256, "= PARALLEL_MIN_FLOPS"),
        (128, 256, 384, ""),
        (192, 256, 256, ""),
        (128, 320, 320, ""),
        (128, 256, 512, ""),
        (256, 256, 256, ""),
        (128, 512, 512, "job L fwd layer 2"),
        (512, 128, 512, "job L dW layer 2"),
        (128, 784, 512, "job L fwd layer 1"),
        (512, 128, 784, "job L dW layer 1"),
    ];
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let budget = 0.02; // seconds of products per (shape, mode, round)
    // Par::rayon(2) runs on rayon's global pool (as in sgdlab): one worker per core here.
    println!(
        "| m x k x n | multiply-adds | vs threshold | t1 median (us) | t2 median (us) | t2 / t1 | GFLOP/s t1 | GFLOP/s t2 | foreign load (cores) | note |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for &(m, k, n, note) in shapes {
        let macs = m * k * n;
        wait_quiet();
        let (b0, o0) = ticks();
        let w0 = Instant::now();
        // warm up and size the repetitions
        let t0 = time_product(m, k, n, Par::Seq, 5);
        let reps = ((budget / t0) as usize).clamp(5, 20_000);
        time_product(m, k, n, Par::rayon(2), 5);
        let (mut s, mut p) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            if r % 2 == 0 {
                s.push(time_product(m, k, n, Par::Seq, reps));
                p.push(time_product(m, k, n, Par::rayon(2), reps));
            } else {
                p.push(time_product(m, k, n, Par::rayon(2), reps));
                s.push(time_product(m, k, n, Par::Seq, reps));
            }
        }
        let (b1, o1) = ticks();
        // CPU used by others during this shape's measurement, in cores (USER_HZ = 100).
        let foreign = (b1 - b0).saturating_sub(o1 - o0) as f64 / 100.0 / w0.elapsed().as_secs_f64();
        let (ts, tp) = (median(s), median(p));
        let gf = |t: f64| 2.0 * macs as f64 / t / 1e9;
        println!(
            "| {m}x{k}x{n} | {macs} | {:.3} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {foreign:.2} | {note} |",
            macs as f64 / (128.0 * 256.0 * 256.0),
            ts * 1e6,
            tp * 1e6,
            tp / ts,
            gf(ts),
            gf(tp),
        );
    }
}
