//! Helpers for tests against the in-process splice-sim: per-test databases (dropped at the
//! end, even on panic), node start-up, validator-client configs, and tiny axum servers
//! (an OAuth2 token endpoint, a validator stub that answers 503).
#![allow(dead_code)]

use splice_dr::config::{SelfSignedAuth, ValidatorAuth, ValidatorConfig};
use splice_sim::{RunningSim, Sim, SimConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Uniquely named databases for one test's simulated node; dropped on drop.
pub struct SimDbs {
    prefix: String,
    names: Mutex<Vec<String>>,
}

impl SimDbs {
    pub fn new(test: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        SimDbs {
            prefix: format!("vdr_{}_{}_{}", std::process::id(), n, test),
            names: Mutex::new(Vec::new()),
        }
    }

    fn name(&self, role: &str) -> String {
        let name = format!("{}_{}", self.prefix, role);
        self.names.lock().unwrap().push(name.clone());
        name
    }

    /// A simulated node config (port 0, this test's databases, defaults otherwise: secret
    /// `unsafe`, audience `https://validator.example.com`, user `administrator`).
    pub fn sim_config(&self) -> SimConfig {
        let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), super::common::pg_url());
        cfg.validator_db = self.name("validator");
        cfg.participant_db = Some(self.name("participant"));
        cfg
    }

    /// Starts a node on this test's databases.
    pub async fn start(&self) -> RunningSim {
        match Sim::start(self.sim_config()).await {
            Ok(s) => s,
            Err(e) => panic!("sim failed to start: {e} — run `sh tests/pg-setup.sh` as root"),
        }
    }
}

impl Drop for SimDbs {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        if names.is_empty() {
            return;
        }
        // The sync postgres client runs its own runtime: keep it off the test's runtime.
        let _ = std::thread::spawn(move || {
            let mut admin = super::common::connect("postgres");
            for n in names {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"));
            }
        })
        .join();
    }
}

/// A `[node.validator]` for `url` with fast retries (`retry_backoff = 10ms`).
pub fn validator_config(url: &str, auth: ValidatorAuth) -> ValidatorConfig {
    ValidatorConfig {
        url: url.to_string(),
        public_url: None,
        timeout: Duration::from_secs(10),
        snapshot_timeout: Duration::from_secs(60),
        retries: 3,
        retry_backoff: Duration::from_millis(10),
        auth,
    }
}

/// A validator client for a simulated node, with the compose no-auth credentials.
pub fn sim_client(node: &RunningSim) -> splice_dr::validator::ValidatorClient {
    splice_dr::validator::ValidatorClient::from_config(&validator_config(&node.url(), no_auth()))
        .unwrap()
}

/// Runs a site's real binary off the async runtime (the simulated node answers on it).
pub async fn site_cli(site: &super::common::Site, args: &[&str]) -> std::process::Output {
    let mut cmd = site.cmd();
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// The compose no-auth credentials: HS256 with the inline secret `unsafe`.
pub fn no_auth() -> ValidatorAuth {
    ValidatorAuth::SelfSigned(SelfSignedAuth {
        secret_file: None,
        secret: Some("unsafe".into()),
        user: "administrator".into(),
        audience: "https://validator.example.com".into(),
    })
}

/// A port with no listener (bound, then closed).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An axum app served on 127.0.0.1:0; aborted on drop.
pub struct Served {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    pub async fn start(app: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Served { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// State of the test OAuth2 token endpoint.
#[derive(Default)]
pub struct TokenServerState {
    /// Token requests received (good or bad).
    pub requests: AtomicUsize,
    /// `expires_in` of the tokens handed out.
    pub expires_in: AtomicU64,
    /// How many of the next tokens are signed with a wrong secret (the validator answers 401).
    pub bad_tokens: AtomicUsize,
    /// The last form received, for checks.
    pub last_form: Mutex<Vec<(String, String)>>,
}

pub const OAUTH_CLIENT_ID: &str = "splice-dr-test";
pub const OAUTH_CLIENT_SECRET: &str = "client-secret-7f3a";
pub const OAUTH_AUDIENCE: &str = "https://validator.example.com";

/// A client-credentials token endpoint at `POST /token` issuing HS256 tokens the simulated
/// node accepts (its default secret and audience, `sub` = `administrator`, no `exp`: the
/// client must go by `expires_in`).
pub async fn token_server(expires_in: u64) -> (Served, Arc<TokenServerState>) {
    use axum::extract::{Form, State};
    use axum::http::StatusCode;
    use axum::Json;
    let state = Arc::new(TokenServerState::default());
    state.expires_in.store(expires_in, Ordering::SeqCst);
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(
                |State(s): State<Arc<TokenServerState>>,
                 Form(form): Form<Vec<(String, String)>>| async move {
                    s.requests.fetch_add(1, Ordering::SeqCst);
                    *s.last_form.lock().unwrap() = form.clone();
                    let get = |k: &str| {
                        form.iter()
                            .find(|(key, _)| key == k)
                            .map(|(_, v)| v.as_str())
                            .unwrap_or("")
                    };
                    if get("grant_type") != "client_credentials"
                        || get("client_id") != OAUTH_CLIENT_ID
                        || get("client_secret") != OAUTH_CLIENT_SECRET
                    {
                        return (
                            StatusCode::UNAUTHORIZED,
                            Json(serde_json::json!({"error": "invalid_client",
                                "error_description": "unknown client or wrong secret"})),
                        );
                    }
                    let bad = s
                        .bad_tokens
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let secret: &[u8] = if bad {
                        b"not-the-validator-secret"
                    } else {
                        b"unsafe"
                    };
                    let token = splice_sim::auth::mint_hs256(
                        secret,
                        &serde_json::json!({
                            "sub": "administrator",
                            "aud": get("audience"),
                            "iat": chrono::Utc::now().timestamp(),
                            "n": s.requests.load(Ordering::SeqCst),
                        }),
                    );
                    (
                        StatusCode::OK,
                        Json(serde_json::json!({
                            "access_token": token,
                            "token_type": "Bearer",
                            "expires_in": s.expires_in.load(Ordering::SeqCst),
                        })),
                    )
                },
            ),
        )
        .with_state(state.clone());
    (Served::start(app).await, state)
}

/// A validator stub: every `/api/validator/...` request is counted; the first `fail_first`
/// answer 503 `{"error": "…"}`, later ones 200 `{"usernames": ["x"]}`.
pub async fn flaky_validator(fail_first: usize) -> (Served, Arc<AtomicUsize>) {
    use axum::http::StatusCode;
    use axum::Json;
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(move || {
        let c = c.clone();
        async move {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if n < fail_first {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({"error": "the validator is starting"})),
                )
            } else {
                (
                    StatusCode::OK,
                    Json(serde_json::json!({"usernames": ["x"]})),
                )
            }
        }
    });
    (Served::start(app).await, count)
}

/// A bare-Postgres site for a simulated node and its validator API (self-signed with the
/// `unsafe` secret), its identities encrypted to a fresh age key; `validator_keys` are more
/// lines of `[node.validator]` (e.g. `retries = 2\n`).
pub fn sim_site(
    node: &RunningSim,
    extra_daemon: &str,
    validator_keys: &str,
) -> super::common::Site {
    let info = node.info();
    let key = age::x25519::Identity::generate();
    let validator = format!(
        "[node.validator]\nurl = \"{}\"\n{validator_keys}\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n",
        node.url()
    );
    super::common::Site::with(
        &info.validator_db,
        &info.participant_db,
        super::common::BackendChoice::Builtin,
        extra_daemon,
        &format!("identities_recipients = [\"{}\"]", key.to_public()),
        &validator,
    )
}
