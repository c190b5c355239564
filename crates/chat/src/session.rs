//! One conversation: the model, the history, the sampling options, and how a turn is
//! asked, streamed to the terminal and stopped.
//!
//! History rules: a turn that fails (no answer, error mid-stream) is taken back, so the
//! user can simply ask again; a turn stopped with Ctrl-C keeps the part of the answer
//! that was shown, so the model sees what the user saw.

use std::io::{self, Write as _};

use sluice_protocol::openai::{ChatCompletionRequest, ChatMessage, MessageContent};

use super::{
    client::{AnswerStream, ClientError, GatewayClient},
    input::Command,
    note,
    terminal::Interrupts,
};

/// Sampling options sent with every turn.
#[derive(Debug, Clone, Default)]
pub struct Sampling {
    /// A system prompt, sent first in every request.
    pub system: Option<String>,
    /// Temperature.
    pub temperature: Option<f32>,
    /// Seed.
    pub seed: Option<i64>,
    /// Output token cap per answer.
    pub max_tokens: Option<u32>,
}

/// Whether the session goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next input.
    Continue,
    /// Leave.
    Exit,
}

/// How a turn ended.
#[derive(Debug)]
enum Ending {
    Complete,
    Stopped,
    Failed(ClientError),
}

/// The conversation with one gateway.
pub struct Session {
    client: GatewayClient,
    model: String,
    sampling: Sampling,
    history: Vec<ChatMessage>,
}

const HELP: &str = "\
Type a message and press Enter. Commands:
  /model           list the gateway's models
  /model NAME      talk to NAME from now on (the conversation is kept)
  /clear           forget the conversation
  /help, /?        this help
  /bye             leave (or Ctrl-D)
Multi-line: start with \"\"\" and end with \"\"\", or end a line with \\ to go on.
Ctrl-C stops an answer; at an empty prompt, press it twice to leave.";

impl Session {
    /// A fresh conversation with `model`.
    pub fn new(client: GatewayClient, model: String, sampling: Sampling) -> Session {
        Session { client, model, sampling, history: Vec::new() }
    }

    /// The current model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> &str {
        self.client.base()
    }

    /// Carries out a command. Errors from the gateway are printed, never fatal; only
    /// a terminal that cannot be written to is.
    pub async fn command(&mut self, command: Command) -> io::Result<Flow> {
        match command {
            Command::Bye => return Ok(Flow::Exit),
            Command::Clear => {
                self.history.clear();
                note("Conversation cleared.");
            }
            Command::Help => writeln!(io::stdout(), "{HELP}")?,
            Command::Model(None) => match self.client.models().await {
                Ok(models) => {
                    let mut out = io::stdout().lock();
                    for m in models {
                        let mark = if m == self.model { "*" } else { " " };
                        writeln!(out, "{mark} {m}")?;
                    }
                    out.flush()?;
                }
                Err(e) => note(format_args!("error: {e}")),
            },
            Command::Model(Some(name)) => match self.client.check_model(&name).await {
                Ok(()) => {
                    note(format_args!("Now talking to {name}."));
                    self.model = name;
                }
                Err(e) => note(format_args!("error: {e} (still talking to {})", self.model)),
            },
            Command::Unknown(name) => note(format_args!("Unknown command '{name}'. Type /help for help.")),
        }
        Ok(Flow::Continue)
    }

    /// Asks `text`, printing the answer as it streams, until it is complete, fails, or
    /// Ctrl-C stops it (which drops the request, so the gateway stops generating).
    pub async fn ask(&mut self, text: String, interrupts: &mut Interrupts) -> io::Result<()> {
        self.history.push(message("user", text));
        let request = self.request();
        let mut answer = String::new();
        let ending = tokio::select! {
            started = self.client.chat(&request) => match started {
                Ok(stream) => stream_answer(stream, &mut answer, interrupts).await?,
                Err(e) => Ending::Failed(e),
            },
            () = interrupts.recv() => Ending::Stopped,
        };
        if !answer.is_empty() && !answer.ends_with('\n') {
            writeln!(io::stdout())?;
        }
        match ending {
            Ending::Complete => self.history.push(message("assistant", answer)),
            Ending::Stopped => {
                note("[answer stopped]");
                if answer.is_empty() {
                    self.history.pop();
                } else {
                    self.history.push(message("assistant", answer));
                }
            }
            Ending::Failed(e) => {
                note(format_args!("error: {e}"));
                self.history.pop();
            }
        }
        Ok(())
    }

    fn request(&self) -> ChatCompletionRequest {
        let system = self.sampling.system.iter().map(|s| message("system", s.clone()));
        ChatCompletionRequest {
            model: self.model.clone(),
            messages: system.chain(self.history.iter().cloned()).collect(),
            stream: Some(true),
            max_tokens: self.sampling.max_tokens,
            temperature: self.sampling.temperature,
            seed: self.sampling.seed,
            ..ChatCompletionRequest::default()
        }
    }
}

/// Prints deltas as they arrive (flushed one by one) into `answer`, until the end or
/// Ctrl-C. An `Err` means standard output is gone.
async fn stream_answer(
    mut stream: AnswerStream,
    answer: &mut String,
    interrupts: &mut Interrupts,
) -> io::Result<Ending> {
    loop {
        let next = tokio::select! {
            next = stream.next_delta() => next,
            () = interrupts.recv() => return Ok(Ending::Stopped),
        };
        match next {
            Ok(Some(delta)) => {
                let mut out = io::stdout().lock();
                out.write_all(delta.as_bytes())?;
                out.flush()?;
                answer.push_str(&delta);
            }
            Ok(None) => return Ok(Ending::Complete),
            Err(e) => return Ok(Ending::Failed(e)),
        }
    }
}

fn message(role: &str, text: String) -> ChatMessage {
    ChatMessage { role: role.to_owned(), content: Some(MessageContent::Text(text)), ..ChatMessage::default() }
}
