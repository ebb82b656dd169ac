//! Every built-in study end to end at its CI size (`[ci]` in its file: seconds, not a verdict):
//! the plan, every run completed, every claim decided (an effect, or the reason there is none),
//! the report and every figure with the CSV behind it. Whether quick mode reaches the full
//! study's verdicts is measured by `bench/studies_full_vs_quick.sh` (and checked for the cheap
//! studies by `tests/builtin_quick.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn out_dir(out: &Path, name: &str) -> PathBuf {
    out.join(name)
}

#[test]
fn every_builtin_study_runs_end_to_end_at_ci_size() {
    let out = tempfile::tempdir().unwrap();
    for b in sgdlab_studies::BUILTIN {
        let st = sgdlab_studies::load_study(b.name, false, &[]).unwrap();
        let mut args: Vec<String> = vec!["study".into(), "run".into(), b.name.into()];
        for o in &st.spec.ci.set {
            args.push("--set".into());
            args.push(o.clone());
        }
        args.extend(["--quiet".into(), "--jobs".into(), "2".into(), "--out".into()]);
        let t0 = std::time::Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_sgdlab")).args(&args).arg(out.path()).output().unwrap();
        assert!(o.status.success(), "{} at CI size: {}", b.name, String::from_utf8_lossy(&o.stderr));
        let dir = out_dir(out.path(), b.name);
        let v = json(&dir.join("verdict.json"));
        eprintln!("{} (CI size): {} in {:.1} s", b.name, v["verdict"], t0.elapsed().as_secs_f64());
        assert_eq!(v["complete"], true, "{}: not every run completed", b.name);
        let claims = v["claims"].as_array().unwrap();
        assert_eq!(claims.len(), st.spec.claim.len(), "{}", b.name);
        for c in claims {
            let decided = ["reproduced", "not reproduced", "inconclusive"].contains(&c["verdict"].as_str().unwrap());
            assert!(decided, "{} claim {}: verdict {}", b.name, c["id"], c["verdict"]);
            assert!(
                c["effect"].is_object() || c["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{} claim {}: neither an effect nor a reason",
                b.name,
                c["id"]
            );
        }
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        for f in &st.spec.figure {
            for ext in ["svg", "csv"] {
                let p = dir.join("figures").join(format!("{}.{ext}", f.name));
                assert!(p.is_file(), "{}: figure {} has no {ext}", b.name, f.name);
            }
            assert!(html.contains(&f.name), "{}: the report does not show figure {}", b.name, f.name);
        }
    }
}
