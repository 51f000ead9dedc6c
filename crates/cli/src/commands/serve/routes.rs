//! What both APIs share: the models served and their queues, the API key, `/health`, request
//! bodies, and handing a request to a model's queue. The routes are in [`super::openai`] and
//! [`super::ollama`]. Handlers never run a model: they validate, queue the request and relay its
//! events, so the server answers `/health` and the model lists while generating.

use super::error::ApiError;
use super::{metrics, ollama, openai};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use candor_engine::serving::{Events, Input, Queue, Task};
use serde_json::{json, Value};
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
    pub info: candor_engine::LoadedModelInfo,
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
    pub(super) fn find(&self, id: Option<&str>) -> Result<&ServedModel, ApiError> {
        match id {
            Some(id) => self.models.iter().find(|m| m.id == id).ok_or_else(|| {
                let served: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
                ApiError::model_not_found(format!(
                    "the model `{id}` is not served here (served: {})",
                    served.join(", ")
                ))
            }),
            None if self.models.len() == 1 => Ok(&self.models[0]),
            None => Err(ApiError::invalid(
                "model",
                "required when more than one model is served",
            )),
        }
    }

    /// The body of a request to generate: 503 while shutting down, 413 past [`MAX_BODY_BYTES`],
    /// 400 when it cannot be read.
    pub(super) fn accept(&self, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(ApiError::shutting_down());
        }
        body_bytes(body)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .merge(openai::router(state.clone()))
        .merge(ollama::router(state.clone()))
        .merge(metrics::router(state.clone()))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

pub(super) async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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

/// The body, or 413 past [`MAX_BODY_BYTES`] and 400 when it cannot be read.
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .with_code("request_too_large"),
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
