//! Planning the relational constructs around the streaming ones: UNNEST (in the SELECT list
//! and lateral), MATCH_RECOGNIZE's stage, UNION ALL, GROUPING SETS and VALUES.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Aggregate, Expr as DfExpr, LogicalPlan};

use super::*;
use crate::operators::OpSpec;
use crate::sql::catalog::Table;
use crate::{Result, not_supported, plan_err};

impl Planner<'_> {
    /// `UNNEST(array)` in a SELECT list (or from a lateral UNNEST, see `lateral_unnest`): a
    /// row per element ([`crate::operators::UnnestSpec`]).
    pub(super) fn unnest(&self, u: &datafusion::logical_expr::Unnest) -> Result<Stream> {
        let mut s = self.build(&u.input)?;
        if s.updating {
            return not_supported!("UNNEST over an updating (changelog) input");
        }
        if !u.struct_type_columns.is_empty()
            || u.list_type_columns.iter().any(|(_, l)| l.depth != 1)
            || u.schema.fields().len() != u.input.schema().fields().len()
        {
            return not_supported!("UNNEST of ROW values or of nested arrays at once");
        }
        // SQL's UNNEST never preserves NULLs; `lateral_unnest` sets it for a LEFT JOIN, whose
        // rows of empty or NULL arrays are kept.
        s.push(OpSpec::new(crate::operators::UnnestSpec {
            list_cols: u.list_type_columns.iter().map(|(i, _)| *i).collect(),
            schema: Arc::new(u.schema.as_arrow().clone()),
            keep_empty: u.options.preserve_nulls(),
        }));
        Ok(s)
    }

    /// `MATCH_RECOGNIZE` over `input`: a stage keyed by its PARTITION BY columns (see
    /// [`crate::operators::pattern`]). Its output's time attributes are its `MATCH_ROWTIME()`
    /// measures.
    pub(super) fn match_recognize(
        &self,
        spec: &crate::operators::pattern::MatchSpec,
        input: &LogicalPlan,
    ) -> Result<Stream> {
        let mut s = self.build(input)?;
        if s.updating {
            return not_supported!("MATCH_RECOGNIZE over an updating (changelog) input");
        }
        let time = spec.input_schema.field(spec.time_col).name();
        if !s.time_attrs.iter().any(|t| t == time) {
            return plan_err!(
                "MATCH_RECOGNIZE ORDER BY {time}: not a time attribute of its input (declare a WATERMARK FOR {time})"
            );
        }
        let rowtimes: Vec<String> = spec
            .measures
            .iter()
            .zip(
                spec.output_schema
                    .fields()
                    .iter()
                    .skip(spec.partition.len()),
            )
            .filter(|(m, _)| matches!(m, crate::operators::pattern::MExpr::MatchRowtime))
            .map(|(_, f)| f.name().clone())
            .collect();
        s.stage(OpSpec::new(spec.clone()), spec.keys.clone());
        s.time_attrs = rowtimes;
        s.window = None;
        Ok(s)
    }

    /// `t CROSS JOIN UNNEST(t.items) AS u (item)`: DataFusion plans a lateral join against a
    /// subquery that unnests the outer row's array. The subquery is planned again over `t`
    /// itself (its projections carry t's columns along), so the join becomes an unnest of
    /// t's rows. None when the join is not of that shape.
    pub(super) fn lateral_unnest(
        &self,
        j: &datafusion::logical_expr::Join,
    ) -> Result<Option<Stream>> {
        let mut right = j.right.as_ref();
        if let LogicalPlan::SubqueryAlias(a) = right {
            right = a.input.as_ref();
        }
        // `LEFT JOIN UNNEST(…) ON TRUE`: the ON TRUE is pushed into the right side.
        if let LogicalPlan::Filter(f) = right
            && matches!(
                f.predicate,
                DfExpr::Literal(datafusion::common::ScalarValue::Boolean(Some(true)), _)
            )
        {
            right = f.input.as_ref();
        }
        let LogicalPlan::Subquery(sub) = right else {
            return Ok(None);
        };
        let has_unnest =
            datafusion::common::tree_node::TreeNode::exists(sub.subquery.as_ref(), |p| {
                Ok(matches!(p, LogicalPlan::Unnest(_)))
            })?;
        if !has_unnest {
            return Ok(None);
        }
        use datafusion::logical_expr::JoinType;
        let keep_empty = match j.join_type {
            JoinType::Inner => false,
            JoinType::Left => true,
            _ => return not_supported!("UNNEST joined by a {} join", j.join_type),
        };
        if !j.on.is_empty()
            || !matches!(
                &j.filter,
                None | Some(DfExpr::Literal(
                    datafusion::common::ScalarValue::Boolean(Some(true)),
                    _
                ))
            )
        {
            return not_supported!(
                "UNNEST joined other than by CROSS JOIN, JOIN … ON TRUE or LEFT JOIN … ON TRUE"
            );
        }
        let left = j.left.as_ref();
        let inner = lateralize(sub.subquery.as_ref(), left, keep_empty)?;
        // Left columns as they were, then the unnested ones under the right side's names.
        let width = left.schema().fields().len();
        let inner_cols: Vec<datafusion::common::Column> = inner.schema().columns();
        let right_width = j.right.schema().fields().len();
        if inner_cols.len() != width + right_width {
            return not_supported!("this UNNEST (its columns do not line up)");
        }
        let mut exprs = vec![];
        for (i, (q, f)) in j.schema.iter().enumerate() {
            let src = if i < width {
                inner_cols[i].clone()
            } else {
                inner_cols[inner_cols.len() - right_width + (i - width)].clone()
            };
            exprs.push(DfExpr::Column(src).alias_qualified(q.cloned(), f.name()));
        }
        let plan = datafusion::logical_expr::LogicalPlanBuilder::from(inner)
            .project(exprs)?
            .build()?;
        Ok(Some(self.build(&plan)?))
    }

    /// `UNION ALL`: a stage whose inputs each stay with the instance their producer feeds;
    /// it passes rows on, and its input gate merges the inputs' watermarks (the minimum) and
    /// aligns their barriers. A column is a time attribute (or window bound) of the union if
    /// it is one, at that position, in every input, as in Flink.
    pub(super) fn union_all(&self, u: &datafusion::logical_expr::Union) -> Result<Stream> {
        let streams = u
            .inputs
            .iter()
            .map(|i| self.build(i))
            .collect::<Result<Vec<_>>>()?;
        let updating = streams.iter().any(|s| s.updating);
        if updating && !streams.iter().all(|s| s.updating) {
            return not_supported!("UNION ALL of an updating (changelog) and an append-only input");
        }
        let names: Vec<String> = u.schema.fields().iter().map(|f| f.name().clone()).collect();
        let position_of = |i: usize, name: &str| -> Option<usize> {
            u.inputs[i]
                .schema()
                .fields()
                .iter()
                .position(|f| f.name() == name)
        };
        let time_attrs = (0..names.len())
            .filter(|&c| {
                streams
                    .iter()
                    .enumerate()
                    .all(|(i, s)| s.time_attrs.iter().any(|a| position_of(i, a) == Some(c)))
            })
            .map(|c| names[c].clone())
            .collect();
        let window = {
            let bounds: Vec<Option<(usize, usize)>> = streams
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let (ws, we) = s.window.as_ref()?;
                    Some((position_of(i, ws)?, position_of(i, we)?))
                })
                .collect();
            match bounds.first() {
                Some(Some(b)) if bounds.iter().all(|x| x.as_ref() == Some(b)) => {
                    Some((names[b.0].clone(), names[b.1].clone()))
                }
                _ => None,
            }
        };
        let inputs = streams
            .into_iter()
            .map(|s| Input {
                flow: s.flow,
                keys: vec![],
                exchange: crate::graph::Exchange::Forward,
            })
            .collect();
        Ok(Stream {
            flow: Flow::Stage(Box::new(Stage {
                inputs,
                ops: vec![],
            })),
            time_attrs,
            window,
            updating,
        })
    }

    /// `INTERSECT ALL` / `EXCEPT ALL`: the rewriter's tagged union of both branches (see
    /// `rewrite::rewrite_set_all`), hash-partitioned by the whole row into a
    /// [`crate::operators::SetAllSpec`]. Rows leave when their count changes, at any event
    /// time: the result has no time attributes.
    pub(super) fn set_all(&self, a: &datafusion::logical_expr::SubqueryAlias) -> Result<Stream> {
        use crate::operators::{SetAllKind, SetAllSpec};
        let kind = match a.alias.table().strip_prefix(super::rewrite::SET_ALL_PREFIX) {
            Some("intersect_all") => SetAllKind::Intersect,
            Some("except_all") => SetAllKind::Except,
            _ => return plan_err!("unexpected set operation {}", a.alias),
        };
        let schema = Arc::new(a.input.schema().as_arrow().clone());
        let tagged = schema.fields().last().is_some_and(|f| {
            f.name() == super::rewrite::SET_SIDE_COLUMN
                && f.data_type() == &datafusion::arrow::datatypes::DataType::Int64
        });
        if !tagged {
            return plan_err!("{}: the union's last column is not its side tag", a.alias);
        }
        let mut s = self.build(&a.input)?;
        let spec = SetAllSpec {
            kind,
            schema,
            updating_input: s.updating,
            updating: s.updating || kind == SetAllKind::Except,
        };
        s.updating = spec.updating;
        s.time_attrs = vec![];
        s.window = None;
        let keys = spec.row_keys();
        s.stage(OpSpec::new(spec), keys);
        Ok(s)
    }

    /// `GROUPING SETS`, `ROLLUP` and `CUBE`: one aggregate per grouping set, each padded with
    /// NULL for the columns it does not group by and tagged with its grouping id (what
    /// `GROUPING()` reads), then a UNION ALL of them. Each set is planned as any GROUP BY:
    /// windowed sets (every set grouping by window_start and window_end) give an append-only
    /// result, the others an updating one.
    pub(super) fn grouping_sets(
        &self,
        agg: &Aggregate,
        gs: &datafusion::logical_expr::GroupingSet,
    ) -> Result<Stream> {
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::{GroupingSet, Projection, Union};
        let distinct: Vec<DfExpr> = gs.distinct_expr().into_iter().cloned().collect();
        let sets: Vec<Vec<DfExpr>> = match gs {
            GroupingSet::GroupingSets(sets) => sets.clone(),
            GroupingSet::Rollup(exprs) => (0..=exprs.len())
                .rev()
                .map(|i| exprs[..i].to_vec())
                .collect(),
            GroupingSet::Cube(exprs) => datafusion::logical_expr::utils::powerset(exprs)?
                .into_iter()
                .map(|set| set.into_iter().cloned().collect())
                .collect(),
        };
        let fields = agg.schema.fields();
        let n = distinct.len();
        let id_type = fields[n].data_type().clone();
        let mut seen: HashMap<Vec<bool>, usize> = HashMap::new();
        let mut inputs = vec![];
        for set in &sets {
            let nulls: Vec<bool> = distinct.iter().map(|d| !set.contains(d)).collect();
            let ordinal = seen.entry(nulls.clone()).or_insert(0);
            let id = nulls
                .iter()
                .fold(0u64, |acc, &null| (acc << 1) | u64::from(null))
                | ((*ordinal as u64) << n);
            *ordinal += 1;
            let sub = Aggregate::try_new(agg.input.clone(), set.clone(), agg.aggr_expr.clone())?;
            let sub_fields: Vec<DfExpr> = sub
                .schema
                .columns()
                .into_iter()
                .map(DfExpr::Column)
                .collect();
            let mut exprs = vec![];
            for (k, d) in distinct.iter().enumerate() {
                let e = match set.iter().position(|x| x == d) {
                    Some(i) => sub_fields[i].clone(),
                    None => DfExpr::Literal(ScalarValue::try_from(fields[k].data_type())?, None),
                };
                exprs.push(e.alias(format!("__set_col{k}")));
            }
            let id = ScalarValue::UInt64(Some(id)).cast_to(&id_type)?;
            exprs.push(DfExpr::Literal(id, None).alias("__set_id"));
            for (j, _) in agg.aggr_expr.iter().enumerate() {
                exprs.push(
                    sub_fields[set.len() + j]
                        .clone()
                        .alias(format!("__set_agg{j}")),
                );
            }
            let projection = Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(sub)))?;
            inputs.push(Arc::new(LogicalPlan::Projection(projection)));
        }
        self.union_all(&Union {
            inputs,
            schema: agg.schema.clone(),
        })
    }

    /// `VALUES (…), (…)` or a `SELECT` without `FROM`: a bounded source of constant rows,
    /// evaluated here into one batch.
    pub(super) fn values(&self, plan: &LogicalPlan) -> Result<Stream> {
        use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
        let empty = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let (schema, batch) = match plan {
            LogicalPlan::Values(v) => {
                let schema = Arc::new(v.schema.as_arrow().clone());
                let no_input = DFSchema::empty();
                let mut columns = vec![];
                for (i, field) in schema.fields().iter().enumerate() {
                    let mut scalars = vec![];
                    for row in &v.values {
                        let e = self.phys(&row[i], &no_input)?;
                        let value = e.evaluate(&empty)?.into_array(1)?;
                        let value = datafusion::arrow::compute::cast(&value, field.data_type())?;
                        scalars.push(datafusion::common::ScalarValue::try_from_array(&value, 0)?);
                    }
                    columns.push(datafusion::common::ScalarValue::iter_to_array(scalars)?);
                }
                let batch = RecordBatch::try_new_with_options(
                    schema.clone(),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(v.values.len())),
                )?;
                (schema, batch)
            }
            LogicalPlan::EmptyRelation(e) => {
                let rows = usize::from(e.produce_one_row);
                let schema = Arc::new(e.schema.as_arrow().clone());
                let columns = schema
                    .fields()
                    .iter()
                    .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), rows))
                    .collect();
                let batch = RecordBatch::try_new_with_options(
                    schema.clone(),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(rows)),
                )?;
                (schema, batch)
            }
            other => return plan_err!("internal: not a VALUES plan: {}", other.display()),
        };
        let n = self.values_seen.get();
        self.values_seen.set(n + 1);
        let def = crate::sql::statement::TableDef {
            name: format!("values${n}"),
            columns: schema
                .fields()
                .iter()
                .map(|f| crate::sql::statement::ColumnDef {
                    name: f.name().clone(),
                    declared: f.name().clone(),
                    data_type: f.data_type().clone(),
                    nullable: true,
                    metadata: None,
                })
                .collect(),
            computed: vec![],
            watermark: None,
            options: [("connector".to_string(), "values".to_string())].into(),
            partitioned_by: vec![],
            primary_key: vec![],
            if_not_exists: false,
        };
        let mut table = Table::new(def)?;
        table.values = Some(Arc::new(batch));
        Ok(Stream {
            flow: Flow::Source { table, ops: vec![] },
            time_attrs: vec![],
            window: None,
            updating: false,
        })
    }
}

/// A lateral subquery planned over `left`: its empty input becomes `left`, each projection
/// also carries `left`'s columns (first), and references to the outer row become columns.
/// `keep_empty` (a LEFT JOIN): the unnest keeps rows of empty or NULL arrays, marked by
/// DataFusion's `preserve_nulls` (which SQL's own UNNEST never sets).
pub(super) fn lateralize(
    plan: &LogicalPlan,
    left: &LogicalPlan,
    keep_empty: bool,
) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    Ok(match plan {
        LogicalPlan::EmptyRelation(_) => left.clone(),
        LogicalPlan::Projection(p) => {
            let input = lateralize(&p.input, left, keep_empty)?;
            let mut exprs: Vec<DfExpr> = input
                .schema()
                .columns()
                .into_iter()
                .take(left.schema().fields().len())
                .map(DfExpr::Column)
                .collect();
            for e in &p.expr {
                let e = e
                    .clone()
                    .transform(|x| match x {
                        DfExpr::OuterReferenceColumn(_, c) => {
                            Ok(Transformed::yes(DfExpr::Column(c)))
                        }
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                exprs.push(e);
            }
            datafusion::logical_expr::LogicalPlanBuilder::from(input)
                .project(exprs)?
                .build()?
        }
        LogicalPlan::Unnest(u) => {
            let input = lateralize(&u.input, left, keep_empty)?;
            let options = u.options.clone().with_preserve_nulls(keep_empty);
            datafusion::logical_expr::LogicalPlanBuilder::from(input)
                .unnest_columns_with_options(u.exec_columns.clone(), options)?
                .build()?
        }
        LogicalPlan::SubqueryAlias(a) => lateralize(&a.input, left, keep_empty)?,
        other => {
            return not_supported!("UNNEST with {} inside", other.display());
        }
    })
}
