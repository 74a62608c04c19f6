//! JSONL outputs: a file or standard output.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::Value;

use super::EmitError;

/// A JSONL writer.
pub struct JsonlSink {
    target: String,
    out: Box<dyn Write + Send>,
    pub written: u64,
}

impl JsonlSink {
    /// Writes to `path`, or to standard output when `None`.
    ///
    /// # Errors
    /// [`EmitError::Create`] when the file cannot be created.
    pub fn open(path: Option<&Path>) -> Result<JsonlSink, EmitError> {
        Ok(match path {
            Some(p) => JsonlSink {
                target: p.display().to_string(),
                out: Box::new(BufWriter::new(File::create(p).map_err(|source| {
                    EmitError::Create {
                        path: p.to_owned(),
                        source,
                    }
                })?)),
                written: 0,
            },
            None => JsonlSink {
                target: "stdout".into(),
                out: Box::new(BufWriter::new(io::stdout())),
                written: 0,
            },
        })
    }

    /// Writes one message as a line.
    ///
    /// # Errors
    /// [`EmitError::Write`] on I/O failure.
    pub fn write(&mut self, v: &Value) -> Result<(), EmitError> {
        let target = &self.target;
        let map = |source| EmitError::Write {
            target: target.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, v).map_err(|e| map(io::Error::other(e)))?;
        self.out.write_all(b"\n").map_err(map)?;
        self.written += 1;
        Ok(())
    }

    /// Flushes buffered lines.
    ///
    /// # Errors
    /// [`EmitError::Write`] on I/O failure.
    pub fn flush(&mut self) -> Result<(), EmitError> {
        let target = &self.target;
        self.out.flush().map_err(|source| EmitError::Write {
            target: target.clone(),
            source,
        })
    }
}
