//! OpenAI's tool fields: `tools`, `tool_choice` and `parallel_tool_calls` in a request, the
//! `tool_calls` of assistant messages in the history, and `tool_calls` in answers and stream
//! deltas (arguments as a JSON string, as OpenAI sends them).

use crate::commands::serve::error::ApiError;
use candor_engine::{Tool, ToolCall, ToolChoice, Tools};
use serde_json::{json, Value};

/// Most tools one request may define.
const MAX_TOOLS: usize = 128;

/// The request's tools, or None without any (an empty list is none).
pub fn parse(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Tools>, ApiError> {
    let list = match tools {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(ApiError::invalid("tools", "must be an array")),
    };
    if list.len() > MAX_TOOLS {
        return Err(ApiError::invalid(
            "tools",
            format!("at most {MAX_TOOLS} tools"),
        ));
    }
    let tools = list
        .iter()
        .enumerate()
        .map(|(i, t)| tool(i, t))
        .collect::<Result<Vec<_>, _>>()?;
    let choice = match choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad_choice()),
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) if v.get("type").and_then(Value::as_str) == Some("function") => {
                ToolChoice::Function(name.to_string())
            }
            _ => return Err(bad_choice()),
        },
    };
    if tools.is_empty() {
        return match choice {
            ToolChoice::Auto | ToolChoice::None => Ok(None),
            _ => Err(ApiError::invalid("tool_choice", "needs `tools`")),
        };
    }
    if let ToolChoice::Function(name) = &choice {
        if !tools.iter().any(|t| &t.name == name) {
            return Err(ApiError::invalid(
                "tool_choice",
                format!("names `{name}`, which is not among the tools"),
            ));
        }
    }
    Ok(Some(Tools {
        tools,
        choice,
        parallel: parallel.unwrap_or(true),
    }))
}

fn bad_choice() -> ApiError {
    ApiError::invalid(
        "tool_choice",
        "must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
    )
}

/// `{"type": "function", "function": {"name", "description"?, "parameters"?}}`.
fn tool(i: usize, v: &Value) -> Result<Tool, ApiError> {
    let at = |f: &str| format!("tools[{i}]{f}");
    if v.get("type").and_then(Value::as_str) != Some("function") {
        return Err(ApiError::invalid(at(".type"), "must be \"function\""));
    }
    let Some(f) = v.get("function").filter(|f| f.is_object()) else {
        return Err(ApiError::invalid(at(".function"), "required, an object"));
    };
    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
        return Err(ApiError::invalid(
            at(".function.name"),
            "must be 1 to 64 letters, digits, underscores or dashes",
        ));
    }
    let description = match f.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                at(".function.description"),
                "must be a string",
            ))
        }
    };
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                at(".function.parameters"),
                "must be a JSON Schema object",
            ))
        }
    };
    Ok(Tool {
        name: name.to_string(),
        description,
        parameters,
    })
}

/// An assistant message's `tool_calls` from the history (`messages[i].tool_calls`).
pub fn history_calls(i: usize, v: &Value) -> Result<Vec<ToolCall>, ApiError> {
    let at = |j: usize, f: &str| format!("messages[{i}].tool_calls[{j}]{f}");
    let Value::Array(calls) = v else {
        return Err(ApiError::invalid(
            format!("messages[{i}].tool_calls"),
            "must be an array",
        ));
    };
    calls
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let name = c.pointer("/function/name").and_then(Value::as_str);
            let Some(name) = name else {
                return Err(ApiError::invalid(
                    at(j, ".function.name"),
                    "required, a string",
                ));
            };
            // OpenAI sends the arguments as a JSON string; templates want the object.
            let arguments = match c.pointer("/function/arguments") {
                Some(Value::String(s)) => {
                    serde_json::from_str(s).unwrap_or(Value::String(s.clone()))
                }
                Some(v) => v.clone(),
                None => json!({}),
            };
            let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
            Ok(ToolCall::new(id.to_string(), name.to_string(), arguments))
        })
        .collect()
}

/// Calls as an answer's `message.tool_calls`, or with `index` as a stream delta's.
pub fn calls_json(calls: &[ToolCall], delta: bool) -> Value {
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let mut v = json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments.to_string()},
                });
                if delta {
                    v["index"] = json!(index);
                }
                v
            })
            .collect(),
    )
}
