//! OpenAI's API: `/v1/chat/completions`, `/v1/completions` (streamed as server-sent events with
//! `"stream": true`) and `/v1/models[/{id}]`.
//!
//! - [`request`]: the request bodies, typed and validated.
//! - [`response`]: the response objects and stream chunks.
//! - [`tools`]: tool definitions, calls in the history and in answers.

pub mod request;
pub mod response;
pub mod tools;

use super::error::ApiError;
use super::routes::{self, AppState, ServedModel};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::middleware;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use candor_engine::serving::{Event, Events, Task};
use futures_util::stream::{self, StreamExt};
use request::Endpoint;
use response::Meta;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route_layer(middleware::from_fn_with_state(state, routes::auth))
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
    let body = st.accept(body)?;
    let req = request::parse(&body, endpoint, st.default_max_tokens)?;
    let model = st.find(req.model.as_deref())?;
    let task_logprobs = req.params.logprobs.is_some();
    let task = Task {
        input: req.input,
        params: req.params,
        stream: req.stream,
        context: Vec::new(),
        ctx_limit: None,
    };
    let input_param = endpoint.input_param();
    let (events, _) = routes::start(model, task, input_param).await?;
    let meta = Meta::new(endpoint, &model.id, task_logprobs);
    if req.stream {
        Ok(sse(meta, events, req.include_usage).into_response())
    } else {
        let c = events.finish().await;
        let c = c.map_err(|e| ApiError::from_serving(e, input_param, &model.id))?;
        Ok(Json(meta.response(&c)).into_response())
    }
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
    // The state: the events, and how many characters have been sent (`text_offset`).
    let rest = stream::unfold(Some((events, 0)), move |state| {
        let meta = meta.clone();
        async move {
            let (mut events, sent) = state?;
            let mut last = match events.recv().await {
                Some(Event::Text {
                    text,
                    reasoning,
                    logprobs,
                }) => {
                    let chunk = meta.text_chunk(&text, reasoning, &logprobs, sent);
                    // `text_offset` counts the answer's characters.
                    let sent = sent + if reasoning { 0 } else { text.chars().count() };
                    return Some((vec![data(chunk)], Some((events, sent))));
                }
                Some(Event::Started { .. }) => return Some((vec![], Some((events, sent)))),
                Some(Event::Done(c)) => {
                    let mut v: Vec<SseEvent> =
                        meta.tool_calls_chunk(&c).map(data).into_iter().collect();
                    v.push(data(meta.finish_chunk(&c)));
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
