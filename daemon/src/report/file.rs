//! Writes the report page: atomically, in FILE's directory, mode 0600 (a report names
//! hosts, users and errors). The rename replaces whatever is at FILE — a symlink there is
//! replaced, never followed, so a planted link cannot make `report` overwrite another file.

use std::path::Path;

/// Writes `page` to `path`; the error names the file.
pub fn write_page(path: &Path, page: &str) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!(
            "{} is a directory: give the report file's name, e.g. {}/report.html",
            path.display(),
            path.display()
        ));
    }
    crate::util::write_atomic(path, page.as_bytes())
        .map_err(|e| format!("cannot write the report to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_page_is_private_and_a_symlink_at_file_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let file = dir.path().join("report.html");
        std::os::unix::fs::symlink(&victim, &file).unwrap();
        write_page(&file, "<p>page</p>").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert!(meta.file_type().is_file(), "the link itself is replaced");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "<p>page</p>");
    }

    #[test]
    fn a_directory_or_missing_parent_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_page(dir.path(), "x").unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let e = write_page(&dir.path().join("no/such/dir/r.html"), "x").unwrap_err();
        assert!(e.contains("cannot write the report to"), "{e}");
    }
}
