//! TLS for outgoing HTTPS and SMTP: rustls on ring (lighter to build than aws-lc). Its
//! provider is process-wide and must be installed before the first client is built.

/// Installs the ring provider as rustls' default, once; later calls change nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one first; it serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
