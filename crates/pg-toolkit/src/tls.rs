//! TLS for splice-dr's own Postgres sessions, with libpq's meanings of `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey`, so one connection string means the same to the
//! daemon as to `pg_dump`.
//!
//! The driver (`tokio-postgres`) knows only `disable`, `prefer` and `require` and checks
//! nothing itself: the certificate checks live in the rustls configuration built here
//! (with the `ring` provider, as every TLS client of the workspace). The modes:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (default) | when the server offers it | no |
//! | `require` | yes | no; like `verify-ca` when `sslrootcert` is set (as libpq) |
//! | `verify-ca` | yes | chain to `sslrootcert`, any host name |
//! | `verify-full` | yes | chain to `sslrootcert` and the host name |
//!
//! Unlike libpq, nothing is read from `~/.postgresql/`: the files are named in the
//! connection string, and the same paths go to the tools through `PGSSLROOTCERT`,
//! `PGSSLCERT` and `PGSSLKEY`, so both sides always use the same files.

use std::future::Future;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified; plain otherwise (libpq's default).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is checked only when `sslrootcert` is set.
    Require,
    /// TLS, the certificate chain checked against `sslrootcert`, not the host name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => return Err("sslmode=allow is not supported: use prefer or require".into()),
            other => {
                return Err(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }
}

/// The TLS settings of a connection string: the mode and the files it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`: PEM file of the CA(s) the server's certificate must chain to.
    pub rootcert: Option<PathBuf>,
    /// `sslcert`: the client certificate (PEM), for `cert` authentication.
    pub cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM, mode 0600).
    pub key: Option<PathBuf>,
}

/// The keys this module takes out of a connection string.
const TLS_KEYS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl TlsParams {
    /// Takes the TLS keys out of `url` (a `postgresql://` URL's query, or key=value
    /// conninfo) and returns them with the rest of the string, which the driver parses.
    pub fn split(url: &str) -> Result<(TlsParams, String), String> {
        let (pairs, rest) = if url.contains("://") {
            split_url(url)?
        } else {
            split_conninfo(url)?
        };
        let mut params = TlsParams::default();
        for (key, value) in pairs {
            let path = || {
                let p = PathBuf::from(&value);
                if p.is_absolute() {
                    Ok(Some(p))
                } else {
                    Err(format!("{key} must be an absolute path (got `{value}`)"))
                }
            };
            match key.as_str() {
                "sslmode" => params.mode = SslMode::parse(&value)?,
                "sslrootcert" => params.rootcert = path()?,
                "sslcert" => params.cert = path()?,
                _ => params.key = path()?,
            }
        }
        Ok((params, rest))
    }

    /// The environment that gives the libpq tools the same settings (never the command
    /// line: a key path is not secret, but one place for all of them keeps them equal).
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("PGSSLMODE".to_string(), self.mode.as_str().to_string())];
        for (var, path) in [
            ("PGSSLROOTCERT", &self.rootcert),
            ("PGSSLCERT", &self.cert),
            ("PGSSLKEY", &self.key),
        ] {
            if let Some(p) = path {
                env.push((var.to_string(), p.display().to_string()));
            }
        }
        env
    }

    /// Reads the named files and builds the connector; `None` for `disable`. Errs naming
    /// the key and file when one is missing, unreadable, of the wrong kind, or (the key)
    /// readable by others.
    pub fn connector(&self) -> Result<Option<RustlsConnect>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let verify = match (self.mode, &self.rootcert) {
            (SslMode::Disable, _) => return Ok(None),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(format!(
                    "sslmode={} needs sslrootcert: add `sslrootcert=/path/to/ca.pem` (the CA \
                     that signed the server's certificate) to the connection string",
                    self.mode.as_str()
                ))
            }
            (SslMode::Prefer, _) | (SslMode::Require, None) => None,
            (mode, Some(root)) => Some((mode, root)),
        };
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            None => Arc::new(Libpq {
                chain: None,
                algorithms,
            }),
            Some((mode, root)) => {
                let mut roots = RootCertStore::empty();
                let certs =
                    crate::certs::load_ca_file(root).map_err(|e| format!("sslrootcert: {e}"))?;
                for cert in certs {
                    roots.add(cert).map_err(|e| format!("sslrootcert: {e}"))?;
                }
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("sslrootcert {}: {e}", root.display()))?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(Libpq {
                        chain: Some(webpki),
                        algorithms,
                    })
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("sslcert {}: {e}", cert.display()))?;
                if chain.is_empty() {
                    return Err(format!("sslcert {} holds no certificate", cert.display()));
                }
                check_key_mode(key)?;
                let der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("sslkey {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, der)
                    .map_err(|e| format!("sslcert/sslkey: {e}"))?
            }
            _ => return Err("sslcert and sslkey go together: set both or neither".into()),
        };
        Ok(Some(RustlsConnect {
            config: Arc::new(config),
            rootcert: self.rootcert.clone(),
        }))
    }
}

/// libpq's rule for a private key: no access for others, and for the group only when the
/// file belongs to root (a key shared through a group-readable root-owned file).
fn check_key_mode(key: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(key)
        .map_err(|e| format!("sslkey {}: cannot read: {e}", key.display()))?;
    let mode = meta.mode() & 0o777;
    let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
    if mode & !allowed != 0 {
        return Err(format!(
            "sslkey {} has mode {mode:04o}: a private key must be readable by its owner only \
             (chmod 600, or 640 when owned by root)",
            key.display()
        ));
    }
    Ok(())
}

/// Splits a URL's query into the TLS pairs and the URL without them.
fn split_url(url: &str) -> Result<(Vec<(String, String)>, String), String> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((Vec::new(), url.to_string()));
    };
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k)?;
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, percent_decode(v)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok((taken, rest))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in `{text}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` is not UTF-8 once decoded"))
}

/// Splits key=value conninfo into the TLS pairs and the conninfo without them (values
/// re-quoted).
fn split_conninfo(text: &str) -> Result<(Vec<(String, String)>, String), String> {
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("conninfo: `{key}` has no `=value`"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("conninfo: unterminated quote in `{key}`")),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push(format!(
                "{key}={}",
                crate::connection::conninfo_value(&value)
            ));
        }
    }
    Ok((taken, kept.join(" ")))
}

/// The checks of `prefer`, `require` and `verify-ca` (`verify-full` is rustls' own
/// verifier): with `chain`, the full check except the host name (the name is checked
/// last, so a name mismatch means the chain was found good); without, none (libpq's
/// `prefer` and `require` without `sslrootcert`). The handshake's signatures are always
/// verified.
#[derive(Debug)]
struct Libpq {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Libpq {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The driver's TLS connector over rustls: built once per connection settings, cloned
/// into every connect.
#[derive(Clone)]
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    rootcert: Option<PathBuf>,
}

impl std::fmt::Debug for RustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustlsConnect")
            .field("rootcert", &self.rootcert)
            .finish()
    }
}

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsHandshake> {
        let name = ServerName::try_from(domain.to_string()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("host `{domain}`: {e}"))
        })?;
        Ok(RustlsHandshake {
            config: self.config.clone(),
            name,
            rootcert: self.rootcert.clone(),
        })
    }
}

/// One TLS handshake with one server.
pub struct RustlsHandshake {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    rootcert: Option<PathBuf>,
}

impl TlsConnect<Socket> for RustlsHandshake {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            match connector.connect(self.name.clone(), stream).await {
                Ok(tls) => Ok(RustlsStream(tls)),
                Err(e) => Err(explain(e, &self.name, self.rootcert.as_deref())),
            }
        })
    }
}

/// A handshake failure in the operator's terms: what is wrong with the certificate and
/// which setting fixes it.
fn explain(e: io::Error, name: &ServerName<'_>, rootcert: Option<&Path>) -> io::Error {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e;
    };
    let root = rootcert.map_or_else(|| "-".into(), |p| p.display().to_string());
    let text = match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "server certificate not trusted: it is not signed by a CA in sslrootcert {root}; \
             set sslrootcert to the CA that signed the server's certificate"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "server certificate does not name host `{}` ({tls}); connect by a name the \
             certificate lists, or use sslmode=verify-ca to check the chain only",
            name.to_str()
        ),
        rustls::Error::InvalidCertificate(_) => format!("server certificate refused: {tls}"),
        other => format!("TLS handshake: {other}"),
    };
    io::Error::new(e.kind(), text)
}

/// A TLS session with the server, as the driver reads and writes it.
pub struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    /// No channel binding: SCRAM then runs without `-PLUS`, as with a libpq built
    /// without it; the certificate checks above are what authenticates the server.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_leave_the_url_and_the_conninfo() {
        let (p, rest) = TlsParams::split(
            "postgresql://u@db:5432/postgres?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .expect("url");
        assert_eq!(rest, "postgresql://u@db:5432/postgres?connect_timeout=5");
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.rootcert.as_deref(), Some(Path::new("/etc/ca.pem")));

        let (p, rest) = TlsParams::split(
            "host=/run/postgresql user='cn admin' sslmode = require sslcert=/c.pem sslkey='/k 1.pem'",
        )
        .expect("conninfo");
        assert_eq!(rest, "host='/run/postgresql' user='cn admin'");
        assert_eq!(p.mode, SslMode::Require);
        assert_eq!(p.key.as_deref(), Some(Path::new("/k 1.pem")));
        assert_eq!(
            p.child_env(),
            vec![
                ("PGSSLMODE".to_string(), "require".to_string()),
                ("PGSSLCERT".to_string(), "/c.pem".to_string()),
                ("PGSSLKEY".to_string(), "/k 1.pem".to_string()),
            ]
        );

        let (p, rest) = TlsParams::split("postgresql://u@db/postgres").expect("plain");
        assert_eq!(
            (p.mode, rest.as_str()),
            (SslMode::Prefer, "postgresql://u@db/postgres")
        );
    }

    #[test]
    fn bad_tls_settings_are_refused_with_the_fix() {
        let e = TlsParams::split("postgresql://h/db?sslmode=verify").expect_err("mode");
        assert!(e.contains("verify-full"), "{e}");
        let e = TlsParams::split("postgresql://h/db?sslrootcert=ca.pem").expect_err("relative");
        assert!(e.contains("absolute"), "{e}");
        let (p, _) = TlsParams::split("postgresql://h/db?sslmode=verify-full").expect("parse");
        let e = p.connector().expect_err("no root");
        assert!(e.contains("needs sslrootcert"), "{e}");
        let (p, _) =
            TlsParams::split("postgresql://h/db?sslmode=require&sslcert=/c.pem").expect("parse");
        let e = p.connector().expect_err("cert without key");
        assert!(e.contains("sslcert and sslkey"), "{e}");
        let (p, _) = TlsParams::split("postgresql://h/db?sslmode=disable").expect("parse");
        assert!(p.connector().expect("disable").is_none());
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("client.key");
        std::fs::write(&key, "x").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = check_key_mode(&key).expect_err("world-readable");
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        check_key_mode(&key).expect("owner only");
    }
}
