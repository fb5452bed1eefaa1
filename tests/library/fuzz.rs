//! Reliability: fuzzing the codec and the scanner with proptest (stable Rust, no
//! cargo-fuzz).
//!
//! Inputs are arbitrary bytes and mutated real records and segments: the Go
//! reference's fixtures (`fixtures/go-reference/*/segment-0`) and logs generated with
//! `walctl::codec::encode_record`, damaged by bit flips, truncations, splices, inserted
//! bytes, zero-filled tails and length prefixes overwritten with huge values
//! (`0xFFFFFFFF`, `0x7FFFFFFF`, `MAX_BODY_LEN + 1`, ...).
//!
//! - `decode_body` never panics, never allocates, and what it returns borrows from its
//!   input.
//! - The scanner, over a whole directory of such segments (held in memory behind a
//!   small `Storage`), never panics and never fails: it always classifies. Every
//!   record it returns has a valid CRC, LSNs go up by exactly 1 (a jump only right
//!   after a segment that ended with a problem), records tile their segment from
//!   offset 0, and every problem names its segment, an offset inside the file (where
//!   the intact records end) and a severity (a torn tail only in the newest segment).
//! - No single allocation during a scan exceeds `max(largest segment, 1 MiB)` plus a
//!   little: a 4 GiB or 2 GiB length prefix is never allocated. A counting global
//!   allocator measures it.
//!
//! `WALCTL_FUZZ_CASES` sets the number of cases of each property (default 4000).

use crate::common;
use walctl::storage::MemStorage;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use proptest::prelude::*;
use walctl::codec::{decode_body, encode_record, record_crc, MAX_BODY_LEN};
use walctl::scan::{Event, ScanOptions, Scanner};
use walctl::storage::ReadStorage;
use walctl::Severity;

// ---------------------------------------------------------------------------------
// Allocation tracking

/// The system allocator, recording the largest single request made by a thread while
/// that thread has tracking switched on (other test threads do not interfere).
struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread-locals may already be gone while a thread shuts down.
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result and the largest single allocation it made on this
/// thread (0 if it allocated nothing).
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, LARGEST.with(|l| l.get()))
}

/// The scanner reads with a 1 MiB buffer, grown only to hold a record the file holds.
const READ_BUFFER: usize = 1 << 20;
/// Room for the scanner's small bookkeeping allocations.
const SLACK: usize = 64 << 10;

fn cases() -> u32 {
    std::env::var("WALCTL_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4000)
}

fn config() -> ProptestConfig {
    common::proptest_config(cases())
}

// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// Inputs

/// The Go reference's segments (read once).
fn fixture_segments() -> &'static [Vec<u8>] {
    static SEGMENTS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEGMENTS.get_or_init(|| {
        common::FIXTURES
            .iter()
            .map(|f| std::fs::read(common::fixture_dir(f).join("segment-0")).unwrap())
            .collect()
    })
}

/// Huge and borderline length-prefix values.
const HUGE: [u32; 6] = [
    u32::MAX,
    0x7FFF_FFFF,
    0x8000_0000,
    MAX_BODY_LEN + 1,
    MAX_BODY_LEN,
    MAX_BODY_LEN - 1,
];

/// A log generated with the codec: `sizes` records (every `cp_every`-th a checkpoint)
/// from LSN `first`, split into segments after the records listed in `cuts`.
fn generated_log(first: u64, sizes: &[usize], cp_every: usize, cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut segs = vec![Vec::new()];
    for (i, &n) in sizes.iter().enumerate() {
        let lsn = first + i as u64;
        let data: Vec<u8> = (0..n).map(|k| (k as u64 ^ lsn) as u8).collect();
        encode_record(
            segs.last_mut().unwrap(),
            lsn,
            &data,
            cp_every > 0 && i % cp_every == cp_every - 1,
        );
        if cuts.contains(&i) && i + 1 < sizes.len() {
            segs.push(Vec::new());
        }
    }
    segs
}

/// Offsets of the length prefixes in a clean segment.
fn record_starts(seg: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= seg.len() {
        out.push(off);
        let len = u32::from_le_bytes(seg[off..off + 4].try_into().unwrap()) as usize;
        off += 4 + len;
    }
    out
}

/// One way to damage a log. Positions are taken modulo what they index.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        seg: usize,
        at: usize,
        bit: u8,
    },
    Truncate {
        seg: usize,
        at: usize,
    },
    /// Copies a range of one segment over or into another.
    Splice {
        from: usize,
        start: usize,
        len: usize,
        to: usize,
        at: usize,
        insert: bool,
    },
    /// Overwrites the length prefix of a record (or 4 bytes anywhere) with `value`.
    Prefix {
        seg: usize,
        record: usize,
        anywhere: bool,
        value: u32,
    },
    Insert {
        seg: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    ZeroTail {
        seg: usize,
        bytes: usize,
    },
    /// Makes a segment empty.
    Empty {
        seg: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let value = prop_oneof![
        3 => proptest::sample::select(HUGE.to_vec()),
        1 => any::<u32>(),
        1 => 0u32..64,
    ];
    prop_oneof![
        6 => (any::<usize>(), any::<usize>(), 0u8..8)
            .prop_map(|(seg, at, bit)| Mutation::Flip { seg, at, bit }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(seg, at)| Mutation::Truncate { seg, at }),
        2 => (any::<usize>(), any::<usize>(), 0usize..300, any::<usize>(), any::<usize>(), any::<bool>())
            .prop_map(|(from, start, len, to, at, insert)| Mutation::Splice { from, start, len, to, at, insert }),
        4 => (any::<usize>(), any::<usize>(), proptest::bool::weighted(0.2), value)
            .prop_map(|(seg, record, anywhere, value)| Mutation::Prefix { seg, record, anywhere, value }),
        1 => (any::<usize>(), any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(seg, at, bytes)| Mutation::Insert { seg, at, bytes }),
        1 => (any::<usize>(), 1usize..64).prop_map(|(seg, bytes)| Mutation::ZeroTail { seg, bytes }),
        1 => any::<usize>().prop_map(|seg| Mutation::Empty { seg }),
    ]
}

fn apply(segs: &mut [Vec<u8>], m: &Mutation) {
    let n = segs.len();
    match m {
        Mutation::Flip { seg, at, bit } => {
            let s = &mut segs[seg % n];
            if !s.is_empty() {
                let i = at % s.len();
                s[i] ^= 1 << bit;
            }
        }
        Mutation::Truncate { seg, at } => {
            let s = &mut segs[seg % n];
            let at = at % (s.len() + 1);
            s.truncate(at);
        }
        Mutation::Splice {
            from,
            start,
            len,
            to,
            at,
            insert,
        } => {
            let src = &segs[from % n];
            let start = start % (src.len() + 1);
            let piece = src[start..(start + len).min(src.len())].to_vec();
            let dst = &mut segs[to % n];
            let at = at % (dst.len() + 1);
            if *insert {
                dst.splice(at..at, piece);
            } else {
                let end = (at + piece.len()).min(dst.len());
                dst.splice(at..end, piece);
            }
        }
        Mutation::Prefix {
            seg,
            record,
            anywhere,
            value,
        } => {
            let s = &mut segs[seg % n];
            let starts = record_starts(s);
            let at = if *anywhere || starts.is_empty() {
                if s.len() < 4 {
                    return;
                }
                record % (s.len() - 3)
            } else {
                starts[record % starts.len()]
            };
            s[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        Mutation::Insert { seg, at, bytes } => {
            let s = &mut segs[seg % n];
            let at = at % (s.len() + 1);
            s.splice(at..at, bytes.iter().copied());
        }
        Mutation::ZeroTail { seg, bytes } => segs[seg % n].extend(std::iter::repeat_n(0, *bytes)),
        Mutation::Empty { seg } => segs[seg % n].clear(),
    }
}

/// A directory of segments: real ones (fixtures, generated logs) or random bytes,
/// then damaged.
fn log_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let generated = (
        1u64..5,
        proptest::collection::vec(
            prop_oneof![4 => 0usize..40, 2 => 40usize..300, 1 => 300usize..3000],
            1..40,
        ),
        0usize..6,
        proptest::collection::vec(0usize..40, 0..4),
    )
        .prop_map(|(first, sizes, cp, cuts)| generated_log(first, &sizes, cp, &cuts));
    let fixture = (0usize..2, any::<bool>()).prop_map(|(i, both)| {
        let f = fixture_segments();
        if both {
            // Two copies: the second one's LSNs restart, a regression.
            vec![f[i].clone(), f[1 - i].clone()]
        } else {
            vec![f[i].clone()]
        }
    });
    let random = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..4);
    let base = prop_oneof![4 => generated, 2 => fixture, 1 => random];
    (base, proptest::collection::vec(mutation(), 0..6)).prop_map(|(mut segs, ms)| {
        for m in &ms {
            apply(&mut segs, m);
        }
        segs
    })
}

/// A record body: a real one (generated or from a fixture), mutated, or random bytes.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let real = (
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(|(lsn, data, cp)| {
            let mut rec = Vec::new();
            encode_record(&mut rec, lsn, &data, cp);
            rec[4..].to_vec()
        });
    let fixture = any::<usize>().prop_map(|i| {
        let segs = fixture_segments();
        let seg = &segs[i % segs.len()];
        let starts = record_starts(seg);
        let at = starts[(i / 2) % starts.len()];
        let len = u32::from_le_bytes(seg[at..at + 4].try_into().unwrap()) as usize;
        seg[at + 4..at + 4 + len].to_vec()
    });
    let edit = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| (0u8, at, bit as usize)),
        any::<usize>().prop_map(|at| (1u8, at, 0)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| (2u8, at, b as usize)),
    ];
    let mutated = (
        prop_oneof![real, fixture],
        proptest::collection::vec(edit, 0..4),
    )
        .prop_map(|(mut b, edits)| {
            for (kind, at, x) in edits {
                match kind {
                    0 if !b.is_empty() => {
                        let i = at % b.len();
                        b[i] ^= 1 << x;
                    }
                    1 => b.truncate(at % (b.len() + 1)),
                    2 => {
                        let i = at % (b.len() + 1);
                        b.insert(i, x as u8);
                    }
                    _ => {}
                }
            }
            b
        });
    prop_oneof![2 => mutated, 1 => proptest::collection::vec(any::<u8>(), 0..64)]
}

// ---------------------------------------------------------------------------------
// Properties

/// Scans `segs` and checks every property, the allocation bound included.
fn check_scan(segs: &[Vec<u8>], opts: ScanOptions) -> Result<(), TestCaseError> {
    let storage: Arc<dyn ReadStorage> = Arc::new(MemStorage::segments(segs));
    let stop = opts.stop_at_first_problem;
    let from = opts.from_lsn;
    let (result, largest) = largest_allocation(|| {
        let mut scanner = Scanner::new(storage, opts)?;
        // (segment index, lsn, offset, len, crc ok)
        let mut recs = Vec::new();
        while let Some(ev) = scanner.next()? {
            if let Event::Record(r) = ev {
                recs.push((
                    r.segment_id,
                    r.lsn,
                    r.offset,
                    r.len,
                    record_crc(r.data, r.lsn) == r.crc,
                ));
            }
        }
        Ok::<_, walctl::Error>((recs, scanner.summaries().to_vec()))
    });
    let biggest = segs.iter().map(Vec::len).max().unwrap_or(0);
    let bound = biggest.max(READ_BUFFER) + SLACK;
    prop_assert!(
        largest <= bound,
        "allocated {largest} bytes at once, bound {bound}"
    );
    let (recs, summaries) = match result {
        Ok(x) => x,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "the scan failed instead of classifying: {e}"
            )))
        }
    };

    // Every segment is summarised (unless stopped at a problem, or skipped by --from).
    let first_id = summaries.first().map_or(0, |s| s.id);
    if !stop {
        prop_assert_eq!(summaries.len() as u64, segs.len() as u64 - first_id);
    }
    if from.is_none() {
        prop_assert_eq!(first_id, 0);
    }
    let mut prev: Option<u64> = None;
    let mut prev_problem = false;
    for s in &summaries {
        let size = segs[s.id as usize].len() as u64;
        prop_assert_eq!(s.size, size);
        prop_assert_eq!(&s.name, &format!("segment-{}", s.id));
        prop_assert!(s.valid_len <= size);
        let mine: Vec<_> = recs.iter().filter(|r| r.0 == s.id).collect();
        prop_assert_eq!(mine.len() as u64, s.records);
        // Records tile the segment from offset 0 up to valid_len.
        let mut off = 0;
        for &&(_, lsn, offset, len, crc_ok) in &mine {
            prop_assert!(crc_ok, "LSN {} returned with a bad CRC", lsn);
            prop_assert_eq!(offset, off);
            prop_assert!(len >= 4 && offset + len <= size);
            off = offset + len;
            prop_assert!(lsn != 0);
            if let Some(p) = prev {
                if prev_problem {
                    prop_assert!(lsn > p, "LSN {} after {}", lsn, p);
                } else {
                    prop_assert_eq!(lsn, p + 1);
                }
            }
            prev = Some(lsn);
            prev_problem = false;
        }
        prop_assert_eq!(off, s.valid_len);
        prop_assert_eq!(s.first_lsn, mine.first().map(|r| r.1));
        prop_assert_eq!(s.last_lsn, mine.last().map(|r| r.1));
        match &s.problem {
            None if s.valid_len == size => {}
            None => {
                // Short of its end only before unwritten (preallocated) zeros of the
                // newest segment.
                let seg = &segs[s.id as usize];
                prop_assert_eq!(
                    s.id as usize,
                    segs.len() - 1,
                    "a clean segment is read to its end"
                );
                prop_assert!(
                    seg[s.valid_len as usize..].iter().all(|&b| b == 0),
                    "a clean segment is read to its end, or to its unwritten zeros"
                );
            }
            Some(p) => {
                prop_assert_eq!(&p.segment, &s.name);
                prop_assert_eq!(p.segment_id, s.id);
                prop_assert!(p.offset < size, "problem at {} of {} bytes", p.offset, size);
                prop_assert_eq!(
                    p.offset,
                    s.valid_len,
                    "the problem is where intact records end"
                );
                prop_assert_eq!(p.last_good_lsn, prev);
                if p.severity == Severity::TornTail {
                    prop_assert_eq!(
                        s.id as usize,
                        segs.len() - 1,
                        "a torn tail is in the newest segment"
                    );
                }
                prev_problem = true;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// decode_body: no panic, no allocation, a result that borrows from the input.
    #[test]
    fn decode_body_never_panics_nor_allocates(body in body_strategy()) {
        let (result, largest) = largest_allocation(|| decode_body(&body));
        prop_assert_eq!(largest, 0, "decode_body allocated");
        if let Ok(rec) = result {
            let range = body.as_ptr_range();
            if !rec.data.is_empty() {
                prop_assert!(range.contains(&rec.data.as_ptr()));
                prop_assert!(rec.data.len() <= body.len());
            }
        }
    }

    /// The scanner over a whole directory of damaged segments.
    #[test]
    fn scanner_always_classifies_within_bounds(
        segs in log_strategy(),
        stop in proptest::bool::weighted(0.2),
        from in proptest::option::weighted(0.2, 0u64..60),
        ahead in proptest::bool::weighted(0.3),
    ) {
        check_scan(&segs, ScanOptions::default()
            .stop_at_first_problem(stop)
            .from_lsn(from)
            // Also through the read-ahead thread, whatever the segment's size.
            .read_ahead_from(if ahead { Some(0) } else { None }))?;
    }
}

/// The allocation tracker sees what it must: a large request, and the scanner's read
/// buffer (so a scan is really tracked).
#[test]
fn the_allocation_tracker_works() {
    let (v, largest) = largest_allocation(|| vec![1u8; 8 << 20]);
    assert!(largest >= 8 << 20, "{largest}");
    drop(v);
    let ((), largest) = largest_allocation(|| {});
    assert_eq!(largest, 0);
    let segs = generated_log(1, &[10, 500, 0, 70, 3000, 5], 3, &[2]);
    let storage: Arc<dyn ReadStorage> = Arc::new(MemStorage::segments(&segs));
    let (records, largest) = largest_allocation(|| {
        let mut scanner = Scanner::new(storage, ScanOptions::default()).unwrap();
        let mut n = 0;
        while let Some(ev) = scanner.next().unwrap() {
            n += matches!(ev, Event::Record(_)) as usize;
        }
        n
    });
    assert_eq!(records, 6);
    assert!(largest >= 4096, "the read buffer: {largest}");
}

/// Huge length prefixes, at the start of the first segment (read by the `--from`
/// peek too) and in the middle: classified, and never allocated.
#[test]
fn huge_length_prefixes_are_never_allocated() {
    let clean = generated_log(1, &[10, 500, 0, 70, 3000, 5], 3, &[2]);
    for value in HUGE {
        for (seg, record) in [(0, 0), (0, 2), (1, 0), (1, 2)] {
            let mut segs = clean.clone();
            apply(
                &mut segs,
                &Mutation::Prefix {
                    seg,
                    record,
                    anywhere: false,
                    value,
                },
            );
            for from in [None, Some(1), Some(4)] {
                let opts = ScanOptions::default().from_lsn(from);
                check_scan(&segs, opts)
                    .unwrap_or_else(|e| panic!("{value:#x} at {seg}/{record}: {e}"));
            }
        }
    }
}
