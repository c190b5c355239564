//! TLS for the agent's side of the link: the webpki roots plus any CA the operator
//! names (`sluice agent --ca`), and plain words for a certificate the agent refuses.
//!
//! A certificate in the `--ca` file is trusted in two ways: as a CA that signs the
//! gateway's certificate, and pinned: a gateway presenting exactly that certificate
//! is accepted as it is. Pinning is what makes the usual self-signed certificate work
//! (`openssl req -x509 …` makes one that is its own CA, which webpki refuses as an
//! end-entity certificate).

use std::{path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use rustls_pki_types::pem::PemObject;
use tokio_tungstenite::Connector;

/// The client TLS setup: the webpki roots plus the certificates in `ca` (PEM), each
/// trusted as a CA and pinned.
pub fn client_connector(ca: Option<&Path>) -> Result<Connector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut pinned = Vec::new();
    if let Some(path) = ca {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            // A certificate webpki cannot use as a trust anchor may still be pinned.
            let _ = roots.add(cert.clone());
            pinned.push(cert);
        }
        if pinned.is_empty() {
            return Err(format!("{}: no PEM certificate in the file", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedOrWebpki { pinned, webpki }))
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// Accepts a server certificate that is byte for byte one of `pinned`; any other is
/// checked by webpki against the roots.
#[derive(Debug)]
struct PinnedOrWebpki {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinnedOrWebpki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// What is wrong with the gateway's certificate, in plain words, when `error` is a
/// refused certificate; `None` for any other error.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(rustls::Error::InvalidCertificate(why)) = e.downcast_ref::<rustls::Error>() {
            return Some(certificate_problem(why));
        }
        // An I/O error hides the error it carries from `source`.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            return explain(inner);
        }
        cause = e.source();
    }
    None
}

fn certificate_problem(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    const FIX: &str = "give the gateway's certificate (or the CA that signed it) with `--ca FILE`; \
                       `sluice tls generate --host NAME` makes a pair that works";
    match why {
        E::UnknownIssuer => format!(
            "the gateway's certificate is not signed by a CA this agent trusts (a self-signed certificate?): {FIX}"
        ),
        E::Expired | E::ExpiredContext { .. } => {
            "the gateway's certificate has expired: renew it on the gateway".to_owned()
        }
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "the gateway's certificate is not valid yet: check the clocks of both machines".to_owned()
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "the gateway's certificate does not name the host this agent dialed: dial the name in the \
             certificate, or make one for this name (`sluice tls generate --host NAME`)"
                .to_owned()
        }
        E::Revoked => "the gateway's certificate has been revoked".to_owned(),
        E::BadSignature => {
            "the gateway's certificate has a bad signature (not made by the CA it names)".to_owned()
        }
        E::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
            "the gateway presents a CA certificate as its own (the usual `openssl req -x509` \
             self-signed certificate): {FIX}"
        ),
        other => format!("the gateway's certificate was refused ({other:?}): {FIX}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refusals_are_explained_in_plain_words() {
        let err = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(err);
        let text = explain(&io).unwrap();
        assert!(text.contains("not signed by a CA this agent trusts") && text.contains("--ca"), "{text}");
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert!(explain(&expired).unwrap().contains("expired"));
        assert!(explain(&std::io::Error::other("refused")).is_none());
    }
}
