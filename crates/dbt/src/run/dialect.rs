//! Every SQL text whose spelling differs between the databases dbt runs on, in one place: how a view and a table
//! are (re)built, how an incremental model merges, how a seed's columns are typed.
//!
//! dbt puts these in overridable materialization macros; tripline writes them in Rust and keeps the same
//! statements dbt-postgres runs, so the SQL under `target/run/` reads as dbt users expect.

use crate::adapter::{RelationKind, RelationName, quote_if_needed, render_tripline_relation};

/// The SQL spoken by a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (dbt-postgres).
    Postgres,
    /// The embedded warehouse (DataFusion SQL with BigQuery-style DDL on Delta tables).
    Tripline,
}

/// How an incremental model adds its new rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrementalStrategy {
    /// Insert every new row.
    Append,
    /// Update rows whose key exists, insert the others.
    Merge,
    /// Delete rows whose key is among the new rows, then insert the new rows.
    DeleteInsert,
}

impl IncrementalStrategy {
    /// Read `incremental_strategy`; `None` means the adapter's default for the key.
    pub fn parse(text: Option<&str>, has_key: bool, dialect: Dialect) -> Result<Self, String> {
        match text.map(|t| t.trim().to_ascii_lowercase()) {
            None => Ok(match (has_key, dialect) {
                (false, _) => Self::Append,
                // dbt-postgres' default with a unique key; the warehouse's is merge (as BigQuery's).
                (true, Dialect::Postgres) => Self::DeleteInsert,
                (true, Dialect::Tripline) => Self::Merge,
            }),
            Some(t) if t == "append" => Ok(Self::Append),
            Some(t) if t == "merge" => Ok(Self::Merge),
            Some(t) if t == "delete+insert" => Ok(Self::DeleteInsert),
            Some(other) => Err(format!(
                "not supported yet: incremental_strategy `{other}` (tripline runs append, merge and delete+insert)"
            )),
        }
    }
}

impl Dialect {
    /// Quote an identifier.
    pub fn quote(self, identifier: &str) -> String {
        match self {
            Self::Postgres => format!("\"{}\"", identifier.replace('"', "\"\"")),
            Self::Tripline => quote_if_needed(identifier),
        }
    }

    /// A relation in SQL.
    pub fn relation(self, r: &RelationName) -> String {
        match self {
            Self::Postgres => {
                let mut out = String::new();
                if let Some(db) = &r.database {
                    out.push_str(&self.quote(db));
                    out.push('.');
                }
                out.push_str(&self.quote(&r.schema));
                out.push('.');
                out.push_str(&self.quote(&r.identifier));
                out
            }
            Self::Tripline => render_tripline_relation(r),
        }
    }

    /// Whether a model is rebuilt under a temporary name and swapped in (PostgreSQL, transactional DDL) or
    /// replaced in place (`CREATE OR REPLACE`, one atomic Delta commit).
    pub fn swaps_by_rename(self) -> bool {
        self == Self::Postgres
    }

    /// `create view <r> as (sql)` (PostgreSQL: under a temporary name first) or `CREATE OR REPLACE VIEW`.
    pub fn create_view(self, r: &RelationName, sql: &str) -> String {
        match self {
            Self::Postgres => format!("create view {} as (\n{}\n)", self.relation(r), sql.trim()),
            Self::Tripline => format!(
                "CREATE OR REPLACE VIEW {} AS\n{}",
                self.relation(r),
                sql.trim()
            ),
        }
    }

    /// `create table <r> as (sql)`; the warehouse honours BigQuery-style `partition_by`/`cluster_by` configs.
    pub fn create_table(
        self,
        r: &RelationName,
        sql: &str,
        partition_by: Option<&str>,
        cluster_by: &[String],
    ) -> String {
        match self {
            Self::Postgres => format!("create table {} as (\n{}\n)", self.relation(r), sql.trim()),
            Self::Tripline => {
                let mut layout = String::new();
                if let Some(p) = partition_by {
                    layout.push_str(&format!("\nPARTITION BY {p}"));
                }
                if !cluster_by.is_empty() {
                    layout.push_str(&format!("\nCLUSTER BY {}", cluster_by.join(", ")));
                }
                format!(
                    "CREATE OR REPLACE TABLE {}{layout} AS\n{}",
                    self.relation(r),
                    sql.trim()
                )
            }
        }
    }

    /// Drop a relation of the given kind if it exists.
    pub fn drop(self, r: &RelationName, kind: RelationKind) -> String {
        let what = match kind {
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
            _ => "table",
        };
        match self {
            Self::Postgres => format!("drop {what} if exists {} cascade", self.relation(r)),
            Self::Tripline => format!(
                "DROP {} IF EXISTS {}",
                what.to_ascii_uppercase(),
                self.relation(r)
            ),
        }
    }

    /// Rename a relation within its schema (PostgreSQL's swap; `alter table` renames views too).
    pub fn rename(self, from: &RelationName, to_identifier: &str) -> String {
        format!(
            "alter table {} rename to {}",
            self.relation(from),
            self.quote(to_identifier)
        )
    }

    /// Insert the rows of `source` into `target`, naming the columns.
    pub fn insert_from(
        self,
        target: &RelationName,
        source: &RelationName,
        columns: &[String],
    ) -> String {
        let cols = self.column_list(columns);
        format!(
            "insert into {} ({cols})\nselect {cols} from {}",
            self.relation(target),
            self.relation(source)
        )
    }

    /// Merge the rows of `source` into `target` on the key columns: update the matched rows, insert the rest.
    /// Without a key every row is inserted (dbt's merge on `false`).
    pub fn merge(
        self,
        target: &RelationName,
        source: &RelationName,
        key: &[String],
        columns: &[String],
    ) -> String {
        let on = if key.is_empty() {
            "false".to_string()
        } else {
            key.iter()
                .map(|k| {
                    format!(
                        "DBT_INTERNAL_DEST.{q} = DBT_INTERNAL_SOURCE.{q}",
                        q = self.quote(k)
                    )
                })
                .collect::<Vec<_>>()
                .join(" and ")
        };
        let set = columns
            .iter()
            .map(|c| format!("{q} = DBT_INTERNAL_SOURCE.{q}", q = self.quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let values = columns
            .iter()
            .map(|c| format!("DBT_INTERNAL_SOURCE.{}", self.quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let matched = if key.is_empty() {
            String::new()
        } else {
            format!("\nwhen matched then update set {set}")
        };
        format!(
            "merge into {} as DBT_INTERNAL_DEST\nusing {} as DBT_INTERNAL_SOURCE\non ({on}){matched}\n\
             when not matched then insert ({}) values ({values})",
            self.relation(target),
            self.relation(source),
            self.column_list(columns)
        )
    }

    /// Delete the rows of `target` whose key is among the rows of `source` (delete+insert's first half).
    pub fn delete_matching(
        self,
        target: &RelationName,
        source: &RelationName,
        key: &[String],
    ) -> String {
        let t = self.relation(target);
        let s = self.relation(source);
        match self {
            Self::Postgres if key.len() == 1 => format!(
                "delete from {t}\nwhere ({k}) in (select distinct {k} from {s})",
                k = self.quote(&key[0])
            ),
            Self::Postgres => format!(
                "delete from {t} as DBT_INTERNAL_DEST\nusing {s} as DBT_INTERNAL_SOURCE\nwhere {}",
                self.key_match(key)
            ),
            // The warehouse's DELETE takes plain predicates: a MERGE that deletes matched rows does it in one commit.
            Self::Tripline => format!(
                "MERGE INTO {t} AS DBT_INTERNAL_DEST\nUSING (SELECT DISTINCT {} FROM {s}) AS DBT_INTERNAL_SOURCE\n\
                 ON ({})\nWHEN MATCHED THEN DELETE",
                self.column_list(key),
                self.key_match(key)
            ),
        }
    }

    fn key_match(self, key: &[String]) -> String {
        key.iter()
            .map(|k| {
                format!(
                    "DBT_INTERNAL_DEST.{q} = DBT_INTERNAL_SOURCE.{q}",
                    q = self.quote(k)
                )
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// Columns as a comma-separated, quoted list.
    pub fn column_list(self, columns: &[String]) -> String {
        columns
            .iter()
            .map(|c| self.quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Add a column (PostgreSQL); the warehouse rebuilds the table instead (see [`Self::rebuild_with_columns`]).
    pub fn add_column(self, r: &RelationName, column: &str, data_type: &str) -> String {
        format!(
            "alter table {} add column {} {data_type}",
            self.relation(r),
            self.quote(column)
        )
    }

    /// Drop a column (PostgreSQL).
    pub fn drop_column(self, r: &RelationName, column: &str) -> String {
        format!(
            "alter table {} drop column {}",
            self.relation(r),
            self.quote(column)
        )
    }

    /// Rewrite a table with the given columns: kept ones as they are, new ones as typed nulls (the warehouse's
    /// way of changing a table's columns, in one commit).
    pub fn rebuild_with_columns(
        self,
        r: &RelationName,
        keep: &[String],
        add: &[(String, String)],
    ) -> String {
        let mut select: Vec<String> = keep.iter().map(|c| self.quote(c)).collect();
        for (name, data_type) in add {
            select.push(format!("cast(null as {data_type}) as {}", self.quote(name)));
        }
        format!(
            "CREATE OR REPLACE TABLE {rel} AS\nSELECT {} FROM {rel}",
            select.join(", "),
            rel = self.relation(r)
        )
    }

    /// The SQL type to declare for a column whose type the database reported as `reported` (PostgreSQL reports
    /// SQL types already; the warehouse reports Arrow types).
    pub fn sql_type(self, reported: &str) -> String {
        match self {
            Self::Postgres => reported.to_string(),
            Self::Tripline => arrow_type_as_sql(reported),
        }
    }

    /// The type of a seed column of the given kind.
    pub fn seed_type(self, kind: SeedType) -> &'static str {
        match (self, kind) {
            (_, SeedType::Integer) => "bigint",
            (Self::Postgres, SeedType::Number) => "numeric",
            (Self::Tripline, SeedType::Number) => "double",
            (_, SeedType::Boolean) => "boolean",
            (_, SeedType::Date) => "date",
            (Self::Postgres, SeedType::Timestamp) => "timestamp without time zone",
            (Self::Tripline, SeedType::Timestamp) => "timestamp",
            (Self::Postgres, SeedType::Text) => "text",
            (Self::Tripline, SeedType::Text) => "varchar",
        }
    }

    /// The current time as a timestamp without time zone.
    pub fn now(self) -> &'static str {
        match self {
            Self::Postgres => "now()::timestamp without time zone",
            Self::Tripline => "cast(now() as timestamp)",
        }
    }

    /// An md5 hash of text, as a string.
    pub fn md5(self, expr: &str) -> String {
        format!("md5({expr})")
    }

    /// Text concatenation of expressions.
    pub fn concat(self, parts: &[String]) -> String {
        match self {
            Self::Postgres => parts.join(" || "),
            Self::Tripline => format!("concat({})", parts.join(", ")),
        }
    }

    /// A cast to text.
    pub fn as_text(self, expr: &str) -> String {
        match self {
            Self::Postgres => format!("cast({expr} as text)"),
            Self::Tripline => format!("cast({expr} as varchar)"),
        }
    }

    /// `a is distinct from b`.
    pub fn distinct_from(self, a: &str, b: &str) -> String {
        format!("{a} is distinct from {b}")
    }
}

/// What a seed column's values are, inferred from the CSV as dbt (agate) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedType {
    /// Whole numbers.
    Integer,
    /// Decimal numbers.
    Number,
    /// `true`/`false`.
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD HH:MM:SS[.f]`.
    Timestamp,
    /// Anything else.
    Text,
}

/// An Arrow type as DESCRIBE prints it (`Int64`, `Utf8`, `Timestamp(Microsecond, None)`, `Decimal128(28, 6)`) as
/// the SQL type that creates it.
fn arrow_type_as_sql(arrow: &str) -> String {
    let t = arrow.trim();
    let simple = match t {
        "Int8" | "Int16" => Some("smallint"),
        "Int32" => Some("int"),
        "Int64" => Some("bigint"),
        "UInt8" | "UInt16" | "UInt32" | "UInt64" => Some("bigint"),
        "Float16" | "Float32" => Some("float"),
        "Float64" => Some("double"),
        "Boolean" => Some("boolean"),
        "Utf8" | "LargeUtf8" | "Utf8View" => Some("varchar"),
        "Date32" | "Date64" => Some("date"),
        _ => None,
    };
    if let Some(s) = simple {
        return s.to_string();
    }
    if t.starts_with("Timestamp") {
        return "timestamp".into();
    }
    if let Some(rest) = t
        .strip_prefix("Decimal128(")
        .or_else(|| t.strip_prefix("Decimal256("))
    {
        return format!("decimal({}", rest.replace(' ', ""));
    }
    "varchar".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_types_map_to_sql() {
        assert_eq!(arrow_type_as_sql("Decimal128(28, 6)"), "decimal(28,6)");
        assert_eq!(
            arrow_type_as_sql("Timestamp(Microsecond, None)"),
            "timestamp"
        );
        assert_eq!(arrow_type_as_sql("Int32"), "int");
    }

    #[test]
    fn merge_without_key_only_inserts() {
        let t = RelationName::new(None, "s", "t");
        let s = RelationName::new(None, "s", "t__dbt_tmp");
        let sql = Dialect::Tripline.merge(&t, &s, &[], &["a".into()]);
        assert!(
            sql.contains("on (false)") && !sql.contains("when matched"),
            "{sql}"
        );
    }
}
