//! A test certificate authority made with the `openssl` CLI: a CA, and server or client
//! certificates it signs, as PEM files in a directory the test owns.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA's certificate and key under `dir`.
pub struct TestCa {
    dir: PathBuf,
    /// The CA certificate (what a client is told to trust).
    pub cert: PathBuf,
    key: PathBuf,
}

/// A certificate signed by a [`TestCa`] and its private key (PKCS#8, mode 0600).
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` making a new P-256 key (`key`) and, with `extra`, a request or a
/// self-signed certificate (`out`) for `/CN=cn`.
fn new_key(dir: &Path, key: &str, out: &str, cn: &str, extra: &[&str]) {
    let subject = format!("/CN={cn}");
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        out,
        "-subj",
        &subject,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

impl TestCa {
    /// A new CA named `name` (files `name.crt`, `name.key` in `dir`).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let (cert, key) = (format!("{name}.crt"), format!("{name}.key"));
        new_key(
            dir,
            &key,
            &cert,
            &format!("splice-dr test CA {name}"),
            &[
                "-x509",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa {
            dir: dir.to_path_buf(),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    /// A certificate for `cn`, valid for the names in `sans` (`DNS:localhost`,
    /// `IP:127.0.0.1`), usable by servers and clients.
    pub fn issue(&self, name: &str, cn: &str, sans: &[&str]) -> Issued {
        let (cert, key, csr, ext) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        let mut extensions = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        );
        if !sans.is_empty() {
            extensions.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        std::fs::write(self.dir.join(&ext), extensions).expect("write extensions");
        new_key(&self.dir, &key, &csr, cn, &[]);
        let ca_cert = self.cert.display().to_string();
        let ca_key = self.key.display().to_string();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        use std::os::unix::fs::PermissionsExt;
        let key = self.dir.join(key);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Issued {
            cert: self.dir.join(cert),
            key,
        }
    }
}
