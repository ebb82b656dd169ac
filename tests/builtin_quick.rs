//! Every built-in study in quick mode, as `sgdlab reproduce --quick` runs it, must decide every
//! claim the way its full mode did. The full-mode verdicts are measurements, not expectations:
//! `bench/studies_full_vs_quick.sh` ran each study in full mode and wrote them to
//! `bench/results/studies_full_vs_quick.json` (with effects, intervals and wall times). A study
//! added without a full-mode measurement there fails this test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn quick_mode_of_every_builtin_study_reaches_the_full_mode_verdict() {
    let full = json(&root().join("bench/results/studies_full_vs_quick.json"));
    let out = tempfile::tempdir().unwrap();
    let mut disagreements = Vec::new();
    for b in sgdlab_studies::BUILTIN {
        let measured = &full["studies"][b.name]["full"];
        assert!(
            measured.is_object(),
            "{}: no full-mode verdict in bench/results/studies_full_vs_quick.json; run bench/studies_full_vs_quick.sh {}",
            b.name,
            b.name
        );
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
