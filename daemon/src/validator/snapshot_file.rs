//! A data-snapshot answer on disk, read without loading it.
//!
//! `GET v0/admin/domain/data-snapshot` answers `{"migration_id": M, "data_snapshot": {…}}`,
//! where the DomainMigrationDump holds the whole ACS (base64) and every DAR: gigabytes on a
//! real node. The answer is streamed to a private file ([`super::ValidatorClient::data_snapshot_to_file`]),
//! and this module reads what the flow needs from that file in bounded memory: the small
//! fields that are checked ([`read_head`]) and where the dump itself lies in the file
//! ([`dump_range`]), so the dump is copied to the node byte for byte as served.

use serde::Deserialize;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// The small fields of a data-snapshot answer; every other field (the ACS, the DARs) is
/// skipped while reading, never held.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnapshotHead {
    /// The migration id the answer says it was produced for.
    pub migration_id: i64,
    /// The dump's own fields.
    pub data_snapshot: DumpHead,
}

/// The small fields of a DomainMigrationDump.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DumpHead {
    /// The migration id inside the dump: a validator refuses a dump of another id.
    pub migration_id: i64,
    /// When the ACS was taken.
    pub acs_timestamp: String,
    /// The synchronizer the dump belongs to.
    #[serde(default)]
    pub domain_id: Option<String>,
}

/// Why an answer on disk cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// The file cannot be read.
    #[error("reading the data snapshot {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not the answer the API promises.
    #[error("the data snapshot answer is not what the API promises: {0}")]
    Shape(String),
}

/// Reads and checks the whole answer at `path` as JSON (one value, nothing after it,
/// no field twice) and returns its small fields. Bounded memory: the large fields are
/// skipped as they are read.
pub fn read_head(path: &Path) -> Result<SnapshotHead, SnapshotFileError> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    serde_json::from_reader(reader).map_err(|e| SnapshotFileError::Shape(e.to_string()))
}

/// The byte range of the `data_snapshot` object in the answer at `path`: what the node
/// starts from, exactly as served. Call it after [`read_head`] accepted the file (valid
/// JSON, no duplicate field). A key spelled with escapes is not recognised, so such an
/// answer is refused rather than half-understood.
pub fn dump_range(path: &Path) -> Result<Range<u64>, SnapshotFileError> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    find_object_value(file, b"data_snapshot")
        .map_err(|e| io(path, e))?
        .ok_or_else(|| {
            SnapshotFileError::Shape(
                "no top-level \"data_snapshot\" object (spelled without escapes)".into(),
            )
        })
}

fn io(path: &Path, source: std::io::Error) -> SnapshotFileError {
    SnapshotFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where the value of the top-level `key` lies in a JSON document, when that value is an
/// object. Expects valid JSON (checked before); a top level that is not an object, or a
/// value of `key` that is not one, is `None`.
fn find_object_value(mut reader: impl Read, key: &[u8]) -> std::io::Result<Option<Range<u64>>> {
    let mut scan = Scan::new(key);
    let mut buf = vec![0u8; 1 << 16];
    let mut offset = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            match scan.step(b, offset + i as u64) {
                Step::Go => {}
                Step::Found(range) => return Ok(Some(range)),
                Step::NotThere => return Ok(None),
            }
        }
        offset += n as u64;
    }
}

/// The scanner's state between bytes.
struct Scan<'k> {
    key: &'k [u8],
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1, the next string is a key.
    expect_key: bool,
    /// Collecting the bytes of a depth-1 key (at most `key.len() + 1` of them).
    collecting: Option<Vec<u8>>,
    /// The last depth-1 key was `key`; a `:` follows.
    matched: bool,
    /// After `key:`; the value starts at the next non-space byte.
    value_next: bool,
    start: Option<u64>,
}

enum Step {
    Go,
    Found(Range<u64>),
    NotThere,
}

impl<'k> Scan<'k> {
    fn new(key: &'k [u8]) -> Self {
        Scan {
            key,
            depth: 0,
            in_string: false,
            escaped: false,
            expect_key: false,
            collecting: None,
            matched: false,
            value_next: false,
            start: None,
        }
    }

    fn step(&mut self, b: u8, at: u64) -> Step {
        if self.in_string {
            self.string_byte(b);
            return Step::Go;
        }
        if self.value_next && !b.is_ascii_whitespace() {
            self.value_next = false;
            if b != b'{' {
                return Step::NotThere;
            }
            self.start = Some(at);
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.expect_key {
                    self.expect_key = false;
                    self.collecting = Some(Vec::with_capacity(self.key.len() + 1));
                }
            }
            b'{' | b'[' => {
                if self.depth == 0 && b != b'{' {
                    return Step::NotThere;
                }
                self.depth += 1;
                self.expect_key |= self.depth == 1;
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if let (1, Some(start)) = (self.depth, self.start) {
                    return Step::Found(start..at + 1);
                }
            }
            b':' if self.depth == 1 && self.matched => {
                self.matched = false;
                self.value_next = true;
            }
            b',' if self.depth == 1 => {
                self.expect_key = true;
                self.matched = false;
            }
            _ => {}
        }
        Step::Go
    }

    fn string_byte(&mut self, b: u8) {
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.in_string = false;
            if let Some(k) = self.collecting.take() {
                self.matched = k == self.key;
            }
            return;
        }
        if let Some(k) = self.collecting.as_mut() {
            if k.len() <= self.key.len() {
                k.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_of(doc: &str) -> Option<String> {
        find_object_value(doc.as_bytes(), b"data_snapshot")
            .unwrap()
            .map(|r| doc[r.start as usize..r.end as usize].to_string())
    }

    #[test]
    fn the_dump_object_is_found_byte_for_byte() {
        let doc =
            r#" { "migration_id" : 3 , "data_snapshot" :  {"a": [1, {"b": "}]\"{"}], "c": {}} }"#;
        assert_eq!(
            range_of(doc).unwrap(),
            r#"{"a": [1, {"b": "}]\"{"}], "c": {}}"#
        );
        // The key as a value, inside nested objects or strings, is not the key.
        let doc = r#"{"x": "data_snapshot", "y": {"data_snapshot": {"no": 1}}, "data_snapshot": {"yes": 2}}"#;
        assert_eq!(range_of(doc).unwrap(), r#"{"yes": 2}"#);
        let doc = r#"{"data_snapshot_x": {"no": 1}, "data_snapshot": {}}"#;
        assert_eq!(range_of(doc).unwrap(), "{}");
    }

    #[test]
    fn anything_else_is_not_found() {
        for doc in [
            r#"{"data_snapshot": "a string"}"#,
            r#"{"data_snapshot": [1]}"#,
            r#"{"data\u005fsnapshot": {}}"#,
            r#"[{"data_snapshot": {}}]"#,
            r#"{"migration_id": 1}"#,
            "",
        ] {
            assert_eq!(range_of(doc), None, "{doc}");
        }
    }

    #[test]
    fn the_head_is_read_and_duplicates_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        std::fs::write(&p, r#"{"migration_id": 4, "data_snapshot": {"migration_id": 4, "acs_timestamp": "t", "acs_snapshot": "AAAA", "dars": []}}"#).unwrap();
        let head = read_head(&p).unwrap();
        assert_eq!(head.migration_id, 4);
        assert_eq!(head.data_snapshot.acs_timestamp, "t");
        std::fs::write(&p, r#"{"migration_id": 4, "data_snapshot": {"migration_id": 4, "acs_timestamp": "t"}, "data_snapshot": {"migration_id": 5, "acs_timestamp": "t"}}"#).unwrap();
        let e = read_head(&p).unwrap_err().to_string();
        assert!(e.contains("duplicate"), "{e}");
        std::fs::write(
            &p,
            r#"{"migration_id": 4, "data_snapshot": {"migration_id": 4, "acs_timestamp": "t"}} x"#,
        )
        .unwrap();
        assert!(read_head(&p).is_err());
    }
}
