//! Flink's simple row-wise built-ins that DataFusion lacks or answers differently, each a
//! [`RowFn`]: a name, a signature, a result type and a vectorised body.
//!
//! - Strings and bytes: `TO_BASE64`, `FROM_BASE64`, `HEX`, `BIN`, `IS_ALPHA`, `IS_DECIMAL`,
//!   `IS_DIGIT`, `ENCODE` / `DECODE` (character sets), `SHA1`;
//! - math: `SIGN` (the argument's type), `E()`, `RAND([seed])`, `RAND_INTEGER([seed,] bound)`
//!   ([`Rand`]);
//! - collections: `STR_TO_MAP`, `ELEMENT`, `MAP_FROM_ARRAYS` (DataFusion's `map`);
//! - JSON: `JSON_STRING`, `JSON_ARRAY`, `JSON_OBJECT` (the planner turns `k VALUE v` pairs
//!   into plain arguments);
//! - time: `CONVERT_TZ`.
//!
//! As elsewhere in [`crate::functions`], an argument that cannot be read (bad base64, an
//! unknown time zone or character set) gives NULL rather than failing the job.

use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, MapBuilder, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use super::map_rows;

/// The name `JSON_OBJECT(k VALUE v, …)` is planned under, with arguments `k, v, …`.
pub const JSON_OBJECT: &str = "weir_json_object";
/// `JSON_OBJECT(… ABSENT ON NULL)`.
pub const JSON_OBJECT_ABSENT: &str = "weir_json_object_absent";
/// `JSON_ARRAY(…)` (ABSENT ON NULL).
pub const JSON_ARRAY: &str = "weir_json_array";
/// `JSON_ARRAY(… NULL ON NULL)`.
pub const JSON_ARRAY_NULL: &str = "weir_json_array_null";
/// The JSON constructors: their first argument marks (`'1'`) the values that are JSON text
/// from a nested constructor, so they nest as JSON rather than as strings.
pub const JSON_CONSTRUCTORS: [&str; 4] =
    [JSON_OBJECT, JSON_OBJECT_ABSENT, JSON_ARRAY, JSON_ARRAY_NULL];
/// `x IS JSON kind`: `weir_is_json(x, 'VALUE' | 'SCALAR' | 'ARRAY' | 'OBJECT')`.
pub const IS_JSON: &str = "weir_is_json";
/// What `JSON_VALUE(doc, path RETURNING t … ON EMPTY … ON ERROR)` found, for the `CASE` the
/// dialect plans it as: `weir_json_value_status(doc, path, CAST(NULL AS t), error_on_empty,
/// error_on_error)` is 0 (a value of type `t`), 1 (empty) or 2 (an error); it fails the query
/// itself for `ERROR ON EMPTY` / `ERROR ON ERROR`.
pub const JSON_VALUE_STATUS: &str = "weir_json_value_status";

type Eval = fn(&[ArrayRef]) -> datafusion::error::Result<ArrayRef>;
type Ret = fn(&[DataType]) -> datafusion::error::Result<DataType>;

/// A row-wise function: its body maps argument arrays (scalars broadcast) to the result.
/// Two are equal when their names are (a name has one body).
#[derive(Debug)]
pub(crate) struct RowFn {
    name: &'static str,
    signature: Signature,
    ret: Ret,
    eval: Eval,
}

impl PartialEq for RowFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.signature == other.signature
    }
}

impl Eq for RowFn {}

impl std::hash::Hash for RowFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.signature.hash(state);
    }
}

impl RowFn {
    fn new(name: &'static str, sigs: Vec<TypeSignature>, ret: Ret, eval: Eval) -> Self {
        Self {
            name,
            signature: Signature::one_of(sigs, Volatility::Immutable),
            ret,
            eval,
        }
    }
}

impl ScalarUDFImpl for RowFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        (self.ret)(args)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        if args.args.is_empty() {
            // E(): one value for the batch.
            let v = (self.eval)(&[])?;
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&v, 0)?,
            ));
        }
        map_rows(&args, self.eval)
    }
}

fn utf8(_: &[DataType]) -> datafusion::error::Result<DataType> {
    Ok(DataType::Utf8)
}

fn boolean(_: &[DataType]) -> datafusion::error::Result<DataType> {
    Ok(DataType::Boolean)
}

fn string_map() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

/// Register this module's functions.
pub fn register(ctx: &SessionContext) {
    use DataType::{Binary, Float64, Int64, Utf8};
    use TypeSignature::{Exact, Nullary};
    let s = || vec![Exact(vec![Utf8])];
    let fns = [
        RowFn::new("to_base64", s(), utf8, |a| {
            strings(a, |s| {
                Some(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))
            })
        }),
        RowFn::new("from_base64", s(), utf8, |a| {
            strings(a, |s| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
                String::from_utf8(bytes).ok()
            })
        }),
        RowFn::new(
            "hex",
            vec![Exact(vec![Int64]), Exact(vec![Utf8])],
            utf8,
            |a| match a[0].data_type() {
                DataType::Int64 => ints(a, |v| Some(format!("{:X}", v as u64))),
                _ => strings(a, |s| Some(hex::encode_upper(s.as_bytes()))),
            },
        ),
        RowFn::new("bin", vec![Exact(vec![Int64])], utf8, |a| {
            ints(a, |v| Some(format!("{:b}", v as u64)))
        }),
        RowFn::new("is_alpha", s(), boolean, |a| {
            predicate(a, |s| !s.is_empty() && s.chars().all(char::is_alphabetic))
        }),
        RowFn::new("is_digit", s(), boolean, |a| {
            predicate(a, |s| {
                !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
            })
        }),
        RowFn::new("is_decimal", s(), boolean, |a| {
            predicate(a, |s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
                    && s.parse::<f64>().is_ok_and(f64::is_finite)
            })
        }),
        RowFn::new(
            "encode",
            vec![Exact(vec![Utf8, Utf8])],
            |_| Ok(DataType::Binary),
            encode,
        ),
        RowFn::new("decode", vec![Exact(vec![Binary, Utf8])], utf8, decode),
        RowFn::new("sha1", s(), utf8, |a| {
            strings(a, |s| {
                use sha1::Digest;
                Some(hex::encode(sha1::Sha1::digest(s.as_bytes())))
            })
        }),
        RowFn::new(
            "sign",
            vec![TypeSignature::Numeric(1)],
            |t| Ok(t[0].clone()),
            |a| {
                let x = cast(&a[0], &Float64)?;
                let signs: datafusion::arrow::array::Float64Array = x
                    .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                    .iter()
                    .map(|v| v.map(|v| if v == 0.0 { 0.0 } else { v.signum() }))
                    .collect();
                Ok(cast(&signs, a[0].data_type())?)
            },
        ),
        RowFn::new(
            "e",
            vec![Nullary],
            |_| Ok(Float64),
            |_| {
                Ok(Arc::new(datafusion::arrow::array::Float64Array::from(
                    vec![std::f64::consts::E],
                )))
            },
        ),
        RowFn::new(
            "str_to_map",
            vec![Exact(vec![Utf8]), Exact(vec![Utf8, Utf8, Utf8])],
            |_| Ok(string_map()),
            str_to_map,
        ),
        RowFn::new(
            "element",
            vec![TypeSignature::ArraySignature(
                datafusion::logical_expr::ArrayFunctionSignature::Array {
                    arguments: vec![datafusion::logical_expr::ArrayFunctionArgument::Array],
                    array_coercion: None,
                },
            )],
            |t| match &t[0] {
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                    Ok(f.data_type().clone())
                }
                other => datafusion::common::plan_err!("ELEMENT of {other}: expected an ARRAY"),
            },
            element,
        ),
        RowFn::new("json_string", vec![TypeSignature::Any(1)], utf8, |a| {
            json_rows(a, |values| values.into_iter().next().flatten())
        }),
        RowFn::new(JSON_OBJECT, vec![TypeSignature::VariadicAny], utf8, |a| {
            constructor(a, 2, |values| json_object(values, true))
        }),
        RowFn::new(
            JSON_OBJECT_ABSENT,
            vec![TypeSignature::VariadicAny],
            utf8,
            |a| constructor(a, 2, |values| json_object(values, false)),
        ),
        RowFn::new(JSON_ARRAY, vec![TypeSignature::VariadicAny], utf8, |a| {
            constructor(a, 1, |values| {
                let items = values.into_iter().flatten().collect();
                Some(serde_json::Value::Array(items))
            })
        }),
        RowFn::new(
            JSON_ARRAY_NULL,
            vec![TypeSignature::VariadicAny],
            utf8,
            |a| {
                constructor(a, 1, |values| {
                    let items = values.into_iter().map(|v| v.unwrap_or_default()).collect();
                    Some(serde_json::Value::Array(items))
                })
            },
        ),
        RowFn::new(IS_JSON, vec![Exact(vec![Utf8, Utf8])], boolean, is_json),
        RowFn::new(
            JSON_VALUE_STATUS,
            vec![TypeSignature::Any(5)],
            |_| Ok(DataType::Int8),
            json_value_status,
        ),
        RowFn::new(
            "convert_tz",
            vec![Exact(vec![Utf8, Utf8, Utf8])],
            utf8,
            convert_tz,
        ),
    ];
    for f in fns {
        ctx.register_udf(ScalarUDF::from(f));
    }
    ctx.register_udf(ScalarUDF::from(Rand::new(false)));
    ctx.register_udf(ScalarUDF::from(Rand::new(true)));
    let map = datafusion::functions_nested::map::map_udf();
    ctx.register_udf(map.as_ref().clone().with_aliases(["map_from_arrays"]));
}

fn strings(
    a: &[ArrayRef],
    f: impl Fn(&str) -> Option<String>,
) -> datafusion::error::Result<ArrayRef> {
    let s = a[0].as_string::<i32>();
    let mut out = StringBuilder::with_capacity(s.len(), s.len() * 8);
    for v in s.iter() {
        out.append_option(v.and_then(&f));
    }
    Ok(Arc::new(out.finish()))
}

fn ints(a: &[ArrayRef], f: impl Fn(i64) -> Option<String>) -> datafusion::error::Result<ArrayRef> {
    let x = a[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let mut out = StringBuilder::with_capacity(x.len(), x.len() * 8);
    for v in x.iter() {
        out.append_option(v.and_then(&f));
    }
    Ok(Arc::new(out.finish()))
}

/// A test on text; NULL text is `false`, as in Flink.
fn predicate(a: &[ArrayRef], f: impl Fn(&str) -> bool) -> datafusion::error::Result<ArrayRef> {
    let s = a[0].as_string::<i32>();
    let mut out = BooleanBuilder::with_capacity(s.len());
    for v in s.iter() {
        out.append_value(v.is_some_and(&f));
    }
    Ok(Arc::new(out.finish()))
}

/// The text of row `i` of a string column, or None when NULL (or not a string column).
fn text(a: &ArrayRef, i: usize) -> Option<&str> {
    let s = a.as_string_opt::<i32>()?;
    s.is_valid(i).then(|| s.value(i))
}

/// `ENCODE(string, charset)`: the bytes of `string` in one of Flink's character sets.
fn encode(a: &[ArrayRef]) -> datafusion::error::Result<ArrayRef> {
    let n = a[0].len();
    let mut out = BinaryBuilder::with_capacity(n, n * 8);
    for i in 0..n {
        let bytes = match (text(&a[0], i), text(&a[1], i)) {
            (Some(s), Some(cs)) => match cs.to_ascii_uppercase().as_str() {
                "UTF-8" | "UTF8" => Some(s.as_bytes().to_vec()),
                "US-ASCII" | "ASCII" => Some(
                    s.chars()
                        .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                        .collect(),
                ),
                "ISO-8859-1" | "LATIN1" => Some(
                    s.chars()
                        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                        .collect(),
                ),
                "UTF-16BE" => Some(s.encode_utf16().flat_map(u16::to_be_bytes).collect()),
                "UTF-16LE" => Some(s.encode_utf16().flat_map(u16::to_le_bytes).collect()),
                // Java's UTF-16 writes a big-endian byte-order mark.
                "UTF-16" => Some(
                    [0xFE, 0xFF]
                        .into_iter()
                        .chain(s.encode_utf16().flat_map(u16::to_be_bytes))
                        .collect(),
                ),
                _ => None,
            },
            _ => None,
        };
        out.append_option(bytes);
    }
    Ok(Arc::new(out.finish()))
}

/// `DECODE(binary, charset)`: the text of `binary` in one of Flink's character sets.
fn decode(a: &[ArrayRef]) -> datafusion::error::Result<ArrayRef> {
    let bin = a[0].as_binary::<i32>();
    let n = bin.len();
    let mut out = StringBuilder::with_capacity(n, n * 8);
    for i in 0..n {
        let s = match (bin.is_valid(i).then(|| bin.value(i)), text(&a[1], i)) {
            (Some(b), Some(cs)) => {
                let utf16 = |be: bool, b: &[u8]| {
                    let units: Vec<u16> = b
                        .chunks(2)
                        .map(|c| {
                            let pair = [c[0], c.get(1).copied().unwrap_or(0)];
                            if be {
                                u16::from_be_bytes(pair)
                            } else {
                                u16::from_le_bytes(pair)
                            }
                        })
                        .collect();
                    String::from_utf16_lossy(&units)
                };
                match cs.to_ascii_uppercase().as_str() {
                    "UTF-8" | "UTF8" => Some(String::from_utf8_lossy(b).into_owned()),
                    "US-ASCII" | "ASCII" => Some(
                        b.iter()
                            .map(|&c| if c.is_ascii() { c as char } else { '\u{FFFD}' })
                            .collect(),
                    ),
                    "ISO-8859-1" | "LATIN1" => Some(b.iter().map(|&c| char::from(c)).collect()),
                    "UTF-16BE" => Some(utf16(true, b)),
                    "UTF-16LE" => Some(utf16(false, b)),
                    "UTF-16" => Some(match b {
                        [0xFF, 0xFE, rest @ ..] => utf16(false, rest),
                        [0xFE, 0xFF, rest @ ..] => utf16(true, rest),
                        _ => utf16(true, b),
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        out.append_option(s);
    }
    Ok(Arc::new(out.finish()))
}

/// `STR_TO_MAP(text [, list_delimiter, key_value_delimiter])`: Flink splits on `,` and `=`
/// by default; both delimiters are regular expressions, as in Flink.
fn str_to_map(a: &[ArrayRef]) -> datafusion::error::Result<ArrayRef> {
    let n = a[0].len();
    let mut out = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut cache: Option<(String, String, regex::Regex, regex::Regex)> = None;
    for i in 0..n {
        let (list, kv) = match (a.get(1), a.get(2)) {
            (Some(l), Some(k)) => match (text(l, i), text(k, i)) {
                (Some(l), Some(k)) => (l, k),
                _ => {
                    out.append(false)?;
                    continue;
                }
            },
            _ => (",", "="),
        };
        let Some(s) = text(&a[0], i) else {
            out.append(false)?;
            continue;
        };
        if cache
            .as_ref()
            .is_none_or(|(l, k, _, _)| l != list || k != kv)
        {
            match (regex::Regex::new(list), regex::Regex::new(kv)) {
                (Ok(lr), Ok(kr)) => cache = Some((list.into(), kv.into(), lr, kr)),
                _ => {
                    out.append(false)?;
                    continue;
                }
            }
        }
        let Some((_, _, lr, kr)) = &cache else {
            out.append(false)?;
            continue;
        };
        for entry in lr.split(s) {
            let mut parts = kr.splitn(entry, 2);
            let key = parts.next().unwrap_or_default();
            out.keys().append_value(key);
            out.values().append_option(parts.next());
        }
        out.append(true)?;
    }
    Ok(Arc::new(out.finish()))
}

/// `ELEMENT(array)`: its only element; NULL for an empty or NULL array. Flink fails the job
/// for an array of more than one element; so does weir, naming the function.
fn element(a: &[ArrayRef]) -> datafusion::error::Result<ArrayRef> {
    let list = cast(
        &a[0],
        &DataType::List(Arc::new(Field::new_list_field(
            match a[0].data_type() {
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                    f.data_type().clone()
                }
                other => {
                    return datafusion::common::exec_err!("ELEMENT of {other}: expected an ARRAY");
                }
            },
            true,
        ))),
    )?;
    let list = list.as_list::<i32>();
    let mut idx: Vec<Option<u32>> = Vec::with_capacity(list.len());
    let offsets = list.value_offsets();
    for i in 0..list.len() {
        let (start, end) = (offsets[i], offsets[i + 1]);
        idx.push(match (list.is_valid(i), end - start) {
            (true, 1) => Some(start as u32),
            (true, 0) | (false, _) => None,
            (true, k) => {
                return datafusion::common::exec_err!(
                    "ELEMENT: the array has {k} elements, it must have at most one"
                );
            }
        });
    }
    let idx = datafusion::arrow::array::UInt32Array::from(idx);
    Ok(datafusion::arrow::compute::take(
        list.values().as_ref(),
        &idx,
        None,
    )?)
}

/// A JSON object from `k1, v1, k2, v2, …`; a NULL value is kept as `null` or left out. A NULL
/// key leaves the whole object NULL.
fn json_object(
    values: Vec<Option<serde_json::Value>>,
    keep_nulls: bool,
) -> Option<serde_json::Value> {
    let mut map = serde_json::Map::new();
    let mut it = values.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let key = match k? {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        match v {
            Some(v) => {
                map.insert(key, v);
            }
            None if keep_nulls => {
                map.insert(key, serde_json::Value::Null);
            }
            None => {}
        }
    }
    Some(serde_json::Value::Object(map))
}

/// `x IS JSON [VALUE | SCALAR | ARRAY | OBJECT]`: whether the text parses as JSON of that
/// kind; NULL text is `false`, as in Flink.
fn is_json(a: &[ArrayRef]) -> datafusion::error::Result<ArrayRef> {
    let n = a[0].len();
    let mut out = BooleanBuilder::with_capacity(n);
    for i in 0..n {
        let ok = match (text(&a[0], i), text(&a[1], i)) {
            (Some(s), Some(kind)) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(v) => match kind {
                    "SCALAR" => !matches!(
                        v,
                        serde_json::Value::Array(_) | serde_json::Value::Object(_)
                    ),
                    "ARRAY" => v.is_array(),
                    "OBJECT" => v.is_object(),
                    _ => true,
                },
                Err(_) => false,
            },
            _ => false,
        };
        out.append_value(ok);
    }
    Ok(Arc::new(out.finish()))
}

/// See [`JSON_VALUE_STATUS`]. As in Flink (Calcite): a JSON null, or an array or object in lax
/// mode, is empty; an array or object in strict mode, a path not found in strict mode, a
/// document that is not JSON, or a value that does not convert to the RETURNING type is an
/// error.
fn json_value_status(a: &[ArrayRef]) -> datafusion::error::Result<ArrayRef> {
    use super::flink::{JsonLookup, json_lookup};
    use datafusion::arrow::array::{BooleanArray, Int8Builder, StringArray};
    let n = a[0].len();
    let doc = cast(&a[0], &DataType::Utf8)?;
    let path = cast(&a[1], &DataType::Utf8)?;
    let (doc, path) = (doc.as_string::<i32>(), path.as_string::<i32>());
    let target = a[2].data_type().clone();
    let flag = |col: &ArrayRef, i: usize| {
        col.as_any()
            .downcast_ref::<BooleanArray>()
            .is_some_and(|b| b.is_valid(i) && b.value(i))
    };
    let converts = |text: &str| {
        let options = datafusion::arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        let one: ArrayRef = Arc::new(StringArray::from(vec![text]));
        datafusion::arrow::compute::cast_with_options(&one, &target, &options).is_ok()
    };
    let mut out = Int8Builder::with_capacity(n);
    for i in 0..n {
        if doc.is_null(i) || path.is_null(i) {
            out.append_null();
            continue;
        }
        let p = path.value(i);
        let strict = p
            .trim_start()
            .get(..6)
            .is_some_and(|m| m.eq_ignore_ascii_case("strict"));
        let status = match json_lookup(doc.value(i), p) {
            JsonLookup::Found(serde_json::Value::Null) | JsonLookup::Empty => 1,
            JsonLookup::Found(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
                if strict {
                    2
                } else {
                    1
                }
            }
            JsonLookup::Found(serde_json::Value::String(s)) => {
                if target == DataType::Utf8 || converts(&s) {
                    0
                } else {
                    2
                }
            }
            JsonLookup::Found(v) => {
                if target == DataType::Utf8 || converts(&v.to_string()) {
                    0
                } else {
                    2
                }
            }
            JsonLookup::Error => 2,
        };
        if status == 1 && flag(&a[3], i) {
            return datafusion::common::exec_err!(
                "JSON_VALUE: no value at path '{p}' (ERROR ON EMPTY)"
            );
        }
        if status == 2 && flag(&a[4], i) {
            return datafusion::common::exec_err!(
                "JSON_VALUE: path '{p}' gives no value of the RETURNING type in {} (ERROR ON ERROR)",
                doc.value(i)
            );
        }
        out.append_value(status);
    }
    Ok(Arc::new(out.finish()))
}

/// A JSON constructor's rows: its first argument is the mask of values that are JSON text
/// (see [`JSON_CONSTRUCTORS`]); every `stride`-th argument after it is a value.
fn constructor(
    a: &[ArrayRef],
    stride: usize,
    f: impl Fn(Vec<Option<serde_json::Value>>) -> Option<serde_json::Value>,
) -> datafusion::error::Result<ArrayRef> {
    let n = a.first().map_or(1, |x| x.len());
    let mut out = StringBuilder::with_capacity(n, n * 8);
    for i in 0..n {
        let mask = text(&a[0], i).unwrap_or_default().as_bytes();
        let mut values = Vec::with_capacity(a.len() - 1);
        for (j, col) in a[1..].iter().enumerate() {
            let is_value = (j + 1) % stride == 0;
            let raw = is_value && mask.get(j / stride) == Some(&b'1');
            values.push(match raw.then(|| text(col, i)).flatten() {
                Some(t) => serde_json::from_str(t).ok(),
                None => json_value(col, i)?,
            });
        }
        out.append_option(f(values).map(|v| v.to_string()));
    }
    Ok(Arc::new(out.finish()))
}

/// Each row's arguments as JSON values (None for SQL NULL), turned into one JSON text by `f`.
fn json_rows(
    a: &[ArrayRef],
    f: impl Fn(Vec<Option<serde_json::Value>>) -> Option<serde_json::Value>,
) -> datafusion::error::Result<ArrayRef> {
    let n = a.first().map_or(1, |x| x.len());
    let mut out = StringBuilder::with_capacity(n, n * 8);
    for i in 0..n {
        let values = a
            .iter()
            .map(|col| json_value(col, i))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        out.append_option(f(values).map(|v| v.to_string()));
    }
    Ok(Arc::new(out.finish()))
}

/// Row `i` of `col` as a JSON value (None for NULL).
pub(crate) fn json_value(
    col: &ArrayRef,
    i: usize,
) -> datafusion::error::Result<Option<serde_json::Value>> {
    use datafusion::common::ScalarValue;
    if col.is_null(i) {
        return Ok(None);
    }
    let v = ScalarValue::try_from_array(col, i)?;
    Ok(Some(match v {
        ScalarValue::Boolean(Some(b)) => serde_json::Value::Bool(b),
        ScalarValue::Int8(Some(x)) => x.into(),
        ScalarValue::Int16(Some(x)) => x.into(),
        ScalarValue::Int32(Some(x)) => x.into(),
        ScalarValue::Int64(Some(x)) => x.into(),
        ScalarValue::UInt8(Some(x)) => x.into(),
        ScalarValue::UInt16(Some(x)) => x.into(),
        ScalarValue::UInt32(Some(x)) => x.into(),
        ScalarValue::UInt64(Some(x)) => x.into(),
        ScalarValue::Float32(Some(x)) => serde_json::Number::from_f64(f64::from(x))
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        ScalarValue::Float64(Some(x)) => serde_json::Number::from_f64(x)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        ScalarValue::Decimal128(Some(_), _, _) => {
            // The decimal's text is a JSON number.
            serde_json::from_str(&v.to_string()).unwrap_or(serde_json::Value::Null)
        }
        ScalarValue::List(l) => {
            let values = l.value(0);
            serde_json::Value::Array(
                (0..values.len())
                    .map(|j| Ok(json_value(&values, j)?.unwrap_or(serde_json::Value::Null)))
                    .collect::<datafusion::error::Result<_>>()?,
            )
        }
        other => {
            let text = cast(&other.to_array()?, &DataType::Utf8)?;
            serde_json::Value::String(text.as_string::<i32>().value(0).to_string())
        }
    }))
}

/// `CONVERT_TZ(text, from_zone, to_zone)`: a `yyyy-MM-dd HH:mm:ss` time in one zone as the
/// same instant in another (zones by IANA name, `UTC`, or offsets such as `GMT+08:00`).
fn convert_tz(a: &[ArrayRef]) -> datafusion::error::Result<ArrayRef> {
    let n = a[0].len();
    let mut out = StringBuilder::with_capacity(n, n * 19);
    for i in 0..n {
        out.append_option(match (text(&a[0], i), text(&a[1], i), text(&a[2], i)) {
            (Some(t), Some(from), Some(to)) => convert(t, from, to),
            _ => None,
        });
    }
    Ok(Arc::new(out.finish()))
}

fn convert(t: &str, from: &str, to: &str) -> Option<String> {
    let naive = chrono::NaiveDateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    let utc = super::zone::Zone::parse(from)?.to_utc(naive)?;
    Some(
        super::zone::Zone::parse(to)?
            .from_utc(utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
    )
}

/// `RAND([seed])` (a DOUBLE in [0, 1)) and `RAND_INTEGER([seed,] bound)` (an INT in
/// [0, bound)). With a seed the sequence is the same on every run (as Flink's, per task: at
/// parallelism 1 the rows get the same numbers each time); without one it starts from the
/// clock. The generator is splitmix64.
#[derive(Debug)]
pub(crate) struct Rand {
    integer: bool,
    signature: Signature,
    /// The generator's state, once started.
    state: std::sync::Mutex<Option<u64>>,
}

impl PartialEq for Rand {
    fn eq(&self, other: &Self) -> bool {
        self.integer == other.integer
    }
}

impl Eq for Rand {}

impl std::hash::Hash for Rand {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.integer.hash(state);
    }
}

impl Rand {
    fn new(integer: bool) -> Self {
        use DataType::Int64;
        use TypeSignature::{Exact, Nullary};
        let sigs = if integer {
            vec![Exact(vec![Int64]), Exact(vec![Int64, Int64])]
        } else {
            vec![Nullary, Exact(vec![Int64])]
        };
        Self {
            integer,
            signature: Signature::one_of(sigs, Volatility::Volatile),
            state: std::sync::Mutex::new(None),
        }
    }

    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl ScalarUDFImpl for Rand {
    fn name(&self) -> &str {
        if self.integer { "rand_integer" } else { "rand" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(if self.integer {
            DataType::Int32
        } else {
            DataType::Float64
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let seeded = arrays.len() == if self.integer { 2 } else { 1 };
        let int_at = |a: &ArrayRef, i: usize| {
            let a = a.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        let mut guard = self
            .state
            .lock()
            .map_err(|_| datafusion::error::DataFusionError::Execution("RAND: poisoned".into()))?;
        let state = guard.get_or_insert_with(|| match arrays.first() {
            Some(seed) if seeded => int_at(seed, 0).unwrap_or(0) as u64,
            _ => chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64,
        });
        let out: ArrayRef = if self.integer {
            let bound = arrays.last().cloned();
            let mut b = datafusion::arrow::array::Int32Builder::with_capacity(n);
            for i in 0..n {
                let r = Self::next(state);
                match bound.as_ref().and_then(|a| int_at(a, i)) {
                    Some(k) if k > 0 => b.append_value((r % k as u64) as i32),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        } else {
            let v: datafusion::arrow::array::Float64Array = (0..n)
                .map(|_| Some((Self::next(state) >> 11) as f64 / (1u64 << 53) as f64))
                .collect();
            Arc::new(v)
        };
        Ok(ColumnarValue::Array(out))
    }
}
