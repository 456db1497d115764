//! A dataset of the catalog whose tables open at their first read.
//!
//! Opening a table costs I/O: a Delta table replays its log (hundreds of commits for a table written a day at a
//! time), an external table reads a footer of its files for the schema, a view plans its query. A statement reads a
//! few tables of the lake, so the warehouse lists every table when it opens (names and layouts only, a few small
//! files) and opens each one when a statement first names it. DataFusion resolves a statement's tables through the
//! async [`SchemaProvider::table`] before it plans, so the first read is exactly where that happens; a view's
//! query opens the tables under it the same way when the view itself is opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, exec_err};
use tokio::sync::OnceCell;

use crate::catalog::TableKind;
use crate::{TableName, Warehouse};

type Opened = Option<Arc<dyn TableProvider>>;

/// A listed table not opened yet: its kind, and the cell its first reader opens it in.
type Unopened = (TableKind, Arc<OnceCell<Opened>>);

/// One dataset (`warehouse/<dataset>/`): the tables opened so far and those listed but not opened yet.
pub(crate) struct LakeDataset {
    dataset: String,
    opened: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
    /// Listed tables not opened yet, each with the cell its first reader opens it in (later readers of the same
    /// table wait for that one rather than open it again).
    unopened: Mutex<HashMap<String, Unopened>>,
    /// The warehouse the tables open through; weak, so the catalog does not keep the warehouse alive.
    opener: Weak<Warehouse>,
}

impl std::fmt::Debug for LakeDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeDataset")
            .field("dataset", &self.dataset)
            .field("opened", &self.opened.read().expect("lock").len())
            .field("unopened", &self.unopened.lock().expect("lock").len())
            .finish()
    }
}

impl LakeDataset {
    pub(crate) fn new(dataset: &str, opener: Weak<Warehouse>) -> Self {
        Self {
            dataset: dataset.to_string(),
            opened: Default::default(),
            unopened: Default::default(),
            opener,
        }
    }

    /// Note a table of the lake, to be opened when a statement first reads it.
    pub(crate) fn add_unopened(&self, table: &str, kind: TableKind) {
        if self.opened.read().expect("lock").contains_key(table) {
            return;
        }
        self.unopened
            .lock()
            .expect("lock")
            .insert(table.to_string(), (kind, Arc::new(OnceCell::new())));
    }

    async fn open(&self, table: &str, kind: TableKind) -> Result<Opened, DataFusionError> {
        let Some(warehouse) = self.opener.upgrade() else {
            return exec_err!("{}.{table}: the warehouse is closed", self.dataset);
        };
        let name = TableName {
            dataset: self.dataset.clone(),
            table: table.to_string(),
        };
        warehouse
            .open_table(&name, kind)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

#[async_trait]
impl SchemaProvider for LakeDataset {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.opened.read().expect("lock").keys().cloned().collect();
        names.extend(self.unopened.lock().expect("lock").keys().cloned());
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Opened, DataFusionError> {
        if let Some(table) = self.opened.read().expect("lock").get(name) {
            return Ok(Some(Arc::clone(table)));
        }
        let Some((kind, cell)) = self.unopened.lock().expect("lock").get(name).cloned() else {
            return Ok(None);
        };
        // A failed open leaves the cell empty: the next read tries again (the files may have been fixed).
        let opened = cell
            .get_or_try_init(|| self.open(name, kind))
            .await?
            .clone();
        // Move it to the opened tables, unless the table was registered or dropped while it opened: then what is
        // registered now is the answer.
        let mut unopened = self.unopened.lock().expect("lock");
        match unopened.get(name) {
            Some((_, current)) if Arc::ptr_eq(current, &cell) => {
                unopened.remove(name);
                if let Some(table) = &opened {
                    self.opened
                        .write()
                        .expect("lock")
                        .insert(name.to_string(), Arc::clone(table));
                }
                Ok(opened)
            }
            _ => Ok(self.opened.read().expect("lock").get(name).cloned()),
        }
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> datafusion::common::Result<Opened> {
        if self.table_exist(&name) {
            return exec_err!("The table {name} already exists");
        }
        Ok(self.opened.write().expect("lock").insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> datafusion::common::Result<Opened> {
        self.unopened.lock().expect("lock").remove(name);
        Ok(self.opened.write().expect("lock").remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.opened.read().expect("lock").contains_key(name)
            || self.unopened.lock().expect("lock").contains_key(name)
    }
}
