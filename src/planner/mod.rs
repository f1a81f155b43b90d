//! The planner: a statement becomes a DataFusion logical plan (after weir's AST rewrites),
//! and the logical plan becomes a [`Pipeline`] of operator specs — one `match` in
//! [`Planner::build`] to extend.
//!
//! DataFusion plans and type-checks the SQL (`SqlToRel` plus its analyzer); weir then walks the
//! plan bottom-up. Stateless nodes (projection, filter) become DataFusion physical expressions
//! evaluated on batches; an aggregation over a window placeholder becomes a windowed
//! aggregation operator whose aggregates are DataFusion's. Plans weir cannot run continuously
//! fail here with "not supported yet: ...", never at run time with wrong rows.

mod explain;
pub mod pattern;
pub mod rewrite;
mod stateful;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::empty::EmptyTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::ExecutionProps;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Aggregate, Expr as DfExpr, LogicalPlan};
use datafusion::physical_expr::expressions::Column as PhysColumn;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::prelude::SessionConfig;
use sqlparser::ast::Query;

pub use crate::graph::{Exchange, Flow, Input, Pipeline, Stage};
pub use rewrite::WindowTvf;

use crate::error::Context;
use crate::operators::{
    FilterSpec, GroupOut, LimitSpec, OpSpec, ProjectSpec, WatermarkGenSpec, WindowAggSpec,
    WindowAssignSpec, WindowKind,
};
use crate::sql::catalog::Table;
use crate::sql::{Catalog, Statement};
use crate::{Error, Result, not_supported, plan_err};

/// A stream under construction: the graph so far and what the planner knows of its rows.
struct Stream {
    flow: Flow,
    /// Columns (by name) that carry event time with respect to the watermark.
    time_attrs: Vec<String>,
    /// `(window_start, window_end)` column names when every row belongs to one window
    /// (the output of a window TVF or a windowed aggregate).
    window: Option<(String, String)>,
    /// Whether rows form a changelog (carry the op column).
    updating: bool,
}

impl Stream {
    /// Append a stateless operator where the rows are now.
    fn push(&mut self, op: OpSpec) {
        self.flow.ops_mut().push(op);
    }

    /// Start a new stage fed by this stream, hash-partitioned by `keys` (none: one instance).
    fn stage(&mut self, op: OpSpec, keys: Vec<Arc<dyn PhysicalExpr>>) {
        let flow = std::mem::replace(
            &mut self.flow,
            Flow::Stage(Box::new(Stage {
                inputs: vec![],
                ops: vec![],
            })),
        );
        self.flow = Flow::Stage(Box::new(Stage {
            inputs: vec![Input {
                flow,
                keys,
                exchange: Exchange::Hash,
            }],
            ops: vec![op],
        }));
    }

    /// The first source table under this stream.
    fn source(&self) -> Option<&Table> {
        self.flow.sources().into_iter().next()
    }
}

/// Physical aggregates and their FILTER predicates.
type AggregatesOf = (
    Vec<Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>>,
    Vec<Option<Arc<dyn PhysicalExpr>>>,
);

/// The parallelism a job gets when none is set: the machine's cores.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Plans statements against a catalog.
pub struct Planner<'a> {
    catalog: &'a Catalog,
    ctx: SessionContext,
    windows: HashMap<String, (WindowTvf, LogicalPlan)>,
    /// MATCH_RECOGNIZE placeholders: the compiled clause and its input.
    matches: HashMap<String, (crate::operators::pattern::MatchSpec, LogicalPlan)>,
    next_id: usize,
    props: ExecutionProps,
    /// Set by a `WHERE rn <= N` filter for the ROW_NUMBER window below it.
    topn_bound: std::cell::Cell<Option<usize>>,
    /// Inline `VALUES` tables planned so far (they are named by their order).
    values_seen: std::cell::Cell<usize>,
}

fn session() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(false);
    // Flink reads 0.908 as DECIMAL(3, 3), so arithmetic with literals stays exact.
    config.options_mut().sql_parser.parse_float_as_decimal = true;
    config.options_mut().sql_parser.enable_ident_normalization = true;
    // weir's tables hold Utf8; keep CAST(x AS STRING) in the same type.
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    crate::functions::register(&ctx);
    ctx
}

/// The catalog's user-defined functions, over weir's and DataFusion's of the same names.
fn register_user_functions(ctx: &SessionContext, catalog: &Catalog) {
    for f in &catalog.udfs {
        ctx.register_udf(f.clone());
    }
    for f in &catalog.udafs {
        ctx.register_udaf(f.clone());
    }
}

/// Subqueries in expressions (`IN (SELECT ...)`, `EXISTS`, scalar subqueries) are refused
/// by name: weir does not decorrelate them into joins yet.
fn check_no_subqueries(plan: &LogicalPlan) -> Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|x| {
                let what = match x {
                    DfExpr::InSubquery(_) => Some("IN (SELECT ...) subqueries"),
                    DfExpr::Exists(_) => Some("EXISTS subqueries"),
                    DfExpr::ScalarSubquery(_) => Some("scalar subqueries"),
                    _ => None,
                };
                found = found.or(what);
                Ok(if found.is_some() {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })
    })?;
    match found {
        Some(what) => not_supported!("{what}"),
        None => Ok(()),
    }
}

/// Whether a plan has an IN / EXISTS subquery in a filter.
fn has_subquery(plan: &LogicalPlan) -> bool {
    check_no_subqueries(plan).is_err()
}

/// The optimizer rules weir runs on a logical plan. Expressions are simplified as DataFusion's
/// executor expects (COALESCE, for one, has no kernel of its own and must become CASE). Joins
/// also get their WHERE conditions moved into the join (equalities become its keys) and
/// one-sided conditions pushed below it, so less is stored. Only these rules run: the rest of
/// the plan keeps the shape the planner expects.
fn simplify(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::optimizer::{Optimizer, OptimizerContext, OptimizerRule};
    let mut rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![Arc::new(
        datafusion::optimizer::simplify_expressions::SimplifyExpressions::new(),
    )];
    if has_subquery(&plan) {
        // IN / EXISTS subqueries become semi and anti joins.
        rules.insert(
            0,
            Arc::new(
                datafusion::optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery::new(),
            ),
        );
    }
    if has_join(&plan) || has_subquery(&plan) {
        rules.push(Arc::new(
            datafusion::optimizer::push_down_filter::PushDownFilter::new(),
        ));
        rules.push(Arc::new(
            datafusion::optimizer::extract_equijoin_predicate::ExtractEquijoinPredicate::new(),
        ));
    }
    let config = OptimizerContext::new().with_max_passes(3);
    Optimizer::with_rules(rules)
        .optimize(plan, &config, |_, _| {})
        .map_err(planning_error)
}

/// Plan the computed columns of a table: for every column (physical or computed, in declared
/// order) an expression over the physical columns, and the fields of the computed ones.
pub async fn computed_columns(
    def: &crate::sql::TableDef,
    catalog: &Catalog,
) -> Result<(Vec<Arc<dyn PhysicalExpr>>, Vec<Field>)> {
    const PHYSICAL: &str = "__weir_physical";
    let ctx = session();
    register_user_functions(&ctx, catalog);
    let physical = Arc::new(Schema::new(
        def.columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
            .collect::<Vec<_>>(),
    ));
    let provider: Arc<dyn TableProvider> = Arc::new(EmptyTable::new(physical));
    ctx.register_table(TableReference::bare(PHYSICAL), provider)?;
    let quote = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
    let mut items: Vec<(usize, String)> = def
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| (i, quote(&c.name)))
        .collect();
    for c in &def.computed {
        items.insert(
            c.position.min(items.len()),
            (usize::MAX, format!("{} AS {}", c.expr, quote(&c.name))),
        );
    }
    let select: Vec<String> = items.into_iter().map(|(_, s)| s).collect();
    let sql = format!("SELECT {} FROM {PHYSICAL}", select.join(", "));
    let Some(crate::sql::Located {
        statement: Statement::Query(mut query),
        ..
    }) = crate::sql::parse_sql(&sql)?.pop()
    else {
        return plan_err!("internal: computed columns of {}", def.name);
    };
    let mut next_id = 0;
    rewrite::rewrite_query(&Catalog::default(), &mut query, &mut next_id)?;
    let state = ctx.state();
    let plan = state
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            sqlparser::ast::Statement::Query(query),
        )))
        .await
        .map_err(planning_error)?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
        .map_err(planning_error)?;
    // The same simplifier as queries (COALESCE becomes CASE).
    let plan = simplify(plan)?;
    let LogicalPlan::Projection(p) = &plan else {
        return plan_err!("internal: computed columns of {}", def.name);
    };
    let in_schema = p.input.schema();
    let props = ExecutionProps::new();
    let exprs = p
        .expr
        .iter()
        .map(|e| {
            create_physical_expr(e, in_schema, &props, &Default::default())
                .context(|| format!("computed column {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut fields = vec![];
    for c in &def.computed {
        let i = c.position.min(exprs.len() - 1);
        let e = &exprs[i];
        fields.push(Field::new(
            &c.name,
            e.data_type(in_schema.as_arrow())?,
            true,
        ));
    }
    Ok((exprs, fields))
}

impl<'a> Planner<'a> {
    /// A planner whose DataFusion context knows every table of the catalog (schemas only).
    pub fn new(catalog: &'a Catalog) -> Result<Self> {
        let ctx = session();
        if let Some(zone) = catalog.settings.get("table.local-time-zone") {
            crate::functions::register_zone(&ctx, zone);
        }
        register_user_functions(&ctx, catalog);
        for (name, table) in &catalog.tables {
            let provider: Arc<dyn TableProvider> = Arc::new(EmptyTable::new(table.schema.clone()));
            ctx.register_table(TableReference::bare(name.as_str()), provider.clone())?;
            // The same table read by a lookup join (`FOR SYSTEM_TIME AS OF`).
            ctx.register_table(
                TableReference::bare(rewrite::lookup_placeholder(name)),
                provider,
            )?;
        }
        Ok(Self {
            catalog,
            ctx,
            windows: HashMap::new(),
            matches: HashMap::new(),
            next_id: 0,
            props: ExecutionProps::new(),
            topn_bound: Default::default(),
            values_seen: Default::default(),
        })
    }

    /// Plan a query or INSERT into a pipeline.
    pub async fn plan(&mut self, statement: &Statement) -> Result<Pipeline> {
        let (plan, sink) = match statement {
            Statement::Query(q) => (self.logical_query(q.as_ref().clone()).await?, None),
            Statement::Insert { table, statement } => {
                let sink = self.catalog.table(table)?.clone();
                let mut stmt = statement.as_ref().clone();
                if let sqlparser::ast::Statement::Insert(ins) = &mut stmt {
                    // VIRTUAL metadata columns are read-only: an INSERT without a column list
                    // writes the others (as Flink does).
                    let is_virtual = |name: &str| {
                        sink.def.columns.iter().any(|c| {
                            c.name == name && c.metadata.as_ref().is_some_and(|m| m.is_virtual)
                        })
                    };
                    let targets: Vec<String> = if ins.columns.is_empty() {
                        sink.schema
                            .fields()
                            .iter()
                            .map(|f| f.name().clone())
                            .filter(|n| !is_virtual(n))
                            .collect()
                    } else {
                        ins.columns.iter().map(|c| c.to_string()).collect()
                    };
                    if ins.columns.is_empty() && targets.len() < sink.schema.fields().len() {
                        ins.columns = targets
                            .iter()
                            .map(|t| {
                                sqlparser::ast::ObjectName::from(vec![
                                    sqlparser::ast::Ident::with_quote('"', t.clone()),
                                ])
                            })
                            .collect();
                    }
                    if let Some(source) = ins.source.as_mut() {
                        rewrite::alias_insert_columns(source, &targets);
                        let found =
                            rewrite::rewrite_query(self.catalog, source, &mut self.next_id)?;
                        self.register_placeholders(found).await?;
                        self.register_versioned(source.as_ref())?;
                    }
                }
                (self.logical_statement(stmt).await?, Some(sink))
            }
            other => return plan_err!("{other:?} is not a query"),
        };
        let plan = match statement {
            Statement::Query(_) => self.in_session_zone(plan)?,
            _ => plan,
        };
        let stream = self.build(&plan)?;
        let schema = match &plan {
            LogicalPlan::Dml(d) => Arc::new(d.input.schema().as_arrow().clone()),
            p => Arc::new(p.schema().as_arrow().clone()),
        };
        let parallelism = self.parallelism()?;
        Ok(Pipeline {
            root: stream.flow,
            schema,
            updating: stream.updating,
            sink,
            parallelism,
        })
    }

    /// The aggregates of `agg` as DataFusion physical aggregates with their FILTER clauses;
    /// `check` may refuse one.
    #[allow(deprecated)] // create_aggregate_expr_and_maybe_filter: its replacement is not yet stable API
    fn aggregates(
        &self,
        agg: &Aggregate,
        check: impl Fn(
            &DfExpr,
            &datafusion::physical_expr::aggregate::AggregateFunctionExpr,
            Option<&Arc<dyn PhysicalExpr>>,
        ) -> Result<()>,
    ) -> Result<AggregatesOf> {
        let in_schema = agg.input.schema();
        let (mut aggs, mut filters) = (vec![], vec![]);
        for e in &agg.aggr_expr {
            let (a, filter, order) =
                datafusion::physical_planner::create_aggregate_expr_and_maybe_filter(
                    e,
                    in_schema,
                    in_schema.as_arrow(),
                    &self.props,
                )
                .context(|| format!("planning aggregate {e}"))?;
            if !order.is_empty() {
                return not_supported!("ordered aggregates ({e})");
            }
            check(e, &a, filter.as_ref())?;
            aggs.push(a);
            filters.push(filter);
        }
        Ok((aggs, filters))
    }

    /// The session time zone (`'table.local-time-zone'`), unless it is UTC.
    fn session_zone(&self) -> Option<(String, crate::functions::zone::Zone)> {
        let name = self.catalog.settings.get("table.local-time-zone")?;
        let zone = crate::functions::zone::Zone::parse(name)?;
        (zone.fixed_offset_ms() != Some(0)).then(|| (name.trim().to_string(), zone))
    }

    /// A query's TIMESTAMP_LTZ columns in the session time zone, so they print as its wall
    /// clock (the instants are unchanged).
    fn in_session_zone(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
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
    fn wall_clock_zone(&self, time_type: &DataType) -> Option<crate::functions::zone::Zone> {
        match time_type {
            DataType::Timestamp(_, Some(_)) => self.session_zone().map(|(_, z)| z),
            _ => None,
        }
    }

    /// A window's geometry for its time attribute: over a TIMESTAMP_LTZ in a session time zone
    /// other than UTC, windows are aligned to that zone's wall clock (a day starts at its
    /// midnight), as in Flink. In a zone whose offset changes (daylight saving time) only
    /// windows whose alignment the change does not move (those dividing an hour) are planned.
    fn zoned_window(&self, kind: WindowKind, time_type: &DataType) -> Result<WindowKind> {
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

    /// Instances per keyed stage: `SET 'parallelism'`, else the machine's cores.
    fn parallelism(&self) -> Result<usize> {
        match self.catalog.settings.get("parallelism") {
            None => Ok(default_parallelism()),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(p) if p > 0 => Ok(p),
                _ => plan_err!("'parallelism' = '{v}': expected a positive number of instances"),
            },
        }
    }

    /// Before a hash exchange, replace the columns a stage does not read with NULLs of their
    /// type, so the exchange does not copy them (the schema, and so every column index, stays).
    fn prune_for_exchange(
        &self,
        s: &mut Stream,
        schema: &Schema,
        used: &[Arc<dyn PhysicalExpr>],
        keep: &[usize],
    ) -> Result<()> {
        if self.parallelism()? < 2 {
            return Ok(());
        }
        let mut needed: std::collections::HashSet<usize> = keep.iter().copied().collect();
        for e in used {
            needed.extend(
                datafusion::physical_expr::utils::collect_columns(e)
                    .iter()
                    .map(|c| c.index()),
            );
        }
        let n = schema.fields().len();
        if (0..n).all(|i| needed.contains(&i)) {
            return Ok(());
        }
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = vec![];
        let mut fields = vec![];
        for (i, f) in schema.fields().iter().enumerate() {
            if needed.contains(&i) {
                exprs.push(Arc::new(PhysColumn::new(f.name(), i)));
                fields.push(f.as_ref().clone());
            } else {
                let null = datafusion::common::ScalarValue::try_from(f.data_type())?;
                exprs.push(Arc::new(
                    datafusion::physical_expr::expressions::Literal::new(null),
                ));
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
        s.push(OpSpec::new(ProjectSpec {
            exprs,
            schema: Arc::new(Schema::new(fields)),
        }));
        Ok(())
    }

    /// Rewrite and plan a query AST into an analyzed DataFusion logical plan.
    async fn logical_query(&mut self, mut query: Query) -> Result<LogicalPlan> {
        let found = rewrite::rewrite_query(self.catalog, &mut query, &mut self.next_id)?;
        self.register_placeholders(found).await?;
        self.register_versioned(&query)?;
        self.logical_statement(sqlparser::ast::Statement::Query(Box::new(query)))
            .await
    }

    /// The versioned tables of the query's event-time temporal joins, under their placeholder
    /// names (which carry the `AS OF` column).
    fn register_versioned<V: sqlparser::ast::Visit>(&mut self, query: &V) -> Result<()> {
        let mut names = vec![];
        let _ = sqlparser::ast::visit_relations(query, |name| {
            if let Some(n) = name.0.last().and_then(|p| p.as_ident())
                && n.value.starts_with(rewrite::VERSIONED_PREFIX)
            {
                names.push(n.value.clone());
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        for name in names {
            let Some((table, _)) = rewrite::versioned_parts(&name) else {
                continue;
            };
            if self.ctx.table_exist(name.as_str())? {
                continue;
            }
            let schema = self.catalog.table(table)?.schema.clone();
            self.ctx.register_table(
                TableReference::bare(name.as_str()),
                Arc::new(EmptyTable::new(schema)),
            )?;
        }
        Ok(())
    }

    async fn register_placeholders(&mut self, found: rewrite::Placeholders) -> Result<()> {
        self.register_windows(found.windows).await?;
        for m in found.matches {
            let input = Box::pin(self.logical_query(m.input.as_ref().clone())).await?;
            let spec = pattern::compile(&m, input.schema().as_arrow())?;
            let provider: Arc<dyn TableProvider> =
                Arc::new(EmptyTable::new(spec.output_schema.clone()));
            self.ctx
                .register_table(TableReference::bare(m.placeholder.as_str()), provider)?;
            self.matches.insert(m.placeholder.clone(), (spec, input));
        }
        Ok(())
    }

    async fn register_windows(&mut self, windows: Vec<WindowTvf>) -> Result<()> {
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

    async fn logical_statement(&self, stmt: sqlparser::ast::Statement) -> Result<LogicalPlan> {
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                stmt,
            )))
            .await
            .map_err(planning_error)?;
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .map_err(planning_error)?;
        let plan = simplify(plan)?;
        check_no_subqueries(&plan)?;
        Ok(plan)
    }

    fn phys(&self, expr: &DfExpr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        create_physical_expr(expr, schema, &self.props, &Default::default())
            .context(|| format!("planning expression {expr}"))
    }

    /// LogicalPlan → stream of operator specs. The one match to extend with new operators.
    fn build(&self, plan: &LogicalPlan) -> Result<Stream> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                if scan.projection.is_some() || !scan.filters.is_empty() || scan.fetch.is_some() {
                    return plan_err!("internal: unexpected pushed-down scan of {name}");
                }
                if let Some((w, input)) = self.windows.get(name) {
                    return self.window_assign(w, input, scan.projected_schema.as_arrow());
                }
                if let Some((spec, input)) = self.matches.get(name) {
                    return self.match_recognize(spec, input);
                }
                if name.starts_with(rewrite::LOOKUP_PREFIX)
                    || name.starts_with(rewrite::VERSIONED_PREFIX)
                {
                    return not_supported!(
                        "a lookup table (FOR SYSTEM_TIME AS OF) other than as the right side of a JOIN"
                    );
                }
                let table = self.catalog.table(name)?.clone();
                let mut ops = vec![];
                let mut time_attrs = vec![];
                let updating = table.reads_changelog();
                if !table.computed_exprs.is_empty() {
                    let mut exprs = table.computed_exprs.clone();
                    let mut schema = table.schema.clone();
                    if updating {
                        // The changelog's op column rides along after the computed columns.
                        exprs.push(Arc::new(PhysColumn::new(
                            crate::changelog::OP_COLUMN,
                            table.physical.fields().len(),
                        )));
                        schema = crate::changelog::with_op_field(&schema);
                    }
                    ops.push(OpSpec::new(ProjectSpec { exprs, schema }));
                }
                if let Some(wm) = &table.def.watermark {
                    let time_col = table.schema.index_of(&wm.column)?;
                    ops.push(OpSpec::new(WatermarkGenSpec {
                        time_col,
                        time_name: wm.column.clone(),
                        delay_ms: wm.delay_ms,
                    }));
                    time_attrs.push(wm.column.clone());
                }
                let upserts = table.reads_upserts();
                let keys = table
                    .def
                    .primary_key
                    .iter()
                    .map(|k| {
                        let i = table.schema.index_of(k)?;
                        Ok(Arc::new(PhysColumn::new(k, i)) as Arc<dyn PhysicalExpr>)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let schema = table.schema.clone();
                let mut s = Stream {
                    flow: Flow::Source { table, ops },
                    time_attrs,
                    window: None,
                    updating,
                };
                if upserts {
                    // Upserts (+U per value, -D per tombstone) to a full changelog, per key.
                    let spec = crate::operators::NormalizeSpec {
                        keys: keys.clone(),
                        schema,
                    };
                    s.stage(OpSpec::new(spec), keys);
                }
                Ok(s)
            }
            LogicalPlan::Projection(p) => {
                let mut s = self.build(&p.input)?;
                let in_schema = p.input.schema();
                let in_arrow = in_schema.as_arrow();
                let mut exprs = p
                    .expr
                    .iter()
                    .map(|e| self.phys(e, in_schema))
                    .collect::<Result<Vec<_>>>()?;
                let mut fields = p
                    .expr
                    .iter()
                    .zip(&exprs)
                    .zip(p.schema.fields())
                    .map(|((_, pe), f)| {
                        Ok(Field::new(
                            f.name(),
                            pe.data_type(in_arrow)?,
                            pe.nullable(in_arrow)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                // A column passed through (or renamed) keeps its time attribute.
                let mut attrs = vec![];
                for (e, f) in p.expr.iter().zip(p.schema.fields()) {
                    if let DfExpr::Column(c) = e.clone().unalias()
                        && s.time_attrs.contains(&c.name)
                    {
                        attrs.push(f.name().clone());
                    }
                }
                s.time_attrs = attrs;
                s.window = s.window.take().and_then(|(ws, we)| {
                    let renamed = |name: &str| {
                        p.expr.iter().zip(p.schema.fields()).find_map(|(e, f)| {
                            match e.clone().unalias() {
                                DfExpr::Column(c) if c.name == name => Some(f.name().clone()),
                                _ => None,
                            }
                        })
                    };
                    Some((renamed(&ws)?, renamed(&we)?))
                });
                // `SELECT *` (every column, in order, same names) is a no-op.
                let identity = exprs.len() == in_arrow.fields().len()
                    && exprs.iter().zip(&fields).enumerate().all(|(i, (e, f))| {
                        e.downcast_ref::<PhysColumn>()
                            .is_some_and(|c| c.index() == i)
                            && f.name() == in_arrow.field(i).name()
                    });
                if s.updating {
                    // The changelog's op column rides along after the selected columns.
                    exprs.push(Arc::new(PhysColumn::new(
                        crate::changelog::OP_COLUMN,
                        in_arrow.fields().len(),
                    )));
                    fields.push(crate::changelog::op_field());
                }
                if !identity {
                    s.push(OpSpec::new(ProjectSpec {
                        exprs,
                        schema: Arc::new(Schema::new(fields)),
                    }));
                }
                Ok(s)
            }
            LogicalPlan::Filter(f) => {
                let bound = stateful::row_number_bound(&f.predicate, &f.input);
                if bound.is_some() && stateful::window_below(&f.input).is_some() {
                    self.topn_bound.set(bound);
                }
                let mut s = self.build(&f.input)?;
                let predicate = self.phys(&f.predicate, f.input.schema())?;
                s.push(OpSpec::new(FilterSpec { predicate }));
                Ok(s)
            }
            LogicalPlan::SubqueryAlias(a) => self.build(&a.input),
            LogicalPlan::Aggregate(agg) => self.window_aggregate(agg),
            LogicalPlan::Limit(l) => {
                use datafusion::logical_expr::logical_plan::{FetchType, SkipType};
                let (Ok(SkipType::Literal(0)), Ok(FetchType::Literal(fetch))) =
                    (l.get_skip_type(), l.get_fetch_type())
                else {
                    return not_supported!("OFFSET, or a LIMIT that is not a constant");
                };
                let mut s = self.build(&l.input)?;
                if s.updating {
                    return not_supported!("LIMIT over an updating (changelog) result");
                }
                if let Some(fetch) = fetch {
                    s.stage(OpSpec::new(LimitSpec { fetch }), vec![])
                }
                Ok(s)
            }
            LogicalPlan::Dml(d) => self.build(&d.input),
            LogicalPlan::Sort(sort) => self.sort_by_time(sort),
            LogicalPlan::Join(j) => self.join(j),
            LogicalPlan::Union(u) => self.union_all(u),
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => {
                // SELECT DISTINCT: a GROUP BY every column with no aggregates; each new row is
                // emitted once (+I).
                let group: Vec<DfExpr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(DfExpr::Column)
                    .collect();
                let agg = Aggregate::try_new(input.clone(), group, vec![])?;
                self.group_aggregate(&agg)
            }
            LogicalPlan::Distinct(_) => not_supported!("SELECT DISTINCT ON"),
            LogicalPlan::Window(w) => {
                use datafusion::logical_expr::expr::WindowFunctionDefinition as Def;
                let aggregates_only = w.window_expr.iter().all(|e| {
                    matches!(e.clone().unalias(), DfExpr::WindowFunction(f)
                        if matches!(&f.fun, Def::AggregateUDF(_))
                            || matches!(&f.fun, Def::WindowUDF(u) if matches!(u.name(), "lag" | "lead")))
                });
                if aggregates_only {
                    self.over_aggregate(w)
                } else {
                    self.top_n(w, self.topn_bound.take())
                }
            }
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => self.values(plan),
            LogicalPlan::Unnest(u) => self.unnest(u),
            LogicalPlan::RecursiveQuery(_) => not_supported!("recursive queries"),
            other => not_supported!("{}", other.display()),
        }
    }

    /// `UNNEST(array)` in a SELECT list (or from a lateral UNNEST, see `lateral_unnest`): a
    /// row per element ([`crate::operators::UnnestSpec`]).
    fn unnest(&self, u: &datafusion::logical_expr::Unnest) -> Result<Stream> {
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
    fn match_recognize(
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
    fn lateral_unnest(&self, j: &datafusion::logical_expr::Join) -> Result<Option<Stream>> {
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
    fn union_all(&self, u: &datafusion::logical_expr::Union) -> Result<Stream> {
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

    /// `GROUPING SETS`, `ROLLUP` and `CUBE`: one aggregate per grouping set, each padded with
    /// NULL for the columns it does not group by and tagged with its grouping id (what
    /// `GROUPING()` reads), then a UNION ALL of them. Each set is planned as any GROUP BY:
    /// windowed sets (every set grouping by window_start and window_end) give an append-only
    /// result, the others an updating one.
    fn grouping_sets(
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
    fn values(&self, plan: &LogicalPlan) -> Result<Stream> {
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

    fn window_stream(&self, w: &WindowTvf, input: &LogicalPlan) -> Result<(Stream, usize)> {
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

    fn window_assign(&self, w: &WindowTvf, input: &LogicalPlan, schema: &Schema) -> Result<Stream> {
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
    fn window_aggregate(&self, agg: &Aggregate) -> Result<Stream> {
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
fn has_window_scan(
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

fn has_join(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Join(_)) || plan.inputs().iter().any(|i| has_join(i))
}

/// A DataFusion planning error, with the source position when DataFusion recorded one.
fn planning_error(e: datafusion::error::DataFusionError) -> Error {
    use datafusion::common::SchemaError;
    use datafusion::error::DataFusionError as E;
    let position = e
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| format!(" at Line: {}, Column: {}", s.start.line, s.start.column))
        .unwrap_or_default();
    // The cause, without DataFusion's wrappers ("Optimizer rule '...' failed", contexts).
    let root = e.find_root();
    let msg = match root {
        E::NotImplemented(m) => return Error::NotSupported(format!("{m}{position}")),
        E::Plan(m) | E::Execution(m) => m.clone(),
        E::SchemaError(se, _) => match se.as_ref() {
            SchemaError::DuplicateUnqualifiedField { name }
            | SchemaError::DuplicateQualifiedField { name, .. } => format!(
                "two columns of a result would both be named \"{name}\": name them apart with AS"
            ),
            SchemaError::FieldNotFound {
                field,
                valid_fields,
            } => {
                let mut valid: Vec<String> = valid_fields
                    .iter()
                    .map(|c| c.name.clone())
                    .filter(|n| !n.starts_with("__"))
                    .collect();
                valid.dedup();
                format!(
                    "no column named {} (columns: {})",
                    field.name,
                    valid.join(", ")
                )
            }
            SchemaError::AmbiguousReference { field } => format!(
                "column {} is ambiguous: qualify it with its table's name or alias",
                field.name
            ),
        },
        E::ArrowError(a, _) => a.to_string(),
        E::Internal(m) => format!("cannot plan this statement ({m})"),
        other => other.to_string(),
    };
    let msg = msg.strip_backtrace_text();
    if let Some(rest) = msg.strip_prefix("Invalid function '") {
        let name = rest.split('\'').next().unwrap_or_default();
        if FLINK_FUNCTIONS_MISSING.contains(&name) {
            return Error::NotSupported(format!(
                "function {} (a Flink built-in weir does not have yet){position}",
                name.to_uppercase()
            ));
        }
        return Error::Plan(format!("unknown function {name}{position}"));
    }
    if msg.contains("This feature is not implemented") {
        return Error::NotSupported(format!("{msg}{position}"));
    }
    Error::Plan(format!("{msg}{position}"))
}

/// Flink built-in functions weir does not have yet (an unknown function of this name is "not
/// supported yet", any other is unknown).
const FLINK_FUNCTIONS_MISSING: &[&str] = &[
    "current_row_timestamp",
    "unhex",
    "tumble_proctime",
    "hop_proctime",
    "session_proctime",
    "proctime_materialize",
    "uuid_bytes",
    "array_slice_flink",
    "elt",
    "printf",
    "instr",
    "url_decode",
    "url_encode",
];

/// DataFusion's messages without their backtrace and kind prefixes.
trait StripText {
    fn strip_backtrace_text(&self) -> String;
}

impl StripText for String {
    fn strip_backtrace_text(&self) -> String {
        let mut m = self.split("\n\nbacktrace").next().unwrap_or(self).trim();
        for prefix in [
            "Error during planning: ",
            "Execution error: ",
            "Schema error: ",
            "Arrow error: ",
            "Invalid argument error: ",
        ] {
            m = m.strip_prefix(prefix).unwrap_or(m);
        }
        m.to_string()
    }
}

/// A lateral subquery planned over `left`: its empty input becomes `left`, each projection
/// also carries `left`'s columns (first), and references to the outer row become columns.
/// `keep_empty` (a LEFT JOIN): the unnest keeps rows of empty or NULL arrays, marked by
/// DataFusion's `preserve_nulls` (which SQL's own UNNEST never sets).
fn lateralize(plan: &LogicalPlan, left: &LogicalPlan, keep_empty: bool) -> Result<LogicalPlan> {
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
