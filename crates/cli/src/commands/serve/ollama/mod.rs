//! Ollama's native API on the same server, models and queues as the OpenAI routes, so that
//! Ollama's clients (its Python and JavaScript libraries, Open WebUI, LangChain's `ChatOllama`,
//! ...) run verified models unchanged.
//!
//! - `POST /api/chat`, `POST /api/generate`: streamed as newline-delimited JSON unless
//!   `"stream": false`, with Ollama's counts and nanosecond durations.
//! - `GET /api/tags`, `POST /api/show`, `GET /api/ps`, `GET /api/version`, and `GET /`, which
//!   clients probe.
//! - `/api/pull`, `/api/push`, `/api/create`, `/api/copy`, `/api/delete`, `/api/blobs/...`:
//!   refused with 403 (models are served only after verification, from `candor pull`).
//!
//! Errors are Ollama's `{"error": "..."}` with the status the OpenAI routes would give.

pub mod request;

use super::error::ApiError;
use super::routes::{self, AppState, ServedModel};
use super::wire;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use candor_engine::serving::{Event, Events, Input, Task};
use candor_engine::{Completion, FinishReason, Message, SamplingParams};
use candor_verify::manifest::FileRole;
use candor_verify::Verification;
use futures_util::stream::{self, StreamExt};
use request::{Body, Endpoint, ShowRequest};
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

/// An error answered in Ollama's shape, `{"error": "message"}`.
#[derive(Debug)]
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        self.0.respond(json!({"error": self.0.message}))
    }
}

type Answer = Result<Response, OllamaError>;

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/chat", post(chat))
        .route("/api/generate", post(generate))
        .route("/api/tags", get(tags))
        .route("/api/show", post(show))
        .route("/api/ps", get(ps))
        .route("/api/version", get(version))
        .route("/api/pull", any(|| refuse("pull models")))
        .route("/api/push", any(|| refuse("push models")))
        .route("/api/create", any(|| refuse("create models")))
        .route("/api/copy", any(|| refuse("copy models")))
        .route("/api/delete", any(|| refuse("delete models")))
        .route("/api/blobs/{digest}", any(|| refuse("accept model files")))
        .route("/api/embed", any(no_embeddings))
        .route("/api/embeddings", any(no_embeddings))
        .route("/api/{*rest}", any(no_route))
        .route_layer(middleware::from_fn_with_state(state, auth))
        // Without a key, like `/health`: clients probe `/` to see whether the server is up.
        .route("/", get(|| async { "candor is running\n" }))
}

/// The same key as `/v1`, answered in Ollama's shape.
async fn auth(State(st): State<Arc<AppState>>, req: HttpRequest, next: Next) -> Response {
    if !routes::authorized(&st, &req) {
        return OllamaError(ApiError::unauthorized()).into_response();
    }
    next.run(req).await
}

/// The model for an Ollama name: the manifest id, `id:latest`, or `name:tag` for the id
/// `name-tag` (`smollm2-135m-instruct:q4_1`), ignoring ASCII case as Ollama does.
fn find<'a>(st: &'a AppState, name: &str) -> Result<&'a ServedModel, OllamaError> {
    let plain = name.strip_suffix(":latest").unwrap_or(name);
    let dashed = plain.rsplit_once(':').map(|(n, tag)| format!("{n}-{tag}"));
    st.models
        .iter()
        .find(|m| {
            m.id.eq_ignore_ascii_case(plain)
                || dashed
                    .as_deref()
                    .is_some_and(|d| m.id.eq_ignore_ascii_case(d))
        })
        .ok_or_else(|| {
            let served: Vec<String> = st.models.iter().map(tagged).collect();
            OllamaError(ApiError::model_not_found(format!(
                "model '{name}' not found (served: {})",
                served.join(", ")
            )))
        })
}

/// The name `/api/tags` lists: the manifest id with Ollama's default tag.
fn tagged(m: &ServedModel) -> String {
    format!("{}:latest", m.id)
}

async fn chat(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Answer {
    infer(st, body, Endpoint::Chat).await
}

async fn generate(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Answer {
    infer(st, body, Endpoint::Generate).await
}

const NO_UNLOAD: &str =
    "candor serve keeps its models loaded while it runs; stop the server to unload them";

async fn infer(
    st: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Answer {
    let started = Instant::now();
    let body = st.accept(body)?;
    let req = request::parse(&body, endpoint, st.default_max_tokens)?;
    let model = find(&st, &req.model)?;
    let mut reply = Reply {
        model: req.model.clone(),
        endpoint,
        started,
        context: None,
        eos_id: model.eos_id,
        id: model.id.clone(),
    };
    if req.unload && req.body == Body::Load {
        return Err(ApiError::invalid("keep_alive", NO_UNLOAD).into());
    }
    // As in Ollama, raw mode neither takes nor returns `context`.
    let returns_context = matches!(req.body, Body::Templated { .. });
    let input = match req.body {
        Body::Load => return Ok(Json(reply.loaded()).into_response()),
        Body::Chat(messages) => Input::Chat(messages),
        Body::Raw(prompt) => Input::Text(prompt),
        Body::Templated { system, prompt } => match (&model.chat_template, system) {
            (Some(_), system) => Input::Chat(
                system
                    .map(|s| Message::new("system", s))
                    .into_iter()
                    .chain([Message::new("user", prompt)])
                    .collect(),
            ),
            (None, Some(_)) => {
                return Err(ApiError::invalid(
                    "system",
                    "the model has no chat template to put a system prompt in",
                )
                .into())
            }
            (None, None) => Input::Text(prompt),
        },
    };
    let task = Task {
        input,
        params: req.params,
        stream: req.stream,
        context: req.context,
        ctx_limit: req.ctx_limit,
    };
    let (events, prompt) = routes::start(model, task, endpoint.input_param()).await?;
    if returns_context {
        reply.context = Some(prompt);
    }
    if req.stream {
        Ok(ndjson(reply, events))
    } else {
        let c = events.finish().await.map_err(|e| reply.error(e))?;
        Ok(Json(reply.done(&c, true)).into_response())
    }
}

/// What every answer object of one request shares.
#[derive(Clone)]
struct Reply {
    model: String,
    endpoint: Endpoint,
    started: Instant,
    /// `/api/generate`'s prompt tokens, returned as `context` with the answer's.
    context: Option<Vec<u32>>,
    /// Ends the `context` of an answer the model finished, as the model wrote it.
    eos_id: Option<u32>,
    /// The served model's id.
    id: String,
}

impl Reply {
    fn error(&self, e: candor_engine::serving::ServeError) -> ApiError {
        ApiError::from_serving(e, self.endpoint.input_param(), &self.id)
    }

    fn object(&self, text: &str, done: bool) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("model".into(), json!(self.model));
        m.insert("created_at".into(), json!(now_rfc3339()));
        match self.endpoint {
            Endpoint::Chat => m.insert(
                "message".into(),
                json!({"role": "assistant", "content": text}),
            ),
            Endpoint::Generate => m.insert("response".into(), json!(text)),
        };
        m.insert("done".into(), json!(done));
        m
    }

    /// A streamed piece: of the answer, or of a thinking model's reasoning (`thinking`).
    fn piece(&self, text: &str, reasoning: bool) -> Value {
        if !reasoning {
            return Value::Object(self.object(text, false));
        }
        let mut m = self.object("", false);
        self.put_thinking(&mut m, text);
        Value::Object(m)
    }

    /// `thinking` beside the answer: in chat's `message`, at the top of generate's object.
    fn put_thinking(&self, m: &mut Map<String, Value>, thinking: &str) {
        match (self.endpoint, m.get_mut("message")) {
            (Endpoint::Chat, Some(Value::Object(msg))) => {
                msg.insert("thinking".into(), json!(thinking));
            }
            _ => {
                m.insert("thinking".into(), json!(thinking));
            }
        }
    }

    /// The last object: with the whole answer (and any reasoning) when not streamed, with no
    /// text when streamed.
    fn done(&self, c: &Completion, whole: bool) -> Value {
        let text = if whole { c.text.as_str() } else { "" };
        let nanos = |s: f64| (s * 1e9).round() as u64;
        let mut m = self.object(text, true);
        if let (Some(thinking), true) = (&c.reasoning, whole) {
            self.put_thinking(&mut m, thinking);
        }
        m.insert(
            "done_reason".into(),
            json!(wire::finish_reason(c.finish_reason)),
        );
        if let Some(prompt) = &self.context {
            // Without the end of the answer, a continuation would read as the same turn.
            let eos = self.eos_id.filter(|_| c.finish_reason == FinishReason::Eos);
            let all: Vec<u32> = prompt
                .iter()
                .chain(&c.tokens)
                .chain(&eos)
                .copied()
                .collect();
            m.insert("context".into(), json!(all));
        }
        m.insert(
            "total_duration".into(),
            json!(self.started.elapsed().as_nanos() as u64),
        );
        // The model was loaded (and verified) when the server started.
        m.insert("load_duration".into(), json!(0));
        m.insert("prompt_eval_count".into(), json!(c.prompt_tokens));
        m.insert(
            "prompt_eval_duration".into(),
            json!(nanos(c.prompt_seconds)),
        );
        m.insert("eval_count".into(), json!(c.tokens.len()));
        m.insert("eval_duration".into(), json!(nanos(c.generate_seconds)));
        Value::Object(m)
    }

    /// The answer to a request with nothing to generate, which asks for the model to be loaded:
    /// it is, since the server started.
    fn loaded(&self) -> Value {
        let mut m = self.object("", true);
        m.insert("done_reason".into(), json!("load"));
        Value::Object(m)
    }
}

/// Relays a request's events as newline-delimited JSON objects. Dropping the stream (the client
/// went away) drops the events, which cancels the generation; an error after the first line is sent
/// as an `{"error": ...}` line, which Ollama's clients raise.
fn ndjson(reply: Reply, events: Events) -> Response {
    let line = |v: Value| {
        let mut b = v.to_string().into_bytes();
        b.push(b'\n');
        Bytes::from(b)
    };
    let lines = stream::unfold(Some(events), move |events| {
        let reply = reply.clone();
        async move {
            let mut events = events?;
            loop {
                let (v, more) = match events.recv().await {
                    Some(Event::Text {
                        text, reasoning, ..
                    }) => (reply.piece(&text, reasoning), true),
                    Some(Event::Started { .. }) => continue,
                    Some(Event::Done(c)) => (reply.done(&c, false), false),
                    Some(Event::Error(e)) => (json!({"error": reply.error(e).message}), false),
                    None => (json!({"error": "the model's worker stopped"}), false),
                };
                return Some((line(v), more.then_some(events)));
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        HttpBody::from_stream(lines.map(Ok::<_, Infallible>)),
    )
        .into_response()
}

/// `/api/tags`.
async fn tags(State(st): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<Value> = st.models.iter().map(|m| listed(m, false)).collect();
    Json(json!({ "models": models }))
}

/// `/api/ps`: every served model is loaded, until the server stops.
async fn ps(State(st): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<Value> = st.models.iter().map(|m| listed(m, true)).collect();
    Json(json!({ "models": models }))
}

/// A model as `/api/tags` (or, `running`, `/api/ps`) lists it.
fn listed(m: &ServedModel, running: bool) -> Value {
    let p = &m.details["provenance"];
    let files = p["files"].as_array().map(Vec::as_slice).unwrap_or_default();
    let size: u64 = files.iter().filter_map(|f| f["size"].as_u64()).sum();
    let mut v = json!({
        "name": tagged(m),
        "model": tagged(m),
        "size": size,
        "digest": digest(m),
        "details": details(m),
    });
    if running {
        v["expires_at"] = json!("9999-12-31T23:59:59Z");
        v["size_vram"] = json!(if m.accelerator { size } else { 0 });
        v["context_length"] = json!(m.info.ctx_size);
    } else {
        v["modified_at"] = p["verified_at"].clone();
    }
    v
}

/// The weights file's sha256; for weights in several files, the root digest over all files.
fn digest(m: &ServedModel) -> Value {
    let p = &m.details["provenance"];
    let weights: Vec<&Value> = p["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["role"].is_null() || f["role"] == "weights")
        .collect();
    match weights.as_slice() {
        [one] => one["sha256"].clone(),
        _ => p["root_digest"].clone(),
    }
}

fn details(m: &ServedModel) -> Value {
    let family = json!(m.info.architecture);
    json!({
        "parent_model": "",
        "format": m.info.format,
        "family": family,
        "families": [family],
        "parameter_size": parameter_size(m.info.parameters),
        "quantization_level": m.info.weight_type,
    })
}

/// `134.5M`, `7.6B`, as Ollama writes parameter counts.
fn parameter_size(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// `/api/show`: Ollama's fields, and candor's provenance as `/v1/models` reports it.
async fn show(State(st): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Answer {
    let name = ShowRequest::parse(&routes::body_bytes(body)?)?;
    let m = find(&st, &name)?;
    let p = &m.details["provenance"];
    let parameters = parameters(st.default_max_tokens, m.info.ctx_size);
    let modelfile = format!(
        "# Served by candor after verification: manifest {}, root digest {}.\n\
         # candor does not read Modelfiles; this one shows the defaults in force.\n\
         FROM {}\n{}",
        p["manifest"]["id"].as_str().unwrap_or("none (unlisted)"),
        p["root_digest"].as_str().unwrap_or("unknown"),
        m.id,
        parameters
            .lines()
            .map(|l| format!("PARAMETER {l}\n"))
            .collect::<String>(),
    );
    Ok(Json(json!({
        "license": m.license_text,
        "modelfile": modelfile,
        "parameters": parameters,
        "template": m.chat_template.clone().unwrap_or_default(),
        "details": details(m),
        "model_info": model_info(m),
        "capabilities": ["completion"],
        "modified_at": p["verified_at"],
        "provenance": p,
    }))
    .into_response())
}

/// The sampling defaults and limits a request without `options` gets, one `name value` a line.
fn parameters(max_tokens: usize, ctx: usize) -> String {
    let s = SamplingParams::default();
    let mut lines = vec![format!("temperature {}", s.temperature)];
    lines.extend(s.top_k.map(|k| format!("top_k {k}")));
    lines.extend(s.top_p.map(|p| format!("top_p {p}")));
    lines.extend(s.min_p.map(|p| format!("min_p {p}")));
    lines.push(format!("repeat_penalty {}", s.repeat_penalty));
    lines.push(format!("repeat_last_n {}", s.repeat_last_n));
    lines.push(format!("num_predict {max_tokens}"));
    lines.push(format!("num_ctx {ctx}"));
    lines.join("\n")
}

/// Ollama's `model_info`, GGUF-style keys for what candor knows of the model's shape.
fn model_info(m: &ServedModel) -> Value {
    let i = &m.info;
    let arch = json!(i.architecture);
    let a = arch.as_str().unwrap_or("unknown");
    json!({
        "general.architecture": a,
        "general.parameter_count": i.parameters,
        format!("{a}.context_length"): i.context_length,
        format!("{a}.embedding_length"): i.hidden_size,
        format!("{a}.block_count"): i.layers,
        format!("{a}.attention.head_count"): i.heads,
        format!("{a}.attention.head_count_kv"): i.kv_heads,
        format!("{a}.rope.freq_base"): i.rope_theta,
        format!("{a}.vocab_size"): i.vocab_size,
    })
}

async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// Routes that change the model store. Refused: a model is served only after `candor pull` (or a
/// manifest of the user's own) has verified it, and the server never writes the store.
async fn refuse(what: &'static str) -> OllamaError {
    OllamaError(ApiError::not_supported(
        StatusCode::FORBIDDEN,
        format!(
            "candor serve does not {what}: models are served only after verification. Run \
             `candor pull MODEL` on the server, then restart `candor serve -m MODEL`"
        ),
    ))
}

async fn no_embeddings() -> OllamaError {
    OllamaError(ApiError::not_supported(
        StatusCode::NOT_IMPLEMENTED,
        "candor serve does not compute embeddings",
    ))
}

async fn no_route(req: HttpRequest) -> OllamaError {
    OllamaError(ApiError::not_found(format!(
        "no such route: {} {}",
        req.method(),
        req.uri().path()
    )))
}

/// `2025-01-31T12:00:00.123456789Z`, now.
fn now_rfc3339() -> String {
    format!("{:.9}", jiff::Timestamp::now())
}

/// Largest license file `/api/show` returns whole.
const MAX_LICENSE_BYTES: u64 = 1 << 20;

/// The license as `/api/show` gives it: the verified license file when the manifest lists one
/// (read again from the hashed handle and checked against its hash), else what candor knows of
/// the license's terms.
pub fn license_text(v: &Verification) -> String {
    if let Some(text) = v
        .file_by_role(FileRole::License)
        .and_then(|f| read_verified(f).ok())
    {
        return text;
    }
    match &v.report.license {
        Some(l) => {
            let mut s = format!("{} ({})\n{}\n", l.name, l.spdx, l.url);
            for a in &l.additional {
                s.push_str(&format!("and {} ({})\n{}\n", a.name, a.spdx, a.url));
            }
            for line in &l.at_a_glance {
                s.push_str(&format!("- {line}\n"));
            }
            s
        }
        None => "unknown: no license is recorded for this model".into(),
    }
}

fn read_verified(f: &candor_verify::VerifiedFile) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::{Read, Seek, SeekFrom};
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    if f.size() > MAX_LICENSE_BYTES {
        return Err(bad("too large"));
    }
    let mut file = f.file();
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.take(MAX_LICENSE_BYTES).read_to_end(&mut bytes)?;
    if sha2::Sha256::digest(&bytes).as_slice() != f.sha256() {
        return Err(bad("changed since it was verified"));
    }
    String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sizes_read_like_ollamas() {
        assert_eq!(parameter_size(134_515_008), "134.5M");
        assert_eq!(parameter_size(7_615_616_512), "7.6B");
        assert_eq!(parameter_size(999), "999");
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2025-01-31T12:00:00.123456789Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }

    #[test]
    fn defaults_are_listed_one_a_line() {
        let p = parameters(512, 4096);
        assert!(p.starts_with("temperature 0.8\n"), "{p}");
        assert!(p.ends_with("num_predict 512\nnum_ctx 4096"), "{p}");
    }
}
