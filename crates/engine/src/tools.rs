//! Tool calling as OpenAI defines it: tool definitions rendered into the prompt, calls written
//! by the model in its family's format, a grammar that makes those calls valid, and a parser
//! that turns the output back into calls.
//!
//! Each family writes calls its own way, and its chat template says which:
//! - Hermes (Qwen2.5/3, SmolLM3, Hermes): `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`,
//!   one block per call. Templates without a `tools` variable get this format too, described
//!   in the system prompt (the fallback).
//! - Llama 3.x: the whole answer is `{"name": ..., "parameters": {...}}`, after an optional
//!   `<|python_tag|>`.
//! - Mistral: `[TOOL_CALLS]` and a JSON array of `{"name": ..., "arguments": {...}}`.
//!
//! Under `required` or a named function the grammar holds from the first token; under `auto`
//! the model may write text, and the grammar takes over once a call starts (Hermes: after
//! `<tool_call>`; the JSON formats: when the answer opens with `{` or `[`).

use crate::chat::{python_json, ChatTemplate, Message, ToolCall};
use crate::error::{Error, Result};
use crate::grammar::{Grammar, GrammarKind};
use serde_json::{json, Value};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema of the arguments object.
    pub parameters: Value,
}

/// OpenAI's `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// Text or calls, as the model decides.
    Auto,
    /// Text only: the tools are still shown to the model.
    None,
    /// At least one call.
    Required,
    /// A call of this function.
    Function(String),
}

/// A request's tools and how they may be used.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    /// More than one call in an answer.
    pub parallel: bool,
}

/// How a model family writes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Llama3,
    Mistral,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";

impl ToolFormat {
    /// The format a template renders tools for; Hermes for templates without tools (candor's
    /// fallback prompt describes it).
    pub fn of(template: &ChatTemplate) -> Self {
        let src = template.source();
        if !template.takes_tools() {
            ToolFormat::Hermes
        } else if src.contains("[TOOL_CALLS]") {
            ToolFormat::Mistral
        } else if src.contains("<|python_tag|>") || src.contains("ipython") {
            ToolFormat::Llama3
        } else {
            ToolFormat::Hermes
        }
    }

    /// The text that opens a call in the middle of an answer, if the format has one: a stream
    /// holds back a suffix that may grow into it, as it does a stop string's beginning.
    pub fn marker(self) -> Option<&'static str> {
        match self {
            ToolFormat::Hermes => Some(HERMES_OPEN),
            ToolFormat::Llama3 | ToolFormat::Mistral => None,
        }
    }

    /// Where, in the answer `text` generated so far, a call starts or may be starting: text
    /// from there on is held back from a stream until the end shows whether it is a call. No
    /// call starts before byte `from` (text already handed out).
    pub fn call_start(self, text: &str, from: usize) -> Option<usize> {
        match self {
            ToolFormat::Hermes => text[from..].find(HERMES_OPEN).map(|i| from + i),
            ToolFormat::Llama3 | ToolFormat::Mistral => {
                let body = text.trim_start();
                let body = body.strip_prefix("<|python_tag|>").unwrap_or(body);
                let body = body
                    .strip_prefix("[TOOL_CALLS]")
                    .unwrap_or(body)
                    .trim_start();
                // Nothing but whitespace (or a marker) yet, or a JSON opening: maybe a call.
                (body.is_empty() || body.starts_with(['{', '['])).then_some(0)
            }
        }
    }
}

impl Tools {
    /// The tools as chat templates and the fallback prompt show them.
    pub fn definitions(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name,
                    "description": t.description.clone().unwrap_or_default(),
                    "parameters": t.parameters,
                }})
            })
            .collect()
    }

    /// Renders a conversation with the tools: through the template's own `tools` variable
    /// where it has one, else with the tools described in the system prompt and earlier calls
    /// and results written out in the Hermes format.
    pub fn render(&self, template: &ChatTemplate, messages: &[Message]) -> Result<String> {
        let defs = self.definitions();
        if template.takes_tools() {
            return template.render_with_tools(messages, Some(&defs), true);
        }
        let listing: Vec<String> = defs.iter().map(python_json).collect();
        let instructions = format!(
            "You may call functions to help with the user's request. The functions are listed \
             in <tools></tools>:\n<tools>\n{}\n</tools>\nTo call one, answer with \
             {HERMES_OPEN}\n{{\"name\": <function name>, \"arguments\": <arguments object>}}\n\
             {HERMES_CLOSE}",
            listing.join("\n")
        );
        let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
        let rest = match messages.split_first() {
            Some((m, rest)) if m.role == "system" => {
                out.push(Message::new(
                    "system",
                    format!("{}\n\n{instructions}", m.content),
                ));
                rest
            }
            _ => {
                out.push(Message::new("system", instructions));
                messages
            }
        };
        for m in rest {
            out.push(match m.role.as_str() {
                "assistant" if !m.tool_calls.is_empty() => {
                    let mut text = m.content.clone();
                    for c in &m.tool_calls {
                        let call =
                            json!({"name": c.function.name, "arguments": c.function.arguments});
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        let call = python_json(&call);
                        text.push_str(&format!("{HERMES_OPEN}\n{call}\n{HERMES_CLOSE}"));
                    }
                    Message::new("assistant", text)
                }
                "tool" => Message::new(
                    "user",
                    format!("<tool_response>\n{}\n</tool_response>", m.content),
                ),
                _ => m.clone(),
            });
        }
        template.render(&out, true)
    }

    /// The grammar that makes calls valid: None under `none`.
    pub fn grammar(&self, format: ToolFormat) -> Result<Option<Grammar>> {
        let tools: Vec<&Tool> = match &self.choice {
            ToolChoice::None => return Ok(None),
            ToolChoice::Function(name) => {
                let t = self
                    .tools
                    .iter()
                    .filter(|t| &t.name == name)
                    .collect::<Vec<_>>();
                if t.is_empty() {
                    return Err(Error::InvalidOption(format!(
                        "tool_choice names `{name}`, which is not among the tools"
                    )));
                }
                t
            }
            ToolChoice::Auto | ToolChoice::Required => self.tools.iter().collect(),
        };
        let args_key = match format {
            ToolFormat::Llama3 => "parameters",
            ToolFormat::Hermes | ToolFormat::Mistral => "arguments",
        };
        let calls: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "object",
                       "properties": {"name": {"const": t.name}, args_key: t.parameters},
                       "required": ["name", args_key], "additionalProperties": false})
            })
            .collect();
        let layout =
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
        let call = json!({"anyOf": calls, "x-guidance": layout});
        let forced = !matches!(self.choice, ToolChoice::Auto);
        let lark = match format {
            ToolFormat::Hermes => {
                let more = if self.parallel {
                    format!("(\"\\n{HERMES_OPEN}\\n\" call \"\\n{HERMES_CLOSE}\")*")
                } else {
                    String::new()
                };
                let first = if forced {
                    format!("start: \"{HERMES_OPEN}\\n\" call \"\\n{HERMES_CLOSE}\" {more}")
                } else {
                    // Text without the marker, or text up to it and then calls only.
                    format!(
                        "start: TEXT | prefix /\\s*/ call \"\\n{HERMES_CLOSE}\" {more}\n\
                         prefix[lazy]: /(?s:.*){HERMES_OPEN}/\n\
                         TEXT: /(?s:.*)/ & ~/(?s:.*){HERMES_OPEN}(?s:.*)/"
                    )
                };
                format!("{first}\ncall: %json {call}")
            }
            ToolFormat::Llama3 => {
                let start = if forced {
                    "start: call"
                } else {
                    "start: TEXT | call"
                };
                format!("{start}\ncall: %json {call}\nTEXT: /(?s:.*)/ & ~/\\s*[\\{{\\[<](?s:.*)/")
            }
            ToolFormat::Mistral => {
                let max = if self.parallel { Value::Null } else { json!(1) };
                let mut list =
                    json!({"type": "array", "items": call, "minItems": 1, "x-guidance": layout});
                if !max.is_null() {
                    list["maxItems"] = max;
                }
                let start = if forced {
                    "start: calls"
                } else {
                    "start: TEXT | calls"
                };
                format!("{start}\ncalls: %json {list}\nTEXT: /(?s:.*)/ & ~/\\s*[\\{{\\[<](?s:.*)/")
            }
        };
        Ok(Some(Grammar::new(GrammarKind::Lark(lark), "tools")))
    }
}

/// Splits a finished output into its text and its calls. Calls that do not parse, or name no
/// given tool, leave the output as text.
pub fn parse_calls(format: ToolFormat, text: &str, tools: &Tools) -> (String, Vec<ToolCall>) {
    let known = |name: &str| tools.tools.iter().any(|t| t.name == name);
    let call = |v: &Value| -> Option<ToolCall> {
        let name = v.get("name")?.as_str()?;
        let args = v.get("arguments").or_else(|| v.get("parameters"))?;
        // Some models write the arguments as a JSON string.
        let args = match args {
            Value::String(s) => serde_json::from_str(s).ok()?,
            a => a.clone(),
        };
        (known(name) && args.is_object()).then(|| ToolCall::new(call_id(), name.to_string(), args))
    };
    let whole = |body: &str| -> Option<Vec<ToolCall>> {
        match serde_json::from_str::<Value>(body.trim()).ok()? {
            Value::Array(a) => a.iter().map(call).collect(),
            v => call(&v).map(|c| vec![c]),
        }
    };
    let found = match format {
        ToolFormat::Hermes => text.find(HERMES_OPEN).and_then(|start| {
            let calls: Option<Vec<ToolCall>> = text[start..]
                .split(HERMES_OPEN)
                .filter(|b| !b.trim().is_empty())
                .map(|b| {
                    let body = b.split(HERMES_CLOSE).next().unwrap_or(b);
                    serde_json::from_str::<Value>(body.trim())
                        .ok()
                        .as_ref()
                        .and_then(call)
                })
                .collect();
            calls.map(|c| (text[..start].trim_end().to_string(), c))
        }),
        ToolFormat::Llama3 | ToolFormat::Mistral => {
            let body = text.trim_start();
            let body = body.strip_prefix("<|python_tag|>").unwrap_or(body);
            let body = body.strip_prefix("[TOOL_CALLS]").unwrap_or(body);
            whole(body).map(|c| (String::new(), c))
        }
    };
    // Any format: an answer that is only a call's JSON.
    match found.or_else(|| whole(text).map(|c| (String::new(), c))) {
        Some((content, calls)) if !calls.is_empty() => (content, calls),
        _ => (text.to_string(), Vec::new()),
    }
}

/// `call_` and 24 random letters and digits, as OpenAI's ids look.
fn call_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("call_{}", Alphanumeric.sample_string(&mut rand::rng(), 24))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Tools {
        Tools {
            tools: vec![Tool {
                name: "get_weather".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            choice: ToolChoice::Auto,
            parallel: true,
        }
    }

    fn names(calls: &[ToolCall]) -> Vec<(&str, String)> {
        calls
            .iter()
            .map(|c| (c.function.name.as_str(), c.function.arguments.to_string()))
            .collect()
    }

    #[test]
    fn each_family_parses() {
        let t = tools();
        let (text, calls) = parse_calls(
            ToolFormat::Hermes,
            "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Oslo\\\"}\"}\n</tool_call>",
            &t,
        );
        assert_eq!(text, "Let me look.");
        assert_eq!(
            names(&calls),
            [
                ("get_weather", r#"{"city":"Paris"}"#.to_string()),
                ("get_weather", r#"{"city":"Oslo"}"#.to_string())
            ]
        );
        let (text, calls) = parse_calls(
            ToolFormat::Llama3,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}",
            &t,
        );
        assert_eq!((text.as_str(), names(&calls).len()), ("", 1));
        let (_, calls) = parse_calls(
            ToolFormat::Mistral,
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bern\"}}]",
            &t,
        );
        assert_eq!(
            names(&calls),
            [("get_weather", r#"{"city":"Bern"}"#.to_string())]
        );
        assert!(calls[0].id.starts_with("call_") && calls[0].id.len() == 29);
    }

    #[test]
    fn text_stays_text() {
        let t = tools();
        for (format, text) in [
            (ToolFormat::Hermes, "Sunny, I think."),
            (
                ToolFormat::Hermes,
                "<tool_call>\n{\"name\": \"launch\", \"arguments\": {}}\n</tool_call>",
            ),
            (
                ToolFormat::Hermes,
                "<tool_call>\n{\"name\": \"get_weather\"",
            ),
            (ToolFormat::Llama3, "{\"a\": 1}"),
            (ToolFormat::Mistral, "[1, 2]"),
        ] {
            let (out, calls) = parse_calls(format, text, &t);
            assert_eq!((out.as_str(), calls.len()), (text, 0), "{text}");
        }
    }

    #[test]
    fn templates_with_tools_render_them_and_others_get_the_fallback() {
        let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
        let with = "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}\
                    {% for m in messages %}{{ m.role }}: {{ m.content }}\
                    {% for c in m.tool_calls %}<tool_call>{{ c.function.arguments | tojson }}</tool_call>{% endfor %}\n{% endfor %}";
        let call = ToolCall::new(
            "call_1".into(),
            "get_weather".into(),
            json!({"city": "Paris"}),
        );
        let history = [
            Message::new("user", "weather?"),
            Message {
                tool_calls: vec![call],
                ..Message::new("assistant", "")
            },
            Message {
                tool_call_id: Some("call_1".into()),
                ..Message::new("tool", "18C")
            },
        ];
        let own = ChatTemplate::new(with.into(), None, None).unwrap();
        assert_eq!(ToolFormat::of(&own), ToolFormat::Hermes);
        let text = tools().render(&own, &history).unwrap();
        // transformers' `tojson`: Python's separators.
        assert_eq!(text, "TOOLS:get_weather;user: weather?assistant: <tool_call>{\"city\": \"Paris\"}</tool_call>tool: 18C");
        let plain = ChatTemplate::new(chatml.into(), None, None).unwrap();
        let text = tools().render(&plain, &history).unwrap();
        assert!(
            text.starts_with("<|im_start|>system\nYou may call functions"),
            "{text}"
        );
        assert!(text.contains("\"name\": \"get_weather\""), "{text}");
        assert!(text.contains("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"), "{text}");
        assert!(
            text.contains("<|im_start|>user\n<tool_response>\n18C\n</tool_response>"),
            "{text}"
        );
        let llama = ChatTemplate::new("{{ tools }}<|python_tag|>".into(), None, None).unwrap();
        assert_eq!(ToolFormat::of(&llama), ToolFormat::Llama3);
        let mistral = ChatTemplate::new("{{ tools }}[TOOL_CALLS]".into(), None, None).unwrap();
        assert_eq!(ToolFormat::of(&mistral), ToolFormat::Mistral);
    }
}
