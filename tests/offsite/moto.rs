//! A moto S3 server (from PyPI, `python -m moto.server` in tests/setup.sh's venv) per test on a loopback port,
//! shared by the S3 tests of `offsite_e2e` and `trust_e2e`.

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
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Moto {
        let child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} -m moto.server: {e} (tests/setup.sh installs moto)",
                    python().display()
                )
            });
        let moto = Moto { child, port };
        wait_for(Duration::from_secs(30), "moto server", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        moto
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
