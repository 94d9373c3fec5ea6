//! An in-process fake Kubernetes API server for the k8s backend's tests.
//!
//! It listens on a real loopback port (so the daemon binary under test reaches it through
//! a kubeconfig), answers with real Kubernetes JSON built from k8s-openapi types, keeps
//! state (Deployments, the postgres StatefulSet, their pods, Secrets, Leases), makes pods
//! go away or become ready a little after a scale, records every request for assertions,
//! and serves `pods/exec` over a websocket speaking the `v5.channel.k8s.io` protocol by
//! running the requested command on this machine (Postgres tools against the test
//! server, `tar` into a per-pod directory, anything else as is), so exec streaming
//! carries real bytes end to end.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ListMeta, ObjectMeta, Status, StatusCause, StatusDetails, Time,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Namespace the fake serves.
pub const NAMESPACE: &str = "validator";
/// How long pods take to go away after a scale to 0, and to become ready after a scale up.
pub const POD_DELAY: Duration = Duration::from_millis(400);

/// One request the fake saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The body (first 300 characters; exec requests get the command line here).
    pub body: String,
}

impl Seen {
    /// `PATCH /apis/apps/v1/.../scale {"spec":...}`-style one-liner for failure messages.
    pub fn line(&self) -> String {
        format!("{} {}?{} {}", self.method, self.path, self.query, self.body)
    }
}

/// A workload and the pods it has.
#[derive(Debug, Clone)]
struct Workload {
    statefulset: bool,
    replicas: i32,
    /// Pods exist until then after a scale to 0 (terminating).
    gone_at: Instant,
    /// Pods are ready from then on after a scale up.
    ready_at: Instant,
}

#[derive(Default)]
struct Inner {
    workloads: BTreeMap<String, Workload>,
    secrets: BTreeMap<String, Secret>,
    leases: BTreeMap<String, Lease>,
    seen: Vec<Seen>,
    version: u64,
    /// Every exec'd command starts this much later (to catch a run mid-step).
    exec_delay: Duration,
    /// Doors (listeners) whose Lease requests stall until un-hung: an API server that
    /// accepts a replica's connection and never answers its election.
    hung_doors: std::collections::BTreeSet<usize>,
    /// Doors opened so far besides the main one (door 0).
    doors: usize,
}

/// Settings for commands run by exec.
#[derive(Clone)]
pub struct ExecEnv {
    /// Environment for the Postgres tools (PGHOST, PGPORT, PGPASSWORD...).
    pub pg_env: Vec<(String, String)>,
    /// Root under which each pod's filesystem paths (for `tar -C`) live.
    pub pods_root: PathBuf,
}

/// The fake API server; stops with its runtime when dropped.
pub struct FakeApi {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<Inner>>,
    exec_env: ExecEnv,
    rt: Option<tokio::runtime::Runtime>,
}

#[derive(Clone)]
struct App {
    state: Arc<Mutex<Inner>>,
    exec: ExecEnv,
    /// Which listener the request came through (0: the main one).
    door: usize,
}

impl FakeApi {
    /// Starts a fake with the Splice helm workloads (`validator-app`, `participant`,
    /// StatefulSet `postgres`) at 1 replica, all ready.
    pub fn start(exec: ExecEnv) -> FakeApi {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("fake runtime");
        let mut inner = Inner::default();
        let now = Instant::now();
        for (name, sts) in [
            ("validator-app", false),
            ("participant", false),
            ("postgres", true),
        ] {
            inner.workloads.insert(
                name.into(),
                Workload {
                    statefulset: sts,
                    replicas: 1,
                    gone_at: now,
                    ready_at: now,
                },
            );
        }
        let state = Arc::new(Mutex::new(inner));
        let app = App {
            state: state.clone(),
            exec: exec.clone(),
            door: 0,
        };
        let addr = serve(&rt, app);
        FakeApi {
            addr,
            state,
            exec_env: exec,
            rt: Some(rt),
        }
    }

    /// The server URL for a kubeconfig.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Opens another listener on the same state, returning its door number and URL: a
    /// replica configured with it can be hung alone ([`FakeApi::hang_leases`]).
    pub fn open_door(&self) -> (usize, String) {
        let door = {
            let mut st = self.state.lock().expect("state");
            st.doors += 1;
            st.doors
        };
        let app = App {
            state: self.state.clone(),
            exec: self.exec_env.clone(),
            door,
        };
        let rt = self.rt.as_ref().expect("runtime");
        (door, format!("http://{}", serve(rt, app)))
    }

    /// `hang`: every Lease request through `door` stalls (without an answer) until
    /// called again with `false`.
    pub fn hang_leases(&self, door: usize, hang: bool) {
        let mut st = self.state.lock().expect("state");
        if hang {
            st.hung_doors.insert(door);
        } else {
            st.hung_doors.remove(&door);
        }
    }

    /// Writes a kubeconfig pointing at the fake into `path`.
    pub fn write_kubeconfig(&self, path: &Path) {
        self.write_kubeconfig_at(path, &self.url());
    }

    /// Writes a kubeconfig pointing at `url` (a door of the fake) into `path`.
    pub fn write_kubeconfig_at(&self, path: &Path, url: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NAMESPACE}\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: test-token\n",
            url
        );
        std::fs::write(path, text).expect("kubeconfig");
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("state").seen.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.state.lock().expect("state").seen.clear();
    }

    /// A Secret's data under `key`.
    pub fn secret(&self, name: &str, key: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().expect("state");
        st.secrets
            .get(name)?
            .data
            .as_ref()?
            .get(key)
            .map(|b| b.0.clone())
    }

    /// The holder of a Lease.
    pub fn lease_holder(&self, name: &str) -> Option<String> {
        let st = self.state.lock().expect("state");
        st.leases.get(name)?.spec.as_ref()?.holder_identity.clone()
    }

    /// Makes every exec'd command start `d` later.
    pub fn set_exec_delay(&self, d: Duration) {
        self.state.lock().expect("state").exec_delay = d;
    }

    /// Another replica takes the Lease `name` (as if it had won it), freshly renewed.
    pub fn steal_lease(&self, name: &str, holder: &str) {
        let mut st = self.state.lock().expect("state");
        st.version += 1;
        let version = st.version.to_string();
        let lease = st.leases.get_mut(name).expect("the lease exists");
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(holder.into());
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            chrono_now(),
        ));
        lease.metadata.resource_version = Some(version);
    }

    /// Desired replicas of a workload.
    pub fn replicas(&self, name: &str) -> i32 {
        self.state.lock().expect("state").workloads[name].replicas
    }

    /// Removes a workload, as `helm uninstall` does (its data stays in Postgres).
    pub fn uninstall(&self, name: &str) {
        self.state.lock().expect("state").workloads.remove(name);
    }

    /// The local directory standing for `path` in pod `pod`.
    pub fn pod_path(&self, pod: &str, path: &str) -> PathBuf {
        pod_dir(&self.exec_env.pods_root, pod).join(path.trim_start_matches('/'))
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Serves `app` on a new local port on the fake's own runtime (bound here, so it works
/// from sync and async tests); returns the address.
fn serve(rt: &tokio::runtime::Runtime, app: App) -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    let router = axum::Router::new().fallback(handle).with_state(app);
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Stalls while Lease requests through `door` are hung.
async fn stall_if_hung(app: &App, path: &str) {
    if !path.contains("/leases") {
        return;
    }
    while app
        .state
        .lock()
        .expect("state")
        .hung_doors
        .contains(&app.door)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod_dir(root: &Path, pod: &str) -> PathBuf {
    root.join(pod)
}

fn meta(name: &str, version: u64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        resource_version: Some(version.to_string()),
        ..ObjectMeta::default()
    }
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), name.to_string())])
}

/// The pods a workload has at this moment.
fn pods_of(name: &str, w: &Workload) -> Vec<Pod> {
    let now = Instant::now();
    let count = if w.replicas > 0 {
        w.replicas
    } else if now < w.gone_at {
        1
    } else {
        0
    };
    let terminating = w.replicas == 0;
    (0..count)
        .map(|i| {
            let pod_name = if w.statefulset {
                format!("{name}-{i}")
            } else {
                format!("{name}-5d9c7b-{i}x")
            };
            let ready = !terminating && now >= w.ready_at;
            Pod {
                metadata: ObjectMeta {
                    labels: Some(labels(name)),
                    deletion_timestamp: terminating.then(|| Time(chrono_now())),
                    ..meta(&pod_name, 1)
                },
                spec: None,
                status: Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: if ready { "True" } else { "False" }.into(),
                        ..PodCondition::default()
                    }]),
                    ..PodStatus::default()
                }),
            }
        })
        .collect()
}

fn chrono_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

fn status_error(code: u16, reason: &str, message: &str) -> Response {
    let s = Status {
        code: Some(code as i32),
        message: Some(message.into()),
        reason: Some(reason.into()),
        status: Some("Failure".into()),
        ..Status::default()
    };
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    v["kind"] = "Status".into();
    v["apiVersion"] = "v1".into();
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(v),
    )
        .into_response()
}

fn json_of<T: serde::Serialize + k8s_openapi::Resource>(obj: &T) -> Response {
    let mut v = serde_json::to_value(obj).unwrap_or_default();
    v["kind"] = T::KIND.into();
    v["apiVersion"] = T::API_VERSION.into();
    Json(v).into_response()
}

async fn handle(State(app): State<App>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    if path.ends_with("/exec") {
        let argv = exec_argv(&query);
        record(&app, &method, &path, &query, &argv.join(" "));
        let pod = path
            .trim_end_matches("/exec")
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(e) => return e.into_response(),
        };
        let stdin = query.split('&').any(|p| p == "stdin=true");
        let env = app.exec.clone();
        let delay = app.state.lock().expect("state").exec_delay;
        tokio::time::sleep(delay).await;
        return ws
            .protocols(["v5.channel.k8s.io"])
            .on_upgrade(move |socket| serve_exec(socket, env, pod, argv, stdin));
    }
    stall_if_hung(&app, &path).await;
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    record(
        &app,
        &method,
        &path,
        &query,
        &String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>(),
    );
    route(&app, &method, &path, &query, &body)
}

fn record(app: &App, method: &Method, path: &str, query: &str, body: &str) {
    app.state.lock().expect("state").seen.push(Seen {
        method: method.to_string(),
        path: path.into(),
        query: query.into(),
        body: body.into(),
    });
}

fn route(app: &App, method: &Method, path: &str, query: &str, body: &Bytes) -> Response {
    let apps = format!("/apis/apps/v1/namespaces/{NAMESPACE}/");
    let core = format!("/api/v1/namespaces/{NAMESPACE}/");
    let coord = format!("/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/");
    if let Some(rest) = path.strip_prefix(&apps) {
        let segs: Vec<&str> = rest.split('/').collect();
        return match segs.as_slice() {
            [kind, name] => get_workload(app, kind, name),
            [kind, name, "scale"] => scale(app, method, kind, name, body),
            _ => status_error(404, "NotFound", &format!("no route {path}")),
        };
    }
    if let Some(rest) = path.strip_prefix(&core) {
        let segs: Vec<&str> = rest.split('/').collect();
        return match segs.as_slice() {
            ["pods"] => list_pods(app, query),
            ["pods", name] => get_pod(app, name),
            ["secrets"] if method == Method::POST => create_secret(app, body),
            ["secrets", name] => secret(app, method, name, body),
            _ => status_error(404, "NotFound", &format!("no route {path}")),
        };
    }
    if let Some(rest) = path.strip_prefix(&coord) {
        let segs: Vec<&str> = rest.split('/').collect();
        return match segs.as_slice() {
            ["leases"] if method == Method::POST => create_lease(app, body),
            ["leases", name] => lease(app, method, name, body),
            _ => status_error(404, "NotFound", &format!("no route {path}")),
        };
    }
    status_error(404, "NotFound", &format!("no route {path}"))
}

fn get_workload(app: &App, kind: &str, name: &str) -> Response {
    let st = app.state.lock().expect("state");
    let Some(w) = st.workloads.get(name) else {
        return status_error(404, "NotFound", &format!("{kind} \"{name}\" not found"));
    };
    let selector = LabelSelector {
        match_labels: Some(labels(name)),
        ..LabelSelector::default()
    };
    match (kind, w.statefulset) {
        ("deployments", false) => json_of(&Deployment {
            metadata: meta(name, st.version),
            spec: Some(DeploymentSpec {
                replicas: Some(w.replicas),
                selector,
                ..DeploymentSpec::default()
            }),
            status: None,
        }),
        ("statefulsets", true) => json_of(&StatefulSet {
            metadata: meta(name, st.version),
            spec: Some(StatefulSetSpec {
                replicas: Some(w.replicas),
                selector,
                ..StatefulSetSpec::default()
            }),
            status: None,
        }),
        _ => status_error(404, "NotFound", &format!("{kind} \"{name}\" not found")),
    }
}

fn scale(app: &App, method: &Method, kind: &str, name: &str, body: &Bytes) -> Response {
    let mut st = app.state.lock().expect("state");
    let Some(w) = st.workloads.get_mut(name) else {
        return status_error(404, "NotFound", &format!("{kind} \"{name}\" not found"));
    };
    if *method == Method::PATCH || *method == Method::PUT {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let Some(n) = v["spec"]["replicas"].as_i64() else {
            return status_error(400, "BadRequest", "spec.replicas missing");
        };
        let now = Instant::now();
        if n == 0 && w.replicas > 0 {
            w.gone_at = now + POD_DELAY;
        }
        if n > 0 && w.replicas == 0 {
            w.ready_at = now + POD_DELAY;
        }
        w.replicas = n as i32;
    }
    let replicas = w.replicas;
    st.version += 1;
    json_of(&Scale {
        metadata: meta(name, st.version),
        spec: Some(ScaleSpec {
            replicas: Some(replicas),
        }),
        status: Some(ScaleStatus {
            replicas,
            selector: Some(format!("app={name}")),
        }),
    })
}

fn list_pods(app: &App, query: &str) -> Response {
    let st = app.state.lock().expect("state");
    let selector = query
        .split('&')
        .find_map(|p| p.strip_prefix("labelSelector="))
        .map(|s| s.replace("%3D", "=").replace("%2C", ","))
        .unwrap_or_default();
    let mut items = Vec::new();
    for (name, w) in &st.workloads {
        if selector.is_empty() || selector == format!("app={name}") {
            items.extend(pods_of(name, w));
        }
    }
    let list = serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": ListMeta { resource_version: Some(st.version.to_string()), ..ListMeta::default() },
        "items": items,
    });
    Json(list).into_response()
}

fn get_pod(app: &App, name: &str) -> Response {
    let st = app.state.lock().expect("state");
    for (w_name, w) in &st.workloads {
        if let Some(p) = pods_of(w_name, w)
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
        {
            return json_of(&p);
        }
    }
    status_error(404, "NotFound", &format!("pods \"{name}\" not found"))
}

fn create_secret(app: &App, body: &Bytes) -> Response {
    let Ok(mut s) = serde_json::from_slice::<Secret>(body) else {
        return status_error(400, "BadRequest", "not a Secret");
    };
    let mut st = app.state.lock().expect("state");
    let name = s.metadata.name.clone().unwrap_or_default();
    if st.secrets.contains_key(&name) {
        return status_error(
            409,
            "AlreadyExists",
            &format!("secrets \"{name}\" already exists"),
        );
    }
    st.version += 1;
    s.metadata.resource_version = Some(st.version.to_string());
    st.secrets.insert(name, s.clone());
    json_of(&s)
}

fn secret(app: &App, method: &Method, name: &str, body: &Bytes) -> Response {
    let mut st = app.state.lock().expect("state");
    match *method {
        Method::GET => match st.secrets.get(name) {
            Some(s) => json_of(s),
            None => status_error(404, "NotFound", &format!("secrets \"{name}\" not found")),
        },
        Method::PUT => {
            let Ok(mut s) = serde_json::from_slice::<Secret>(body) else {
                return status_error(400, "BadRequest", "not a Secret");
            };
            if !st.secrets.contains_key(name) {
                return status_error(404, "NotFound", &format!("secrets \"{name}\" not found"));
            }
            st.version += 1;
            s.metadata.resource_version = Some(st.version.to_string());
            st.secrets.insert(name.into(), s.clone());
            json_of(&s)
        }
        _ => status_error(405, "MethodNotAllowed", "method not allowed"),
    }
}

fn create_lease(app: &App, body: &Bytes) -> Response {
    let Ok(mut l) = serde_json::from_slice::<Lease>(body) else {
        return status_error(400, "BadRequest", "not a Lease");
    };
    let mut st = app.state.lock().expect("state");
    let name = l.metadata.name.clone().unwrap_or_default();
    if st.leases.contains_key(&name) {
        return status_error(
            409,
            "AlreadyExists",
            &format!("leases \"{name}\" already exists"),
        );
    }
    st.version += 1;
    l.metadata.resource_version = Some(st.version.to_string());
    st.leases.insert(name, l.clone());
    json_of(&l)
}

fn lease(app: &App, method: &Method, name: &str, body: &Bytes) -> Response {
    let mut st = app.state.lock().expect("state");
    match *method {
        Method::GET => match st.leases.get(name) {
            Some(l) => json_of(l),
            None => status_error(404, "NotFound", &format!("leases \"{name}\" not found")),
        },
        Method::PUT => {
            let Ok(mut l) = serde_json::from_slice::<Lease>(body) else {
                return status_error(400, "BadRequest", "not a Lease");
            };
            let Some(current) = st.leases.get(name) else {
                return status_error(404, "NotFound", &format!("leases \"{name}\" not found"));
            };
            // Optimistic concurrency, as the real API server does it.
            if l.metadata.resource_version != current.metadata.resource_version {
                return status_error(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled on leases: the object has been modified",
                );
            }
            st.version += 1;
            l.metadata.resource_version = Some(st.version.to_string());
            st.leases.insert(name.into(), l.clone());
            json_of(&l)
        }
        _ => status_error(405, "MethodNotAllowed", "method not allowed"),
    }
}

/// The `command=` parameters of an exec request, decoded.
fn exec_argv(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|p| p.strip_prefix("command="))
        .map(percent_decode)
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs the command of an exec request locally and speaks the v5 channel protocol.
async fn serve_exec(socket: WebSocket, env: ExecEnv, pod: String, argv: Vec<String>, stdin: bool) {
    let (mut tx, mut rx) = socket.split();
    let argv = localize(&env, &pod, argv);
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env.pg_env.iter().cloned())
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let status = failure(&format!("exec: {e}"), 127);
            let _ = tx.send(frame(3, &status)).await;
            let _ = tx.close().await;
            return;
        }
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(16);
    let mut child_in = child.stdin.take();
    let feed = async move {
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Binary(b) = msg else { continue };
            match b.first() {
                Some(0) => {
                    if let Some(w) = child_in.as_mut() {
                        if w.write_all(&b[1..]).await.is_err() {
                            child_in = None;
                        }
                    }
                }
                Some(255) if b.get(1) == Some(&0) => {
                    if let Some(mut w) = child_in.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    };
    let pump = |mut r: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                ch: u8,
                tx: tokio::sync::mpsc::Sender<Message>| async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(frame(ch, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let out = pump(
        Box::new(child.stdout.take().expect("stdout")),
        1,
        out_tx.clone(),
    );
    let err = pump(
        Box::new(child.stderr.take().expect("stderr")),
        2,
        out_tx.clone(),
    );
    drop(out_tx);
    let writer = async {
        while let Some(m) = out_rx.recv().await {
            if tx.send(m).await.is_err() {
                return false;
            }
        }
        true
    };
    let feeder = tokio::spawn(feed);
    let (_, _, _) = tokio::join!(out, err, writer);
    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
    let status = if code == 0 {
        serde_json::to_vec(&serde_json::json!({"metadata": {}, "status": "Success"}))
            .unwrap_or_default()
    } else {
        failure(
            &format!("command terminated with non-zero exit code: {code}"),
            code,
        )
    };
    let _ = tx.send(frame(3, &status)).await;
    let _ = tx.close().await;
    // The connection closes once the command's status is sent. As RFC 6455 asks of a
    // server, it first reads until the client's Close: dropping the socket at once resets
    // a client whose Close (or last stdin frame) is in flight, and that reset can reach it
    // before the status does — a spurious "connection reset" on a command that exited
    // cleanly. Stdin the command did not read is discarded, and a client still streaming
    // it after the grace is cut off.
    let mut feeder = feeder;
    if tokio::time::timeout(CLOSE_GRACE, &mut feeder)
        .await
        .is_err()
    {
        feeder.abort();
    }
}

/// How long an exec stream waits for the client's Close after its own.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn failure(message: &str, code: i32) -> Vec<u8> {
    let s = Status {
        status: Some("Failure".into()),
        message: Some(message.into()),
        reason: Some("NonZeroExitCode".into()),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ExitCode".into()),
                message: Some(code.to_string()),
                ..StatusCause::default()
            }]),
            ..StatusDetails::default()
        }),
        ..Status::default()
    };
    serde_json::to_vec(&s).unwrap_or_default()
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// Rewrites pod paths to the pod's local directory: `tar -C /dir` unpacks under
/// `pods_root/<pod>/dir`.
fn localize(env: &ExecEnv, pod: &str, mut argv: Vec<String>) -> Vec<String> {
    if argv.first().map(String::as_str) == Some("tar") {
        if let Some(i) = argv.iter().position(|a| a == "-C") {
            if let Some(dir) = argv.get(i + 1).cloned() {
                let local = pod_dir(&env.pods_root, pod).join(dir.trim_start_matches('/'));
                let _ = std::fs::create_dir_all(&local);
                argv[i + 1] = local.display().to_string();
            }
        }
    }
    argv
}
