//! `/v1/chat/completions` and `/v1/completions` bodies. Fields this server has no use for are
//! ignored, as OpenAI's clients send some (`user`, `metadata`, ...); choices and features it does
//! not offer are refused unless they are at the value that turns them off.

use crate::commands::serve::error::ApiError;
use crate::commands::serve::wire::{self, List, Sampling};
use candor_engine::generate::MAX_TOP_LOGPROBS;
use candor_engine::serving::Input;
use candor_engine::{GenerateParams, Grammar, GrammarKind, Message, Reasoning};
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

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

/// A validated request, whichever endpoint.
#[derive(Debug)]
pub struct Request {
    pub model: Option<String>,
    pub input: Input,
    pub params: GenerateParams,
    pub stream: bool,
    pub include_usage: bool,
}

/// The fields both endpoints take besides their input.
#[derive(Debug, Deserialize)]
struct Options {
    #[serde(default, deserialize_with = "wire::string")]
    model: Option<String>,
    #[serde(default, deserialize_with = "wire::any")]
    n: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    best_of: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    logprobs: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    top_logprobs: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    echo: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    tools: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    tool_choice: Option<Value>,
    #[serde(default, deserialize_with = "wire::boolean")]
    parallel_tool_calls: Option<bool>,
    /// An extension, as in llama.cpp's server: "auto" (default: a thinking template's reasoning
    /// in `reasoning_content`), "none" (left in `content`), "deepseek" (split whatever the
    /// template).
    #[serde(default, deserialize_with = "wire::string")]
    reasoning_format: Option<String>,
    #[serde(default, deserialize_with = "wire::any")]
    functions: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    logit_bias: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    suffix: Option<Value>,
    #[serde(default, deserialize_with = "wire::any")]
    response_format: Option<Value>,
    /// Extensions: output matching a regular expression, or a Lark grammar (llguidance's).
    #[serde(default, deserialize_with = "wire::string")]
    regex: Option<String>,
    #[serde(default, deserialize_with = "wire::string")]
    grammar: Option<String>,
    #[serde(default, deserialize_with = "wire::number")]
    presence_penalty: Option<f64>,
    #[serde(default, deserialize_with = "wire::number")]
    frequency_penalty: Option<f64>,
    #[serde(default, deserialize_with = "wire::count")]
    max_completion_tokens: Option<u64>,
    #[serde(default, deserialize_with = "wire::count")]
    max_tokens: Option<u64>,
    /// Negative seeds are taken as their two's complement, as OpenAI's `int64` allows them.
    #[serde(default, deserialize_with = "wire::integer_or_count")]
    seed: Option<u64>,
    #[serde(default, deserialize_with = "wire::boolean")]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "must be an object")]
struct StreamOptions {
    #[serde(default, deserialize_with = "wire::boolean")]
    include_usage: Option<bool>,
}

/// `/v1/chat/completions`'s input.
#[derive(Debug, Deserialize)]
struct ChatInput {
    #[serde(default)]
    messages: Option<List<ChatMessage>>,
    /// Sent to the wrong endpoint.
    #[serde(default, deserialize_with = "wire::present")]
    prompt: bool,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "must be an object")]
struct ChatMessage {
    #[serde(default, deserialize_with = "wire::string")]
    role: Option<String>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default, deserialize_with = "wire::any")]
    tool_calls: Option<Value>,
    #[serde(default, deserialize_with = "wire::string")]
    tool_call_id: Option<String>,
}

/// A message's content: a string, or an array of text parts, joined.
#[derive(Debug)]
struct Content(String);

/// `/v1/completions`'s input.
#[derive(Debug, Deserialize)]
struct CompletionInput {
    #[serde(default)]
    prompt: Option<Prompt>,
}

/// One prompt: a string, an array holding one string, or token ids (flat or in one array).
#[derive(Debug)]
struct Prompt(Input);

/// Parses and validates a `/v1/chat/completions` or `/v1/completions` body.
/// serde's derived structs also take a JSON array in field order; OpenAI's messages and
/// `stream_options` are objects, so anything else is refused before the typed parse.
fn objects_where_objects_belong(o: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    if o.get("stream_options")
        .is_some_and(|v| !v.is_null() && !v.is_object())
    {
        return Err(ApiError::invalid("stream_options", "must be an object"));
    }
    if let Some(Value::Array(messages)) = o.get("messages") {
        if let Some(i) = messages.iter().position(|m| !m.is_object()) {
            return Err(ApiError::invalid(
                format!("messages[{i}]"),
                "must be an object",
            ));
        }
    }
    Ok(())
}

pub fn parse(
    body: &[u8],
    endpoint: Endpoint,
    default_max_tokens: usize,
) -> Result<Request, ApiError> {
    let o = wire::json_object(body)?;
    objects_where_objects_belong(&o)?;
    let options: Options = wire::parse(&o)?;
    let input = match endpoint {
        Endpoint::Chat => wire::parse::<ChatInput>(&o)?.validate()?,
        Endpoint::Completions => wire::parse::<CompletionInput>(&o)?.validate()?,
    };
    let sampling: Sampling = wire::parse(&o)?;
    options.validate(endpoint, input, sampling, default_max_tokens)
}

impl Options {
    fn validate(
        self,
        endpoint: Endpoint,
        input: Input,
        sampling: Sampling,
        default_max_tokens: usize,
    ) -> Result<Request, ApiError> {
        self.refuse_unsupported()?;
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(n), _) => ("max_completion_tokens", n),
            (None, Some(n)) => ("max_tokens", n),
            (None, None) => ("max_tokens", default_max_tokens as u64),
        };
        if max_tokens.1 == 0 {
            return Err(ApiError::invalid(max_tokens.0, "must be at least 1"));
        }
        let seed = self.seed.unwrap_or_else(wire::random_seed);
        let (grammar, logprobs) = (self.grammar()?, self.logprobs(endpoint)?);
        let tools = super::tools::parse(
            self.tools.as_ref(),
            self.tool_choice.as_ref(),
            self.parallel_tool_calls,
        )?;
        if tools.is_some() && endpoint == Endpoint::Completions {
            return Err(ApiError::invalid("tools", "chat completions only"));
        }
        let reasoning = match (self.reasoning_format.as_deref(), endpoint) {
            (None | Some("none"), Endpoint::Completions) => Reasoning::Off,
            (Some(_), Endpoint::Completions) => {
                return Err(ApiError::invalid(
                    "reasoning_format",
                    "chat completions only",
                ))
            }
            (None | Some("auto"), Endpoint::Chat) => Reasoning::Auto,
            (Some("none"), Endpoint::Chat) => Reasoning::Off,
            (Some("deepseek"), Endpoint::Chat) => Reasoning::Split { opened: false },
            (Some(_), Endpoint::Chat) => {
                return Err(ApiError::invalid(
                    "reasoning_format",
                    "must be \"auto\", \"none\" or \"deepseek\"",
                ))
            }
        };
        Ok(Request {
            model: self.model,
            input,
            params: GenerateParams {
                max_tokens: max_tokens.1.min(usize::MAX as u64) as usize,
                sampling: sampling.validate(seed)?,
                stop: sampling.stop.0,
                grammar,
                logprobs,
                tools,
                tool_format: None,
                reasoning,
            },
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .and_then(|s| s.include_usage)
                .unwrap_or(false),
        })
    }

    /// The output's constraint: `response_format`, or the `regex` or `grammar` extension.
    fn grammar(&self) -> Result<Option<Grammar>, ApiError> {
        let format = match &self.response_format {
            None | Some(Value::Null) => None,
            Some(v) => wire::response_format(v)?,
        };
        wire::one_grammar([
            ("response_format", format),
            (
                "regex",
                self.regex
                    .clone()
                    .map(|r| Grammar::new(GrammarKind::Regex(r), "regex")),
            ),
            (
                "grammar",
                self.grammar
                    .clone()
                    .map(|g| Grammar::new(GrammarKind::Lark(g), "grammar")),
            ),
        ])
    }

    /// How many alternatives to report with each token's log-probability, if any: chat's
    /// `logprobs: true` with `top_logprobs`, the completions endpoint's `logprobs: N`.
    fn logprobs(&self, endpoint: Endpoint) -> Result<Option<usize>, ApiError> {
        const MAX: u64 = MAX_TOP_LOGPROBS as u64;
        let count = |field: &str, v: &Value| match v.as_u64() {
            Some(n) if n <= MAX => Ok(n as usize),
            _ => Err(ApiError::invalid(
                field,
                format!("must be an integer from 0 to {MAX}"),
            )),
        };
        let top = self.top_logprobs.as_ref().filter(|v| !v.is_null());
        match endpoint {
            Endpoint::Chat => {
                let on = match &self.logprobs {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(ApiError::invalid("logprobs", "must be a boolean")),
                };
                match (on, top) {
                    (true, Some(t)) => count("top_logprobs", t).map(Some),
                    (true, None) => Ok(Some(0)),
                    (false, Some(t)) if count("top_logprobs", t)? > 0 => {
                        Err(ApiError::invalid("top_logprobs", "needs `logprobs: true`"))
                    }
                    (false, _) => Ok(None),
                }
            }
            Endpoint::Completions => {
                if top.is_some() {
                    return Err(ApiError::invalid(
                        "top_logprobs",
                        "chat completions only; /v1/completions takes `logprobs: N`",
                    ));
                }
                match &self.logprobs {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => count("logprobs", v).map(Some),
                }
            }
        }
    }

    /// Choices and features this server does not offer are refused rather than ignored.
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        let one = |v: &Value| v.as_u64() == Some(1);
        wire::off("n", &self.n, one, "only n=1 is supported")?;
        wire::off("best_of", &self.best_of, one, "only best_of=1 is supported")?;
        let fls = |v: &Value| v == &Value::Bool(false);
        wire::off("echo", &self.echo, fls, "not supported")?;
        let empty = |v: &Value| wire::is_empty(v) && (v.is_array() || v.is_object());
        wire::off(
            "functions",
            &self.functions,
            empty,
            "not supported (use tools)",
        )?;
        wire::off("logit_bias", &self.logit_bias, empty, "not supported")?;
        let blank = |v: &Value| v.as_str() == Some("");
        wire::off("suffix", &self.suffix, blank, "not supported")?;
        for (field, p) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if p.is_some_and(|p| p != 0.0) {
                return Err(ApiError::invalid(
                    field,
                    "not supported (use repeat_penalty)",
                ));
            }
        }
        Ok(())
    }
}

impl ChatInput {
    fn validate(self) -> Result<Input, ApiError> {
        if self.prompt {
            return Err(ApiError::invalid(
                "prompt",
                "chat completions take `messages`; use /v1/completions for a prompt",
            ));
        }
        let Some(List(list)) = self.messages else {
            return Err(ApiError::invalid("messages", "required"));
        };
        if list.is_empty() {
            return Err(ApiError::invalid("messages", "must not be empty"));
        }
        let messages = list
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.validate(i))
            .collect::<Result<_, _>>()?;
        Ok(Input::Chat(messages))
    }
}

impl ChatMessage {
    fn validate(self, i: usize) -> Result<Message, ApiError> {
        let at = |f: &str| format!("messages[{i}].{f}");
        let role = match self.role.as_deref() {
            Some("system" | "developer") => "system",
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("tool") => "tool",
            Some(r) => {
                return Err(ApiError::invalid(
                    at("role"),
                    format!("unsupported role `{r}` (system, developer, user, assistant, tool)"),
                ))
            }
            None => return Err(ApiError::invalid(at("role"), "required")),
        };
        let content = match self.content {
            Some(Content(s)) => s,
            None if role == "assistant" => String::new(),
            None => return Err(ApiError::invalid(at("content"), "required")),
        };
        let tool_calls = match (&self.tool_calls, role) {
            (None | Some(Value::Null), _) => Vec::new(),
            (Some(v), "assistant") => super::tools::history_calls(i, v)?,
            (Some(_), _) => {
                return Err(ApiError::invalid(
                    at("tool_calls"),
                    "assistant messages only",
                ))
            }
        };
        Ok(Message {
            tool_calls,
            tool_call_id: self.tool_call_id.filter(|_| role == "tool"),
            ..Message::new(role, content)
        })
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Parts;
        impl<'de> Visitor<'de> for Parts {
            type Value = Content;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("must be a string or an array of text parts")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Content, E> {
                Ok(Content(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut text = String::new();
                while let Some(TextPart(t)) = seq.next_element()? {
                    text.push_str(&t);
                }
                Ok(Content(text))
            }
        }
        d.deserialize_any(Parts)
    }
}

/// `{"type": "text", "text": ...}`, the only part candor takes.
struct TextPart(String);

impl<'de> Deserialize<'de> for TextPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match (
            v.get("type").and_then(Value::as_str),
            v.get("text").and_then(Value::as_str),
        ) {
            (Some("text"), Some(t)) => Ok(TextPart(t.to_string())),
            _ => Err(D::Error::custom(
                "only text parts ({\"type\": \"text\", \"text\": ...}) are supported",
            )),
        }
    }
}

impl CompletionInput {
    fn validate(self) -> Result<Input, ApiError> {
        match self.prompt {
            None => Err(ApiError::invalid("prompt", "required")),
            Some(Prompt(Input::Text(s))) if s.is_empty() => {
                Err(ApiError::invalid("prompt", "must not be empty"))
            }
            Some(Prompt(Input::Tokens(t))) if t.is_empty() => {
                Err(ApiError::invalid("prompt", "must not be empty"))
            }
            Some(Prompt(input)) => Ok(input),
        }
    }
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const ONE: &str = "must be a string, an array holding one string, or an array of token ids";
        let tokens = |a: &[Value]| {
            wire::token_ids(a)
                .map(|t| Prompt(Input::Tokens(t)))
                .ok_or_else(|| D::Error::custom(ONE))
        };
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Prompt(Input::Text(s))),
            Value::Array(a) => match a.as_slice() {
                [] => Ok(Prompt(Input::Tokens(Vec::new()))),
                [Value::String(s)] => Ok(Prompt(Input::Text(s.clone()))),
                [Value::Array(inner)] => tokens(inner),
                [Value::Number(_), ..] => tokens(&a),
                [_, _, ..] if a.iter().all(|p| p.is_string() || p.is_array()) => {
                    Err(D::Error::custom("only one prompt per request is supported"))
                }
                _ => Err(D::Error::custom(ONE)),
            },
            _ => Err(D::Error::custom(ONE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Request, ApiError> {
        parse(body.as_bytes(), Endpoint::Chat, 256)
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
        // Arrays in place of objects, which serde's derive would read in field order.
        assert_eq!(
            param(r#"{"messages":[["user","hi"]]}"#).as_deref(),
            Some("messages[0]")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"hi"}],"stream_options":[true]}"#)
                .as_deref(),
            Some("stream_options")
        );
    }

    #[test]
    fn type_errors_read_as_before() {
        let message = |b: &str| chat(b).unwrap_err().message;
        let hi = r#""messages":[{"role":"user","content":"hi"}]"#;
        assert_eq!(
            message(&format!(r#"{{{hi},"temperature":"hot"}}"#)),
            "temperature: must be a number"
        );
        assert_eq!(
            message(&format!(
                r#"{{{hi},"stream_options":{{"include_usage":1}}}}"#
            )),
            "stream_options.include_usage: must be a boolean"
        );
        assert_eq!(
            message(&format!(r#"{{{hi},"stream_options":3}}"#)),
            "stream_options: must be an object"
        );
        assert_eq!(
            message(r#"{"messages":"hi"}"#),
            "messages: must be an array"
        );
        assert_eq!(
            message(r#"{"messages":[3]}"#),
            "messages[0]: must be an object"
        );
        assert_eq!(
            message(r#"{"messages":[{"role":"user","content":["x",{"type":"text","text":"y"}]}]}"#),
            "messages[0].content[0]: only text parts ({\"type\": \"text\", \"text\": ...}) are supported"
        );
        assert_eq!(
            message(r#"{"messages":[{"role":"user","content":3}]}"#),
            "messages[0].content: must be a string or an array of text parts"
        );
        assert_eq!(
            message(r#"{"messages":[{"role":"user"}]}"#),
            "messages[0].content: required"
        );
        assert_eq!(
            message(&format!(r#"{{{hi},"prompt":null}}"#)),
            "prompt: chat completions take `messages`; use /v1/completions for a prompt"
        );
    }

    #[test]
    fn parses_constraints_and_logprobs() {
        let hi = r#""messages":[{"role":"user","content":"hi"}]"#;
        let ok = |extra: &str| chat(&format!("{{{hi},{extra}}}")).unwrap().params;
        let schema = r#"{"type":"object","properties":{"a":{"type":"integer"}}}"#;
        let p = ok(&format!(
            r#""response_format":{{"type":"json_schema","json_schema":{{"name":"x","schema":{schema},"strict":true}}}}"#
        ));
        let want = serde_json::from_str(schema).unwrap();
        assert_eq!(p.grammar.unwrap().kind, GrammarKind::JsonSchema(want));
        let p = ok(r#""response_format":{"type":"json_object"}"#);
        assert_eq!(p.grammar.unwrap().kind, GrammarKind::JsonObject);
        assert!(ok(r#""response_format":{"type":"text"}"#).grammar.is_none());
        let p = ok(r#""regex":"a+""#);
        assert_eq!(p.grammar.unwrap().kind, GrammarKind::Regex("a+".into()));
        assert_eq!(ok(r#""logprobs":true,"top_logprobs":3"#).logprobs, Some(3));
        assert_eq!(ok(r#""logprobs":true"#).logprobs, Some(0));
        assert_eq!(ok(r#""logprobs":false,"top_logprobs":0"#).logprobs, None);

        let param = |extra: &str| chat(&format!("{{{hi},{extra}}}")).unwrap_err().param;
        for (extra, field) in [
            (r#""response_format":"json""#, "response_format"),
            (
                r#""response_format":{"type":"yaml"}"#,
                "response_format.type",
            ),
            (
                r#""response_format":{"type":"json_schema"}"#,
                "response_format.json_schema",
            ),
            (
                r#""response_format":{"type":"json_schema","json_schema":{"schema":3}}"#,
                "response_format.json_schema.schema",
            ),
            (
                r#""response_format":{"type":"json_object"},"grammar":"start: /a/""#,
                "grammar",
            ),
            (r#""regex":3"#, "regex"),
            (r#""top_logprobs":2"#, "top_logprobs"),
            (r#""logprobs":true,"top_logprobs":21"#, "top_logprobs"),
            (r#""logprobs":1"#, "logprobs"),
        ] {
            assert_eq!(param(extra).as_deref(), Some(field), "{extra}");
        }
        let completion = |extra: &str| {
            parse(
                format!(r#"{{"prompt":"x",{extra}}}"#).as_bytes(),
                Endpoint::Completions,
                16,
            )
        };
        assert_eq!(
            completion(r#""logprobs":5"#).unwrap().params.logprobs,
            Some(5)
        );
        assert_eq!(
            completion(r#""logprobs":true"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("logprobs")
        );
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
        assert_eq!(
            p(r#"{"prompt":[]}"#).unwrap_err().message,
            "prompt: must not be empty"
        );
    }
}
