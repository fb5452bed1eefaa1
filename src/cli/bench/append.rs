//! The append workloads: [`Wal`] with the chosen sync policy, writer threads and
//! batch size, beside a baseline that writes the very same encoded records with
//! `write()` (one call per record or batch) and, for a durable policy, `fdatasync()`
//! after each.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use walctl::codec::encode_record;
use walctl::segment::list_segments;
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, SyncStats, Wal, WalOptions};
use walctl::Result;

use super::histogram::Histogram;
use super::model::*;

impl Bench<'_, '_> {
    pub(super) fn append_workload(&mut self, w: Workload) -> Result<WorkloadResult> {
        let p = self.append_params(w);
        let stop = self
            .cfg
            .stop
            .unwrap_or(Stop::Duration(Duration::from_millis(750)));
        let job = AppendJob {
            w,
            payload: Payload::new(p.entry_size),
            durable: p.sync == SyncPolicy::Always,
            want_ceiling: p.sync != SyncPolicy::Always && p.writers == 1,
            p,
            stop,
        };
        let mut sums = AppendSums::default();
        for round in 0..self.rounds {
            let r = round + 1;
            for walctl_side in sides_in_order(round) {
                if walctl_side {
                    self.walctl_round(&job, r, &mut sums)?;
                } else {
                    self.baseline_round(&job, r, &mut sums)?;
                }
            }
        }
        let names = AppendNames::new(w, &job.p);
        let rr = round_ratios(&sums.ours, &sums.base);
        let (ours, base) = (sums.ours.measure(), sums.base.measure());
        Ok(WorkloadResult {
            workload: w.name(),
            label: names.label,
            short: names.short,
            status: "ok",
            reason: None,
            ratio: ratio(&ours, &base),
            round_ratios: rr,
            walctl: Some(ours),
            baseline_what: names.baseline_what,
            baseline: Some(base),
            ceiling: job.want_ceiling.then(|| sums.ceil.measure()),
            prezeroed: job.durable.then(|| sums.zeroed.measure()),
        })
    }

    /// Round `r`'s walctl side, then (buffered, one writer) the page-cache ceiling
    /// for as many entries.
    fn walctl_round(&mut self, job: &AppendJob, r: usize, sums: &mut AppendSums) -> Result<()> {
        let name = job.w.name();
        self.step(&format!("{name}: walctl, round {r}"));
        let dir = self.fresh_dir(&format!("{name}-r{r}-walctl"))?;
        let side = walctl_append(&dir, &job.p, job.stop, &job.payload)?;
        let entries = side.entries;
        sums.ours.add(side);
        self.settle(&dir);
        if job.want_ceiling {
            let dir = self.fresh_dir(&format!("{name}-r{r}-ceiling"))?;
            sums.ceil
                .add(ceiling_append(&dir, &job.p, entries, &job.payload)?);
            self.settle(&dir);
        }
        Ok(())
    }

    /// Round `r`'s baseline side, then (durable) the baseline into a pre-zeroed file.
    fn baseline_round(&mut self, job: &AppendJob, r: usize, sums: &mut AppendSums) -> Result<()> {
        let name = job.w.name();
        self.step(&format!("{name}: baseline, round {r}"));
        let dir = self.fresh_dir(&format!("{name}-r{r}-baseline"))?;
        sums.base
            .add(baseline_append(&dir, &job.p, job.stop, &job.payload)?);
        self.settle(&dir);
        if job.durable {
            self.step(&format!("{name}: pre-zeroed baseline, round {r}"));
            let dir = self.fresh_dir(&format!("{name}-r{r}-prezeroed"))?;
            sums.zeroed
                .add(prezeroed_append(&dir, &job.p, job.stop, &job.payload)?);
            self.settle(&dir);
        }
        Ok(())
    }
}

/// One append workload as every round runs it.
struct AppendJob {
    w: Workload,
    p: AppendParams,
    stop: Stop,
    payload: Payload,
    /// Sync always: the pre-zeroed baseline runs too.
    durable: bool,
    /// Buffered with one writer: the page-cache ceiling runs too.
    want_ceiling: bool,
}

/// Each side's measurements over the rounds.
#[derive(Default)]
struct AppendSums {
    ours: Sum,
    base: Sum,
    ceil: Sum,
    zeroed: Sum,
}

/// How an append workload is named in the report.
struct AppendNames {
    /// The long label, e.g. "durable append: sync always, 1 writer, 100 B entries".
    label: String,
    /// The table's, e.g. "durable: always, 1w, 100 B".
    short: String,
    /// What its baseline does.
    baseline_what: String,
}

impl AppendNames {
    fn new(w: Workload, p: &AppendParams) -> AppendNames {
        let label = format!(
            "{} append: sync {}, {} writer{}, {}{} B entries",
            w.name(),
            sync_name(p.sync),
            p.writers,
            if p.writers == 1 { "" } else { "s" },
            if p.batch > 1 {
                format!("batches of {}, ", p.batch)
            } else {
                String::new()
            },
            p.entry_size
        );
        let short = format!(
            "{}: {}, {}w{}, {} B",
            w.name(),
            sync_name(p.sync),
            p.writers,
            if p.batch > 1 {
                format!(", x{}", p.batch)
            } else {
                String::new()
            },
            p.entry_size
        );
        let per = if p.batch > 1 { "batch" } else { "record" };
        let threads = if p.writers > 1 {
            format!(", {} threads", p.writers)
        } else {
            String::new()
        };
        let baseline_what = match p.sync {
            SyncPolicy::Always => format!("write()+fdatasync() per {per}{threads}"),
            SyncPolicy::Never => format!("write() per {per}{threads}"),
            SyncPolicy::Interval(_) => {
                format!("write() per {per}, fdatasync() per interval{threads}")
            }
        };
        AppendNames {
            label,
            short,
            baseline_what,
        }
    }
}

/// Deterministic, incompressible-looking payloads: entry `i` is a window into a
/// pseudo-random buffer, so consecutive entries (and their CRCs) differ.
pub(super) struct Payload {
    pub(super) bytes: Vec<u8>,
    pub(super) size: usize,
}

pub(super) const PAYLOAD_WINDOWS: usize = 4096;

impl Payload {
    pub(super) fn new(size: usize) -> Payload {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes = (0..size + PAYLOAD_WINDOWS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Payload { bytes, size }
    }

    #[inline]
    pub(super) fn get(&self, i: usize) -> &[u8] {
        let off = i.wrapping_mul(61) % PAYLOAD_WINDOWS;
        &self.bytes[off..off + self.size]
    }
}

/// Per-thread share of a count-bounded run: calls of `batch` entries.
pub(super) fn calls_for(stop: Stop, writers: usize, batch: usize, w: usize) -> Option<u64> {
    match stop {
        Stop::Duration(_) => None,
        Stop::Count(n) => {
            let share = n / writers as u64 + u64::from((w as u64) < n % writers as u64);
            Some(share.div_ceil(batch as u64).max(1))
        }
    }
}

/// Runs `body(writer, calls_limit, deadline)` on `writers` threads released together;
/// returns the wall time from release to the last thread's end and what they returned.
pub(super) fn run_threads<T: Send>(
    writers: usize,
    stop: Stop,
    batch: usize,
    body: impl Fn(usize, Option<u64>, Option<Instant>) -> Result<T> + Sync,
) -> Result<(f64, Vec<T>)> {
    let barrier = Barrier::new(writers + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (barrier, body) = (&barrier, &body);
                s.spawn(move || {
                    barrier.wait();
                    let deadline = match stop {
                        Stop::Duration(d) => Some(Instant::now() + d),
                        Stop::Count(_) => None,
                    };
                    let out = body(w, calls_for(stop, writers, batch, w), deadline);
                    (out, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut outs = Vec::with_capacity(writers);
        let mut end = start;
        for h in handles {
            let (out, t) = h.join().expect("benchmark thread panicked");
            end = end.max(t);
            outs.push(out?);
        }
        Ok((end.duration_since(start).as_secs_f64(), outs))
    })
}

/// The timed loop shared by every append side: calls `op(call)` until the limit or
/// deadline and records each call's latency (one clock read per call).
#[inline]
pub(super) fn timed_loop(
    limit: Option<u64>,
    deadline: Option<Instant>,
    mut op: impl FnMut(u64) -> Result<()>,
) -> Result<(u64, Histogram)> {
    let mut hist = Histogram::new();
    let mut calls = 0u64;
    let mut prev = Instant::now();
    loop {
        if limit.is_some_and(|l| calls >= l) {
            break;
        }
        op(calls)?;
        calls += 1;
        let now = Instant::now();
        hist.record(now.duration_since(prev).as_nanos() as u64);
        prev = now;
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
    }
    Ok((calls, hist))
}

pub(super) fn walctl_append(
    dir: &Path,
    p: &AppendParams,
    stop: Stop,
    payload: &Payload,
) -> Result<Side> {
    let wal = Wal::open(
        dir,
        WalOptions::default()
            .max_segment_size(p.segment_size)
            .max_segments(0)
            .sync(p.sync),
    )?;
    let (secs, outs) = run_threads(p.writers, stop, p.batch, |w, limit, deadline| {
        let mut batch: Vec<&[u8]> = Vec::with_capacity(p.batch);
        timed_loop(limit, deadline, |call| {
            let i = (call as usize).wrapping_mul(p.writers) + w;
            if p.batch == 1 {
                wal.append(payload.get(i))?;
            } else {
                batch.clear();
                batch.extend((0..p.batch).map(|k| payload.get(i * p.batch + k)));
                wal.append_batch(&batch)?;
            }
            Ok(())
        })
    })?;
    // Before close, whose final fsync covers nothing the workload waited for. Only
    // where every append waits for its fsync: elsewhere the few fsyncs say nothing.
    let syncs = if p.sync == SyncPolicy::Always {
        wal.sync_stats()
    } else {
        SyncStats::default()
    };
    wal.close()?;
    drop(wal);
    let storage = FileStorage::open(dir).map_err(io_err("open", dir))?;
    let bytes = list_segments(&storage)?.iter().map(|s| s.size).sum();
    Ok(Side {
        syncs,
        ..side_from(secs, outs, p.batch, bytes)
    })
}

pub(super) fn side_from(secs: f64, outs: Vec<(u64, Histogram)>, batch: usize, bytes: u64) -> Side {
    let mut hist = Histogram::new();
    let mut calls = 0;
    for (c, h) in &outs {
        calls += c;
        hist.merge(h);
    }
    Side {
        entries: calls * batch as u64,
        bytes,
        secs,
        hist: Some(hist),
        rss_kib: None,
        syncs: SyncStats::default(),
    }
}

/// The same records, encoded with the same codec, written with plain system calls.
pub(super) fn baseline_append(
    dir: &Path,
    p: &AppendParams,
    stop: Stop,
    payload: &Payload,
) -> Result<Side> {
    let path = dir.join("baseline");
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let (secs, outs) = run_threads(p.writers, stop, p.batch, |w, limit, deadline| {
        let mut buf = Vec::with_capacity(p.batch * (p.entry_size + 32));
        let mut last_sync = Instant::now();
        timed_loop(limit, deadline, |call| {
            buf.clear();
            for k in 0..p.batch {
                let i = ((call as usize).wrapping_mul(p.writers) + w) * p.batch + k;
                encode_record(&mut buf, i as u64 + 1, payload.get(i), false);
            }
            (&file).write_all(&buf).map_err(io_err("write", &path))?;
            let sync = match p.sync {
                SyncPolicy::Always => true,
                SyncPolicy::Never => false,
                SyncPolicy::Interval(d) => last_sync.elapsed() >= d,
            };
            if sync {
                file.sync_data().map_err(io_err("fdatasync", &path))?;
                last_sync = Instant::now();
            }
            Ok(())
        })
    })?;
    let bytes = file.metadata().map_err(io_err("stat", &path))?.len();
    Ok(side_from(secs, outs, p.batch, bytes))
}

/// Bytes pre-zeroed for [`prezeroed_append`]; writes past them append.
const PREZEROED: u64 = 64 << 20;

/// [`baseline_append`] into a file first filled with [`PREZEROED`] fsynced zeros:
/// each commit is a positioned `write()` + `fdatasync()` that changes no size, the
/// most a durable writer can get from this disk.
pub(super) fn prezeroed_append(
    dir: &Path,
    p: &AppendParams,
    stop: Stop,
    payload: &Payload,
) -> Result<Side> {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    let path = dir.join("prezeroed");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..PREZEROED >> 20 {
        file.write_all(&zeros).map_err(io_err("write", &path))?;
    }
    file.sync_all().map_err(io_err("fsync", &path))?;
    let end = AtomicU64::new(0);
    let (secs, outs) = run_threads(p.writers, stop, p.batch, |w, limit, deadline| {
        let mut buf = Vec::with_capacity(p.batch * (p.entry_size + 32));
        timed_loop(limit, deadline, |call| {
            buf.clear();
            for k in 0..p.batch {
                let i = ((call as usize).wrapping_mul(p.writers) + w) * p.batch + k;
                encode_record(&mut buf, i as u64 + 1, payload.get(i), false);
            }
            let at = end.fetch_add(buf.len() as u64, Ordering::Relaxed);
            file.write_all_at(&buf, at)
                .map_err(io_err("write", &path))?;
            file.sync_data().map_err(io_err("fdatasync", &path))?;
            Ok(())
        })
    })?;
    Ok(side_from(secs, outs, p.batch, end.into_inner()))
}

/// The page-cache ceiling for a non-durable writer: the same number of records,
/// encoded into a 1 MiB buffer, one `write()` per MiB.
pub(super) fn ceiling_append(
    dir: &Path,
    p: &AppendParams,
    entries: u64,
    payload: &Payload,
) -> Result<Side> {
    let path = dir.join("ceiling");
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let mut buf = Vec::with_capacity(2 << 20);
    let calls = entries.div_ceil(p.batch as u64);
    let start = Instant::now();
    let (calls, hist) = timed_loop(Some(calls), None, |call| {
        for k in 0..p.batch {
            let i = call as usize * p.batch + k;
            encode_record(&mut buf, i as u64 + 1, payload.get(i), false);
        }
        if buf.len() >= 1 << 20 {
            file.write_all(&buf).map_err(io_err("write", &path))?;
            buf.clear();
        }
        Ok(())
    })?;
    file.write_all(&buf).map_err(io_err("write", &path))?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = file.metadata().map_err(io_err("stat", &path))?.len();
    Ok(side_from(secs, vec![(calls, hist)], p.batch, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shared_out_between_writers() {
        let total: u64 = (0..3)
            .map(|w| calls_for(Stop::Count(10), 3, 1, w).unwrap())
            .sum();
        assert_eq!(total, 10);
        assert_eq!(calls_for(Stop::Count(10), 1, 4, 0), Some(3));
        assert_eq!(calls_for(Stop::Duration(Duration::ZERO), 1, 1, 0), None);
    }
}
