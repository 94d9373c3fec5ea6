//! The validator admin API (`/api/validator`, port 5003 on a compose node): health,
//! identities dumps, domain data snapshots, users and the wallet balance, with the
//! credentials of the node's `[node.validator.auth]` table.
//!
//! ```no_run
//! # async fn demo(cfg: &splice_dr::config::ValidatorConfig) -> Result<(), splice_dr::validator::ValidatorError> {
//! use splice_dr::validator::ValidatorClient;
//! let client = ValidatorClient::from_config(cfg)?;
//! if client.ready().await? {
//!     let (bytes, dump) = client.identities_raw().await?;   // store `bytes` as served
//!     let path = std::path::Path::new("/var/lib/splice-dr/tmp/snapshot-n.json");
//!     let snapshot = client.data_snapshot_to_file("2026-01-01T00:00:00Z", 0, true, path).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! * [`ValidatorClient`] (`client.rs`): reqwest with rustls on the `ring` provider
//!   ([`crate::tls::ensure_crypto_provider`]); retries with a doubling backoff on connection errors and
//!   HTTP 503; per-request timeout.
//! * `auth.rs`: the three auth modes (`token_file`, `oauth2`, `self_signed`); HS256 minting
//!   with `hmac` + `sha2` ([`mint_hs256`]).
//! * [`ValidatorError`] (`error.rs`): failures in operator language — "pruned: re-onboard",
//!   "not caught up: retry later", "401: check secret_file", "identities 404: the known
//!   Splice failure", "unreachable after N attempts".
//! * `snapshot_file.rs`: a data-snapshot answer on disk read in bounded memory (its small
//!   fields, and where the dump lies in it).
//! * `types.rs`: the OpenAPI shapes ([`NodeIdentitiesDump`], [`DataSnapshotResponse`], …).
//!
//! Tokens never reach logs or error messages: [`Token`]'s `Debug` is redacted, and text a
//! server echoes back is scrubbed of the token that was sent.

mod auth;
mod client;
mod error;
mod snapshot_file;
mod types;

pub use auth::{
    mint_hs256, Token, OAUTH2_DEFAULT_LIFETIME, OAUTH2_MAX_LIFETIME, OAUTH2_REFRESH_MARGIN,
    SELF_SIGNED_LIFETIME,
};
#[cfg(test)]
pub(crate) use client::test_config;
pub use client::{
    SnapshotFile, ValidatorClient, API_PREFIX, CONNECT_TIMEOUT, MAX_ANSWER_BYTES, MAX_BACKOFF,
};
pub use error::ValidatorError;
pub use snapshot_file::{dump_range, DumpHead, SnapshotFileError, SnapshotHead};
pub use types::{
    parse_identities, Dar, DataSnapshotResponse, DomainMigrationDump, ListUsersResponse,
    NodeIdentitiesDump, NodeKey, OnboardUserRequest, OnboardUserResponse, ValidatorUserInfo,
    WalletBalance,
};
