//! OpenAI's response objects: the whole answer, and the chunks of a stream.

use super::request::Endpoint;
use crate::commands::serve::wire;
use candor_engine::{Completion, TokenLogprob};
use serde_json::{json, Map, Value};

/// What every response object of one request shares.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
    /// The request asked for log-probabilities.
    pub logprobs: bool,
}

impl Meta {
    pub fn new(endpoint: Endpoint, model: &str, logprobs: bool) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let created = jiff::Timestamp::now().as_second() as u64;
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completions => "cmpl",
        };
        Self {
            id: format!("{prefix}-{created:x}{n:06x}"),
            created,
            model: model.to_string(),
            endpoint,
            logprobs,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(self.object(chunk)));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("system_fingerprint".into(), Value::Null);
        m.insert("choices".into(), choices);
        m
    }

    /// The whole answer of a non-streamed request.
    pub fn response(&self, c: &Completion) -> Value {
        let reason = wire::finish_reason(c.finish_reason);
        let logprobs = self.logprobs_object(&c.logprobs, 0);
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let mut message = json!({"role": "assistant", "content": c.text});
                if let Some(r) = &c.reasoning {
                    message["reasoning_content"] = json!(r);
                }
                if !c.tool_calls.is_empty() {
                    message["tool_calls"] = super::tools::calls_json(&c.tool_calls, false);
                    if c.text.is_empty() {
                        message["content"] = Value::Null;
                    }
                }
                json!({
                    "index": 0,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": reason,
                })
            }
            Endpoint::Completions => json!({
                "index": 0,
                "text": c.text,
                "logprobs": logprobs,
                "finish_reason": reason,
            }),
        };
        let mut m = self.envelope(false, json!([choice]));
        m.insert("usage".into(), usage(c));
        Value::Object(m)
    }

    /// The opening chunk of a chat stream (the assistant role).
    pub fn role_chunk(&self) -> Option<Value> {
        (self.endpoint == Endpoint::Chat).then(|| {
            Value::Object(self.envelope(
                true,
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
            ))
        })
    }

    /// A piece of the output; `offset` is where it starts in the whole text (in characters,
    /// for the completions endpoint's `text_offset`).
    /// A thinking model's reasoning goes in chat's `delta.reasoning_content`.
    pub fn text_chunk(
        &self,
        text: &str,
        reasoning: bool,
        logprobs: &[TokenLogprob],
        offset: usize,
    ) -> Value {
        let logprobs = self.logprobs_object(logprobs, offset);
        let field = if reasoning {
            "reasoning_content"
        } else {
            "content"
        };
        let choice = match self.endpoint {
            Endpoint::Chat => {
                json!({"index": 0, "delta": {field: text}, "logprobs": logprobs, "finish_reason": null})
            }
            Endpoint::Completions => {
                json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": null})
            }
        };
        Value::Object(self.envelope(true, json!([choice])))
    }

    /// A chat stream's calls, whole, in one delta before the finish chunk: they are held back
    /// until the output ends, so a client never sees a call that is cut or malformed.
    pub fn tool_calls_chunk(&self, c: &Completion) -> Option<Value> {
        (self.endpoint == Endpoint::Chat && !c.tool_calls.is_empty()).then(|| {
            let delta = json!({"tool_calls": super::tools::calls_json(&c.tool_calls, true)});
            Value::Object(self.envelope(
                true,
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
            ))
        })
    }

    pub fn finish_chunk(&self, c: &Completion) -> Value {
        let reason = wire::finish_reason(c.finish_reason);
        let choice = match self.endpoint {
            Endpoint::Chat => {
                json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason})
            }
            Endpoint::Completions => {
                json!({"index": 0, "text": "", "logprobs": null, "finish_reason": reason})
            }
        };
        Value::Object(self.envelope(true, json!([choice])))
    }

    /// The last chunk with `stream_options.include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, c: &Completion) -> Value {
        let mut m = self.envelope(true, json!([]));
        m.insert("usage".into(), usage(c));
        Value::Object(m)
    }
}

impl Meta {
    /// A choice's `logprobs`: null unless asked for; chat's `{content: [...]}` or the
    /// completions endpoint's parallel arrays.
    fn logprobs_object(&self, tokens: &[TokenLogprob], offset: usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        match self.endpoint {
            Endpoint::Chat => {
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let top: Vec<Value> = t
                            .top
                            .iter()
                            .map(|a| json!({"token": a.text, "logprob": a.logprob, "bytes": a.bytes}))
                            .collect();
                        let c = &t.chosen;
                        json!({"token": c.text, "logprob": c.logprob, "bytes": c.bytes, "top_logprobs": top})
                    })
                    .collect();
                json!({"content": content, "refusal": null})
            }
            Endpoint::Completions => {
                let mut offsets = Vec::with_capacity(tokens.len());
                let mut at = offset;
                for t in tokens {
                    offsets.push(at);
                    at += t.chosen.text.chars().count();
                }
                let top: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let m: Map<String, Value> = t
                            .top
                            .iter()
                            .map(|a| (a.text.clone(), json!(a.logprob)))
                            .collect();
                        Value::Object(m)
                    })
                    .collect();
                json!({
                    "tokens": tokens.iter().map(|t| &t.chosen.text).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|t| t.chosen.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": offsets,
                })
            }
        }
    }
}

/// Token counts, with the prompt tokens read from the prefix cache as OpenAI reports its own.
fn usage(c: &Completion) -> Value {
    let (prompt, completion) = (c.prompt_tokens, c.tokens.len());
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": c.cached_prompt_tokens},
    })
}

impl Meta {
    /// An error in the middle of the request, as the request's fields name it.
    pub fn error(
        &self,
        e: candor_engine::serving::ServeError,
    ) -> crate::commands::serve::error::ApiError {
        crate::commands::serve::error::ApiError::from_serving(
            e,
            self.endpoint.input_param(),
            &self.model,
        )
    }
}
