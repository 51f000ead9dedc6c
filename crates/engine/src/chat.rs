//! Chat templates: the model's own Jinja template, rendered in a sandbox.
//!
//! Templates come from strangers' files, so they are treated as untrusted code: their size is
//! capped and rendering runs on a fuel budget, so a template cannot hang the process.

use crate::error::{Error, Result};
use serde::Serialize;
use std::borrow::Cow;

/// Larger than any real template seen (a few KiB to ~30 KiB), small enough to refuse abuse.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// Instructions a render may execute; real templates need a few thousand per message.
const FUEL: u64 = 2_000_000;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// The calls an assistant turn made (as transformers' templates read them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` turn: the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: content.into(),
            ..Default::default()
        }
    }
}

/// A function call in an assistant turn: `{"id", "type": "function", "function": {"name",
/// "arguments"}}`, the arguments as a JSON value (templates write them with `tojson`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: serde_json::Value,
}

impl ToolCall {
    pub fn new(id: String, name: String, arguments: serde_json::Value) -> Self {
        Self {
            id,
            kind: "function",
            function: FunctionCall { name, arguments },
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: String, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(Error::ChatTemplate(format!(
                "the template is {} bytes, more than the {MAX_TEMPLATE_BYTES}-byte limit",
                source.len()
            )));
        }
        let t = Self {
            source,
            bos_token: bos_token.unwrap_or_default().to_string(),
            eos_token: eos_token.unwrap_or_default().to_string(),
        };
        // Compile once up front so a broken template is reported at load time.
        t.env()?;
        Ok(t)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn env(&self) -> Result<minijinja::Environment<'_>> {
        let mut env = minijinja::Environment::new();
        // transformers renders with Jinja2's trim_blocks and lstrip_blocks.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(64);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        // transformers' helper for templates that date their system prompt (SmolLM3).
        env.add_function(
            "strftime_now",
            |format: String| -> std::result::Result<String, minijinja::Error> {
                jiff::fmt::strtime::format(format.as_bytes(), &jiff::Zoned::now()).map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
                })
            },
        );
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", without_generation_tags(&self.source).into_owned())
            .map_err(|e| Error::ChatTemplate(format!("the template does not compile: {e}")))?;
        Ok(env)
    }

    /// Renders `messages`, ending with the assistant's turn header when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// Whether the template reads a `tools` variable (renders tool definitions itself).
    pub fn takes_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// Renders `messages` with `tools` (OpenAI's `{"type": "function", "function": ...}`
    /// objects) in the template's `tools` variable.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let env = self.env()?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| Error::ChatTemplate(format!("rendering failed: {e}")))
    }
}

/// transformers' `tojson`, which is Python's `json.dumps`: `", "` and `": "` between items
/// (minijinja's own is compact), non-ASCII as it is, `indent` for pretty output. Tool calls and
/// tool definitions render as the model saw them in training.
fn tojson(
    value: minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<minijinja::Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let written = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            json_with(&value, serde_json::ser::PrettyFormatter::with_indent(&pad))
        }
        None => json_with(&value, Spaced),
    };
    written
        .map(minijinja::Value::from_safe_string)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))
}

/// `value` as Python's `json.dumps` writes it, as the fallback tool prompt shows JSON.
pub(crate) fn python_json(value: &serde_json::Value) -> String {
    json_with(value, Spaced).expect("a JSON value serializes")
}

fn json_with(
    value: &impl Serialize,
    formatter: impl serde_json::ser::Formatter,
) -> serde_json::Result<String> {
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out, formatter,
    ))?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// Python's default JSON separators.
struct Spaced;

impl Spaced {
    fn item<W: ?Sized + std::io::Write>(w: &mut W, first: bool) -> std::io::Result<()> {
        match first {
            true => Ok(()),
            false => w.write_all(b", "),
        }
    }
}

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        Spaced::item(w, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        Spaced::item(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// transformers' `{% generation %}...{% endgeneration %}` only marks the assistant's text (for
/// training masks) and renders its body unchanged. minijinja has no such tag, so each becomes
/// the equivalent `{% if true %}` / `{% endif %}`, whitespace control kept.
fn without_generation_tags(src: &str) -> Cow<'_, str> {
    if !src.contains("generation") {
        return Cow::Borrowed(src);
    }
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("{%") {
        let (before, tag) = rest.split_at(start);
        out.push_str(before);
        // `{%`, an optional whitespace-control sign, spaces, the tag name.
        let body = &tag[2..];
        let sign = body.len() - body.trim_start_matches(['-', '+']).len();
        let spaced = &body[sign.min(1)..];
        let name_at = spaced.len() - spaced.trim_start().len();
        let name = &spaced[name_at..];
        let replaced = [("endgeneration", "endif"), ("generation", "if true")]
            .into_iter()
            .find(|(n, _)| {
                name.strip_prefix(n).is_some_and(|after| {
                    after
                        .trim_start()
                        .trim_start_matches(['-', '+'])
                        .starts_with("%}")
                })
            });
        match replaced {
            Some((n, with)) => {
                let head = 2 + sign.min(1) + name_at;
                out.push_str(&tag[..head]);
                out.push_str(with);
                rest = &tag[head + n.len()..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Gemma's turn format, used when a Gemma GGUF ships no template (it is what Google's own
/// template renders for plain user/assistant turns; a system prompt is folded into the first
/// user turn as Gemma has no system role).
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% set first = true %}{% for message in messages %}{% if message['role'] == 'system' %}{% set ns_system = message['content'] %}{% endif %}{% endfor %}{% for message in messages %}{% if message['role'] != 'system' %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}<start_of_turn>{{ role }}\n{% if loop.first or (loop.index0 == 1 and messages[0]['role'] == 'system') %}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}{% endif %}{{ message['content'] | trim }}<end_of_turn>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

#[cfg(test)]
mod tests {
    use super::*;

    /// `t` rendered for (role, content) turns.
    fn rendered(t: &ChatTemplate, turns: &[(&str, &str)], add_generation_prompt: bool) -> String {
        let messages: Vec<Message> = turns.iter().map(|&(r, c)| Message::new(r, c)).collect();
        t.render(&messages, add_generation_prompt).unwrap()
    }

    #[test]
    fn runaway_template_runs_out_of_fuel() {
        let t = ChatTemplate::new(
            "{% for i in range(100000000) %}x{% endfor %}".into(),
            None,
            None,
        )
        .unwrap();
        let err = t.render(&[Message::new("user", "hi")], true).unwrap_err();
        assert!(matches!(err, Error::ChatTemplate(_)), "{err}");
    }

    #[test]
    fn oversized_template_is_refused() {
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(matches!(
            ChatTemplate::new(big, None, None),
            Err(Error::ChatTemplate(_))
        ));
    }

    #[test]
    fn gemma_builtin_renders_turns() {
        let t = ChatTemplate::new(GEMMA_TEMPLATE.into(), Some("<bos>"), Some("<eos>")).unwrap();
        let out = rendered(&t, &[("system", "Be brief."), ("user", "Hi")], true);
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    /// The constructs DeepSeek-R1-Distill's template relies on: a `namespace` carried across
    /// the loop, `split('</think>')[-1]` to drop an earlier answer's reasoning, `is none`
    /// tests and a generation prompt that opens `<think>`.
    #[test]
    fn r1_style_template_drops_earlier_reasoning() {
        let src = r#"{% set ns = namespace(system_prompt='') %}{% for message in messages %}{% if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{% endif %}{% endfor %}{{ bos_token }}{{ ns.system_prompt }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{% endif %}{% if message['role'] == 'assistant' and message['content'] is not none %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\n' }}{% endif %}"#;
        let t = ChatTemplate::new(src.into(), Some("<｜begin▁of▁sentence｜>"), None).unwrap();
        let out = rendered(
            &t,
            &[
                ("system", "S."),
                ("user", "2+2?"),
                ("assistant", "<think>\nadd\n</think>\n\n4"),
                ("user", "3+3?"),
            ],
            true,
        );
        assert_eq!(
            out,
            "<｜begin▁of▁sentence｜>S.<｜User｜>2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜><think>\n"
        );
    }

    /// SmolLM3's template wraps assistant turns in transformers' `{% generation %}` tag and
    /// dates its system prompt with `strftime_now`.
    #[test]
    fn generation_tags_and_strftime_now() {
        let src = "{%- set today = strftime_now(\"%Y\") -%}{{ today }}|{%- for m in messages -%}\n  {% generation %}\n{{ m.content }}{% endgeneration %}\n{%- endfor -%}|{%- generation -%} x {%- endgeneration -%}|{{ 'generation' }}";
        let t = ChatTemplate::new(src.into(), None, None).unwrap();
        let out = t.render(&[Message::new("assistant", "a")], false).unwrap();
        let year = jiff::Zoned::now().year();
        assert_eq!(out, format!("{year}|a|x|generation"));
        // The same template with `if true` in place of the tags renders the same.
        let plain = src
            .replace("endgeneration", "endif")
            .replace("{% generation", "{% if true")
            .replace("{%- generation", "{%- if true");
        let t2 = ChatTemplate::new(plain, None, None).unwrap();
        assert_eq!(
            t2.render(&[Message::new("assistant", "a")], false).unwrap(),
            out
        );
        assert_eq!(
            without_generation_tags("{%+ generation %}{%generation-%}{% generations %}"),
            "{%+ if true %}{%if true-%}{% generations %}"
        );
    }

    /// More of SmolLM3's template: a system message that may be absent (`in` and string
    /// methods on what it set), `is string`, `lstrip`, and the think/no-think switch.
    #[test]
    fn smollm3_style_optional_system_message() {
        let src = r#"{%- if enable_thinking is not defined -%}{%- set enable_thinking = true -%}{%- endif -%}
{%- set mode = "/think" if enable_thinking else "/no_think" -%}
{%- if messages[0].role == "system" -%}
{%- set system_message = messages[0].content -%}
{%- if "/no_think" in system_message -%}{%- set mode = "/no_think" -%}{%- endif -%}
{%- set custom = system_message.replace("/no_think", "").rstrip() -%}
{%- endif -%}
{%- if "/system_override" in system_message -%}OVERRIDE{%- else -%}
{{- "Mode: " + mode + "\n" -}}{%- if custom -%}{{- custom + "\n" -}}{%- else -%}{{- "default\n" -}}{%- endif -%}
{%- endif -%}
{%- for message in messages -%}
{%- set content = message.content if message.content is string else "" -%}
{%- if message.role == "user" -%}{{ "U:" + content + "\n" }}
{%- elif message.role == "assistant" -%}
{% generation %}{{ "A:" + content.lstrip("\n") + "\n" }}{% endgeneration %}
{%- endif -%}
{%- endfor -%}"#;
        let t = ChatTemplate::new(src.into(), None, None).unwrap();
        let no_system = rendered(&t, &[("user", "hi"), ("assistant", "\n\nyo")], false);
        assert_eq!(no_system, "Mode: /think\ndefault\nU:hi\nA:yo\n");
        let system = rendered(
            &t,
            &[("system", "Be terse. /no_think"), ("user", "hi")],
            false,
        );
        assert_eq!(system, "Mode: /no_think\nBe terse.\nU:hi\n");
    }
}
