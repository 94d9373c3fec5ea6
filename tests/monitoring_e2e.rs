//! What operators watch and deploy: the Prometheus alert rules (a rules file and the same
//! rules as a PrometheusRule), the Grafana dashboard and the Kubernetes manifests, checked
//! with the real `promtool` (Debian's `prometheus` package) and against a running daemon's
//! `/metrics`, so a renamed metric or a broken query fails here, not on an operator's
//! Grafana.

mod common;
#[path = "common/sim.rs"]
mod sim;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const RULES_FILE: &str = "deploy/monitoring/splice-dr-alerts.yml";
const PROMETHEUS_RULE: &str = "deploy/k8s/prometheusrule.yaml";
const DASHBOARD: &str = "deploy/monitoring/splice-dr-dashboard.json";

/// A file of the repository.
fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every YAML document of a repository file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `promtool check rules FILE`; panics with promtool's output when the rules are refused.
///
/// promtool is part of the test setup (.ci/run installs Debian's `prometheus` package), so
/// its absence fails the test: a skipped check would let broken rules through CI.
fn promtool_check_rules(file: &Path) -> String {
    promtool(&["check", "rules"], file)
}

/// `promtool ARGS FILE` (`check rules`, `test rules`); panics with promtool's output when
/// it refuses.
fn promtool(args: &[&str], file: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package \
                 (`apt-get install --no-install-recommends prometheus`), as .ci/run does"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} {} refused it:\n{text}",
        args.join(" "),
        file.display()
    );
    text
}

/// The `groups` of a rules document, written to a temporary file promtool can check.
fn rules_tempfile(dir: &Path, name: &str, groups: &Value) -> PathBuf {
    let path = dir.join(name);
    // JSON is YAML: promtool reads it as a rules file.
    std::fs::write(&path, serde_json::to_string_pretty(groups).unwrap()).unwrap();
    path
}

/// The alert names of a rules document's groups.
fn alert_names(groups: &Value) -> BTreeSet<String> {
    groups["groups"]
        .as_array()
        .expect("groups is a list")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("a group has rules").iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_and_cover_what_operators_must_hear() {
    let report = promtool_check_rules(&repo_file(RULES_FILE));
    let docs = yaml_docs(RULES_FILE);
    assert_eq!(docs.len(), 1, "{RULES_FILE}: one document");
    let names = alert_names(&docs[0]);
    assert!(
        report.contains(&format!("{} rules found", names.len())),
        "{report}"
    );
    for required in [
        "SpliceDrAbsent",
        "SpliceDrDown",
        "SpliceBackupTooOld",
        "SpliceDrBackupStale",
        "SpliceDrillFailed",
        "SpliceDrillOverdue",
        "SpliceDrRepositoryDown",
        "SpliceDrBreakerTripped",
        "SpliceDrRunFailed",
        "SpliceDrApprovalWaiting",
        "SpliceDrRestoreRunwayLow",
        "SpliceDrDownRunwayLow",
    ] {
        assert!(names.contains(required), "{required} missing: {names:?}");
    }
    // The daemon-absent alert must not depend on any series the daemon itself exports
    // being present: absent() of the metric every serving daemon exports at once.
    let text = read(RULES_FILE);
    assert!(text.contains("absent(splice_dr_build_info)"), "{text}");
    assert!(text.contains("up{job=\"splice-dr\"} == 0"), "{text}");
}

/// The runway alerts fire for the node whose runway is below a week, after their `for`,
/// and not for the node with more: `promtool test rules` evaluates the real rules file
/// over synthetic series (the replicas' series of one node are taken at their maximum).
#[test]
fn the_runway_alerts_fire_below_a_week_only() {
    const DAY: u64 = 86_400;
    let series = |name: &str, node: &str, instance: &str, secs: u64| {
        serde_json::json!({
            "series": format!("{name}{{node=\"{node}\",instance=\"{instance}\"}}"),
            "values": format!("{secs}x40"),
        })
    };
    let alert = |name: &str, at: &str, node: Option<(&str, &str, &str, &str)>| {
        let expected: Vec<Value> = node
            .into_iter()
            .map(|(node, severity, summary, description)| {
                serde_json::json!({
                    "exp_labels": {"node": node, "severity": severity},
                    "exp_annotations": {"summary": summary, "description": description},
                })
            })
            .collect();
        serde_json::json!({"eval_time": at, "alertname": name, "exp_alerts": expected})
    };
    let restore = "splice_dr_restore_runway_seconds";
    let down = "splice_dr_down_runway_seconds";
    let restore_help = "Take a backup (`splice-dr backup`) and check why none was taken or restorable: `splice-dr status`.";
    let down_help = "Bring the node back (e.g. `splice-dr restore`) before the horizon; past it only `splice-dr reonboard` recovers it.";
    let tests = serde_json::json!({
        "rule_files": [repo_file(RULES_FILE)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                series(restore, "fresh", "a", 8 * DAY),
                // One replica's older view does not hide the other's newer one.
                series(restore, "fresh", "b", 5 * DAY),
                series(restore, "old", "a", 5 * DAY),
                series(down, "fresh", "a", 30 * DAY),
                series(down, "old", "a", DAY),
            ],
            "alert_rule_test": [
                alert("SpliceDrRestoreRunwayLow", "10m", None),
                alert("SpliceDrRestoreRunwayLow", "20m", Some(("old", "warning",
                    "old: the newest restorable backup passes the pruning horizon in 5d 0h 0m 0s",
                    restore_help))),
                alert("SpliceDrDownRunwayLow", "3m", None),
                alert("SpliceDrDownRunwayLow", "10m", Some(("old", "critical",
                    "old: down so long that the network disables it in 1d 0h 0m 0s",
                    down_help))),
            ],
        }],
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runway-tests.yml");
    std::fs::write(&file, serde_json::to_string_pretty(&tests).unwrap()).unwrap();
    let report = promtool(&["test", "rules"], &file);
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn the_prometheusrule_holds_the_same_rules_and_passes_promtool() {
    let docs = yaml_docs(PROMETHEUS_RULE);
    assert_eq!(docs.len(), 1, "{PROMETHEUS_RULE}: one document");
    let rule = &docs[0];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    let spec = &rule["spec"];
    let dir = tempfile::tempdir().unwrap();
    promtool_check_rules(&rules_tempfile(dir.path(), "prometheusrule.yml", spec));
    let file = &yaml_docs(RULES_FILE)[0];
    assert_eq!(
        spec, file,
        "{PROMETHEUS_RULE} spec and {RULES_FILE} differ: keep one copy of the rules"
    );
    let resources = kustomized();
    assert!(resources.contains("prometheusrule.yaml"), "{resources:?}");
}

/// The files `kubectl apply -k deploy/k8s` applies (each must exist).
fn kustomized() -> BTreeSet<String> {
    let kustomization = &yaml_docs("deploy/k8s/kustomization.yaml")[0];
    let resources: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    for file in &resources {
        assert!(repo_file(&format!("deploy/k8s/{file}")).exists(), "{file}");
    }
    resources
}

/// Every PromQL expression of the dashboard (panel targets, in rows or not) with the panel
/// title it belongs to.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("every target has an expr");
                out.push((p["title"].as_str().unwrap_or("?").to_string(), expr.into()));
            }
            if let Some(nested) = p["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    out
}

/// A dashboard expression as Grafana sends it: its variables replaced the way Grafana
/// interpolates them (intervals become durations, a multi-value variable set to "All"
/// becomes its `allValue` regex).
fn interpolated(expr: &str) -> String {
    let mut e = expr.to_string();
    for (var, value) in [
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "7d"),
        ("$node", ".*"),
        ("$instance", ".*"),
    ] {
        e = e.replace(var, value);
    }
    assert!(
        !e.contains('$'),
        "{expr}: a Grafana variable this test does not know; add it to interpolated()"
    );
    e
}

#[test]
fn every_dashboard_query_is_promql_promtool_parses() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    // Each expression becomes a recording rule: `promtool check rules` parses its PromQL
    // with Prometheus' own parser (the same as the server's query API).
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (title, expr))| {
            // Named after the panel, so promtool's complaint says which one.
            let panel: String = title
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
                .collect();
            serde_json::json!({"record": format!("dashboard:{panel}:{i}"), "expr": interpolated(expr)})
        })
        .collect();
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let report = promtool_check_rules(&rules_tempfile(dir.path(), "dashboard.yml", &groups));
    assert!(
        report.contains(&format!("{} rules found", queries.len())),
        "{report}"
    );
    // Importable anywhere: the datasource is an input Grafana asks for at import.
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let text = read(DASHBOARD);
    let uids: BTreeSet<&str> = text
        .match_indices("\"uid\": \"")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(
        uids,
        BTreeSet::from(["${DS_PROMETHEUS}", "splice-dr"]),
        "every datasource is the import input (the other uid is the dashboard's own)"
    );
    // What the issue asks to see, each on some panel.
    let all: String = queries.iter().map(|(_, e)| e.as_str()).collect();
    for metric in [
        "splice_dr_last_successful_backup_timestamp_seconds",
        "splice_dr_last_drill_success",
        "splice_dr_runs_total",
        "splice_dr_repository_up",
        "splice_dr_rule_breaker_tripped",
        "splice_dr_build_info",
    ] {
        assert!(all.contains(metric), "no panel shows {metric}");
    }
}

/// Every `splice_dr_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("splice_dr_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn scrape(port: u16, path: &str) -> (u16, String) {
    let resp = ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().read_to_string().unwrap())
}

/// A daemon on `dbs` serving metrics on a free port, with one rule (so the breaker gauge
/// has a series) and fast health probes of a component whose health endpoint is down (a
/// component's gauge is set by a health change, and its first probe is one).
fn metrics_site(dbs: &NodeDbs) -> (Site, u16) {
    let port = sim::closed_port();
    let node = format!(
        "[node.postgres.components.web]\nhealth_url = \"http://127.0.0.1:{}/ready\"\n\n\
         [[rule]]\nname = \"never\"\non = \"alert.NeverFires\"\nflow = \"backup\"\n",
        sim::closed_port()
    );
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "health_interval = \"300ms\"",
        "",
        &node,
    );
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&site.config, cfg).unwrap();
    (site, port)
}

/// Every metric the alert rules and the dashboard use is one a running daemon exports, and
/// every metric it exports is on the dashboard. A metric renamed in daemon/src/metrics.rs
/// without the rules and the dashboard fails this test.
///
/// Most series appear only once their event happened (a gauge has no value before its
/// first observation, a histogram no buckets before its first sample): the test causes
/// each event through the daemon — a backup and a drill of it, a rule, the repository
/// check and health probes the daemon runs on its own — and compares sample names, not
/// `# HELP` texts, so a name counts only when the daemon really produced a value for it.
#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_exported_by_the_daemon() {
    let dbs = NodeDbs::create("sdr_monitoring", 20);
    let (site, port) = metrics_site(&dbs);
    let daemon = site.start_daemon();
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = site.cli(&["drill", "--backup", &id]);
    assert!(out.status.success(), "{}", text(&out));

    let used: BTreeSet<String> = metric_names(&read(RULES_FILE))
        .into_iter()
        .chain(metric_names(&read(DASHBOARD)))
        .collect();
    // The drill's gauges are set when the autopilot sees the run's end in the journal,
    // after the CLI returned: wait for the last of the events to reach the scrape.
    let exported = |body: &str| -> BTreeSet<String> {
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(metric_names)
            .collect()
    };
    // On a timeout the assertion below names what is missing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut body = scrape(port, "/metrics").1;
    while !used.is_subset(&exported(&body)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        body = scrape(port, "/metrics").1;
    }
    let have = exported(&body);
    let missing: Vec<&String> = used.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\n{body}"
    );

    // The other direction: a new metric gets a panel (histograms by their sample names).
    let typed: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let dashboard = read(DASHBOARD);
    for metric in &typed {
        assert!(
            dashboard.contains(metric.as_str()),
            "{metric} is exported but on no panel of {DASHBOARD}"
        );
    }
    assert!(typed.len() >= 14, "{typed:?}");
    stop(daemon);
}

/// The probes of deploy/k8s ask the metrics listener for `/healthz`.
#[test]
fn the_metrics_listener_answers_the_probes_healthz() {
    let dbs = NodeDbs::create("sdr_monitoring_healthz", 10);
    let (site, port) = metrics_site(&dbs);
    let daemon = site.start_daemon();
    let (status, body) = scrape(port, splice_dr::metrics::HEALTHZ);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Another path is still refused: the listener serves what it documents.
    let other = ureq::get(&format!("http://127.0.0.1:{port}/nope")).call();
    assert!(
        matches!(other, Err(ureq::Error::StatusCode(404))),
        "{other:?}"
    );
    stop(daemon);
}

/// The object of `kind` among manifest documents.
fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:?}"))
}

/// The element of the manifest list `list` that `pred` picks.
fn item<'a>(list: &'a Value, what: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("{what}: {list} is not a list"))
        .iter()
        .find(|v| pred(v))
        .unwrap_or_else(|| panic!("no {what} in {list}"))
}

/// The container port a probe's or a Service's port names (a name or a number).
fn container_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => item(&container["ports"], "container port of that name", |p| {
            p["name"] == name.as_str()
        })["containerPort"]
            .as_u64()
            .unwrap(),
        other => panic!("a port is a name or a number, not {other}"),
    }
}

/// The daemon's longest wait for a cancelled run's rollback at shutdown: `UNDO_CAP` in
/// daemon/src/run_context/guard.rs (a private module, so read from its source: the test
/// fails when the constant changes form, and must be taught the new one).
fn undo_cap_seconds() -> u64 {
    let src = read("daemon/src/run_context/guard.rs");
    let line = src
        .lines()
        .find(|l| l.starts_with("pub const UNDO_CAP: Duration = Duration::from_secs("))
        .expect("UNDO_CAP in guard.rs");
    let inner = line
        .split("from_secs(")
        .nth(1)
        .and_then(|r| r.strip_suffix(");"))
        .expect("UNDO_CAP = Duration::from_secs(EXPR);");
    inner
        .split('*')
        .map(|f| f.trim().parse::<u64>().expect("a product of integers"))
        .product()
}

#[test]
fn the_k8s_deployment_reloads_probes_and_stops_as_the_daemon_needs() {
    let docs = yaml_docs("deploy/k8s/deployment.yaml");
    let deployment = of_kind(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = item(&pod["containers"], "container splice-dr", |c| {
        c["name"] == "splice-dr"
    });

    // The config: a ConfigMap mounted as a directory (a subPath mount is never updated, so
    // hot reload would never see an edit), and --config a file of that directory.
    let config_maps = yaml_docs("deploy/k8s/configmap.yaml");
    let config_map = config_maps
        .iter()
        .find(|d| d["metadata"]["name"] == "splice-dr-config")
        .expect("ConfigMap splice-dr-config");
    let volume = item(&pod["volumes"], "volume of the config ConfigMap", |v| {
        v["configMap"]["name"] == "splice-dr-config"
    });
    let mount = item(
        &container["volumeMounts"],
        "mount of the config volume",
        |m| m["name"] == volume["name"],
    );
    assert!(
        mount.get("subPath").is_none(),
        "the config is mounted with subPath, which Kubernetes never updates: {mount}"
    );
    let mount_path = mount["mountPath"].as_str().unwrap();
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("--config PATH in args");
    let key = config_path
        .strip_prefix(&format!("{}/", mount_path.trim_end_matches('/')))
        .unwrap_or_else(|| panic!("--config {config_path} is not in the mount {mount_path}"));
    let toml_text = config_map["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no key {key}"));

    // The probes: a path and port the daemon serves with this config.
    let config: toml::Value = toml::from_str(toml_text).expect("the ConfigMap's TOML");
    let listen: std::net::SocketAddr = config["metrics"]["listen"]
        .as_str()
        .expect("[metrics] listen in the ConfigMap")
        .parse()
        .unwrap();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(
            get["path"],
            splice_dr::metrics::HEALTHZ,
            "{probe} asks for a path the metrics listener does not serve"
        );
        assert_eq!(
            container_port(container, &get["port"]),
            u64::from(listen.port()),
            "{probe} asks a port the daemon does not listen on ([metrics] listen = {listen})"
        );
    }
    assert!(
        listen.ip().is_unspecified(),
        "the kubelet probes the pod's IP: [metrics] listen must not be loopback ({listen})"
    );

    // The metrics Service reaches the same port, and says so to Prometheus.
    let service = of_kind(&yaml_docs("deploy/k8s/service.yaml"), "Service").clone();
    let port = &service["spec"]["ports"][0];
    assert_eq!(
        container_port(container, &port["targetPort"]),
        u64::from(listen.port())
    );
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/port"],
        listen.port().to_string()
    );
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // Shutdown waits for rollbacks up to the undo cap: the pod must not be killed before.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let cap = undo_cap_seconds();
    assert!(
        grace >= cap,
        "terminationGracePeriodSeconds {grace} is below the daemon's rollback wait {cap} s"
    );
    // Start-up recovery may be such a rollback: liveness must not restart the pod in it.
    let startup = &container["startupProbe"];
    let patience = startup["periodSeconds"].as_u64().unwrap_or(10)
        * startup["failureThreshold"].as_u64().unwrap_or(3);
    assert!(
        patience >= cap,
        "the startupProbe gives up after {patience} s, before a {cap} s start-up rollback"
    );

    // Everything above is applied by `kubectl apply -k`.
    let resources = kustomized();
    for file in ["configmap.yaml", "deployment.yaml", "service.yaml"] {
        assert!(resources.contains(file), "{file} missing in {resources:?}");
    }
}

/// systemd kills a daemon that is still rolling back once `TimeoutStopSec` runs out, as
/// Kubernetes does after the grace period: the unit must wait as long as the pod does.
#[test]
fn the_systemd_unit_waits_for_a_rollback_at_stop() {
    let unit = read("deploy/splice-dr.service");
    let timeout: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec= in deploy/splice-dr.service")
        .trim()
        .parse()
        .expect("TimeoutStopSec in plain seconds");
    assert!(
        timeout >= undo_cap_seconds(),
        "TimeoutStopSec={timeout} would kill a rollback the daemon may still run for {} s",
        undo_cap_seconds()
    );
}
