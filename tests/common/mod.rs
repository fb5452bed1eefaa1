//! Shared helpers for the integration tests: the fixtures, their EXPECTED.json, and
//! small tools to copy, cut and flip real log files.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

/// Directory of a Go-reference fixture inside the project's own copy.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/go-reference")
        .join(name)
}

/// The names of all Go-reference fixtures.
pub const FIXTURES: &[&str] = &["basic", "checkpoints"];

/// One entry of a fixture's EXPECTED.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedEntry {
    pub lsn: u64,
    pub checkpoint: bool,
    pub data: Vec<u8>,
    pub crc: u32,
    pub segment: String,
    pub offset: u64,
    pub record_len: u64,
}

/// A fixture's EXPECTED.json.
pub struct Expected {
    pub json: Value,
    pub entries: Vec<ExpectedEntry>,
}

impl Expected {
    pub fn max_segment_size(&self) -> u64 {
        self.json["wal_options"]["max_segment_size"]
            .as_u64()
            .unwrap()
    }
    pub fn max_segments(&self) -> usize {
        self.json["wal_options"]["max_segments"].as_u64().unwrap() as usize
    }
    /// (name, size, sha256) of every segment.
    pub fn segments(&self) -> Vec<(String, u64, String)> {
        self.json["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["size"].as_u64().unwrap(),
                    s["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

pub fn expected(name: &str) -> Expected {
    let text = fs::read_to_string(fixture_dir(name).join("EXPECTED.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let entries = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| ExpectedEntry {
            lsn: e["lsn"].as_u64().unwrap(),
            checkpoint: e["is_checkpoint"].as_bool().unwrap(),
            data: base64::engine::general_purpose::STANDARD
                .decode(e["data_b64"].as_str().unwrap())
                .unwrap(),
            crc: e["crc"].as_u64().unwrap() as u32,
            segment: e["segment"].as_str().unwrap().to_string(),
            offset: e["offset"].as_u64().unwrap(),
            record_len: e["record_len"].as_u64().unwrap(),
        })
        .collect();
    Expected { json, entries }
}

/// Copies the segment files of a fixture (not EXPECTED.json) into `dst`, writable.
pub fn copy_fixture(name: &str, dst: &Path) {
    copy_segments(&fixture_dir(name), dst);
}

/// Copies the segment files of the log in `from` into `dst` (made if needed),
/// writable: a fresh copy of a real log to damage.
pub fn copy_segments(from: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let fname = entry.file_name();
        if fname.to_string_lossy().starts_with("segment-") {
            let to = dst.join(&fname);
            fs::copy(entry.path(), &to).unwrap();
            let mut perm = fs::metadata(&to).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            fs::set_permissions(&to, perm).unwrap();
        }
    }
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("walctl-test-")
        .tempdir()
        .unwrap()
}

/// Cuts `file` to `len` bytes.
pub fn cut(file: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Flips bit `bit` (0..8) of byte `offset` in `file`.
pub fn flip_bit(file: &Path, offset: u64, bit: u8) {
    let mut bytes = fs::read(file).unwrap();
    bytes[offset as usize] ^= 1 << bit;
    fs::write(file, bytes).unwrap();
}

pub fn sha256_file(path: &Path) -> String {
    walctl::quarantine::sha256_hex(&fs::read(path).unwrap())
}

/// Names of the segment files in `dir`, ordered by id (none if `dir` does not exist,
/// e.g. a writer killed before it created it).
pub fn segment_names(dir: &Path) -> Vec<String> {
    let rd = match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        rd => rd.unwrap(),
    };
    let mut ids: Vec<u64> = rd
        .filter_map(|e| {
            walctl::segment::parse_segment_name(&e.unwrap().file_name().to_string_lossy())
        })
        .collect();
    ids.sort();
    ids.into_iter().map(walctl::segment::segment_name).collect()
}

pub mod follow;
pub mod sim;

/// A small seeded random number generator (xorshift64*): tests print the seed so a
/// failure can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed: any seed (0 included) gives a good non-zero state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The seed from environment variable `var` if set, else one from the clock;
    /// printed either way.
    pub fn from_env(var: &str) -> (Self, u64) {
        let seed = std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{var}={seed}");
        (Rng::new(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A count from environment variable `var`, else `default`.
pub fn env_count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `Wal::open`, retried for up to 5 s while the lock looks held: a child process being
/// started by another test thread holds a copy of the lock's descriptor between its
/// fork and exec.
pub fn wal_open_retrying(
    dir: &Path,
    opts: walctl::writer::WalOptions,
) -> walctl::Result<walctl::writer::Wal> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match walctl::writer::Wal::open(dir, opts.clone()) {
            Err(walctl::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            r => return r,
        }
    }
}

/// The exit code of `walctl verify --quiet --dir DIR`.
pub fn verify_code(dir: &Path) -> Option<i32> {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("walctl"))
        .args(["verify", "--quiet", "--dir"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap()
        .code()
}

/// All a finished child wrote on its piped stderr.
pub fn read_stderr(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).unwrap();
    }
    stderr
}

/// A proptest configuration of `cases` cases that keeps failing cases beside the test's
/// source file (`tests/library/fuzz.rs` → `tests/library/fuzz.proptest-regressions`).
/// Proptest's default would look for a `main.rs` above the file and use
/// `tests/proptest-regressions/` instead, now that the tests are modules of an area.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence};
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}
