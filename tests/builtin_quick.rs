//! Every built-in study in quick mode, as `sgdlab reproduce --quick` runs it, must decide every
//! claim the way its full mode did. The full-mode verdicts are measurements, not expectations:
//! `bench/studies_full_vs_quick.sh` ran each study in full and quick mode and wrote them to
//! `bench/results/studies_full_vs_quick.json` (with effects, intervals and wall times). A study
//! added without a full- and a quick-mode measurement there that agree claim by claim fails this
//! test.
//!
//! Quick mode itself is re-run here only for the studies whose measured quick run took at most
//! `QUICK_IN_CI_SECONDS` (keeping CI well inside its budget); the others run end to end at CI
//! size in `tests/builtin_ci.rs`, and their quick verdicts rest on the benchmark's measurement.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Quick runs measured at most this long are re-run in CI.
const QUICK_IN_CI_SECONDS: f64 = 30.0;

#[test]
fn the_benchmark_measured_quick_mode_agreeing_with_full_mode_for_every_builtin_study() {
    let full = json(&root().join("bench/results/studies_full_vs_quick.json"));
    for b in sgdlab_studies::BUILTIN {
        let (f, q) = (&full["studies"][b.name]["full"], &full["studies"][b.name]["quick"]);
        assert!(
            f.is_object() && q.is_object(),
            "{}: no full- and quick-mode measurement in bench/results/studies_full_vs_quick.json; run bench/studies_full_vs_quick.sh {}",
            b.name,
            b.name
        );
        assert_eq!(f["verdict"], q["verdict"], "{}: quick and full verdicts differ", b.name);
        assert_eq!(f["claims"].as_object().unwrap().len(), q["claims"].as_object().unwrap().len(), "{}", b.name);
        for (id, c) in f["claims"].as_object().unwrap() {
            assert_eq!(c["verdict"], q["claims"][id]["verdict"], "{} claim {id}: quick and full differ", b.name);
        }
    }
}

#[test]
fn quick_mode_of_the_cheap_builtin_studies_reaches_the_full_mode_verdict() {
    let full = json(&root().join("bench/results/studies_full_vs_quick.json"));
    let out = tempfile::tempdir().unwrap();
    let mut disagreements = Vec::new();
    for b in sgdlab_studies::BUILTIN {
        let measured = &full["studies"][b.name]["full"];
        let quick_wall = full["studies"][b.name]["quick"]["wall_time_s"].as_f64().unwrap_or(f64::INFINITY);
        if !measured.is_object() || quick_wall > QUICK_IN_CI_SECONDS {
            continue; // no measurement: the test above fails; a long quick run: tests/builtin_ci.rs
        }
        let t0 = std::time::Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_sgdlab"))
            .args(["study", "run", b.name, "--quick", "--quiet", "--jobs", "2", "--out"])
            .arg(out.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{} --quick: {}", b.name, String::from_utf8_lossy(&o.stderr));
        let dir = out.path().join(format!("{}-quick", b.name));
        let v = json(&dir.join("verdict.json"));
        assert_eq!(v["quick"], true, "{}", b.name);
        assert_eq!(v["complete"], true, "{}", b.name);
        eprintln!("{} --quick: {} in {:.1} s", b.name, v["verdict"], t0.elapsed().as_secs_f64());
        let claims = v["claims"].as_array().unwrap();
        let want = measured["claims"].as_object().unwrap();
        let ids: Vec<&str> = claims.iter().map(|c| c["id"].as_str().unwrap()).collect();
        let want_ids: Vec<&str> = want.keys().map(String::as_str).collect();
        let (mut a, mut w) = (ids.clone(), want_ids.clone());
        a.sort_unstable();
        w.sort_unstable();
        assert_eq!(a, w, "{}: the claims differ from those measured in full mode", b.name);
        for c in claims {
            let id = c["id"].as_str().unwrap();
            if c["verdict"] != want[id]["verdict"] {
                disagreements.push(format!(
                    "{} claim {id}: quick {} (effect {}), full {} (effect {})",
                    b.name, c["verdict"], c["effect"]["value"], want[id]["verdict"], want[id]["effect"]
                ));
            }
        }
        if v["verdict"] != measured["verdict"] {
            disagreements.push(format!("{}: quick {}, full {}", b.name, v["verdict"], measured["verdict"]));
        }
        // The report says it is a quick run and lists the overrides quick mode applied.
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("Quick run"), "{}: report does not say it is a quick run", b.name);
        for o in v["overrides"].as_array().unwrap() {
            let o = o.as_str().unwrap();
            let shown = o.replace('"', "&quot;");
            assert!(html.contains(o) || html.contains(&shown), "{}: report does not list override {o}", b.name);
        }
    }
    assert!(disagreements.is_empty(), "quick mode disagrees with full mode:\n{}", disagreements.join("\n"));
}
