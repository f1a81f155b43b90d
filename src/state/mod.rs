//! State: the snapshot vocabulary shared by every operator, key groups, and where checkpoints
//! are stored.
//!
//! - [`StateSnapshot`]: what an operator instance says its state is — named Arrow batches plus
//!   a little JSON (watermarks, counters). Keyed tables carry a [`KEY_GROUP_COLUMN`], so a
//!   snapshot taken at parallelism P can be restored at any other: each new instance takes the
//!   rows of the key groups it owns ([`KeyGroupRange`]).
//! - Key groups: a key hashes into one of K groups (`'pipeline.max-parallelism'`, default
//!   128); instance i of P owns a contiguous range of them. The exchange routes by the same
//!   function, so a row and the state of its key always meet in one instance.
//! - [`packed`]: whole rows as compact bytes, for operators that keep rows one by one.
//! - [`store`]: the checkpoint directory's layout and its object-store backend (a local path,
//!   `file://…` or `s3://…`, one code path).

pub(crate) mod packed;
pub(crate) mod store;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt16Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, UInt16Type};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};

use crate::{Error, Result};

/// Default number of key groups (`'pipeline.max-parallelism'`).
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// The column holding each state row's key group.
pub const KEY_GROUP_COLUMN: &str = "__kg";

/// Fixed seed: every router and every snapshot of a job must place a key in the same group.
const SEED: u64 = 0x005e_ed0f_7e1c;

/// The state of one operator instance at a checkpoint.
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    /// Named tables. A keyed table has a [`KEY_GROUP_COLUMN`] column.
    pub tables: Vec<(String, RecordBatch)>,
    /// Scalar state (the operator's watermark, counters).
    pub meta: serde_json::Value,
}

impl StateSnapshot {
    /// The table called `name` (all its rows in one batch), if any.
    pub fn table(&self, name: &str) -> Option<&RecordBatch> {
        self.tables.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// A number from the meta object.
    pub fn meta_i64(&self, key: &str) -> Option<i64> {
        self.meta.get(key).and_then(|v| v.as_i64())
    }
}

/// Hash `keys` (the same function as the exchange) into `rows` hashes.
pub(crate) fn hash_keys(keys: &[ArrayRef], rows: usize, out: &mut Vec<u64>) -> Result<()> {
    out.clear();
    out.resize(rows, 0);
    if keys.is_empty() {
        return Ok(());
    }
    create_hashes(keys, &RandomState::with_seed(SEED), out.as_mut_slice())?;
    Ok(())
}

/// The key group of a hash.
pub(crate) fn key_group(hash: u64, key_groups: usize) -> usize {
    (hash % key_groups.max(1) as u64) as usize
}

/// The instance (of `parallelism`) owning key group `kg` (Flink's formula).
pub(crate) fn instance_of(kg: usize, key_groups: usize, parallelism: usize) -> usize {
    kg * parallelism / key_groups.max(1)
}

/// A contiguous range of key groups `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    /// First key group.
    pub start: usize,
    /// One past the last.
    pub end: usize,
}

impl KeyGroupRange {
    /// The range instance `i` of `parallelism` owns.
    pub fn of(i: usize, parallelism: usize, key_groups: usize) -> Self {
        let p = parallelism.max(1);
        let start = (i * key_groups).div_ceil(p);
        let end = ((i + 1) * key_groups).div_ceil(p);
        Self { start, end }
    }

    /// Every key group.
    pub fn all(key_groups: usize) -> Self {
        Self {
            start: 0,
            end: key_groups,
        }
    }

    fn overlaps(&self, other: &KeyGroupRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// `kg-{start}-{end}`: the file name of a range's state.
    pub fn file_stem(&self) -> String {
        format!("kg-{:03}-{:03}", self.start, self.end)
    }

    /// Parse [`KeyGroupRange::file_stem`].
    pub fn parse_stem(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("kg-")?;
        let (a, b) = rest.split_once('-')?;
        Some(Self {
            start: a.parse().ok()?,
            end: b.parse().ok()?,
        })
    }
}

/// The key group of each row whose keys are `keys`, as a column.
pub(crate) fn key_group_column(
    keys: &[ArrayRef],
    rows: usize,
    key_groups: usize,
) -> Result<ArrayRef> {
    let mut hashes = vec![];
    hash_keys(keys, rows, &mut hashes)?;
    Ok(Arc::new(UInt16Array::from_iter_values(
        hashes.iter().map(|h| key_group(*h, key_groups) as u16),
    )))
}

/// A batch of `columns` named `names` (all nullable), plus the key-group column of `keys`.
pub(crate) fn keyed_batch(
    names: &[String],
    columns: Vec<ArrayRef>,
    keys: &[ArrayRef],
    rows: usize,
    key_groups: usize,
) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = names
        .iter()
        .zip(&columns)
        .map(|(n, c)| Field::new(n, c.data_type().clone(), true))
        .collect();
    fields.push(Field::new(KEY_GROUP_COLUMN, DataType::UInt16, false));
    let mut columns = columns;
    columns.push(key_group_column(keys, rows, key_groups)?);
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Keep the rows of `batch` whose key group lies in `range` (a batch without a key-group
/// column is kept whole).
pub(crate) fn filter_key_groups(batch: &RecordBatch, range: KeyGroupRange) -> Result<RecordBatch> {
    let Some(col) = batch.column_by_name(KEY_GROUP_COLUMN) else {
        return Ok(batch.clone());
    };
    let kg = col.as_primitive::<UInt16Type>();
    let mask = datafusion::arrow::array::BooleanArray::from_iter(
        kg.values()
            .iter()
            .map(|k| Some((*k as usize) >= range.start && (*k as usize) < range.end)),
    );
    Ok(filter_record_batch(batch, &mask)?)
}

/// Encode batches of one schema as an Arrow IPC file.
pub(crate) fn to_ipc(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let Some(first) = batches.first() else {
        return Ok(vec![]);
    };
    let mut buf = Vec::new();
    {
        let mut w = FileWriter::try_new(&mut buf, &first.schema())?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(buf)
}

/// Decode an Arrow IPC file into one batch (None when empty).
pub(crate) fn from_ipc(bytes: &[u8], what: &str) -> Result<Option<RecordBatch>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let reader =
        FileReader::try_new(std::io::Cursor::new(bytes), None).map_err(|e| Error::Execution {
            operator: "restore".into(),
            message: format!("{what} is not a readable Arrow IPC file: {e}"),
        })?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some(concat_batches(&schema, &batches)?))
}

/// A snapshot whose meta has this set to true holds rows of any key group, whatever the
/// range of the instance that wrote it (the forward side of a broadcast join): a restore
/// reads every piece of it, not only those whose range overlaps.
pub(crate) const ANY_RANGE: &str = "any_range";

/// Tables whose name starts with this hold state every instance has whole (a broadcast
/// join side): restored whole, from one old instance, to every new one.
pub(crate) const BROADCAST_PREFIX: &str = "broadcast-";

/// The pieces of one operator's state (one per old instance) that an instance owning
/// `range` restores: every piece whose range overlaps, rows filtered to `range`, tables of
/// one name concatenated. A broadcast table ([`BROADCAST_PREFIX`]) is taken whole from the
/// piece that kept the most rows of it: every instance received the same rows, and one whose
/// watermark was behind has evicted the fewest. `meta` is the first piece's, with its
/// watermark `wm` the smallest of all pieces' (instances behind a hash exchange agree; those
/// behind a forward one, beside a broadcast input, may not, and the smallest drops nothing
/// too early).
pub(crate) fn merge_pieces(
    pieces: &[(KeyGroupRange, StateSnapshot)],
    range: KeyGroupRange,
) -> Result<Option<StateSnapshot>> {
    let any_range = pieces
        .iter()
        .any(|(_, s)| s.meta.get(ANY_RANGE).and_then(serde_json::Value::as_bool) == Some(true));
    let mine: Vec<&StateSnapshot> = pieces
        .iter()
        .filter(|(r, _)| any_range || r.overlaps(&range))
        .map(|(_, s)| s)
        .collect();
    let Some(first) = mine.first() else {
        return Ok(None);
    };
    let mut tables: Vec<(String, Vec<RecordBatch>)> = vec![];
    for (_, piece) in pieces {
        for (name, batch) in &piece.tables {
            if !name.starts_with(BROADCAST_PREFIX) {
                continue;
            }
            match tables.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) if v[0].num_rows() < batch.num_rows() => v[0] = batch.clone(),
                Some(_) => {}
                None => tables.push((name.clone(), vec![batch.clone()])),
            }
        }
    }
    for s in &mine {
        for (name, batch) in &s.tables {
            if name.starts_with(BROADCAST_PREFIX) {
                continue;
            }
            let b = filter_key_groups(batch, range)?;
            match tables.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => v.push(b),
                None => tables.push((name.clone(), vec![b])),
            }
        }
    }
    let tables = tables
        .into_iter()
        .map(|(n, bs)| {
            let schema = bs[0].schema();
            Ok((n, concat_batches(&schema, &bs)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = first.meta.clone();
    if let Some(wm) = pieces.iter().filter_map(|(_, p)| p.meta_i64("wm")).min()
        && let Some(m) = meta.as_object_mut()
    {
        m.insert("wm".into(), wm.into());
    }
    Ok(Some(StateSnapshot { tables, meta }))
}

/// Stable 64-bit FNV-1a hash (operator ids must not change between builds, as std's hasher
/// may).
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A report of a checkpoint directory (`weir checkpoints DIR`): per job, each retained
/// checkpoint with its age, size, whether it finished the job, and its operators' state
/// sizes.
pub async fn describe_checkpoints(dir: &str) -> Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let jobs = store::job_names(dir).await?;
    if jobs.is_empty() {
        let _ = writeln!(out, "no checkpoints in {dir}");
    }
    let now = chrono::Utc::now().timestamp_millis();
    for job in jobs {
        let st = store::CheckpointStore::open_existing(dir, &job)?;
        let record: Option<store::JobRecord> = st.get_json("job.json").await?;
        let Some(record) = record else { continue };
        let _ = writeln!(
            out,
            "job {} (lineage {}, {} key groups)",
            record.job, record.lineage, record.max_parallelism
        );
        let epochs = st.epochs().await?;
        if epochs.is_empty() {
            let _ = writeln!(out, "  no completed checkpoint");
        }
        for e in epochs {
            let chk = store::chk_dir(e);
            let m: Option<store::Manifest> = st.get_json(&format!("{chk}/manifest.json")).await?;
            let Some(m) = m else {
                let _ = writeln!(out, "  checkpoint {e}: manifest missing");
                continue;
            };
            let committed = st.get(&format!("{chk}/committed")).await?.is_some();
            let _ = writeln!(
                out,
                "  checkpoint {e}: {} old, {} bytes of state, {} events read{}{}{}",
                crate::runtime::checkpoint::age(now - m.time_ms),
                m.bytes,
                m.events_in,
                if m.finished { ", job finished" } else { "" },
                if committed { "" } else { ", not yet published" },
                if m.lineage == record.lineage {
                    String::new()
                } else {
                    format!(", old lineage {}", m.lineage)
                }
            );
            for op in &m.operators {
                let bytes: usize = op.files.iter().map(|f| f.bytes).sum();
                let _ = writeln!(out, "    {} {bytes} bytes: {}", op.id, op.description);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn ranges_cover_every_key_group_once() {
        for p in 1..=7 {
            let mut next = 0;
            for i in 0..p {
                let r = KeyGroupRange::of(i, p, 128);
                assert_eq!(r.start, next);
                for kg in r.start..r.end {
                    assert_eq!(instance_of(kg, 128, p), i, "kg {kg} at p {p}");
                }
                next = r.end;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn ipc_round_trip_and_filter() {
        let keys: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(0..100))];
        let b = keyed_batch(&["k".into()], keys.clone(), &keys, 100, 128).unwrap();
        let back = from_ipc(&to_ipc(std::slice::from_ref(&b)).unwrap(), "t")
            .unwrap()
            .unwrap();
        assert_eq!(back, b);
        let total: usize = (0..3)
            .map(|i| {
                filter_key_groups(&b, KeyGroupRange::of(i, 3, 128))
                    .unwrap()
                    .num_rows()
            })
            .sum();
        assert_eq!(total, 100);
    }

    /// The forward side of a broadcast join holds rows of any key group in each instance,
    /// and its broadcast side is whole in each: restored at another parallelism, every row
    /// of the former lands in exactly one instance, and the latter whole in every one (from
    /// the instance that evicted least), with the smallest watermark.
    #[test]
    fn broadcast_join_pieces_restore_at_another_parallelism() {
        let rows = |range: std::ops::Range<i64>| {
            let keys: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(range))];
            keyed_batch(&["k".into()], keys.clone(), &keys, keys[0].len(), 128).unwrap()
        };
        let bcast = format!("{BROADCAST_PREFIX}side1");
        let piece = |range, kept: std::ops::Range<i64>, wm: i64| StateSnapshot {
            tables: vec![("side0".into(), rows(range)), (bcast.clone(), rows(kept))],
            meta: serde_json::json!({ "wm": wm, ANY_RANGE: true }),
        };
        let pieces = vec![
            (KeyGroupRange::of(0, 2, 128), piece(0..50, 5..8, 20)),
            (KeyGroupRange::of(1, 2, 128), piece(50..100, 3..8, 10)),
        ];
        let mut forward = 0;
        for i in 0..3 {
            let s = merge_pieces(&pieces, KeyGroupRange::of(i, 3, 128))
                .unwrap()
                .unwrap();
            forward += s.table("side0").map_or(0, |t| t.num_rows());
            assert_eq!(s.table(&bcast).map(|t| t.num_rows()), Some(5));
            assert_eq!(s.meta_i64("wm"), Some(10));
        }
        assert_eq!(forward, 100);
    }
}
