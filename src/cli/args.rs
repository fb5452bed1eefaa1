//! Argument types more than one command takes.

use std::time::Duration;

use walctl::SyncPolicy;

/// When appended entries are made durable (`--sync`, of `append`, `checkpoint` and
/// `bench`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync before acknowledging (one fsync per batch).
    Always,
    /// Hand each batch to the OS before acknowledging; fsync every interval.
    Interval,
    /// Hand each batch to the OS before acknowledging; fsync only at rotation and exit.
    Never,
}

impl SyncMode {
    /// The library's policy; `interval` is used by `Interval` only.
    pub fn policy(self, interval: Duration) -> SyncPolicy {
        match self {
            SyncMode::Always => SyncPolicy::Always,
            SyncMode::Interval => SyncPolicy::Interval(interval),
            SyncMode::Never => SyncPolicy::Never,
        }
    }
}

/// Parses a byte count: digits (`_` allowed between them) and an optional unit.
/// K, M, G, KiB, MiB, GiB are powers of 1024; KB, MB, GB powers of 1000 (as `df -H`
/// and disk makers count); B or nothing is bytes. Case does not matter.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return Err(format!(
            "{s:?} is not a byte count (e.g. 4096, 512K, 4MiB, 10MB)"
        ));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use K, M, G, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is too large"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// [`parse_size`], refusing zero.
pub fn parse_positive_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be at least 1 byte".into()),
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_binary_and_decimal_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("2kb"), Ok(2_000));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size(" 100 B "), Ok(100));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_positive_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("4TB").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
    }
}
