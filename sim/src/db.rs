//! Postgres access: creating the node's databases and schemas, short-lived connections, and
//! the health check behind `readyz`.
//!
//! Every request opens its own connection on purpose: the simulator then holds no session
//! open between calls, so a test (or the daemon) can drop, restore or rename a database while
//! the node runs, and the next call sees exactly what is in Postgres.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::error::SimError;

/// Tables of the validator app database (`readyz` checks they all exist).
pub const VALIDATOR_TABLES: &[&str] = &["validator_config", "users"];
/// Tables of the participant database (`readyz` checks they all exist).
pub const PARTICIPANT_TABLES: &[&str] = &[
    "participant_identity",
    "contracts",
    "party_balances",
    "ledger_users",
];
/// Tables of the SV database.
pub const SV_TABLES: &[&str] = &["sv_participants", "sv_balances"];

const VALIDATOR_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS validator_config (key text PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name text PRIMARY KEY,
    party_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"#;

const PARTICIPANT_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS participant_identity (
    id text PRIMARY KEY,
    keys jsonb NOT NULL,
    authorized_store_snapshot text NOT NULL,
    participant_id text NOT NULL,
    node_instance text NOT NULL,
    version text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS contracts (
    contract_id text PRIMARY KEY,
    template_id text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS party_balances (
    party_id text PRIMARY KEY,
    effective_unlocked_qty numeric(38,10) NOT NULL DEFAULT 0,
    effective_locked_qty numeric(38,10) NOT NULL DEFAULT 0,
    total_holding_fees numeric(38,10) NOT NULL DEFAULT 0,
    round bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ledger_users (
    id text PRIMARY KEY,
    primary_party text,
    rights jsonb NOT NULL,
    is_deactivated boolean NOT NULL DEFAULT false
);
"#;

const SV_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sv_participants (
    participant_id text PRIMARY KEY,
    party_id text NOT NULL,
    node_instance text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE sv_participants ADD COLUMN IF NOT EXISTS migration_id bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS sv_balances (
    party_id text PRIMARY KEY,
    effective_unlocked_qty numeric(38,10) NOT NULL DEFAULT 0,
    effective_locked_qty numeric(38,10) NOT NULL DEFAULT 0,
    total_holding_fees numeric(38,10) NOT NULL DEFAULT 0,
    round bigint NOT NULL DEFAULT 0
);
"#;

/// Which schema a database gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// The validator app DB.
    Validator,
    /// The participant DB.
    Participant,
    /// The SV DB.
    Sv,
}

impl Schema {
    fn ddl(self) -> &'static str {
        match self {
            Schema::Validator => VALIDATOR_SCHEMA,
            Schema::Participant => PARTICIPANT_SCHEMA,
            Schema::Sv => SV_SCHEMA,
        }
    }

    /// The tables that must exist for the database to count as healthy.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Schema::Validator => VALIDATOR_TABLES,
            Schema::Participant => PARTICIPANT_TABLES,
            Schema::Sv => SV_TABLES,
        }
    }
}

/// A Postgres server, reachable with one set of credentials; hands out connections per DB.
#[derive(Clone, Debug)]
pub struct Pg {
    base: Config,
}

impl Pg {
    /// Parses a `postgresql://` URL (or key=value string). Its database is used only to
    /// create the node's own databases.
    pub fn parse(url: &str) -> Result<Self, SimError> {
        let mut base: Config = url.parse().map_err(SimError::PgUrl)?;
        base.connect_timeout(Duration::from_secs(5));
        if base.get_dbname().is_none() {
            base.dbname("postgres");
        }
        Ok(Pg { base })
    }

    /// Opens a connection to `db` (the driver task runs in the background until dropped).
    pub async fn connect(&self, db: &str) -> Result<Client, SimError> {
        let mut cfg = self.base.clone();
        cfg.dbname(db);
        let (client, connection) = cfg
            .connect(NoTls)
            .await
            .map_err(SimError::db(format!("connect to database {db}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// Creates database `db` unless it exists. Returns true when it was created.
    pub async fn ensure_database(&self, db: &str) -> Result<bool, SimError> {
        let admin_db = self.base.get_dbname().unwrap_or("postgres").to_string();
        let client = self.connect(&admin_db).await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .map_err(SimError::db("look up database"))?
            .is_some();
        if exists {
            return Ok(false);
        }
        match client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(db)))
            .await
        {
            Ok(()) => {
                tracing::info!(database = db, "created database");
                Ok(true)
            }
            // Someone else created it meanwhile (42P04 duplicate_database): fine.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
                Ok(false)
            }
            Err(e) => Err(SimError::db(format!("create database {db}"))(e)),
        }
    }

    /// Creates the database if needed and its tables if missing.
    pub async fn ensure_schema(&self, db: &str, schema: Schema) -> Result<(), SimError> {
        self.ensure_database(db).await?;
        let client = self.connect(db).await?;
        client
            .batch_execute(schema.ddl())
            .await
            .map_err(SimError::db(format!("create schema in {db}")))
    }

    /// `Ok(())` when `db` is reachable and all of the schema's tables exist; otherwise why not.
    pub async fn check_health(&self, db: &str, schema: Schema) -> Result<(), String> {
        let client = self.connect(db).await.map_err(|e| e.to_string())?;
        let tables: Vec<String> = schema.tables().iter().map(|t| t.to_string()).collect();
        let rows = client
            .query(
                "SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass('public.' || quote_ident(t)) IS NULL",
                &[&tables],
            )
            .await
            .map_err(|e| format!("database {db}: {e}"))?;
        if rows.is_empty() {
            Ok(())
        } else {
            let missing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            Err(format!(
                "database {db}: missing tables {}",
                missing.join(", ")
            ))
        }
    }
}

/// Quotes an SQL identifier (database names contain `-`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("participant-0"), "\"participant-0\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
