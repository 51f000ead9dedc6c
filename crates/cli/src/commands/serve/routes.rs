//! The HTTP routes: `/v1/chat/completions`, `/v1/completions`, `/v1/models[/{id}]` and `/health`;
//! Ollama's `/api` routes are in [`super::ollama`], on the same queues.
//! Handlers never run a model: they validate, queue a job on the model's worker and relay its
//! events, so the server answers `/health` and `/v1/models` while generating.

use super::api::{self, ApiError, Endpoint, Meta};
use super::ollama;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use candor_engine::serving::{Event, Events, Input, Queue, Task};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Request bodies larger than this are answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct ServedModel {
    pub id: String,
    pub owned_by: String,
    /// When it was verified (Unix seconds): the `created` of `/v1/models`.
    pub verified_at: u64,
    pub vocab_size: usize,
    /// The model's shape, for Ollama's `/api/show` and `/api/tags`.
    pub info: candor_engine::ModelInfo,
    /// Whether it runs on a GPU (Ollama's `size_vram`).
    pub accelerator: bool,
    /// The end-of-sequence token, which closes a finished answer in Ollama's `context`.
    pub eos_id: Option<u32>,
    /// The chat template's source, when the model has one.
    pub chat_template: Option<String>,
    /// The license as `/api/show` gives it: the verified license file, or the terms candor
    /// knows.
    pub license_text: String,
    /// What `/v1/models` says about the model besides the OpenAI fields.
    pub details: Value,
    pub queue: Queue,
}

pub struct AppState {
    pub models: Vec<ServedModel>,
    pub api_key: Option<String>,
    pub default_max_tokens: usize,
    /// Set on SIGINT/SIGTERM: new requests get 503.
    pub draining: AtomicBool,
}

impl AppState {
    fn find(&self, id: Option<&str>) -> Result<&ServedModel, ApiError> {
        match id {
            Some(id) => self.models.iter().find(|m| m.id == id).ok_or_else(|| {
                ApiError::model_not_found(
                    id,
                    &self
                        .models
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>(),
                )
            }),
            None if self.models.len() == 1 => Ok(&self.models[0]),
            None => Err(ApiError::invalid(
                "model",
                "required when more than one model is served",
            )),
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(v1)
        .merge(ollama::router(state.clone()))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !authorized(&st, &req) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

/// Whether the request carries `Authorization: Bearer KEY` when the server has a key.
pub(super) fn authorized(st: &AppState, req: &Request) -> bool {
    let Some(key) = &st.api_key else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let draining = st.draining.load(Ordering::Relaxed);
    let models: Vec<Value> = st
        .models
        .iter()
        .map(|m| {
            let mut v = json!(m.queue.stats());
            v["id"] = json!(m.id);
            v
        })
        .collect();
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": if draining { "shutting_down" } else { "ok" },
        "models": models,
    });
    (status, Json(body)).into_response()
}

fn model_object(m: &ServedModel) -> Value {
    let mut v = json!({
        "id": m.id,
        "object": "model",
        "created": m.verified_at,
        "owned_by": m.owned_by,
    });
    if let (Value::Object(o), Value::Object(d)) = (&mut v, &m.details) {
        o.extend(d.clone());
    }
    v
}

async fn list_models(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": st.models.iter().map(model_object).collect::<Vec<_>>(),
    }))
}

async fn get_model(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(model_object(st.find(Some(&id))?)))
}

async fn chat_completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    complete(st, body, Endpoint::Chat).await
}

async fn completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    complete(st, body, Endpoint::Completions).await
}

async fn complete(
    st: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    if st.draining.load(Ordering::Relaxed) {
        return Err(ApiError::shutting_down());
    }
    let body = body_bytes(body)?;
    let req = api::parse(&body, endpoint, st.default_max_tokens)?;
    let model = st.find(req.model.as_deref())?;
    let task = Task {
        input: req.input,
        params: req.params,
        stream: req.stream,
        context: Vec::new(),
        ctx_limit: None,
    };
    let input_param = endpoint.input_param();
    let (events, _) = start(model, task, input_param).await?;
    let meta = Meta::new(endpoint, &model.id);
    if req.stream {
        Ok(sse(meta, events, req.include_usage).into_response())
    } else {
        let c = events.finish().await;
        let c = c.map_err(|e| ApiError::from_serving(e, input_param, &model.id))?;
        Ok(Json(meta.response(&c)).into_response())
    }
}

/// The body, or 413 past [`MAX_BODY_BYTES`] and 400 when it cannot be read.
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_too_large"),
        },
        _ => ApiError::bad_request(r.body_text()),
    })
}

/// Queues a request on the model's worker and waits until the worker takes it, so that errors
/// in the prompt still get their status code. `input_param` is the request field that holds the
/// input. Returns the events to come and the prompt's token ids.
pub(super) async fn start(
    model: &ServedModel,
    task: Task,
    input_param: &str,
) -> Result<(Events, Vec<u32>), ApiError> {
    let in_vocab =
        |ids: &[u32], field: &str| match ids.iter().find(|&&t| t as usize >= model.vocab_size) {
            Some(bad) => Err(ApiError::invalid(
                field,
                format!(
                    "token id {bad} is outside the vocabulary ({})",
                    model.vocab_size
                ),
            )),
            None => Ok(()),
        };
    if let Input::Tokens(ids) = &task.input {
        in_vocab(ids, input_param)?;
    }
    in_vocab(&task.context, "context")?;
    let refused = |e| ApiError::from_serving(e, input_param, &model.id);
    let mut events = model.queue.submit(task).map_err(refused)?;
    let prompt = events.started().await.map_err(refused)?;
    Ok((events, prompt))
}

/// Relays a request's events as server-sent events, ending with `data: [DONE]`. Dropping the
/// stream (the client went away) drops the events, which cancels the generation.
fn sse(
    meta: Meta,
    events: Events,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let first: Vec<SseEvent> = meta.role_chunk().map(data).into_iter().collect();
    let rest = stream::unfold(Some(events), move |events| {
        let meta = meta.clone();
        async move {
            let mut events = events?;
            let mut last = match events.recv().await {
                Some(Event::Text(t)) => {
                    return Some((vec![data(meta.text_chunk(&t))], Some(events)))
                }
                Some(Event::Started { .. }) => return Some((vec![], Some(events))),
                Some(Event::Done(c)) => {
                    let mut v = vec![data(meta.finish_chunk(&c))];
                    if include_usage {
                        v.push(data(meta.usage_chunk(&c)));
                    }
                    v
                }
                Some(Event::Error(e)) => vec![data(meta.error(e).body())],
                None => vec![data(
                    ApiError::internal("the model's worker stopped").body(),
                )],
            };
            last.push(SseEvent::default().data("[DONE]"));
            Some((last, None))
        }
    });
    let all = stream::iter(first)
        .chain(rest.flat_map(stream::iter))
        .map(Ok::<_, Infallible>);
    Sse::new(all)
}
