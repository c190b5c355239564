//! Turns typed lines into what the user meant: a message, a command, or "keep reading".
//!
//! As in `ollama run`, a line starting with `"""` opens a block that the next line
//! ending with `"""` closes, and a line ending with `\` continues on the next line;
//! either way the lines arrive as one message joined by newlines. A line starting with
//! `/` outside a block is a command. Pure, so every rule is unit-tested.

/// Opens and closes a multi-line block.
const BLOCK: &str = "\"\"\"";

/// A `/` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/bye` (also `/exit`, `/quit`): leave.
    Bye,
    /// `/clear`: forget the conversation.
    Clear,
    /// `/help` or `/?`.
    Help,
    /// `/model` lists the models; `/model NAME` switches to one.
    Model(Option<String>),
    /// Anything else starting with `/`.
    Unknown(String),
}

/// What one line of input amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A complete message for the model.
    Message(String),
    /// A command.
    Command(Command),
    /// Inside a block or after a trailing `\`: read another line.
    More,
    /// A blank line: nothing to do.
    Nothing,
}

/// Where the parser is between lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Mode {
    /// At the start of a new input.
    #[default]
    Fresh,
    /// Inside a `"""` block.
    Block,
    /// After a line ending with `\`.
    Continued,
}

/// Collects lines until they form a message or a command.
#[derive(Debug, Default)]
pub struct InputParser {
    lines: Vec<String>,
    mode: Mode,
}

impl InputParser {
    /// Takes one line (without its line break).
    pub fn feed(&mut self, line: &str) -> Input {
        match self.mode {
            Mode::Block => {
                if let Some(last) = line.trim_end().strip_suffix(BLOCK) {
                    self.lines.push(last.to_owned());
                    return self.finish();
                }
                self.lines.push(line.to_owned());
                Input::More
            }
            Mode::Fresh => {
                let trimmed = line.trim_start();
                if let Some(rest) = trimmed.strip_prefix(BLOCK) {
                    if let Some(inner) = rest.trim_end().strip_suffix(BLOCK) {
                        self.lines.push(inner.to_owned());
                        return self.finish();
                    }
                    self.mode = Mode::Block;
                    if !rest.trim().is_empty() {
                        self.lines.push(rest.to_owned());
                    }
                    return Input::More;
                }
                if trimmed.starts_with('/') {
                    return Input::Command(parse_command(trimmed));
                }
                self.continue_or_finish(line)
            }
            Mode::Continued => self.continue_or_finish(line),
        }
    }

    /// True while a block or a continued line is unfinished.
    pub fn is_pending(&self) -> bool {
        self.mode != Mode::Fresh
    }

    /// Drops an unfinished block or continued line (Ctrl-C while typing one).
    pub fn reset(&mut self) {
        self.lines.clear();
        self.mode = Mode::Fresh;
    }

    fn continue_or_finish(&mut self, line: &str) -> Input {
        if let Some(head) = line.strip_suffix('\\') {
            self.lines.push(head.to_owned());
            self.mode = Mode::Continued;
            return Input::More;
        }
        self.lines.push(line.to_owned());
        self.finish()
    }

    fn finish(&mut self) -> Input {
        let text = self.lines.join("\n");
        self.reset();
        if text.trim().is_empty() { Input::Nothing } else { Input::Message(text) }
    }
}

fn parse_command(line: &str) -> Command {
    let mut words = line.split_whitespace();
    match words.next().unwrap_or_default() {
        "/bye" | "/exit" | "/quit" => Command::Bye,
        "/clear" => Command::Clear,
        "/help" | "/?" => Command::Help,
        "/model" => Command::Model(words.next().map(str::to_owned)),
        other => Command::Unknown(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(lines: &[&str]) -> Vec<Input> {
        let mut p = InputParser::default();
        lines.iter().map(|l| p.feed(l)).collect()
    }

    fn message(s: &str) -> Input {
        Input::Message(s.to_owned())
    }

    #[test]
    fn plain_lines_and_blank_lines() {
        assert_eq!(
            feed_all(&["hello there", "", "   "]),
            [message("hello there"), Input::Nothing, Input::Nothing]
        );
    }

    #[test]
    fn a_block_is_one_message() {
        let got = feed_all(&["\"\"\"", "line one", "", "/not a command", "line four\"\"\"", "after"]);
        assert_eq!(
            got,
            [
                Input::More,
                Input::More,
                Input::More,
                Input::More,
                message("line one\n\n/not a command\nline four"),
                message("after"),
            ]
        );
    }

    #[test]
    fn block_text_on_the_opening_and_closing_lines() {
        assert_eq!(feed_all(&["\"\"\"first", "\"\"\""]), [Input::More, message("first\n")]);
        assert_eq!(feed_all(&["  \"\"\"all on one line\"\"\"  "]), [message("all on one line")]);
        assert_eq!(feed_all(&["\"\"\"\"\"\""]), [Input::Nothing]);
    }

    #[test]
    fn trailing_backslash_continues() {
        let mut p = InputParser::default();
        assert_eq!(p.feed("first \\"), Input::More);
        assert!(p.is_pending());
        assert_eq!(p.feed("/second\\"), Input::More, "a continued line is never a command");
        assert_eq!(p.feed("third"), message("first \n/second\nthird"));
        assert!(!p.is_pending());
    }

    #[test]
    fn commands() {
        let cmd = |s: &str| feed_all(&[s]).remove(0);
        assert_eq!(cmd("/bye"), Input::Command(Command::Bye));
        assert_eq!(cmd("  /exit"), Input::Command(Command::Bye));
        assert_eq!(cmd("/clear"), Input::Command(Command::Clear));
        assert_eq!(cmd("/?"), Input::Command(Command::Help));
        assert_eq!(cmd("/model"), Input::Command(Command::Model(None)));
        assert_eq!(cmd("/model  qwen2:7b "), Input::Command(Command::Model(Some("qwen2:7b".into()))));
        assert_eq!(cmd("/frobnicate now"), Input::Command(Command::Unknown("/frobnicate".into())));
    }

    #[test]
    fn reset_drops_an_unfinished_block() {
        let mut p = InputParser::default();
        assert_eq!(p.feed("\"\"\""), Input::More);
        assert_eq!(p.feed("half a thought"), Input::More);
        p.reset();
        assert!(!p.is_pending());
        assert_eq!(p.feed("new"), message("new"));
    }
}
