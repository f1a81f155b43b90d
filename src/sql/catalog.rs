//! The catalog: tables (with their schemas and connector options), views, and job settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};

use super::statement::{TableDef, ViewDef};
use crate::{Error, Result, plan_err};

/// A table known to the catalog.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its definition.
    pub def: TableDef,
    /// Arrow schema of all its columns as SQL sees them (physical and computed, in order).
    pub schema: SchemaRef,
    /// Arrow schema of the physical columns only (what connectors read and write).
    pub physical: SchemaRef,
    /// With computed columns: one expression per column of `schema`, over the physical columns
    /// (planned once, at CREATE TABLE).
    pub computed_exprs: Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    /// The rows of an inline `VALUES` table (connector `values`), evaluated at planning.
    pub values: Option<Arc<datafusion::arrow::record_batch::RecordBatch>>,
    /// Which physical columns a job reads (set by the planner on its copy of the table; None:
    /// every column). A source may leave the others NULL instead of decoding them.
    pub(crate) read: Option<Arc<[bool]>>,
}

impl Table {
    /// Validate a definition without computed columns and build its schema.
    pub fn new(def: TableDef) -> Result<Self> {
        if !def.computed.is_empty() {
            return plan_err!(
                "internal: table {} has computed columns whose types are not resolved",
                def.name
            );
        }
        Self::with_computed(def, vec![], vec![])
    }

    /// Validate a definition, given the fields of its computed columns (in their order) and the
    /// expressions of all its columns over the physical ones.
    pub fn with_computed(
        def: TableDef,
        computed: Vec<Field>,
        computed_exprs: Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    ) -> Result<Self> {
        let physical = Arc::new(Schema::new(
            def.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
                .collect::<Vec<_>>(),
        ));
        let mut fields: Vec<Field> = physical
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (c, f) in def.computed.iter().zip(computed) {
            fields.insert(c.position.min(fields.len()), f);
        }
        let schema = Arc::new(Schema::new(fields));
        if let Some(wm) = &def.watermark {
            let Ok(field) = schema.field_with_name(&wm.column) else {
                return plan_err!(
                    "WATERMARK FOR {}: table {} has no such column",
                    wm.column,
                    def.name
                );
            };
            if !matches!(
                field.data_type(),
                datafusion::arrow::datatypes::DataType::Timestamp(_, _)
            ) {
                return plan_err!(
                    "WATERMARK FOR {}: the event-time column must be TIMESTAMP(3) or TIMESTAMP_LTZ(3), not {}",
                    wm.column,
                    super::types::display_type(field.data_type())
                );
            }
        }
        for p in &def.partitioned_by {
            if schema.field_with_name(p).is_err() {
                return plan_err!("PARTITIONED BY {p}: table {} has no such column", def.name);
            }
        }
        if !def.options.contains_key("connector") {
            return plan_err!(
                "table {} needs WITH ('connector' = ...): filesystem, nexmark, print, blackhole or push",
                def.name
            );
        }
        Ok(Self {
            def,
            schema,
            physical,
            computed_exprs,
            values: None,
            read: None,
        })
    }

    /// The schema with the column names as declared (for matching fields in data files).
    pub fn declared_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.def
                .columns
                .iter()
                .map(|c| Field::new(&c.declared, c.data_type.clone(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// The payload's columns (all physical columns but metadata ones) under their declared
    /// names, and their positions among the physical columns.
    pub fn payload_schema(&self) -> (SchemaRef, Vec<usize>) {
        let (idx, fields): (Vec<usize>, Vec<Field>) = self
            .def
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.metadata.is_none())
            .map(|(i, c)| (i, Field::new(&c.declared, c.data_type.clone(), c.nullable)))
            .unzip();
        (Arc::new(Schema::new(fields)), idx)
    }

    /// Metadata columns: (position among the physical columns, metadata key).
    pub fn metadata_columns(&self) -> Vec<(usize, &str)> {
        self.def
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.metadata.as_ref().map(|m| (i, m.key.as_str())))
            .collect()
    }

    /// Fail if the table declares metadata columns: `connector` has none.
    pub fn reject_metadata(&self, connector: &str) -> Result<()> {
        match self.def.columns.iter().find(|c| c.metadata.is_some()) {
            None => Ok(()),
            Some(c) => plan_err!(
                "table {}: column {} is a METADATA column, which the {connector} connector does not provide",
                self.def.name,
                c.declared
            ),
        }
    }

    /// The declared spelling of column `name`.
    pub fn declared_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.def
            .columns
            .iter()
            .find(|c| c.name == name)
            .map_or(name, |c| c.declared.as_str())
    }

    /// The value of option `key`, if set.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.def.options.get(key).map(String::as_str)
    }

    /// Whether physical column `i` is read by the job (see [`Table::read`]).
    pub(crate) fn reads_column(&self, i: usize) -> bool {
        self.read
            .as_ref()
            .is_none_or(|r| r.get(i).copied().unwrap_or(true))
    }

    /// The connector name.
    pub fn connector(&self) -> &str {
        self.option("connector").unwrap_or_default()
    }

    /// Whether reading the table gives a changelog (format `debezium-json`, or an
    /// `upsert-kafka` table): its rows carry the op column of [`crate::changelog`].
    pub fn reads_changelog(&self) -> bool {
        self.reads_upserts()
            || self
                .option("format")
                .is_some_and(|f| f.eq_ignore_ascii_case("debezium-json"))
    }

    /// Whether reading the table gives upserts (`upsert-kafka`): each row the new value of
    /// its primary key (`+U`), or a delete of it (`-D`).
    pub fn reads_upserts(&self) -> bool {
        self.connector() == "upsert-kafka"
    }

    /// The schema of the batches its sources read: the physical columns, then the op column
    /// when it [`Table::reads_changelog`].
    pub fn read_schema(&self) -> SchemaRef {
        if self.reads_changelog() {
            crate::changelog::with_op_field(&self.physical)
        } else {
            self.physical.clone()
        }
    }
}

/// Tables, views and settings of one engine.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Tables by normalised name.
    pub tables: BTreeMap<String, Table>,
    /// Views by normalised name.
    pub views: BTreeMap<String, ViewDef>,
    /// `SET` options.
    pub settings: BTreeMap<String, String>,
    /// User-defined scalar functions (`Engine::register_udf`), usable in any query.
    pub udfs: Vec<datafusion::logical_expr::ScalarUDF>,
    /// User-defined aggregate functions (`Engine::register_udaf`).
    pub udafs: Vec<datafusion::logical_expr::AggregateUDF>,
}

impl Catalog {
    /// Add a table. Fails if the name is taken, unless `IF NOT EXISTS`.
    pub fn create_table(&mut self, def: TableDef) -> Result<bool> {
        self.create_table_with(def, vec![], vec![])
    }

    /// Add a table whose computed columns have these fields and expressions.
    pub fn create_table_with(
        &mut self,
        def: TableDef,
        computed: Vec<Field>,
        computed_exprs: Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    ) -> Result<bool> {
        if self.tables.contains_key(&def.name) || self.views.contains_key(&def.name) {
            if def.if_not_exists {
                return Ok(false);
            }
            return plan_err!("table or view {} already exists", def.name);
        }
        let table = Table::with_computed(def, computed, computed_exprs)?;
        self.tables.insert(table.def.name.clone(), table);
        Ok(true)
    }

    /// Add a view.
    pub fn create_view(&mut self, def: ViewDef) -> Result<bool> {
        if self.tables.contains_key(&def.name) || self.views.contains_key(&def.name) {
            if def.if_not_exists {
                return Ok(false);
            }
            return plan_err!("table or view {} already exists", def.name);
        }
        self.views.insert(def.name.clone(), def);
        Ok(true)
    }

    /// Remove a table or view.
    pub fn drop_object(&mut self, name: &str, view: bool, if_exists: bool) -> Result<()> {
        let removed = if view {
            self.views.remove(name).is_some()
        } else {
            self.tables.remove(name).is_some()
        };
        if !removed && !if_exists {
            return plan_err!(
                "{} {name} does not exist",
                if view { "view" } else { "table" }
            );
        }
        Ok(())
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Result<&Table> {
        self.tables
            .get(name)
            .ok_or_else(|| Error::Plan(format!("table {name} does not exist")))
    }

    /// A setting, or the default.
    pub fn setting<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.settings
            .get(key)
            .map(String::as_str)
            .unwrap_or(default)
    }
}
