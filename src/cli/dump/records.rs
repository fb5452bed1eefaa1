//! How `walctl dump` prints records, with and without `--salvage`: which records
//! ([`Filter`]), in what form ([`Printer`]: readable lines, or NDJSON built by hand
//! in one reused buffer, numbers and strings formatted without allocating), and
//! where the scan is for the progress bar ([`Progress`]).

use std::io::{self, Write};

use base64::Engine;
use walctl::scan::ScannedRecord;
use walctl::segment::{SegmentFile, SEGMENT_PREFIX};

/// Progress is redrawn after this many bytes.
const PROGRESS_STEP: u64 = 4 << 20;

/// Payload rendering of `--data-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum DataFormat {
    /// Text when valid UTF-8, base64 otherwise.
    Auto,
    /// Text; invalid UTF-8 sequences become U+FFFD.
    Utf8,
    /// Lower-case hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
    /// No payload.
    None,
}

/// Which records dump prints: `--from`, `--to`, `--limit`, `--checkpoints-only`
/// and `--grep` together.
pub(super) struct Filter {
    from: u64,
    to: Option<u64>,
    limit: Option<u64>,
    checkpoints_only: bool,
    grep: Option<regex::bytes::Regex>,
    /// Records printed so far.
    pub(super) printed: u64,
}

/// What to do with a record.
pub(super) enum Take {
    /// Not wanted; read on.
    Skip,
    /// Print it; `last`: nothing after it is wanted.
    Print { last: bool },
    /// Nothing from here on is wanted.
    Stop,
}

impl Filter {
    pub(super) fn new(
        from: u64,
        to: Option<u64>,
        limit: Option<u64>,
        checkpoints_only: bool,
        grep: Option<regex::bytes::Regex>,
    ) -> Self {
        Filter {
            from,
            to,
            limit,
            checkpoints_only,
            grep,
            printed: 0,
        }
    }

    /// Decides about `r` (records come in LSN order) and counts it when printed.
    pub(super) fn take(&mut self, r: &ScannedRecord<'_>) -> Take {
        if self.limit == Some(0) {
            return Take::Stop;
        }
        if r.lsn < self.from {
            return Take::Skip;
        }
        if self.to.is_some_and(|to| r.lsn > to) {
            return Take::Stop;
        }
        let wanted = (!self.checkpoints_only || r.checkpoint)
            && self.grep.as_ref().is_none_or(|re| re.is_match(r.data));
        self.printed += wanted as u64;
        let last = self.to == Some(r.lsn) || self.limit.is_some_and(|l| self.printed >= l);
        match (wanted, last) {
            (true, last) => Take::Print { last },
            (false, true) => Take::Stop,
            (false, false) => Take::Skip,
        }
    }
}

/// Tracks the byte position of the scan for the progress bar, cheaply.
pub(super) struct Progress {
    enabled: bool,
    /// (segment id, bytes of all segments before it).
    bases: Vec<(u64, u64)>,
    seg: Option<u64>,
    base: u64,
    next_draw: u64,
}

impl Progress {
    pub(super) fn new(segments: &[SegmentFile], enabled: bool) -> Self {
        let mut bases = Vec::new();
        let mut sum = 0;
        for s in segments {
            bases.push((s.id, sum));
            sum += s.size;
        }
        Progress {
            enabled,
            bases,
            seg: None,
            base: 0,
            next_draw: 0,
        }
    }

    /// The position to draw after `r`, when it is time to redraw.
    pub(super) fn advance(&mut self, r: &ScannedRecord<'_>) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        if self.seg != Some(r.segment_id) {
            self.seg = Some(r.segment_id);
            self.base = self
                .bases
                .iter()
                .find(|(id, _)| *id == r.segment_id)
                .map_or(self.base, |(_, b)| *b);
        }
        let pos = self.base + r.offset + r.len;
        if pos >= self.next_draw {
            self.next_draw = pos + PROGRESS_STEP;
            return Some(pos);
        }
        None
    }
}

/// Output is written in chunks of about this size.
const OUT_CHUNK: usize = 64 * 1024;

/// Formats records straight into one reused output buffer, written out in large
/// chunks (each ends with a whole line).
pub(super) struct Printer<W: Write> {
    out: W,
    buf: Vec<u8>,
    json: bool,
    format: DataFormat,
    preview: usize,
}

impl<W: Write> Printer<W> {
    /// Prints to `out`: NDJSON with `json`, readable lines with a payload preview
    /// of `preview` characters (0: all) otherwise.
    pub(super) fn new(out: W, json: bool, format: DataFormat, preview: usize) -> Self {
        Printer {
            out,
            buf: Vec::with_capacity(OUT_CHUNK * 2),
            json,
            format,
            preview,
        }
    }

    pub(super) fn record(&mut self, r: &ScannedRecord<'_>) -> io::Result<()> {
        if self.json {
            json_record(&mut self.buf, r, self.format);
        } else {
            text_record(&mut self.buf, r, self.format, self.preview);
        }
        if self.buf.len() >= OUT_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out everything formatted so far.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

/// "00" to "99", for formatting two digits at a time.
static DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Appends the decimal digits of `v`.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Bytes that cannot appear raw inside a JSON string.
static JSON_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the 8 bytes of `w` needs escaping in a JSON string: a control
/// byte (< 0x20), `"` or `\\`. Exact for "any", word-at-a-time (SWAR).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_0x20 = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q & HIGH;
    let bs = w ^ (ONES * b'\\' as u64);
    let backslash = bs.wrapping_sub(ONES) & !bs & HIGH;
    (below_0x20 | quote | backslash) != 0
}

/// Appends `s` as the inside of a JSON string: quotes, backslashes and control
/// characters escaped, everything else (non-ASCII included) passed through.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip clean 8-byte words; look at bytes one by one only near an escape.
        let end = match bytes.get(i..i + 8) {
            Some(w) if !word_needs_escape(u64::from_le_bytes(w.try_into().unwrap())) => {
                i += 8;
                continue;
            }
            Some(_) => i + 8,
            None => bytes.len(),
        };
        while i < end {
            let b = bytes[i];
            if JSON_ESCAPE[b as usize] {
                out.extend_from_slice(&bytes[run..i]);
                run = i + 1;
                push_escape(out, b);
            }
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xf) as usize],
        ]),
    }
}

fn push_hex(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len() * 2);
    for &b in data {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
}

fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    // Cannot overflow: data is bounded by the scanner's maximum record size.
    let len = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = engine
        .encode_slice(data, &mut out[start..])
        .unwrap_or_default();
    out.truncate(start + written);
}

fn json_record(out: &mut Vec<u8>, r: &ScannedRecord<'_>, format: DataFormat) {
    out.extend_from_slice(b"{\"lsn\":");
    push_u64(out, r.lsn);
    out.extend_from_slice(if r.checkpoint {
        b",\"checkpoint\":true,\"segment\":\""
    } else {
        b",\"checkpoint\":false,\"segment\":\""
    });
    out.extend_from_slice(SEGMENT_PREFIX.as_bytes());
    push_u64(out, r.segment_id);
    out.extend_from_slice(b"\",\"offset\":");
    push_u64(out, r.offset);
    out.extend_from_slice(b",\"len\":");
    push_u64(out, r.len);
    out.extend_from_slice(b",\"crc\":");
    push_u64(out, r.crc as u64);
    let text = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(b",\"data\":\"");
        push_json_str(out, s);
        out.extend_from_slice(b"\"");
    };
    let base64 = |out: &mut Vec<u8>| {
        out.extend_from_slice(b",\"data\":\"");
        push_base64(out, r.data);
        out.extend_from_slice(b"\",\"data_encoding\":\"base64\"");
    };
    match format {
        DataFormat::Auto => match std::str::from_utf8(r.data) {
            Ok(s) => text(out, s),
            Err(_) => base64(out),
        },
        DataFormat::Utf8 => text(out, &String::from_utf8_lossy(r.data)),
        DataFormat::Base64 => base64(out),
        DataFormat::Hex => {
            out.extend_from_slice(b",\"data\":\"");
            push_hex(out, r.data);
            out.extend_from_slice(b"\",\"data_encoding\":\"hex\"");
        }
        DataFormat::None => {}
    }
    out.extend_from_slice(b"}\n");
}

/// `       82 ckpt segment-0 @1234        40 B  "snapshot"`
fn text_record(out: &mut Vec<u8>, r: &ScannedRecord<'_>, format: DataFormat, preview: usize) {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(128);
    let _ = write!(
        s,
        "{:>8} {:<4} {}{} @{:<10} {:>8} B",
        r.lsn,
        if r.checkpoint { "ckpt" } else { "" },
        SEGMENT_PREFIX,
        r.segment_id,
        r.offset,
        r.len,
    );
    let limit = if preview == 0 { usize::MAX } else { preview };
    let shown = match format {
        DataFormat::None => None,
        DataFormat::Auto => Some(match std::str::from_utf8(r.data) {
            Ok(text) => quoted_preview(&mut s, text, limit),
            // The encoding JSON's auto mode uses.
            Err(_) => encoded_preview(&mut s, "base64:", r.data, limit, DataFormat::Base64),
        }),
        DataFormat::Utf8 => Some(quoted_preview(
            &mut s,
            &String::from_utf8_lossy(r.data),
            limit,
        )),
        DataFormat::Hex => Some(encoded_preview(&mut s, "hex:", r.data, limit, format)),
        DataFormat::Base64 => Some(encoded_preview(&mut s, "base64:", r.data, limit, format)),
    };
    if shown == Some(false) {
        let _ = write!(s, " ({} bytes)", r.data.len());
    }
    s.push('\n');
    out.extend_from_slice(s.as_bytes());
}

/// `  "text"` with every quote, backslash, control or invisible character escaped so
/// nothing reaches the terminal raw; `…` when cut. Returns whether all was shown.
fn quoted_preview(s: &mut String, text: &str, limit: usize) -> bool {
    s.push_str("  \"");
    let mut complete = true;
    for (n, c) in text.chars().enumerate() {
        if n == limit {
            complete = false;
            break;
        }
        match c {
            '\'' => s.push(c),
            c => s.extend(c.escape_debug()),
        }
    }
    s.push('"');
    if !complete {
        s.push('…');
    }
    complete
}

/// `  hex:00ff…` of the first bytes that fit in `limit` characters.
fn encoded_preview(
    s: &mut String,
    label: &str,
    data: &[u8],
    limit: usize,
    format: DataFormat,
) -> bool {
    s.push_str("  ");
    s.push_str(label);
    let take = match format {
        DataFormat::Hex => limit / 2,
        _ => limit / 4 * 3,
    }
    .max(1)
    .min(data.len());
    let mut buf = Vec::new();
    if format == DataFormat::Hex {
        push_hex(&mut buf, &data[..take]);
    } else {
        push_base64(&mut buf, &data[..take]);
    }
    s.push_str(std::str::from_utf8(&buf).unwrap_or_default());
    let complete = take == data.len();
    if !complete {
        s.push('…');
    }
    complete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(data: &[u8]) -> ScannedRecord<'_> {
        ScannedRecord {
            lsn: 18446744073709551615,
            data,
            crc: 4294967295,
            checkpoint: true,
            segment_id: 12,
            offset: 0,
            len: 99,
        }
    }

    #[test]
    fn json_lines_parse_and_round_trip_every_byte() {
        let mut all: Vec<u8> = (0u8..=0x7f).collect();
        all.extend_from_slice("é✓🦀\u{2028}\"\\".as_bytes());
        let text = String::from_utf8(all.clone()).unwrap();
        let mut out = Vec::new();
        json_record(&mut out, &rec(&all), DataFormat::Auto);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"].as_str().unwrap(), text);
        assert_eq!(v["lsn"].as_u64(), Some(u64::MAX));
        assert_eq!(v["crc"].as_u64(), Some(u32::MAX as u64));
        assert_eq!(v["segment"], "segment-12");
        assert!(v.get("data_encoding").is_none());

        for (format, enc) in [
            (DataFormat::Auto, "base64"),
            (DataFormat::Base64, "base64"),
            (DataFormat::Hex, "hex"),
        ] {
            let bin = [0u8, 0xff, 0xfe, b'a'];
            let mut out = Vec::new();
            json_record(&mut out, &rec(&bin), format);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["data_encoding"], enc);
            let expect = if enc == "hex" {
                "00fffe61".to_string()
            } else {
                base64::engine::general_purpose::STANDARD.encode(bin)
            };
            assert_eq!(v["data"], expect.as_str());
        }
    }

    proptest::proptest! {
        #[test]
        fn json_strings_round_trip(s in "(?s).{0,40}", bytes in proptest::collection::vec(0u8..0x80, 0..40)) {
            // Arbitrary text, and ASCII dense in control bytes, quotes and backslashes.
            for text in [s, String::from_utf8(bytes).unwrap()] {
                let mut out = vec![b'"'];
                push_json_str(&mut out, &text);
                out.push(b'"');
                let back: String = serde_json::from_slice(&out).unwrap();
                proptest::prop_assert_eq!(back, text);
            }
        }
    }

    #[test]
    fn swar_escape_check_matches_the_table() {
        for b in 0..=255u8 {
            for (pos, fill) in
                (0..8).flat_map(|p| [b'a', 0x20, 0x21, 0x23, 0x5d, 0x80, 0xff].map(|f| (p, f)))
            {
                let mut w = [fill; 8];
                w[pos] = b;
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(w)),
                    JSON_ESCAPE[b as usize],
                    "byte {b:#x} at {pos} among {fill:#x}"
                );
            }
        }
    }

    #[test]
    fn numbers_format_like_display() {
        for v in [0u64, 1, 9, 10, 99, 100, 12345678901234, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn text_preview_never_prints_control_bytes() {
        let mut out = Vec::new();
        text_record(
            &mut out,
            &rec(b"a\x1b[31mred\x07\r\n\t\x7f\xe2\x80\xae"),
            DataFormat::Auto,
            60,
        );
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with('\n'));
        let body = &line[..line.len() - 1];
        assert!(
            body.chars().all(|c| !c.is_control() && c != '\u{202e}'),
            "{body:?}"
        );
        assert!(body.contains("ckpt"));
    }
}
