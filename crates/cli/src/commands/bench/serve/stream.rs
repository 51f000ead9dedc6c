//! One streamed request and its timings: the request body an OpenAI-compatible server expects,
//! and a reader of its server-sent events that times each chunk carrying text.
//!
//! The server is untrusted: a line, the whole stream and the number of chunks are bounded (the
//! agent's timeout bounds the time), and anything but a well-formed stream ending in `[DONE]` or
//! a finish reason makes the request fail with what was wrong.

use super::stats::Sample;
use crate::args::ServeEndpoint;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read};
use std::time::{Duration, Instant};

/// One line of the event stream (a chunk with one token is a few hundred bytes).
const MAX_LINE_BYTES: usize = 1 << 20;
/// One whole stream.
const MAX_STREAM_BYTES: u64 = 64 << 20;
/// An error answer's body, read for its message.
const MAX_ERROR_BYTES: u64 = 64 << 10;

/// What every request of a run shares.
pub struct Client {
    pub agent: ureq::Agent,
    /// The endpoint's full URL.
    pub url: String,
    pub api_key: Option<String>,
    pub endpoint: ServeEndpoint,
    pub model: String,
    pub max_tokens: usize,
    pub temperature: f32,
}

impl Client {
    /// Streams one completion of `prompt`; `Err` says why the request failed.
    pub fn send(&self, prompt: &str) -> Result<Sample, String> {
        let mut body = json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        match self.endpoint {
            ServeEndpoint::Chat => {
                body["messages"] = json!([{"role": "user", "content": prompt}]);
            }
            ServeEndpoint::Completions => body["prompt"] = json!(prompt),
        }
        let body = body.to_string();
        let start = Instant::now();
        let mut retries = 0;
        let response = loop {
            match self.request().send_string(&body) {
                Ok(r) => break r,
                Err(e) if retries < MAX_RETRIES && unanswered(&e) => retries += 1,
                Err(e) => return Err(describe(e)),
            }
        };
        let kind = response.content_type().to_string();
        if kind != "text/event-stream" {
            return Err(format!(
                "the answer is {kind}, not an event stream (does the server stream with \"stream\": true?)"
            ));
        }
        let max_chunks = self.max_tokens.saturating_mul(4).saturating_add(16);
        let sample = read_stream(BufReader::new(response.into_reader()), start, max_chunks)?;
        Ok(Sample { retries, ..sample })
    }

    fn request(&self) -> ureq::Request {
        let request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .set("Accept", "text/event-stream");
        match &self.api_key {
            Some(key) => request.set("Authorization", &format!("Bearer {key}")),
            None => request,
        }
    }
}

/// Retries of a request the server closed unanswered, as the official OpenAI clients make
/// (their `max_retries` is 2). llama-server closes some new connections right after a stream
/// ends, before reading the request; such a request never reached the model.
const MAX_RETRIES: u32 = 2;

/// Whether the connection closed before any byte of an answer.
fn unanswered(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Transport(t) => {
            t.kind() == ureq::ErrorKind::Io && t.to_string().contains("Unexpected EOF")
        }
        ureq::Error::Status(..) => false,
    }
}

/// What went wrong with a request, in one line: the server's own message for an HTTP error.
pub fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, response) => {
            let mut body = Vec::new();
            let _ = response
                .into_reader()
                .take(MAX_ERROR_BYTES)
                .read_to_end(&mut body);
            format!("HTTP {code}: {}", error_message(&body))
        }
        ureq::Error::Transport(t) => match t.kind() {
            ureq::ErrorKind::Io if is_timeout(&t.to_string()) => "timed out".to_string(),
            _ => one_line(&t.to_string()),
        },
    }
}

fn is_timeout(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("timed out") || m.contains("timeout") || m.contains("would block")
}

/// The message of an OpenAI-style error body (`{"error": {"message": …}}`, vLLM's
/// `{"message": …}`, FastAPI's `{"detail": …}`), else the body itself.
pub fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let e = v.get("error").unwrap_or(&v);
            match [e.get("message"), v.get("message"), v.get("detail"), Some(e)]
                .into_iter()
                .flatten()
                .find(|m| !m.is_null())
            {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    one_line(&text)
}

/// `s` on one line, without control characters, at most 300 characters.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if s.trim().chars().count() > 300 {
        out.push('…');
    }
    out
}

/// One `data:` event's JSON: the fields the benchmark reads (chat and completions chunks).
#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
    text: Option<String>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    /// Reasoning models' thinking, streamed before the answer (vLLM, llama-server).
    reasoning_content: Option<String>,
    reasoning: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// Reads an event stream that began at `start`, timing each chunk carrying text.
pub fn read_stream(reader: impl Read, start: Instant, max_chunks: usize) -> Result<Sample, String> {
    let mut reader = BufReader::new(reader.take(MAX_STREAM_BYTES));
    let mut read = 0u64;
    let mut line = Vec::new();
    let mut data = String::new();
    let mut event_is_error = false;
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut itl = Vec::new();
    let mut chunks = 0usize;
    let mut usage: Option<Usage> = None;
    let mut finished = false;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| read_error(&e))?;
        read += n as u64;
        if line.len() > MAX_LINE_BYTES {
            return Err(format!(
                "an event-stream line is longer than {} MiB",
                MAX_LINE_BYTES >> 20
            ));
        }
        let eof = n == 0;
        let text = std::str::from_utf8(&line)
            .map_err(|_| "the event stream is not UTF-8".to_string())?
            .trim_end_matches(['\n', '\r']);
        if !text.is_empty() && !eof {
            // A field line: `data:` lines add up to one event; comments and ids are skipped.
            let (field, value) = text.split_once(':').unwrap_or((text, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                "event" => event_is_error = value == "error",
                // llama-server has sent errors as `error: {…}` lines.
                "error" => return Err(format!("the server: {}", error_message(value.as_bytes()))),
                _ => {}
            }
            continue;
        }
        // A blank line (or the end) dispatches the event gathered so far.
        if !data.is_empty() {
            let now = Instant::now();
            if data == "[DONE]" {
                finished = true;
                break;
            }
            if event_is_error {
                return Err(format!("the server: {}", error_message(data.as_bytes())));
            }
            let (ends, texts, chunk_usage) = read_chunk(&data)?;
            finished |= ends;
            for _ in 0..texts {
                chunks += 1;
                if chunks > max_chunks {
                    return Err(format!(
                        "the server streamed more than {max_chunks} chunks of text for the tokens asked"
                    ));
                }
                match last {
                    None => first = Some(now),
                    Some(prev) => itl.push(now - prev),
                }
                last = Some(now);
            }
            if chunk_usage.is_some() {
                usage = chunk_usage;
            }
            data.clear();
        }
        event_is_error = false;
        if eof {
            break;
        }
    }
    let end = Instant::now();
    if !finished {
        return Err(if read >= MAX_STREAM_BYTES {
            format!("the stream is longer than {} MiB", MAX_STREAM_BYTES >> 20)
        } else {
            "the stream ended before [DONE] or a finish reason".to_string()
        });
    }
    // What follows [DONE] is the end of the body; reading it lets the connection be reused.
    let _ = io::copy(&mut reader.take(MAX_ERROR_BYTES), &mut io::sink());
    let Some(first) = first else {
        return Err("the stream carried no text".to_string());
    };
    let counted = chunks as u64;
    Ok(Sample {
        ttft: first - start,
        latency: end - start,
        itl,
        output_tokens: usage
            .as_ref()
            .and_then(|u| u.completion_tokens)
            .unwrap_or(counted),
        input_tokens: usage.and_then(|u| u.prompt_tokens),
        retries: 0,
    })
}

/// One event's JSON: whether it finishes the stream, how many of its choices carry text, and
/// the usage it reports.
fn read_chunk(data: &str) -> Result<(bool, usize, Option<Usage>), String> {
    let chunk: Chunk = serde_json::from_str(data)
        .map_err(|e| format!("a malformed chunk ({e}): {}", one_line(data)))?;
    if let Some(e) = chunk.error {
        return Err(format!(
            "the server: {}",
            error_message(e.to_string().as_bytes())
        ));
    }
    let mut finished = false;
    let mut texts = 0;
    for choice in chunk.choices.into_iter().flatten() {
        finished |= choice.finish_reason.is_some();
        let delta = choice
            .delta
            .map(|d| [d.content, d.reasoning_content, d.reasoning]);
        let has_text = choice
            .text
            .iter()
            .chain(delta.iter().flatten().flatten())
            .any(|t| !t.is_empty());
        texts += usize::from(has_text);
    }
    Ok((finished, texts, chunk.usage))
}

fn read_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
        _ if is_timeout(&e.to_string()) => "timed out".to_string(),
        _ => format!("reading the stream: {}", one_line(&e.to_string())),
    }
}

/// The duration of `seconds`, for the agent's timeout.
pub fn timeout(seconds: u64) -> Duration {
    Duration::from_secs(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(stream: &str) -> Result<Sample, String> {
        read_stream(stream.as_bytes(), Instant::now(), 16)
    }

    fn chat(text: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        )
    }

    #[test]
    fn a_chat_stream_counts_chunks_with_text_or_the_servers_usage() {
        let role =
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
        let finish = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n";
        let body = format!(
            "{role}: a comment\n{}{}{}{finish}data: [DONE]\n\n",
            chat("He"),
            chat("llo"),
            chat("!")
        );
        let s = read(&body).unwrap();
        assert_eq!((s.output_tokens, s.input_tokens, s.itl.len()), (3, None, 2));
        assert!(s.ttft <= s.latency);

        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":4}}\n\n";
        let s = read(&format!(
            "{}{}{finish}{usage}data: [DONE]\n\n",
            chat("a"),
            chat("b")
        ))
        .unwrap();
        assert_eq!((s.output_tokens, s.input_tokens), (4, Some(12)));
    }

    #[test]
    fn a_completions_stream_with_crlf_lines_and_no_done() {
        let body = "data: {\"choices\":[{\"text\":\"x\"}]}\r\n\r\ndata: {\"choices\":[{\"text\":\"y\",\"finish_reason\":\"stop\"}]}\r\n\r\n";
        let s = read(body).unwrap();
        assert_eq!(s.output_tokens, 2);
    }

    #[test]
    fn broken_or_hostile_streams_fail_with_the_reason() {
        let err = |body: &str| read(body).unwrap_err();
        assert!(err(&chat("a")).contains("ended before [DONE]"));
        assert!(err("data: [DONE]\n\n").contains("no text"));
        assert!(err("data: {not json\n\n").contains("malformed chunk"));
        let e = err(&format!(
            "{}data: {{\"error\":{{\"message\":\"out of memory\"}}}}\n\n",
            chat("a")
        ));
        assert!(e.contains("out of memory"), "{e}");
        assert!(err("event: error\ndata: {\"message\":\"boom\"}\n\n").contains("boom"));
        assert!(err("error: {\"message\":\"slot unavailable\"}\n").contains("slot unavailable"));
        let many: String = (0..17).map(|_| chat("a")).collect();
        assert!(err(&many).contains("more than 16 chunks"));
        // A line without an end is refused at the limit, not gathered without bound.
        let endless = io::repeat(b'a').take(MAX_LINE_BYTES as u64 * 2);
        let e = read_stream(endless, Instant::now(), 16).unwrap_err();
        assert!(e.contains("longer than 1 MiB"), "{e}");
        assert!(err("data: \u{1}\u{2}\n\n").contains("malformed chunk"));
    }

    #[test]
    fn error_bodies_give_their_message_on_one_line() {
        assert_eq!(
            error_message(
                br#"{"error":{"message":"model \"x\" not found","type":"invalid_request_error"}}"#
            ),
            "model \"x\" not found"
        );
        assert_eq!(
            error_message(br#"{"object":"error","message":"too long"}"#),
            "too long"
        );
        assert_eq!(error_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message(b"upstream\nerror"), "upstream error");
        assert!(error_message(&[b'x'; 1000]).chars().count() <= 301);
    }
}
