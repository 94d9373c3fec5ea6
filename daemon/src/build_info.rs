//! Which build this is: the crate version, the git commit and the build date, stamped by
//! `build.rs`. An operator quotes them in a bug report; `--version` and the
//! `splice_dr_build_info` metric show them, so a fleet's dashboards tell which nodes run
//! which build.

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit the binary was built from, `-dirty` when the tree had uncommitted
/// changes, `unknown` when built outside git (a source tarball).
pub const COMMIT: &str = env!("SPLICE_DR_COMMIT");

/// The build date, UTC, `YYYY-MM-DD` (`SOURCE_DATE_EPOCH`'s when that was set).
pub const BUILD_DATE: &str = env!("SPLICE_DR_BUILD_DATE");

/// What `--version` prints after the program name: `0.1.0 (3f2a1bc 2026-12-06)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SPLICE_DR_COMMIT"),
    " ",
    env!("SPLICE_DR_BUILD_DATE"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_version_commit_and_date() {
        assert_eq!(LONG_VERSION, format!("{VERSION} ({COMMIT} {BUILD_DATE})"));
        let date: Vec<&str> = BUILD_DATE.split('-').collect();
        assert_eq!(date.iter().map(|p| p.len()).collect::<Vec<_>>(), [4, 2, 2]);
        assert!(!COMMIT.is_empty() && !COMMIT.contains(' '));
    }
}
