//! Errors of both APIs: the status, a message that names the field at fault, and OpenAI's
//! `type`, `param` and `code`. OpenAI's routes answer the whole object, Ollama's the message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use candor_engine::serving::ServeError;
use serde_json::{json, Value};

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
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
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
            ..Self::bad_request(message)
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

    /// 404 for a model that is not served, in the words of the API that was asked.
    pub fn model_not_found(message: String) -> Self {
        Self {
            param: Some("model".into()),
            ..Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
        }
        .with_code("model_not_found")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code("not_found")
    }

    /// A route or feature candor does not offer, with the status that says how.
    pub fn not_supported(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "invalid_request_error", message).with_code("not_supported")
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
            // `origin` is the request field the grammar came from.
            E::Grammar { origin, message } => Self::invalid(origin.as_str(), message.as_str()),
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
            e @ ServeError::OverKvBudget { .. } => {
                Self::invalid(input_param, e.to_string()).with_code("context_length_exceeded")
            }
            ServeError::QueueFull => Self::queue_full(model),
            ServeError::ShuttingDown => Self::shutting_down(),
            e @ (ServeError::Panicked(_)
            | ServeError::StepFailed(_)
            | ServeError::WorkerStopped) => Self::internal(e.to_string()),
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

    /// The response with `body`, telling clients to retry the refusals that pass.
    pub fn respond(&self, body: Value) -> Response {
        let mut r = (self.status, axum::Json(body)).into_response();
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(self.body())
    }
}
