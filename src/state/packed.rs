//! Packed rows: whole rows of a schema as compact bytes, for operators that keep rows one by
//! one in their state (Top-N's ranked rows).
//!
//! Arrow's row format (`RowConverter`) is built for comparing rows: every value carries a
//! validity byte, and a string is cut into 8- then 32-byte blocks each with a continuation
//! byte, so a 65-byte URL takes 103 bytes. Rows that are only stored and given back need none
//! of that. A packed row is a validity bitmap (a bit per column), then, per non-NULL column in
//! order, its value: fixed-width values as their little-endian bytes, booleans as one byte,
//! strings and binaries as their length (a varint: one byte below 128) and their bytes. A
//! NULL takes no bytes. A bid of Nexmark packs into about 122 bytes where the row format
//! takes 186.
//!
//! Types outside that set (lists, structs, maps, dictionaries, unions) make the whole schema
//! fall back to Arrow's row format, so every schema can be stored.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayData, ArrayRef, AsArray, BinaryArray, BinaryViewArray, BooleanBufferBuilder,
    LargeBinaryArray, LargeStringArray, StringArray, make_array,
};
use datafusion::arrow::buffer::{Buffer, MutableBuffer, NullBuffer};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use crate::Result;

/// How one column's values are packed.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `width` little-endian bytes (primitives, decimals, fixed-size binary).
    Fixed(usize),
    /// One byte, 0 or 1.
    Bool,
    /// A `u32` length, then the bytes: Utf8, LargeUtf8, Binary, LargeBinary and their views.
    Var(Var),
}

#[derive(Debug, Clone, Copy)]
enum Var {
    Utf8,
    LargeUtf8,
    Utf8View,
    Binary,
    LargeBinary,
    BinaryView,
}

fn kind_of(t: &DataType) -> Option<Kind> {
    Some(match t {
        DataType::Boolean => Kind::Bool,
        DataType::Utf8 => Kind::Var(Var::Utf8),
        DataType::LargeUtf8 => Kind::Var(Var::LargeUtf8),
        DataType::Utf8View => Kind::Var(Var::Utf8View),
        DataType::Binary => Kind::Var(Var::Binary),
        DataType::LargeBinary => Kind::Var(Var::LargeBinary),
        DataType::BinaryView => Kind::Var(Var::BinaryView),
        DataType::FixedSizeBinary(w) => Kind::Fixed(usize::try_from(*w).ok()?),
        t => Kind::Fixed(t.primitive_width()?),
    })
}

/// Rows of one batch, packed: row `i` is `bytes[offsets[i]..offsets[i + 1]]`.
pub(crate) enum PackedBatch {
    Packed { bytes: Vec<u8>, offsets: Vec<usize> },
    Rows(Rows),
}

impl PackedBatch {
    /// The bytes of row `i`.
    pub(crate) fn row(&self, i: usize) -> &[u8] {
        match self {
            PackedBatch::Packed { bytes, offsets } => &bytes[offsets[i]..offsets[i + 1]],
            PackedBatch::Rows(rows) => rows.row(i).data(),
        }
    }
}

/// Packs rows of one schema into bytes and unpacks them into columns again.
pub(crate) struct RowPacker {
    schema: SchemaRef,
    codec: Codec,
}

enum Codec {
    Packed(Vec<Kind>),
    Rows(RowConverter),
}

impl RowPacker {
    /// A packer for rows of `schema`.
    pub(crate) fn new(schema: SchemaRef) -> Result<Self> {
        let kinds: Option<Vec<Kind>> = schema
            .fields()
            .iter()
            .map(|f| kind_of(f.data_type()))
            .collect();
        let codec = match kinds {
            Some(kinds) => Codec::Packed(kinds),
            None => Codec::Rows(RowConverter::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?),
        };
        Ok(Self { schema, codec })
    }

    /// Bytes of the validity bitmap that starts every packed row.
    fn bitmap_len(&self) -> usize {
        self.schema.fields().len().div_ceil(8)
    }

    /// Every row of `columns` (of this packer's schema), packed.
    pub(crate) fn pack(&self, columns: &[ArrayRef]) -> Result<PackedBatch> {
        let kinds = match &self.codec {
            Codec::Packed(kinds) => kinds,
            Codec::Rows(conv) => return Ok(PackedBatch::Rows(conv.convert_columns(columns)?)),
        };
        let rows = columns.first().map_or(0, |c| c.len());
        let head = self.bitmap_len();
        let nulls: Vec<Option<NullBuffer>> = columns.iter().map(|c| c.logical_nulls()).collect();
        // Each row's length, then where it starts.
        let mut offsets = vec![head; rows + 1];
        for ((c, kind), nulls) in columns.iter().zip(kinds).zip(&nulls) {
            let valid = |r: usize| nulls.as_ref().is_none_or(|n| n.is_valid(r));
            match kind {
                Kind::Fixed(w) => {
                    (0..rows).for_each(|r| offsets[r] += if valid(r) { *w } else { 0 })
                }
                Kind::Bool => (0..rows).for_each(|r| offsets[r] += usize::from(valid(r))),
                Kind::Var(v) => {
                    let value = var_values(c, *v);
                    for (r, len) in offsets.iter_mut().enumerate().take(rows) {
                        if valid(r) {
                            let n = value(r).len();
                            *len += varint_len(n) + n;
                        }
                    }
                }
            }
        }
        let mut total = 0;
        for o in offsets.iter_mut() {
            let len = *o;
            *o = total;
            total += len;
        }
        let mut bytes = vec![0u8; total];
        // Where the next value of each row goes.
        let mut at: Vec<usize> = offsets[..rows].iter().map(|o| o + head).collect();
        for (i, ((c, kind), nulls)) in columns.iter().zip(kinds).zip(&nulls).enumerate() {
            let (byte, bit) = (i / 8, 1u8 << (i % 8));
            let valid = |r: usize| nulls.as_ref().is_none_or(|n| n.is_valid(r));
            match kind {
                Kind::Fixed(w) => {
                    let data = c.to_data();
                    let values = &data.buffers()[0].as_slice()[data.offset() * w..];
                    for r in (0..rows).filter(|r| valid(*r)) {
                        bytes[offsets[r] + byte] |= bit;
                        let dst = at[r];
                        bytes[dst..dst + w].copy_from_slice(&values[r * w..(r + 1) * w]);
                        at[r] += w;
                    }
                }
                Kind::Bool => {
                    let values = c.as_boolean();
                    for r in (0..rows).filter(|r| valid(*r)) {
                        bytes[offsets[r] + byte] |= bit;
                        bytes[at[r]] = u8::from(values.value(r));
                        at[r] += 1;
                    }
                }
                Kind::Var(v) => {
                    let value = var_values(c, *v);
                    for r in (0..rows).filter(|r| valid(*r)) {
                        bytes[offsets[r] + byte] |= bit;
                        let value = value(r);
                        let dst = put_varint(&mut bytes, at[r], value.len());
                        bytes[dst..dst + value.len()].copy_from_slice(value);
                        at[r] = dst + value.len();
                    }
                }
            }
        }
        Ok(PackedBatch::Packed { bytes, offsets })
    }

    /// The columns of `rows` (each packed by this packer), in order.
    pub(crate) fn unpack<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>> {
        let kinds = match &self.codec {
            Codec::Packed(kinds) => kinds,
            Codec::Rows(conv) => {
                let parser = conv.parser();
                return Ok(conv.convert_rows(rows.into_iter().map(|r| parser.parse(r)))?);
            }
        };
        let rows: Vec<&[u8]> = rows.into_iter().collect();
        let head = self.bitmap_len();
        let mut at = vec![head; rows.len()];
        let corrupt = || crate::Error::Plan("a packed state row is shorter than its schema".into());
        let mut out = Vec::with_capacity(kinds.len());
        for (i, (kind, field)) in kinds.iter().zip(self.schema.fields()).enumerate() {
            let valid = |r: &[u8]| r.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            let nulls = NullBuffer::from_iter(rows.iter().map(|r| valid(r)));
            let nulls = (nulls.null_count() > 0).then_some(nulls);
            let t = field.data_type();
            let array = match kind {
                Kind::Fixed(w) => {
                    let mut values = MutableBuffer::new(rows.len() * w);
                    for (r, pos) in rows.iter().zip(at.iter_mut()) {
                        if valid(r) {
                            values.extend_from_slice(r.get(*pos..*pos + w).ok_or_else(corrupt)?);
                            *pos += w;
                        } else {
                            values.extend_zeros(*w);
                        }
                    }
                    let data = ArrayData::builder(t.clone())
                        .len(rows.len())
                        .add_buffer(Buffer::from(values))
                        .nulls(nulls);
                    make_array(data.build()?)
                }
                Kind::Bool => {
                    let mut values = BooleanBufferBuilder::new(rows.len());
                    for (r, pos) in rows.iter().zip(at.iter_mut()) {
                        if valid(r) {
                            values.append(*r.get(*pos).ok_or_else(corrupt)? != 0);
                            *pos += 1;
                        } else {
                            values.append(false);
                        }
                    }
                    Arc::new(datafusion::arrow::array::BooleanArray::new(
                        values.finish(),
                        nulls,
                    ))
                }
                Kind::Var(v) => {
                    let mut values: Vec<Option<&[u8]>> = Vec::with_capacity(rows.len());
                    for (r, pos) in rows.iter().zip(at.iter_mut()) {
                        if valid(r) {
                            let (len, start) = get_varint(r, *pos).ok_or_else(corrupt)?;
                            values.push(Some(r.get(start..start + len).ok_or_else(corrupt)?));
                            *pos = start + len;
                        } else {
                            values.push(None);
                        }
                    }
                    var_array(*v, &values)?
                }
            };
            out.push(array);
        }
        Ok(out)
    }
}

/// Bytes of `n` as a varint (7 bits a byte, low bits first).
fn varint_len(n: usize) -> usize {
    (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

/// Write `n` as a varint at `at`; where the bytes after it start.
fn put_varint(bytes: &mut [u8], mut at: usize, mut n: usize) -> usize {
    while n >= 0x80 {
        bytes[at] = (n as u8) | 0x80;
        n >>= 7;
        at += 1;
    }
    bytes[at] = n as u8;
    at + 1
}

/// The varint at `at` and where the bytes after it start (None: cut short or too long).
fn get_varint(bytes: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for shift in (0..usize::BITS).step_by(7) {
        let b = *bytes.get(at)?;
        at += 1;
        n |= usize::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return Some((n, at));
        }
    }
    None
}

/// The bytes of each row of a string or binary column.
fn var_values<'a>(c: &'a ArrayRef, v: Var) -> Box<dyn Fn(usize) -> &'a [u8] + 'a> {
    match v {
        Var::Utf8 => {
            let a = c.as_string::<i32>();
            Box::new(move |r| a.value(r).as_bytes())
        }
        Var::LargeUtf8 => {
            let a = c.as_string::<i64>();
            Box::new(move |r| a.value(r).as_bytes())
        }
        Var::Utf8View => {
            let a = c.as_string_view();
            Box::new(move |r| a.value(r).as_bytes())
        }
        Var::Binary => {
            let a = c.as_binary::<i32>();
            Box::new(move |r| a.value(r))
        }
        Var::LargeBinary => {
            let a = c.as_binary::<i64>();
            Box::new(move |r| a.value(r))
        }
        Var::BinaryView => {
            let a = c.as_binary_view();
            Box::new(move |r| a.value(r))
        }
    }
}

/// A string or binary column of `values` (strings are checked to be UTF-8, the whole column
/// at once).
fn var_array(v: Var, values: &[Option<&[u8]>]) -> Result<ArrayRef> {
    let bytes = values.iter().copied();
    let not_utf8 = |e: datafusion::arrow::error::ArrowError| {
        crate::Error::Plan(format!("a packed state string is not UTF-8: {e}"))
    };
    Ok(match v {
        Var::Utf8 => {
            Arc::new(StringArray::try_from_binary(BinaryArray::from_iter(bytes)).map_err(not_utf8)?)
        }
        Var::LargeUtf8 => Arc::new(
            LargeStringArray::try_from_binary(LargeBinaryArray::from_iter(bytes))
                .map_err(not_utf8)?,
        ),
        Var::Utf8View => Arc::new(
            BinaryViewArray::from_iter(bytes)
                .to_string_view()
                .map_err(not_utf8)?,
        ),
        Var::Binary => Arc::new(BinaryArray::from_iter(bytes)),
        Var::LargeBinary => Arc::new(LargeBinaryArray::from_iter(bytes)),
        Var::BinaryView => Arc::new(BinaryViewArray::from_iter(bytes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        BooleanArray, Decimal128Array, FixedSizeBinaryArray, Int8Array, Int64Array, ListArray,
        TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema};

    fn round_trip(columns: Vec<ArrayRef>) -> Vec<ArrayRef> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let packer = RowPacker::new(schema).expect("packer");
        let packed = packer.pack(&columns).expect("packs");
        let rows = columns[0].len();
        // Rows given back out of order, some twice: each row stands alone.
        let order: Vec<usize> = (0..rows).rev().chain(0..rows).collect();
        let back = packer
            .unpack(order.iter().map(|r| packed.row(*r)))
            .expect("unpacks");
        let idx = datafusion::arrow::array::UInt32Array::from(
            order.iter().map(|r| *r as u32).collect::<Vec<_>>(),
        );
        for (c, b) in columns.iter().zip(&back) {
            let want = datafusion::arrow::compute::take(c.as_ref(), &idx, None).expect("take");
            assert_eq!(b.as_ref(), want.as_ref(), "{}", c.data_type());
        }
        back
    }

    #[test]
    fn every_packed_type_round_trips_with_nulls_and_offsets() {
        let long = "x".repeat(70_000);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![
                Some(1),
                None,
                Some(-3),
                Some(i64::MAX),
                None,
            ])),
            Arc::new(Int8Array::from(vec![
                None,
                Some(-1),
                Some(2),
                None,
                Some(127),
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                None,
                Some(""),
                Some("https://www.nexmark.com/abcde/fghij/klmno/item.htm?query=1&channel_id=7"),
                Some(long.as_str()),
            ])),
            Arc::new(LargeStringArray::from(vec![
                Some("é"),
                Some("b"),
                None,
                None,
                Some(""),
            ])),
            Arc::new(datafusion::arrow::array::StringViewArray::from(vec![
                Some("a string longer than twelve bytes"),
                Some("short"),
                None,
                Some(""),
                Some("x"),
            ])),
            Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\xff"[..]),
                None,
                Some(&b""[..]),
                Some(&b"z"[..]),
                None,
            ])),
            Arc::new(LargeBinaryArray::from(vec![
                None,
                Some(&b"\x01"[..]),
                Some(&b""[..]),
                None,
                Some(&b"\xfe\xfd"[..]),
            ])),
            Arc::new(BinaryViewArray::from(vec![
                Some(&b"a binary longer than twelve bytes"[..]),
                None,
                Some(&b""[..]),
                Some(&b"\xff"[..]),
                None,
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(12345), None, Some(-1), Some(0), Some(i128::MIN)])
                    .with_precision_and_scale(38, 2)
                    .expect("decimal"),
            ),
            Arc::new(
                TimestampMillisecondArray::from(vec![Some(0), Some(-1), None, Some(5), Some(6)])
                    .with_timezone("UTC"),
            ),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![
                        Some(vec![1u8, 2]),
                        None,
                        Some(vec![3, 4]),
                        Some(vec![5, 6]),
                        None,
                    ]
                    .into_iter(),
                    2,
                )
                .expect("fixed"),
            ),
        ];
        round_trip(columns.clone());
        // Sliced columns (non-zero offsets) and nine or more columns (a second bitmap byte).
        let sliced: Vec<ArrayRef> = columns.iter().map(|c| c.slice(1, 3)).collect();
        round_trip(sliced);
    }

    #[test]
    fn packed_rows_are_smaller_than_the_row_format_for_strings() {
        let url = "https://www.nexmark.com/abcde/fghij/klmno/item.htm?query=1&channel_id=7";
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec![url])),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("u", DataType::Utf8, true),
        ]));
        let packed = RowPacker::new(schema)
            .expect("packer")
            .pack(&columns)
            .expect("packs");
        assert_eq!(packed.row(0).len(), 1 + 8 + 1 + url.len());
    }

    #[test]
    fn varints_round_trip_and_reject_cut_short_bytes() {
        for n in [
            0usize,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as usize,
            usize::MAX,
        ] {
            let mut bytes = vec![0u8; 10];
            let end = put_varint(&mut bytes, 0, n);
            assert_eq!(end, varint_len(n), "{n}");
            assert_eq!(get_varint(&bytes[..end], 0), Some((n, end)), "{n}");
            assert_eq!(get_varint(&bytes[..end - 1], 0), None, "{n} cut short");
        }
        assert_eq!(get_varint(&[0xff; 11], 0), None);
    }

    #[test]
    fn nested_types_fall_back_to_the_row_format() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
            Some(vec![]),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(list),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
        ];
        round_trip(columns);
    }
}
