//! The latency histogram of the append workloads.

use serde::Serialize;

/// Latency percentiles of single calls, in nanoseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Slowest call.
    pub max_ns: u64,
    /// Calls measured.
    pub calls: u64,
}

/// A log-linear latency histogram: exact below 128 ns, then 64 buckets per power of
/// two (under 1.6 % error), constant memory, two instructions per record.
#[derive(Clone)]
pub(super) struct Histogram {
    pub(super) counts: Vec<u64>,
    pub(super) total: u64,
    pub(super) max: u64,
}

pub(super) const SUB_BITS: u32 = 6;
pub(super) const SUB: u64 = 1 << SUB_BITS;

impl Histogram {
    pub(super) fn new() -> Histogram {
        Histogram {
            counts: vec![0; (SUB as usize) * (64 - SUB_BITS as usize + 1)],
            total: 0,
            max: 0,
        }
    }

    #[inline]
    pub(super) fn index(v: u64) -> usize {
        if v < 2 * SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= SUB_BITS + 1
        let m = e - SUB_BITS;
        (SUB as usize) * m as usize + (v >> m) as usize
    }

    /// The middle of bucket `i`'s value range.
    pub(super) fn value(i: usize) -> u64 {
        if i < 2 * SUB as usize {
            return i as u64;
        }
        let m = (i as u64 / SUB) - 1;
        let sub = i as u64 - SUB * m;
        let low = sub << m;
        low + ((1u64 << m) >> 1)
    }

    #[inline]
    pub(super) fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    pub(super) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub(super) fn percentile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    pub(super) fn latency(&self) -> Latency {
        Latency {
            p50_ns: self.percentile(0.50),
            p99_ns: self.percentile(0.99),
            p999_ns: self.percentile(0.999),
            max_ns: self.max,
            calls: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_close() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            123_456,
            9_999_999,
            u64::MAX,
        ] {
            let i = Histogram::index(v);
            assert!(i >= last, "index must grow with the value ({v})");
            last = i;
            assert!(i < Histogram::new().counts.len());
            let back = Histogram::value(i);
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.02, "{v} came back as {back}");
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let l = h.latency();
        assert!((l.p50_ns as f64 - 500_000.0).abs() < 10_000.0, "{l:?}");
        assert!((l.p99_ns as f64 - 990_000.0).abs() < 20_000.0, "{l:?}");
        assert_eq!(l.max_ns, 1_000_000);
        assert_eq!(l.calls, 1000);
    }
}
