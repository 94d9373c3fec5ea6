//! Docker volumes: copy aside, wipe, put back, drop, and place a file with an owner.
//!
//! The runbook removes the Postgres volume with `docker volume rm`; this module copies it
//! aside first (so a failed restore can put it back) and empties it in place rather than
//! removing it, because compose's stopped containers still reference the volume. Copies
//! run in short-lived helper containers made from the postgres container's own image (no
//! image needs pulling), as root so owners and modes survive.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptions, StartContainerOptions,
    UploadToContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;
use splice_dr_plugin_api::BackendError;

use crate::engine::{engine_err, Engine};

/// Marker in the names of kept copies; nothing else is ever deleted by `drop_kept`.
pub const KEPT_MARKER: &str = splice_dr_pg_toolkit::names::KEPT_MARKER;
/// Label on kept copies naming the volume they were copied from.
pub const KEPT_FROM_LABEL: &str = "io.splice-dr.kept-from";
/// Label on helper containers, so leftovers of a killed daemon can be found.
pub const HELPER_LABEL: &str = "io.splice-dr.helper";

/// Names of running containers that mount `volume`.
pub async fn running_users(engine: &Engine, volume: &str) -> Result<Vec<String>, BackendError> {
    let filters: HashMap<&str, Vec<String>> = HashMap::from([
        ("volume", vec![volume.to_string()]),
        (
            "status",
            vec!["running".to_string(), "restarting".to_string()],
        ),
    ]);
    let list = engine
        .docker()
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(engine_err(format!("listing users of volume {volume}")))?;
    Ok(list
        .into_iter()
        .map(|c| {
            c.names
                .and_then(|n| n.first().cloned())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string()
        })
        .collect())
}

/// Refuses to touch a volume a running container uses (copying or wiping live Postgres
/// files would produce a torn copy or crash the server).
pub async fn ensure_unused(engine: &Engine, volume: &str) -> Result<(), BackendError> {
    let users = running_users(engine, volume).await?;
    if users.is_empty() {
        Ok(())
    } else {
        Err(BackendError::Config(format!(
            "volume {volume} is in use by running container(s) {}: stop them first \
             (the restore flow scales them to 0)",
            users.join(", ")
        )))
    }
}

/// Fails with a clear message when the volume does not exist.
pub async fn ensure_exists(engine: &Engine, volume: &str) -> Result<(), BackendError> {
    engine
        .docker()
        .inspect_volume(volume)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => BackendError::NotFound(format!(
                "volume {volume} does not exist (`docker volume ls` lists the real names; \
                 a wrong project prefix is the runbook's classic mistake)"
            )),
            other => engine_err(format!("inspecting volume {volume}"))(other),
        })
}

/// Runs `script` with `sh -c` in a helper container from `image`, with `binds`
/// (`volume:/path[:ro]`), as root; returns its stdout or an error with its output.
pub async fn run_helper(
    engine: &Engine,
    image: &str,
    binds: Vec<String>,
    script: &str,
) -> Result<String, BackendError> {
    let docker = engine.docker();
    let id = create_helper(engine, image, binds, Some(script)).await?;
    let result = async {
        docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
            .map_err(engine_err("starting a helper container"))?;
        let mut wait = docker.wait_container(&id, None::<WaitContainerOptions>);
        let mut code = 0i64;
        while let Some(r) = wait.next().await {
            match r {
                Ok(w) => code = w.status_code,
                // bollard reports a non-zero exit as an error carrying the code.
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => return Err(engine_err("waiting for a helper container")(e)),
            }
        }
        let mut logs = docker.logs(
            &id,
            Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
        );
        let (mut out, mut err) = (String::new(), String::new());
        while let Some(item) = logs.next().await {
            match item.map_err(engine_err("reading a helper container's output"))? {
                bollard::container::LogOutput::StdOut { message } => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                bollard::container::LogOutput::StdErr { message } => {
                    err.push_str(&String::from_utf8_lossy(&message))
                }
                _ => {}
            }
        }
        if code != 0 {
            return Err(BackendError::Command {
                command: format!("helper container: sh -c '{script}'"),
                status: format!("exit code {code}"),
                stderr: err.trim().to_string(),
            });
        }
        Ok(out)
    }
    .await;
    remove_container(engine, &id).await;
    result
}

/// Creates (does not start) a helper container.
async fn create_helper(
    engine: &Engine,
    image: &str,
    binds: Vec<String>,
    script: Option<&str>,
) -> Result<String, BackendError> {
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        user: Some("0:0".into()),
        entrypoint: Some(vec!["sh".into(), "-c".into()]),
        cmd: Some(vec![script.unwrap_or("true").to_string()]),
        labels: Some(HashMap::from([(
            HELPER_LABEL.to_string(),
            engine.project().to_string(),
        )])),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = engine
        .docker()
        .create_container(Some(CreateContainerOptionsBuilder::new().build()), body)
        .await
        .map_err(engine_err(format!(
            "creating a helper container from image {image}"
        )))?;
    Ok(created.id)
}

async fn remove_container(engine: &Engine, id: &str) {
    let _ = engine
        .docker()
        .remove_container(
            id,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
}

/// Creates an empty volume for a kept copy of `live`, labelled with its origin.
pub async fn create_kept(engine: &Engine, live: &str, kept: &str) -> Result<(), BackendError> {
    engine
        .docker()
        .create_volume(VolumeCreateRequest {
            name: Some(kept.to_string()),
            labels: Some(HashMap::from([
                (KEPT_FROM_LABEL.to_string(), live.to_string()),
                (
                    "io.splice-dr.created".to_string(),
                    chrono::Utc::now().to_rfc3339(),
                ),
            ])),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(engine_err(format!("creating volume {kept}")))
}

/// Deletes a kept copy; refuses any volume that is not one.
pub async fn remove_kept(engine: &Engine, kept: &str) -> Result<(), BackendError> {
    if !kept.contains(KEPT_MARKER) {
        return Err(BackendError::Config(format!(
            "refusing to delete volume {kept}: it is not a copy splice-dr kept"
        )));
    }
    engine
        .docker()
        .remove_volume(kept, None::<RemoveVolumeOptions>)
        .await
        .map_err(engine_err(format!("removing volume {kept}")))
}

/// Kept copies of any of `lives`.
pub async fn kept_copies(engine: &Engine, lives: &[String]) -> Result<Vec<String>, BackendError> {
    let filters: HashMap<&str, Vec<String>> =
        HashMap::from([("label", vec![KEPT_FROM_LABEL.to_string()])]);
    let list = engine
        .docker()
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .map_err(engine_err("listing volumes"))?;
    let mut out: Vec<String> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|v| {
            v.labels
                .get(KEPT_FROM_LABEL)
                .is_some_and(|from| lives.contains(from))
        })
        .map(|v| v.name)
        .collect();
    out.sort();
    Ok(out)
}

/// Copies a local file into `volume` at `dest_path` (relative to the volume root) owned by
/// `uid:gid` with `mode`, through the engine's archive upload into a helper container
/// that is never started.
pub async fn put_file(
    engine: &Engine,
    image: &str,
    volume: &str,
    src: &Path,
    dest_path: &str,
    owner: (u64, u64),
    mode: u32,
) -> Result<u64, BackendError> {
    let data = tokio::fs::read(src)
        .await
        .map_err(|e| BackendError::io(format!("reading {}", src.display()), e))?;
    let len = data.len() as u64;
    let mut header = tar::Header::new_gnu();
    header.set_size(len);
    header.set_mode(mode);
    header.set_uid(owner.0);
    header.set_gid(owner.1);
    header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(
            &mut header,
            dest_path.trim_start_matches('/'),
            data.as_slice(),
        )
        .map_err(|e| BackendError::io("building the upload archive", e))?;
    let archive = builder
        .into_inner()
        .map_err(|e| BackendError::io("building the upload archive", e))?;
    let id = create_helper(engine, image, vec![format!("{volume}:/volume")], None).await?;
    let result = engine
        .docker()
        .upload_to_container(
            &id,
            Some(
                UploadToContainerOptionsBuilder::new()
                    .path("/volume")
                    .build(),
            ),
            bollard::body_full(archive.into()),
        )
        .await
        .map_err(engine_err(format!(
            "copying {} into volume {volume}",
            src.display()
        )));
    remove_container(engine, &id).await;
    result.map(|_| len)
}

/// Where a plain local volume keeps its data on the engine's host: `(root, name)` with the
/// data at `<root>/<name>/_data`. `None` for any other driver or for options (an NFS or
/// bind-backed volume), which are copied instead of renamed.
pub async fn local_layout(
    engine: &Engine,
    volume: &str,
) -> Result<Option<(String, String)>, BackendError> {
    let v = engine
        .docker()
        .inspect_volume(volume)
        .await
        .map_err(engine_err(format!("inspecting volume {volume}")))?;
    if v.driver != "local" || !v.options.is_empty() {
        return Ok(None);
    }
    let suffix = format!("/{volume}/_data");
    Ok(v.mountpoint
        .strip_suffix(&suffix)
        .filter(|root| !root.is_empty())
        .map(|root| (root.to_string(), volume.to_string())))
}

/// Shell single-quoting for the volume names put into helper scripts.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Moves the whole data directory of `from` into `to` with one `rename` (same filesystem),
/// leaving `from` with a new empty data directory of the same owner and mode. At no
/// instant is the data split between the two volumes: a crash leaves it entirely in one of
/// them. Returns the bytes moved.
pub async fn move_data(
    engine: &Engine,
    image: &str,
    root: &str,
    from: &str,
    to: &str,
) -> Result<u64, BackendError> {
    let (f, t) = (
        sh_quote(&format!("/vols/{from}/_data")),
        sh_quote(&format!("/vols/{to}/_data")),
    );
    let script = format!(
        "set -e; rm -rf {t}; mv {f} {t}; mkdir {f}; chown --reference={t} {f}; chmod --reference={t} {f}; du -sb {t} | cut -f1"
    );
    let out = run_helper(engine, image, vec![format!("{root}:/vols")], &script).await?;
    Ok(out.trim().parse().unwrap_or_default())
}
