//! `sluice chat`: the real binary, fed through a pipe, against a gateway over the mock
//! upstream. Every read of its output has a deadline.

use std::{pin::Pin, process::Stdio};

use serde_json::Value;
use sluice_mock::{MockConfig, MockServer, Pace};
use sluice_server::auth::hash_key;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
    process::{Child, ChildStdin},
};

use crate::util::*;

/// A running `sluice chat`.
struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Pipe,
    err: Pipe,
}

impl Chat {
    /// `sluice chat ARGS` with piped standard streams and none of the user's settings.
    fn spawn(args: &[&str]) -> Chat {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("chat")
            .args(args)
            .env_remove("SLUICE_URL")
            .env_remove("SLUICE_API_KEY")
            .env_remove("SLUICE_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = Pipe::new(child.stdout.take().unwrap());
        let err = Pipe::new(child.stderr.take().unwrap());
        Chat { child, stdin, out, err }
    }

    /// `sluice chat --url <gateway> --no-local ARGS`.
    fn with(gw: &Gateway, args: &[&str]) -> Chat {
        let url = gw.url("");
        let mut all = vec!["--url", url.as_str(), "--no-local"];
        all.extend_from_slice(args);
        Chat::spawn(&all)
    }

    /// Types `line` and Enter.
    async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        let typed = async {
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await
        };
        tokio::time::timeout(SOON, typed).await.expect("stdin accepts the line").unwrap();
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    fn interrupt(&self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success(), "kill -INT {pid} failed");
    }

    fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to end on its own.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(SOON, self.child.wait()).await.expect("sluice chat exits").unwrap()
    }

    /// Closes standard input (Ctrl-D) and waits for a clean exit.
    async fn finish(mut self) {
        self.stdin = None;
        let status = self.exit_status().await;
        let rest = self.err.rest().await;
        assert!(status.success(), "exit {status}; stderr: {rest}");
    }
}

/// One output stream of the child, read as far as a test needs.
struct Pipe {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    text: String,
    taken: usize,
}

impl Pipe {
    fn new(reader: impl AsyncRead + Send + 'static) -> Pipe {
        Pipe { reader: Box::pin(reader), text: String::new(), taken: 0 }
    }

    /// Everything up to and including the next `needle`.
    async fn until(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(SOON, async {
            loop {
                if let Some(at) = self.text[self.taken..].find(needle) {
                    let end = self.taken + at + needle.len();
                    let seen = self.text[self.taken..end].to_owned();
                    self.taken = end;
                    return true.then_some(seen);
                }
                let mut buf = [0u8; 4096];
                let n = self.reader.read(&mut buf).await.unwrap();
                if n == 0 {
                    return None;
                }
                // The tests' texts are ASCII: a chunk never splits a character.
                self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
        let unread = &self.text[self.taken..];
        match found {
            Ok(Some(seen)) => seen,
            Ok(None) => panic!("output ended before {needle:?}; unread: {unread:?}"),
            Err(_) => panic!("no {needle:?} within {SOON:?}; unread: {unread:?}"),
        }
    }

    /// The rest of the output, up to its end.
    async fn rest(&mut self) -> String {
        let mut tail = Vec::new();
        tokio::time::timeout(SOON, self.reader.read_to_end(&mut tail)).await.expect("output ends").unwrap();
        self.text.push_str(&String::from_utf8_lossy(&tail));
        let rest = self.text[self.taken..].to_owned();
        self.taken = self.text.len();
        rest
    }
}

/// (role, content) of each message the mock received last.
fn sent_messages(mock: &MockServer) -> Vec<(String, String)> {
    let body = mock.stats().last().expect("the mock got a request").body;
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(r, c)| ((*r).to_owned(), (*c).to_owned())).collect()
}

fn last_body(mock: &MockServer) -> Value {
    mock.stats().last().expect("the mock got a request").body
}

#[tokio::test]
async fn answers_stream_and_the_history_follows_the_conversation() {
    let mock = mock(MockConfig { tokens: 3, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let mut chat = Chat::with(&gw, &["mock-model"]);
    chat.say("hello").await;
    chat.out.until("t0 t1 t2 \n").await;
    assert_eq!(sent_messages(&mock), pairs(&[("user", "hello")]));
    assert_eq!(last_body(&mock)["stream"], true);

    chat.say("again").await;
    chat.out.until("t0 t1 t2 \n").await;
    assert_eq!(
        sent_messages(&mock),
        pairs(&[("user", "hello"), ("assistant", "t0 t1 t2 "), ("user", "again")])
    );

    chat.say("/clear").await;
    chat.err.until("Conversation cleared.").await;
    chat.say("fresh").await;
    chat.out.until("t0 t1 t2 \n").await;
    assert_eq!(sent_messages(&mock), pairs(&[("user", "fresh")]));
    chat.finish().await;
}

/// Token k is on the terminal before the upstream may even produce token k+1.
#[tokio::test]
async fn every_token_is_printed_as_it_arrives() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 3, pace, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let mut chat = Chat::with(&gw, &["mock-model"]);
    gate.add_permits(1);
    chat.say("x").await;
    for k in 0..3 {
        chat.out.until(&format!("t{k} ")).await;
        gate.add_permits(1);
    }
    chat.out.until("\n").await;
    chat.finish().await;
}

#[tokio::test]
async fn flags_shape_every_request() {
    let mock = mock(MockConfig::default()).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let args =
        ["--system", "be brief", "--temperature", "0.5", "--seed", "7", "--max-tokens", "2", "mock-model"];
    let mut chat = Chat::with(&gw, &args);
    chat.say("hi").await;
    chat.out.until("t0 t1 \n").await;
    let body = last_body(&mock);
    assert_eq!((body["temperature"].as_f64(), body["seed"].as_i64()), (Some(0.5), Some(7)), "{body}");
    assert_eq!(body["max_tokens"], 2, "{body}");
    assert_eq!(sent_messages(&mock), pairs(&[("system", "be brief"), ("user", "hi")]));
    chat.finish().await;
}

#[tokio::test]
async fn model_command_lists_and_switches() {
    let models = vec!["mock-model".to_owned(), "other-model".to_owned()];
    let mock = mock(MockConfig { tokens: 2, models, ..Default::default() }).await;
    let toml = format!(
        "[[backends]]\nname = \"mock\"\nkind = \"openai\"\nurl = \"{}\"\nmodels = [\"mock-model\", \"other-model\"]\n",
        mock.openai_base()
    );
    let gw = Gateway::start(&toml).await;
    // No model named: the gateway's first.
    let mut chat = Chat::with(&gw, &[]);
    chat.say("hi").await;
    chat.out.until("t0 t1 \n").await;
    assert_eq!(last_body(&mock)["model"], "mock-model");

    chat.say("/model").await;
    let listing = chat.out.until("other-model\n").await;
    assert!(listing.contains("* mock-model\n"), "{listing}");

    chat.say("/model other-model").await;
    chat.err.until("Now talking to other-model.").await;
    chat.say("hi").await;
    chat.out.until("t0 t1 \n").await;
    assert_eq!(last_body(&mock)["model"], "other-model");
    // The conversation survives the switch.
    assert_eq!(sent_messages(&mock).len(), 3);

    chat.say("/model nosuch").await;
    let refused = chat.err.until("(still talking to other-model)").await;
    assert!(refused.contains("404") && refused.contains("nosuch"), "{refused}");
    chat.say("hi").await;
    chat.out.until("t0 t1 \n").await;
    assert_eq!(last_body(&mock)["model"], "other-model");
    chat.finish().await;
}

/// An unknown model, a stream that breaks, a bad command: each is reported and the
/// session goes on; failed turns are taken back from the history.
#[tokio::test]
async fn failures_are_reported_and_the_session_goes_on() {
    let mock = mock(MockConfig { tokens: 5, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let mut chat = Chat::with(&gw, &["nosuch"]);
    chat.say("hi").await;
    let refused = chat.err.until("\n").await;
    assert!(refused.starts_with("error: 404") && refused.contains("nosuch"), "{refused}");
    assert_eq!(mock.stats().snapshot().requests, 0, "the gateway answered the 404 itself");

    chat.say("/frobnicate").await;
    chat.err.until("Unknown command '/frobnicate'. Type /help for help.\n").await;
    chat.say("/model mock-model").await;
    chat.err.until("Now talking to mock-model.\n").await;

    chat.say("[mock mode=drop_after:2]").await;
    chat.out.until("t0 t1 \n").await;
    let broken = chat.err.until("\n").await;
    assert!(broken.starts_with("error: the answer failed"), "{broken}");

    chat.say("hi").await;
    chat.out.until("t0 t1 t2 t3 t4 \n").await;
    assert_eq!(sent_messages(&mock), pairs(&[("user", "hi")]));
    chat.finish().await;
}

#[tokio::test]
async fn multi_line_input_arrives_as_one_message() {
    let mock = mock(MockConfig { tokens: 1, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let mut chat = Chat::with(&gw, &["mock-model"]);
    for line in ["\"\"\"", "line one", "/not a command", "line three\"\"\""] {
        chat.say(line).await;
    }
    chat.out.until("t0 \n").await;
    assert_eq!(sent_messages(&mock), pairs(&[("user", "line one\n/not a command\nline three")]));

    chat.say("/clear").await;
    chat.say("first \\").await;
    chat.say("second").await;
    chat.out.until("t0 \n").await;
    assert_eq!(sent_messages(&mock), pairs(&[("user", "first \nsecond")]));
    chat.finish().await;
}

/// Ctrl-C mid-answer ends that answer (the upstream sees the cancellation), keeps the
/// part shown, and the next question is answered.
#[tokio::test]
async fn ctrl_c_stops_the_answer_not_the_program() {
    let (pace, gate) = Pace::manual();
    let mock = mock(MockConfig { tokens: 50, pace, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let mut chat = Chat::with(&gw, &["mock-model"]);
    gate.add_permits(1);
    chat.say("tell me a long story").await;
    chat.out.until("t0 ").await; // the stream is open and t1 cannot exist yet
    chat.interrupt();
    tokio::time::timeout(SOON, mock.stats().wait_cancelled(1))
        .await
        .expect("the upstream stream is cancelled");
    chat.err.until("[answer stopped]\n").await;
    chat.out.until("\n").await;
    assert!(chat.is_alive());

    gate.add_permits(1000);
    chat.say("[mock tokens=2]").await;
    chat.out.until("t0 t1 \n").await;
    assert_eq!(
        sent_messages(&mock),
        pairs(&[("user", "tell me a long story"), ("assistant", "t0 "), ("user", "[mock tokens=2]")])
    );
    chat.finish().await;
}

/// Ctrl-C before the first token drops the request and takes the turn back.
#[tokio::test]
async fn ctrl_c_before_the_first_token_takes_the_turn_back() {
    let mock = mock(MockConfig { tokens: 1, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let mut chat = Chat::with(&gw, &["mock-model"]);
    chat.say("[mock first_ms=600000]").await;
    tokio::time::timeout(SOON, mock.stats().wait_started(1)).await.expect("the upstream got the request");
    chat.interrupt();
    tokio::time::timeout(SOON, mock.stats().wait_cancelled(1))
        .await
        .expect("the upstream request is dropped");
    chat.err.until("[answer stopped]\n").await;
    chat.say("next").await;
    chat.out.until("t0 \n").await;
    assert_eq!(sent_messages(&mock), pairs(&[("user", "next")]));
    chat.finish().await;
}

/// At the prompt, a first Ctrl-C prints a hint and a second one leaves.
#[tokio::test]
async fn ctrl_c_twice_at_the_prompt_leaves() {
    let mock = mock(MockConfig { tokens: 1, ..Default::default() }).await;
    let gw = Gateway::over(&mock, "openai", "").await;
    let mut chat = Chat::with(&gw, &["mock-model"]);
    chat.say("hi").await;
    chat.out.until("t0 \n").await; // its signal handler is installed by now
    chat.interrupt();
    chat.err.until("Use Ctrl + d or /bye to exit.").await;
    assert!(chat.is_alive());
    chat.interrupt();
    assert!(chat.exit_status().await.success());
}

#[tokio::test]
async fn api_key_is_sent_and_a_401_is_reported() {
    let mock = mock(MockConfig { tokens: 1, ..Default::default() }).await;
    let extra = format!("[auth]\napi_key_sha256 = [\"{}\"]\n", hash_key("sk-chat-test"));
    let gw = Gateway::start(&format!("{extra}{}", backend_toml("mock", "openai", &mock, ""))).await;

    let mut chat = Chat::with(&gw, &["mock-model"]);
    chat.say("hi").await;
    let refused = chat.err.until("\n").await;
    assert!(refused.starts_with("error: 401"), "{refused}");
    chat.say("/bye").await;
    assert!(chat.exit_status().await.success());

    let mut chat = Chat::with(&gw, &["--api-key", "sk-chat-test", "mock-model"]);
    chat.say("hi").await;
    chat.out.until("t0 \n").await;
    chat.finish().await;
}

/// `--local` serves the configuration `sluice serve` would load, inside the chat.
#[tokio::test]
async fn local_gateway_runs_inside_the_chat() {
    let mock = mock(MockConfig { tokens: 2, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    // Not this machine's default store: users there would need a key.
    let toml = backend_toml("mock", "openai", &mock, "[store]\nurl = \"sqlite::memory:\"\n");
    std::fs::write(&path, toml).unwrap();
    let mut chat = Chat::spawn(&["--local", "--config", path.to_str().unwrap()]);
    chat.say("hi").await;
    chat.out.until("t0 t1 \n").await;
    assert_eq!(last_body(&mock)["model"], "mock-model");
    chat.finish().await;
}

/// Nothing useful at the URL (here: a port that accepts connections and never answers,
/// so the probe's own deadline decides): a clear error, and no local gateway.
#[tokio::test]
async fn no_gateway_is_a_clear_error() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    for (args, hint) in [(vec!["--url", &url, "--no-local"], false), (vec!["--url", &url], true)] {
        let mut chat = Chat::spawn(&args);
        let status = chat.exit_status().await;
        let err = chat.err.rest().await;
        assert!(!status.success(), "{err}");
        assert!(err.contains(&format!("no Sluice gateway answers at {url}")), "{err}");
        assert_eq!(err.contains("--local"), hint, "{err}");
    }
    drop(silent);
}
