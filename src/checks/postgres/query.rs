//! One monitoring statement, run the way the path to the server allows.
//!
//! On a direct connection (or through a session pooler) each statement is
//! prepared once per session and then only bound and executed. Behind a
//! transaction pooler (`pooler: transaction`) consecutive transactions may
//! run on different server connections, where a named prepared statement
//! does not exist: there each run sends the SQL as the unnamed statement
//! with its parameter types (`query_typed`), one round trip and nothing
//! left on the server.

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

/// A statement with its parameter types, prepared unless `named` was false.
pub(super) struct Query {
    sql: String,
    types: Vec<Type>,
    prepared: Option<Statement>,
}

impl Query {
    /// Prepare `sql` (with parameters of `types`) on `client` when `named`;
    /// otherwise keep the text for unnamed execution.
    pub(super) async fn new(
        client: &Client,
        sql: impl Into<String>,
        types: &[Type],
        named: bool,
    ) -> Result<Self, tokio_postgres::Error> {
        let sql = sql.into();
        let prepared = if named {
            Some(client.prepare_typed(&sql, types).await?)
        } else {
            None
        };
        Ok(Self {
            sql,
            types: types.to_vec(),
            prepared,
        })
    }

    /// Every row of the statement.
    pub(super) async fn rows(
        &self,
        c: &Client,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match &self.prepared {
            Some(statement) => c.query(statement, params).await,
            None => {
                let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
                    .iter()
                    .zip(&self.types)
                    .map(|(p, t)| (*p, t.clone()))
                    .collect();
                c.query_typed(&self.sql, &typed).await
            }
        }
    }

    /// The first row of a statement that returns one (an aggregate without
    /// GROUP BY); `None` if it returned none.
    pub(super) async fn first(
        &self,
        c: &Client,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        Ok(self.rows(c, params).await?.into_iter().next())
    }
}
