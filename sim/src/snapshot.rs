//! Domain data snapshots (`DomainMigrationDump`, validator-internal.yaml): the wire types,
//! the pruning / caught-up rules that make the real endpoint answer 400 or 429, and the
//! simulator's own ACS encoding (base64 of a JSON list of contracts) so a dump it writes can
//! be imported back by a node started with `--migrating`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::identity::NodeIdentitiesDump;

/// `DomainMigrationDump`: what the validator needs to rejoin after a migration or network DR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainMigrationDump {
    /// The participant's identities.
    pub participant: NodeIdentitiesDump,
    /// Ledger API users and identity providers.
    pub participant_users: ParticipantUsersData,
    /// base64 ACS snapshot.
    pub acs_snapshot: String,
    /// The time the ACS is valid at.
    pub acs_timestamp: String,
    /// Uploaded packages.
    pub dars: Vec<Dar>,
    /// The migration id the dump is for (the id the restarted node must be configured with).
    pub migration_id: i64,
    /// The synchronizer id.
    pub domain_id: String,
    /// When the dump was produced.
    pub created_at: String,
}

/// `ParticipantUsersData` (common-internal.yaml).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParticipantUsersData {
    /// Identity providers (the simulator has none; imported as-is).
    #[serde(rename = "identityProviders")]
    pub identity_providers: Vec<Value>,
    /// Ledger API users.
    pub users: Vec<ParticipantUser>,
}

/// `ParticipantUser` (common-internal.yaml).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticipantUser {
    /// User id.
    pub id: String,
    /// Primary party.
    #[serde(
        rename = "primaryParty",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub primary_party: Option<String>,
    /// Rights (`{kind, party?}` objects).
    pub rights: Vec<Value>,
    /// Deactivated flag.
    #[serde(rename = "isDeactivated", default)]
    pub is_deactivated: bool,
    /// Annotations (`{key, value}` objects).
    #[serde(default)]
    pub annotations: Vec<Value>,
    /// Identity provider id.
    #[serde(
        rename = "identityProviderId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub identity_provider_id: Option<String>,
}

/// `Dar` (validator-internal.yaml).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dar {
    /// Package hash.
    pub hash: String,
    /// base64 DAR content.
    pub content: String,
}

/// `GetValidatorDomainDataSnapshotResponse` (validator-internal.yaml).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSnapshotResponse {
    /// The dump to place at `/domain-upgrade-dump/domain_migration_dump.json`.
    pub data_snapshot: DomainMigrationDump,
    /// The migration id of the dump.
    pub migration_id: i64,
}

/// One active contract, as the simulator stores and exports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcsContract {
    /// Contract id.
    pub contract_id: String,
    /// Daml template id.
    pub template_id: String,
    /// Contract arguments.
    pub payload: Value,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

#[derive(Serialize, Deserialize)]
struct AcsEnvelope {
    format: String,
    contracts: Vec<AcsContract>,
}

const ACS_FORMAT: &str = "splice-sim-acs-v1";

/// Encodes contracts as the dump's `acs_snapshot`.
pub fn encode_acs(contracts: Vec<AcsContract>) -> String {
    let env = AcsEnvelope {
        format: ACS_FORMAT.to_string(),
        contracts,
    };
    STANDARD.encode(serde_json::to_vec(&env).unwrap_or_default())
}

/// Decodes an `acs_snapshot` written by [`encode_acs`].
pub fn decode_acs(acs: &str) -> Result<Vec<AcsContract>, String> {
    let bytes = STANDARD
        .decode(acs.trim())
        .map_err(|e| format!("acs_snapshot is not base64: {e}"))?;
    let env: AcsEnvelope = serde_json::from_slice(&bytes)
        .map_err(|e| format!("acs_snapshot is not a splice-sim ACS: {e}"))?;
    if env.format != ACS_FORMAT {
        return Err(format!("unknown ACS format {}", env.format));
    }
    Ok(env.contracts)
}

/// The packages every simulated node "has uploaded".
pub fn builtin_dars() -> Vec<Dar> {
    ["splice-amulet-0.1.9", "splice-wallet-0.1.9"]
        .iter()
        .map(|name| {
            let content = format!("PK-simulated-dar:{name}");
            Dar {
                hash: hex::encode(Sha256::digest(content.as_bytes())),
                content: STANDARD.encode(content.as_bytes()),
            }
        })
        .collect()
}

/// Formats a time the way Splice does (`yyyy-MM-ddTHH:mm:ss.SSSSSSZ`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Why a snapshot at a timestamp cannot be produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotRefusal {
    /// Pruned past the timestamp: HTTP 400, `UNAVAILABLE_ACS_SNAPSHOT…` (go re-onboard).
    Pruned(String),
    /// Not caught up to the timestamp yet: HTTP 429, `INVALID_ACS_SNAPSHOT_TIMESTAMP…` (retry).
    NotCaughtUp(String),
}

/// Applies the real endpoint's rules: pruned first, then caught-up.
pub fn check_timestamp(
    requested: DateTime<Utc>,
    pruning_horizon: DateTime<Utc>,
    caught_up: DateTime<Utc>,
) -> Result<(), SnapshotRefusal> {
    if requested < pruning_horizon {
        return Err(SnapshotRefusal::Pruned(format!(
            "UNAVAILABLE_ACS_SNAPSHOT(9,0): The ACS snapshot at {} is not available: the participant has pruned its data up to {}",
            format_time(requested),
            format_time(pruning_horizon)
        )));
    }
    if requested > caught_up {
        return Err(SnapshotRefusal::NotCaughtUp(format!(
            "INVALID_ACS_SNAPSHOT_TIMESTAMP(2,0): The participant has not yet caught up to {}: its clean head is at {}; retry later",
            format_time(requested),
            format_time(caught_up)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn timestamp_rules() {
        let now = Utc::now();
        let horizon = now - Duration::hours(1);
        assert!(check_timestamp(now - Duration::minutes(5), horizon, now).is_ok());
        assert!(matches!(
            check_timestamp(now - Duration::hours(2), horizon, now),
            Err(SnapshotRefusal::Pruned(m)) if m.starts_with("UNAVAILABLE_ACS_SNAPSHOT")
        ));
        assert!(matches!(
            check_timestamp(now + Duration::minutes(1), horizon, now),
            Err(SnapshotRefusal::NotCaughtUp(m)) if m.starts_with("INVALID_ACS_SNAPSHOT_TIMESTAMP")
        ));
    }

    #[test]
    fn acs_round_trips() {
        let c = AcsContract {
            contract_id: "00ab".into(),
            template_id: "T:T".into(),
            payload: serde_json::json!({"a": 1}),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        assert_eq!(decode_acs(&encode_acs(vec![c.clone()])).unwrap(), vec![c]);
        assert!(decode_acs("!!").is_err());
    }
}
