//! Node initialization: the start modes (fresh, `--migrating`, `--identities-dump`), the
//! migration-id checks the real validator makes at start, SV registration, and seeding.
//! Everything that can refuse a start is decided before anything is written.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::{SimConfig, StartMode};
use crate::db::Schema;
use crate::error::SimError;
use crate::identity::{self, NodeIdentitiesDump};
use crate::snapshot::{self, format_time, AcsContract, DomainMigrationDump};
use crate::store::{operator_rights, NodeStore, StoredIdentity};
use crate::sv::{RegisterRequest, SvClient};

/// What a started node is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// The validator operator party, `<party_hint>::<fingerprint>`.
    pub party_id: String,
    /// The participant id.
    pub participant_id: String,
    /// The participant uid, `<participant_id>::<fingerprint>` (the identities dump `id`).
    pub participant_uid: String,
    /// The configured migration id.
    pub migration_id: i64,
    /// The node installation id registered with the SV.
    pub node_instance: String,
    /// Validator DB name.
    pub validator_db: String,
    /// Participant DB name.
    pub participant_db: String,
    /// What this start did: `created`, `restarted`, `migrated` or `imported-identities`.
    pub start: String,
}

/// Reads and checks the migration dump a `--migrating` node must import.
pub fn read_migration_dump(
    path: &Path,
    migration_id: i64,
) -> Result<DomainMigrationDump, SimError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SimError::Migration(format!(
                "Migration ID was incremented (to {migration_id}) and migrating is enabled, \
                 but no migration dump was found at {}; place the data_snapshot of \
                 /v0/admin/domain/data-snapshot there (or start without --migrating)",
                path.display()
            )))
        }
        Err(source) => {
            return Err(SimError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let invalid = |message: String| SimError::InvalidDump {
        what: "migration dump",
        path: path.to_path_buf(),
        message,
    };
    let dump: DomainMigrationDump =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if dump.migration_id != migration_id {
        return Err(SimError::Migration(format!(
            "The migration dump at {} is for migration id {}, but this validator is configured \
             with migration id {migration_id}; refusing to start (configure migration id {} or \
             take a dump with migration_id={migration_id})",
            path.display(),
            dump.migration_id,
            dump.migration_id
        )));
    }
    dump.participant.validate().map_err(invalid)?;
    snapshot::decode_acs(&dump.acs_snapshot).map_err(invalid)?;
    Ok(dump)
}

/// Reads an identities dump for re-onboarding.
pub fn read_identities_dump(path: &Path) -> Result<NodeIdentitiesDump, SimError> {
    let bytes = std::fs::read(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| SimError::InvalidDump {
        what: "identities dump",
        path: path.to_path_buf(),
        message,
    };
    let dump: NodeIdentitiesDump =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    dump.validate().map_err(invalid)?;
    Ok(dump)
}

/// The contracts a brand-new node starts with.
fn seed_contracts(party: &str, user: &str, uid: &str) -> Vec<AcsContract> {
    let now = format_time(chrono::Utc::now());
    let contract = |template: &str, payload: Value| AcsContract {
        contract_id: format!(
            "00{}",
            identity::fingerprint_of(format!("{uid}/{template}").as_bytes())
        ),
        template_id: template.to_string(),
        payload,
        created_at: now.clone(),
    };
    vec![
        contract(
            "Splice.ValidatorLicense:ValidatorLicense",
            json!({"validator": party, "sponsor": "sv-sim::1220sv", "lastActiveAt": now}),
        ),
        contract(
            "Splice.Wallet.Install:WalletAppInstall",
            json!({"endUserName": user, "endUserParty": party, "validatorParty": party}),
        ),
        contract(
            "Splice.Amulet:ValidatorRight",
            json!({"user": party, "validator": party}),
        ),
    ]
}

/// Initializes (or re-opens) the node's databases according to `cfg` and registers its
/// participant id with the SV.
pub async fn initialize(
    cfg: &SimConfig,
    store: &NodeStore,
    sv: Option<&SvClient>,
) -> Result<NodeInfo, SimError> {
    let pg = store.pg();
    pg.ensure_schema(&store.validator_db, Schema::Validator)
        .await?;
    pg.ensure_schema(&store.participant_db, Schema::Participant)
        .await?;
    let mut vclient = store.validator().await?;
    let mut pclient = store.participant().await?;

    let stored_mid = NodeStore::config_value(&vclient, "migration_id")
        .await?
        .and_then(|v| v.as_i64());
    let stored_party = NodeStore::config_value(&vclient, "party_id")
        .await?
        .and_then(|v| v.as_str().map(str::to_string));
    let existing = NodeStore::identity(&pclient).await?;
    let n = cfg.migration_id;

    if let Some(s) = stored_mid {
        if n < s {
            return Err(SimError::Migration(format!(
                "Configured migration id {n} is lower than migration id {s} this validator already ran with"
            )));
        }
    }

    let migration_dump = match (&cfg.start_mode, &existing) {
        (StartMode::Migrating { dump_path }, None) => Some(read_migration_dump(dump_path, n)?),
        (StartMode::Migrating { .. }, Some(_)) => {
            tracing::info!("participant already initialized: the migration dump is not imported again (drop --migrating on later starts)");
            None
        }
        _ => None,
    };

    if existing.is_none() && migration_dump.is_none() {
        if let Some(s) = stored_mid.filter(|s| *s < n) {
            return Err(SimError::Migration(format!(
                "Migration ID was incremented (from {s} to {n}) but no migration dump was imported: \
                 start once with --migrating and the dump at {}",
                crate::config::DEFAULT_DUMP_PATH
            )));
        }
    }

    let (identity, start) = match existing {
        Some(id) => {
            if let Some(p) = cfg.participant_id.as_deref() {
                if p != id.participant_id && migration_dump.is_none() {
                    return Err(SimError::StateMismatch(format!(
                        "participant database {} was initialized with participant id '{}', but the configured participant id is '{p}'",
                        store.participant_db, id.participant_id
                    )));
                }
            }
            (id, "restarted")
        }
        None => {
            let node_instance = identity::random_token();
            if let Some(dump) = &migration_dump {
                let pid = dump.participant.participant_id().to_string();
                if let Some(p) = cfg.participant_id.as_deref().filter(|p| *p != pid) {
                    tracing::warn!(configured = p, dump = %pid, "the migration dump's participant id wins");
                }
                (
                    StoredIdentity {
                        dump: dump.participant.clone(),
                        participant_id: pid,
                        node_instance,
                    },
                    "migrated",
                )
            } else if let StartMode::IdentitiesDump { path } = &cfg.start_mode {
                let mut dump = read_identities_dump(path)?;
                let pid = cfg.participant_id.clone().ok_or_else(|| {
                    SimError::Config(
                        "re-onboarding from an identities dump needs a new participant id".into(),
                    )
                })?;
                let fp = dump.fingerprint().unwrap_or_default().to_string();
                dump.id = identity::unique_id(&pid, &fp);
                (
                    StoredIdentity {
                        dump,
                        participant_id: pid,
                        node_instance,
                    },
                    "imported-identities",
                )
            } else {
                let pid = cfg
                    .participant_id
                    .clone()
                    .unwrap_or_else(|| cfg.party_hint.clone());
                let seed = cfg
                    .identity_seed
                    .clone()
                    .unwrap_or_else(identity::random_token);
                (
                    StoredIdentity {
                        dump: identity::generate(&seed, &pid),
                        participant_id: pid,
                        node_instance,
                    },
                    "created",
                )
            }
        }
    };

    let fingerprint = identity.dump.fingerprint().ok_or_else(|| {
        SimError::StateMismatch(format!(
            "stored participant uid '{}' has no fingerprint",
            identity.dump.id
        ))
    })?;
    let party = identity::unique_id(&cfg.party_hint, fingerprint);
    if let Some(stored) = stored_party.as_deref().filter(|p| *p != party) {
        return Err(SimError::StateMismatch(format!(
            "validator database {} belongs to party {stored}, but the participant's identity with party hint '{}' gives {party}",
            store.validator_db, cfg.party_hint
        )));
    }

    if let Some(sv) = sv {
        sv.register(
            &RegisterRequest {
                participant_id: identity.participant_id.clone(),
                party_id: party.clone(),
                node_instance: identity.node_instance.clone(),
                migration_id: n,
            },
            cfg.sv_patience,
        )
        .await?;
    }

    if start != "restarted" {
        let tx = pclient
            .transaction()
            .await
            .map_err(SimError::db("begin participant init"))?;
        NodeStore::insert_identity(&tx, &identity).await?;
        NodeStore::upsert_ledger_user(
            &tx,
            &cfg.validator_user,
            Some(&party),
            &operator_rights(&party),
        )
        .await?;
        let contracts = match &migration_dump {
            Some(d) => {
                for u in &d.participant_users.users {
                    NodeStore::upsert_ledger_user(
                        &tx,
                        &u.id,
                        u.primary_party.as_deref(),
                        &Value::Array(u.rights.clone()),
                    )
                    .await?;
                }
                snapshot::decode_acs(&d.acs_snapshot).map_err(SimError::Migration)?
            }
            None if start == "created" => {
                seed_contracts(&party, &cfg.validator_user, &identity.dump.id)
            }
            None => Vec::new(),
        };
        for c in &contracts {
            NodeStore::insert_contract(&tx, c).await?;
        }
        NodeStore::seed_local_balance(&tx, &party, &cfg.initial_balance).await?;
        tx.commit()
            .await
            .map_err(SimError::db("commit participant init"))?;
    }

    let tx = vclient
        .transaction()
        .await
        .map_err(SimError::db("begin validator init"))?;
    NodeStore::set_config_value(&tx, "party_id", &json!(party)).await?;
    NodeStore::set_config_value(&tx, "party_hint", &json!(cfg.party_hint)).await?;
    NodeStore::set_config_value(&tx, "validator_user", &json!(cfg.validator_user)).await?;
    NodeStore::set_config_value(&tx, "participant_id", &json!(identity.participant_id)).await?;
    NodeStore::set_config_value(&tx, "migration_id", &json!(n)).await?;
    if NodeStore::config_value(&tx, "featured").await?.is_none() {
        NodeStore::set_config_value(&tx, "featured", &json!(false)).await?;
    }
    let mut users = vec![(cfg.validator_user.clone(), party.clone())];
    if let Some(d) = &migration_dump {
        users.extend(
            d.participant_users
                .users
                .iter()
                .filter_map(|u| u.primary_party.as_ref().map(|p| (u.id.clone(), p.clone()))),
        );
    }
    for (name, p) in &users {
        tx.execute(
            "INSERT INTO users (name, party_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[name, p],
        )
        .await
        .map_err(SimError::db("seed users"))?;
    }
    tx.commit()
        .await
        .map_err(SimError::db("commit validator init"))?;

    let info = NodeInfo {
        party_id: party,
        participant_id: identity.participant_id.clone(),
        participant_uid: identity.dump.id.clone(),
        migration_id: n,
        node_instance: identity.node_instance.clone(),
        validator_db: store.validator_db.clone(),
        participant_db: store.participant_db.clone(),
        start: start.to_string(),
    };
    tracing::info!(
        party = %info.party_id,
        participant = %info.participant_id,
        migration_id = n,
        start = %info.start,
        "validator initialized"
    );
    Ok(info)
}
