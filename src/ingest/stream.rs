//! Streaming input: the records of a file, a gzip stream or standard input, read in bounded
//! memory (one record at a time, returned in place from the reader's buffer when the whole line
//! is there, else copied into a reused buffer; gzip decompressed as it is read).
//!
//! A file is JSON Lines (one record per line) unless its first record is not a whole JSON value
//! on its line (a pretty-printed document, or an array opening on a line of its own): then the
//! whole input is one record. A record longer than the size cap is not kept: it is reported as
//! [`Record::TooLarge`] with its first bytes only, and reading goes on after it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use super::file::IngestError;
use crate::event::RawRef;

/// Bytes of an oversized record kept for its dead letter.
pub const TOO_LARGE_PREFIX: usize = 256;

/// One record read.
#[derive(Debug, PartialEq)]
pub enum Record<'a> {
    Ok(&'a [u8], RawRef),
    /// Over the cap: its first bytes and its full length.
    TooLarge {
        prefix: &'a [u8],
        len: u64,
        raw: RawRef,
    },
}

/// Reads records one at a time.
/// The UTF-8 byte-order mark some tools put at the start of a text file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub struct RecordReader {
    reader: Box<dyn BufRead + Send>,
    path: String,
    source: Arc<str>,
    max: usize,
    line: u64,
    buf: Vec<u8>,
    /// Not yet known whether the input is JSON Lines or one document.
    first: bool,
    /// One document, already returned.
    finished: bool,
    /// A would-be document that is not valid JSON, read whole (within the cap): its lines are
    /// returned as JSON Lines, from this offset, the next one numbered `line + 1`.
    pending: Option<(Vec<u8>, usize)>,
    /// Bytes of the reader's buffer the last record was returned from, in place: consumed
    /// when the next one is asked for.
    lent: usize,
}

/// The error of an input `path` that could not be read on (a borrow of the path only, so it can
/// be built while the reader is borrowed).
fn read_error(path: &str) -> impl FnOnce(io::Error) -> IngestError + '_ {
    move |source| IngestError::Read {
        path: path.to_owned(),
        source,
    }
}

fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

impl RecordReader {
    /// Opens `path` (`-` for standard input), decompressing gzip (recognised by its magic
    /// bytes, not the name) as it is read.
    ///
    /// # Errors
    /// [`IngestError::Open`] when the file cannot be opened.
    pub fn open(path: &str, max_record_bytes: usize) -> Result<RecordReader, IngestError> {
        let raw: Box<dyn Read + Send> = if path == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path).map_err(|source| IngestError::Open {
                path: path.into(),
                source,
            })?)
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, raw);
        let gzip = buffered
            .fill_buf()
            .map(|b| b.starts_with(&[0x1f, 0x8b]))
            .map_err(read_error(path))?;
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        let label = if path == "-" { "stdin" } else { path };
        Ok(RecordReader::new(reader, label, max_record_bytes, gzip))
    }

    /// Reads records from `reader`, named `source` in dead letters.
    pub fn new(
        reader: Box<dyn BufRead + Send>,
        source: &str,
        max_record_bytes: usize,
        gzip: bool,
    ) -> RecordReader {
        RecordReader {
            reader,
            path: if gzip {
                format!("{source} (gzip)")
            } else {
                source.to_owned()
            },
            source: Arc::from(source),
            max: max_record_bytes,
            line: 0,
            buf: Vec::new(),
            first: true,
            finished: false,
            pending: None,
            lent: 0,
        }
    }

    /// Appends to `buf` up to the next newline (consumed, not kept) or the end, keeping at most
    /// `limit` bytes in `buf`; returns the bytes the line had (all of them, kept or not) and
    /// whether anything was read.
    fn read_line(&mut self, limit: usize) -> Result<(u64, bool), IngestError> {
        let mut len = 0u64;
        let mut any = false;
        loop {
            let chunk = self.reader.fill_buf().map_err(read_error(&self.path))?;
            if chunk.is_empty() {
                return Ok((len, any));
            }
            any = true;
            let (part, newline) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], true),
                None => (chunk, false),
            };
            let room = limit.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&part[..part.len().min(room)]);
            len += part.len() as u64;
            let used = part.len() + usize::from(newline);
            self.reader.consume(used);
            if newline {
                return Ok((len, any));
            }
        }
    }

    /// Skips blank lines in the reader's buffer; true when a whole non-blank line within the
    /// cap is there next, then counted and marked lent (its length with its newline). False
    /// when the next line is not whole in the buffer: it is read by copying.
    fn line_in_buffer(&mut self) -> Result<bool, IngestError> {
        loop {
            let chunk = self.reader.fill_buf().map_err(read_error(&self.path))?;
            let Some(end) = memchr::memchr(b'\n', chunk) else {
                return Ok(false);
            };
            if end > self.max {
                return Ok(false);
            }
            let blank = chunk[..end].trim_ascii().is_empty();
            self.line += 1;
            if blank {
                self.reader.consume(end + 1);
                continue;
            }
            self.lent = end + 1;
            return Ok(true);
        }
    }

    /// The next record, or `None` at the end of the input.
    ///
    /// # Errors
    /// [`IngestError::Read`] when the input cannot be read (a truncated gzip stream, say): the
    /// records before it were returned.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, IngestError> {
        self.reader.consume(std::mem::take(&mut self.lent));
        if !self.first && !self.finished && self.pending.is_none() && self.line_in_buffer()? {
            // The common case: the whole line is in the reader's buffer, and is returned from
            // there instead of being copied.
            let (raw, len) = (RawRef::new(self.source.clone(), self.line), self.lent - 1);
            // The same buffer again (no read: it holds the line): `line_in_buffer` could not
            // hand out a borrow of it and still consume the blank lines before.
            let chunk = self.reader.fill_buf().map_err(read_error(&self.path))?;
            return Ok(Some(Record::Ok(chunk[..len].trim_ascii(), raw)));
        }
        if self.pending.is_some() {
            let mut found = None;
            if let Some((data, at)) = &mut self.pending {
                while *at < data.len() {
                    let rest = &data[*at..];
                    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                    let start = *at;
                    *at += end + 1;
                    self.line += 1;
                    if !data[start..start + end].trim_ascii().is_empty() {
                        found = Some(start..start + end);
                        break;
                    }
                }
            }
            let Some(range) = found else {
                return Ok(None);
            };
            let raw = RawRef::new(self.source.clone(), self.line);
            let data = &self.pending.as_ref().expect("checked above").0;
            return Ok(Some(Record::Ok(data[range].trim_ascii(), raw)));
        }
        if self.finished {
            return Ok(None);
        }
        loop {
            self.buf.clear();
            // One byte over the cap tells an oversized record from one exactly at it.
            let (len, any) = self.read_line(self.max.saturating_add(1))?;
            if !any {
                return Ok(None);
            }
            if self.line == 0 && self.buf.starts_with(UTF8_BOM) {
                // A byte-order mark (Windows tools write one) is not part of the first record.
                self.buf.drain(..UTF8_BOM.len());
            }
            self.line += 1;
            let trimmed = self.buf.trim_ascii();
            if trimmed.is_empty() && len as usize <= self.max {
                continue;
            }
            if self.first {
                self.first = false;
                // A document pretty-printed or an array spread over lines opens a structure it
                // does not close on its first line (`{`, `{"Records": [`, `[{"a": 1},`); a
                // corrupt first line of JSON Lines does not look like that, and costs itself
                // only. A would-be document that is not JSON falls back to JSON Lines below.
                let opens = trimmed.starts_with(b"{") || trimmed.starts_with(b"[");
                let unfinished = matches!(trimmed.last(), Some(b'{' | b'[' | b',' | b':'));
                let whole = len as usize <= self.max && opens && unfinished && !is_json(trimmed);
                if whole {
                    return self.whole_document(len);
                }
            }
            let raw = RawRef::new(self.source.clone(), self.line);
            if len as usize > self.max {
                return Ok(Some(Record::TooLarge {
                    prefix: &self.buf[..TOO_LARGE_PREFIX.min(self.buf.len())],
                    len,
                    raw,
                }));
            }
            let trimmed = self.buf.trim_ascii();
            return Ok(Some(Record::Ok(trimmed, raw)));
        }
    }

    /// The rest of the input, after a first line of `first_len` bytes already in the buffer, as
    /// one record (position 0).
    fn whole_document(&mut self, first_len: u64) -> Result<Option<Record<'_>>, IngestError> {
        self.finished = true;
        let mut len = first_len;
        loop {
            // Past the cap nothing more is kept, not even the newlines.
            if self.buf.len() <= self.max {
                self.buf.push(b'\n');
            }
            len += 1;
            let (n, any) = self.read_line(self.max.saturating_add(1))?;
            if !any {
                break;
            }
            len += n;
        }
        let raw = RawRef::new(self.source.clone(), 0);
        // The newline added after the last line is not the input's.
        let len = len - 1;
        if len as usize > self.max {
            return Ok(Some(Record::TooLarge {
                prefix: &self.buf[..TOO_LARGE_PREFIX.min(self.buf.len())],
                len,
                raw,
            }));
        }
        if !is_json(self.buf.trim_ascii()) {
            // Not a document after all: its lines, each a record of its own.
            self.pending = Some((std::mem::take(&mut self.buf), 0));
            self.line = 0;
            return self.next_record();
        }
        Ok(Some(Record::Ok(self.buf.trim_ascii(), raw)))
    }
}

/// Every record of an input, collected (for tests and small tools).
///
/// # Errors
/// As [`RecordReader::next_record`].
pub fn collect(reader: &mut RecordReader) -> Result<Vec<(Vec<u8>, u64, bool)>, IngestError> {
    let mut out = Vec::new();
    while let Some(r) = reader.next_record()? {
        match r {
            Record::Ok(b, raw) => out.push((b.to_vec(), raw.position, true)),
            Record::TooLarge { prefix, raw, .. } => {
                out.push((prefix.to_vec(), raw.position, false))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(data: &[u8], max: usize) -> Vec<(String, u64, bool)> {
        read_from(Box::new(io::Cursor::new(data.to_vec())), max)
    }

    fn read_from(reader: Box<dyn BufRead + Send>, max: usize) -> Vec<(String, u64, bool)> {
        let mut r = RecordReader::new(reader, "t", max, false);
        collect(&mut r)
            .unwrap()
            .into_iter()
            .map(|(b, p, ok)| (String::from_utf8_lossy(&b).into_owned(), p, ok))
            .collect()
    }

    #[test]
    fn json_lines_stream_with_line_numbers_and_bad_lines_stay_separate() {
        assert_eq!(
            read(b"{\"a\":1}\n\nnot json\n{\"b\":2}", 100),
            vec![
                ("{\"a\":1}".into(), 1, true),
                ("not json".into(), 3, true),
                ("{\"b\":2}".into(), 4, true)
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_record() {
        assert_eq!(
            read(b"\xEF\xBB\xBF{\"a\":1}\n{\"b\":2}\n", 100),
            vec![("{\"a\":1}".into(), 1, true), ("{\"b\":2}".into(), 2, true)]
        );
        let v = read(b"\xEF\xBB\xBF[\n{\"a\":1},\n{\"b\":2}\n]", 100);
        assert_eq!(v.len(), 1);
        assert!(is_json(v[0].0.as_bytes()), "{v:?}");
    }

    #[test]
    fn pretty_printed_documents_and_arrays_are_one_record() {
        let v = read(b"{\n  \"Records\": [\n {\"a\":1}\n ]\n}\n", 100);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].1, 0);
        assert!(is_json(v[0].0.as_bytes()));
        let v = read(b"[\n{\"a\":1},\n{\"b\":2}\n]", 100);
        assert_eq!(v.len(), 1);
        let v = read(b"[{\"a\":1},{\"b\":2}]\n[{\"c\":3}]\n", 100);
        assert_eq!(v.len(), 2, "arrays one per line are JSON Lines");
        let v = read(b"{\"Records\": [\n  {\"a\":1},\n  {\"b\":2}\n]}\n", 100);
        assert_eq!(
            v.len(),
            1,
            "a delivery file pretty-printed from its first key"
        );
        let v = read(b"{\"eventVersion\":\"1.08\",\"trunc\n{\"a\":1}\n", 100);
        assert_eq!(v.len(), 2, "a truncated first line costs itself only");
    }

    #[test]
    fn a_broken_document_costs_its_bad_lines_only() {
        let v = read(b"{\n{\"a\":1}\n{\"b\":2}\n", 100);
        assert_eq!(
            v,
            vec![
                ("{".into(), 1, true),
                ("{\"a\":1}".into(), 2, true),
                ("{\"b\":2}".into(), 3, true)
            ]
        );
    }

    #[test]
    fn a_record_over_the_cap_is_reported_with_its_length_not_kept_and_reading_goes_on() {
        let mut data = b"{\"a\":1}\n{\"big\":\"".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10_000));
        data.extend(b"\"}\n{\"b\":2}\n");
        let mut r = RecordReader::new(Box::new(io::Cursor::new(data)), "t", 1000, false);
        assert!(matches!(r.next_record().unwrap(), Some(Record::Ok(_, _))));
        match r.next_record().unwrap() {
            Some(Record::TooLarge { prefix, len, raw }) => {
                assert_eq!(len, 10_010);
                assert_eq!(prefix.len(), TOO_LARGE_PREFIX);
                assert_eq!(raw.position, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.next_record().unwrap(), Some(Record::Ok(b, _)) if b == b"{\"b\":2}"));
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn an_oversized_document_keeps_no_more_than_the_cap_in_memory() {
        let mut data = b"[\n".to_vec();
        for _ in 0..200_000 {
            data.extend_from_slice(b"1,\n");
        }
        data.extend_from_slice(b"1]\n");
        let mut r = RecordReader::new(Box::new(io::Cursor::new(data)), "t", 1000, false);
        assert!(matches!(
            r.next_record().unwrap(),
            Some(Record::TooLarge { .. })
        ));
        assert!(r.buf.len() <= 1001, "{} bytes held", r.buf.len());
        let mut r = RecordReader::new(
            Box::new(io::Cursor::new(b"{\"a\":1}\n".to_vec())),
            "t",
            usize::MAX,
            false,
        );
        assert!(
            matches!(r.next_record().unwrap(), Some(Record::Ok(_, _))),
            "an unlimited cap does not overflow"
        );
    }

    #[test]
    fn gzip_is_decompressed_as_a_stream_and_a_truncated_one_is_an_error_after_its_records() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        for i in 0..2000 {
            writeln!(enc, "{{\"n\":{i}}}").unwrap();
        }
        let gz = enc.finish().unwrap();
        let whole = dir.path().join("whole.gz");
        std::fs::write(&whole, &gz).unwrap();
        let mut r = RecordReader::open(whole.to_str().unwrap(), 1000).unwrap();
        assert_eq!(collect(&mut r).unwrap().len(), 2000);
        let cut = dir.path().join("cut.gz");
        std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
        let mut r = RecordReader::open(cut.to_str().unwrap(), 1000).unwrap();
        let mut n = 0;
        let err = loop {
            match r.next_record() {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("a truncated gzip stream ends in an error"),
                Err(e) => break e,
            }
        };
        assert!(n > 0, "the records before the cut are read");
        assert!(err.to_string().contains("cut.gz (gzip)"), "{err}");
    }

    #[test]
    fn a_missing_input_names_the_path() {
        let err = RecordReader::open("/nonexistent/trail.json", 10)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/trail.json"));
    }

    #[test]
    fn records_are_the_same_whether_lines_are_read_in_place_or_across_buffer_refills() {
        // In place when a line is whole in the reader's buffer, copied when it spans a refill:
        // every buffer size must give the same records, positions and oversized reports.
        let data = format!(
            "\u{feff}{{\"a\":1}}\n\n  \n{{\"b\":\"{}\"}}\nnot json\r\n{{\"c\":\"{}\"}}\n\n{{\"d\":4}}",
            "x".repeat(40),
            "y".repeat(90)
        );
        for max in [30, 60, 200] {
            let whole = read(data.as_bytes(), max);
            for cap in [1, 2, 7, 16, 33, 64, 1024] {
                let buffered = io::BufReader::with_capacity(cap, io::Cursor::new(data.clone()));
                let got = read_from(Box::new(buffered), max);
                assert_eq!(got, whole, "buffer of {cap} bytes, cap {max}");
            }
        }
        assert_eq!(
            read(data.as_bytes(), 200).len(),
            5,
            "{:?}",
            read(data.as_bytes(), 200)
        );
    }
}
