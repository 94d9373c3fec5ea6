//! Names of the databases a restore creates next to the live ones, and SQL quoting.
//!
//! Staged, kept and failed databases are recognised by name alone (`<live>__sdr_staging_<suffix>`
//! etc.) so that `leftovers` can find them after a crash without any state file, and so that
//! the drop operations can refuse to drop anything that is not one of them.

use splice_dr_plugin_api::BackendError;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Postgres truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;
/// Marker of a database restored but not yet in service.
pub const STAGING_MARKER: &str = "__sdr_staging_";
/// Marker of a replaced live database kept until the restore is proven.
pub const KEPT_MARKER: &str = "__sdr_kept_";
/// Marker of a restored database rolled back out of service, about to be dropped.
pub const FAILED_MARKER: &str = "__sdr_failed_";
/// Length of the random suffix that makes each derived name unique.
pub const SUFFIX_LEN: usize = 8;

/// A short, lowercase alphanumeric suffix unique enough for concurrent runs and tests.
pub fn new_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut n = h.finish();
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = String::with_capacity(SUFFIX_LEN);
    for _ in 0..SUFFIX_LEN {
        s.push(char::from(DIGITS[(n % 36) as usize]));
        n /= 36;
    }
    s
}

/// The longest prefix of `s` that fits in `max` bytes without splitting a character.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The part of `live` kept in a derived name, so that the whole name fits in 63 bytes.
fn live_part<'a>(live: &'a str, marker: &str) -> &'a str {
    truncate_bytes(live, MAX_IDENT_BYTES - marker.len() - SUFFIX_LEN)
}

/// `<live>` + `marker` + `suffix`, with `live` truncated so the result is a valid identifier
/// that Postgres will not silently truncate (which would break the name matching).
pub fn derived_name(live: &str, marker: &str, suffix: &str) -> String {
    format!("{}{marker}{suffix}", live_part(live, marker))
}

/// Whether `name` was made by [`derived_name`] for this `live` name and `marker`.
pub fn is_derived(name: &str, live: &str, marker: &str) -> bool {
    let prefix = format!("{}{marker}", live_part(live, marker));
    match name.strip_prefix(&prefix) {
        Some(rest) => {
            rest.len() == SUFFIX_LEN
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        }
        None => false,
    }
}

/// Refuses `kept` unless it is a kept copy of `live` (made by [`derived_name`] with
/// [`KEPT_MARKER`]). Every backend calls this before dropping or restoring a kept
/// database or volume: a wrong call (a script bug, a hand-edited record) must never drop
/// or overwrite a live one.
pub fn ensure_kept_of(kept: &str, live: &str, action: &str) -> Result<(), BackendError> {
    if is_derived(kept, live, KEPT_MARKER) {
        return Ok(());
    }
    Err(BackendError::Config(format!(
        "refusing to {action} `{kept}`: it is not a copy splice-dr kept of `{live}` (kept \
         copies are named `{}<8 characters>`); pass the record keep_storage or swap_in \
         returned",
        derived_name(live, KEPT_MARKER, "")
    )))
}

/// Whether `name` may go between single quotes in a command shown to an operator: a
/// name read back from the server or the engine could otherwise break out of the quoting
/// of a command they paste into a shell.
pub fn shell_quotable(name: &str) -> bool {
    !name.is_empty() && !name.contains(['\'', '"', '\\', '\n'])
}

/// Quotes an SQL identifier; every name is quoted because node databases are named like
/// `participant-0`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (standard_conforming_strings is on since Postgres 9.1).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `"schema"."table"`, for statements over user tables.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// The `psql` command that drops `name` on the server at `url`, for an operator to run.
/// The URL's password is removed: the command is shown by `status` and may be logged; a
/// `password_file` is read by the shell instead.
pub fn drop_database_command(
    url: &str,
    password_file: Option<&std::path::Path>,
    name: &str,
) -> String {
    let url = without_password(url);
    let password = password_file.map(|f| format!("PGPASSWORD=\"$(head -n1 '{}')\" ", f.display()));
    format!(
        "{}psql '{url}' -c 'DROP DATABASE \"{name}\"'",
        password.unwrap_or_default()
    )
}

/// `url` with any password removed.
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
    fn suffixes_are_short_and_distinct() {
        let a = new_suffix();
        let b = new_suffix();
        assert_eq!(a.len(), SUFFIX_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn derived_names_fit_and_match() {
        let s = new_suffix();
        let short = derived_name("participant-0", STAGING_MARKER, &s);
        assert_eq!(short, format!("participant-0__sdr_staging_{s}"));
        assert!(is_derived(&short, "participant-0", STAGING_MARKER));
        assert!(!is_derived(&short, "participant-0", KEPT_MARKER));
        assert!(!is_derived(&short, "participant", STAGING_MARKER));

        let long = "é".repeat(31); // 62 bytes, multi-byte characters
        for marker in [STAGING_MARKER, KEPT_MARKER, FAILED_MARKER] {
            let n = derived_name(&long, marker, &s);
            assert!(n.len() <= MAX_IDENT_BYTES, "{n} is {} bytes", n.len());
            assert!(is_derived(&n, &long, marker));
        }
    }

    #[test]
    fn only_kept_copies_of_the_live_name_pass() {
        let live = "participant-0";
        let kept = derived_name(live, KEPT_MARKER, &new_suffix());
        assert!(ensure_kept_of(&kept, live, "drop").is_ok());
        for wrong in [
            live.to_string(),
            "validator".to_string(),
            derived_name(live, STAGING_MARKER, "abcd1234"),
            derived_name("validator", KEPT_MARKER, "abcd1234"),
            format!("{kept}x"),
            format!("{live}{KEPT_MARKER}"),
        ] {
            let e = ensure_kept_of(&wrong, live, "drop")
                .unwrap_err()
                .to_string();
            assert!(e.contains("refusing to drop") && e.contains(&wrong), "{e}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("participant-0"), "\"participant-0\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(qualified("public", "t"), "\"public\".\"t\"");
    }
}
