//! The planner: a statement becomes a DataFusion logical plan (after weir's AST rewrites),
//! and the logical plan becomes a [`Pipeline`] of operator specs — one `match` in
//! [`Planner::build`] to extend.
//!
//! DataFusion plans and type-checks the SQL (`SqlToRel` plus its analyzer); weir then walks the
//! plan bottom-up. Stateless nodes (projection, filter) become DataFusion physical expressions
//! evaluated on batches; an aggregation over a window placeholder becomes a windowed
//! aggregation operator whose aggregates are DataFusion's. Plans weir cannot run continuously
//! fail here with "not supported yet: ...", never at run time with wrong rows.
//!
//! By concern: [`rewrite`] (AST rewrites into placeholders), `windows` (window TVFs, group
//! windows, time zones), `stateful` (joins, group aggregates, OVER, Top-N), `relational`
//! (UNNEST, UNION ALL, GROUPING SETS, VALUES, MATCH_RECOGNIZE's stage), [`pattern`]
//! (MATCH_RECOGNIZE's clauses), `explain` and `errors` (messages in the user's terms); this
//! file holds the planner itself and the one `match` over logical plans.

mod errors;
mod explain;
pub mod pattern;
mod relational;
pub mod rewrite;
mod shared_exprs;
mod stateful;
mod windows;

use errors::planning_error;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::empty::EmptyTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::ExecutionProps;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Aggregate, Expr as DfExpr, LogicalPlan, TableScan};
use datafusion::physical_expr::expressions::Column as PhysColumn;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::prelude::SessionConfig;
use sqlparser::ast::Query;

pub use crate::graph::{Exchange, Flow, Input, Pipeline, Stage};
pub use rewrite::WindowTvf;

use crate::error::Context;
use crate::operators::{FilterSpec, LimitSpec, OpSpec, ProjectSpec, WatermarkGenSpec};
use crate::sql::catalog::Table;
use crate::sql::{Catalog, Statement};
use crate::{Result, not_supported, plan_err};

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
    /// What the plan being built reads of its joins' outputs ([`JoinUse`]).
    join_use: JoinUse,
}

/// Which joins of a plan may drop columns before they store rows, and which columns anything
/// in the plan names. A join's output column that no expression of the plan names (by its
/// bare name, whatever the qualifier) is not read, provided the join's rows reach a projection
/// or an aggregate (through filters, sorts, limits, aliases, OVER windows and other joins)
/// before anything that reads whole rows: a sink, DISTINCT, UNION, or an operator weir adds.
#[derive(Default)]
struct JoinUse {
    /// The joins (by address in the plan) whose unnamed columns are not read.
    prunable: std::collections::HashSet<usize>,
    /// Every column name an expression of the plan (or of its subqueries) refers to.
    named: std::collections::HashSet<String>,
    /// The table scans (by address in the plan or in a window TVF's input) whose rows reach a
    /// projection or an aggregate the same way: their sources need not decode the columns no
    /// expression names ([`Planner::read_columns`]).
    scans: std::collections::HashSet<usize>,
}

impl JoinUse {
    fn of(plan: &LogicalPlan, windows: &HashMap<String, (WindowTvf, LogicalPlan)>) -> Self {
        let mut u = Self::default();
        u.visit(plan, false, windows);
        u
    }

    /// `read_by_projection`: the nearest node above that is not a pass-through is a
    /// projection or an aggregate (which name every column they read).
    fn visit(
        &mut self,
        plan: &LogicalPlan,
        read_by_projection: bool,
        windows: &HashMap<String, (WindowTvf, LogicalPlan)>,
    ) {
        use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
        // A projection that only passes columns on under their names (`SELECT *`, a window
        // TVF's `TABLE t`) reads nothing itself when what is above names what it reads.
        let passes_on = read_by_projection
            && matches!(plan, LogicalPlan::Projection(p) if p.expr.iter().zip(p.schema.fields())
                .all(|(e, f)| matches!(e, DfExpr::Column(c) if &c.name == f.name())));
        for e in plan.expressions().iter().filter(|_| !passes_on) {
            let _ = e.apply(|x| {
                match x {
                    DfExpr::Column(c) => {
                        self.named.insert(c.name.clone());
                    }
                    DfExpr::OuterReferenceColumn(_, c) => {
                        self.named.insert(c.name.clone());
                    }
                    DfExpr::ScalarSubquery(q) => self.visit(&q.subquery, false, windows),
                    DfExpr::Exists(q) => self.visit(&q.subquery.subquery, false, windows),
                    DfExpr::InSubquery(q) => self.visit(&q.subquery.subquery, false, windows),
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        let below = match plan {
            LogicalPlan::Join(j) => {
                if read_by_projection {
                    self.prunable
                        .insert(j as *const datafusion::logical_expr::Join as usize);
                }
                read_by_projection
            }
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Window(_) => read_by_projection,
            LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) => true,
            LogicalPlan::TableScan(scan) => {
                // A window TVF passes its input's columns on and reads its time column (and a
                // session window's partition columns) itself.
                if let Some((w, input)) = windows.get(scan.table_name.table()) {
                    self.named.insert(w.time_col.clone());
                    self.named.extend(w.partition_by.iter().flatten().cloned());
                    self.visit(input, read_by_projection, windows);
                } else if read_by_projection {
                    self.scans.insert(scan as *const TableScan as usize);
                }
                false
            }
            _ => false,
        };
        for input in plan.inputs() {
            self.visit(input, below, windows);
        }
    }
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
            join_use: JoinUse::default(),
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
        self.join_use = JoinUse::of(&plan, &self.windows);
        let stream = self.build(&plan)?;
        self.join_use = JoinUse::default();
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
            also: vec![],
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
        null_unneeded(s, schema, &needed, true)
    }

    /// Rewrite and plan a query AST into an analyzed DataFusion logical plan.
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

    /// The physical columns of `table` that a prunable scan of it reads ([`JoinUse::scans`]):
    /// those an expression of the plan names, the watermark's column, the key, and the
    /// inputs of those of its computed columns; NOT NULL and metadata columns are always read.
    /// None when that is every column, or when whole rows may leave the job (a changelog
    /// source, a late-data table).
    fn read_columns(&self, table: &Table) -> Option<Arc<[bool]>> {
        use datafusion::physical_expr::utils::collect_columns;
        if table.reads_changelog() || table.option("late-data.table").is_some() {
            return None;
        }
        let physical = table.physical.fields().len();
        let mut read: Vec<bool> = table
            .def
            .columns
            .iter()
            .map(|c| !c.nullable || c.metadata.is_some())
            .collect();
        if read.len() != physical {
            return None;
        }
        let wm = table.def.watermark.as_ref().map(|w| w.column.as_str());
        for (j, f) in table.schema.fields().iter().enumerate() {
            let name = f.name().as_str();
            if !(self.join_use.named.contains(name)
                || wm == Some(name)
                || table.def.primary_key.iter().any(|k| k == name))
            {
                continue;
            }
            let inputs: Vec<usize> = match table.computed_exprs.get(j) {
                Some(e) => collect_columns(e).iter().map(|c| c.index()).collect(),
                None => vec![j],
            };
            for i in inputs {
                *read.get_mut(i)? = true;
            }
        }
        (!read.iter().all(|r| *r)).then(|| read.into())
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
                let mut table = self.catalog.table(name)?.clone();
                if self
                    .join_use
                    .scans
                    .contains(&(scan as *const TableScan as usize))
                {
                    table.read = self.read_columns(&table);
                }
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
                if let LogicalPlan::Filter(f) = p.input.as_ref()
                    && stateful::window_below(&f.input).is_none()
                    && let Some(shared) = shared_exprs::share_filter_exprs(p)
                {
                    return self.build(&shared);
                }
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
            LogicalPlan::SubqueryAlias(a)
                if a.alias.table().starts_with(rewrite::SET_ALL_PREFIX) =>
            {
                self.set_all(a)
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
}

/// Replace the columns of `s` (rows of `schema`) outside `needed` with NULLs of their type, so
/// an exchange does not copy them and state does not keep them; the schema, and so every
/// column index, stays. A NOT NULL column is nulled only when `relax` (nothing downstream
/// checks the declared nullability: the operator does not output the column), and kept
/// otherwise.
fn null_unneeded(
    s: &mut Stream,
    schema: &Schema,
    needed: &std::collections::HashSet<usize>,
    relax: bool,
) -> Result<()> {
    let keep = |i: usize, f: &Field| needed.contains(&i) || (!relax && !f.is_nullable());
    if schema.fields().iter().enumerate().all(|(i, f)| keep(i, f)) {
        return Ok(());
    }
    let mut exprs: Vec<Arc<dyn PhysicalExpr>> = vec![];
    let mut fields = vec![];
    for (i, f) in schema.fields().iter().enumerate() {
        if keep(i, f) {
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

fn has_join(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Join(_)) || plan.inputs().iter().any(|i| has_join(i))
}
