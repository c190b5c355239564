//! Agents over TLS: the gateway serves https and wss from PEM files, and agents verify
//! its certificate (here a self-signed one, trusted through `--ca`).

use sluice_agent::{
    Agent, AgentOptions,
    session::{self, SessionError},
};
use sluice_config::{Config, Overrides};
use sluice_mock::MockConfig;
use tokio_util::sync::CancellationToken;

use crate::util::*;

struct Tls {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn self_signed() -> Tls {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Tls { _dir: dir, cert, key }
}

async fn agent_for(
    url: &str,
    token: &str,
    ca: Option<&std::path::Path>,
    mock: &sluice_mock::MockServer,
) -> Agent {
    let cfg = Config::from_toml(&backend_toml("local", "openai", mock, ""), &Overrides::default()).unwrap();
    let options = AgentOptions {
        agent_id: "tls".into(),
        ca: ca.map(Into::into),
        ..AgentOptions::new(url, token).unwrap()
    };
    Agent::new(options, local_registry(cfg).await).await.unwrap()
}

#[tokio::test]
async fn agents_connect_over_wss_and_verify_the_certificate() {
    let tls = self_signed();
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::start(&format!(
        "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[store]\nurl = \"sqlite::memory:\"\n",
        tls.cert.display(),
        tls.key.display()
    ))
    .await;
    let token = gw.state.store.create_agent_token("tls").await.unwrap().1;
    let url = format!("https://127.0.0.1:{}", gw.addr.port());

    // Without the CA the certificate is rejected, with the reason.
    let untrusting = agent_for(&url, &token, None, &mock).await;
    let err = match session::run(&untrusting, &CancellationToken::new()).await {
        Err(SessionError::Connect(e)) => e,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected without trusting the certificate"),
    };
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // With it, the agent serves through wss, and clients use https.
    let agent = agent_for(&url, &token, Some(&tls.cert), &mock).await;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { agent.run(stop).await });
    let mut connected = gw.state.agents.watch();
    tokio::time::timeout(SOON, connected.wait_for(|n| *n == 1)).await.unwrap().unwrap();
    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&tls.cert).unwrap()).unwrap())
        .build()
        .unwrap();
    let r =
        https.post(format!("{url}/v1/chat/completions")).json(&chat_body("x", false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "t0 t1 t2 t3 t4 t5 t6 t7 ");
    shutdown.cancel();
    tokio::time::timeout(SOON, task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn the_agent_endpoint_is_gone_when_agents_are_disabled() {
    let gw = Gateway::start("[agents]\nenabled = false\n").await;
    let r = client().get(gw.url(sluice_protocol::agent::CONNECT_PATH)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Enabled, a plain GET is told what the endpoint is for.
    let gw = Gateway::start("").await;
    let r = client().get(gw.url(sluice_protocol::agent::CONNECT_PATH)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("agent endpoint"));
}

/// A gateway serving `tls`, a token for it, and its https URL.
async fn tls_gateway(cert: &std::path::Path, key: &std::path::Path) -> (Gateway, String, String) {
    let gw = Gateway::start(&format!(
        "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[store]\nurl = \"sqlite::memory:\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let token = gw.state.store.create_agent_token("tls").await.unwrap().1;
    let url = format!("https://127.0.0.1:{}", gw.addr.port());
    (gw, token, url)
}

/// The certificate the usual one-liner makes (`openssl req -x509 -newkey ... -subj
/// /CN=host -addext subjectAltName=...`) is its own CA: webpki refuses it as a server
/// certificate (`CaUsedAsEndEntity`), yet given with `--ca` it is pinned and works.
/// Without `--ca` the refusal is explained in plain words.
#[tokio::test]
async fn a_self_signed_ca_certificate_given_with_ca_is_pinned() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mock = mock(MockConfig::default()).await;
    let (gw, token, url) = tls_gateway(&cert_path, &key_path).await;

    let untrusting = agent_for(&url, &token, None, &mock).await;
    let err = match session::run(&untrusting, &CancellationToken::new()).await {
        Err(SessionError::Connect(e)) => e,
        other => panic!("{:?}", other.err()),
    };
    assert!(err.contains("presents a CA certificate as its own") && err.contains("--ca FILE"), "{err}");

    let agent = agent_for(&url, &token, Some(&cert_path), &mock).await;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { agent.run(stop).await });
    let mut connected = gw.state.agents.watch();
    tokio::time::timeout(SOON, connected.wait_for(|n| *n == 1)).await.unwrap().unwrap();
    shutdown.cancel();
    tokio::time::timeout(SOON, task).await.unwrap().unwrap().unwrap();
}

/// `sluice tls generate` output: the server pair serves https and wss, and its CA is
/// what agents (`--ca`) and clients trust; a certificate for another name is refused
/// saying so.
#[tokio::test]
async fn generated_certificates_serve_agents_and_clients() {
    let made = sluice_server::tls::generate(&["127.0.0.1".to_owned(), "localhost".to_owned()], 30).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);
    std::fs::write(path("ca.pem"), &made.ca_cert).unwrap();
    std::fs::write(path("server.pem"), &made.server_chain).unwrap();
    std::fs::write(path("server-key.pem"), &made.server_key).unwrap();
    let mock = mock(MockConfig::default()).await;
    let (gw, token, url) = tls_gateway(&path("server.pem"), &path("server-key.pem")).await;
    let agent = agent_for(&url, &token, Some(&path("ca.pem")), &mock).await;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { agent.run(stop).await });
    let mut connected = gw.state.agents.watch();
    tokio::time::timeout(SOON, connected.wait_for(|n| *n == 1)).await.unwrap().unwrap();
    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(made.ca_cert.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = https.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    shutdown.cancel();
    tokio::time::timeout(SOON, task).await.unwrap().unwrap().unwrap();

    let other = sluice_server::tls::generate(&["gateway.example".to_owned()], 30).unwrap();
    std::fs::write(path("other.pem"), &other.server_chain).unwrap();
    std::fs::write(path("other-key.pem"), &other.server_key).unwrap();
    std::fs::write(path("other-ca.pem"), &other.ca_cert).unwrap();
    let (_gw, token, url) = tls_gateway(&path("other.pem"), &path("other-key.pem")).await;
    let agent = agent_for(&url, &token, Some(&path("other-ca.pem")), &mock).await;
    let err = match session::run(&agent, &CancellationToken::new()).await {
        Err(SessionError::Connect(e)) => e,
        other => panic!("{:?}", other.err()),
    };
    assert!(err.contains("does not name the host"), "{err}");
}
