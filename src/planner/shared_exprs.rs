//! Expressions a filter and the projection above it share, computed once.
//!
//! `SELECT CASE ... ELSE f(x) END FROM t WHERE f(x) IS NOT NULL OR ...` evaluates `f(x)` in the
//! filter for every row and again in the projection for the rows that pass. When a function
//! call is evaluated for every row by the filter anyway (it is not under the right side of an
//! AND or OR, a CASE branch, or a short-circuiting function's later arguments), it is
//! computed once before the filter as an extra column, and both the filter and the projection
//! read that column. Computing it for every row is then no more than the filter already did,
//! and cannot raise an error the query would not raise.
//!
//! The rewrite is logical (`Projection(Filter(input))` becomes
//! `Projection'(Filter'(Projection(input, shared)))`), so the rest of planning is unchanged.

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{
    BinaryExpr, Expr as DfExpr, Filter, LogicalPlan, Operator, Projection, Volatility,
};

/// Prefix of the columns holding shared expressions.
const PREFIX: &str = "__weir_shared_";

/// `p` with the function calls its filter input evaluates for every row and `p` also uses
/// computed once; None when they share none (or the input is not a filter).
pub(super) fn share_filter_exprs(p: &Projection) -> Option<LogicalPlan> {
    let LogicalPlan::Filter(f) = p.input.as_ref() else {
        return None;
    };
    let mut candidates = vec![];
    always_evaluated(&f.predicate, &mut candidates);
    let mut exprs: Vec<DfExpr> = p.expr.clone();
    let mut predicate = f.predicate.clone();
    let mut shared: Vec<DfExpr> = vec![];
    for c in candidates {
        if shared.contains(&c) || !exprs.iter().any(|e| contains(e, &c)) {
            continue;
        }
        let column = DfExpr::Column(Column::new_unqualified(format!("{PREFIX}{}", shared.len())));
        exprs = exprs
            .into_iter()
            .map(|e| replace(e, &c, &column))
            .collect::<Option<_>>()?;
        predicate = replace(predicate, &c, &column)?;
        shared.push(c);
    }
    if shared.is_empty() {
        return None;
    }
    let input = f.input.clone();
    // The input's columns that the filter or the projection still read.
    let used: std::collections::HashSet<&Column> = exprs
        .iter()
        .chain([&predicate])
        .flat_map(|e| e.column_refs())
        .collect();
    let mut below: Vec<DfExpr> = (input.schema().columns().into_iter())
        .filter(|c| used.contains(c))
        .map(DfExpr::Column)
        .collect();
    below.extend(
        shared
            .into_iter()
            .enumerate()
            .map(|(i, e)| e.alias(format!("{PREFIX}{i}"))),
    );
    let below = Projection::try_new(below, input).ok()?;
    let filter = Filter::try_new(predicate, Arc::new(LogicalPlan::Projection(below))).ok()?;
    // Each output column keeps its name and qualifier.
    let exprs = exprs
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let (q, field) = p.schema.qualified_field(i);
            e.unalias().alias_qualified(q.cloned(), field.name())
        })
        .collect();
    let top = Projection::try_new(exprs, Arc::new(LogicalPlan::Filter(filter))).ok()?;
    let same = top.schema.fields().len() == p.schema.fields().len()
        && (0..p.schema.fields().len()).all(|i| {
            let (qa, fa) = top.schema.qualified_field(i);
            let (qb, fb) = p.schema.qualified_field(i);
            qa == qb && fa.name() == fb.name() && fa.data_type() == fb.data_type()
        });
    same.then_some(LogicalPlan::Projection(top))
}

/// The function calls of `e` evaluated for every row, outermost first.
fn always_evaluated(e: &DfExpr, out: &mut Vec<DfExpr>) {
    match e {
        DfExpr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And | Operator::Or,
            ..
        }) => always_evaluated(left, out),
        DfExpr::Case(c) => {
            if let Some(x) = &c.expr {
                always_evaluated(x, out);
            } else if let Some((when, _)) = c.when_then_expr.first() {
                always_evaluated(when, out);
            }
        }
        DfExpr::ScalarFunction(f) => {
            if f.func.signature().volatility != Volatility::Volatile && !f.args.is_empty() {
                out.push(e.clone());
            }
            let args = if f.func.short_circuits() {
                &f.args[..f.args.len().min(1)]
            } else {
                &f.args[..]
            };
            args.iter().for_each(|a| always_evaluated(a, out));
        }
        DfExpr::Alias(_)
        | DfExpr::Not(_)
        | DfExpr::IsNull(_)
        | DfExpr::IsNotNull(_)
        | DfExpr::IsTrue(_)
        | DfExpr::IsFalse(_)
        | DfExpr::IsNotTrue(_)
        | DfExpr::IsNotFalse(_)
        | DfExpr::Negative(_)
        | DfExpr::Cast(_)
        | DfExpr::TryCast(_)
        | DfExpr::BinaryExpr(_)
        | DfExpr::Like(_)
        | DfExpr::SimilarTo(_)
        | DfExpr::Between(_)
        | DfExpr::InList(_) => {
            let _ = e.apply_children(|c| {
                always_evaluated(c, out);
                Ok(TreeNodeRecursion::Continue)
            });
        }
        _ => {}
    }
}

/// Whether `e` holds `part`.
fn contains(e: &DfExpr, part: &DfExpr) -> bool {
    let mut found = false;
    let _ = e.apply(|x| {
        found = x == part;
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// `e` with every `part` replaced by `by`.
fn replace(e: DfExpr, part: &DfExpr, by: &DfExpr) -> Option<DfExpr> {
    e.transform_down(|x| {
        Ok(if &x == part {
            Transformed::new(by.clone(), true, TreeNodeRecursion::Jump)
        } else {
            Transformed::no(x)
        })
    })
    .ok()
    .map(|t| t.data)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::empty::EmptyTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// The shared columns of `sql`'s top projection (None: nothing shared).
    fn shared(sql: &str) -> Option<Vec<String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        ctx.register_table("t", Arc::new(EmptyTable::new(schema)))
            .expect("registers");
        let plan = rt
            .block_on(ctx.sql(sql))
            .expect("plans")
            .into_unoptimized_plan();
        let LogicalPlan::Projection(p) = plan else {
            panic!("not a projection: {plan}")
        };
        let out = share_filter_exprs(&p)?;
        let LogicalPlan::Projection(top) = &out else {
            panic!("not a projection")
        };
        let LogicalPlan::Filter(f) = top.input.as_ref() else {
            panic!("no filter")
        };
        let LogicalPlan::Projection(below) = f.input.as_ref() else {
            panic!("no projection below")
        };
        assert_eq!(top.schema, p.schema, "same output");
        Some(
            below
                .expr
                .iter()
                .filter_map(|e| match e {
                    DfExpr::Alias(a) => Some(format!("{}", a.expr)),
                    _ => None,
                })
                .collect(),
        )
    }

    #[test]
    fn a_call_the_filter_always_makes_is_shared() {
        assert_eq!(
            shared(
                "SELECT CASE WHEN lower(s) = 'a' THEN '0' ELSE upper(s) END AS x FROM t \
                 WHERE upper(s) IS NOT NULL OR lower(s) = 'b'"
            ),
            Some(vec!["upper(t.s)".to_string()])
        );
        // Only what the projection also uses; nested calls once, outermost.
        assert_eq!(
            shared("SELECT length(upper(s)) AS x, n FROM t WHERE length(upper(s)) > 2"),
            Some(vec!["character_length(upper(t.s))".to_string()])
        );
        assert_eq!(shared("SELECT n FROM t WHERE upper(s) = 'A'"), None);
    }

    /// A call the filter makes only for some rows (a CASE branch, the right side of AND or
    /// OR) is not made for every row.
    #[test]
    fn a_call_the_filter_makes_only_for_some_rows_is_not() {
        for sql in [
            "SELECT upper(s) AS x FROM t WHERE CASE WHEN n > 0 THEN upper(s) = 'A' ELSE false END",
            "SELECT upper(s) AS x FROM t WHERE n > 0 AND upper(s) = 'A'",
            "SELECT upper(s) AS x FROM t WHERE n > 0 OR upper(s) = 'A'",
            "SELECT upper(s) AS x FROM t WHERE coalesce(s, upper(s)) = 'A'",
        ] {
            assert_eq!(shared(sql), None, "{sql}");
        }
    }
}
