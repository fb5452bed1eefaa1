//! Decoding entries as `walctl append` and `walctl checkpoint` take them: UTF-8, hex
//! or base64, from arguments, files or standard input, bounded before anything large
//! is held in memory.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use walctl::codec::MAX_DATA_LEN;

use super::args::Encoding;
use super::sys;

fn base64_engine() -> GeneralPurpose {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

fn hex_nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("{:?}", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Decodes `input` per `enc`, appending to `out`. On error `out` is left as it was and
/// the message says what is wrong and where in `input`.
pub fn decode_into(enc: Encoding, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let before = out.len();
    let res = match enc {
        Encoding::Utf8 => match std::str::from_utf8(input) {
            Ok(_) => {
                out.extend_from_slice(input);
                Ok(())
            }
            Err(e) => Err(format!(
                "invalid UTF-8 at byte {} (use --encoding base64 or hex, or -0, for binary data)",
                e.valid_up_to()
            )),
        },
        Encoding::Hex => decode_hex(input, out),
        Encoding::Base64 => decode_base64(input, out),
    };
    if res.is_err() {
        out.truncate(before);
    }
    res
}

/// Hex digits, two per byte; ASCII whitespace anywhere is ignored (the same for
/// arguments, lines and whole documents). Errors name the offending byte.
fn decode_hex(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.reserve(input.len() / 2);
    let mut high: Option<(u8, usize)> = None;
    let mut digits = 0usize;
    for (pos, &b) in input.iter().enumerate() {
        if b.is_ascii_whitespace() {
            continue;
        }
        let Some(n) = hex_nibble(b) else {
            return Err(format!(
                "invalid hex digit {} at byte {pos}",
                describe_byte(b)
            ));
        };
        digits += 1;
        match high.take() {
            None => high = Some((n, pos)),
            Some((h, _)) => out.push(h << 4 | n),
        }
    }
    match high {
        None => Ok(()),
        Some((_, pos)) => Err(format!(
            "invalid hex: odd number of digits ({digits}, whitespace not counted): the last, {} \
             at byte {pos}, has no pair",
            describe_byte(input[pos])
        )),
    }
}

/// Standard base64; ASCII whitespace anywhere is ignored. Errors name the offending
/// byte by its place in `input`.
fn decode_base64(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let compact: std::borrow::Cow<[u8]> = if input.iter().any(u8::is_ascii_whitespace) {
        input
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect::<Vec<u8>>()
            .into()
    } else {
        input.into()
    };
    // Where the n-th byte that is not whitespace sits in `input`.
    let original = |n: usize| {
        input
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_ascii_whitespace())
            .nth(n)
            .map_or(input.len(), |(i, _)| i)
    };
    base64_engine()
        .decode_vec(&compact, out)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, b) => format!(
                "invalid base64: {} at byte {}",
                describe_byte(b),
                original(at)
            ),
            base64::DecodeError::InvalidLastSymbol(at, b) => format!(
                "invalid base64: last symbol {} at byte {} leaves stray bits",
                describe_byte(b),
                original(at)
            ),
            e => format!("invalid base64: {e}"),
        })
}

/// The longest encoded form of a record of at most [`MAX_DATA_LEN`] bytes.
pub(super) fn max_encoded_len(enc: Option<Encoding>) -> usize {
    match enc {
        None | Some(Encoding::Utf8) => MAX_DATA_LEN,
        Some(Encoding::Hex) => 2 * MAX_DATA_LEN,
        Some(Encoding::Base64) => MAX_DATA_LEN.div_ceil(3) * 4,
    }
}

fn too_large(what: &str) -> anyhow::Error {
    anyhow!("{what} is larger than the maximum record size ({MAX_DATA_LEN} bytes)")
}

/// Decodes a whole document (a file or all of standard input): raw bytes without an
/// encoding; hex and base64 may be wrapped (ASCII whitespace is ignored).
pub fn decode_whole(enc: Option<Encoding>, raw: Vec<u8>, what: &str) -> anyhow::Result<Vec<u8>> {
    let data = match enc {
        None => raw,
        Some(Encoding::Utf8) => {
            let mut out = Vec::new();
            decode_into(Encoding::Utf8, &raw, &mut out).map_err(|m| anyhow!("{what}: {m}"))?;
            out
        }
        Some(enc) => {
            let mut out = Vec::new();
            decode_into(enc, &raw, &mut out).map_err(|m| anyhow!("{what}: {m}"))?;
            out
        }
    };
    if data.len() > MAX_DATA_LEN {
        return Err(too_large(what));
    }
    Ok(data)
}

/// Input held in memory while it is not yet known to fit a record; the rest waits in
/// an unlinked temporary file, so that refused input never costs more than this.
pub(super) const IN_MEMORY_MAX: usize = 8 << 20;
/// Bytes asked of one read of a file or of standard input read whole.
const WHOLE_CHUNK: usize = 1 << 20;

/// The most raw bytes a document may have: wrapped hex/base64 carries whitespace, so
/// an eighth more is allowed.
fn raw_limit(enc: Option<Encoding>) -> u64 {
    (match enc {
        None | Some(Encoding::Utf8) => MAX_DATA_LEN,
        e => max_encoded_len(e) + max_encoded_len(e) / 8,
    }) as u64
}

/// Counts, as a document is read, the bytes its decoding can be at most.
pub(super) struct DecodedBound {
    pub(super) enc: Option<Encoding>,
    pub(super) significant: u64,
}

impl DecodedBound {
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        self.significant += match self.enc {
            None | Some(Encoding::Utf8) => bytes.len(),
            Some(Encoding::Hex) => bytes.iter().filter(|b| !b.is_ascii_whitespace()).count(),
            Some(Encoding::Base64) => bytes
                .iter()
                .filter(|b| !b.is_ascii_whitespace() && **b != b'=')
                .count(),
        } as u64;
    }

    /// Significant bytes that, read on top of those so far, make the decoding too
    /// large for a record (at least 1 while it still fits).
    fn room(&self) -> u64 {
        let over = MAX_DATA_LEN as u64 + 1;
        let needed = match self.enc {
            None | Some(Encoding::Utf8) => over,
            Some(Encoding::Hex) => 2 * over,
            Some(Encoding::Base64) => (4 * over).div_ceil(3),
        };
        needed.saturating_sub(self.significant).max(1)
    }

    pub(super) fn decoded(&self) -> u64 {
        match self.enc {
            None | Some(Encoding::Utf8) => self.significant,
            Some(Encoding::Hex) => self.significant / 2,
            Some(Encoding::Base64) => self.significant * 3 / 4,
        }
    }
}

fn refused_after(what: &str, read: u64) -> anyhow::Error {
    anyhow!(
        "{what} is larger than the maximum record size ({MAX_DATA_LEN} bytes): refused after \
         reading {read} bytes of it; nothing was written"
    )
}

/// Reads all of `r`, stopping as soon as what was read cannot fit a record (at most
/// the limit plus one byte is read). Past [`IN_MEMORY_MAX`] bytes the input waits in
/// an unlinked temporary file until it is known to fit, so refused input costs
/// little memory, however large it is.
fn read_bounded(mut r: impl Read, enc: Option<Encoding>, what: &str) -> anyhow::Result<Vec<u8>> {
    let limit = raw_limit(enc);
    let mut bound = DecodedBound {
        enc,
        significant: 0,
    };
    let mut mem = Vec::new();
    let mut spill: Option<std::fs::File> = None;
    let mut chunk = vec![0u8; WHOLE_CHUNK];
    let mut total = 0u64;
    loop {
        // Never past the byte that shows the input cannot fit.
        let want = (limit + 1 - total)
            .min(bound.room())
            .min(WHOLE_CHUNK as u64) as usize;
        let n = match r.read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("read {what}"))),
        };
        if n == 0 {
            break;
        }
        let bytes = &chunk[..n];
        total += n as u64;
        bound.feed(bytes);
        if total > limit || bound.decoded() > MAX_DATA_LEN as u64 {
            return Err(refused_after(what, total));
        }
        match &mut spill {
            None if mem.len() + n <= IN_MEMORY_MAX => mem.extend_from_slice(bytes),
            _ => {
                if spill.is_none() {
                    spill = Some(tempfile::tempfile().with_context(|| {
                        format!("create a temporary file to hold {what} while it is read")
                    })?);
                }
                let f = spill.as_mut().expect("just created");
                f.write_all(bytes)
                    .with_context(|| format!("buffer {what} in a temporary file"))?;
            }
        }
    }
    let Some(mut f) = spill else {
        return Ok(mem);
    };
    // It fits: now it may take the memory it needs.
    let mut all = Vec::with_capacity(total as usize);
    all.append(&mut mem);
    drop(mem);
    use std::io::Seek;
    f.rewind()
        .and_then(|()| f.read_to_end(&mut all))
        .with_context(|| format!("read back {what} from its temporary file"))?;
    Ok(all)
}

/// Refuses, before reading any of it, a regular file whose size alone says it cannot
/// fit a record.
fn check_size(size: u64, enc: Option<Encoding>, what: &str) -> anyhow::Result<()> {
    let limit = raw_limit(enc);
    if size > limit {
        bail!(
            "{what} is {size} bytes, larger than {} ({MAX_DATA_LEN} bytes{}): refused before \
             reading it; nothing was written",
            if enc.is_none() || enc == Some(Encoding::Utf8) {
                "the maximum record size".to_string()
            } else {
                "any encoding of the largest record can be".to_string()
            },
            if enc.is_none() || enc == Some(Encoding::Utf8) {
                String::new()
            } else {
                format!(" decoded, {limit} bytes encoded with whitespace")
            }
        );
    }
    Ok(())
}

/// Reads a file named on the command line, checking its size before reading.
pub fn read_file_arg(path: &Path, enc: Option<Encoding>) -> anyhow::Result<Vec<u8>> {
    let what = path.display().to_string();
    let f = std::fs::File::open(path).with_context(|| format!("open {what}"))?;
    let meta = f.metadata().with_context(|| format!("stat {what}"))?;
    if meta.is_dir() {
        bail!("{what} is a directory, not a file");
    }
    if meta.is_file() {
        check_size(meta.len(), enc, &what)?;
    }
    let raw = read_bounded(f, enc, &what)?;
    decode_whole(enc, raw, &what)
}

/// Reads all of standard input as one document (a regular file redirected to it is
/// refused by its size, before it is read).
pub fn read_stdin_whole(enc: Option<Encoding>) -> anyhow::Result<Vec<u8>> {
    if let Some(size) = sys::stdin_file_size() {
        check_size(size, enc, "standard input")?;
    }
    let raw = read_bounded(io::stdin().lock(), enc, "standard input")?;
    decode_whole(enc, raw, "standard input")
}

/// Decodes a command-line argument (text unless an encoding says otherwise).
pub fn decode_arg(enc: Option<Encoding>, arg: &OsString, n: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    decode_into(enc.unwrap_or(Encoding::Utf8), arg.as_bytes(), &mut out)
        .map_err(|m| anyhow!("argument {n}: {m}"))?;
    if out.len() > MAX_DATA_LEN {
        return Err(too_large(&format!("argument {n}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders() {
        let mut out = Vec::new();
        decode_into(Encoding::Hex, b"DeadBEEF", &mut out).unwrap();
        assert_eq!(out, b"\xde\xad\xbe\xef");
        out.clear();
        decode_into(Encoding::Base64, b"aGk", &mut out).unwrap();
        decode_into(Encoding::Base64, b"aGk=", &mut out).unwrap();
        assert_eq!(out, b"hihi");
        assert!(decode_into(Encoding::Hex, b"abc", &mut out)
            .unwrap_err()
            .contains("odd"));
        assert!(decode_into(Encoding::Base64, b"a!==", &mut out).is_err());
        assert!(decode_into(Encoding::Utf8, b"ok\xc3", &mut out)
            .unwrap_err()
            .contains("at byte 2"));
        assert_eq!(out, b"hihi", "failed decodes leave the output as it was");
        assert_eq!(
            decode_whole(Some(Encoding::Base64), b"aGVs\nbG8=\n".to_vec(), "x").unwrap(),
            b"hello"
        );
    }
}
