//! Ollama's `/api/chat`, `/api/generate` and `/api/show` bodies, typed and validated into what
//! the OpenAI routes queue: the same sampling fields, stop strings and limits ([`wire`]), and
//! errors that name the field; `format` constrains the output as OpenAI's `response_format` does.
//! `think` splits a thinking model's reasoning into `thinking`.
//! What candor cannot honour yet (`tools`, images, a template of the client's own) is
//! refused with 400, never ignored; so are unknown fields.

use crate::commands::serve::error::ApiError;
use crate::commands::serve::wire::{self, List, Sampling};
use candor_engine::{GenerateParams, Message, Reasoning};
use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Generate,
}

impl Endpoint {
    /// The request field that holds the input.
    pub fn input_param(self) -> &'static str {
        match self {
            Endpoint::Chat => "messages",
            Endpoint::Generate => "prompt",
        }
    }
}

/// What the request asks the model to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Chat(Vec<Message>),
    /// `/api/generate`: the prompt as a user turn of the model's chat template.
    Templated {
        system: Option<String>,
        prompt: String,
    },
    /// `/api/generate` with `raw`: the prompt as it is.
    Raw(String),
    /// No messages or prompt: Ollama's way of asking that the model be loaded.
    Load,
}

#[derive(Debug)]
pub struct Request {
    /// The model's name as sent; the answers echo it, as Ollama's do.
    pub model: String,
    pub body: Body,
    /// `/api/generate`'s `context`: token ids of the exchange to continue.
    pub context: Vec<u32>,
    pub params: GenerateParams,
    /// `options.num_ctx`.
    pub ctx_limit: Option<usize>,
    pub stream: bool,
    /// `keep_alive` is zero: unload the model after this request (refused when there is nothing
    /// to generate, since that asks only for the unloading; ignored otherwise).
    pub unload: bool,
}

const COMMON: &[&str] = &[
    "model",
    "stream",
    "format",
    "keep_alive",
    "options",
    "think",
    "truncate",
    "shift",
    "logprobs",
    "top_logprobs",
];
const CHAT: &[&str] = &["messages", "tools"];
const GENERATE: &[&str] = &[
    "prompt", "suffix", "system", "template", "context", "raw", "images", "width", "height",
    "steps",
];

/// The fields of [`COMMON`].
#[derive(Debug, Deserialize)]
struct Common {
    #[serde(default, deserialize_with = "wire::string")]
    model: Option<String>,
    #[serde(default, deserialize_with = "wire::boolean")]
    stream: Option<bool>,
    #[serde(default, deserialize_with = "wire::any")]
    format: Option<Value>,
    #[serde(
        default,
        rename = "keep_alive",
        deserialize_with = "keep_alive_is_zero"
    )]
    unload: bool,
    #[serde(default, deserialize_with = "wire::map")]
    options: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "thinking")]
    think: bool,
    /// Accepted: candor never truncates or shifts the context.
    #[serde(default, rename = "truncate", deserialize_with = "wire::boolean")]
    _truncate: Option<bool>,
    #[serde(default, rename = "shift", deserialize_with = "wire::boolean")]
    _shift: Option<bool>,
    #[serde(default, deserialize_with = "wire::boolean")]
    logprobs: Option<bool>,
    #[serde(default, deserialize_with = "wire::count")]
    top_logprobs: Option<u64>,
}

/// The options candor applies besides [`Sampling`]'s, read after every name in `options` is
/// checked. Ollama's are Go `int`s, so -1 and friends
/// are meaningful.
#[derive(Debug, Deserialize)]
struct Options {
    #[serde(default, deserialize_with = "wire::any")]
    seed: Option<Value>,
    #[serde(default, deserialize_with = "wire::integer")]
    repeat_last_n: Option<i64>,
    #[serde(default, deserialize_with = "wire::integer")]
    num_predict: Option<i64>,
    #[serde(default, deserialize_with = "wire::integer")]
    num_ctx: Option<i64>,
}

/// `/api/chat`'s own fields.
#[derive(Debug, Deserialize)]
struct ChatFields {
    #[serde(default)]
    messages: Option<List<ChatMessage>>,
    #[serde(default, deserialize_with = "wire::any")]
    tools: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "must be an object")]
struct ChatMessage {
    #[serde(default, deserialize_with = "wire::string")]
    role: Option<String>,
    #[serde(default, deserialize_with = "wire::string")]
    content: Option<String>,
    /// Other fields, refused unless empty.
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// `/api/generate`'s own fields.
#[derive(Debug, Deserialize)]
struct GenerateFields {
    #[serde(default, deserialize_with = "wire::string")]
    prompt: Option<String>,
    #[serde(default, deserialize_with = "wire::string")]
    system: Option<String>,
    #[serde(default, deserialize_with = "wire::boolean")]
    raw: Option<bool>,
    #[serde(default, deserialize_with = "token_ids")]
    context: Vec<u32>,
    #[serde(default, deserialize_with = "wire::any")]
    suffix: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    images: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    template: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    width: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    height: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    steps: Option<Value>,
}

/// `/api/show`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowRequest {
    #[serde(default, deserialize_with = "wire::string")]
    model: Option<String>,
    /// The field's older spelling.
    #[serde(default, deserialize_with = "wire::string")]
    name: Option<String>,
    /// Accepted: the answer is always whole.
    #[serde(default, rename = "verbose", deserialize_with = "wire::boolean")]
    _verbose: Option<bool>,
}

impl ShowRequest {
    /// The model asked about.
    pub fn parse(body: &[u8]) -> Result<String, ApiError> {
        let req: ShowRequest = wire::parse(&wire::json_object(body)?)?;
        match (req.model, req.name) {
            (Some(n), _) | (None, Some(n)) if !n.is_empty() => Ok(n),
            _ => Err(ApiError::invalid("model", "required")),
        }
    }
}

/// Parses and validates an `/api/chat` or `/api/generate` body.
pub fn parse(
    body: &[u8],
    endpoint: Endpoint,
    default_max_tokens: usize,
) -> Result<Request, ApiError> {
    let o = wire::json_object(body)?;
    let own = match endpoint {
        Endpoint::Chat => CHAT,
        Endpoint::Generate => GENERATE,
    };
    if let Some(k) = o
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(k.as_str(), "unknown field"));
    }
    let common: Common = wire::parse(&o)?;
    let model = match common.model.clone() {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::invalid("model", "required")),
    };
    common.refuse_unsupported()?;
    let grammar = match &common.format {
        Some(f) => wire::ollama_format(f)?,
        None => None,
    };
    let (mut params, ctx_limit) = options(common.options.unwrap_or_default(), default_max_tokens)?;
    params.grammar = grammar;
    // Asked to think: a thinking model's reasoning comes apart, in `thinking`.
    if common.think {
        params.reasoning = Reasoning::Split { opened: false };
    }
    let (body, context) = match endpoint {
        Endpoint::Chat => (wire::parse::<ChatFields>(&o)?.validate()?, Vec::new()),
        Endpoint::Generate => wire::parse::<GenerateFields>(&o)?.validate()?,
    };
    Ok(Request {
        model,
        body,
        context,
        params,
        ctx_limit,
        stream: common.stream.unwrap_or(true),
        unload: common.unload,
    })
}

impl Common {
    /// `logprobs` needs support candor's Ollama API does not have yet.
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        if self.logprobs == Some(true) {
            return Err(ApiError::invalid("logprobs", "not supported"));
        }
        if self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(ApiError::invalid("top_logprobs", "not supported"));
        }
        Ok(())
    }
}

/// `think`: whether thinking is asked for (`true`, or a level such as `"high"`).
fn thinking<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true) | Value::String(_)) => Ok(true),
        Some(_) => Err(D::Error::custom("must be a boolean or a string")),
    }
}

/// `keep_alive`: a duration (`"5m"`, `"1h30m"`, `"-1"`) or a number of seconds. Accepted; only
/// zero means something here (unload after the request).
fn keep_alive_is_zero<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let bad = || D::Error::custom("must be a duration such as \"5m\" or a number of seconds");
    match Option::<Value>::deserialize(d)? {
        None => Ok(false),
        Some(Value::Number(n)) => Ok(n.as_f64() == Some(0.0)),
        Some(Value::String(s)) => {
            let s = s.trim();
            let digits = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(digits);
            let units = ["", "ns", "us", "µs", "ms", "s", "m", "h"];
            match num.parse::<f64>() {
                Ok(n) if units.contains(&unit) => Ok(n == 0.0),
                // Compound durations ("1h30m") are not zero.
                Ok(n) if n != 0.0 => Ok(false),
                _ => Err(bad()),
            }
        }
        Some(_) => Err(bad()),
    }
}

/// `context`: token ids.
fn token_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Some(Vec::new()),
        Some(Value::Array(a)) => wire::token_ids(&a),
        Some(_) => None,
    }
    .ok_or_else(|| D::Error::custom("must be an array of token ids"))
}

/// Options candor applies.
const HONOURED: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "seed",
    "num_predict",
    "stop",
    "num_ctx",
];
/// Options for how Ollama loads and runs a model; candor's are set on `candor serve`'s command
/// line, and these change nothing in the output.
const RUNTIME: &[&str] = &[
    "numa",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mmap",
    "use_mlock",
    "embedding_only",
    "num_thread",
    "num_keep",
    "draft_num_predict",
    "penalize_newline",
    "mirostat_tau",
    "mirostat_eta",
];
/// Samplers candor does not have, accepted only at the value that turns them off.
const NEUTRAL: &[(&str, f64)] = &[
    ("typical_p", 1.0),
    ("tfs_z", 1.0),
    ("presence_penalty", 0.0),
    ("frequency_penalty", 0.0),
    ("mirostat", 0.0),
];

/// `options`: the generation parameters and `num_ctx`. Sampling defaults are `candor run`'s, and
/// `num_predict` defaults to the server's `--max-tokens`.
fn options(
    o: Map<String, Value>,
    default_max_tokens: usize,
) -> Result<(GenerateParams, Option<usize>), ApiError> {
    let within = |e: ApiError| e.within("options.");
    for (k, v) in &o {
        let k = k.as_str();
        if let Some((_, off)) = NEUTRAL.iter().find(|(n, _)| *n == k) {
            let why = format!("not supported (only {off}, which leaves it off)");
            wire::off(k, &Some(v.clone()), |v| v.as_f64() == Some(*off), &why).map_err(within)?;
        } else if !HONOURED.contains(&k) && !RUNTIME.contains(&k) {
            return Err(within(ApiError::invalid(k, "unknown option")));
        }
    }
    let opts: Options = wire::parse(&o).map_err(within)?;
    // Ollama's -1 (its default) draws a fresh seed, as a missing one does.
    let seed = match opts.seed {
        None => None,
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(s), _) => Some(s),
            (None, Some(_)) => None,
            _ => return Err(within(ApiError::invalid("seed", "must be an integer"))),
        },
    };
    let sampling: Sampling = wire::parse(&o).map_err(within)?;
    let mut params = GenerateParams {
        // 0 is Ollama's "not set"; -1 (no limit) and -2 (fill the context) run until the
        // context is full.
        max_tokens: match opts.num_predict {
            None | Some(0) => default_max_tokens,
            Some(-1 | -2) => usize::MAX,
            Some(n) if n > 0 => n as usize,
            Some(_) => {
                return Err(within(ApiError::invalid(
                    "num_predict",
                    "must be a positive number of tokens, or -1 for no limit",
                )))
            }
        },
        sampling: sampling
            .validate(seed.unwrap_or_else(wire::random_seed))
            .map_err(within)?,
        stop: sampling.stop.0,
        ..Default::default()
    };
    params.sampling.repeat_last_n = match opts.repeat_last_n {
        None => params.sampling.repeat_last_n,
        // -1: the whole context.
        Some(-1) => usize::MAX,
        Some(n) if n >= 0 => n as usize,
        Some(_) => {
            return Err(within(ApiError::invalid(
                "repeat_last_n",
                "must be -1 or more",
            )))
        }
    };
    let ctx_limit = match opts.num_ctx {
        None | Some(0) => None,
        Some(n) if n > 0 => Some(n as usize),
        Some(_) => return Err(within(ApiError::invalid("num_ctx", "must be positive"))),
    };
    Ok((params, ctx_limit))
}

impl ChatFields {
    /// The conversation; no messages at all asks for the model to be loaded.
    fn validate(self) -> Result<Body, ApiError> {
        if self.tools.as_ref().is_some_and(|t| !wire::is_empty(t)) {
            return Err(ApiError::invalid(
                "tools",
                "tool calling is not supported yet: candor has no tool-call support",
            ));
        }
        match self.messages {
            None => Ok(Body::Load),
            Some(List(list)) if list.is_empty() => Ok(Body::Load),
            Some(List(list)) => list
                .into_iter()
                .enumerate()
                .map(|(i, m)| m.validate(i))
                .collect::<Result<_, _>>()
                .map(Body::Chat),
        }
    }
}

impl ChatMessage {
    fn validate(self, i: usize) -> Result<Message, ApiError> {
        let at = |f: &str| format!("messages[{i}].{f}");
        // An earlier turn's `thinking` is left out, as thinking models' templates do.
        let given = |(k, v): &(&String, &Value)| k.as_str() != "thinking" && !wire::is_empty(v);
        if let Some((k, _)) = self.rest.iter().find(given) {
            let why = match k.as_str() {
                "images" => "images are not supported: candor serves text models",
                "tool_calls" | "tool_name" | "tool_call_id" => {
                    "tool calling is not supported yet: candor has no tool-call support"
                }
                _ => "unknown field",
            };
            return Err(ApiError::invalid(at(k), why));
        }
        let role = match self.role.as_deref() {
            Some(r @ ("system" | "user" | "assistant")) => r,
            Some("tool") => {
                return Err(ApiError::invalid(
                    at("role"),
                    "tool results are not supported yet: candor has no tool-call support",
                ))
            }
            Some(r) => {
                return Err(ApiError::invalid(
                    at("role"),
                    format!("unsupported role `{r}` (system, user, assistant)"),
                ))
            }
            None => return Err(ApiError::invalid(at("role"), "required")),
        };
        Ok(Message::new(role, self.content.unwrap_or_default()))
    }
}

impl GenerateFields {
    /// The prompt, `system`, `raw` and `context`; fields for what candor does not do
    /// (`suffix`, `images`, `template`, image generation) are refused when set.
    fn validate(self) -> Result<(Body, Vec<u32>), ApiError> {
        const IMAGES: &str = "image generation is not supported";
        for (field, value, why) in [
            (
                "suffix",
                &self.suffix,
                "fill-in-the-middle is not supported",
            ),
            (
                "images",
                &self.images,
                "images are not supported: candor serves text models",
            ),
            (
                "template",
                &self.template,
                "a template of the client's own is not supported: candor renders the model's \
                 verified chat template (send `raw: true` with a prompt formatted yourself \
                 instead)",
            ),
            ("width", &self.width, IMAGES),
            ("height", &self.height, IMAGES),
            ("steps", &self.steps, IMAGES),
        ] {
            let unset = |v: &Value| wire::is_empty(v) || v == &Value::from(0);
            wire::off(field, value, unset, why)?;
        }
        let prompt = self.prompt.unwrap_or_default();
        let system = self.system.filter(|s| !s.is_empty());
        let raw = self.raw.unwrap_or(false);
        if raw && (system.is_some() || !self.context.is_empty()) {
            return Err(ApiError::invalid(
                "raw",
                "raw mode does not support system or context",
            ));
        }
        let body = if prompt.is_empty() {
            Body::Load
        } else if raw {
            Body::Raw(prompt)
        } else {
            Body::Templated { system, prompt }
        };
        Ok((body, self.context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Request, ApiError> {
        parse(body.as_bytes(), Endpoint::Chat, 64)
    }

    fn gen(body: &str) -> Result<Request, ApiError> {
        parse(body.as_bytes(), Endpoint::Generate, 64)
    }

    fn param(r: Result<Request, ApiError>) -> Option<String> {
        r.unwrap_err().param
    }

    #[test]
    fn parses_chat_with_options() {
        let r = chat(
            r#"{"model":"m:latest","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi","images":null}],
                "stream":false,"keep_alive":"5m","think":true,"format":"","tools":[],
                "options":{"temperature":0,"top_k":20,"top_p":0.9,"min_p":0,"repeat_penalty":1.1,"repeat_last_n":-1,
                           "seed":7,"num_predict":12,"stop":["\n"],"num_ctx":1024,"num_thread":4,"typical_p":1.0}}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m:latest");
        assert_eq!(
            r.body,
            Body::Chat(vec![
                Message::new("system", "be brief"),
                Message::new("user", "hi")
            ])
        );
        assert!(!r.stream && !r.unload);
        assert_eq!(r.params.reasoning, Reasoning::Split { opened: false });
        let s = &r.params.sampling;
        assert_eq!(s.temperature, 0.0);
        assert_eq!(s.top_k, Some(20));
        assert_eq!(s.top_p, Some(0.9));
        assert_eq!(s.min_p, None);
        assert_eq!(s.repeat_last_n, usize::MAX);
        assert_eq!(s.seed, 7);
        assert_eq!(r.params.max_tokens, 12);
        assert_eq!(r.params.stop, ["\n"]);
        assert_eq!(r.ctx_limit, Some(1024));
    }

    #[test]
    fn defaults_follow_ollama() {
        let r = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert!(r.stream, "streamed unless stream is false");
        assert_eq!(r.params.max_tokens, 64);
        let r = chat(r#"{"model":"m","options":{"num_predict":-1}}"#).unwrap();
        assert_eq!(r.body, Body::Load);
        assert_eq!(r.params.max_tokens, usize::MAX);
        assert!(
            chat(r#"{"model":"m","messages":[],"keep_alive":0}"#)
                .unwrap()
                .unload
        );
        assert!(gen(r#"{"model":"m","keep_alive":"0s"}"#).unwrap().unload);
        assert!(!gen(r#"{"model":"m","keep_alive":"1h30m"}"#).unwrap().unload);
        assert!(!gen(r#"{"model":"m","keep_alive":-1}"#).unwrap().unload);
    }

    #[test]
    fn generate_bodies() {
        let r = gen(r#"{"model":"m","prompt":"hi","system":"s","context":[1,2]}"#).unwrap();
        assert_eq!(
            r.body,
            Body::Templated {
                system: Some("s".into()),
                prompt: "hi".into()
            }
        );
        assert_eq!(r.context, [1, 2]);
        let r = gen(r#"{"model":"m","prompt":"hi","raw":true}"#).unwrap();
        assert_eq!(r.body, Body::Raw("hi".into()));
        assert_eq!(
            param(gen(r#"{"model":"m","prompt":"x","raw":true,"system":"s"}"#)).as_deref(),
            Some("raw")
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let msg = r#""messages":[{"role":"user","content":"hi"}]"#;
        for (body, field) in [
            (format!(r#"{{"model":"m",{msg},"format":"xml"}}"#), "format"),
            (format!(r#"{{"model":"m",{msg},"format":3}}"#), "format"),
            (
                format!(r#"{{"model":"m",{msg},"tools":[{{"type":"function"}}]}}"#),
                "tools",
            ),
            (format!(r#"{{"model":"m",{msg},"bogus":1}}"#), "bogus"),
            (format!(r#"{{"model":"m",{msg},"stream":"yes"}}"#), "stream"),
            (
                format!(r#"{{"model":"m",{msg},"options":{{"temperature":"hot"}}}}"#),
                "options.temperature",
            ),
            (
                format!(r#"{{"model":"m",{msg},"options":{{"mirostat":2}}}}"#),
                "options.mirostat",
            ),
            (
                format!(r#"{{"model":"m",{msg},"options":{{"warp":9}}}}"#),
                "options.warp",
            ),
            (
                format!(r#"{{"model":"m",{msg},"options":{{"stop":[1]}}}}"#),
                "options.stop",
            ),
            (
                format!(r#"{{"model":"m",{msg},"options":{{"num_predict":"x"}}}}"#),
                "options.num_predict",
            ),
            (format!(r#"{{{msg}}}"#), "model"),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"1"}]}"#.into(),
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x","images":["aGk="]}]}"#
                    .into(),
                "messages[0].images",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":3}]}"#.into(),
                "messages[0].content",
            ),
        ] {
            assert_eq!(param(chat(&body)).as_deref(), Some(field), "{body}");
        }
        for (body, field) in [
            (
                r#"{"model":"m","prompt":"x","template":"{{ .Prompt }}"}"#,
                "template",
            ),
            (r#"{"model":"m","prompt":"x","suffix":"y"}"#, "suffix"),
            (r#"{"model":"m","prompt":"x","images":["aGk="]}"#, "images"),
            (r#"{"model":"m","prompt":"x","context":[-1]}"#, "context"),
            (r#"{"model":"m","prompt":"x","messages":[]}"#, "messages"),
        ] {
            assert_eq!(param(gen(body)).as_deref(), Some(field), "{body}");
        }
        let message = |r: Result<Request, ApiError>| r.unwrap_err().message;
        for (body, text) in [
            (r#"{"model":"m","options":3}"#, "options: must be an object"),
            (
                r#"{"model":"m","keep_alive":true}"#,
                "keep_alive: must be a duration such as \"5m\" or a number of seconds",
            ),
            (
                r#"{"model":"m","think":1}"#,
                "think: must be a boolean or a string",
            ),
            (
                r#"{"model":"m","stream":"no"}"#,
                "stream: must be a boolean",
            ),
            (
                r#"{"model":"m","options":{"seed":0.5}}"#,
                "options.seed: must be an integer",
            ),
            (
                r#"{"model":"m","options":{"num_ctx":"big"}}"#,
                "options.num_ctx: must be an integer",
            ),
            (
                r#"{"model":"m","options":{"warp":9}}"#,
                "options.warp: unknown option",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x","what":1}]}"#,
                "messages[0].what: unknown field",
            ),
            (
                r#"{"model":"m","messages":[3]}"#,
                "messages[0]: must be an object",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":3}]}"#,
                "messages[0].content: must be a string",
            ),
        ] {
            assert_eq!(message(chat(body)), text, "{body}");
        }
        assert_eq!(
            message(gen(r#"{"model":"m","prompt":"x","context":"1"}"#)),
            "context: must be an array of token ids"
        );
        assert_eq!(
            ShowRequest::parse(br#"{"name":"m","verbose":true}"#).unwrap(),
            "m"
        );
        let show = |b: &str| ShowRequest::parse(b.as_bytes()).unwrap_err().message;
        assert_eq!(show(r#"{"model":"m","x":1}"#), "x: unknown field");
        assert_eq!(show(r#"{"verbose":1}"#), "verbose: must be a boolean");
        assert_eq!(show(r#"{}"#), "model: required");
        let e = chat(r#"{"model":"m","options":{"temperature":3}}"#).unwrap_err();
        assert_eq!(e.message, "options.temperature: must be between 0 and 2");
        assert!(chat("{oops").unwrap_err().param.is_none());
    }
}
