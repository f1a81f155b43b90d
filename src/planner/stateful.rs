//! Planning of the stateful nodes beyond window TVFs: joins (window, interval, regular),
//! aggregates without a window TVF (updating, or per window of a windowed input) and
//! ROW_NUMBER Top-N. Each becomes a new stage fed through a keyed exchange.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, JoinType, NullEquality, ScalarValue};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr as DfExpr, Join, LogicalPlan, Operator as BinOp, Window,
};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};

use super::{Exchange, Flow, Input, Planner, Stage, Stream};
use crate::changelog;
use crate::error::Context;
use crate::operators::{Expire, GroupAggSpec, JoinKind, JoinMode, JoinSpec, OpSpec, TopNSpec};
use crate::sql::interval::parse_duration_option;
use crate::{Result, not_supported, plan_err};

impl Planner<'_> {
    /// `'table.exec.state.ttl'`: how long unbounded keyed state (regular joins, updating
    /// aggregates, Top-N) keeps a key not written since; `None` (or 0): forever.
    fn state_ttl(&self) -> Result<Option<Duration>> {
        Ok(match self.catalog.settings.get("table.exec.state.ttl") {
            None => None,
            Some(v) => match parse_duration_option(v) {
                Some(0) => None,
                Some(ms) if ms > 0 => Some(Duration::from_millis(ms as u64)),
                _ => {
                    return plan_err!(
                        "'table.exec.state.ttl' = '{v}': expected a duration such as '1 h'"
                    );
                }
            },
        })
    }

    /// A two-input stream joined by `op`, each input hash-partitioned by its keys.
    fn two_input(
        left: Stream,
        right: Stream,
        keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
        kind: JoinKind,
        op: OpSpec,
    ) -> Flow {
        let [lk, rk] = keys;
        // A side made by a single instance (e.g. one maximum per window, as in q7) is small:
        // broadcast it, and leave the other side where it is instead of hashing and copying it.
        // Only when the broadcast side's unmatched rows are not emitted (they would be, once
        // per instance).
        let single =
            |s: &Stream| matches!(&s.flow, Flow::Stage(st) if st.parallelism(usize::MAX) == 1);
        let temporal = op
            .downcast_ref::<crate::operators::TemporalJoinSpec>()
            .is_some();
        let null_aware = op.downcast_ref::<JoinSpec>().is_some_and(|s| s.null_aware);
        let (lx, rx) = match kind {
            // NOT IN: every instance must see every right row (a NULL among them, or none at
            // all, decides for every left row).
            _ if null_aware => (Exchange::Forward, Exchange::Broadcast),
            // A temporal join's versions of one key must meet in one instance: never broadcast
            // its left side.
            _ if temporal && (!single(&right) || single(&left)) => (Exchange::Hash, Exchange::Hash),
            JoinKind::Inner | JoinKind::Left if single(&right) && !single(&left) => {
                (Exchange::Forward, Exchange::Broadcast)
            }
            JoinKind::Inner | JoinKind::Right if single(&left) && !single(&right) => {
                (Exchange::Broadcast, Exchange::Forward)
            }
            _ => (Exchange::Hash, Exchange::Hash),
        };
        let mut op = op;
        if let Some(spec) = op.downcast_ref::<JoinSpec>() {
            let mut spec = spec.clone();
            spec.broadcast = match (lx, rx) {
                (Exchange::Broadcast, _) => Some(0),
                (_, Exchange::Broadcast) => Some(1),
                _ => None,
            };
            op = OpSpec::new(spec);
        }
        Flow::Stage(Box::new(Stage {
            inputs: vec![
                Input {
                    flow: left.flow,
                    keys: lk,
                    exchange: lx,
                },
                Input {
                    flow: right.flow,
                    keys: rk,
                    exchange: rx,
                },
            ],
            ops: vec![op],
        }))
    }

    /// The equi-join keys of each side and the residual condition (over the joined row).
    #[allow(clippy::type_complexity)]
    fn join_condition(
        &self,
        j: &Join,
    ) -> Result<(
        [Vec<Arc<dyn PhysicalExpr>>; 2],
        Option<Arc<dyn PhysicalExpr>>,
    )> {
        let mut keys: [Vec<Arc<dyn PhysicalExpr>>; 2] = [vec![], vec![]];
        for (l, r) in &j.on {
            keys[0].push(self.phys(l, j.left.schema())?);
            keys[1].push(self.phys(r, j.right.schema())?);
        }
        // Over the left and right columns (a semi or anti join outputs only the left ones).
        let joined = j.left.schema().join(j.right.schema())?;
        let filter = j
            .filter
            .as_ref()
            .map(|f| self.phys(f, &joined))
            .transpose()?;
        Ok((keys, filter))
    }

    /// Null the columns of each join input that neither the join nor anything above it reads
    /// ([`super::JoinUse`]), so that they are neither exchanged nor stored. NOT NULL columns
    /// stay (the join's schemas keep their declared nullability).
    fn null_unread_join_columns(
        &self,
        j: &Join,
        sides: [&mut Stream; 2],
        keys: &[Vec<Arc<dyn PhysicalExpr>>; 2],
        filter: Option<&Arc<dyn PhysicalExpr>>,
    ) -> Result<()> {
        use datafusion::physical_expr::utils::collect_columns;
        if !self
            .join_use
            .prunable
            .contains(&(j as *const Join as usize))
        {
            return Ok(());
        }
        let schemas = [j.left.schema().as_arrow(), j.right.schema().as_arrow()];
        let left_len = schemas[0].fields().len();
        let mut needed: [std::collections::HashSet<usize>; 2] = Default::default();
        for (side, keys) in keys.iter().enumerate() {
            for k in keys {
                needed[side].extend(collect_columns(k).iter().map(|c| c.index()));
            }
        }
        for c in filter.map(collect_columns).unwrap_or_default() {
            match c.index().checked_sub(left_len) {
                Some(r) => needed[1].insert(r),
                None => needed[0].insert(c.index()),
            };
        }
        // A semi or anti join outputs its left rows only.
        let output_sides = match j.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti => 1,
            _ => 2,
        };
        for side in 0..output_sides {
            for (i, f) in schemas[side].fields().iter().enumerate() {
                if self.join_use.named.contains(f.name()) {
                    needed[side].insert(i);
                }
            }
        }
        for ((s, schema), needed) in sides.into_iter().zip(schemas).zip(&needed) {
            super::null_unneeded(s, schema, needed, false)?;
        }
        Ok(())
    }

    pub(super) fn join(&self, j: &Join) -> Result<Stream> {
        // INTERSECT / EXCEPT: DataFusion plans a semi / anti join of the distinct left rows.
        // The distinct of the joined rows is the same answer, and keeps the join's inputs
        // append-only.
        if matches!(j.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
            && let LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(inner)) =
                j.left.as_ref()
        {
            let join = Join::try_new(
                inner.clone(),
                j.right.clone(),
                j.on.clone(),
                j.filter.clone(),
                j.join_type,
                j.join_constraint,
                j.null_equality,
                j.null_aware,
            )?;
            let distinct = LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(
                Arc::new(LogicalPlan::Join(join)),
            ));
            return self.build(&distinct);
        }
        let kind = match j.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            JoinType::LeftSemi => JoinKind::Semi,
            JoinType::LeftAnti if j.null_aware && (j.on.len() != 1 || j.filter.is_some()) => {
                return not_supported!(
                    "NOT IN (SELECT ...) over several columns or with a correlated condition \
                     (a NULL in the subquery empties the result): write NOT EXISTS"
                );
            }
            JoinType::LeftAnti => JoinKind::Anti,
            JoinType::RightSemi | JoinType::RightAnti => {
                return not_supported!("{} joins", j.join_type);
            }
            other => return not_supported!("{other} joins"),
        };
        // INTERSECT and EXCEPT compare rows with NULLs equal.
        let null_equal = j.null_equality != NullEquality::NullEqualsNothing;
        if let Some(s) = self.lateral_unnest(j)? {
            return Ok(s);
        }
        if j.on.is_empty() {
            return not_supported!(
                "joins without an equality condition between the two inputs (cross joins)"
            );
        }
        if let Some(table) = lookup_table(&j.right) {
            return self.lookup_join(j, kind, table);
        }
        if let Some((table, as_of)) = versioned_table(&j.right) {
            return self.temporal_join(j, kind, table, as_of);
        }
        let left = self.build(&j.left)?;
        let right = self.build(&j.right)?;
        if left.updating || right.updating {
            return not_supported!("joins over an updating (changelog) input");
        }
        let (ls, rs) = (j.left.schema(), j.right.schema());
        let (keys, filter) = self.join_condition(j)?;
        let (mut left, mut right) = (left, right);
        self.null_unread_join_columns(j, [&mut left, &mut right], &keys, filter.as_ref())?;
        let col_name = |e: &DfExpr| match e {
            DfExpr::Column(c) => Some(c.name.clone()),
            _ => None,
        };
        // Window join: both inputs windowed, joined on both window bounds.
        let window_join = match (&left.window, &right.window) {
            (Some((lws, lwe)), Some((rws, rwe))) => {
                let has = |a: &str, b: &str| {
                    j.on.iter().any(|(l, r)| {
                        col_name(l).as_deref() == Some(a) && col_name(r).as_deref() == Some(b)
                    })
                };
                has(lws, rws) && has(lwe, rwe)
            }
            _ => false,
        };
        let (mode, expire, ttl) = if window_join {
            let end = |s: &Stream, schema: &datafusion::common::DFSchema| -> Result<usize> {
                let name = s.window.as_ref().map(|w| w.1.clone()).unwrap_or_default();
                Ok(schema.as_arrow().index_of(&name)?)
            };
            let e = |col| {
                Some(Expire {
                    time_col: col,
                    after_ms: -1,
                })
            };
            (
                JoinMode::Window,
                [e(end(&left, ls)?), e(end(&right, rs)?)],
                None,
            )
        } else if let Some((lt, rt, lo, hi)) = self.interval_bounds(j, &left, &right)? {
            // Left rows match right rows with r.t in [l.t - hi, l.t - lo]; right rows, left rows
            // with l.t in [r.t + lo, r.t + hi]. Future rows are at or after the watermark.
            let l = Expire {
                time_col: lt,
                after_ms: -lo,
            };
            let r = Expire {
                time_col: rt,
                after_ms: hi,
            };
            (JoinMode::Interval, [Some(l), Some(r)], None)
        } else {
            (JoinMode::Regular, [None, None], self.state_ttl()?)
        };
        if j.null_aware && mode != JoinMode::Regular {
            return not_supported!(
                "NOT IN (SELECT ...) in a {mode} (a NULL in the subquery empties the result): \
                 write NOT EXISTS"
            );
        }
        let updating =
            !matches!(kind, JoinKind::Inner | JoinKind::Semi) && expire.iter().any(Option::is_none);
        let joined_schema = Arc::new(j.left.schema().join(j.right.schema())?.as_arrow().clone());
        let mut output = j.schema.as_arrow().clone();
        if updating {
            output = changelog::with_op_field(&output).as_ref().clone();
        }
        let spec = JoinSpec {
            mode,
            kind,
            keys: keys.clone(),
            filter,
            inputs: [
                Arc::new(ls.as_arrow().clone()),
                Arc::new(rs.as_arrow().clone()),
            ],
            output_schema: Arc::new(output),
            joined_schema,
            null_equal,
            expire,
            ttl,
            updating,
            broadcast: None,
            null_aware: j.null_aware,
        };
        let time_attrs = if mode == JoinMode::Regular {
            vec![]
        } else if matches!(kind, JoinKind::Semi | JoinKind::Anti) {
            left.time_attrs.clone()
        } else {
            left.time_attrs
                .iter()
                .chain(&right.time_attrs)
                .cloned()
                .collect()
        };
        let window = if window_join {
            left.window.clone()
        } else {
            None
        };
        let flow = Self::two_input(left, right, keys, kind, OpSpec::new(spec));
        Ok(Stream {
            flow,
            time_attrs,
            window,
            updating,
        })
    }

    /// Stream ⋈ versioned table `FOR SYSTEM_TIME AS OF` the stream's event time: each left row
    /// joined with the version valid at its time ([`crate::operators::TemporalJoin`]).
    fn temporal_join(&self, j: &Join, kind: JoinKind, table: &str, as_of: &str) -> Result<Stream> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        let outer = match kind {
            JoinKind::Inner => false,
            JoinKind::Left => true,
            _ => return not_supported!("{kind:?} temporal joins (INNER and LEFT are)"),
        };
        let t = self.catalog.table(table)?.clone();
        let left = self.build(&j.left)?;
        if left.updating {
            return not_supported!("temporal joins over an updating (changelog) input");
        }
        // The versioned table read as a stream: the placeholder scan becomes the table's own.
        let right_plan = j
            .right
            .as_ref()
            .clone()
            .transform_up(|p| match p {
                LogicalPlan::TableScan(mut scan)
                    if super::rewrite::versioned_parts(scan.table_name.table()).is_some() =>
                {
                    scan.table_name = datafusion::common::TableReference::bare(table);
                    Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let right = self.build(&right_plan)?;
        // A versioned table read as a changelog (debezium-json, upsert-kafka) is taken as its
        // versions: see `operators::temporal`.
        let (ls, rs) = (j.left.schema(), j.right.schema());
        let (keys, filter) = self.join_condition(j)?;
        if filter.is_some() && outer {
            return not_supported!(
                "LEFT temporal joins with a condition other than key equality ({})",
                j.filter.as_ref().map(|f| f.to_string()).unwrap_or_default()
            );
        }
        // The join keys must be the versioned table's primary key, as in Flink.
        let mut right_keys: Vec<String> =
            j.on.iter()
                .filter_map(|(_, r)| match r {
                    DfExpr::Column(c) => Some(c.name.clone()),
                    _ => None,
                })
                .collect();
        let mut pk = t.def.primary_key.clone();
        right_keys.sort();
        pk.sort();
        if right_keys != pk || right_keys.len() != j.on.len() {
            return plan_err!(
                "FOR SYSTEM_TIME AS OF: join {table} on its primary key ({}) with equalities",
                t.def.primary_key.join(", ")
            );
        }
        let position = |schema: &datafusion::common::DFSchema, name: &str| {
            schema.fields().iter().position(|f| f.name() == name)
        };
        let Some(left_time) =
            position(ls, as_of).filter(|_| left.time_attrs.iter().any(|a| a == as_of))
        else {
            return plan_err!(
                "FOR SYSTEM_TIME AS OF {as_of}: not an event-time attribute of the joined stream ({})",
                left.time_attrs.join(", ")
            );
        };
        let version_time = t
            .def
            .watermark
            .as_ref()
            .map(|w| w.column.clone())
            .unwrap_or_default();
        let Some(right_time) = position(rs, &version_time) else {
            return plan_err!("{table}: its event-time column {version_time} is not selected");
        };
        let spec = crate::operators::TemporalJoinSpec {
            keys: keys.clone(),
            left_time,
            right_time,
            outer,
            filter,
            inputs: [
                Arc::new(ls.as_arrow().clone()),
                Arc::new(rs.as_arrow().clone()),
            ],
            output_schema: Arc::new(j.schema.as_arrow().clone()),
            table: table.to_string(),
        };
        let time_attrs = left.time_attrs.clone();
        let flow = Self::two_input(left, right, keys, kind, OpSpec::new(spec));
        Ok(Stream {
            flow,
            time_attrs,
            window: None,
            updating: false,
        })
    }

    /// Stream ⋈ reference table: the table is not a stream, the join is a stateless step on
    /// the stream's rows.
    fn lookup_join(&self, j: &Join, kind: JoinKind, table: &str) -> Result<Stream> {
        let outer = match kind {
            JoinKind::Inner => false,
            JoinKind::Left => true,
            _ => return not_supported!("{kind:?} lookup joins (INNER and LEFT are)"),
        };
        let table = self.catalog.table(table)?.clone();
        if table.reads_changelog() {
            return not_supported!(
                "a lookup table read as a changelog ({}, format debezium-json)",
                table.def.name
            );
        }
        let mut s = self.build(&j.left)?;
        if s.updating {
            return not_supported!("lookup joins over an updating (changelog) input");
        }
        let (ls, rs) = (j.left.schema(), j.right.schema());
        let (keys, filter) = self.join_condition(j)?;
        let reload = match table.option("lookup.join.cache.ttl") {
            None => None,
            Some(v) => match parse_duration_option(v) {
                Some(ms) if ms > 0 => Some(Duration::from_millis(ms as u64)),
                _ => {
                    return plan_err!(
                        "table {}: 'lookup.join.cache.ttl' = '{v}' is not a duration such as '1 min'",
                        table.def.name
                    );
                }
            },
        };
        let join = JoinSpec {
            mode: JoinMode::Lookup,
            kind,
            keys,
            filter,
            inputs: [
                Arc::new(ls.as_arrow().clone()),
                Arc::new(rs.as_arrow().clone()),
            ],
            output_schema: Arc::new(j.schema.as_arrow().clone()),
            joined_schema: Arc::new(j.schema.as_arrow().clone()),
            null_equal: false,
            expire: [None, None],
            ttl: None,
            updating: false,
            broadcast: None,
            null_aware: false,
        };
        s.push(OpSpec::new(crate::operators::LookupSpec {
            join,
            loader: crate::connectors::lookup_table::lookup_loader(&table),
            outer,
            reload,
            shared: Default::default(),
        }));
        Ok(s)
    }

    /// `(left time col, right time col, lo, hi)` when the join condition bounds
    /// `l.t - r.t` between two constants over time attributes of both sides.
    fn interval_bounds(
        &self,
        j: &Join,
        left: &Stream,
        right: &Stream,
    ) -> Result<Option<(usize, usize, i64, i64)>> {
        let Some(filter) = &j.filter else {
            return Ok(None);
        };
        let (ls, rs) = (j.left.schema(), j.right.schema());
        // A time attribute of one side, plus a constant offset in ms: (side, column, offset).
        let term = |e: &DfExpr| -> Option<(usize, Column, i64)> {
            let (c, off) = match e {
                DfExpr::Column(c) => (c.clone(), 0),
                DfExpr::BinaryExpr(BinaryExpr {
                    left: a,
                    op,
                    right: b,
                }) => {
                    let DfExpr::Column(c) = a.as_ref() else {
                        return None;
                    };
                    let ms = interval_literal_ms(b)?;
                    match op {
                        BinOp::Plus => (c.clone(), ms),
                        BinOp::Minus => (c.clone(), -ms),
                        _ => return None,
                    }
                }
                _ => return None,
            };
            if ls.has_column(&c) && left.time_attrs.contains(&c.name) {
                Some((0, c, off))
            } else if rs.has_column(&c) && right.time_attrs.contains(&c.name) {
                Some((1, c, off))
            } else {
                None
            }
        };
        let (mut lo, mut hi) = (None::<i64>, None::<i64>);
        let (mut lcol, mut rcol) = (None, None);
        // a (op) b with a = x + ax, b = y + by: constraint on l.t - r.t.
        let mut bound = |a: &DfExpr, op: BinOp, b: &DfExpr| {
            let (Some((sa, ca, oa)), Some((sb, cb, ob))) = (term(a), term(b)) else {
                return;
            };
            if sa == sb {
                return;
            }
            // Normalize to l.t - r.t (op) c.
            let (op, c, lc, rc) = if sa == 0 {
                (op, ob - oa, ca, cb)
            } else {
                (flip(op), oa - ob, cb, ca)
            };
            match op {
                BinOp::LtEq | BinOp::Lt => hi = Some(hi.map_or(c, |h| h.min(c))),
                BinOp::GtEq | BinOp::Gt => lo = Some(lo.map_or(c, |l| l.max(c))),
                _ => return,
            }
            lcol = Some(lc);
            rcol = Some(rc);
        };
        for c in split_conjunction(filter) {
            match c {
                DfExpr::BinaryExpr(BinaryExpr {
                    left: a,
                    op,
                    right: b,
                }) => bound(a, *op, b),
                DfExpr::Between(btw) if !btw.negated => {
                    bound(&btw.expr, BinOp::GtEq, &btw.low);
                    bound(&btw.expr, BinOp::LtEq, &btw.high);
                }
                _ => {}
            }
        }
        let (Some(lo), Some(hi), Some(lc), Some(rc)) = (lo, hi, lcol, rcol) else {
            return Ok(None);
        };
        let lt = ls
            .index_of_column(&lc)
            .context(|| format!("interval join column {lc}"))?;
        let rt = rs
            .index_of_column(&rc)
            .context(|| format!("interval join column {rc}"))?;
        Ok(Some((lt, rt, lo, hi)))
    }

    /// GROUP BY over a stream that is not a window TVF.
    #[allow(deprecated)] // create_aggregate_expr_and_maybe_filter: its replacement is not yet stable API
    pub(super) fn group_aggregate(&self, agg: &Aggregate) -> Result<Stream> {
        let mut s = self.build(&agg.input)?;
        let in_schema = agg.input.schema();
        let in_arrow = in_schema.as_arrow();
        let mut keys = vec![];
        let mut key_fields = vec![];
        let mut key_names = vec![];
        for g in &agg.group_expr {
            if matches!(g, DfExpr::GroupingSet(_)) {
                return not_supported!("GROUPING SETS mixed with other GROUP BY items");
            }
            let pe = self.phys(g, in_schema)?;
            key_fields.push(Field::new(
                format!("key{}", keys.len()),
                pe.data_type(in_arrow)?,
                true,
            ));
            if let DfExpr::Column(c) = g {
                key_names.push(c.name.clone());
            }
            keys.push(pe);
        }
        // Grouped by the window bounds of a windowed input: fire per window, append-only.
        let window_end = match &s.window {
            Some((ws, we)) if key_names.contains(ws) && key_names.contains(we) && !s.updating => {
                Some(in_arrow.index_of(we)?)
            }
            _ => None,
        };
        let updating_input = s.updating;
        let (aggs, agg_filters) = self.aggregates(agg, |_, _, _| Ok(()))?;
        // Over a changelog every aggregate must take rows back: MIN, MAX and DISTINCT ones
        // through a multiset of values, the others through DataFusion's retract_batch.
        let mut multiset = vec![];
        for (a, e) in aggs.iter().zip(&agg.aggr_expr) {
            multiset.push(if updating_input {
                self.retracting(a, e, agg.input.schema())?
            } else {
                None
            });
        }
        let mut output = agg.schema.as_arrow().clone();
        let updating = window_end.is_none();
        if updating {
            output = changelog::with_op_field(&output).as_ref().clone();
        }
        let spec = GroupAggSpec {
            keys: keys.clone(),
            key_schema: Arc::new(Schema::new(key_fields)),
            aggs,
            agg_filters,
            output_schema: Arc::new(output),
            window_end,
            input_updating: s.updating,
            multiset,
            ttl: if window_end.is_none() {
                self.state_ttl()?
            } else {
                None
            },
        };
        let named = |name: &str| -> Option<String> {
            agg.group_expr
                .iter()
                .zip(agg.schema.fields())
                .find_map(|(g, f)| match g {
                    DfExpr::Column(c) if c.name == name => Some(f.name().clone()),
                    _ => None,
                })
        };
        if window_end.is_some() {
            let (ws, we) = s.window.clone().unwrap_or_default();
            s.window = named(&ws).zip(named(&we));
            s.time_attrs = s.time_attrs.iter().filter_map(|t| named(t)).collect();
        } else {
            s.window = None;
            s.time_attrs = vec![];
        }
        s.updating = updating;
        let mut used: Vec<Arc<dyn PhysicalExpr>> = spec.keys.clone();
        used.extend(spec.aggs.iter().flat_map(|a| a.expressions()));
        used.extend(spec.agg_filters.iter().flatten().cloned());
        let keep: Vec<usize> = (in_arrow.fields().len()
            ..in_arrow.fields().len() + usize::from(spec.input_updating))
            .collect();
        if !keys.is_empty() && !spec.input_updating {
            self.prune_for_exchange(&mut s, in_arrow, &used, &keep)?;
        }
        s.stage(OpSpec::new(spec), keys);
        Ok(s)
    }

    /// Aggregates OVER an event-time ordered frame: `agg(x) OVER (PARTITION BY k ORDER BY
    /// rowtime ROWS|RANGE BETWEEN ... PRECEDING AND CURRENT ROW)`, as Flink's OVER windows.
    /// Every OVER expression of the SELECT must share the window (as Flink requires).
    #[allow(deprecated)] // create_aggregate_expr_and_maybe_filter: its replacement is not yet stable API
    pub(super) fn over_aggregate(&self, w: &Window) -> Result<Stream> {
        use crate::operators::{Frame, OverSpec};
        use datafusion::logical_expr::expr::WindowFunctionDefinition;
        use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
        let s = self.build(&w.input)?;
        if s.updating {
            return self.updating_over(w, s);
        }
        let mut s = s;
        let in_schema = w.input.schema();
        let in_arrow = in_schema.as_arrow();
        let mut shared: Option<datafusion::logical_expr::expr::WindowFunctionParams> = None;
        let mut window: Option<datafusion::logical_expr::expr::WindowFunctionParams> = None;
        let mut aggs = vec![];
        let mut offsets = vec![];
        let mut outputs = vec![];
        for e in &w.window_expr {
            let DfExpr::WindowFunction(wf) = e.clone().unalias() else {
                return not_supported!("OVER expression {e}");
            };
            let WindowFunction { fun, params } = wf.as_ref();
            // Every OVER expression shares one window (Flink requires it too); LAG and LEAD
            // ignore the frame.
            let offset_fn = matches!(fun, WindowFunctionDefinition::WindowUDF(f)
                if matches!(f.name(), "lag" | "lead"));
            match &window {
                Some(p)
                    if p.partition_by != params.partition_by || p.order_by != params.order_by =>
                {
                    return not_supported!(
                        "OVER aggregates with different windows in one SELECT (Flink requires one window too)"
                    );
                }
                _ => window = Some(params.clone()),
            }
            if offset_fn {
                offsets.push(self.offset_fn(fun.name(), &params.args, in_schema)?);
                outputs.push(crate::operators::OverOutput::Offset(offsets.len() - 1));
                continue;
            }
            let WindowFunctionDefinition::AggregateUDF(udaf) = fun else {
                return not_supported!(
                    "{} OVER (...) (aggregate functions, LAG and LEAD are supported; ROW_NUMBER only as Top-N)",
                    fun.name()
                );
            };
            if params.filter.is_some() || params.distinct {
                return not_supported!("FILTER or DISTINCT in an OVER aggregate ({e})");
            }
            match &shared {
                Some(p) if p.window_frame != params.window_frame => {
                    return not_supported!(
                        "OVER aggregates with different windows in one SELECT (Flink requires one window too)"
                    );
                }
                _ => {}
            }
            aggs.push(self.over_agg(udaf, params, in_schema, e)?);
            outputs.push(crate::operators::OverOutput::Agg(aggs.len() - 1));
            shared = Some(params.clone());
        }
        let Some(params) = shared.as_ref().or(window.as_ref()) else {
            return plan_err!("internal: an OVER window without expressions");
        };
        let time_col = match params.order_by.as_slice() {
            [o] if o.asc => match &o.expr {
                DfExpr::Column(c) if s.time_attrs.contains(&c.name) => {
                    in_arrow.index_of(&c.name)?
                }
                other => {
                    return not_supported!(
                        "OVER windows ordered by {other}: order by the time attribute ({})",
                        s.time_attrs.join(", ")
                    );
                }
            },
            _ => {
                return not_supported!(
                    "OVER windows not ordered ascending by one time attribute ({})",
                    s.time_attrs.join(", ")
                );
            }
        };
        let default_frame = datafusion::logical_expr::WindowFrame::new(Some(false));
        let frame = if shared.is_some() {
            &params.window_frame
        } else {
            // Only LAG / LEAD: the frame does not matter.
            &default_frame
        };
        if frame.end_bound != WindowFrameBound::CurrentRow {
            return not_supported!("OVER frames that do not end at CURRENT ROW ({frame})");
        }
        let preceding = match &frame.start_bound {
            WindowFrameBound::Preceding(v) if v.is_null() => None,
            WindowFrameBound::Preceding(v) => Some(v.clone()),
            WindowFrameBound::CurrentRow => match frame.units {
                WindowFrameUnits::Rows => Some(ScalarValue::UInt64(Some(0))),
                _ => Some(ScalarValue::IntervalDayTime(Some(Default::default()))),
            },
            WindowFrameBound::Following(_) => {
                return not_supported!("OVER frames starting after the current row ({frame})");
            }
        };
        let frame = match (frame.units, preceding) {
            (WindowFrameUnits::Rows, None) => Frame::Rows(None),
            (WindowFrameUnits::Rows, Some(v)) => match v.cast_to(&DataType::UInt64)? {
                ScalarValue::UInt64(Some(n)) => Frame::Rows(Some(n)),
                _ => return plan_err!("ROWS {v} PRECEDING: expected a row count"),
            },
            (WindowFrameUnits::Range, None) => Frame::Range(None),
            (WindowFrameUnits::Range, Some(v)) => Frame::Range(Some(interval_millis(&v)?)),
            (WindowFrameUnits::Groups, _) => return not_supported!("GROUPS frames"),
        };
        let mut partition = vec![];
        for p in &params.partition_by {
            partition.push(self.phys(p, in_schema)?);
        }
        let mut fields: Vec<Field> = in_arrow
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for f in w.schema.fields().iter().skip(fields.len()) {
            fields.push(f.as_ref().clone().with_nullable(true));
        }
        let spec = OverSpec {
            partition: partition.clone(),
            time_col,
            frame,
            aggs,
            offsets,
            outputs,
            input_schema: Arc::new(in_arrow.clone()),
            output_schema: Arc::new(Schema::new(fields)),
        };
        // Rows keep their time attributes (emitted once the watermark passes them).
        s.window = None;
        s.stage(OpSpec::new(spec), partition);
        Ok(s)
    }

    /// How an aggregate over a changelog takes rows back: `Some` multiset for MIN, MAX and
    /// DISTINCT aggregates, `None` for aggregates whose own accumulator retracts.
    #[allow(deprecated)] // create_aggregate_expr_and_maybe_filter: its replacement is not yet stable API
    fn retracting(
        &self,
        a: &Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>,
        e: &DfExpr,
        schema: &datafusion::common::DFSchema,
    ) -> Result<Option<(crate::operators::Multiset, DataType)>> {
        use crate::operators::Multiset;
        let refuse = || not_supported!("{e} over an updating (changelog) input");
        let retracts = |a: &datafusion::physical_expr::aggregate::AggregateFunctionExpr| {
            a.create_sliding_accumulator()
                .map(|acc| acc.supports_retract_batch())
                .unwrap_or(false)
        };
        let arg = match a.expressions().as_slice() {
            [x] => x.data_type(schema.as_arrow())?,
            _ if !a.is_distinct() && retracts(a) => return Ok(None),
            _ => return refuse(),
        };
        let name = a.fun().name().to_lowercase();
        if a.is_distinct() {
            // The same aggregate without DISTINCT, fed each distinct value once.
            let DfExpr::AggregateFunction(f) = e.clone().unalias() else {
                return refuse();
            };
            let mut plain = f.clone();
            plain.params.distinct = false;
            let (inner, _, _) =
                datafusion::physical_planner::create_aggregate_expr_and_maybe_filter(
                    &DfExpr::AggregateFunction(plain),
                    schema,
                    schema.as_arrow(),
                    &self.props,
                )
                .context(|| format!("planning {e}"))?;
            if !retracts(&inner) || a.state_fields()?.len() != 1 {
                return refuse();
            }
            return Ok(Some((Multiset::Distinct(inner), arg)));
        }
        match name.as_str() {
            "min" | "max" if a.state_fields()?.len() == 1 => Ok(Some((
                if name == "min" {
                    Multiset::Min
                } else {
                    Multiset::Max
                },
                arg,
            ))),
            _ if retracts(a) => Ok(None),
            _ => refuse(),
        }
    }

    /// An OVER window's PARTITION BY expressions, and its ORDER BY with directions.
    #[allow(clippy::type_complexity)]
    fn window_keys(
        &self,
        params: &datafusion::logical_expr::expr::WindowFunctionParams,
        schema: &datafusion::common::DFSchema,
    ) -> Result<(
        Vec<Arc<dyn PhysicalExpr>>,
        Vec<(
            Arc<dyn PhysicalExpr>,
            datafusion::arrow::compute::SortOptions,
        )>,
    )> {
        let mut partition = vec![];
        for p in &params.partition_by {
            partition.push(self.phys(p, schema)?);
        }
        let mut order = vec![];
        for o in &params.order_by {
            order.push((
                self.phys(&o.expr, schema)?,
                datafusion::arrow::compute::SortOptions {
                    descending: !o.asc,
                    nulls_first: o.nulls_first,
                },
            ));
        }
        Ok((partition, order))
    }

    /// An OVER expression's aggregate as a DataFusion physical aggregate.
    #[allow(deprecated)] // create_aggregate_expr_and_maybe_filter: its replacement is not yet stable API
    fn over_agg(
        &self,
        udaf: &Arc<datafusion::logical_expr::AggregateUDF>,
        params: &datafusion::logical_expr::expr::WindowFunctionParams,
        schema: &datafusion::common::DFSchema,
        e: &DfExpr,
    ) -> Result<Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>> {
        let agg =
            DfExpr::AggregateFunction(datafusion::logical_expr::expr::AggregateFunction::new_udf(
                udaf.clone(),
                params.args.clone(),
                false,
                None,
                vec![],
                params.null_treatment,
            ));
        let (a, _, _) = datafusion::physical_planner::create_aggregate_expr_and_maybe_filter(
            &agg,
            schema,
            schema.as_arrow(),
            &self.props,
        )
        .context(|| format!("planning OVER aggregate {e}"))?;
        Ok(a)
    }

    /// Aggregates OVER a frame of an updating input (Nexmark q6): the output is an updating
    /// result kept equal to the batch answer over the rows present
    /// ([`crate::operators::UpdatingOver`]). Frames: `ROWS n PRECEDING`, `ROWS` / `RANGE
    /// UNBOUNDED PRECEDING`, each ending at the current row; any ORDER BY.
    fn updating_over(&self, w: &Window, mut s: Stream) -> Result<Stream> {
        use crate::operators::Frame;
        use datafusion::logical_expr::expr::WindowFunctionDefinition;
        use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
        let in_schema = w.input.schema();
        let in_arrow = in_schema.as_arrow();
        let mut shared: Option<&datafusion::logical_expr::expr::WindowFunctionParams> = None;
        let mut aggs = vec![];
        let mut windows = vec![];
        for e in &w.window_expr {
            let DfExpr::WindowFunction(wf) = e.clone().unalias() else {
                return not_supported!("OVER expression {e}");
            };
            windows.push(wf);
        }
        for (wf, e) in windows.iter().zip(&w.window_expr) {
            let WindowFunction { fun, params } = wf.as_ref();
            let WindowFunctionDefinition::AggregateUDF(udaf) = fun else {
                return not_supported!(
                    "{} OVER (...) over an updating input (aggregate functions are supported)",
                    fun.name()
                );
            };
            if params.filter.is_some() || params.distinct {
                return not_supported!("FILTER or DISTINCT in an OVER aggregate ({e})");
            }
            if let Some(p) = shared
                && (p.partition_by != params.partition_by
                    || p.order_by != params.order_by
                    || p.window_frame != params.window_frame)
            {
                return not_supported!(
                    "OVER aggregates with different windows in one SELECT (Flink requires one window too)"
                );
            }
            aggs.push(self.over_agg(udaf, params, in_schema, e)?);
            shared = Some(params);
        }
        let Some(params) = shared else {
            return plan_err!("internal: an OVER window without expressions");
        };
        let f = &params.window_frame;
        let frame = match (&f.units, &f.start_bound, &f.end_bound) {
            (
                WindowFrameUnits::Rows,
                WindowFrameBound::Preceding(v),
                WindowFrameBound::CurrentRow,
            ) => {
                if v.is_null() {
                    Frame::Rows(None)
                } else {
                    match v.cast_to(&DataType::UInt64)? {
                        ScalarValue::UInt64(Some(n)) => Frame::Rows(Some(n)),
                        _ => return plan_err!("ROWS {v} PRECEDING: expected a row count"),
                    }
                }
            }
            (
                WindowFrameUnits::Rows,
                WindowFrameBound::CurrentRow,
                WindowFrameBound::CurrentRow,
            ) => Frame::Rows(Some(0)),
            (
                WindowFrameUnits::Range,
                WindowFrameBound::Preceding(v),
                WindowFrameBound::CurrentRow,
            ) if v.is_null() => Frame::Range(None),
            _ => {
                return not_supported!(
                    "the OVER frame {f} over an updating input (ROWS n PRECEDING or UNBOUNDED PRECEDING, ending at the current row, are supported)"
                );
            }
        };
        let (partition, order) = self.window_keys(params, in_schema)?;
        let extra: Vec<Field> = w
            .schema
            .fields()
            .iter()
            .skip(in_arrow.fields().len())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let spec = crate::operators::UpdatingOverSpec {
            partition: partition.clone(),
            order,
            frame,
            aggs,
            limit: None,
            input_schema: Arc::new(in_arrow.clone()),
            output_schema: crate::operators::over_updating_schema(in_arrow, &extra),
        };
        s.window = None;
        s.time_attrs = vec![];
        s.stage(OpSpec::new(spec), partition);
        Ok(s)
    }

    /// `LAG(expr [, n [, default]])` / `LEAD(...)`: n is a constant, the default an expression
    /// over the current row.
    fn offset_fn(
        &self,
        name: &str,
        args: &[DfExpr],
        schema: &datafusion::common::DFSchema,
    ) -> Result<crate::operators::OffsetFn> {
        let upper = name.to_uppercase();
        let Some(value) = args.first() else {
            return plan_err!("{upper} needs an expression");
        };
        let constant = |e: &DfExpr| -> Result<ScalarValue> {
            if !e.column_refs().is_empty() {
                return not_supported!("{upper} with a non-constant offset ({e})");
            }
            let one_row = datafusion::arrow::record_batch::RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                vec![],
                &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(1)),
            )?;
            Ok(match self.phys(e, schema)?.evaluate(&one_row)? {
                datafusion::logical_expr::ColumnarValue::Scalar(v) => v,
                datafusion::logical_expr::ColumnarValue::Array(a) => {
                    ScalarValue::try_from_array(&a, 0)?
                }
            })
        };
        let n = match args.get(1) {
            None => 1,
            Some(e) => match constant(e)?.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n >= 0 => n as usize,
                v => {
                    return plan_err!(
                        "{upper}: the offset must be a non-negative integer, not {v}"
                    );
                }
            },
        };
        let ty = datafusion::logical_expr::ExprSchemable::get_type(value, schema)?;
        let default = match args.get(2) {
            None => DfExpr::Literal(ScalarValue::try_from(&ty)?, None),
            Some(e) => DfExpr::Cast(datafusion::logical_expr::Cast::new(Box::new(e.clone()), ty)),
        };
        Ok(crate::operators::OffsetFn {
            lead: upper == "LEAD",
            expr: self.phys(value, schema)?,
            n,
            default: self.phys(&default, schema)?,
        })
    }

    /// `ORDER BY` a time attribute (ascending) on a stream, as Flink allows: rows are buffered
    /// until the watermark passes them and emitted in time order (one instance; rows of equal
    /// time in arrival order).
    pub(super) fn sort_by_time(&self, sort: &datafusion::logical_expr::Sort) -> Result<Stream> {
        use crate::operators::{Frame, OverSpec};
        let mut s = self.build(&sort.input)?;
        let refuse = || {
            not_supported!(
                "ORDER BY on a stream other than ascending by one time attribute{} (order windowed results by window in the consumer)",
                if s.time_attrs.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.time_attrs.join(", "))
                }
            )
        };
        if s.updating || sort.fetch.is_some() {
            return refuse();
        }
        let time_col = match sort.expr.as_slice() {
            [o] if o.asc => match &o.expr {
                DfExpr::Column(c) if s.time_attrs.contains(&c.name) => {
                    sort.input.schema().as_arrow().index_of(&c.name)?
                }
                _ => return refuse(),
            },
            _ => return refuse(),
        };
        let schema = Arc::new(sort.input.schema().as_arrow().clone());
        let spec = OverSpec {
            partition: vec![],
            time_col,
            frame: Frame::Rows(None),
            aggs: vec![],
            offsets: vec![],
            outputs: vec![],
            input_schema: schema.clone(),
            output_schema: schema,
        };
        s.stage(OpSpec::new(spec), vec![]);
        Ok(s)
    }

    /// ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) under a `WHERE rn <= n`.
    pub(super) fn top_n(&self, w: &Window, n: Option<usize>) -> Result<Stream> {
        let Some(n) = n else {
            let names: Vec<String> = w
                .window_expr
                .iter()
                .filter_map(|e| match e.clone().unalias() {
                    DfExpr::WindowFunction(f) => Some(f.fun.name().to_uppercase()),
                    _ => None,
                })
                .collect();
            return not_supported!(
                "{} OVER (...): aggregate functions, LAG and LEAD OVER a time-ordered window are supported, and ROW_NUMBER() filtered by `WHERE rn <= N` (Top-N, deduplication)",
                names.join(", ")
            );
        };
        let [expr] = w.window_expr.as_slice() else {
            return not_supported!("several OVER expressions in one SELECT");
        };
        let DfExpr::WindowFunction(wf) = expr.clone().unalias() else {
            return not_supported!("OVER expression {expr}");
        };
        let WindowFunction { fun, params } = wf.as_ref();
        if fun.name().to_lowercase() != "row_number" {
            return not_supported!("OVER windows other than ROW_NUMBER() ({})", fun.name());
        }
        if params.order_by.is_empty() {
            return plan_err!("ROW_NUMBER() needs ORDER BY");
        }
        let mut s = self.build(&w.input)?;
        let in_schema = w.input.schema();
        if s.updating {
            // Top-N over a changelog: kept up to date like an OVER over one.
            let (partition, order) = self.window_keys(params, in_schema)?;
            let rn = w.schema.field(w.schema.fields().len() - 1);
            let spec = crate::operators::UpdatingOverSpec {
                partition: partition.clone(),
                order,
                frame: crate::operators::Frame::Rows(None),
                aggs: vec![],
                limit: Some(n),
                input_schema: Arc::new(in_schema.as_arrow().clone()),
                output_schema: crate::operators::over_updating_schema(
                    in_schema.as_arrow(),
                    &[Field::new(rn.name(), rn.data_type().clone(), false)],
                ),
            };
            s.time_attrs = vec![];
            s.window = None;
            s.stage(OpSpec::new(spec), partition);
            return Ok(s);
        }
        let in_arrow = in_schema.as_arrow();
        let mut partition = vec![];
        let mut part_fields = vec![];
        let mut part_names = vec![];
        for p in &params.partition_by {
            let pe = self.phys(p, in_schema)?;
            part_fields.push(Field::new(
                format!("p{}", partition.len()),
                pe.data_type(in_arrow)?,
                true,
            ));
            if let DfExpr::Column(c) = p {
                part_names.push(c.name.clone());
            }
            partition.push(pe);
        }
        let mut order = vec![];
        for o in &params.order_by {
            let expr = self.phys(&o.expr, in_schema)?;
            let options = datafusion::arrow::compute::SortOptions {
                descending: !o.asc,
                nulls_first: o.nulls_first,
            };
            order.push(PhysicalSortExpr { expr, options });
        }
        let window_end = match &s.window {
            Some((ws, we)) if part_names.contains(ws) && part_names.contains(we) => {
                Some(in_arrow.index_of(we)?)
            }
            _ => None,
        };
        let mut fields: Vec<Field> = in_arrow
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let rn = w.schema.field(w.schema.fields().len() - 1);
        fields.push(Field::new(rn.name(), rn.data_type().clone(), false));
        let updating = window_end.is_none();
        if updating {
            fields.push(changelog::op_field());
        }
        let spec = TopNSpec {
            partition: partition.clone(),
            partition_schema: Arc::new(Schema::new(part_fields)),
            order,
            n,
            input_schema: Arc::new(in_arrow.clone()),
            output_schema: Arc::new(Schema::new(fields)),
            window_end,
            ttl: if updating { self.state_ttl()? } else { None },
        };
        if updating {
            s.time_attrs = vec![];
            s.window = None;
        }
        s.updating = updating;
        s.stage(OpSpec::new(spec), partition);
        Ok(s)
    }
}

/// An interval literal (RANGE ... PRECEDING) in milliseconds.
fn interval_millis(v: &ScalarValue) -> Result<i64> {
    match v {
        ScalarValue::IntervalDayTime(Some(x)) => {
            Ok(i64::from(x.days) * 86_400_000 + i64::from(x.milliseconds))
        }
        ScalarValue::IntervalMonthDayNano(Some(x)) if x.months == 0 => {
            Ok(i64::from(x.days) * 86_400_000 + x.nanoseconds / 1_000_000)
        }
        ScalarValue::DurationMillisecond(Some(ms)) => Ok(*ms),
        other => not_supported!(
            "RANGE {other} PRECEDING: a RANGE frame over a time attribute takes a day-time INTERVAL"
        ),
    }
}

/// If `predicate` is `rn <= k` / `rn < k` / `rn = 1` over the ROW_NUMBER output of the window
/// below `input`, the number of rows to keep.
pub(super) fn row_number_bound(predicate: &DfExpr, input: &LogicalPlan) -> Option<usize> {
    let DfExpr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else {
        return None;
    };
    // Type coercion may have cast either side (ROW_NUMBER is UInt64; the literal Int64).
    let uncast = |e: &DfExpr| -> DfExpr {
        match e {
            DfExpr::Cast(c) => c.expr.as_ref().clone(),
            DfExpr::TryCast(c) => c.expr.as_ref().clone(),
            other => other.clone(),
        }
    };
    let DfExpr::Column(c) = uncast(left) else {
        return None;
    };
    let k = match uncast(right) {
        DfExpr::Literal(v, _) => match v {
            ScalarValue::Int64(Some(k)) => k,
            ScalarValue::Int32(Some(k)) => k as i64,
            ScalarValue::UInt64(Some(k)) => k as i64,
            ScalarValue::UInt32(Some(k)) => k as i64,
            _ => return None,
        },
        _ => return None,
    };
    let n = match op {
        BinOp::LtEq => k,
        BinOp::Lt => k - 1,
        BinOp::Eq if k == 1 => 1,
        _ => return None,
    };
    (n >= 1 && is_row_number(input, &c.name)).then_some(n as usize)
}

fn is_row_number(plan: &LogicalPlan, name: &str) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(a) => is_row_number(&a.input, name),
        LogicalPlan::Projection(p) => p.expr.iter().zip(p.schema.fields()).any(|(e, f)| {
            f.name() == name && matches!(e.clone().unalias(), DfExpr::Column(c) if is_row_number(&p.input, &c.name))
        }),
        LogicalPlan::Window(w) => w.schema.fields().last().is_some_and(|f| f.name() == name),
        _ => false,
    }
}

/// The window under a Top-N filter (through aliases and projections).
pub(super) fn window_below(plan: &LogicalPlan) -> Option<&Window> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => window_below(&a.input),
        LogicalPlan::Projection(p) => window_below(&p.input),
        LogicalPlan::Window(w) => Some(w),
        _ => None,
    }
}

/// The versioned table and `AS OF` column of an event-time temporal join (through aliases).
fn versioned_table(plan: &LogicalPlan) -> Option<(&str, &str)> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => versioned_table(&a.input),
        LogicalPlan::TableScan(s) => super::rewrite::versioned_parts(s.table_name.table()),
        _ => None,
    }
}

/// The reference table read under a `FOR SYSTEM_TIME AS OF` (through aliases).
fn lookup_table(plan: &LogicalPlan) -> Option<&str> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => lookup_table(&a.input),
        LogicalPlan::TableScan(s) => s
            .table_name
            .table()
            .strip_prefix(super::rewrite::LOOKUP_PREFIX),
        _ => None,
    }
}

fn flip(op: BinOp) -> BinOp {
    match op {
        BinOp::Lt => BinOp::Gt,
        BinOp::LtEq => BinOp::GtEq,
        BinOp::Gt => BinOp::Lt,
        BinOp::GtEq => BinOp::LtEq,
        o => o,
    }
}

/// Milliseconds of an interval literal.
fn interval_literal_ms(e: &DfExpr) -> Option<i64> {
    let DfExpr::Literal(v, _) = e else {
        return None;
    };
    match v {
        ScalarValue::IntervalDayTime(Some(d)) => {
            Some(d.days as i64 * 86_400_000 + d.milliseconds as i64)
        }
        ScalarValue::IntervalMonthDayNano(Some(m)) if m.months == 0 => {
            Some(m.days as i64 * 86_400_000 + m.nanoseconds / 1_000_000)
        }
        ScalarValue::DurationMillisecond(Some(ms)) => Some(*ms),
        _ => None,
    }
}
