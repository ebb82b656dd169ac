//! `--set key.path=value` overrides of a study spec, and quick mode (a list of such overrides).
//!
//! A path walks tables by key and arrays of tables by position (`sweep.0`), by the `name`,
//! `id`, `label` or `probe` of an element (`claim.sharpness-ratio.decision`,
//! `measure.hessian.samples`), or over every element (`measure.*.samples`). The value keeps the
//! type of the value it replaces (`lr=1` stays a float; a string needs no quotes); a key that is
//! absent is added with the literal's own type, and the spec's types then decide. An override
//! whose path names nothing (no such table, array element or key where a key is required) is an
//! error naming the path.

/// Applies one `key.path=value` override to a study spec held as a TOML value.
pub fn apply(doc: &mut toml::Value, ov: &str) -> Result<(), String> {
    let (k, raw) = ov.split_once('=').ok_or_else(|| format!("override '{ov}' is not KEY=VALUE (e.g. seeds=[0, 1])"))?;
    let path: Vec<&str> = k.trim().split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(format!("override key '{}' is malformed", k.trim()));
    }
    let n = set(doc, &path, raw.trim(), k.trim())?;
    if n == 0 {
        return Err(format!("--set {}: names nothing in the study", k.trim()));
    }
    Ok(())
}

/// Keys an array element may be selected by.
const SELECTORS: [&str; 4] = ["name", "id", "label", "probe"];

fn element_name(v: &toml::Value) -> Option<&str> {
    let t = v.as_table()?;
    SELECTORS.iter().find_map(|k| t.get(*k).and_then(|x| x.as_str()))
}

/// Sets the value at `path` below `cur`; returns how many places were set.
fn set(cur: &mut toml::Value, path: &[&str], raw: &str, key: &str) -> Result<usize, String> {
    let (head, rest) = (path[0], &path[1..]);
    match cur {
        toml::Value::Table(t) => {
            if rest.is_empty() {
                let v = sgdlab_train::spec::typed_value(key, raw, t.get(head))?;
                t.insert(head.to_string(), v);
                return Ok(1);
            }
            match t.get_mut(head) {
                Some(next) => set(next, rest, raw, key),
                None => Err(format!("--set {key}: there is no '{head}' here (keys: {})", keys(t))),
            }
        }
        toml::Value::Array(a) => {
            let chosen: Vec<usize> = if head == "*" {
                (0..a.len()).collect()
            } else if let Ok(i) = head.parse::<usize>() {
                if i >= a.len() {
                    return Err(format!("--set {key}: index {i} is out of range ({} elements)", a.len()));
                }
                vec![i]
            } else {
                let found: Vec<usize> = (0..a.len()).filter(|&i| element_name(&a[i]) == Some(head)).collect();
                if found.is_empty() {
                    let names: Vec<&str> = a.iter().filter_map(element_name).collect();
                    return Err(format!("--set {key}: no element named '{head}' (elements: {})", names.join(", ")));
                }
                found
            };
            if rest.is_empty() {
                for &i in &chosen {
                    a[i] = sgdlab_train::spec::typed_value(key, raw, Some(&a[i]))?;
                }
                return Ok(chosen.len());
            }
            let mut n = 0;
            for i in chosen {
                n += set(&mut a[i], rest, raw, key)?;
            }
            Ok(n)
        }
        other => Err(format!("--set {key}: '{head}' is inside a {}, not a table", other.type_str())),
    }
}

fn keys(t: &toml::Table) -> String {
    t.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Parses `--seeds`: `0-9`, `0,3,7` or a mix (`0-4,10`).
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--seeds '{text}': '{part}' is not a seed or a range like 0-9");
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u64, u64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if a > b || b - a >= 100_000 {
                return Err(format!("--seeds '{text}': range '{part}' is empty or too long"));
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().map_err(|_| bad())?);
        }
    }
    if out.is_empty() {
        return Err(format!("--seeds '{text}' names no seed"));
    }
    Ok(out)
}

/// The override that sets the seeds.
pub fn seeds_override(seeds: &[u64]) -> String {
    format!("seeds=[{}]", seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> toml::Value {
        toml::from_str(
            r#"
seeds = [0, 1]
[base.optimizer]
lr = 0.1
[[measure]]
probe = "hessian"
samples = 1000
[[measure]]
probe = "sharpness"
samples = 1000
[[claim]]
id = "a"
decision = { greater = 2.0 }
"#,
        )
        .unwrap()
    }

    #[test]
    fn paths_by_key_index_name_and_star_keep_types() {
        let mut d = doc();
        apply(&mut d, "base.optimizer.lr=1").unwrap();
        assert_eq!(d["base"]["optimizer"]["lr"], toml::Value::Float(1.0));
        apply(&mut d, "measure.hessian.samples=500").unwrap();
        assert_eq!(d["measure"][0]["samples"].as_integer(), Some(500));
        assert_eq!(d["measure"][1]["samples"].as_integer(), Some(1000));
        apply(&mut d, "measure.*.samples=200").unwrap();
        assert_eq!(d["measure"][1]["samples"].as_integer(), Some(200));
        apply(&mut d, "claim.a.decision.greater=3").unwrap();
        assert_eq!(d["claim"][0]["decision"]["greater"], toml::Value::Float(3.0));
        apply(&mut d, "seeds=[4, 5, 6]").unwrap();
        assert_eq!(d["seeds"].as_array().unwrap().len(), 3);
        apply(&mut d, "measure.1.samples=7").unwrap();
        assert_eq!(d["measure"][1]["samples"].as_integer(), Some(7));
    }

    #[test]
    fn overrides_that_name_nothing_or_change_type_fail() {
        let mut d = doc();
        let e = apply(&mut d, "measure.hesian.samples=5").unwrap_err();
        assert!(e.contains("no element named 'hesian'") && e.contains("hessian, sharpness"), "{e}");
        let e = apply(&mut d, "bsae.optimizer.lr=5").unwrap_err();
        assert!(e.contains("there is no 'bsae'"), "{e}");
        let e = apply(&mut d, "base.optimizer.lr=fast").unwrap_err();
        assert!(e.contains("expects a number"), "{e}");
        let e = apply(&mut d, "seeds").unwrap_err();
        assert!(e.contains("not KEY=VALUE"), "{e}");
        let e = apply(&mut d, "measure.9.samples=1").unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn seed_lists_and_ranges() {
        assert_eq!(parse_seeds("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_seeds("0-1,7, 9").unwrap(), vec![0, 1, 7, 9]);
        assert!(parse_seeds("3-1").is_err());
        assert!(parse_seeds("x").is_err());
        assert!(parse_seeds("").is_err());
        assert_eq!(seeds_override(&[1, 2]), "seeds=[1, 2]");
    }
}
