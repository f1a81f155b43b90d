//! Line-oriented reading shared by JSON lines and CSV: read a file in large blocks of whole
//! lines and decode each block in one go. When a block fails, its bad records are isolated
//! without decoding every line on its own: lines the decoder's syntax screen rejects are
//! dropped, the rest decoded together, and a part that still fails is halved until each bad
//! line is alone; where both halves fail (bad lines are dense), its lines are tried one by one
//! only to tell them apart, and the good ones decoded together. Broken syntax thus costs a
//! screen and one decode per block, a few bad values a few decodes, not one decode (and one
//! batch) per line.
//!
//! One file is decoded by every core while it stays one split: the reader reads as many
//! blocks as there are cores, decodes them at once (each on its own thread with a fork of the
//! decoder), and hands their batches on in file order. Positions (byte offset and line),
//! watermarks and malformed-record handling are exactly those of reading block by block; a
//! pipe or a followed file is still read one block at a time, as its lines arrive.

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
pub(crate) trait BlockDecoder: Send + 'static {
    /// Decode all records of `bytes` (complete lines); all or nothing.
    fn decode_block(&mut self, bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError>;
    /// Forget any partial state after an error.
    fn reset(&mut self) -> Result<()>;
    /// A fresh decoder with the same settings, for decoding another block at the same time.
    fn fork(&self) -> Result<Self>
    where
        Self: Sized;
    /// Rows that decoded but are still malformed (e.g. a missing field): (row, message).
    /// Each with whether it is only a missing field (`'json.fail-on-missing-field'`).
    fn check(&self, _batch: &RecordBatch, _lines: &[&[u8]]) -> Vec<(usize, String, bool)> {
        vec![]
    }
    /// Whether `check` has anything to look at in this batch (cheap).
    fn needs_check(&self, _batch: &RecordBatch) -> bool {
        false
    }
    /// Why `line` cannot be a record, found without decoding it (a syntax check); None when
    /// it may be one. Run only on the lines of a block that failed.
    fn screen(&self, _line: &[u8]) -> Option<String> {
        None
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
    /// Decoded batches not handed out yet, each with the position just after its last line
    /// when that is known (one row per line: JSON).
    pending: std::collections::VecDeque<(RecordBatch, Option<LinePosition>)>,
    /// The position after the batch handed out last, if known.
    last: Option<LinePosition>,
    /// Whether every record is one line (JSON lines; not CSV, whose quoted fields may span
    /// lines), so positions can be named between the batches of a block.
    row_per_line: bool,
    eof: bool,
    skip_first_line: bool,
    follow: bool,
    /// A pipe: decode what each read brings (its complete lines) instead of filling a block.
    stream: bool,
    /// Byte offset (in the file) just past the last block decoded: the next complete line.
    offset: u64,
    /// The whole content, when reading an object's bytes rather than a file.
    bytes: Option<bytes::Bytes>,
    /// Blocks read and decoded at once (one per core): each on its own thread, with its own
    /// fork of the decoder, then handed on in file order.
    workers: usize,
    /// Forks of the decoder not decoding a block right now.
    forks: Vec<D>,
    /// The blocks being decoded, read ahead while the batches before them are handed on.
    inflight: Option<Round<D>>,
    /// Where the batches handed on so far end when none is pending: just past the last block
    /// whose batches went to `pending` (the blocks in flight are not handed on yet).
    handed: LinePosition,
    /// When only some columns are decoded: the schema of the batches handed on, and which of
    /// its columns are decoded (the others are NULL).
    widen: Option<(datafusion::arrow::datatypes::SchemaRef, super::ReadColumns)>,
    /// Bytes per block ([`BLOCK`]; smaller in tests).
    block: usize,
}

/// Blocks being decoded, each on its own thread, in file order; where the last one ends.
struct Round<D> {
    parts: Vec<std::thread::JoinHandle<(D, Block, Result<Decoded<'static>>)>>,
    end: LinePosition,
}

/// A block of whole lines read from the file, not decoded yet.
struct Block {
    buf: Vec<u8>,
    /// Where its lines start in `buf` (past a skipped header).
    start: usize,
    /// Byte offset of `buf[start]` in the file, and its line number.
    offset: u64,
    first_line: u64,
}

impl Block {
    fn lines(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Blocks decoded at once by one reader: one per core, at most this many.
const MAX_WORKERS: usize = 8;

/// Where a line reader is: the byte offset of the next complete line and its line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinePosition {
    /// Byte offset of the next line not yet read.
    pub offset: u64,
    /// Its line number (1-based), for messages.
    pub line: u64,
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
            stream: false,
            offset: 0,
            bytes: None,
            last: None,
            row_per_line: false,
            workers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, MAX_WORKERS),
            forks: Vec::new(),
            inflight: None,
            handed: LinePosition { offset: 0, line: 1 },
            widen: None,
            block: BLOCK,
        }
    }

    /// Read blocks of `block` bytes, `workers` at once (tests: many blocks from a small file).
    #[cfg(test)]
    pub(crate) fn with_blocks(mut self, block: usize, workers: usize) -> Self {
        self.block = block;
        self.workers = workers.max(1);
        self
    }

    /// Decode only the columns in `read` (before anything is read): `f` gives the schema of
    /// the batches handed on and a decoder of those columns, made from this reader's (None:
    /// this decoder reads whole rows). The other columns are handed on NULL.
    pub(crate) fn reading(
        mut self,
        read: Option<super::ReadColumns>,
        f: impl FnOnce(
            &D,
            &super::ReadColumns,
        ) -> Result<Option<(datafusion::arrow::datatypes::SchemaRef, D)>>,
    ) -> Result<Self> {
        let Some(read) = read else { return Ok(self) };
        if let Some((schema, decoder)) = f(&self.decoder, &read)? {
            self.decoder = decoder;
            self.forks.clear();
            self.inflight = None;
            self.widen = Some((schema, read));
        }
        Ok(self)
    }

    /// Every record is one line: checkpoints may fall between the batches of a block.
    pub(crate) fn one_record_per_line(mut self) -> Self {
        self.row_per_line = true;
        self
    }

    /// The position of the next batch, when every decoded batch has been handed out (a
    /// checkpoint can only name a line boundary).
    pub(crate) fn position(&self) -> Option<LinePosition> {
        if self.pending.is_empty() {
            return Some(self.handed);
        }
        self.last
    }

    /// Continue from `pos` (in the file opened by path, or in the object's bytes).
    pub(crate) fn seek(&mut self, pos: LinePosition) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let (reader, len, what): (Box<dyn Read + Send>, u64, &str) = match &self.bytes {
            Some(bytes) => {
                let len = bytes.len() as u64;
                let rest = bytes.slice(pos.offset.min(len) as usize..);
                (Box::new(std::io::Cursor::new(rest)), len, "object")
            }
            None => {
                let mut f = File::open(&self.path)
                    .context(|| format!("opening {}", self.path.display()))?;
                let len = f
                    .metadata()
                    .context(|| format!("reading {}", self.path.display()))?
                    .len();
                f.seek(SeekFrom::Start(pos.offset.min(len)))
                    .context(|| format!("seeking in {}", self.path.display()))?;
                (Box::new(f), len, "file")
            }
        };
        if pos.offset > len {
            return Err(crate::Error::Execution {
                operator: "restore".into(),
                message: format!(
                    "{} is shorter ({len} bytes) than the checkpointed position {}: the {what} \
                     changed since the checkpoint",
                    self.path.display(),
                    pos.offset
                ),
            });
        }
        // Blocks read ahead are dropped (their threads are waited for: the forks come back).
        if let Some(round) = self.inflight.take() {
            for part in round.parts {
                if let Ok((fork, _, _)) = part.join() {
                    self.forks.push(fork);
                }
            }
        }
        self.file = Some(reader);
        self.offset = pos.offset;
        self.next_line = pos.line;
        self.handed = pos;
        self.carry.clear();
        self.pending.clear();
        self.last = None;
        self.eof = false;
        if pos.offset > 0 {
            self.skip_first_line = false;
        }
        Ok(())
    }

    /// Read an object's bytes instead of opening `path`, which names it in messages.
    pub(crate) fn over_bytes(mut self, bytes: bytes::Bytes) -> Self {
        self.file = Some(Box::new(std::io::Cursor::new(bytes.clone())));
        self.bytes = Some(bytes);
        self
    }

    /// Follow the file as it grows: at its current end, `next` returns None without finishing,
    /// and a later call reads what was appended (only complete lines are decoded).
    pub(crate) fn following(mut self) -> Self {
        self.follow = true;
        self
    }

    /// Read a pipe: each read's complete lines are decoded at once, so rows go on while the
    /// producer still writes.
    pub(crate) fn streaming(mut self) -> Self {
        self.stream = true;
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
    ///
    /// A file read to its end (not followed, not a pipe) is read ahead: as soon as a round of
    /// blocks is decoded, the next round is read and starts decoding while its batches are
    /// handed on.
    pub(crate) fn next(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some((b, pos)) = self.pending.pop_front() {
                self.last = pos;
                return match &self.widen {
                    Some((schema, read)) => Ok(Some(read.widen(schema, &b)?)),
                    None => Ok(Some(b)),
                };
            }
            if let Some(round) = self.inflight.take() {
                self.finish(round)?;
                if !(self.stream || self.follow || self.eof) {
                    self.inflight = self.start()?.0;
                }
                continue;
            }
            if self.eof {
                return Ok(None);
            }
            let (round, read_any) = self.start()?;
            match round {
                Some(round) => self.inflight = Some(round),
                None if self.follow && !read_any => return Ok(None),
                None => {}
            }
        }
    }

    /// Read the next blocks (one per worker, or one when following a file or reading a pipe)
    /// and start decoding them; None when no whole line was read, with whether any byte was.
    fn start(&mut self) -> Result<(Option<Round<D>>, bool)> {
        let want = if self.stream || self.follow {
            1
        } else {
            self.workers
        };
        let mut blocks = Vec::with_capacity(want);
        let mut read_any = false;
        while blocks.len() < want && !self.eof {
            let (block, read) = self.read_one()?;
            read_any |= read;
            match block {
                Some(b) => blocks.push(b),
                None => break,
            }
        }
        if blocks.is_empty() {
            return Ok((None, read_any));
        }
        let row_per_line = self.row_per_line;
        let mut parts = Vec::with_capacity(blocks.len());
        for block in blocks {
            let mut fork = match self.forks.pop() {
                Some(f) => f,
                None => self.decoder.fork()?,
            };
            let part = std::thread::Builder::new()
                .name("weir-decode".into())
                .spawn(move || {
                    let decoded = decode_one(&mut fork, &block, row_per_line).map(owned);
                    (fork, block, decoded)
                })
                .context(|| format!("decoding {}", self.path.display()))?;
            parts.push(part);
        }
        let end = LinePosition {
            offset: self.offset,
            line: self.next_line,
        };
        Ok((Some(Round { parts, end }), read_any))
    }

    /// Wait for a round's blocks and hand their batches on, in file order.
    fn finish(&mut self, round: Round<D>) -> Result<()> {
        for part in round.parts {
            let Ok((fork, block, decoded)) = part.join() else {
                return Err(crate::Error::Execution {
                    operator: "source".into(),
                    message: format!("a thread decoding {} panicked", self.path.display()),
                });
            };
            self.forks.push(fork);
            self.decoded(block.lines(), block.first_line, block.offset, decoded?)?;
        }
        self.handed = round.end;
        Ok(())
    }

    /// Read the next block of whole lines: None when there is none yet (at the end, or a line
    /// longer than the block is still being read), with whether any bytes were read.
    fn read_one(&mut self) -> Result<(Option<Block>, bool)> {
        if self.file.is_none() {
            let f =
                File::open(&self.path).context(|| format!("opening {}", self.path.display()))?;
            self.file = Some(Box::new(f));
        }
        let mut buf = std::mem::take(&mut self.carry);
        let start = buf.len();
        buf.resize(start + self.block, 0);
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
            if self.stream {
                break;
            }
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
                    return Ok((None, read_any && !at_end));
                }
            }
        };
        self.carry = buf[complete..].to_vec();
        // The block decoded now starts where the last one ended (the carry's first byte).
        let mut offset = self.offset;
        self.offset += complete as u64;
        buf.truncate(complete);
        let mut first_line = self.next_line;
        let mut start = 0;
        if self.skip_first_line {
            self.skip_first_line = false;
            start = buf
                .iter()
                .position(|b| *b == b'\n')
                .map_or(buf.len(), |p| p + 1);
            offset += start as u64;
            first_line += 1;
        }
        self.next_line = first_line + bytecount(&buf[start..]);
        Ok((
            Some(Block {
                buf,
                start,
                offset,
                first_line,
            }),
            read_any,
        ))
    }

    /// Hand on the result of decoding `block` whole: its batches, less the rows the decoder's
    /// check finds malformed, or (when it failed) its good records, isolated from the bad.
    fn decoded(
        &mut self,
        block: &[u8],
        first_line: u64,
        block_offset: u64,
        result: Decoded<'_>,
    ) -> Result<()> {
        match result {
            Decoded::Whole(batches, ends) => {
                let mut row_offset = 0;
                let mut lines = None;
                let ends: Vec<Option<LinePosition>> = ends
                    .into_iter()
                    .map(|e| {
                        e.map(|(end, newlines)| LinePosition {
                            offset: block_offset + end as u64,
                            line: first_line + newlines,
                        })
                    })
                    .collect();
                for (j, batch) in batches.into_iter().enumerate() {
                    let pos = ends.get(j).copied().flatten();
                    let n = batch.num_rows();
                    let batch = if self.decoder.needs_check(&batch) {
                        let lines = lines.get_or_insert_with(|| non_blank_lines(block, first_line));
                        let (batch, bad) = without_checked(
                            &self.decoder,
                            batch,
                            &lines[row_offset..row_offset + n],
                        )?;
                        for (line_no, msg, raw, missing_field) in bad {
                            self.policy.malformed(
                                &self.location(line_no),
                                &msg,
                                &raw,
                                missing_field,
                            )?;
                        }
                        batch
                    } else {
                        batch
                    };
                    row_offset += n;
                    if batch.num_rows() > 0 {
                        self.pending.push_back((batch, pos));
                    } else if let (Some(p), Some(last)) = (pos, self.pending.back_mut()) {
                        // Every row of this batch was malformed: the batch before ends here.
                        last.1 = Some(p);
                    }
                }
                Ok(())
            }
            Decoded::Isolated { good, mut bad } => {
                // Bad records are reported in line order, so a job that fails on the first
                // names it.
                bad.sort_by_key(|b| b.0);
                for (line_no, msg, raw, missing_field) in bad {
                    self.policy
                        .malformed(&self.location(line_no), &msg, &raw, missing_field)?;
                }
                if let Some(first) = good.first() {
                    let schema = first.schema();
                    let merged = datafusion::arrow::compute::concat_batches(&schema, &good)?;
                    self.pending.push_back((merged, None));
                }
                Ok(())
            }
        }
    }
}

/// A block decoded: whole, or (when it failed as a whole) its good records, isolated from the
/// bad ones (not yet reported).
enum Decoded<'a> {
    /// The batches, and (one record per line) where each batch's last line ends in the block
    /// ([`line_ends`]).
    Whole(Vec<RecordBatch>, Vec<Option<(usize, u64)>>),
    Isolated {
        good: Vec<RecordBatch>,
        bad: Vec<Bad<'a>>,
    },
}

/// Decode one block with `decoder`; runs on a worker thread, so nothing is reported here.
/// With `row_per_line`, also where each batch ends in the block (on the worker too: finding the
/// lines is a pass over the block's bytes).
fn decode_one<'a, D: BlockDecoder>(
    decoder: &mut D,
    block: &'a Block,
    row_per_line: bool,
) -> Result<Decoded<'a>> {
    match decoder.decode_block(block.lines()) {
        Ok(batches) => {
            let ends = if row_per_line {
                let counts: Vec<usize> = batches
                    .iter()
                    .scan(0, |acc, b| {
                        *acc += b.num_rows();
                        Some(*acc)
                    })
                    .collect();
                // Only when the records are exactly the non-blank lines (a JSON value spread
                // over several lines would shift every position after it).
                let (ends, lines) = line_ends(block.lines(), &counts);
                if counts.last().copied().unwrap_or(0) == lines {
                    ends
                } else {
                    vec![None; counts.len()]
                }
            } else {
                vec![]
            };
            Ok(Decoded::Whole(batches, ends))
        }
        Err(_) => {
            decoder.reset()?;
            let mut isolate = Isolate { decoder };
            let (good, bad) = isolate.block(block.lines(), block.first_line)?;
            Ok(Decoded::Isolated { good, bad })
        }
    }
}

/// Tells the good records of a failed block from the bad (see the module doc).
struct Isolate<'d, D> {
    decoder: &'d mut D,
}

impl<D: BlockDecoder> Isolate<'_, D> {
    /// A block that failed as a whole: screened, then decoded in parts.
    fn block<'a>(
        &mut self,
        block: &'a [u8],
        first_line: u64,
    ) -> Result<(Vec<RecordBatch>, Vec<Bad<'a>>)> {
        let mut candidates = Vec::new();
        let mut bad: Vec<Bad> = Vec::new();
        for (line_no, line) in non_blank_lines(block, first_line) {
            match self.decoder.screen(line) {
                Some(msg) => bad.push((line_no, msg, line.into(), false)),
                None => candidates.push((line_no, line)),
            }
        }
        let mut good: Vec<RecordBatch> = Vec::new();
        self.part(&candidates, None, &mut good, &mut bad)?;
        Ok((good, bad))
    }

    /// Decode `lines` together into `good` (`failed`: that was tried and failed already). A
    /// part that fails is halved; when both halves fail too, bad lines are dense there and
    /// halving further would decode the same lines many times, so each line of such a part is
    /// tried on its own and its good lines are then decoded together.
    fn part<'a>(
        &mut self,
        lines: &[(u64, &'a [u8])],
        failed: Option<String>,
        good: &mut Vec<RecordBatch>,
        bad: &mut Vec<Bad<'a>>,
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let error = match failed {
            Some(e) => e,
            None => match self.try_decode(lines)? {
                Ok(batches) => return self.keep(lines, batches, good, bad),
                Err(e) => e,
            },
        };
        if let [(line_no, line)] = lines {
            bad.push((*line_no, error, (*line).into(), false));
            return Ok(());
        }
        let (left, right) = lines.split_at(lines.len() / 2);
        let l = self.try_decode(left)?;
        let r = self.try_decode(right)?;
        if let (Err(_), Err(_)) = (&l, &r) {
            return self.dense(lines, good, bad);
        }
        for (half, result) in [(left, l), (right, r)] {
            match result {
                Ok(batches) => self.keep(half, batches, good, bad)?,
                Err(e) => self.part(half, Some(e), good, bad)?,
            }
        }
        Ok(())
    }

    /// Each line on its own (only to tell good from bad), then the good ones together.
    fn dense<'a>(
        &mut self,
        lines: &[(u64, &'a [u8])],
        good: &mut Vec<RecordBatch>,
        bad: &mut Vec<Bad<'a>>,
    ) -> Result<()> {
        let mut ok = Vec::with_capacity(lines.len());
        for &(line_no, line) in lines {
            match self.try_decode(&[(line_no, line)])? {
                Ok(_) => ok.push((line_no, line)),
                Err(e) => bad.push((line_no, e, line.into(), false)),
            }
        }
        match self.try_decode(&ok)? {
            Ok(batches) => self.keep(&ok, batches, good, bad),
            // Lines that decode alone but not together (a record spread over lines): alone.
            Err(_) => {
                for line in &ok {
                    if let Ok(batches) = self.try_decode(std::slice::from_ref(line))? {
                        self.keep(std::slice::from_ref(line), batches, good, bad)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Decode `lines` together: the batches, or why they failed (the decoder reset).
    fn try_decode(
        &mut self,
        lines: &[(u64, &[u8])],
    ) -> Result<std::result::Result<Vec<RecordBatch>, String>> {
        let mut bytes = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
        for (_, l) in lines {
            bytes.extend_from_slice(l);
            bytes.push(b'\n');
        }
        match self.decoder.decode_block(&bytes) {
            Ok(batches) => Ok(Ok(batches)),
            Err(e) => {
                self.decoder.reset()?;
                Ok(Err(e.to_string()))
            }
        }
    }

    /// Keep the decoded `batches` of `lines` in `good`, less the rows the decoder's check
    /// finds malformed (those go to `bad`).
    fn keep<'a>(
        &self,
        lines: &[(u64, &'a [u8])],
        batches: Vec<RecordBatch>,
        good: &mut Vec<RecordBatch>,
        bad: &mut Vec<Bad<'a>>,
    ) -> Result<()> {
        let mut at = 0;
        for b in batches {
            let n = b.num_rows();
            let part = &lines[at.min(lines.len())..(at + n).min(lines.len())];
            at += n;
            let (b, dropped) = without_checked(&*self.decoder, b, part)?;
            bad.extend(dropped);
            if b.num_rows() > 0 {
                good.push(b);
            }
        }
        Ok(())
    }
}

/// `batch` (decoded from `lines`, one row each) less the rows the decoder's check finds
/// malformed, and those rows.
fn without_checked<'a, D: BlockDecoder>(
    decoder: &D,
    batch: RecordBatch,
    lines: &[(u64, &'a [u8])],
) -> Result<(RecordBatch, Vec<Bad<'a>>)> {
    if !decoder.needs_check(&batch) || lines.len() != batch.num_rows() {
        return Ok((batch, vec![]));
    }
    let raw: Vec<&[u8]> = lines.iter().map(|(_, l)| *l).collect();
    let dropped = decoder.check(&batch, &raw);
    if dropped.is_empty() {
        return Ok((batch, vec![]));
    }
    let mut keep = vec![true; batch.num_rows()];
    let mut bad = Vec::with_capacity(dropped.len());
    for (row, msg, missing_field) in dropped {
        let (line_no, raw) = lines[row];
        bad.push((line_no, msg, raw.into(), missing_field));
        keep[row] = false;
    }
    let mask = datafusion::arrow::array::BooleanArray::from(keep);
    let kept = datafusion::arrow::compute::filter_record_batch(&batch, &mask)?;
    Ok((kept, bad))
}

/// A bad record: its line, why, its bytes, and whether it is only missing a field.
type Bad<'a> = (u64, String, std::borrow::Cow<'a, [u8]>, bool);

/// A decoded block that no longer borrows it (bad records' bytes copied: they are few).
fn owned(d: Decoded<'_>) -> Decoded<'static> {
    match d {
        Decoded::Whole(batches, ends) => Decoded::Whole(batches, ends),
        Decoded::Isolated { good, bad } => Decoded::Isolated {
            good,
            bad: bad
                .into_iter()
                .map(|(line, msg, raw, missing)| (line, msg, raw.into_owned().into(), missing))
                .collect(),
        },
    }
}

/// For each cumulative count of records (one per non-blank line), the byte offset just past
/// that record's line and the newlines before that offset (None past the block's records);
/// and the block's non-blank lines. One pass, lines found with memchr.
fn line_ends(block: &[u8], counts: &[usize]) -> (Vec<Option<(usize, u64)>>, usize) {
    let mut out = Vec::with_capacity(counts.len());
    let mut want = counts.iter().peekable();
    let (mut seen, mut newlines, mut start) = (0usize, 0u64, 0usize);
    let unterminated = (block.last().is_some_and(|b| *b != b'\n')).then_some(block.len());
    for end in memchr::memchr_iter(b'\n', block)
        .map(|p| p + 1)
        .chain(unterminated)
    {
        let line = &block[start..end];
        newlines += u64::from(line.last() == Some(&b'\n'));
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            seen += 1;
        }
        start = end;
        while want.peek().is_some_and(|t| **t == seen) {
            want.next();
            out.push(Some((end, newlines)));
        }
    }
    out.resize(counts.len(), None);
    (out, seen)
}

fn bytecount(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

#[cfg(test)]
mod tests {
    use super::line_ends;

    #[test]
    fn line_ends_skip_blank_lines() {
        let block = b"{\"a\":1}\n\n{\"a\":2}\n{\"a\":3}\n";
        let (ends, lines) = line_ends(block, &[1, 3]);
        assert_eq!(ends, vec![Some((8, 1)), Some((block.len(), 4))]);
        assert_eq!(lines, 3);
        // Past the block's records, and a last line without its newline.
        let (ends, lines) = line_ends(b"{}\n\n{}", &[1, 2, 3]);
        assert_eq!(ends, vec![Some((3, 1)), Some((6, 2)), None]);
        assert_eq!(lines, 2);
    }
}
