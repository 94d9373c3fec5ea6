//! A moto S3 server (from PyPI, `python -m moto.server` with the python of tests/setup.sh's
//! venv) per test on a loopback port, shared by the S3 tests of `offsite_e2e` and `trust_e2e`;
//! and moto's STS over HTTPS (`MotoSts`) for web identity credentials.

use super::common::*;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The python that has moto: `SPLICE_DR_MOTO_PYTHON`, else the virtual environment that
/// tests/setup.sh makes (`SPLICE_DR_VENV`, default /var/tmp/splice-dr-venv), else `python3`
/// on PATH (a host where moto is installed system-wide).
fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("SPLICE_DR_MOTO_PYTHON") {
        return p.into();
    }
    let venv =
        std::env::var_os("SPLICE_DR_VENV").unwrap_or_else(|| "/var/tmp/splice-dr-venv".into());
    let venv_python = std::path::Path::new(&venv).join("bin/python");
    if venv_python.is_file() {
        venv_python
    } else {
        "python3".into()
    }
}

/// A moto S3 server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    /// Where moto's recorder writes every request it serves (`start_recording`).
    recording: Option<tempfile::TempDir>,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Moto {
        Moto::spawn(port, None)
    }

    /// A server that records every request (headers included) with moto's own recorder,
    /// so a test can see which credentials signed them: [`Moto::recorded`].
    pub fn start_recording() -> Moto {
        Moto::spawn(free_port(), Some(tempfile::tempdir().unwrap()))
    }

    fn spawn(port: u16, recording: Option<tempfile::TempDir>) -> Moto {
        let mut cmd = Command::new(python());
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        if let Some(dir) = &recording {
            cmd.env("MOTO_ENABLE_RECORDING", "True")
                .env("MOTO_RECORDER_FILEPATH", dir.path().join("requests.jsonl"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} -m moto.server: {e} (tests/setup.sh installs moto)",
                    python().display()
                )
            });
        let moto = Moto {
            child,
            port,
            recording,
        };
        wait_for(Duration::from_secs(30), "moto server", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        moto
    }

    /// Every request recorded so far (`start_recording`), as moto wrote them: `method`,
    /// `url`, `headers`, `body`.
    pub fn recorded(&self) -> Vec<serde_json::Value> {
        recorded_in(
            self.recording
                .as_ref()
                .expect("started with start_recording"),
        )
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let r = ureq::put(&format!("{}/{bucket}", self.url())).send_empty();
        assert!(r.is_ok(), "create bucket: {r:?}");
    }

    /// Every key in the bucket with its size (ListObjectsV2, parsed just enough).
    pub fn keys(&self, bucket: &str) -> Vec<(String, u64)> {
        let body = ureq::get(&format!("{}/{bucket}?list-type=2", self.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        body.split("<Contents>")
            .skip(1)
            .map(|c| {
                let field = |name: &str| {
                    let start = c.find(&format!("<{name}>")).unwrap() + name.len() + 2;
                    let end = c.find(&format!("</{name}>")).unwrap();
                    c[start..end].to_string()
                };
                (field("Key"), field("Size").parse().unwrap())
            })
            .collect()
    }

    /// A signed client (moto refuses anonymous object reads).
    fn client(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        splice_dr::tls::ensure_crypto_provider();
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.url())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap()
    }

    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        let c = self.client(bucket);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let r = c.get(&object_store::path::Path::from(key)).await.unwrap();
            r.bytes().await.unwrap().to_vec()
        })
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        use object_store::ObjectStoreExt;
        let c = self.client(bucket);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            c.put(&object_store::path::Path::from(key), bytes.to_vec().into())
                .await
                .unwrap();
        });
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn recorded_in(dir: &tempfile::TempDir) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.path().join("requests.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// moto's STS over HTTPS (object_store exchanges a web identity token over HTTPS only),
/// with a certificate from a throwaway CA the test trusts through `ca_file`, recording
/// every request. Served by `moto_sts.py`: moto's own server application, whose
/// dispatcher finds STS by an unsigned request's form body while object_store sends
/// `AssumeRoleWithWebIdentity`'s parameters in the query (as AWS also accepts).
pub struct MotoSts {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl MotoSts {
    pub fn start() -> MotoSts {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=splice-dr test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "sts.key",
                    "-out",
                    "sts.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.path().join("ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "sts.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "sts.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        let port = free_port();
        let child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/offsite/moto_sts.py"))
            .args(["127.0.0.1", &port.to_string(), "sts.pem", "sts.key"])
            .current_dir(dir.path())
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("requests.jsonl"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} offsite/moto_sts.py: {e} (tests/setup.sh installs moto)",
                    python().display()
                )
            });
        let sts = MotoSts { child, port, dir };
        wait_for(Duration::from_secs(30), "moto STS", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        sts
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every request STS served.
    pub fn recorded(&self) -> Vec<serde_json::Value> {
        recorded_in(&self.dir)
    }
}

impl Drop for MotoSts {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
