//! `GET /metrics`: every served model's counters in Prometheus' text exposition format
//! (version 0.0.4), labelled `model="ID"`, so replicas behind a load balancer can be watched
//! with the tools people already use.

use super::routes::{self, AppState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use candor_engine::serving::{Histogram, StatsSnapshot, LATENCY_BUCKETS};
use std::fmt::Write;
use std::sync::Arc;

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state, routes::auth))
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let models: Vec<(&str, StatsSnapshot)> = st
        .models
        .iter()
        .map(|m| (m.id.as_str(), m.queue.stats()))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&models),
    )
        .into_response()
}

/// A number every model reports: a counter or a gauge.
struct Scalar {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&StatsSnapshot) -> u64,
}

const SCALARS: [Scalar; 8] = [
    Scalar {
        name: "candor_prompt_tokens_total",
        kind: "counter",
        help: "Prompt tokens of the requests run.",
        value: |s| s.prompt_tokens,
    },
    Scalar {
        name: "candor_prompt_tokens_cached_total",
        kind: "counter",
        help: "Prompt tokens read from the prefix cache instead of being computed.",
        value: |s| s.cached_prompt_tokens,
    },
    Scalar {
        name: "candor_generated_tokens_total",
        kind: "counter",
        help: "Tokens generated.",
        value: |s| s.generated_tokens,
    },
    Scalar {
        name: "candor_slots",
        kind: "gauge",
        help: "Requests the model can generate at once.",
        value: |s| s.slots as u64,
    },
    Scalar {
        name: "candor_slots_busy",
        kind: "gauge",
        help: "Slots generating now.",
        value: |s| s.slots_busy as u64,
    },
    Scalar {
        name: "candor_queue_depth",
        kind: "gauge",
        help: "Requests waiting for a slot.",
        value: |s| s.queued as u64,
    },
    Scalar {
        name: "candor_kv_cache_tokens",
        kind: "gauge",
        help: "Positions held in the slots' KV caches.",
        value: |s| s.kv_tokens as u64,
    },
    Scalar {
        name: "candor_kv_cache_bytes",
        kind: "gauge",
        help: "Bytes allocated by the slots' KV caches.",
        value: |s| s.kv_bytes as u64,
    },
];

/// A latency every model records, as a histogram in seconds.
struct Latency {
    name: &'static str,
    help: &'static str,
    of: fn(&StatsSnapshot) -> &Histogram,
}

const LATENCIES: [Latency; 2] = [
    Latency {
        name: "candor_time_to_first_token_seconds",
        help: "From a request's arrival to its first generated token.",
        of: |s| &s.time_to_first_token,
    },
    Latency {
        name: "candor_inter_token_latency_seconds",
        help: "Between one generated token of a request and its next.",
        of: |s| &s.inter_token,
    },
];

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text for `models` (id, reading).
pub fn render(models: &[(&str, StatsSnapshot)]) -> String {
    let mut out = String::new();
    let name = "candor_requests_total";
    let help = "Requests that ended, by outcome (rejected: refused at once, the queue was full).";
    header(&mut out, name, "counter", help);
    for (id, s) in models {
        let model = label(id);
        for (outcome, n) in [
            ("completed", s.completed),
            ("cancelled", s.cancelled),
            ("failed", s.failed),
            ("rejected", s.rejected),
        ] {
            let _ = writeln!(out, "{name}{{model=\"{model}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    for m in &SCALARS {
        header(&mut out, m.name, m.kind, m.help);
        for (id, s) in models {
            let _ = writeln!(
                out,
                "{}{{model=\"{}\"}} {}",
                m.name,
                label(id),
                (m.value)(s)
            );
        }
    }
    for m in &LATENCIES {
        header(&mut out, m.name, "histogram", m.help);
        for (id, s) in models {
            histogram(&mut out, m.name, &label(id), (m.of)(s));
        }
    }
    out
}

fn histogram(out: &mut String, name: &str, model: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le = LATENCY_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", h.count);
}

/// A label value with `\`, `"` and newlines escaped as the format requires.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
