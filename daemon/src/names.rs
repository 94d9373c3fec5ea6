//! The one charset check for names that end up in file names: nodes, flows, runs, backups.
//!
//! splice-dr builds paths such as `state_dir/health/NODE.jsonl` or `state_dir/locks/NODE.lock`
//! from names. A name that came from the socket, a webhook or a manifest could otherwise
//! carry `/` or `..` and write anywhere as root, so every path builder checks its name here
//! first, even when the caller already matched it against the config (defence in depth).

use thiserror::Error;

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name is refused; the message says which kind of name, the name, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} name {name:?} is not allowed: {reason}; use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 . _ - (not starting with a dot)")]
pub struct NameError {
    /// `node`, `flow`, `run`, `backup`.
    pub kind: &'static str,
    /// The refused name (shown debug-escaped, so control characters stay visible).
    pub name: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

/// Checks that `name` (a `kind` name) is safe as one path component.
pub fn check(kind: &'static str, name: &str) -> Result<(), NameError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is too long")
    } else if name.starts_with('.') {
        Some("it starts with a dot")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("it contains a character outside the allowed set")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(NameError {
            kind,
            name: name.chars().take(MAX_NAME_LEN + 8).collect(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in [
            "validator-1",
            "sv_2",
            "a",
            "restore.v2",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert_eq!(check("node", n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_names_that_could_leave_their_directory() {
        for n in [
            "",
            ".",
            "..",
            ".hidden",
            "../../../../tmp/x",
            "a/b",
            "/abs",
            "a\0b",
            "a b",
            "ünï",
            "a\nb",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            let e = check("node", n).unwrap_err();
            assert!(e.to_string().starts_with("node name "), "{e}");
            assert!(e.to_string().contains("A-Z a-z 0-9"), "{e}");
        }
    }
}
