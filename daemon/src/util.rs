//! Small helpers shared across the daemon. The file-system ones (atomic writes, short
//! tags) live with the repository (`splice_dr_repo::fs`), which needs them first, and are
//! re-exported here for the journal and the state files.

pub use splice_dr_repo::fs::{short_tag, write_atomic};

/// Truncates text for journals and terminals, on a char boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &s[..end], s.len() - end)
}
