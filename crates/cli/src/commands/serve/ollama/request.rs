//! Ollama's `/api/chat` and `/api/generate` bodies, parsed into what the OpenAI routes queue:
//! the same sampling fields, stop strings and limits, and errors that name the field. What
//! candor cannot honour yet (`format`, `tools`, `think`, images, a template of the client's own)
//! is refused with 400, never ignored.

use crate::commands::serve::api::{self, ApiError};
use candor_engine::{GenerateParams, Message};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Generate,
}

impl Kind {
    /// The request field that holds the input.
    pub fn input_param(self) -> &'static str {
        match self {
            Kind::Chat => "messages",
            Kind::Generate => "prompt",
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

/// Parses and validates an `/api/chat` or `/api/generate` body.
pub fn parse(body: &[u8], kind: Kind, default_max_tokens: usize) -> Result<Request, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(o) = v else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let own = match kind {
        Kind::Chat => CHAT,
        Kind::Generate => GENERATE,
    };
    if let Some(k) = o
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(k.as_str(), "unknown field"));
    }
    let model = match api::opt_string(&o, "model")? {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::invalid("model", "required")),
    };
    refuse_unsupported(&o)?;
    let stream = api::opt_bool(&o, "stream")?.unwrap_or(true);
    for field in ["truncate", "shift"] {
        api::opt_bool(&o, field)?;
    }
    let unload = keep_alive_is_zero(&o)?;
    let (params, ctx_limit) = options(o.get("options"), default_max_tokens)?;
    let (body, context) = match kind {
        Kind::Chat => {
            if o.get("tools").is_some_and(|t| !is_empty(t)) {
                return Err(ApiError::invalid(
                    "tools",
                    "tool calling is not supported yet: candor has no tool-call support",
                ));
            }
            (messages(&o)?, Vec::new())
        }
        Kind::Generate => generate_body(&o)?,
    };
    Ok(Request {
        model,
        body,
        context,
        params,
        ctx_limit,
        stream,
        unload,
    })
}

/// `format`, `think` and `logprobs` need support candor does not have yet.
fn refuse_unsupported(o: &Map<String, Value>) -> Result<(), ApiError> {
    match o.get("format") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "format",
                "structured output (\"json\" or a JSON schema) is not supported yet: candor has \
                 no structured-output engine",
            ))
        }
    }
    match o.get("think") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) | Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                "think",
                "thinking is not supported yet: candor has no reasoning support (send false or \
                 leave it out)",
            ))
        }
        Some(_) => return Err(ApiError::invalid("think", "must be a boolean or a string")),
    }
    if api::opt_bool(o, "logprobs")? == Some(true) {
        return Err(ApiError::invalid("logprobs", "not supported"));
    }
    if api::opt_u64(o, "top_logprobs")?.is_some_and(|n| n > 0) {
        return Err(ApiError::invalid("top_logprobs", "not supported"));
    }
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// `keep_alive`: a duration (`"5m"`, `"1h30m"`, `"-1"`) or a number of seconds. Accepted; only
/// zero means something here (unload after the request).
fn keep_alive_is_zero(o: &Map<String, Value>) -> Result<bool, ApiError> {
    match o.get("keep_alive") {
        None | Some(Value::Null) => Ok(false),
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
                _ => Err(ApiError::invalid(
                    "keep_alive",
                    "must be a duration such as \"5m\" or a number of seconds",
                )),
            }
        }
        Some(_) => Err(ApiError::invalid(
            "keep_alive",
            "must be a duration such as \"5m\" or a number of seconds",
        )),
    }
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
    v: Option<&Value>,
    default_max_tokens: usize,
) -> Result<(GenerateParams, Option<usize>), ApiError> {
    let empty = Map::new();
    let o = match v {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ApiError::invalid("options", "must be an object")),
    };
    let within = |e: ApiError| e.within("options.");
    for (k, v) in o {
        let k = k.as_str();
        if let Some((_, off)) = NEUTRAL.iter().find(|(n, _)| *n == k) {
            if !(v.is_null() || v.as_f64() == Some(*off)) {
                return Err(within(ApiError::invalid(
                    k,
                    format!("not supported (only {off}, which leaves it off)"),
                )));
            }
        } else if !HONOURED.contains(&k) && !RUNTIME.contains(&k) {
            return Err(within(ApiError::invalid(k, "unknown option")));
        }
    }
    // Ollama's -1 (its default) draws a fresh seed, as a missing one does.
    let seed = match o.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(s), _) => Some(s),
            (None, Some(_)) => None,
            _ => return Err(within(ApiError::invalid("seed", "must be an integer"))),
        },
    };
    let mut sampling = api::sampling(o, seed.unwrap_or_else(api::random_seed)).map_err(within)?;
    if let Some(n) = int(o, "repeat_last_n")? {
        sampling.repeat_last_n = match n {
            // -1: the whole context.
            -1 => usize::MAX,
            n if n >= 0 => n as usize,
            _ => {
                return Err(within(ApiError::invalid(
                    "repeat_last_n",
                    "must be -1 or more",
                )))
            }
        };
    }
    // 0 is Ollama's "not set"; -1 (no limit) and -2 (fill the context) run until the context
    // is full.
    let max_tokens = match int(o, "num_predict")? {
        None | Some(0) => default_max_tokens,
        Some(-1 | -2) => usize::MAX,
        Some(n) if n > 0 => n as usize,
        Some(_) => {
            return Err(within(ApiError::invalid(
                "num_predict",
                "must be a positive number of tokens, or -1 for no limit",
            )))
        }
    };
    let ctx_limit = match int(o, "num_ctx")? {
        None | Some(0) => None,
        Some(n) if n > 0 => Some(n as usize),
        Some(_) => return Err(within(ApiError::invalid("num_ctx", "must be positive"))),
    };
    let stop = api::stop(o).map_err(within)?;
    Ok((
        GenerateParams {
            max_tokens,
            sampling,
            stop,
        },
        ctx_limit,
    ))
}

/// An integer option (Ollama's are Go `int`s, so -1 and friends are meaningful).
fn int(o: &Map<String, Value>, f: &str) -> Result<Option<i64>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(f, "must be an integer").within("options.")),
    }
}

/// `/api/chat`'s `messages`; none at all asks for the model to be loaded.
fn messages(o: &Map<String, Value>) -> Result<Body, ApiError> {
    let list = match o.get("messages") {
        None | Some(Value::Null) => return Ok(Body::Load),
        Some(Value::Array(a)) if a.is_empty() => return Ok(Body::Load),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::invalid("messages", "must be an array")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].{f}");
        let Value::Object(m) = m else {
            return Err(ApiError::invalid(
                format!("messages[{i}]"),
                "must be an object",
            ));
        };
        for (k, v) in m {
            let why = match k.as_str() {
                "role" | "content" => continue,
                _ if is_empty(v) => continue,
                "images" => "images are not supported: candor serves text models",
                "tool_calls" | "tool_name" | "tool_call_id" => {
                    "tool calling is not supported yet: candor has no tool-call support"
                }
                "thinking" => "thinking is not supported yet: candor has no reasoning support",
                _ => "unknown field",
            };
            return Err(ApiError::invalid(at(k), why));
        }
        let role = match m.get("role") {
            Some(Value::String(r)) => match r.as_str() {
                "system" | "user" | "assistant" => r.as_str(),
                "tool" => {
                    return Err(ApiError::invalid(
                        at("role"),
                        "tool results are not supported yet: candor has no tool-call support",
                    ))
                }
                _ => {
                    return Err(ApiError::invalid(
                        at("role"),
                        format!("unsupported role `{r}` (system, user, assistant)"),
                    ))
                }
            },
            None | Some(Value::Null) => return Err(ApiError::invalid(at("role"), "required")),
            Some(_) => return Err(ApiError::invalid(at("role"), "must be a string")),
        };
        let content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::invalid(at("content"), "must be a string")),
        };
        out.push(Message::new(role, content));
    }
    Ok(Body::Chat(out))
}

/// `/api/generate`'s prompt, `system`, `raw` and `context`; fields for what candor does not
/// do (`suffix`, `images`, `template`, image generation) are refused when set.
fn generate_body(o: &Map<String, Value>) -> Result<(Body, Vec<u32>), ApiError> {
    for (field, why) in [
        ("suffix", "fill-in-the-middle is not supported"),
        (
            "images",
            "images are not supported: candor serves text models",
        ),
        (
            "template",
            "a template of the client's own is not supported: candor renders the model's \
             verified chat template (send `raw: true` with a prompt formatted yourself instead)",
        ),
        ("width", "image generation is not supported"),
        ("height", "image generation is not supported"),
        ("steps", "image generation is not supported"),
    ] {
        if o.get(field)
            .is_some_and(|v| !is_empty(v) && v != &Value::from(0))
        {
            return Err(ApiError::invalid(field, why));
        }
    }
    let prompt = api::opt_string(o, "prompt")?.unwrap_or_default();
    let system = api::opt_string(o, "system")?.filter(|s| !s.is_empty());
    let raw = api::opt_bool(o, "raw")?.unwrap_or(false);
    let context = match o.get("context") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_u64()
                    .filter(|&t| t <= u32::MAX as u64)
                    .map(|t| t as u32)
                    .ok_or_else(|| ApiError::invalid("context", "must be an array of token ids"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid(
                "context",
                "must be an array of token ids",
            ))
        }
    };
    if raw && (system.is_some() || !context.is_empty()) {
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
    Ok((body, context))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Request, ApiError> {
        parse(body.as_bytes(), Kind::Chat, 64)
    }

    fn gen(body: &str) -> Result<Request, ApiError> {
        parse(body.as_bytes(), Kind::Generate, 64)
    }

    fn param(r: Result<Request, ApiError>) -> Option<String> {
        r.unwrap_err().param
    }

    #[test]
    fn parses_chat_with_options() {
        let r = chat(
            r#"{"model":"m:latest","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi","images":null}],
                "stream":false,"keep_alive":"5m","think":false,"format":"","tools":[],
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
            (
                format!(r#"{{"model":"m",{msg},"format":"json"}}"#),
                "format",
            ),
            (
                format!(r#"{{"model":"m",{msg},"format":{{"type":"object"}}}}"#),
                "format",
            ),
            (format!(r#"{{"model":"m",{msg},"think":true}}"#), "think"),
            (format!(r#"{{"model":"m",{msg},"think":"high"}}"#), "think"),
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
        let e = chat(r#"{"model":"m","options":{"temperature":3}}"#).unwrap_err();
        assert_eq!(e.message, "options.temperature: must be between 0 and 2");
        assert!(chat("{oops").unwrap_err().param.is_none());
    }
}
