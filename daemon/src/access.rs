//! Who may do what through the socket: a peer's uid (SO_PEERCRED) makes it an operator, a
//! viewer, or nobody; viewers only read; file parameters come only from operators and only
//! from under `[daemon] input_dirs`.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

use splice_dr_protocol::wire::Request;

/// The uid this process runs as (owner of `/proc/self`): it is always an operator of its
/// own socket.
pub fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Operator,
    /// Read-only requests.
    Viewer,
}

/// The process behind a request, for the journal and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Peer uid.
    pub uid: u32,
    /// Peer pid, when the kernel reports one.
    pub pid: Option<i32>,
    /// Its role.
    pub role: Role,
    /// Whether it came over the socket (a privilege boundary) rather than in-process.
    pub remote: bool,
}

impl Caller {
    /// The current process (the CLI running a request in-process, with its own rights).
    pub fn this_process() -> Self {
        Caller {
            uid: own_uid(),
            pid: i32::try_from(std::process::id()).ok(),
            role: Role::Operator,
            remote: false,
        }
    }

    /// `uid N (pid M)`, as journaled in `approved_by` and `requests`.
    pub fn describe(&self) -> String {
        match self.pid {
            Some(pid) => format!("uid {} (pid {pid})", self.uid),
            None => format!("uid {} (pid unknown)", self.uid),
        }
    }
}

/// The role of `uid`: root and the daemon's own uid are always operators, then the
/// configured lists (`allowed_uids` counts as `operator_uids`); `None` = refused.
pub fn role_of(uid: u32, own_uid: u32, operators: &[u32], viewers: &[u32]) -> Option<Role> {
    if uid == 0 || uid == own_uid || operators.contains(&uid) {
        Some(Role::Operator)
    } else if viewers.contains(&uid) {
        Some(Role::Viewer)
    } else {
        None
    }
}

/// The request's name as the protocol spells it (`cmd`).
pub fn command_of(req: &Request) -> String {
    serde_json::to_value(req)
        .ok()
        .and_then(|v| v.get("cmd").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "request".into())
}

/// Whether a request only reads: these are the only ones viewers may send, and the
/// only ones not journaled with their caller.
pub fn is_read_only(req: &Request) -> bool {
    match req {
        Request::Ping
        | Request::Status
        | Request::Runs { .. }
        | Request::Show { .. }
        | Request::Backups { .. }
        | Request::Follow { .. } => true,
        Request::Prune { dry_run, .. } => *dry_run,
        _ => false,
    }
}

/// Whether a flow parameter names a file: the built-in flows' `identity_key` and
/// `identities_file`, and by convention any `*_file`, `*_path` or `*_dir`.
pub fn is_file_param(key: &str) -> bool {
    key == "identity_key" || ["_file", "_path", "_dir"].iter().any(|s| key.ends_with(s))
}

/// Checks the parameters that name a backup (`backup`): a backup id becomes a directory
/// in the repository, so it must be a plain name (`latest` and `preferred` are).
pub fn check_name_params(params: &Map<String, Value>) -> Result<(), String> {
    match params.get("backup") {
        None => Ok(()),
        Some(Value::String(id)) => {
            crate::names::check("backup", id).map_err(|e| format!("parameter `backup`: {e}"))
        }
        Some(other) => Err(format!(
            "parameter `backup` must be a backup id (a string), not {other}"
        )),
    }
}

/// Checks every file parameter of a remote request: it must be a string whose
/// canonical path lies under one of `input_dirs` (canonicalized too). The canonical path
/// replaces the value, so a symlink swapped afterwards cannot redirect the flow.
pub fn check_file_params(
    params: &mut Map<String, Value>,
    input_dirs: &[PathBuf],
) -> Result<(), String> {
    let dirs: Vec<PathBuf> = input_dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .collect();
    for (key, value) in params.iter_mut().filter(|(k, _)| is_file_param(k)) {
        let Some(given) = value.as_str() else {
            return Err(format!("parameter `{key}` must be a file path (a string)"));
        };
        let real = Path::new(given)
            .canonicalize()
            .map_err(|e| format!("parameter `{key}`: cannot open {given:?}: {e}"))?;
        if !dirs.iter().any(|d| real.starts_with(d)) {
            return Err(if input_dirs.is_empty() {
                format!("parameter `{key}` names a file ({given:?}), and no [daemon] input_dirs are configured: add the directory holding it to [daemon] input_dirs (files are read as root, so only listed directories are accepted)")
            } else {
                format!("parameter `{key}`: {given:?} is not under any of [daemon] input_dirs ({}); move the file there or add its directory", input_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))
            });
        }
        *value = Value::String(real.display().to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn root_and_own_uid_are_operators_and_viewers_only_read() {
        assert_eq!(role_of(0, 1000, &[], &[]), Some(Role::Operator));
        assert_eq!(role_of(1000, 1000, &[], &[]), Some(Role::Operator));
        assert_eq!(role_of(7, 1000, &[7], &[7]), Some(Role::Operator));
        assert_eq!(role_of(8, 1000, &[7], &[8]), Some(Role::Viewer));
        assert_eq!(role_of(9, 1000, &[7], &[8]), None);
        assert!(is_read_only(&Request::Status));
        assert!(!is_read_only(&Request::Pause));
        assert!(!is_read_only(&Request::Prune {
            node: None,
            dry_run: false
        }));
        assert_eq!(command_of(&Request::Cancel { run: "r".into() }), "cancel");
    }

    #[test]
    fn backup_params_are_plain_names() {
        assert!(check_name_params(json!({"backup": "latest"}).as_object().unwrap()).is_ok());
        assert!(
            check_name_params(json!({"backup": "n1-20261205T0800"}).as_object().unwrap()).is_ok()
        );
        let e = check_name_params(json!({"backup": "../../tmp/forged"}).as_object().unwrap())
            .unwrap_err();
        assert!(e.contains("backup name"), "{e}");
        assert!(check_name_params(json!({"backup": 3}).as_object().unwrap()).is_err());
    }

    #[test]
    fn file_params_must_lie_under_input_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("ids.json");
        std::fs::write(&inside, b"{}").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let dotted = dir.path().join("sub/../ids.json");
        let mut ok = json!({"identities_file": dotted, "backup": "b"});
        let map = ok.as_object_mut().unwrap();
        check_file_params(map, &[dir.path().to_path_buf()]).unwrap();
        assert_eq!(
            map["identities_file"],
            json!(inside.canonicalize().unwrap().display().to_string())
        );
        let mut shadow = json!({"identities_file": "/etc/shadow"});
        let e = check_file_params(shadow.as_object_mut().unwrap(), &[]).unwrap_err();
        assert!(e.contains("input_dirs"), "{e}");
        let e =
            check_file_params(shadow.as_object_mut().unwrap(), &[dir.path().into()]).unwrap_err();
        assert!(e.contains("not under"), "{e}");
        let mut escape = json!({"identity_key": dir.path().join("../../etc/shadow")});
        assert!(check_file_params(escape.as_object_mut().unwrap(), &[dir.path().into()]).is_err());
    }
}
