//! Parsing the keys a repository works with: age recipients (off-site encryption at rest,
//! and the daemon's identities dumps) and ed25519 public signing keys (`trusted_keys`).
//! Written here once, where the keys are used; the daemon's config validation calls the
//! same functions, so a key the config accepts is one the repository can use.

use std::str::FromStr;

use ed25519_dalek::VerifyingKey;

/// How a public signing key is written: `ed25519:<64 hex>`.
pub const SIGNING_KEY_PREFIX: &str = "ed25519:";

/// Parses one age recipient (`age1…`).
pub fn age_recipient(r: &str) -> Result<age::x25519::Recipient, String> {
    age::x25519::Recipient::from_str(r.trim())
        .map_err(|e| format!("`{r}` is not an age recipient: {e}"))
}

/// Parses a public key line (`ed25519:<64 hex>`).
pub fn public_key(line: &str) -> Result<VerifyingKey, String> {
    let hex_part = line
        .trim()
        .strip_prefix(SIGNING_KEY_PREFIX)
        .ok_or_else(|| {
            format!(
                "`{line}` does not start with `{SIGNING_KEY_PREFIX}` (copy the line `splice-dr keys public` prints)"
            )
        })?;
    let bytes: [u8; 32] = hex::decode(hex_part)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("`{line}`: expected 64 hex digits after `{SIGNING_KEY_PREFIX}`"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("`{line}`: not an ed25519 key: {e}"))
}
