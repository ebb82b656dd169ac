//! Memory budgets: sizes computed with checked arithmetic, and the memory a computation will need
//! compared with what the machine has, before anything is allocated.
//!
//! A request the machine cannot satisfy must fail with a one-line error stating the estimate, not
//! abort in the allocator ("memory allocation of N bytes failed") or wrap around to a small
//! number. Library functions that allocate in proportion to a size they are given (a dataset's
//! examples, a model's parameters, a dense `P x P` matrix, a grid of points) build an [`Estimate`]
//! of their peak need and [`Estimate::check`] it first.
//!
//! The limit is, in order: the process-wide override ([`set_max_memory`], the CLI's
//! `--max-memory`), else the smaller of `MemAvailable` in `/proc/meminfo` and the room left under
//! a cgroup v2 `memory.max`; where neither can be read (not Linux), nothing is refused.
//!
//! ```
//! use sgdlab_linalg::memory::{Estimate, checked_product};
//! assert_eq!(checked_product(&[1 << 40, 1 << 30]), None);
//! let e = Estimate::new("a 10^12 x 40 f32 matrix").array(&[1_000_000_000_000, 40], 4);
//! assert_eq!(e.bytes(), Some(160_000_000_000_000));
//! let err = e.check_against(Some(sgdlab_linalg::memory::MemoryLimit::given(8 << 30))).unwrap_err();
//! assert!(err.to_string().contains("needs about 160 TB"));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The process-wide override in bytes (0 = none).
static OVERRIDE: AtomicU64 = AtomicU64::new(0);

/// Sets (or with `None` clears) the process-wide memory limit used instead of the machine's
/// available memory (the CLI's `--max-memory`).
pub fn set_max_memory(bytes: Option<u64>) {
    OVERRIDE.store(bytes.unwrap_or(0), Ordering::SeqCst);
}

/// Where a limit comes from (said in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// Set by [`set_max_memory`] (`--max-memory`).
    Override,
    /// `MemAvailable` in `/proc/meminfo`.
    MemAvailable,
    /// `memory.max - memory.current` of the process's cgroup (v2).
    Cgroup,
}

/// A number of bytes that may be allocated, and where that number comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub source: LimitSource,
}

impl MemoryLimit {
    /// A limit given explicitly (as by `--max-memory`).
    pub fn given(bytes: u64) -> Self {
        MemoryLimit { bytes, source: LimitSource::Override }
    }
}

/// `MemAvailable` (bytes) from the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut it = line["MemAvailable:".len()..].split_whitespace();
    let kb: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") | None => kb.checked_mul(1024),
        Some(_) => None,
    }
}

fn cgroup_room() -> Option<u64> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2: a single line "0::/path".
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let dir = std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let max = std::fs::read_to_string(dir.join("memory.max")).ok()?;
    let max: u64 = max.trim().parse().ok()?; // "max" = unlimited: no cgroup limit
    let cur: u64 = std::fs::read_to_string(dir.join("memory.current")).ok()?.trim().parse().ok()?;
    Some(max.saturating_sub(cur))
}

/// The limit in force now (see the module documentation), or `None` when it cannot be known.
pub fn limit() -> Option<MemoryLimit> {
    let o = OVERRIDE.load(Ordering::SeqCst);
    if o > 0 {
        return Some(MemoryLimit::given(o));
    }
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t))
        .map(|bytes| MemoryLimit { bytes, source: LimitSource::MemAvailable });
    let cg = cgroup_room().map(|bytes| MemoryLimit { bytes, source: LimitSource::Cgroup });
    match (avail, cg) {
        (Some(a), Some(c)) => Some(if c.bytes < a.bytes { c } else { a }),
        (a, c) => a.or(c),
    }
}

/// The product of `dims`, or `None` if it overflows `usize`.
pub fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// `bytes` in decimal units with three significant digits: `512 B`, `4.29 GB`, `160 TB`.
pub fn format_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Parses a size such as `8G`, `512M`, `1.5GiB`, `2000000` (bytes): a number with an optional
/// unit `k`, `M`, `G`, `T` (powers of 1024; an `iB` or `B` suffix is allowed) or `kB`, `MB`,
/// `GB`, `TB` (powers of 1000). Errors are one line quoting the input.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let bad = || format!("'{s}' is not a size (e.g. 8G, 512M, 1.5GiB, 16GB or a number of bytes)");
    let v: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit {
        "" | "B" => 1.0,
        "k" | "K" | "KiB" | "kiB" => 1024.0,
        "M" | "MiB" => 1024f64.powi(2),
        "G" | "GiB" => 1024f64.powi(3),
        "T" | "TiB" => 1024f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return Err(bad()),
    };
    let bytes = v * mult;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("'{s}' is not a size between 1 byte and 16 EiB"));
    }
    Ok(bytes as u64)
}

/// The estimated peak memory of a computation: a sum of arrays, each a product of sizes times
/// the bytes per element, in checked arithmetic (an overflow makes the estimate "too large to
/// count", which no limit admits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    what: String,
    bytes: Option<u128>,
}

impl Estimate {
    /// An empty estimate for `what` (named in the error: "training mlp:40-100000-100000-10").
    pub fn new(what: impl Into<String>) -> Self {
        Estimate { what: what.into(), bytes: Some(0) }
    }

    /// Adds an array of `dims` elements of `elem_bytes` bytes each.
    pub fn array(mut self, dims: &[usize], elem_bytes: usize) -> Self {
        let size = dims.iter().try_fold(elem_bytes as u128, |a, &d| a.checked_mul(d as u128));
        self.bytes = self.bytes.zip(size).and_then(|(a, b)| a.checked_add(b));
        self
    }

    /// Adds `bytes` bytes.
    pub fn bytes_plus(mut self, bytes: u128) -> Self {
        self.bytes = self.bytes.and_then(|a| a.checked_add(bytes));
        self
    }

    /// Adds another estimate's bytes.
    pub fn plus(mut self, other: &Estimate) -> Self {
        self.bytes = self.bytes.zip(other.bytes).and_then(|(a, b)| a.checked_add(b));
        self
    }

    /// The estimate in bytes (`None` when it overflowed).
    pub fn bytes(&self) -> Option<u128> {
        self.bytes
    }

    /// What is being estimated.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Fails if the estimate exceeds the limit in force ([`limit`]).
    pub fn check(&self) -> Result<(), MemoryError> {
        self.check_against(limit())
    }

    /// Fails if the estimate exceeds `limit` (`None`: only an overflowed estimate fails).
    pub fn check_against(&self, limit: Option<MemoryLimit>) -> Result<(), MemoryError> {
        let fits = match (self.bytes, limit) {
            (None, _) => false,
            (Some(b), Some(l)) => b <= u128::from(l.bytes),
            (Some(_), None) => true,
        };
        if fits { Ok(()) } else { Err(MemoryError { what: self.what.clone(), needed: self.bytes, limit }) }
    }
}

/// A computation that would need more memory than the limit (or an impossible amount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryError {
    /// What was to be computed.
    pub what: String,
    /// The estimate in bytes (`None`: too large to count).
    pub needed: Option<u128>,
    /// The limit it was compared with.
    pub limit: Option<MemoryLimit>,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needed = match self.needed {
            Some(b) => format!("about {}", format_bytes(b)),
            None => "more bytes than can be counted (its size overflows)".to_string(),
        };
        write!(f, "{} needs {needed}", self.what)?;
        if let Some(l) = self.limit {
            let source = match l.source {
                LimitSource::Override => "the --max-memory limit",
                LimitSource::MemAvailable => "available (MemAvailable in /proc/meminfo)",
                LimitSource::Cgroup => "left under the cgroup's memory.max",
            };
            let have = format_bytes(u128::from(l.bytes));
            match l.source {
                LimitSource::Override => write!(f, ", more than {source} of {have}")?,
                LimitSource::MemAvailable | LimitSource::Cgroup => {
                    write!(f, ", more than the {have} {source}; --max-memory SIZE sets another limit")?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for MemoryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_sizes_parse() {
        let text = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(parse_meminfo(text), Some(2048 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("16GB"), Ok(16_000_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        for bad in ["", "G", "8X", "-1G", "nan", "1e400", "0"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")) && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn estimates_add_in_checked_arithmetic() {
        let e = Estimate::new("x").array(&[1000, 40], 4).array(&[10], 8).bytes_plus(20);
        assert_eq!(e.bytes(), Some(160_000 + 80 + 20));
        let huge = Estimate::new("x").array(&[usize::MAX, usize::MAX, usize::MAX], 8);
        assert_eq!(huge.bytes(), None);
        assert!(huge.check_against(None).is_err(), "an overflowed estimate never fits");
        let msg = huge.check_against(None).unwrap_err().to_string();
        assert!(msg.contains("overflows"), "{msg}");
        assert_eq!(checked_product(&[3, 4, 5]), Some(60));
        assert_eq!(checked_product(&[usize::MAX, 2]), None);
    }

    #[test]
    fn errors_state_the_estimate_and_the_limit() {
        let e = Estimate::new("training mlp:40-100000-100000-10").array(&[10_000_000_000], 4);
        assert!(e.check_against(Some(MemoryLimit::given(50_000_000_000))).is_ok());
        let msg = e.check_against(Some(MemoryLimit::given(1 << 30))).unwrap_err().to_string();
        assert_eq!(
            msg,
            "training mlp:40-100000-100000-10 needs about 40.0 GB, more than the --max-memory limit of 1.07 GB"
        );
        let l = MemoryLimit { bytes: 3_200_000_000, source: LimitSource::MemAvailable };
        let msg = e.check_against(Some(l)).unwrap_err().to_string();
        assert!(msg.contains("more than the 3.20 GB available (MemAvailable") && msg.contains("--max-memory"), "{msg}");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(160_000_000_000_000), "160 TB");
    }

    #[test]
    fn the_machine_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let l = limit().expect("/proc/meminfo is readable on Linux");
            assert!(l.bytes > 0);
        }
    }
}
