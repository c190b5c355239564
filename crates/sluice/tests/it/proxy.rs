//! A first token slower than a reverse proxy's idle timeout survives through a real
//! nginx (Debian's, installed by `scripts/setup.sh`), because the gateway sends its
//! headers and keep-alives early. In CI it runs scaled down from 70 s through a 60 s
//! `proxy_read_timeout`: first token after 5 s, timeout 3 s, early headers after 1 s.
//! The full-scale run (70 s / 60 s / the default 10 s) is ignored by default:
//! `cargo nextest run -p sluice --run-ignored only -E 'test(/full_scale/)'`.

use std::{path::Path, process::Stdio, time::Duration};

use sluice_mock::MockConfig;

use crate::util::*;

/// An nginx in front of `upstream` with `read_timeout` as its `proxy_read_timeout`;
/// killed when dropped.
struct Nginx {
    port: u16,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(upstream: std::net::SocketAddr, read_timeout: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://{upstream};\n\
             proxy_http_version 1.1;\n      proxy_read_timeout {read_timeout};\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        // Workers may run as another user: let them use the temp directories.
        set_open(dir.path());
        let child = tokio::process::Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-g")
            .arg("daemon off;")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx runs (scripts/setup.sh installs it)");
        let ready = async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ready).await.expect("nginx listens");
        let mut child = child;
        assert!(child.try_wait().unwrap().is_none(), "nginx is running (not another one on port {port})");
        Nginx { port, _child: child, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" }
}

fn set_open(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// A streamed answer whose first token comes after `first_ms`, through an nginx with
/// `read_timeout`, the gateway sending early headers after `early` ("0s": never) and
/// keep-alives every `keepalive`.
async fn through_nginx(early: &str, keepalive: &str, read_timeout: &str, first_ms: u64) -> (u16, String) {
    let mock = mock(MockConfig::default()).await;
    let server = format!("[server]\nearly_headers_after = \"{early}\"\nsse_keepalive = \"{keepalive}\"\n");
    let gw = Gateway::start(&format!("{server}{}", backend_toml("m", "openai", &mock, ""))).await;
    let nginx = Nginx::start(gw.addr, read_timeout).await;
    let resp = client()
        .post(nginx.url("/v1/chat/completions"))
        .json(&chat_body(&format!("[mock first_ms={first_ms} tokens=3]"), true))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_first_token_slower_than_the_proxy_timeout_survives_nginx() {
    // One test, so the two nginx processes never run side by side.
    let (status, text) = through_nginx("1s", "1s", "3s", 5000).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    assert!(text.contains("\"t0 \"") && text.ends_with("data: [DONE]\n\n"), "{text}");
    // The control: the same wait with early headers off is cut by nginx (504).
    let (status, text) = through_nginx("0s", "1s", "3s", 5000).await;
    assert_eq!(status, 504, "{text}");
}

/// The issue's own figures: a first token after 70 s through nginx's 60 s
/// `proxy_read_timeout`, with the gateway's default early headers (10 s) and
/// keep-alives (15 s). Over two minutes of waiting, so not in CI.
#[tokio::test]
#[ignore = "full scale: 70 s and 60 s of waiting"]
async fn full_scale_a_70_s_first_token_survives_a_60_s_nginx() {
    let (status, text) = through_nginx("10s", "15s", "60s", 70_000).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    assert!(text.contains("\"t0 \"") && text.ends_with("data: [DONE]\n\n"), "{text}");
    let (status, text) = through_nginx("0s", "15s", "60s", 70_000).await;
    assert_eq!(status, 504, "{text}");
}
