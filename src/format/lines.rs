//! Line-oriented reading shared by JSON lines and CSV: read a file in large blocks of whole
//! lines, decode each block in one go, and only when a block fails, decode it line by line to
//! isolate and skip the bad records.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::ErrorPolicy;
use crate::Result;
use crate::error::Context;

const BLOCK: usize = 4 << 20;

/// A vectorized decoder of whole lines.
pub(crate) trait BlockDecoder: Send {
    /// Decode all records of `bytes` (complete lines); all or nothing.
    fn decode_block(&mut self, bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError>;
    /// Forget any partial state after an error.
    fn reset(&mut self) -> Result<()>;
    /// Rows that decoded but are still malformed (e.g. a missing field): (row, message).
    fn check(&self, _batch: &RecordBatch, _lines: &[&[u8]]) -> Vec<(usize, String)> {
        vec![]
    }
    /// Whether `check` has anything to look at in this batch (cheap).
    fn needs_check(&self, _batch: &RecordBatch) -> bool {
        false
    }
}

/// Reads one file of lines into batches.
pub(crate) struct LineReader<D: BlockDecoder> {
    path: PathBuf,
    file: Option<Box<dyn Read + Send>>,
    decoder: D,
    policy: ErrorPolicy,
    carry: Vec<u8>,
    next_line: u64,
    pending: std::collections::VecDeque<RecordBatch>,
    eof: bool,
    skip_first_line: bool,
    follow: bool,
}

fn non_blank_lines(block: &[u8], first_line: u64) -> Vec<(u64, &[u8])> {
    block
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (first_line + i as u64, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| l.iter().any(|b| !b.is_ascii_whitespace()))
        .collect()
}

impl<D: BlockDecoder> LineReader<D> {
    pub(crate) fn new(path: PathBuf, decoder: D, policy: ErrorPolicy) -> Self {
        Self {
            path,
            file: None,
            decoder,
            policy,
            carry: Vec::new(),
            next_line: 1,
            pending: Default::default(),
            eof: false,
            skip_first_line: false,
            follow: false,
        }
    }

    /// Read `reader` (an object's bytes) instead of opening `path`, which names it in messages.
    pub(crate) fn over(mut self, reader: Box<dyn Read + Send>) -> Self {
        self.file = Some(reader);
        self
    }

    /// Follow the file as it grows: at its current end, `next` returns None without finishing,
    /// and a later call reads what was appended (only complete lines are decoded).
    pub(crate) fn following(mut self) -> Self {
        self.follow = true;
        self
    }

    /// Skip the first line if `header(first_line)` says it is a header.
    pub(crate) fn with_header_check(mut self, skip: bool) -> Self {
        self.skip_first_line = skip;
        self
    }

    fn location(&self, line: u64) -> String {
        format!("{}:{line}", self.path.display())
    }

    /// The next batch, or None at the end of the file (when following: at its current end).
    pub(crate) fn next(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Ok(Some(b));
            }
            if self.eof {
                return Ok(None);
            }
            if !self.read_block()? && self.follow {
                return Ok(None);
            }
        }
    }

    /// Read and decode one block; false when nothing new was read.
    fn read_block(&mut self) -> Result<bool> {
        if self.file.is_none() {
            let f =
                File::open(&self.path).context(|| format!("opening {}", self.path.display()))?;
            self.file = Some(Box::new(f));
        }
        let mut buf = std::mem::take(&mut self.carry);
        let start = buf.len();
        buf.resize(start + BLOCK, 0);
        let mut filled = start;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| crate::Error::Plan("file not open".into()))?;
        let mut at_end = false;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .context(|| format!("reading {}", self.path.display()))?;
            if n == 0 {
                at_end = true;
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        let read_any = filled > start;
        // A followed file may still grow: its last, unterminated line is not complete yet.
        self.eof = at_end && !self.follow;
        let complete = if self.eof {
            buf.len()
        } else {
            match buf.iter().rposition(|b| *b == b'\n') {
                Some(p) => p + 1,
                None => {
                    // A line longer than the block (or not yet terminated): keep it for later.
                    self.carry = buf;
                    return Ok(read_any && !at_end);
                }
            }
        };
        self.carry = buf[complete..].to_vec();
        buf.truncate(complete);
        let mut block: &[u8] = &buf;
        let mut first_line = self.next_line;
        if self.skip_first_line {
            self.skip_first_line = false;
            let end = block
                .iter()
                .position(|b| *b == b'\n')
                .map_or(block.len(), |p| p + 1);
            block = &block[end..];
            first_line += 1;
        }
        let newlines = bytecount(block);
        self.decode(block, first_line)?;
        self.next_line = first_line + newlines;
        Ok(read_any)
    }

    fn decode(&mut self, block: &[u8], first_line: u64) -> Result<()> {
        match self.decoder.decode_block(block) {
            Ok(batches) => {
                let mut row_offset = 0;
                let mut lines = None;
                for batch in batches {
                    let n = batch.num_rows();
                    let batch = if self.decoder.needs_check(&batch) {
                        let lines = lines.get_or_insert_with(|| non_blank_lines(block, first_line));
                        let raw: Vec<&[u8]> = lines[row_offset..row_offset + n]
                            .iter()
                            .map(|(_, l)| *l)
                            .collect();
                        let bad = self.decoder.check(&batch, &raw);
                        self.drop_rows(batch, &bad, &lines[row_offset..row_offset + n])?
                    } else {
                        batch
                    };
                    row_offset += n;
                    if batch.num_rows() > 0 {
                        self.pending.push_back(batch);
                    }
                }
                Ok(())
            }
            Err(_) => {
                self.decoder.reset()?;
                self.decode_line_by_line(block, first_line)
            }
        }
    }

    fn drop_rows(
        &self,
        batch: RecordBatch,
        bad: &[(usize, String)],
        lines: &[(u64, &[u8])],
    ) -> Result<RecordBatch> {
        if bad.is_empty() {
            return Ok(batch);
        }
        let mut keep = vec![true; batch.num_rows()];
        for (row, msg) in bad {
            let (line, raw) = lines[*row];
            self.policy
                .malformed(&self.location(line), msg, raw, true)?;
            keep[*row] = false;
        }
        let mask = datafusion::arrow::array::BooleanArray::from(keep);
        Ok(datafusion::arrow::compute::filter_record_batch(
            &batch, &mask,
        )?)
    }

    fn decode_line_by_line(&mut self, block: &[u8], first_line: u64) -> Result<()> {
        let mut good: Vec<RecordBatch> = Vec::new();
        for (line_no, line) in non_blank_lines(block, first_line) {
            let mut bytes = line.to_vec();
            bytes.push(b'\n');
            match self.decoder.decode_block(&bytes) {
                Ok(batches) => {
                    for b in batches {
                        let bad = if self.decoder.needs_check(&b) {
                            self.decoder.check(&b, &[line])
                        } else {
                            vec![]
                        };
                        let b = self.drop_rows(b, &bad, &[(line_no, line)])?;
                        if b.num_rows() > 0 {
                            good.push(b);
                        }
                    }
                }
                Err(e) => {
                    self.decoder.reset()?;
                    self.policy
                        .malformed(&self.location(line_no), &e.to_string(), line, false)?;
                }
            }
        }
        if let Some(first) = good.first() {
            let schema = first.schema();
            let merged = datafusion::arrow::compute::concat_batches(&schema, &good)?;
            self.pending.push_back(merged);
        }
        Ok(())
    }
}

fn bytecount(b: &[u8]) -> u64 {
    b.iter().filter(|c| **c == b'\n').count() as u64
}
