//! The exact shell command that removes a leftover start-up recovery does not remove by
//! itself — the previous data kept by an interrupted restore —, shown by `status` so an
//! operator who has verified the node can remove it without composing SQL or names.

use crate::config::{BackendKind, NodeConfig};

/// The command removing `name` (a kept database or volume of `node`), or `None` when the
/// backend has no one-line command or the name could break out of the quoting.
pub fn removal(node: &NodeConfig, name: &str) -> Option<String> {
    if name.is_empty() || name.contains(['\'', '"', '\\', '\n']) {
        return None;
    }
    match node.backend {
        BackendKind::Postgres => {
            let pg = node.postgres.as_ref()?;
            let url = without_password(&pg.url);
            let password = pg
                .password_file
                .as_ref()
                .map(|f| format!("PGPASSWORD=\"$(head -n1 '{}')\" ", f.display()));
            Some(format!(
                "{}psql '{url}' -c 'DROP DATABASE \"{name}\"'",
                password.unwrap_or_default()
            ))
        }
        BackendKind::Compose => Some(format!("docker volume rm '{name}'")),
        _ => None,
    }
}

/// `url` with any password removed: `status` output is shown and logged.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) => {
            let user = auth.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_the_command() {
        assert_eq!(
            without_password("postgresql://u:secret@h:5432/postgres"),
            "postgresql://u@h:5432/postgres"
        );
        assert_eq!(without_password("postgresql://h/db"), "postgresql://h/db");
    }
}
