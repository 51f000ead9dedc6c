//! The text of a generation as it grows: pieces safe to hand out (whole characters, no
//! beginning of a stop string, no tool call that may still be forming), and a thinking model's
//! reasoning told apart from its answer.

use super::Reasoning;
use crate::tools::ToolFormat;

/// Turns a growing token sequence into text pieces that never split a UTF-8 character and never
/// show the beginning of a stop string before it is known not to be one. For a thinking model,
/// it tells the reasoning (`<think>…</think>`) from the answer, and never shows the tags.
pub(super) struct TextStream {
    stop: Vec<String>,
    /// Hold back text from where a tool call may start.
    calls: Option<ToolFormat>,
    think: Think,
    /// All text decoded so far.
    pub text: String,
    /// How much of `text` has been handed out.
    emitted: usize,
}

pub(super) const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// Where a thinking model's reasoning is in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Think {
    /// No reasoning: all text is the answer.
    Off,
    /// The output may open with `<think>`: not known yet.
    Maybe,
    /// Reasoning from `start` on, not closed yet.
    Open { start: usize },
    /// Reasoning in `start..end`, the answer from `answer` on.
    Closed {
        start: usize,
        end: usize,
        answer: usize,
    },
}

impl Think {
    fn new(reasoning: Reasoning) -> Self {
        match reasoning {
            Reasoning::Off | Reasoning::Auto => Think::Off,
            Reasoning::Split { opened: false } => Think::Maybe,
            Reasoning::Split { opened: true } => Think::Open { start: 0 },
        }
    }

    /// The state once `text` is known; no tag starts before byte `from` (text handed out).
    fn after(self, text: &str, from: usize) -> Self {
        match self {
            Think::Maybe => {
                let body = text.trim_start();
                let at = text.len() - body.len();
                if body.starts_with(THINK_OPEN) {
                    Think::Open {
                        start: at + THINK_OPEN.len(),
                    }
                    .after(text, from)
                } else if THINK_OPEN.starts_with(body) {
                    Think::Maybe
                } else {
                    Think::Off
                }
            }
            Think::Open { start } => match text[start.max(from)..].find(THINK_CLOSE) {
                Some(i) => {
                    let end = start.max(from) + i;
                    let rest = &text[end + THINK_CLOSE.len()..];
                    let answer = text.len() - rest.trim_start().len();
                    Think::Closed { start, end, answer }
                }
                None => self,
            },
            other => other,
        }
    }

    /// The spans of the text: (from, to, Some(reasoning?)) shown, None for tags and text not
    /// known yet left out.
    fn spans(self) -> [(usize, usize, Option<bool>); 4] {
        const NONE: (usize, usize, Option<bool>) = (0, 0, None);
        match self {
            Think::Off => [(0, usize::MAX, Some(false)), NONE, NONE, NONE],
            Think::Maybe => [NONE; 4],
            Think::Open { start } => [(start, usize::MAX, Some(true)), NONE, NONE, NONE],
            Think::Closed { start, end, answer } => [
                (start, end, Some(true)),
                (answer, usize::MAX, Some(false)),
                NONE,
                NONE,
            ],
        }
    }

    /// Where the answer starts, once known.
    fn answer(self) -> Option<usize> {
        match self {
            Think::Off => Some(0),
            Think::Closed { answer, .. } => Some(answer),
            Think::Maybe | Think::Open { .. } => None,
        }
    }
}

impl TextStream {
    pub fn new(stop: Vec<String>, calls: Option<ToolFormat>, reasoning: Reasoning) -> Self {
        Self {
            stop,
            calls,
            think: Think::new(reasoning),
            text: String::new(),
            emitted: 0,
        }
    }

    /// Updates with the decoding of all generated tokens. Returns the next safe pieces (text,
    /// is it reasoning) and whether a stop string was found (the text is then cut before it).
    pub fn update(&mut self, decoded: String) -> (Vec<(String, bool)>, bool) {
        self.text = decoded;
        if let Some(cut) = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                let from = self.searched_from(s);
                self.text[from..].find(s.as_str()).map(|i| from + i)
            })
            .min()
        {
            self.text.truncate(cut);
            return (self.finish(), true);
        }
        self.think = self
            .think
            .after(&self.text, self.searched_from(THINK_CLOSE));
        if self.think == Think::Maybe {
            // Nothing is shown until it is known whether the output opens with reasoning.
            return (Vec::new(), false);
        }
        // An incomplete character decodes to U+FFFD at the end: wait for the next token.
        let mut safe = self.text.len();
        if self.text.ends_with('\u{FFFD}') {
            safe -= '\u{FFFD}'.len_utf8();
        }
        // Hold back a suffix that could grow into a stop string, `</think>` while reasoning,
        // or a call's marker in the answer.
        let answer = self.think.answer();
        let close = matches!(self.think, Think::Open { .. }).then_some(THINK_CLOSE);
        let marker = self
            .calls
            .filter(|_| answer.is_some())
            .and_then(ToolFormat::marker);
        for s in self
            .stop
            .iter()
            .map(String::as_str)
            .chain(close)
            .chain(marker)
        {
            for (i, _) in s.char_indices().skip(1) {
                if self.text[..safe].ends_with(&s[..i]) {
                    safe = safe.min(self.text.len() - i);
                }
            }
        }
        if let (Some(format), Some(answer)) = (self.calls, answer) {
            let from = self
                .searched_from(format.marker().unwrap_or(""))
                .max(answer)
                - answer;
            if let Some(at) = format.call_start(&self.text[answer..], from) {
                safe = safe.min(answer + at);
            }
        }
        (self.take(safe), false)
    }

    /// Where to look for `s`: it cannot start in text already handed out (a beginning of it
    /// is held back), so each step searches only the new text and a length of `s` before it.
    fn searched_from(&self, s: &str) -> usize {
        let mut from = self.emitted.saturating_sub(s.len()).min(self.text.len());
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        from
    }

    fn take(&mut self, upto: usize) -> Vec<(String, bool)> {
        if upto <= self.emitted || !self.text.is_char_boundary(upto) {
            return Vec::new();
        }
        let mut pieces = Vec::new();
        for (from, to, shown) in self.think.spans() {
            let (from, to) = (from.max(self.emitted), to.min(upto));
            if let (Some(reasoning), true) = (shown, from < to) {
                pieces.push((self.text[from..to].to_string(), reasoning));
            }
        }
        self.emitted = upto;
        pieces
    }

    /// Whatever is left once generation ends.
    pub fn finish(&mut self) -> Vec<(String, bool)> {
        if self.think == Think::Maybe {
            // The output never opened reasoning.
            self.think = Think::Off;
        }
        self.take(self.text.len())
    }

    /// The reasoning, for a thinking model that wrote some.
    pub fn reasoning(&self) -> Option<String> {
        match self.think {
            Think::Open { start } => Some(self.text[start..].trim().to_string()),
            Think::Closed { start, end, .. } => Some(self.text[start..end].trim().to_string()),
            Think::Off | Think::Maybe => None,
        }
    }

    /// The answer: the text after the reasoning (none while it is still open).
    pub fn answer(&self) -> &str {
        match self.think {
            Think::Open { .. } => "",
            t => &self.text[t.answer().unwrap_or(0)..],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(stop: &[&str]) -> TextStream {
        let stop = stop.iter().map(|s| s.to_string()).collect();
        TextStream::new(stop, None, Reasoning::Off)
    }

    /// The pieces as one string, reasoning in brackets.
    fn shown(pieces: Vec<(String, bool)>) -> String {
        pieces
            .into_iter()
            .map(|(t, r)| if r { format!("[{t}]") } else { t })
            .collect()
    }

    #[test]
    fn stream_holds_back_incomplete_characters() {
        let mut s = plain(&[]);
        assert_eq!(shown(s.update("ab\u{FFFD}".into()).0), "ab");
        assert_eq!(shown(s.update("abé".into()).0), "é");
    }

    #[test]
    fn stream_cuts_at_stop_string_and_never_shows_it() {
        let mut s = plain(&["\nUser:"]);
        assert_eq!(
            s.update("Hi\nUs".into()),
            (vec![("Hi".to_string(), false)], false)
        );
        assert_eq!(s.update("Hi\nUser: x".into()), (vec![], true));
        assert_eq!(s.text, "Hi");
    }

    #[test]
    fn stream_releases_a_false_stop_prefix() {
        let mut s = plain(&["END"]);
        assert_eq!(shown(s.update("xE".into()).0), "x");
        assert_eq!(shown(s.update("xEx".into()).0), "Ex");
    }

    #[test]
    fn reasoning_comes_apart_from_the_answer_without_its_tags() {
        let mut s = TextStream::new(vec![], None, Reasoning::Split { opened: false });
        let mut out = String::new();
        for text in [
            "<th",
            "<think>\nHm",
            "<think>\nHmm.</th",
            "<think>\nHmm.</think>\n\n",
            "<think>\nHmm.</think>\n\nYes.",
        ] {
            out += &shown(s.update(text.into()).0);
        }
        out += &shown(s.finish());
        assert_eq!(out, "[\nHm][m.]Yes.");
        assert_eq!(
            (s.reasoning().as_deref(), s.answer()),
            (Some("Hmm."), "Yes.")
        );

        // The prompt opened it (DeepSeek-R1); never closed, all of it is reasoning.
        let mut s = TextStream::new(vec![], None, Reasoning::Split { opened: true });
        assert_eq!(shown(s.update("Let me see".into()).0), "[Let me see]");
        assert_eq!(
            (s.reasoning().as_deref(), s.answer()),
            (Some("Let me see"), "")
        );

        // No `<think>` at the start: all answer.
        let mut s = TextStream::new(vec![], None, Reasoning::Split { opened: false });
        assert_eq!(shown(s.update(" <".into()).0), "");
        assert_eq!(shown(s.update(" <b>".into()).0), " <b>");
        assert_eq!(s.reasoning(), None);
    }

    #[test]
    fn streams_hold_back_what_may_be_a_call() {
        let calls = |format| TextStream::new(vec![], Some(format), Reasoning::Off);
        let mut s = calls(ToolFormat::Hermes);
        assert_eq!(shown(s.update("Sure <tool".into()).0), "Sure ");
        let mut s = calls(ToolFormat::Hermes);
        assert_eq!(shown(s.update("a <tool_call>\n{".into()).0), "a ");
        assert_eq!(shown(s.update("a <tool_call>\n{\"n".into()).0), "");
        let mut s = calls(ToolFormat::Hermes);
        assert_eq!(shown(s.update("plain".into()).0), "plain");
        let mut s = calls(ToolFormat::Llama3);
        assert_eq!(shown(s.update("  ".into()).0), "");
        assert_eq!(shown(s.update(" {\"na".into()).0), "");
        let mut s = calls(ToolFormat::Llama3);
        assert_eq!(shown(s.update("Hello".into()).0), "Hello");
    }

    #[test]
    fn a_stop_string_after_text_handed_out_is_found() {
        let mut s = plain(&["END"]);
        assert_eq!(shown(s.update("abc E".into()).0), "abc ");
        assert_eq!(s.update("abc EN".into()).0, vec![]);
        assert_eq!(s.update("abc END tail".into()), (vec![], true));
        assert_eq!(s.text, "abc ");
    }

    #[test]
    fn a_call_after_reasoning_is_held_back() {
        let mut s = TextStream::new(
            vec![],
            Some(ToolFormat::Hermes),
            Reasoning::Split { opened: true },
        );
        let all = "x</think>Sure. <tool_call>\n{";
        assert_eq!(shown(s.update(all.into()).0), "[x]Sure. ");
        assert_eq!(s.answer(), "Sure. <tool_call>\n{");
    }
}
