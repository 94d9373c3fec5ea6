//! S3-compatible object storage as an off-site store (AWS S3, MinIO, Ceph RGW, moto...).
//!
//! Uploads stream: bytes written into the sink travel in 1 MiB messages over a bounded
//! channel to a task on a private runtime that sends `PART_SIZE` parts, at most
//! `PARTS_IN_FLIGHT` at a time — so memory stays bounded whatever the dump's size. An
//! object smaller than one part is sent with a single PUT; a larger one is a multipart
//! upload, completed only when the sink finished cleanly and aborted otherwise, so a
//! half-written object never appears under its key.

use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::sync::mpsc;

use splice_dr_bridge::PrivateRuntime;

use super::{s3_auth, BackupStore, Fill, ObjectInfo, StoreError};
use crate::config::OffsiteConfig;

/// Size of one multipart part (S3 needs at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 << 20;
/// Parts uploaded concurrently.
const PARTS_IN_FLIGHT: usize = 2;
/// Size of one message from the writing thread to the upload task.
const MESSAGE_SIZE: usize = 1 << 20;

/// A bucket (and key prefix) reached through the S3 API.
pub struct S3Store {
    /// Where the client's futures and the upload tasks run.
    rt: PrivateRuntime,
    store: Arc<AmazonS3>,
    prefix: String,
    location: String,
}

/// The certificates of a PEM file (`ca_file`): at least one, or an error naming the file.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<object_store::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    match object_store::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!(
            "ca_file {}: no PEM certificate in it",
            path.display()
        )),
        Err(e) => Err(format!("ca_file {}: {e}", path.display())),
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("{what}: {e}"))
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3Store {
    /// Prepares a client from the repository's config, with credentials from its key files
    /// or the AWS chain in the environment (`s3_auth`). Nothing is contacted yet; a wrong
    /// endpoint or key, or temporary credentials that cannot be had, show up in `repo
    /// check` and in runs.
    pub fn new<R>(cfg: &OffsiteConfig<R>) -> Result<Self, StoreError> {
        // reqwest is built without a crypto provider: install rustls' ring provider as the
        // process default (kept when the daemon, or anyone, installed one first). The
        // daemon's `tls::ensure_crypto_provider` does the same for its other clients.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bucket = cfg.bucket.clone().unwrap_or_default();
        let repository = format!("S3 repository {}", cfg.name);
        let chosen = s3_auth::choose(cfg, &|name| std::env::var(name).ok())
            .map_err(|e| failed(&repository, e))?;
        // Fail within seconds when the endpoint is down (the default retries for minutes):
        // a backup run then says so, and `repo check` answers before the operator gives up.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        };
        let mut options = object_store::ClientOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5));
        if let Some(path) = &cfg.ca_file {
            for cert in read_ca_file(path).map_err(|e| failed(&repository, e))? {
                options = options.with_root_certificate(cert);
            }
        }
        // Everything but the credentials comes from the config alone (not `from_env`):
        // see `s3_auth` for why no AWS_ENDPOINT or AWS_REGION may redirect backups.
        let mut b = AmazonS3Builder::new()
            .with_retry(retry)
            .with_client_options(options)
            .with_bucket_name(&bucket)
            .with_region(&cfg.region)
            .with_virtual_hosted_style_request(!cfg.path_style);
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        let credentials = chosen.provider(&b, &cfg.name)?;
        let store = b
            .with_credentials(credentials)
            .build()
            .map_err(|e| failed(&repository, e))?;
        let rt = PrivateRuntime::start("S3", 2).map_err(|e| failed("S3 client", e))?;
        Ok(S3Store {
            rt,
            store: Arc::new(store),
            prefix: cfg.prefix.trim_matches('/').to_string(),
            location: cfg.location(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn relative(&self, p: &ObjectPath) -> String {
        let full = p.as_ref();
        if self.prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(&format!("{}/", self.prefix))
                .unwrap_or(full)
                .to_string()
        }
    }

    /// Runs `fut` on the private runtime from any thread; a panic in it goes on here.
    fn block<T: Send>(&self, fut: impl Future<Output = T> + Send) -> T {
        self.rt
            .run(fut)
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

/// What the writing thread sends the upload task.
enum Message {
    Data(Bytes),
    Finish,
}

/// Receives the sink's bytes and uploads them: one PUT when everything fits in one part,
/// a multipart upload otherwise. Returns without committing anything unless `Finish`
/// arrived (the writer failed or was dropped).
async fn upload(
    store: Arc<AmazonS3>,
    path: ObjectPath,
    mut rx: mpsc::Receiver<Message>,
) -> Result<(), String> {
    let mut head: Vec<Bytes> = Vec::new();
    let mut head_len = 0usize;
    let mut multipart: Option<WriteMultipart> = None;
    loop {
        match rx.recv().await {
            Some(Message::Data(b)) => {
                if let Some(m) = multipart.as_mut() {
                    m.wait_for_capacity(PARTS_IN_FLIGHT)
                        .await
                        .map_err(|e| e.to_string())?;
                    m.put(b);
                    continue;
                }
                head_len += b.len();
                head.push(b);
                if head_len > PART_SIZE {
                    let up = store
                        .put_multipart(&path)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut m = WriteMultipart::new_with_chunk_size(up, PART_SIZE);
                    for b in head.drain(..) {
                        m.put(b);
                    }
                    multipart = Some(m);
                }
            }
            Some(Message::Finish) => break,
            None => {
                if let Some(m) = multipart {
                    let _ = m.abort().await;
                }
                return Err("the upload was abandoned before its end".into());
            }
        }
    }
    match multipart {
        Some(m) => m.finish().await.map(|_| ()).map_err(|e| e.to_string()),
        None => {
            let payload: object_store::PutPayload = head.into_iter().collect();
            store
                .put(&path, payload)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// The sink handed to `fill`: batches writes into `MESSAGE_SIZE` messages.
struct UploadSink {
    tx: mpsc::Sender<Message>,
    buf: Vec<u8>,
}

impl UploadSink {
    fn send(&mut self, msg: Message) -> std::io::Result<()> {
        self.tx
            .blocking_send(msg)
            .map_err(|_| std::io::Error::other("the S3 upload stopped (see the error below)"))
    }
}

impl Write for UploadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= MESSAGE_SIZE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(MESSAGE_SIZE));
        self.send(Message::Data(Bytes::from(chunk)))
    }
}

/// Reads an object's body as it arrives from the download task.
struct DownloadReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
    key: String,
}

impl Read for DownloadReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!("{}: {e}", self.key)));
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl BackupStore for S3Store {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn put(&self, key: &str, fill: Fill<'_>) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel(2);
        let task = self
            .rt
            .handle()
            .spawn(upload(self.store.clone(), self.path(key), rx));
        let mut sink = UploadSink {
            tx,
            buf: Vec::with_capacity(MESSAGE_SIZE),
        };
        let written = fill(&mut sink).and_then(|()| sink.flush());
        if written.is_ok() {
            let _ = sink.send(Message::Finish);
        }
        drop(sink);
        let uploaded = self
            .block(task)
            .map_err(|e| failed(key, e))?
            .map_err(|e| failed(&format!("uploading {key} to {}", self.location), e));
        match written {
            Err(e) => Err(failed(&format!("reading what goes into {key}"), e)),
            Ok(()) => uploaded,
        }
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        let store = self.store.clone();
        let path = self.path(key);
        let first = self.block(async move { store.get(&path).await });
        let body = match first {
            Ok(r) => r.into_stream(),
            Err(e) if is_not_found(&e) => return Err(StoreError::NotFound(key.into())),
            Err(e) => return Err(failed(&format!("reading {key} from {}", self.location), e)),
        };
        let (tx, rx) = mpsc::channel(4);
        self.rt.handle().spawn(async move {
            let mut body = body;
            while let Some(chunk) = body.next().await {
                let stop = chunk.is_err();
                if tx.send(chunk.map_err(|e| e.to_string())).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Box::new(DownloadReader {
            rx,
            current: Bytes::new(),
            key: key.into(),
        }))
    }

    fn list_dirs(&self) -> Result<Vec<String>, StoreError> {
        let store = self.store.clone();
        let root = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let listed = self
            .block(async move { store.list_with_delimiter(root.as_ref()).await })
            .map_err(|e| failed(&format!("listing {}", self.location), e))?;
        let mut out: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        out.sort();
        Ok(out)
    }

    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let store = self.store.clone();
        let path = self.path(dir);
        let metas = self
            .block(async move {
                let mut out = Vec::new();
                let mut s = store.list(Some(&path));
                while let Some(m) = s.next().await {
                    out.push(m?);
                }
                Ok::<_, object_store::Error>(out)
            })
            .map_err(|e| failed(&format!("listing {dir} in {}", self.location), e))?;
        let mut out: Vec<ObjectInfo> = metas
            .iter()
            .map(|m| ObjectInfo {
                key: self.relative(&m.location),
                size: m.size,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let store = self.store.clone();
        let path = self.path(key);
        match self.block(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(failed(&format!("looking up {key} in {}", self.location), e)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let store = self.store.clone();
        let path = self.path(key);
        match self.block(async move { store.delete(&path).await }) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(failed(&format!("deleting {key} from {}", self.location), e)),
        }
    }

    fn free_bytes(&self) -> Option<u64> {
        None
    }
}
