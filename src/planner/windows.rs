//! Planning windows: window TVF placeholders (and legacy group windows) registered with their
//! schemas, window assignment without aggregation, windowed aggregation, processing-time
//! windows, and the session time zone's part in all of them.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::empty::EmptyTable;
use datafusion::logical_expr::{Aggregate, Expr as DfExpr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as PhysColumn;

use super::*;
use crate::operators::{
    FilterSpec, GroupOut, OpSpec, WatermarkGenSpec, WindowAggSpec, WindowAssignSpec, WindowKind,
};
use crate::{Result, not_supported, plan_err};

impl Planner<'_> {
    /// The session time zone (`'table.local-time-zone'`), unless it is UTC.
    pub(super) fn session_zone(&self) -> Option<(String, crate::functions::zone::Zone)> {
        let name = self.catalog.settings.get("table.local-time-zone")?;
        let zone = crate::functions::zone::Zone::parse(name)?;
        (zone.fixed_offset_ms() != Some(0)).then(|| (name.trim().to_string(), zone))
    }

    /// A query's TIMESTAMP_LTZ columns in the session time zone, so they print as its wall
    /// clock (the instants are unchanged).
    pub(super) fn in_session_zone(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let Some((name, _)) = self.session_zone() else {
            return Ok(plan);
        };
        let zoned = |t: &DataType| match t {
            DataType::Timestamp(unit, Some(_)) => {
                Some(DataType::Timestamp(*unit, Some(name.clone().into())))
            }
            _ => None,
        };
        if !plan
            .schema()
            .fields()
            .iter()
            .any(|f| zoned(f.data_type()).is_some())
        {
            return Ok(plan);
        }
        let exprs: Vec<DfExpr> = plan
            .schema()
            .iter()
            .map(|(q, f)| {
                let col = DfExpr::Column(datafusion::common::Column::from((q, f)));
                match zoned(f.data_type()) {
                    Some(t) => DfExpr::Cast(datafusion::logical_expr::Cast::new(Box::new(col), t))
                        .alias(f.name()),
                    None => col,
                }
            })
            .collect();
        Ok(datafusion::logical_expr::LogicalPlanBuilder::from(plan)
            .project(exprs)?
            .build()?)
    }

    /// The session zone whose wall clock the windows over a time attribute of this type show
    /// (a TIMESTAMP_LTZ in a zone other than UTC).
    pub(super) fn wall_clock_zone(
        &self,
        time_type: &DataType,
    ) -> Option<crate::functions::zone::Zone> {
        match time_type {
            DataType::Timestamp(_, Some(_)) => self.session_zone().map(|(_, z)| z),
            _ => None,
        }
    }

    /// A window's geometry for its time attribute: over a TIMESTAMP_LTZ in a session time zone
    /// other than UTC, windows are aligned to that zone's wall clock (a day starts at its
    /// midnight), as in Flink. In a zone whose offset changes (daylight saving time) only
    /// windows whose alignment the change does not move (those dividing an hour) are planned.
    pub(super) fn zoned_window(
        &self,
        kind: WindowKind,
        time_type: &DataType,
    ) -> Result<WindowKind> {
        let (DataType::Timestamp(_, Some(_)), Some((name, zone))) =
            (time_type, self.session_zone())
        else {
            return Ok(kind);
        };
        let shift = match zone.recent_fixed_offset_ms() {
            Some(ms) => ms,
            None => {
                // Windows are aligned to multiples of this width.
                let align = match kind {
                    WindowKind::Tumble { size, .. } => size,
                    WindowKind::Hop { slide, .. } => slide,
                    WindowKind::Cumulate { max_size, .. } => max_size,
                    WindowKind::Session { .. } => return Ok(kind),
                };
                // Every offset the zone has had since 2000 is a multiple of it: the windows
                // are the same in UTC and on the zone's wall clock.
                let year = 365 * 86_400;
                let same = (0..200).all(|k| {
                    let at = 946_684_800 + k * year / 2;
                    (zone.offset_secs(at) * 1000) % align == 0
                });
                if same {
                    return Ok(kind);
                }
                return not_supported!(
                    "these windows over a TIMESTAMP_LTZ in the time zone '{name}', which has daylight saving time: use windows that divide an hour, or a zone with a fixed offset such as 'GMT+01:00'"
                );
            }
        };
        Ok(match kind {
            WindowKind::Tumble { size, offset } => WindowKind::Tumble {
                size,
                offset: offset - shift,
            },
            WindowKind::Hop {
                slide,
                size,
                offset,
            } => WindowKind::Hop {
                slide,
                size,
                offset: offset - shift,
            },
            WindowKind::Cumulate {
                step,
                max_size,
                offset,
            } => WindowKind::Cumulate {
                step,
                max_size,
                offset: offset - shift,
            },
            session @ WindowKind::Session { .. } => session,
        })
    }

    pub(super) async fn register_windows(&mut self, windows: Vec<WindowTvf>) -> Result<()> {
        for w in windows {
            let input = Box::pin(self.logical_query(w.input.as_ref().clone())).await?;
            let in_schema = input.schema().as_arrow().clone();
            let Ok(time_field) = in_schema.field_with_name(&w.time_col) else {
                return plan_err!(
                    "DESCRIPTOR({}): no such column in the windowed table",
                    w.time_col
                );
            };
            let time_tz = match time_field.data_type() {
                DataType::Timestamp(_, tz) => tz.clone(),
                other => {
                    return plan_err!(
                        "DESCRIPTOR({}) must be a TIMESTAMP(3) time attribute, not {other}",
                        w.time_col
                    );
                }
            };
            for name in &w.columns {
                if in_schema.field_with_name(name).is_ok() {
                    return plan_err!(
                        "the table windowed by DESCRIPTOR({}) already has a column {name}; rename it (e.g. {name} AS inner_{name}) as Flink requires",
                        w.time_col
                    );
                }
            }
            let mut fields: Vec<Field> = in_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            let ts = |tz: Option<Arc<str>>| {
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, tz)
            };
            let [start, end, time] = &w.columns;
            fields.push(Field::new(start, ts(None), false));
            fields.push(Field::new(end, ts(None), false));
            fields.push(Field::new(time, ts(time_tz), false));
            let provider: Arc<dyn TableProvider> =
                Arc::new(EmptyTable::new(Arc::new(Schema::new(fields))));
            self.ctx
                .register_table(TableReference::bare(w.placeholder.as_str()), provider)?;
            self.windows.insert(w.placeholder.clone(), (w, input));
        }
        Ok(())
    }

    pub(super) fn window_stream(
        &self,
        w: &WindowTvf,
        input: &LogicalPlan,
    ) -> Result<(Stream, usize)> {
        let s = self.build(input)?;
        let proctime = s.flow.sources().iter().any(|t| {
            t.def.computed.iter().any(|c| {
                c.name == w.time_col && c.expr.to_string().eq_ignore_ascii_case("PROCTIME()")
            })
        });
        if proctime {
            // Processing-time window: its clock is the PROCTIME column (the wall clock when a
            // batch was read). A watermark generator on it, with no delay, replaces the event-time
            // watermark for this window: windows close as later batches arrive, and all close at
            // the end of bounded input. (With no input at all, nothing closes until some arrives.)
            let mut s = s;
            if s.updating {
                return not_supported!("windows over an updating (changelog) input");
            }
            let time_col = input.schema().as_arrow().index_of(&w.time_col)?;
            s.push(OpSpec::new(WatermarkGenSpec {
                time_col,
                time_name: w.time_col.clone(),
                delay_ms: 0,
            }));
            s.time_attrs = vec![w.time_col.clone()];
            return Ok((s, time_col));
        }
        if s.time_attrs.is_empty() {
            let table = s.source().map(|t| t.def.name.clone()).unwrap_or_default();
            return plan_err!(
                "DESCRIPTOR({}): table {} has no event time; declare WATERMARK FOR {} AS {} - INTERVAL '5' SECOND",
                w.time_col,
                table,
                w.time_col,
                w.time_col
            );
        }
        if s.updating {
            return not_supported!("windows over an updating (changelog) input");
        }
        if !s.time_attrs.contains(&w.time_col) {
            return plan_err!(
                "DESCRIPTOR({}) is not a time attribute: window on the column declared in WATERMARK FOR ({})",
                w.time_col,
                s.time_attrs.join(", ")
            );
        }
        let time_col = input.schema().as_arrow().index_of(&w.time_col)?;
        Ok((s, time_col))
    }

    pub(super) fn window_assign(
        &self,
        w: &WindowTvf,
        input: &LogicalPlan,
        schema: &Schema,
    ) -> Result<Stream> {
        let (mut s, time_col) = self.window_stream(w, input)?;
        if let WindowKind::Session { gap } = w.kind {
            // Rows wait until their session closes, keyed by its PARTITION BY columns.
            let mut partition = vec![];
            for name in w.partition_by.iter().flatten() {
                let col = DfExpr::Column(datafusion::common::Column::from_name(name));
                partition.push(self.phys(&col, input.schema())?);
            }
            s.time_attrs.push(w.columns[2].clone());
            s.window = Some((w.columns[0].clone(), w.columns[1].clone()));
            s.stage(
                OpSpec::new(crate::operators::SessionAssignSpec {
                    gap,
                    partition: partition.clone(),
                    time_col,
                    input_schema: Arc::new(input.schema().as_arrow().clone()),
                    output_schema: Arc::new(schema.clone()),
                }),
                partition,
            );
            return Ok(s);
        }
        let time_type = input.schema().field(time_col).data_type();
        let kind = self.zoned_window(w.kind, time_type)?;
        let local = self.wall_clock_zone(time_type);
        s.time_attrs.push(w.columns[2].clone());
        s.window = Some((w.columns[0].clone(), w.columns[1].clone()));
        s.push(OpSpec::new(WindowAssignSpec {
            kind,
            time_col,
            output_schema: Arc::new(schema.clone()),
            local,
        }));
        Ok(s)
    }

    #[allow(deprecated)] // create_aggregate_expr_and_maybe_filter: its replacement is not yet stable API
    pub(super) fn window_aggregate(&self, agg: &Aggregate) -> Result<Stream> {
        if let [DfExpr::GroupingSet(gs)] = agg.group_expr.as_slice() {
            return self.grouping_sets(agg, gs);
        }
        // Find the window placeholder under WHERE filters and aliases.
        let mut filters = vec![];
        let mut node = agg.input.as_ref();
        let (w, input) = loop {
            match node {
                LogicalPlan::Filter(f) => {
                    filters.push((f.predicate.clone(), f.input.schema().clone()));
                    node = &f.input;
                }
                LogicalPlan::SubqueryAlias(a) => node = &a.input,
                LogicalPlan::TableScan(scan)
                    if self.windows.contains_key(scan.table_name.table()) =>
                {
                    break &self.windows[scan.table_name.table()];
                }
                LogicalPlan::Projection(_) if has_window_scan(node, &self.windows) => {
                    return not_supported!(
                        "a projection between a window TVF and its GROUP BY (aggregate the window TVF directly)"
                    );
                }
                _ => return self.group_aggregate(agg),
            }
        };
        let (mut s, time_col) = self.window_stream(w, input)?;
        let n_in = input.schema().fields().len();
        let refs_window = |e: &Arc<dyn PhysicalExpr>| {
            datafusion::physical_expr::utils::collect_columns(e)
                .iter()
                .any(|c| c.index() >= n_in)
        };
        for (pred, schema) in filters.into_iter().rev() {
            let predicate = self.phys(&pred, &schema)?;
            if refs_window(&predicate) {
                return not_supported!(
                    "a WHERE condition on window columns before aggregation (use HAVING)"
                );
            }
            s.push(OpSpec::new(FilterSpec { predicate }));
        }
        let in_schema = agg.input.schema();
        let in_arrow = in_schema.as_arrow();
        let (mut keys, mut key_fields, mut group_out, mut key_names) =
            (vec![], vec![], vec![], vec![]);
        for g in &agg.group_expr {
            if matches!(g, DfExpr::GroupingSet(_)) {
                return not_supported!("GROUPING SETS mixed with other GROUP BY items");
            }
            let pe = self.phys(g, in_schema)?;
            if let Some(col) = pe.downcast_ref::<PhysColumn>() {
                if col.index() >= n_in {
                    group_out.push(match col.index() - n_in {
                        0 => GroupOut::WindowStart,
                        1 => GroupOut::WindowEnd,
                        _ => GroupOut::WindowTime,
                    });
                    continue;
                }
                key_names.push(col.name().to_string());
            }
            if refs_window(&pe) {
                return not_supported!("GROUP BY an expression of window columns ({g})");
            }
            key_fields.push(Field::new(
                format!("key{}", keys.len()),
                pe.data_type(in_arrow)?,
                true,
            ));
            group_out.push(GroupOut::Key(keys.len()));
            keys.push(pe);
        }
        let has = |g: GroupOut| group_out.contains(&g);
        if !(has(GroupOut::WindowStart) || has(GroupOut::WindowEnd) || has(GroupOut::WindowTime)) {
            return not_supported!(
                "aggregating a window TVF without grouping by window_start and window_end"
            );
        }
        if matches!(w.kind, WindowKind::Cumulate { .. })
            && !(has(GroupOut::WindowEnd) || has(GroupOut::WindowTime))
        {
            return not_supported!("CUMULATE windows grouped without window_end");
        }
        if let WindowKind::Session { .. } = w.kind {
            let mut want = w.partition_by.clone().unwrap_or_default();
            let mut got = key_names.clone();
            want.sort();
            got.sort();
            if want != got || key_names.len() != keys.len() {
                return not_supported!(
                    "SESSION windows grouped by keys other than their PARTITION BY columns ({} vs {})",
                    got.join(", "),
                    want.join(", ")
                );
            }
        }
        let (aggs, agg_filters) = self.aggregates(agg, |e, a, filter| {
            if a.expressions().iter().any(refs_window) || filter.is_some_and(refs_window) {
                return not_supported!("aggregating window columns ({e})");
            }
            Ok(())
        })?;
        // window_time is the rows' event time; window_end too: a window's rows are emitted
        // before the watermark passes its end, so they are never behind the watermark.
        let named = |g: GroupOut| {
            agg.schema
                .fields()
                .iter()
                .zip(&group_out)
                .find(|(_, x)| **x == g)
                .map(|(f, _)| f.name().clone())
        };
        let time_type = input.schema().field(time_col).data_type().clone();
        let local = self.wall_clock_zone(&time_type);
        // On a zone's wall clock window_end is not an instant, so not a time attribute.
        let end_attr = local
            .is_none()
            .then(|| named(GroupOut::WindowEnd))
            .flatten();
        s.time_attrs = [named(GroupOut::WindowTime), end_attr]
            .into_iter()
            .flatten()
            .collect();
        s.window = named(GroupOut::WindowStart).zip(named(GroupOut::WindowEnd));
        let partition = keys.clone();
        if !keys.is_empty() {
            let mut used: Vec<Arc<dyn PhysicalExpr>> = keys.clone();
            used.extend(aggs.iter().flat_map(|a| a.expressions()));
            used.extend(agg_filters.iter().flatten().cloned());
            let in_schema = input.schema().as_arrow().clone();
            self.prune_for_exchange(&mut s, &in_schema, &used, &[time_col])?;
        }
        let kind = self.zoned_window(w.kind, &time_type)?;
        s.stage(
            OpSpec::new(WindowAggSpec {
                kind,
                time_col,
                time_name: w.time_col.clone(),
                keys,
                key_schema: Arc::new(Schema::new(key_fields)),
                group_out,
                aggs,
                agg_filters,
                output_schema: Arc::new(agg.schema.as_arrow().clone()),
                local,
            }),
            partition,
        );
        Ok(s)
    }
}

/// Whether a window TVF is read directly below (through projections, filters and aliases).
pub(super) fn has_window_scan(
    plan: &LogicalPlan,
    windows: &HashMap<String, (WindowTvf, LogicalPlan)>,
) -> bool {
    match plan {
        LogicalPlan::TableScan(s) => windows.contains_key(s.table_name.table()),
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            plan.inputs().iter().any(|i| has_window_scan(i, windows))
        }
        _ => false,
    }
}
