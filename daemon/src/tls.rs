//! The TLS setup every HTTPS client of the daemon shares (validator API, webhooks). The
//! S3 store of `splice-dr-repo` installs the same provider itself, the repository crate
//! depending on nothing of the daemon.

use std::sync::Once;

static CRYPTO_PROVIDER: Once = Once::new();

/// Installs rustls' `ring` provider as the process default, once. reqwest is built with
/// `rustls-no-provider`, so every HTTPS client needs this; calling it again is free, and a
/// provider installed earlier by someone else is kept.
pub fn ensure_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        // Err means a provider is already installed: fine, it is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
