//! The connection to an object store: archive URLs, configuration from the AWS_*
//! variables and flags, the small runtime that makes the calls synchronous, errors
//! with every credential removed, and writes that never overwrite a segment object.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig,
};

use super::error::ArchiveError;
use super::Result;
use crate::digest::{sha256_hex, short_sha};

/// How to reach an S3-compatible store, beyond what the standard variables say
/// (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
/// AWS_REGION, AWS_ALLOW_HTTP). Set fields win over the variables. Credentials are
/// only ever taken from the environment, never from a flag (flags show in `ps`).
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// Endpoint URL of an S3-compatible store (e.g. `http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Allow plain HTTP (no TLS) to the endpoint.
    pub allow_http: bool,
}

/// How the archive makes sure it never overwrites an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    /// The store honours `If-None-Match: *`: a PUT of an existing object fails.
    Conditional,
    /// The store does not (the reason says how that was found): each write is preceded
    /// by a check that the object does not exist and followed by a read-back.
    CheckThenWrite(String),
}

/// An object in the archive's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Name below the prefix (e.g. `segment-3`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The store's entity tag, when it gives one.
    pub e_tag: Option<String>,
}

/// What [`Archive::put_new`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutOutcome {
    /// The object was created and confirmed.
    Created,
    /// An identical object was already there (an earlier push got that far).
    AlreadyThere,
}

/// An archive: one prefix of one bucket (or directory, or in-memory store).
pub struct Archive {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    endpoint: String,
    bucket: String,
    secrets: Vec<String>,
    mode: Mutex<Option<WriteMode>>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("url", &self.url).finish()
    }
}

/// Whether `s` looks like an archive URL rather than a local path.
pub fn is_archive_url(s: &str) -> bool {
    ["s3://", "file://", "memory://"]
        .iter()
        .any(|p| s.starts_with(p))
}

impl Archive {
    /// Connects to the archive at `url`: `s3://BUCKET[/PREFIX]`, `file:///PATH`
    /// (created by the first upload) or `memory://NAME` (empty, gone with the process).
    /// Nothing is sent to the store yet.
    pub fn open(url: &str, connect: &Connect) -> Result<Archive> {
        let shown = without_userinfo(url);
        let bad = |reason: &str| ArchiveError::BadUrl {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        if shown != url {
            return Err(bad(
                "credentials do not belong in the URL (it shows in `ps` and in logs); \
                 set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
            ));
        }
        let trimmed = url.trim_end_matches('/');
        if let Some(rest) = trimmed.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket: use s3://BUCKET/PREFIX"));
            }
            if !prefix.is_empty()
                && prefix
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == "..")
            {
                return Err(bad("the prefix has an empty, `.` or `..` part"));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(e) = &connect.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &connect.region {
                b = b.with_region(r);
            }
            let endpoint = b
                .get_config_value(&AmazonS3ConfigKey::Endpoint)
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| {
                    let region = b
                        .get_config_value(&AmazonS3ConfigKey::Region)
                        .unwrap_or_else(|| "us-east-1".into());
                    format!("https://s3.{region}.amazonaws.com")
                });
            let store = b
                .with_checksum_algorithm(Checksum::SHA256)
                .with_retry(RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(30),
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(300)),
                )
                // After the client options, which would reset it.
                .with_allow_http(connect.allow_http || env_true("AWS_ALLOW_HTTP"))
                .build()
                .map_err(|e| ArchiveError::BadUrl {
                    url: url.to_string(),
                    reason: redact(&chain_text(&e), &secrets()),
                })?;
            return Self::build(
                Arc::new(store),
                prefix,
                format!("s3://{rest}"),
                endpoint,
                bucket.to_string(),
            );
        }
        if let Some(path) = trimmed.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file URL needs an absolute path: file:///PATH"));
            }
            // Keys under the file system's root: the directory is made by the first
            // upload, never by a command that only reads.
            return Self::build(
                Arc::new(LocalFileSystem::new()),
                path.trim_start_matches('/'),
                format!("file://{path}"),
                "local file system".into(),
                path.to_string(),
            );
        }
        if let Some(name) = trimmed.strip_prefix("memory://") {
            return Self::with_store(Arc::new(InMemory::new()), &format!("memory://{name}"));
        }
        Err(bad("use s3://BUCKET/PREFIX, file:///PATH or memory://NAME"))
    }

    /// An archive over a store the caller built (tests wrap stores to misbehave);
    /// `url` only names it in messages and in the directory's marker.
    pub fn with_store(store: Arc<dyn ObjectStore>, url: &str) -> Result<Archive> {
        Self::build(store, "", url.to_string(), url.to_string(), url.to_string())
    }

    fn build(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        url: String,
        endpoint: String,
        bucket: String,
    ) -> Result<Archive> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ArchiveError::io("start the object-store runtime", &url, e))?;
        Ok(Archive {
            rt,
            store,
            prefix: prefix.to_string(),
            url,
            endpoint,
            bucket,
            secrets: secrets(),
            mode: Mutex::new(None),
        })
    }

    /// The archive's URL (never with credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of object `name` of this archive.
    pub fn object_url(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn key(&self, name: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(name)
        } else {
            ObjPath::from(format!("{}/{name}", self.prefix))
        }
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Turns a store error into an [`ArchiveError`] with credentials removed.
    pub(crate) fn err(&self, op: &str, name: &str, e: object_store::Error) -> ArchiveError {
        use object_store::Error as E;
        let op = if name.is_empty() {
            op.to_string()
        } else {
            format!("{op} {name}")
        };
        match e {
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => ArchiveError::AccessDenied {
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
                op,
            },
            e => {
                let text = redact(&chain_text(&e), &self.secrets);
                let not_found = matches!(e, E::NotFound { .. });
                if is_unreachable(&text) {
                    ArchiveError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        bucket: self.bucket.clone(),
                        op,
                        reason: text,
                    }
                } else if text.contains("NoSuchBucket") {
                    ArchiveError::NoSuchBucket {
                        endpoint: self.endpoint.clone(),
                        bucket: self.bucket.clone(),
                        op,
                    }
                } else if is_denied(&text) {
                    ArchiveError::AccessDenied {
                        endpoint: self.endpoint.clone(),
                        bucket: self.bucket.clone(),
                        op,
                    }
                } else {
                    ArchiveError::Store {
                        op,
                        object: self.object_url(name),
                        message: text,
                        not_found,
                    }
                }
            }
        }
    }

    /// The objects directly in the archive's prefix.
    pub fn list(&self) -> Result<Vec<ObjectInfo>> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        let listed = self
            .block_on(self.store.list_with_delimiter(prefix.as_ref()))
            .map_err(|e| self.err("list", "", e))?;
        let mut out: Vec<ObjectInfo> = listed
            .objects
            .into_iter()
            .filter_map(|m| {
                Some(ObjectInfo {
                    name: m.location.filename()?.to_string(),
                    size: m.size,
                    e_tag: m.e_tag,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Size and entity tag of object `name`, or `None` when it does not exist.
    pub fn head(&self, name: &str) -> Result<Option<ObjectInfo>> {
        match self.block_on(self.store.head(&self.key(name))) {
            Ok(m) => Ok(Some(ObjectInfo {
                name: name.to_string(),
                size: m.size,
                e_tag: m.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("head", name, e)),
        }
    }

    /// The whole of object `name`.
    pub fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.block_on(get_bytes(&*self.store, self.key(name)))
            .map_err(|e| self.err("get", name, e))
    }

    /// Bytes `range` of object `name` (a ranged GET).
    pub fn get_range(&self, name: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let key = self.key(name);
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        self.block_on(async {
            let r = self.store.get_opts(&key, opts).await?;
            r.bytes().await.map(Vec::from)
        })
        .map_err(|e| self.err("get", name, e))
    }

    /// Downloads `names` with up to `parallel` requests in flight, handing each
    /// object to `each` in the order of `names`. Stops at the first error.
    pub(crate) fn get_each(
        &self,
        names: &[String],
        parallel: usize,
        mut each: impl FnMut(&str, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        self.block_on(async {
            let mut stream = futures::stream::iter(names.iter().map(|n| {
                let key = self.key(n);
                let store = self.store.clone();
                async move { (n, get_bytes(&*store, key).await) }
            }))
            .buffered(parallel.max(1));
            while let Some((name, got)) = stream.next().await {
                let bytes = got.map_err(|e| self.err("get", name, e))?;
                each(name, bytes)?;
            }
            Ok(())
        })
    }

    /// Replaces object `name` (the manifest only: it is an index rebuilt from the
    /// segment objects, never a segment).
    pub(crate) fn put_overwrite(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.block_on(self.store.put(&self.key(name), PutPayload::from(bytes)))
            .map(drop)
            .map_err(|e| self.err("put", name, e))
    }

    /// How this store is written without overwriting: found on first use by a probe
    /// object written twice with `If-None-Match: *` (the second write must fail), then
    /// deleted.
    pub(crate) fn write_mode(&self) -> Result<WriteMode> {
        let mut mode = self.mode.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = mode.as_ref() {
            return Ok(m.clone());
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(".walctl-probe-{}-{nanos}", std::process::id());
        let key = self.key(&name);
        let create = || PutOptions::from(PutMode::Create);
        let found = self.block_on(async {
            use object_store::Error as E;
            match self
                .store
                .put_opts(&key, PutPayload::from_static(b"1"), create())
                .await
            {
                Ok(_) => {}
                Err(E::NotImplemented { .. } | E::NotSupported { .. }) => {
                    return Ok(WriteMode::CheckThenWrite(
                        "the store does not support conditional writes".into(),
                    ))
                }
                Err(e) => return Err(e),
            }
            let second = self
                .store
                .put_opts(&key, PutPayload::from_static(b"2"), create())
                .await;
            let _ = self.store.delete(&key).await;
            match second {
                Err(E::AlreadyExists { .. }) => Ok(WriteMode::Conditional),
                Ok(_) => Ok(WriteMode::CheckThenWrite(
                    "the store accepted a second PUT with If-None-Match: * of the same object: \
                     it ignores conditional writes"
                        .into(),
                )),
                Err(E::NotImplemented { .. } | E::NotSupported { .. }) => {
                    Ok(WriteMode::CheckThenWrite(
                        "the store does not support conditional writes".into(),
                    ))
                }
                Err(e) => Err(e),
            }
        });
        let found = found.map_err(|e| self.err("probe conditional writes", "", e))?;
        *mode = Some(found.clone());
        Ok(found)
    }

    /// Creates object `name` holding `bytes` (whose sha256 is `sha`), never replacing
    /// an existing object: an identical one already there is fine, one with other
    /// bytes is a conflict. The new object is confirmed (size, and the bytes read back
    /// when the store cannot be trusted to refuse an overwrite).
    /// Returns the object's entity tag, when the store gives one.
    pub(crate) fn put_new(
        &self,
        name: &str,
        bytes: Vec<u8>,
        sha: &str,
    ) -> Result<(PutOutcome, Option<String>)> {
        let len = bytes.len() as u64;
        let key = self.key(name);
        match self.write_mode()? {
            WriteMode::Conditional => {
                let put = self.block_on(self.store.put_opts(
                    &key,
                    PutPayload::from(bytes),
                    PutOptions::from(PutMode::Create),
                ));
                match put {
                    Ok(r) => {
                        let tag = self.confirm(name, len, sha, r.e_tag, false)?;
                        Ok((PutOutcome::Created, tag))
                    }
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        let tag = self.same_as(name, len, sha)?;
                        Ok((PutOutcome::AlreadyThere, tag))
                    }
                    Err(e) => Err(self.err("put", name, e)),
                }
            }
            WriteMode::CheckThenWrite(_) => {
                if self.head(name)?.is_some() {
                    let tag = self.same_as(name, len, sha)?;
                    return Ok((PutOutcome::AlreadyThere, tag));
                }
                let r = self
                    .block_on(self.store.put(&key, PutPayload::from(bytes)))
                    .map_err(|e| self.err("put", name, e))?;
                let tag = self.confirm(name, len, sha, r.e_tag, true)?;
                Ok((PutOutcome::Created, tag))
            }
        }
    }

    /// Checks that object `name` is the one just written: its size, its entity tag
    /// against the PUT's, and (when asked, or when the tags differ) its bytes. Returns
    /// its entity tag.
    fn confirm(
        &self,
        name: &str,
        len: u64,
        sha: &str,
        put_tag: Option<String>,
        read_back: bool,
    ) -> Result<Option<String>> {
        let Some(now) = self.head(name)? else {
            return Err(ArchiveError::Conflict {
                object: self.object_url(name),
                detail: "it was gone right after its upload".into(),
            });
        };
        if now.size != len {
            return Err(ArchiveError::Conflict {
                object: self.object_url(name),
                detail: format!(
                    "after the upload it holds {} bytes instead of {len}",
                    now.size
                ),
            });
        }
        let tags_differ = matches!((&put_tag, &now.e_tag), (Some(a), Some(b)) if a != b);
        if read_back || tags_differ {
            return self.same_as(name, len, sha);
        }
        Ok(now.e_tag)
    }

    /// Checks that object `name` holds exactly `len` bytes with sha256 `sha`, and
    /// returns the entity tag of the object it read.
    pub(crate) fn same_as(&self, name: &str, len: u64, sha: &str) -> Result<Option<String>> {
        let (there, tag) = self
            .block_on(get_tagged(&*self.store, self.key(name)))
            .map_err(|e| self.err("get", name, e))?;
        let there_sha = sha256_hex(&there);
        if there.len() as u64 != len || there_sha != sha {
            return Err(ArchiveError::Conflict {
                object: self.object_url(name),
                detail: format!(
                    "the object has {} bytes with sha256 {}, the local segment {len} bytes with sha256 {}",
                    there.len(),
                    short_sha(&there_sha),
                    short_sha(sha)
                ),
            });
        }
        Ok(tag)
    }
}

async fn get_bytes(store: &dyn ObjectStore, key: ObjPath) -> object_store::Result<Vec<u8>> {
    get_tagged(store, key).await.map(|(bytes, _)| bytes)
}

/// The whole object and its entity tag.
async fn get_tagged(
    store: &dyn ObjectStore,
    key: ObjPath,
) -> object_store::Result<(Vec<u8>, Option<String>)> {
    let r = store.get(&key).await?;
    let tag = r.meta.e_tag.clone();
    let chunks: Vec<_> = r.into_stream().try_collect().await?;
    let total = chunks.iter().map(|c| c.len()).sum();
    let mut out = Vec::with_capacity(total);
    for c in chunks {
        out.extend_from_slice(&c);
    }
    Ok((out, tag))
}

/// `url` with any `user:password@` before the host replaced, for messages.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn env_true(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The credential values in the environment, to be removed from any message.
fn secrets() -> Vec<String> {
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ACCESS_KEY_ID",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok())
    .filter(|v| v.len() >= 4)
    .collect()
}

fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), "<redacted>");
    }
    out
}

/// An error and its causes on one line, each cause once.
fn chain_text(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !line.contains(&t) {
            line.push_str(": ");
            line.push_str(&t);
        }
        cause = c.source();
    }
    // One line: store errors may carry a multi-line XML body.
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_unreachable(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "error sending request",
        "connection refused",
        "dns error",
        "tcp connect error",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// Signature and key errors some stores send with a status object_store does not
/// map to permission errors.
fn is_denied(text: &str) -> bool {
    [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
    ]
    .iter()
    .any(|p| text.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_every_secret() {
        let s = vec!["AKIAEXAMPLE".to_string(), "s3cr3t/value".to_string()];
        let out = redact("key AKIAEXAMPLE signed with s3cr3t/value failed", &s);
        assert_eq!(out, "key <redacted> signed with <redacted> failed");
    }

    #[test]
    fn urls_are_checked() {
        let c = Connect::default();
        for bad in [
            "s3://",
            "s3:///x",
            "http://x/y",
            "file://relative",
            "s3://b/a//c",
        ] {
            assert!(
                matches!(Archive::open(bad, &c), Err(ArchiveError::BadUrl { .. })),
                "{bad}"
            );
        }
        let err = Archive::open("s3://AKIAX:s3cr3t@bucket/p", &c)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t") && !err.contains("AKIAX"), "{err}");
        assert!(
            err.contains("credentials do not belong in the URL"),
            "{err}"
        );
        let a = Archive::open("s3://bucket/some/prefix/", &c).unwrap();
        assert_eq!(a.url(), "s3://bucket/some/prefix");
        assert_eq!(a.key("segment-1").as_ref(), "some/prefix/segment-1");
        assert!(is_archive_url("s3://b") && !is_archive_url("/var/lib/wal"));
    }

    /// A store that honours `If-None-Match` is written conditionally; the probe that
    /// found it out is gone, and the answer is kept (a lying store:
    /// `tests/archive.rs`, through the push's `PushEvent::WriteMode`).
    #[test]
    fn a_conditional_store_is_found_conditional_and_keeps_no_probe() {
        let store = Arc::new(InMemory::new());
        let a = Archive::with_store(store.clone(), "memory://test").unwrap();
        assert_eq!(a.write_mode().unwrap(), WriteMode::Conditional);
        assert_eq!(a.write_mode().unwrap(), WriteMode::Conditional);
        let objects = a.block_on(store.list_with_delimiter(None)).unwrap().objects;
        assert!(objects.is_empty(), "{objects:?}");
    }
}
