//! Serde types of the validator admin API, after the Splice 0.4.x OpenAPI files
//! (`validator-internal.yaml`, `common-internal.yaml`, `wallet-internal.yaml`).
//!
//! Dumps are backups: fields this code does not know are kept (`extra`) so that a dump
//! written back from these types loses nothing. `Debug` of anything holding private keys
//! (identities, migration dumps) shows key names and sizes, never key material.

use serde::{Deserialize, Serialize};
use std::fmt;

/// `NodeIdentitiesDump` (common-internal.yaml): the participant's id, its private keys and
/// its authorized topology store. Private keys: store encrypted, outside the node.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeIdentitiesDump {
    /// The participant's uid, `<participant-id>::<fingerprint>`.
    pub id: String,
    /// The node's keys (key pairs, or KMS key ids).
    pub keys: Vec<NodeKey>,
    /// Base64 of the authorized store snapshot.
    #[serde(rename = "authorizedStoreSnapshot")]
    pub authorized_store_snapshot: String,
    /// Canton version that wrote the dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Fields added by newer releases, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for NodeIdentitiesDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentitiesDump")
            .field("id", &self.id)
            .field("keys", &self.keys)
            .field(
                "authorized_store_snapshot",
                &format_args!("<{} bytes of base64>", self.authorized_store_snapshot.len()),
            )
            .field("version", &self.version)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `NodeKey`: `oneOf [KeyPair, KmsKeyId]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeKey {
    /// `KeyPair`: the private key material itself.
    KeyPair {
        /// The serialized key pair (private!).
        #[serde(rename = "keyPair")]
        key_pair: String,
        /// The key's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// `KmsKeyId`: a key held in a KMS.
    Kms {
        /// `signing` or `encryption`.
        #[serde(rename = "type")]
        kind: String,
        /// The KMS key id.
        #[serde(rename = "keyId")]
        key_id: String,
        /// The key's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

impl NodeKey {
    /// The key's name, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            NodeKey::KeyPair { name, .. } | NodeKey::Kms { name, .. } => name.as_deref(),
        }
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeKey::KeyPair { key_pair, name } => f
                .debug_struct("KeyPair")
                .field("name", name)
                .field(
                    "key_pair",
                    &format_args!("<redacted, {} bytes>", key_pair.len()),
                )
                .finish(),
            NodeKey::Kms { kind, key_id, name } => f
                .debug_struct("Kms")
                .field("name", name)
                .field("kind", kind)
                .field("key_id", key_id)
                .finish(),
        }
    }
}

/// `Dar`: a DAR package in a migration dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dar {
    /// The package hash.
    pub hash: String,
    /// Base64 of the DAR.
    pub content: String,
}

/// `DomainMigrationDump` (validator-internal.yaml): what the validator imports when started
/// with `migrating: true` / `-M`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainMigrationDump {
    /// The participant's identities.
    pub participant: NodeIdentitiesDump,
    /// `ParticipantUsersData` (identity providers and users), kept as JSON.
    pub participant_users: serde_json::Value,
    /// Base64 of the ACS snapshot.
    pub acs_snapshot: String,
    /// The time the ACS is valid at.
    pub acs_timestamp: String,
    /// The DARs the node had.
    pub dars: Vec<Dar>,
    /// The migration id the dump is for: the validator refuses a dump for another id.
    pub migration_id: i64,
    /// The synchronizer (domain) id.
    pub domain_id: String,
    /// When the dump was produced.
    pub created_at: String,
    /// Fields added by newer releases, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for DomainMigrationDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainMigrationDump")
            .field("participant", &self.participant)
            .field(
                "acs_snapshot",
                &format_args!("<{} bytes of base64>", self.acs_snapshot.len()),
            )
            .field("acs_timestamp", &self.acs_timestamp)
            .field("dars", &self.dars.len())
            .field("migration_id", &self.migration_id)
            .field("domain_id", &self.domain_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// `GetValidatorDomainDataSnapshotResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSnapshotResponse {
    /// The dump.
    pub data_snapshot: DomainMigrationDump,
    /// The migration id it was produced for.
    pub migration_id: i64,
}

/// `GetValidatorUserInfoResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorUserInfo {
    /// The validator operator's party.
    pub party_id: String,
    /// The operator's ledger API user.
    pub user_name: String,
    /// Whether the operator has a featured app right.
    pub featured: bool,
}

/// `ListUsersResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUsersResponse {
    /// The onboarded users.
    pub usernames: Vec<String>,
}

/// `OnboardUserRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardUserRequest {
    /// The ledger API user to onboard.
    pub name: String,
    /// Reuse this party (re-onboarding after a restore); a fresh one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_id: Option<String>,
}

/// `OnboardUserResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardUserResponse {
    /// The user's party.
    pub party_id: String,
}

/// `GetBalanceResponse` (wallet-internal.yaml); quantities are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletBalance {
    /// The round the balance is computed at.
    pub round: i64,
    /// Unlocked amulet, minus holding fees.
    pub effective_unlocked_qty: String,
    /// Locked amulet, minus holding fees.
    pub effective_locked_qty: String,
    /// Holding fees accrued.
    pub total_holding_fees: String,
}

/// Checks a `NodeIdentitiesDump` answer field by field and parses it. The error names the
/// field, for an operator deciding whether the validator or the network path is broken.
pub fn parse_identities(bytes: &[u8]) -> Result<NodeIdentitiesDump, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the body is not JSON ({e})"))?;
    let obj = value.as_object().ok_or("the body is not a JSON object")?;
    match obj.get("id") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {}
        Some(serde_json::Value::String(_)) => return Err("field `id` is empty".into()),
        Some(_) => return Err("field `id` is not a string".into()),
        None => return Err("field `id` is missing".into()),
    }
    match obj.get("keys") {
        Some(serde_json::Value::Array(keys)) if keys.is_empty() => {
            return Err("field `keys` is empty: the dump holds no private keys".into())
        }
        Some(serde_json::Value::Array(keys)) => {
            for (i, k) in keys.iter().enumerate() {
                serde_json::from_value::<NodeKey>(k.clone()).map_err(|_| {
                    format!("field `keys[{i}]` is neither a KeyPair nor a KmsKeyId")
                })?;
            }
        }
        Some(_) => return Err("field `keys` is not an array".into()),
        None => return Err("field `keys` is missing".into()),
    }
    match obj.get("authorizedStoreSnapshot") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => {}
        Some(serde_json::Value::String(_)) => {
            return Err("field `authorizedStoreSnapshot` is empty".into())
        }
        Some(_) => return Err("field `authorizedStoreSnapshot` is not a string".into()),
        None => return Err("field `authorizedStoreSnapshot` is missing".into()),
    }
    // Optional, but a wrong type made the final parse fail without naming it (found by
    // tests/fuzz_parsers.rs).
    match obj.get("version") {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::String(_)) => {}
        Some(_) => return Err("field `version` is not a string".into()),
    }
    serde_json::from_value(value).map_err(|e| format!("the dump does not parse ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dump() -> serde_json::Value {
        json!({
            "id": "p::1220ab",
            "keys": [{"keyPair": "PRIVATE-MATERIAL", "name": "signing"},
                     {"type": "encryption", "keyId": "kms-1"}],
            "authorizedStoreSnapshot": "c25hcA==",
            "version": "3.3.0",
            "newField": {"x": 1}
        })
    }

    #[test]
    fn identities_round_trip_and_debug_hides_keys() {
        let bytes = serde_json::to_vec(&dump()).unwrap();
        let d = parse_identities(&bytes).unwrap();
        assert_eq!(d.keys.len(), 2);
        assert_eq!(d.keys[0].name(), Some("signing"));
        assert!(matches!(&d.keys[1], NodeKey::Kms { key_id, .. } if key_id == "kms-1"));
        assert_eq!(serde_json::to_value(&d).unwrap(), dump());
        let shown = format!("{d:?}");
        assert!(!shown.contains("PRIVATE-MATERIAL"), "{shown}");
        assert!(shown.contains("p::1220ab"), "{shown}");
    }

    #[test]
    fn identities_problems_name_the_field() {
        let cases = [
            (
                json!({"keys": [], "authorizedStoreSnapshot": "x"}),
                "`id` is missing",
            ),
            (
                json!({"id": "", "keys": [], "authorizedStoreSnapshot": "x"}),
                "`id` is empty",
            ),
            (
                json!({"id": "p", "authorizedStoreSnapshot": "x"}),
                "`keys` is missing",
            ),
            (
                json!({"id": "p", "keys": [], "authorizedStoreSnapshot": "x"}),
                "`keys` is empty",
            ),
            (
                json!({"id": "p", "keys": [{"nope": 1}], "authorizedStoreSnapshot": "x"}),
                "`keys[0]`",
            ),
            (
                json!({"id": "p", "keys": [{"keyPair": "k"}]}),
                "`authorizedStoreSnapshot` is missing",
            ),
            (
                json!({"id": "p", "keys": [{"keyPair": "k"}], "authorizedStoreSnapshot": ""}),
                "`authorizedStoreSnapshot` is empty",
            ),
            (json!([1]), "not a JSON object"),
        ];
        for (value, needle) in cases {
            let e = parse_identities(&serde_json::to_vec(&value).unwrap()).unwrap_err();
            assert!(e.contains(needle), "{value}: {e}");
        }
        assert!(parse_identities(b"<html>")
            .unwrap_err()
            .contains("not JSON"));
    }
}
