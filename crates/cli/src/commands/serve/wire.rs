//! What both APIs' request bodies share: parsing a body into typed structs with errors that name
//! the field (`messages[0].role: must be a string`), the field types, and the sampling fields,
//! stop strings and limits, validated once for both.
//!
//! A struct's fields take the `deserialize_with` helpers below, whose errors are the text after
//! `field: `; serde's own type errors read `expected ...`, so containers set
//! `#[serde(expecting = "must be ...")]`.

use super::error::ApiError;
use candor_engine::{FinishReason, Grammar, GrammarKind, SamplingParams};
use serde::de::{DeserializeOwned, Deserializer, Error as _, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::marker::PhantomData;

/// Largest number of stop strings a request may give.
pub const MAX_STOP: usize = 16;

/// A body's JSON object, or 400.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
    }
}

/// `T` from a JSON object, or 400 naming the field at fault.
pub fn parse<T: DeserializeOwned>(o: &Map<String, Value>) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(o).map_err(|e| {
        let param = e.path().to_string();
        let message = e.inner().to_string();
        let message = if message.starts_with("unknown field") {
            "unknown field"
        } else {
            // `invalid type: string "x", expected must be a number`
            message
                .rsplit_once(", expected ")
                .map_or(&*message, |(_, m)| m)
        };
        ApiError::invalid(param, message)
    })
}

/// A refusal for a field given at a value other than the one that turns its feature off.
pub fn off(
    field: &str,
    value: &Option<Value>,
    is_off: impl Fn(&Value) -> bool,
    why: &str,
) -> Result<(), ApiError> {
    match value {
        Some(v) if !v.is_null() && !is_off(v) => Err(ApiError::invalid(field, why)),
        _ => Ok(()),
    }
}

/// Null, `""`, `[]` or `{}`: a field sent but saying nothing.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn field<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &'static str,
    take: impl FnOnce(Value) -> Option<T>,
) -> Result<Option<T>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(v) => take(v).map(Some).ok_or_else(|| D::Error::custom(what)),
    }
}

pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    field(d, "must be a string", |v| match v {
        Value::String(s) => Some(s),
        _ => None,
    })
}

pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
    field(d, "must be an object", |v| match v {
        Value::Object(m) => Some(m),
        _ => None,
    })
}

pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    field(d, "must be a boolean", |v| v.as_bool())
}

pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    field(d, "must be a number", |v| v.as_f64())
}

pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    field(d, "must be a non-negative integer", |v| v.as_u64())
}

pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    field(d, "must be an integer", |v| v.as_i64())
}

/// An integer as a `u64`, negative ones as their two's complement.
pub fn integer_or_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    field(d, "must be an integer", |v| {
        v.as_u64().or_else(|| v.as_i64().map(|i| i as u64))
    })
}

/// Any value, kept to be checked by the request's `validate`.
pub fn any<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Option::<Value>::deserialize(d)
}

/// Whether the field is there at all, even as null.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A JSON array whose elements keep their index in error paths.
#[derive(Debug)]
pub struct List<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("must be an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(items))
            }
        }
        d.deserialize_seq(Items(PhantomData))
    }
}

/// Token ids (`u32`) from an array of integers, or None when one is not.
pub fn token_ids(v: &[Value]) -> Option<Vec<u32>> {
    v.iter()
        .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
        .collect()
}

/// `stop`: a string or an array of at most [`MAX_STOP`] strings; empty strings are dropped.
#[derive(Debug, Default)]
pub struct Stop(pub Vec<String>);

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WHAT: &str = "must be a string or an array of strings";
        let all = match Value::deserialize(d)? {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s],
            Value::Array(a) if a.len() > MAX_STOP => {
                return Err(D::Error::custom(format!("at most {MAX_STOP} stop strings")))
            }
            Value::Array(a) => a
                .into_iter()
                .map(|s| match s {
                    Value::String(s) => Ok(s),
                    _ => Err(D::Error::custom(WHAT)),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(D::Error::custom(WHAT)),
        };
        Ok(Stop(all.into_iter().filter(|s| !s.is_empty()).collect()))
    }
}

/// The sampling fields both APIs take: at the top of an OpenAI body, in Ollama's `options`.
/// Other fields are left to the request that holds them.
#[derive(Debug, Default, Deserialize)]
pub struct Sampling {
    #[serde(default, deserialize_with = "number")]
    pub temperature: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub top_p: Option<f64>,
    /// An extension in OpenAI's API, as in llama.cpp's and vLLM's servers; so are the next two.
    #[serde(default, deserialize_with = "count")]
    pub top_k: Option<u64>,
    #[serde(default, deserialize_with = "number")]
    pub min_p: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub repeat_penalty: Option<f64>,
    #[serde(default)]
    pub stop: Stop,
}

impl Sampling {
    /// The engine's parameters with `seed`, or 400 naming the field out of range.
    pub fn validate(&self, seed: u64) -> Result<SamplingParams, ApiError> {
        let mut s = SamplingParams {
            seed,
            ..SamplingParams::default()
        };
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(ApiError::invalid("temperature", "must be between 0 and 2"));
            }
            s.temperature = t as f32;
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ApiError::invalid(
                    "top_p",
                    "must be greater than 0 and at most 1",
                ));
            }
            s.top_p = (p < 1.0).then_some(p as f32);
        }
        if let Some(k) = self.top_k {
            s.top_k = (k > 0).then_some(k as usize);
        }
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(ApiError::invalid("min_p", "must be between 0 and 1"));
            }
            s.min_p = (p > 0.0).then_some(p as f32);
        }
        if let Some(r) = self.repeat_penalty {
            if !(r > 0.0 && r.is_finite()) {
                return Err(ApiError::invalid(
                    "repeat_penalty",
                    "must be greater than 0",
                ));
            }
            s.repeat_penalty = r as f32;
        }
        s.validate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(s)
    }
}

/// A JSON Schema given in a request: an object (or `true`, any JSON).
fn schema(field: &str, v: &Value) -> Result<Grammar, ApiError> {
    match v {
        Value::Object(_) => Ok(Grammar::new(GrammarKind::JsonSchema(v.clone()), field)),
        Value::Bool(true) => Ok(Grammar::new(GrammarKind::JsonSchema(v.clone()), field)),
        _ => Err(ApiError::invalid(
            field,
            "must be a JSON Schema (an object)",
        )),
    }
}

/// OpenAI's `response_format`: `text` (no constraint), `json_object`, or `json_schema` with
/// its `schema`. `strict` is taken as true whatever it says: every constraint is enforced.
pub fn response_format(v: &Value) -> Result<Option<Grammar>, ApiError> {
    const FIELD: &str = "response_format";
    let Value::Object(o) = v else {
        return Err(ApiError::invalid(FIELD, "must be an object"));
    };
    match o.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Grammar::new(GrammarKind::JsonObject, FIELD))),
        Some("json_schema") => {
            let at = "response_format.json_schema";
            let Some(Value::Object(js)) = o.get("json_schema") else {
                return Err(ApiError::invalid(at, "required, an object with a `schema`"));
            };
            match js.get("schema") {
                None | Some(Value::Null) => Ok(Some(Grammar::new(GrammarKind::JsonObject, FIELD))),
                Some(s) => schema(&format!("{at}.schema"), s).map(Some),
            }
        }
        _ => Err(ApiError::invalid(
            "response_format.type",
            "must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// Ollama's `format`: `"json"` (a JSON object) or a JSON Schema; `""` leaves it off.
pub fn ollama_format(v: &Value) -> Result<Option<Grammar>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s == "json" => {
            Ok(Some(Grammar::new(GrammarKind::JsonObject, "format")))
        }
        Value::String(_) => Err(ApiError::invalid(
            "format",
            "must be \"json\" or a JSON Schema object",
        )),
        v => schema("format", v).map(Some),
    }
}

/// The constraint of a request: at most one of its constraint fields, each already read.
pub fn one_grammar(
    given: impl IntoIterator<Item = (&'static str, Option<Grammar>)>,
) -> Result<Option<Grammar>, ApiError> {
    let mut found: Option<(&str, Grammar)> = None;
    for (field, g) in given {
        if let Some(g) = g {
            if let Some((first, _)) = &found {
                return Err(ApiError::invalid(
                    field,
                    format!("give one constraint: `{first}` is already given"),
                ));
            }
            found = Some((field, g));
        }
    }
    Ok(found.map(|(_, g)| g))
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

/// Both APIs' `finish_reason` / `done_reason`.
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::ToolCalls => "tool_calls",
        // Cut short: by max_tokens, the context, or a cancellation at shutdown.
        FinishReason::Length | FinishReason::Context | FinishReason::Cancelled => "length",
    }
}
