//! The node's state in its two databases: what handlers read on every call (so a restored
//! database changes the answers) and what startup writes. SQL lives here and nowhere else.

use serde_json::{json, Value};
use tokio_postgres::{Client, GenericClient};

use crate::db::Pg;
use crate::error::SimError;
use crate::identity::NodeIdentitiesDump;
use crate::snapshot::{format_time, AcsContract, ParticipantUser};

/// The participant's identity row.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredIdentity {
    /// The identities, as the dump endpoint serves them.
    pub dump: NodeIdentitiesDump,
    /// The participant id (without fingerprint).
    pub participant_id: String,
    /// The node installation id registered with the SV.
    pub node_instance: String,
}

/// A wallet balance as read from the participant DB (no-SV mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalBalance {
    /// Round.
    pub round: i64,
    /// Unlocked.
    pub unlocked: String,
    /// Locked.
    pub locked: String,
    /// Holding fees.
    pub fees: String,
}

/// Outcome of onboarding a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Onboarded {
    /// Created (or already there with the same party): its party.
    Party(String),
    /// Already onboarded with another party.
    Conflict(String),
}

/// Access to the validator and participant databases of one node.
#[derive(Clone, Debug)]
pub struct NodeStore {
    pg: Pg,
    /// Validator app DB name.
    pub validator_db: String,
    /// Participant DB name.
    pub participant_db: String,
}

fn q(context: &str) -> impl FnOnce(tokio_postgres::Error) -> SimError {
    SimError::db(context.to_string())
}

impl NodeStore {
    /// A store over `validator_db` and `participant_db` on `pg`.
    pub fn new(pg: Pg, validator_db: String, participant_db: String) -> Self {
        NodeStore {
            pg,
            validator_db,
            participant_db,
        }
    }

    /// The Postgres server.
    pub fn pg(&self) -> &Pg {
        &self.pg
    }

    /// A fresh connection to the validator DB.
    pub async fn validator(&self) -> Result<Client, SimError> {
        self.pg.connect(&self.validator_db).await
    }

    /// A fresh connection to the participant DB.
    pub async fn participant(&self) -> Result<Client, SimError> {
        self.pg.connect(&self.participant_db).await
    }

    // ---- validator DB ----

    /// A `validator_config` value.
    pub async fn config_value(
        client: &impl GenericClient,
        key: &str,
    ) -> Result<Option<Value>, SimError> {
        Ok(client
            .query_opt("SELECT value FROM validator_config WHERE key = $1", &[&key])
            .await
            .map_err(q("read validator_config"))?
            .map(|r| r.get(0)))
    }

    /// Sets a `validator_config` value.
    pub async fn set_config_value(
        client: &impl GenericClient,
        key: &str,
        value: &Value,
    ) -> Result<(), SimError> {
        client
            .execute(
                "INSERT INTO validator_config (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, value],
            )
            .await
            .map_err(q("write validator_config"))?;
        Ok(())
    }

    /// The validator operator's party and `featured` flag, from the validator DB.
    pub async fn validator_party(&self) -> Result<Option<(String, bool)>, SimError> {
        let client = self.validator().await?;
        let party = Self::config_value(&client, "party_id")
            .await?
            .and_then(|v| v.as_str().map(str::to_string));
        let featured = Self::config_value(&client, "featured")
            .await?
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Ok(party.map(|p| (p, featured)))
    }

    /// Names of onboarded users, sorted.
    pub async fn list_users(&self) -> Result<Vec<String>, SimError> {
        let client = self.validator().await?;
        let rows = client
            .query("SELECT name FROM users ORDER BY name", &[])
            .await
            .map_err(q("list users"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The party of an onboarded user.
    pub async fn user_party(&self, name: &str) -> Result<Option<String>, SimError> {
        let client = self.validator().await?;
        Ok(client
            .query_opt("SELECT party_id FROM users WHERE name = $1", &[&name])
            .await
            .map_err(q("look up user"))?
            .map(|r| r.get(0)))
    }

    /// Onboards a user in the validator DB (and as a ledger API user in the participant DB).
    /// Idempotent for the same party.
    pub async fn onboard_user(&self, name: &str, party: &str) -> Result<Onboarded, SimError> {
        let client = self.validator().await?;
        let row = client
            .query_one(
                "WITH ins AS (INSERT INTO users (name, party_id) VALUES ($1, $2) \
                   ON CONFLICT (name) DO NOTHING RETURNING party_id) \
                 SELECT party_id FROM ins UNION ALL SELECT party_id FROM users WHERE name = $1 LIMIT 1",
                &[&name, &party],
            )
            .await
            .map_err(q("onboard user"))?;
        let stored: String = row.get(0);
        if stored != party {
            return Ok(Onboarded::Conflict(stored));
        }
        let participant = self.participant().await?;
        Self::upsert_ledger_user(&participant, name, Some(party), &act_as_rights(party)).await?;
        Ok(Onboarded::Party(stored))
    }

    /// Offboards a user; false when unknown. Like the real validator, the ledger API user stays.
    pub async fn offboard_user(&self, name: &str) -> Result<bool, SimError> {
        let client = self.validator().await?;
        let n = client
            .execute("DELETE FROM users WHERE name = $1", &[&name])
            .await
            .map_err(q("offboard user"))?;
        Ok(n > 0)
    }

    // ---- participant DB ----

    /// The participant identity, if the participant was initialized.
    pub async fn identity(client: &impl GenericClient) -> Result<Option<StoredIdentity>, SimError> {
        let row = client
            .query_opt(
                "SELECT id, keys, authorized_store_snapshot, participant_id, node_instance, version \
                 FROM participant_identity ORDER BY created_at LIMIT 1",
                &[],
            )
            .await
            .map_err(q("read participant identity"))?;
        let Some(row) = row else { return Ok(None) };
        let keys: Value = row.get(1);
        let keys = serde_json::from_value(keys).map_err(|e| {
            SimError::StateMismatch(format!("participant_identity.keys is not a key list: {e}"))
        })?;
        Ok(Some(StoredIdentity {
            dump: NodeIdentitiesDump {
                id: row.get(0),
                keys,
                authorized_store_snapshot: row.get(2),
                version: row.get(5),
            },
            participant_id: row.get(3),
            node_instance: row.get(4),
        }))
    }

    /// Stores the participant identity.
    pub async fn insert_identity(
        client: &impl GenericClient,
        identity: &StoredIdentity,
    ) -> Result<(), SimError> {
        let keys = serde_json::to_value(&identity.dump.keys).unwrap_or(Value::Null);
        client
            .execute(
                "INSERT INTO participant_identity (id, keys, authorized_store_snapshot, participant_id, node_instance, version) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &identity.dump.id,
                    &keys,
                    &identity.dump.authorized_store_snapshot,
                    &identity.participant_id,
                    &identity.node_instance,
                    &identity.dump.version,
                ],
            )
            .await
            .map_err(q("store participant identity"))?;
        Ok(())
    }

    /// Adds or replaces a ledger API user.
    pub async fn upsert_ledger_user(
        client: &impl GenericClient,
        id: &str,
        primary_party: Option<&str>,
        rights: &Value,
    ) -> Result<(), SimError> {
        client
            .execute(
                "INSERT INTO ledger_users (id, primary_party, rights) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET primary_party = EXCLUDED.primary_party, rights = EXCLUDED.rights",
                &[&id, &primary_party, rights],
            )
            .await
            .map_err(q("store ledger user"))?;
        Ok(())
    }

    /// Ledger API users, as `ParticipantUser`s.
    pub async fn ledger_users(&self) -> Result<Vec<ParticipantUser>, SimError> {
        let client = self.participant().await?;
        let rows = client
            .query(
                "SELECT id, primary_party, rights, is_deactivated FROM ledger_users ORDER BY id",
                &[],
            )
            .await
            .map_err(q("list ledger users"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let rights: Value = r.get(2);
                ParticipantUser {
                    id: r.get(0),
                    primary_party: r.get(1),
                    rights: rights.as_array().cloned().unwrap_or_default(),
                    is_deactivated: r.get(3),
                    annotations: Vec::new(),
                    identity_provider_id: None,
                }
            })
            .collect())
    }

    /// Stores a contract (ignored when its id exists).
    pub async fn insert_contract(
        client: &impl GenericClient,
        c: &AcsContract,
    ) -> Result<(), SimError> {
        let created = chrono::DateTime::parse_from_rfc3339(&c.created_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        client
            .execute(
                "INSERT INTO contracts (contract_id, template_id, payload, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (contract_id) DO NOTHING",
                &[&c.contract_id, &c.template_id, &c.payload, &created],
            )
            .await
            .map_err(q("store contract"))?;
        Ok(())
    }

    /// The active contracts.
    pub async fn contracts(&self) -> Result<Vec<AcsContract>, SimError> {
        let client = self.participant().await?;
        let rows = client
            .query(
                "SELECT contract_id, template_id, payload, created_at FROM contracts ORDER BY contract_id",
                &[],
            )
            .await
            .map_err(q("list contracts"))?;
        Ok(rows
            .iter()
            .map(|r| AcsContract {
                contract_id: r.get(0),
                template_id: r.get(1),
                payload: r.get(2),
                created_at: format_time(r.get(3)),
            })
            .collect())
    }

    /// Seeds a local balance row for a party unless present.
    pub async fn seed_local_balance(
        client: &impl GenericClient,
        party: &str,
        amount: &str,
    ) -> Result<(), SimError> {
        client
            .execute(
                "INSERT INTO party_balances (party_id, effective_unlocked_qty) VALUES ($1, $2::text::numeric) \
                 ON CONFLICT DO NOTHING",
                &[&party, &amount],
            )
            .await
            .map_err(q("seed local balance"))?;
        Ok(())
    }

    /// A party's balance in the participant DB (zero when it has no row).
    pub async fn local_balance(&self, party: &str) -> Result<LocalBalance, SimError> {
        let client = self.participant().await?;
        let row = client
            .query_opt(
                "SELECT round, effective_unlocked_qty::text, effective_locked_qty::text, total_holding_fees::text \
                 FROM party_balances WHERE party_id = $1",
                &[&party],
            )
            .await
            .map_err(q("read balance"))?;
        Ok(match row {
            Some(r) => LocalBalance {
                round: r.get(0),
                unlocked: r.get(1),
                locked: r.get(2),
                fees: r.get(3),
            },
            None => LocalBalance {
                round: 0,
                unlocked: "0.0000000000".into(),
                locked: "0.0000000000".into(),
                fees: "0.0000000000".into(),
            },
        })
    }
}

/// Rights of a wallet user acting as `party`.
pub fn act_as_rights(party: &str) -> Value {
    json!([{ "kind": "canActAs", "party": party }, { "kind": "canReadAs", "party": party }])
}

/// Rights of the validator operator.
pub fn operator_rights(party: &str) -> Value {
    json!([
        { "kind": "participantAdmin" },
        { "kind": "canActAs", "party": party },
        { "kind": "canReadAs", "party": party }
    ])
}
