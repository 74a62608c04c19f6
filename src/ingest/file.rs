//! Reading input files into records.
//!
//! A file is one of: JSON Lines (one record per line; a bad line costs that line only), a
//! single JSON document (an array, a CloudTrail `{"Records":[...]}` delivery file, a Kubernetes
//! `EventList`, or one pretty-printed event), optionally gzip-compressed; `-` is standard input.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use crate::event::RawRef;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot open input {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot read input {path}: {source}")]
    Read { path: String, source: io::Error },
}

/// Reads a whole input, decompressing gzip (detected by its magic bytes, not the file name).
///
/// # Errors
/// [`IngestError`] naming the input when it cannot be opened, read or decompressed.
pub fn read_input(path: &str) -> Result<Vec<u8>, IngestError> {
    let mut raw = Vec::new();
    if path == "-" {
        io::stdin()
            .read_to_end(&mut raw)
            .map_err(|source| IngestError::Read {
                path: "stdin".into(),
                source,
            })?;
    } else {
        File::open(Path::new(path))
            .map_err(|source| IngestError::Open {
                path: path.into(),
                source,
            })?
            .read_to_end(&mut raw)
            .map_err(|source| IngestError::Read {
                path: path.into(),
                source,
            })?;
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 8);
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| IngestError::Read {
                path: format!("{path} (gzip)"),
                source,
            })?;
        return Ok(out);
    }
    Ok(raw)
}

fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

/// Splits input bytes into records, calling `f(record, where)` for each.
///
/// Positions are 1-based line numbers for JSON Lines and 0 for a whole-document record.
pub fn split_records(data: &[u8], source: &str, mut f: impl FnMut(&[u8], RawRef)) {
    let source: Arc<str> = Arc::from(source);
    let trimmed = data.trim_ascii();
    if trimmed.is_empty() {
        return;
    }
    let first_line = trimmed
        .split(|&c| c == b'\n')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let whole_document = trimmed.starts_with(b"[") || (!is_json(first_line) && is_json(trimmed));
    if whole_document {
        f(trimmed, RawRef::new(source.clone(), 0));
        return;
    }
    for (i, line) in data.split(|&c| c == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        f(line, RawRef::new(source.clone(), i as u64 + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &str) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        split_records(data.as_bytes(), "t", |b, r| {
            v.push((String::from_utf8_lossy(b).into_owned(), r.position))
        });
        v
    }

    #[test]
    fn json_lines_are_split_with_line_numbers_and_bad_lines_stay_separate() {
        let v = split("{\"a\":1}\n\nnot json\n{\"b\":2}\n");
        assert_eq!(
            v,
            vec![
                ("{\"a\":1}".into(), 1),
                ("not json".into(), 3),
                ("{\"b\":2}".into(), 4)
            ]
        );
    }

    #[test]
    fn pretty_printed_documents_and_arrays_are_one_record() {
        let v = split("{\n  \"Records\": [\n {\"a\":1}\n ]\n}\n");
        assert_eq!(v.len(), 1);
        let v = split("[\n{\"a\":1},\n{\"b\":2}\n]");
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn gzip_inputs_are_decompressed_by_magic_bytes() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(b"{\"a\":1}\n").unwrap();
        std::fs::write(&path, enc.finish().unwrap()).unwrap();
        assert_eq!(read_input(path.to_str().unwrap()).unwrap(), b"{\"a\":1}\n");
    }

    #[test]
    fn missing_input_names_the_path() {
        let err = read_input("/nonexistent/trail.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/trail.json"));
    }
}
