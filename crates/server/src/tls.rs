//! TLS on the gateway's listener (`[server] tls_cert` and `tls_key`): https for the
//! APIs and wss for agents, with rustls.
//!
//! Handshakes run in each connection's own task (the `connections` module), bounded
//! by [`HANDSHAKE_TIMEOUT`], so a slow or silent client never holds up the accept loop.

use std::{path::Path, sync::Arc, time::Duration};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls server configuration from PEM files (certificate chain, private key).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("server.tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("server.tls_cert {}: no certificate in the file", cert.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("server.tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A CA and a server certificate it signed, as PEM: what `sluice tls generate`
/// writes.
pub struct GeneratedTls {
    /// The CA certificate, for `sluice agent --ca` and for clients (`curl --cacert`).
    pub ca_cert: String,
    /// The server certificate followed by the CA's: `[server] tls_cert`.
    pub server_chain: String,
    /// The server's private key: `[server] tls_key`.
    pub server_key: String,
}

/// Makes a CA (valid ten years) and a certificate for `hosts` (names or IP addresses)
/// that it signs, valid for `days`.
pub fn generate(hosts: &[String], days: u32) -> Result<GeneratedTls, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyPair, KeyUsagePurpose,
    };
    if hosts.is_empty() {
        return Err("name at least one host the gateway is reached by (--host NAME)".to_owned());
    }
    // Now, a minute early (the clocks of two machines may differ a little).
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(std::time::Duration::from_secs(60));
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    let err = |e: rcgen::Error| e.to_string();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Sluice gateway CA");
    ca.distinguished_name = name;
    ca.not_before = now;
    ca.not_after = now + std::time::Duration::from_secs(10 * 365 * 86_400);
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut server = CertificateParams::new(hosts.to_vec()).map_err(|e| format!("--host: {e}"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, hosts[0].clone());
    server.distinguished_name = name;
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now;
    server.not_after = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
    let server_key = KeyPair::generate().map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);
    let server_cert = server.signed_by(&server_key, &issuer).map_err(err)?;
    Ok(GeneratedTls {
        ca_cert: ca_cert.pem(),
        server_chain: format!("{}{}", server_cert.pem(), ca_cert.pem()),
        server_key: server_key.serialize_pem(),
    })
}
