//! Asking the applications whether they are ready: the validator's `readyz` over HTTP/1.1
//! and the participant's gRPC health. The real compose bundle gives neither container a
//! healthcheck, so a running container says nothing about either.
//!
//! Names under `.localhost` are reached on the loopback without /etc/hosts (RFC 6761) and
//! sent as the Host header: the bundle publishes only nginx on port 80, which routes by host
//! name, so `http://wallet.localhost/api/validator/readyz` reaches the validator through it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::grpc_health;

/// Limit of one probe: `status` asks two of them within its own deadline.
pub const PROBE_LIMIT: Duration = Duration::from_secs(3);
/// The validator app's admin API port inside the compose network.
pub const VALIDATOR_PORT: u16 = 5003;
/// The participant's gRPC health port.
pub const PARTICIPANT_HEALTH_PORT: u16 = 5061;
/// The readiness path of the validator admin API.
pub const READYZ_PATH: &str = "/api/validator/readyz";

/// What an application answered when asked whether it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Ready.
    pub ok: bool,
    /// The answer in words, e.g. `readyz 503` or `gRPC health NOT_SERVING at 172.18.0.3:5061`.
    pub detail: String,
}

/// An `http://` URL taken apart for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// The URL as configured (for messages).
    pub url: String,
    /// `host:port` connected to: the loopback for `.localhost` names.
    pub connect: String,
    /// The Host header: the URL's host (and port when not 80).
    pub host_header: String,
    /// Path and query.
    pub path: String,
}

/// Whether `host` is a name under `.localhost` (`wallet.localhost`), which RFC 6761
/// reserves for the loopback; `localhost` itself is left to the system's resolver.
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.len() > ".localhost".len() && host.ends_with(".localhost")
}

/// Parses an `http://host[:port]/path` URL (https is not spoken here: the bundle's nginx
/// and the container ports are plain HTTP).
pub fn http_target(url: &str) -> Result<HttpTarget, String> {
    if !url.contains("://") {
        return Err(format!(
            "\"{url}\" is not an absolute http:// URL (e.g. http://wallet.localhost/api/validator/readyz)"
        ));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("\"{url}\" is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "\"{url}\": only http:// is supported here, not {other}://"
            ))
        }
        None => return Err(format!("\"{url}\" is not an absolute http:// URL")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("\"{url}\" has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("\"{url}\" must not contain credentials"));
    }
    let host = authority.host();
    let port = authority.port_u16().unwrap_or(80);
    let connect = if is_localhost_name(host) {
        format!("127.0.0.1:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(HttpTarget {
        url: url.into(),
        connect,
        host_header: authority.as_str().to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    })
}

/// `GET readyz`: ready on 200; any other status, or no answer within `limit`, is not ready.
pub async fn readyz(target: &HttpTarget, limit: Duration) -> ProbeResult {
    match tokio::time::timeout(limit, get_status(target)).await {
        Ok(Ok(status)) => ProbeResult {
            ok: status == http::StatusCode::OK,
            detail: format!("readyz {}", status.as_u16()),
        },
        Ok(Err(e)) => ProbeResult {
            ok: false,
            detail: format!("readyz at {} not answering: {e}", target.url),
        },
        Err(_) => ProbeResult {
            ok: false,
            detail: format!(
                "readyz at {} did not answer within {}s",
                target.url,
                limit.as_secs_f64()
            ),
        },
    }
}

async fn get_status(target: &HttpTarget) -> Result<http::StatusCode, String> {
    let tcp = TcpStream::connect(&target.connect)
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.connect))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::get(&target.path)
        .header(http::header::HOST, &target.host_header)
        .header(
            http::header::USER_AGENT,
            concat!("splice-dr/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    driver.abort();
    answer.map(|r| r.status())
}

/// The participant's gRPC health of the server as a whole, at `addr` (`host:port`).
pub async fn grpc(addr: &str, limit: Duration) -> ProbeResult {
    let checked = grpc_health::check("participant", addr, "", limit).await;
    ProbeResult {
        ok: checked.serving(),
        detail: checked.to_string(),
    }
}

/// Checks a `host:port` address from the config (the port is required).
pub fn check_address(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("\"{addr}\" is not host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("\"{addr}\" is not host:port"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_connect_to_the_loopback_and_keep_their_host_header() {
        let t = http_target("http://wallet.localhost/api/validator/readyz").unwrap();
        assert_eq!(t.connect, "127.0.0.1:80");
        assert_eq!(t.host_header, "wallet.localhost");
        assert_eq!(t.path, "/api/validator/readyz");
        let t = http_target("http://Wallet.LocalHost.:8080/x?y=1").unwrap();
        assert_eq!(t.connect, "127.0.0.1:8080");
        assert_eq!(t.host_header, "Wallet.LocalHost.:8080");
        assert_eq!(t.path, "/x?y=1");
        let t = http_target("http://172.18.0.3:5003/api/validator/readyz").unwrap();
        assert_eq!(t.connect, "172.18.0.3:5003");
        assert!(!is_localhost_name("localhost.example.com"));
        assert!(!is_localhost_name("notlocalhost"));
        assert!(!is_localhost_name(".localhost"));
        assert!(!is_localhost_name("localhost"));
    }

    #[test]
    fn urls_other_than_plain_http_are_refused_with_a_reason() {
        for (url, needle) in [
            ("https://wallet.localhost/", "only http://"),
            ("wallet.localhost/readyz", "absolute"),
            ("http://u:p@h/", "credentials"),
            ("http:// bad", "not a URL"),
        ] {
            let e = http_target(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
        assert!(check_address("172.18.0.3:5061").is_ok());
        for bad in ["172.18.0.3", ":5061", "h:port", "h:70000"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
