//! `walctl bench` end to end with tiny sizes: the JSON and table shapes, child
//! workloads that fail reported as unavailable (never a crash), the temporary
//! directory removed (or kept with --keep). Speed is never asserted.

use crate::common;

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn walctl() -> Command {
    Command::cargo_bin("walctl").unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const ALL: [&str; 8] = [
    "durable",
    "concurrent",
    "batch",
    "buffered",
    "scan",
    "scan-cold",
    "verify",
    "dump",
];

#[test]
fn json_has_every_workload_with_a_same_run_baseline_and_cleans_up() {
    let parent = common::tempdir();
    let out = walctl()
        .args(["bench", "--json", "--count", "20", "--rounds", "1"])
        .args(["--scan-size", "256KiB", "--segment-size", "64KiB"])
        .arg("--dir")
        .arg(parent.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.trim_end().lines().count(), 1, "one JSON document");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["machine"]["cpus"].as_u64().unwrap() >= 1);
    assert!(v["machine"]["filesystem"].is_string());
    assert_eq!(v["rounds"], 1);
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALL);
    for r in results {
        let name = r["workload"].as_str().unwrap();
        assert!(r["baseline_what"].as_str().is_some_and(|s| !s.is_empty()));
        match r["status"].as_str().unwrap() {
            "ok" => {
                let w = &r["walctl"];
                let b = &r["baseline"];
                assert!(w["entries"].as_u64().unwrap() >= 20, "{name}: {w}");
                assert!(w["bytes"].as_u64().unwrap() > 0, "{name}");
                assert!(w["entries_per_sec"].as_f64().unwrap() > 0.0, "{name}");
                assert!(b["entries_per_sec"].as_f64().unwrap() > 0.0, "{name}");
                assert_eq!(r["round_ratios"].as_array().unwrap().len(), 1, "{name}");
                let ratio = r["ratio"].as_f64().unwrap();
                let expect =
                    w["entries_per_sec"].as_f64().unwrap() / b["entries_per_sec"].as_f64().unwrap();
                assert!((ratio - expect).abs() <= 1e-9 * expect.max(1.0), "{name}");
                if ["durable", "concurrent", "batch", "buffered"].contains(&name) {
                    let l = &w["latency"];
                    let (p50, p99, p999) = (
                        l["p50_ns"].as_u64().unwrap(),
                        l["p99_ns"].as_u64().unwrap(),
                        l["p999_ns"].as_u64().unwrap(),
                    );
                    assert!(p50 <= p99 && p99 <= p999, "{name}: {l}");
                    assert!(p999 <= l["max_ns"].as_u64().unwrap(), "{name}: {l}");
                    // The durable workloads count their fsyncs; 20 appends of one
                    // writer need 20, 16 writers share them, a batch of 100 needs one.
                    let f = &w["fsyncs"];
                    if name == "buffered" {
                        assert!(f.is_null(), "{name}: {f}");
                    } else {
                        let n = f["fsyncs"].as_u64().unwrap();
                        let per = f["records_per_fsync"].as_f64().unwrap();
                        let entries = w["entries"].as_u64().unwrap() as f64;
                        assert!((per * n as f64 - entries).abs() < 0.5, "{name}: {f}");
                        assert!(f["mean_us"].as_f64().unwrap() > 0.0, "{name}: {f}");
                        match name {
                            "durable" => assert_eq!(per, 1.0, "{name}: {f}"),
                            "batch" => assert!(per >= 100.0, "{name}: {f}"),
                            _ => assert!(per >= 1.0, "{name}: {f}"),
                        }
                    }
                } else {
                    // The read workloads all read the same log.
                    assert_eq!(w["entries"], b["entries"], "{name}");
                }
                if name == "verify" || name == "dump" {
                    assert!(w["max_rss_kib"].as_u64().unwrap() > 0, "{name}");
                }
            }
            "unavailable" => {
                // Only the child-process workloads may be unavailable, with a reason.
                assert!(name == "verify" || name == "dump", "{name}: {r}");
                assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()));
                assert!(r["walctl"].is_null());
            }
            other => panic!("{name}: status {other}"),
        }
    }
    let buffered = results
        .iter()
        .find(|r| r["workload"] == "buffered")
        .unwrap();
    assert!(buffered["ceiling"]["entries_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(
        entries(parent.path()),
        Vec::<String>::new(),
        "the benchmark's directory must be removed"
    );
}

#[test]
fn table_on_a_pipe_and_default_temp_dir_removed() {
    let tmp = common::tempdir();
    let out = walctl()
        .env("TMPDIR", tmp.path())
        .args([
            "bench",
            "-w",
            "buffered,scan",
            "--count",
            "50",
            "--rounds",
            "1",
        ])
        .args(["--scan-size", "64KiB"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for col in [
        "workload",
        "entries/s",
        "MB/s",
        "p50",
        "p99.9",
        "baseline",
        "ratio",
    ] {
        assert!(text.contains(col), "missing column {col}:\n{text}");
    }
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    // Header and two workloads.
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[1].contains("buffered: never, 1w, 100 B"), "{text}");
    assert!(rows[2].contains("scan: "), "{text}");
    assert!(text.contains("page-cache ceiling"), "{text}");
    assert!(!text.contains('\u{1b}'), "no escape codes on a pipe");
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn keep_leaves_the_files_and_says_where() {
    let parent = common::tempdir();
    let assert = walctl()
        .args(["bench", "-w", "scan", "--keep", "--rounds", "1"])
        .args(["--scan-size", "128KiB", "--segment-size", "32KiB"])
        .arg("--dir")
        .arg(parent.path())
        .assert()
        .success();
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    let kept = entries(parent.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("walctl-bench-"), "{kept:?}");
    assert!(
        stderr.contains("kept") && stderr.contains(&kept[0]),
        "{stderr}"
    );
    let log = parent.path().join(&kept[0]).join("scan-log");
    let segments = common::segment_names(&log);
    assert!(segments.len() >= 4, "{segments:?}");
    // What was kept is a clean log.
    let report = walctl::reader::WalReader::open(&log)
        .unwrap()
        .scan()
        .unwrap();
    assert_eq!(report.worst(), None);
    assert!(report.records > 0);
}

#[test]
fn bad_knobs_are_usage_errors() {
    for args in [
        &["bench", "--count", "0"][..],
        &["bench", "--workload", "nope"],
        &["bench", "--count", "5", "--duration", "1s"],
        &["bench", "--writers", "0"],
        &["bench", "--scan-size", "lots"],
        &["bench", "--sync", "sometimes"],
    ] {
        walctl().args(args).assert().code(2);
    }
    let parent = common::tempdir();
    walctl()
        .args(["bench", "--entry-size", "1GiB", "--dir"])
        .arg(parent.path())
        .assert()
        .code(1);
}

#[test]
fn knobs_reach_the_append_workloads() {
    let parent = common::tempdir();
    let out = walctl()
        .args(["bench", "--json", "-w", "durable", "--rounds", "1"])
        .args(["--sync", "never", "--writers", "3", "--batch", "4"])
        .args(["--entry-size", "10", "--count", "24", "--dir"])
        .arg(parent.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["workload"], "durable");
    let label = r["label"].as_str().unwrap();
    assert!(label.contains("sync never"), "{label}");
    assert!(label.contains("3 writers"), "{label}");
    assert!(label.contains("batches of 4"), "{label}");
    assert!(label.contains("10 B"), "{label}");
    // 24 entries shared by 3 writers in batches of 4: 2 calls each.
    assert_eq!(r["walctl"]["entries"], 24);
    assert_eq!(r["walctl"]["latency"]["calls"], 6);
    assert_eq!(r["baseline"]["entries"], 24);
    assert_eq!(
        r["baseline_what"].as_str().unwrap(),
        "write() per batch, 3 threads"
    );
}
