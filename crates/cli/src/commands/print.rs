//! How `candor run` and `candor chat` print a generation as it streams: the answer as it is, a
//! thinking model's reasoning dimmed on a terminal (between `<think>` tags when piped), or not at
//! all with `--hide-thinking`.

use candor_engine::Piece;
use std::io::{self, Write};

pub struct Printer<W: Write> {
    out: W,
    hide_thinking: bool,
    terminal: bool,
    /// The last piece printed was reasoning.
    in_reasoning: bool,
}

impl Printer<io::StdoutLock<'static>> {
    /// Standard output, dimming reasoning when it is a terminal.
    pub fn stdout(hide_thinking: bool) -> Self {
        let out = io::stdout();
        let terminal = io::IsTerminal::is_terminal(&out);
        Printer::new(out.lock(), hide_thinking, terminal)
    }
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, hide_thinking: bool, terminal: bool) -> Self {
        Self {
            out,
            hide_thinking,
            terminal,
            in_reasoning: false,
        }
    }

    /// Prints a piece; an error (a closed pipe, `| head`) should end the generation.
    pub fn piece(&mut self, piece: Piece) -> io::Result<()> {
        if piece.reasoning && self.hide_thinking {
            return Ok(());
        }
        if piece.reasoning != self.in_reasoning {
            let mark = match (piece.reasoning, self.terminal) {
                (true, true) => "\x1b[2m",
                (false, true) => "\x1b[0m\n",
                (true, false) => "<think>\n",
                (false, false) => "\n</think>\n\n",
            };
            self.out.write_all(mark.as_bytes())?;
            self.in_reasoning = piece.reasoning;
        }
        self.out.write_all(piece.text.as_bytes())?;
        self.out.flush()
    }

    /// Ends the output: closes open reasoning and the line.
    pub fn end(&mut self) -> io::Result<()> {
        if self.in_reasoning {
            let mark = if self.terminal {
                "\x1b[0m"
            } else {
                "\n</think>"
            };
            self.out.write_all(mark.as_bytes())?;
            self.in_reasoning = false;
        }
        writeln!(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, reasoning: bool) -> Piece<'_> {
        Piece {
            text,
            reasoning,
            logprobs: &[],
        }
    }

    #[test]
    fn reasoning_is_marked_dimmed_or_hidden() {
        let print = |hide, terminal| {
            let mut p = Printer::new(Vec::new(), hide, terminal);
            p.piece(piece("Hmm", true)).unwrap();
            p.piece(piece("Yes.", false)).unwrap();
            p.end().unwrap();
            String::from_utf8(p.out).unwrap()
        };
        assert_eq!(print(false, false), "<think>\nHmm\n</think>\n\nYes.\n");
        assert_eq!(print(false, true), "\x1b[2mHmm\x1b[0m\nYes.\n");
        assert_eq!(print(true, true), "Yes.\n");
    }
}
