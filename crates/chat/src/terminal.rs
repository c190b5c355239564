//! The terminal side of `sluice chat`: reading lines (a line editor on a terminal,
//! plain lines from a pipe) and catching Ctrl-C.
//!
//! Reading a line blocks, so it happens on a thread of its own that reads exactly one
//! line per request: the line editor puts the terminal in raw mode only while it reads,
//! which keeps Ctrl-C a signal (caught by [`Interrupts`]) while an answer streams.

use std::{
    io::{self, BufRead as _, IsTerminal as _},
    sync::mpsc as std_mpsc,
};

use rustyline::{DefaultEditor, error::ReadlineError};
use tokio::sync::mpsc;

/// The result of reading one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// A line, without its line break.
    Line(String),
    /// Ctrl-C while reading.
    Interrupted,
    /// End of input (Ctrl-D, or the end of a pipe).
    Eof,
}

/// Reads lines on a dedicated thread, one per [`LineReader::read`].
pub struct LineReader {
    prompts: std_mpsc::Sender<String>,
    lines: mpsc::Receiver<io::Result<ReadOutcome>>,
    /// A line was requested and its answer not yet taken (the read was interrupted).
    waiting: bool,
    /// True when reading from a terminal.
    pub interactive: bool,
}

impl LineReader {
    /// Reads from a line editor if standard input is a terminal, else plain lines
    /// without prompts (so `echo hi | sluice chat` prints only the answer).
    pub fn spawn() -> io::Result<LineReader> {
        let interactive = io::stdin().is_terminal();
        let mut source = if interactive {
            let editor = DefaultEditor::new().map_err(io::Error::other)?;
            Source::Editor(Box::new(editor))
        } else {
            Source::Plain
        };
        let (prompts, prompt_rx) = std_mpsc::channel::<String>();
        let (line_tx, lines) = mpsc::channel(1);
        // A plain thread, not `spawn_blocking`: a read that never returns must not keep
        // the runtime from shutting down when the session ends.
        std::thread::Builder::new().name("sluice-chat-input".into()).spawn(move || {
            for prompt in prompt_rx {
                if line_tx.blocking_send(source.read(&prompt)).is_err() {
                    break;
                }
            }
        })?;
        Ok(LineReader { prompts, lines, waiting: false, interactive })
    }

    /// Reads one line after showing `prompt` (on a terminal). Cancel-safe: if the
    /// future is dropped, the next call returns the line that was being read.
    pub async fn read(&mut self, prompt: &str) -> io::Result<ReadOutcome> {
        if !self.waiting {
            self.prompts.send(prompt.to_owned()).map_err(|_| io::Error::other("input thread is gone"))?;
            self.waiting = true;
        }
        let outcome =
            self.lines.recv().await.unwrap_or_else(|| Err(io::Error::other("input thread is gone")));
        self.waiting = false;
        outcome
    }
}

enum Source {
    Editor(Box<DefaultEditor>),
    Plain,
}

impl Source {
    fn read(&mut self, prompt: &str) -> io::Result<ReadOutcome> {
        match self {
            Source::Editor(editor) => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        // History is a convenience: failing to record a line is no error.
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Ok(ReadOutcome::Line(line))
                }
                Err(ReadlineError::Interrupted) => Ok(ReadOutcome::Interrupted),
                Err(ReadlineError::Eof) => Ok(ReadOutcome::Eof),
                Err(e) => Err(io::Error::other(e)),
            },
            Source::Plain => {
                let mut line = String::new();
                if io::stdin().lock().read_line(&mut line)? == 0 {
                    return Ok(ReadOutcome::Eof);
                }
                let len = line.trim_end_matches(['\n', '\r']).len();
                line.truncate(len);
                Ok(ReadOutcome::Line(line))
            }
        }
    }
}

/// Ctrl-C (SIGINT) as an event. Once created, Ctrl-C no longer ends the process.
///
/// One listener for the whole session, rather than a fresh `ctrl_c()` per wait, so a
/// Ctrl-C that lands between two waits is not lost.
pub struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Starts listening.
    pub fn listen() -> io::Result<Interrupts> {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
            Ok(Interrupts { signal })
        }
        #[cfg(not(unix))]
        Ok(Interrupts {})
    }

    /// Resolves at the next Ctrl-C. Cancel-safe.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
