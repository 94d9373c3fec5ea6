//! Certificates for TLS clients that build their own rustls configuration: the
//! operating system's trusted roots and the CA files an operator names in the config.
//!
//! A CA file is read and parsed when the config is loaded, so a wrong path or a file of
//! the wrong kind is a config error naming the file, not a handshake failure in the
//! middle of a restore.

use std::path::Path;
use std::sync::OnceLock;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The certificates of a PEM file of trusted CAs (one or several `BEGIN CERTIFICATE`
/// blocks). Errs, naming the file, when it cannot be read, holds no certificate, or
/// holds one that cannot serve as a trust anchor.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    // Read first: a missing file is reported as such, not as "no certificate".
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM file of certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)"
        ));
    }
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} of {shown} cannot be used as a trusted CA: {e}",
                i + 1
            )
        })?;
    }
    Ok(certs)
}

/// The operating system's trusted roots (`/etc/ssl/certs` on Debian, or `SSL_CERT_FILE`
/// / `SSL_CERT_DIR`), read once per process. Unreadable entries are skipped: one bad file
/// in the system store must not make every HTTPS check fail.
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_missing_empty_or_not_pem_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let e = load_ca_file(&missing).expect_err("missing");
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").expect("write");
        let e = load_ca_file(&empty).expect_err("no certificate");
        assert!(
            e.contains("holds no certificate") && e.contains("empty.pem"),
            "{e}"
        );

        let garbled = dir.path().join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let e = load_ca_file(&garbled).expect_err("garbled");
        assert!(e.contains("garbled.pem"), "{e}");
    }
}
