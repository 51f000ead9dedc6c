//! The OpenAI wire format: request parsing with errors that name the offending field, error
//! bodies, and the response and stream-chunk objects.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use candor_engine::serving::{Input, ServeError};
use candor_engine::{Completion, FinishReason, GenerateParams, Message, SamplingParams};
use serde_json::{json, Map, Value};

/// An error answered as `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        let message = format!("{param}: {}", message.into());
        Self {
            param: Some(param),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// The same error for a field nested in `prefix` (e.g. `options.`): `temperature` becomes
    /// `options.temperature` in the param and the message.
    pub fn within(mut self, prefix: &str) -> Self {
        if let Some(p) = self.param.take() {
            if let Some(rest) = self.message.strip_prefix(&format!("{p}:")) {
                self.message = format!("{prefix}{p}:{rest}");
            }
            self.param = Some(format!("{prefix}{p}"));
        }
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn model_not_found(id: &str, served: &[&str]) -> Self {
        Self {
            param: Some("model".into()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!(
                    "the model `{id}` is not served here (served: {})",
                    served.join(", ")
                ),
            )
        }
        .with_code("model_not_found")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code("not_found")
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or incorrect API key: send `Authorization: Bearer KEY`",
        )
        .with_code("invalid_api_key")
    }

    pub fn queue_full(model: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("the queue for `{model}` is full; retry shortly"),
        )
        .with_code("queue_full")
    }

    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the server is shutting down",
        )
        .with_code("shutting_down")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// An error from the engine while preparing or running a request.
    pub fn from_engine(e: &candor_engine::Error, input_param: &str) -> Self {
        use candor_engine::Error as E;
        match e {
            E::PromptTooLong { .. } => {
                Self::invalid(input_param, e.to_string()).with_code("context_length_exceeded")
            }
            E::EmptyPrompt => Self::invalid(input_param, e.to_string()),
            // The model's own template refused the conversation (e.g. roles out of order).
            E::ChatTemplate(_) => Self::invalid(input_param, e.to_string()),
            E::InvalidOption(_) => Self::bad_request(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }

    /// An error from a model's queue: `input_param` is the request field that holds the input,
    /// `model` the served id.
    pub fn from_serving(e: ServeError, input_param: &str, model: &str) -> Self {
        match e {
            ServeError::Engine(e) => Self::from_engine(&e, input_param),
            // Only Ollama's requests set their own context window.
            ServeError::OverContextLimit { tokens, limit } => Self::invalid(
                input_param,
                format!("the prompt has {tokens} tokens but options.num_ctx is {limit}"),
            )
            .with_code("context_length_exceeded"),
            ServeError::QueueFull => Self::queue_full(model),
            ServeError::ShuttingDown => Self::shutting_down(),
            e @ (ServeError::Panicked(_) | ServeError::WorkerStopped) => {
                Self::internal(e.to_string())
            }
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    /// The request field that holds the input.
    pub fn input_param(self) -> &'static str {
        match self {
            Endpoint::Chat => "messages",
            Endpoint::Completions => "prompt",
        }
    }
}

#[derive(Debug)]
pub struct Request {
    pub model: Option<String>,
    pub input: Input,
    pub params: GenerateParams,
    pub stream: bool,
    pub include_usage: bool,
}

/// Largest number of stop strings a request may give.
const MAX_STOP: usize = 16;

/// Parses and validates a `/v1/chat/completions` or `/v1/completions` body.
pub fn parse(
    body: &[u8],
    endpoint: Endpoint,
    default_max_tokens: usize,
) -> Result<Request, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(o) = v else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let model = opt_string(&o, "model")?;

    let input = match endpoint {
        Endpoint::Chat => {
            if o.contains_key("prompt") {
                return Err(ApiError::invalid(
                    "prompt",
                    "chat completions take `messages`; use /v1/completions for a prompt",
                ));
            }
            Input::Chat(messages(&o)?)
        }
        Endpoint::Completions => prompt(&o)?,
    };

    // Choices and features this server does not offer are refused rather than ignored.
    match o.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => return Err(ApiError::invalid("n", "only n=1 is supported")),
    }
    match o.get("best_of") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => return Err(ApiError::invalid("best_of", "only best_of=1 is supported")),
    }
    for field in ["logprobs", "top_logprobs", "echo"] {
        match o.get(field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Number(n)) if n.as_u64() == Some(0) && field == "top_logprobs" => {}
            Some(_) => return Err(ApiError::invalid(field, "not supported")),
        }
    }
    for field in ["tools", "functions", "logit_bias"] {
        match o.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Object(m)) if m.is_empty() => {}
            Some(_) => return Err(ApiError::invalid(field, "not supported")),
        }
    }
    if let Some(s) = o.get("suffix").filter(|s| !s.is_null()) {
        if s.as_str() != Some("") {
            return Err(ApiError::invalid("suffix", "not supported"));
        }
    }
    if let Some(rf) = o.get("response_format").filter(|s| !s.is_null()) {
        if rf.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::invalid(
                "response_format",
                "only {\"type\": \"text\"} is supported",
            ));
        }
    }
    for field in ["presence_penalty", "frequency_penalty"] {
        if let Some(p) = opt_f64(&o, field)? {
            if p != 0.0 {
                return Err(ApiError::invalid(
                    field,
                    "not supported (use repeat_penalty)",
                ));
            }
        }
    }

    let max_tokens = match (
        opt_u64(&o, "max_completion_tokens")?,
        opt_u64(&o, "max_tokens")?,
    ) {
        (Some(n), _) => ("max_completion_tokens", n),
        (None, Some(n)) => ("max_tokens", n),
        (None, None) => ("max_tokens", default_max_tokens as u64),
    };
    if max_tokens.1 == 0 {
        return Err(ApiError::invalid(max_tokens.0, "must be at least 1"));
    }

    let seed = opt_u64_or_i64(&o, "seed")?.unwrap_or_else(random_seed);
    let sampling = sampling(&o, seed)?;
    let stop = stop(&o)?;

    let stream = opt_bool(&o, "stream")?.unwrap_or(false);
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => match so.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApiError::invalid(
                    "stream_options.include_usage",
                    "must be a boolean",
                ))
            }
        },
        Some(_) => return Err(ApiError::invalid("stream_options", "must be an object")),
    };

    Ok(Request {
        model,
        input,
        params: GenerateParams {
            max_tokens: max_tokens.1.min(usize::MAX as u64) as usize,
            sampling,
            stop,
        },
        stream,
        include_usage,
    })
}

/// The sampling fields both APIs share (`temperature`, `top_p`, `top_k`, `min_p`,
/// `repeat_penalty`), from an OpenAI body or Ollama's `options`.
pub fn sampling(o: &Map<String, Value>, seed: u64) -> Result<SamplingParams, ApiError> {
    let mut sampling = SamplingParams {
        seed,
        ..SamplingParams::default()
    };
    if let Some(t) = opt_f64(o, "temperature")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid("temperature", "must be between 0 and 2"));
        }
        sampling.temperature = t as f32;
    }
    if let Some(p) = opt_f64(o, "top_p")? {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                "must be greater than 0 and at most 1",
            ));
        }
        sampling.top_p = (p < 1.0).then_some(p as f32);
    }
    // Extensions in OpenAI's API, as in llama.cpp's and vLLM's servers.
    if let Some(k) = opt_u64(o, "top_k")? {
        sampling.top_k = (k > 0).then_some(k as usize);
    }
    if let Some(p) = opt_f64(o, "min_p")? {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::invalid("min_p", "must be between 0 and 1"));
        }
        sampling.min_p = (p > 0.0).then_some(p as f32);
    }
    if let Some(r) = opt_f64(o, "repeat_penalty")? {
        if !(r > 0.0 && r.is_finite()) {
            return Err(ApiError::invalid(
                "repeat_penalty",
                "must be greater than 0",
            ));
        }
        sampling.repeat_penalty = r as f32;
    }
    sampling
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(sampling)
}

/// `stop`: a string or an array of at most [`MAX_STOP`] strings; empty strings are dropped.
pub fn stop(o: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let stop = match o.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            if a.len() > MAX_STOP {
                return Err(ApiError::invalid(
                    "stop",
                    format!("at most {MAX_STOP} stop strings"),
                ));
            }
            a.iter()
                .map(|s| {
                    s.as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::invalid("stop", "must be a string or an array of strings")
                    })
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "stop",
                "must be a string or an array of strings",
            ))
        }
    };
    Ok(stop
        .into_iter()
        .filter(|s: &String| !s.is_empty())
        .collect())
}

fn messages(o: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let list = match o.get("messages") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("messages", "required"));
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::invalid("messages", "must be an array")),
    };
    if list.is_empty() {
        return Err(ApiError::invalid("messages", "must not be empty"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let at = |f: &str| format!("messages[{i}].{f}");
            let Value::Object(m) = m else {
                return Err(ApiError::invalid(format!("messages[{i}]"), "must be an object"));
            };
            let role = match m.get("role") {
                Some(Value::String(r)) => match r.as_str() {
                    "system" | "developer" => "system",
                    "user" => "user",
                    "assistant" => "assistant",
                    _ => {
                        return Err(ApiError::invalid(
                            at("role"),
                            format!("unsupported role `{r}` (system, developer, user, assistant)"),
                        ))
                    }
                },
                None | Some(Value::Null) => return Err(ApiError::invalid(at("role"), "required")),
                Some(_) => return Err(ApiError::invalid(at("role"), "must be a string")),
            };
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) if role == "assistant" => String::new(),
                None | Some(Value::Null) => {
                    return Err(ApiError::invalid(at("content"), "required"))
                }
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (
                            p.get("type").and_then(Value::as_str),
                            p.get("text").and_then(Value::as_str),
                        ) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            _ => {
                                return Err(ApiError::invalid(
                                    format!("messages[{i}].content[{j}]"),
                                    "only text parts ({\"type\": \"text\", \"text\": ...}) are supported",
                                ))
                            }
                        }
                    }
                    text
                }
                Some(_) => {
                    return Err(ApiError::invalid(
                        at("content"),
                        "must be a string or an array of text parts",
                    ))
                }
            };
            Ok(Message::new(role, content))
        })
        .collect()
}

fn prompt(o: &Map<String, Value>) -> Result<Input, ApiError> {
    const ONE: &str = "must be a string, an array holding one string, or an array of token ids";
    let tokens = |a: &[Value]| -> Result<Input, ApiError> {
        a.iter()
            .map(|t| {
                t.as_u64()
                    .filter(|&t| t <= u32::MAX as u64)
                    .map(|t| t as u32)
                    .ok_or_else(|| ApiError::invalid("prompt", ONE))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Input::Tokens)
    };
    let input = match o.get("prompt") {
        None | Some(Value::Null) => return Err(ApiError::invalid("prompt", "required")),
        Some(Value::String(s)) => Input::Text(s.clone()),
        Some(Value::Array(a)) => match a.as_slice() {
            [] => return Err(ApiError::invalid("prompt", "must not be empty")),
            [Value::String(s)] => Input::Text(s.clone()),
            [Value::Array(inner)] => tokens(inner)?,
            [Value::Number(_), ..] => tokens(a)?,
            [_, _, ..] if a.iter().all(|p| p.is_string() || p.is_array()) => {
                return Err(ApiError::invalid(
                    "prompt",
                    "only one prompt per request is supported",
                ))
            }
            _ => return Err(ApiError::invalid("prompt", ONE)),
        },
        Some(_) => return Err(ApiError::invalid("prompt", ONE)),
    };
    match &input {
        Input::Text(s) if s.is_empty() => Err(ApiError::invalid("prompt", "must not be empty")),
        Input::Tokens(t) if t.is_empty() => Err(ApiError::invalid("prompt", "must not be empty")),
        _ => Ok(input),
    }
}

pub fn opt_string(o: &Map<String, Value>, f: &str) -> Result<Option<String>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(f, "must be a string")),
    }
}

pub fn opt_bool(o: &Map<String, Value>, f: &str) -> Result<Option<bool>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(f, "must be a boolean")),
    }
}

pub fn opt_f64(o: &Map<String, Value>, f: &str) -> Result<Option<f64>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(ApiError::invalid(f, "must be a number")),
    }
}

pub fn opt_u64(o: &Map<String, Value>, f: &str) -> Result<Option<u64>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(f, "must be a non-negative integer")),
    }
}

pub fn opt_u64_or_i64(o: &Map<String, Value>, f: &str) -> Result<Option<u64>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .map(Some)
            .ok_or_else(|| ApiError::invalid(f, "must be an integer")),
    }
}

/// A seed for requests that give none: different per request, as OpenAI's are.
pub fn random_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of the time and a counter
    let mut z = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eos | FinishReason::Stop => "stop",
        // Cut short: by max_tokens, the context, or a cancellation at shutdown.
        FinishReason::Length | FinishReason::Context | FinishReason::Cancelled => "length",
    }
}

/// What every response object of one request shares.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
}

impl Meta {
    pub fn new(endpoint: Endpoint, model: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let created = unix_now();
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completions => "cmpl",
        };
        Self {
            id: format!("{prefix}-{created:x}{n:06x}"),
            created,
            model: model.to_string(),
            endpoint,
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

    /// An error in the middle of the request, as the request's fields name it.
    pub fn error(&self, e: ServeError) -> ApiError {
        ApiError::from_serving(e, self.endpoint.input_param(), &self.model)
    }

    /// The whole answer of a non-streamed request.
    pub fn response(&self, c: &Completion) -> Value {
        let reason = finish_reason(c.finish_reason);
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": null,
                "finish_reason": reason,
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": c.text,
                "logprobs": null,
                "finish_reason": reason,
            }),
        };
        let mut m = self.envelope(false, json!([choice]));
        m.insert("usage".into(), usage(c.prompt_tokens, c.tokens.len()));
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

    pub fn text_chunk(&self, text: &str) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => {
                json!({"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null})
            }
            Endpoint::Completions => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null})
            }
        };
        Value::Object(self.envelope(true, json!([choice])))
    }

    pub fn finish_chunk(&self, c: &Completion) -> Value {
        let reason = finish_reason(c.finish_reason);
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
        m.insert("usage".into(), usage(c.prompt_tokens, c.tokens.len()));
        Value::Object(m)
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2025-01-31T12:00:00Z` for a Unix time.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Request, ApiError> {
        parse(body.as_bytes(), Endpoint::Chat, 256)
    }

    #[test]
    fn rfc3339_formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn errors_name_the_field() {
        let param = |b: &str| chat(b).unwrap_err().param;
        assert_eq!(param(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"hi"}],"n":2}"#).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"hi"}],"temperature":3}"#).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"hi"}],"stop":[1]}"#).as_deref(),
            Some("stop")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"wizard","content":"hi"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}"#).as_deref(),
            Some("max_tokens")
        );
        assert!(chat("not json").unwrap_err().param.is_none());
    }

    #[test]
    fn parses_the_openai_fields() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"user","content":"hi"}],
                "max_tokens":7,"temperature":0,"top_p":0.5,"stop":"\n","seed":-1,"stream":true,"n":1,
                "stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(r.model.as_deref(), Some("m"));
        let Input::Chat(m) = &r.input else { panic!() };
        assert_eq!(m[0], Message::new("system", "ab"));
        assert_eq!(r.params.max_tokens, 7);
        assert_eq!(r.params.sampling.temperature, 0.0);
        assert_eq!(r.params.sampling.top_p, Some(0.5));
        assert_eq!(r.params.sampling.seed, u64::MAX);
        assert_eq!(r.params.stop, vec!["\n".to_string()]);
        assert!(r.stream && r.include_usage);

        let p = |b: &str| parse(b.as_bytes(), Endpoint::Completions, 16);
        assert!(matches!(p(r#"{"prompt":["x"]}"#).unwrap().input, Input::Text(ref s) if s == "x"));
        assert!(
            matches!(p(r#"{"prompt":[1,2]}"#).unwrap().input, Input::Tokens(ref t) if t == &[1, 2])
        );
        assert_eq!(
            p(r#"{"prompt":["a","b"]}"#).unwrap_err().param.as_deref(),
            Some("prompt")
        );
        assert_eq!(
            p(r#"{"prompt":""}"#).unwrap_err().param.as_deref(),
            Some("prompt")
        );
    }
}
