//! Node identities: the `NodeIdentitiesDump` wire type (common-internal.yaml) and how the
//! simulator derives ids from keys. The namespace fingerprint comes from the keys, so the
//! validator party id (`<party_hint>::<fingerprint>`) survives re-onboarding under a new
//! participant id, exactly as on a real node.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The Splice release the simulator imitates (reported as the dump `version`).
pub const SIM_SPLICE_VERSION: &str = "0.4.15";

/// `NodeIdentitiesDump` (common-internal.yaml): the participant's uid, private keys and
/// authorized topology store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeIdentitiesDump {
    /// The participant uid, `<participant_id>::<namespace fingerprint>`.
    pub id: String,
    /// Private keys (key pairs or KMS references).
    pub keys: Vec<NodeKey>,
    /// base64 authorized store snapshot.
    #[serde(rename = "authorizedStoreSnapshot")]
    pub authorized_store_snapshot: String,
    /// Release that wrote the dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `NodeKey` (common-internal.yaml): `oneOf KeyPair | KmsKeyId`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeKey {
    /// `KeyPair`: a serialized private key pair.
    KeyPair {
        /// base64 key pair.
        #[serde(rename = "keyPair")]
        key_pair: String,
        /// Key name.
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
        /// Key name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

impl NodeIdentitiesDump {
    /// The namespace fingerprint: the part of `id` after the first `::`.
    pub fn fingerprint(&self) -> Option<&str> {
        self.id
            .split_once("::")
            .map(|(_, fp)| fp)
            .filter(|fp| !fp.is_empty())
    }

    /// The participant id: the part of `id` before the first `::`.
    pub fn participant_id(&self) -> &str {
        self.id
            .split_once("::")
            .map_or(self.id.as_str(), |(p, _)| p)
    }

    /// Basic sanity checks of an imported dump.
    pub fn validate(&self) -> Result<(), String> {
        if self.fingerprint().is_none() {
            return Err(format!(
                "id '{}' is not of the form <participant>::<fingerprint>",
                self.id
            ));
        }
        if self.keys.is_empty() {
            return Err("keys is empty".to_string());
        }
        Ok(())
    }
}

/// `<hint>::<fingerprint>`, the shape of Canton party ids and participant uids.
pub fn unique_id(hint: &str, fingerprint: &str) -> String {
    format!("{hint}::{fingerprint}")
}

/// A Canton-looking fingerprint ("1220" multihash prefix + sha256 hex) of some bytes.
pub fn fingerprint_of(bytes: &[u8]) -> String {
    format!("1220{}", hex::encode(Sha256::digest(bytes)))
}

fn derive(seed: &str, label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut counter = 0u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update([0]);
        h.update(label.as_bytes());
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// Generates a node identity for participant `participant_id` from `seed`: the same seed
/// always gives the same keys and fingerprint.
pub fn generate(seed: &str, participant_id: &str) -> NodeIdentitiesDump {
    let key = |purpose: &str| NodeKey::KeyPair {
        key_pair: STANDARD.encode(derive(seed, purpose, 96)),
        name: Some(format!("{participant_id}-{purpose}")),
    };
    let namespace = key("namespace");
    let fingerprint = match &namespace {
        NodeKey::KeyPair { key_pair, .. } => fingerprint_of(key_pair.as_bytes()),
        NodeKey::Kms { key_id, .. } => fingerprint_of(key_id.as_bytes()),
    };
    NodeIdentitiesDump {
        id: unique_id(participant_id, &fingerprint),
        keys: vec![namespace, key("signing"), key("encryption")],
        authorized_store_snapshot: STANDARD.encode(derive(seed, "authorized-store", 240)),
        version: Some(SIM_SPLICE_VERSION.to_string()),
    }
}

/// A random-looking token (not cryptographic): time, pid and a counter hashed together.
/// Used for node instance ids and unseeded identities.
pub fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(nanos.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_parses_back() {
        let a = generate("seed", "p1");
        let b = generate("seed", "p1");
        assert_eq!(a, b);
        assert_eq!(a.participant_id(), "p1");
        assert!(a.fingerprint().unwrap().starts_with("1220"));
        assert_eq!(a.fingerprint().unwrap().len(), 68);
        let json = serde_json::to_string(&a).unwrap();
        let back: NodeIdentitiesDump = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert!(json.contains("\"keyPair\"") && json.contains("\"authorizedStoreSnapshot\""));
        assert_ne!(generate("other", "p1").fingerprint(), a.fingerprint());
    }

    #[test]
    fn parses_kms_keys() {
        let d: NodeIdentitiesDump = serde_json::from_str(
            r#"{"id":"p::1220ab","keys":[{"type":"signing","keyId":"k1"}],"authorizedStoreSnapshot":""}"#,
        )
        .unwrap();
        assert!(matches!(d.keys[0], NodeKey::Kms { .. }));
        assert!(d.validate().is_ok());
    }
}
