//! `candor run`: complete one prompt, streaming the text to stdout.

use crate::args::{GrammarArgs, RunArgs, SamplingArgs};
use crate::commands::print::Printer;
use crate::error::CliError;
use crate::home::Home;
use crate::load::load;
use anyhow::{Context, Result};
use candor_engine::{GenerateParams, Grammar, GrammarKind, Message, Reasoning, SamplingParams};
use std::io::{IsTerminal, Read};
use std::path::Path;

pub fn generate_params(s: &SamplingArgs) -> GenerateParams {
    GenerateParams {
        max_tokens: s.max_tokens,
        sampling: SamplingParams {
            temperature: s.temperature,
            top_k: (s.top_k > 0).then_some(s.top_k),
            top_p: (s.top_p != 1.0).then_some(s.top_p),
            min_p: (s.min_p != 0.0).then_some(s.min_p),
            repeat_penalty: s.repeat_penalty,
            repeat_last_n: 64,
            seed: s.seed,
        },
        stop: s.stop.clone(),
        ..Default::default()
    }
}

/// Grammar files are small; a larger one is a mistake, not a grammar.
const MAX_GRAMMAR_FILE: u64 = 4 << 20;

/// The constraint the flags ask for, read and parsed; compiled when generation starts.
pub fn grammar(g: &GrammarArgs) -> Result<Option<Grammar>> {
    let read = |path: &Path, what: &str| -> Result<String> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading the {what} {}", path.display()))?
            .len();
        if len > MAX_GRAMMAR_FILE {
            return Err(CliError::usage(format!(
                "the {what} {} has {len} bytes; at most {MAX_GRAMMAR_FILE} are read",
                path.display()
            ))
            .into());
        }
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the {what} {}", path.display()))
    };
    Ok(Some(if let Some(path) = &g.json_schema {
        let text = read(path, "JSON schema")?;
        let schema = serde_json::from_str(&text)
            .map_err(|e| CliError::usage(format!("{} is not JSON: {e}", path.display())))?;
        let origin = format!("--json-schema {}", path.display());
        Grammar::new(GrammarKind::JsonSchema(schema), origin)
    } else if let Some(path) = &g.grammar {
        let text = read(path, "grammar")?;
        Grammar::new(
            GrammarKind::Lark(text),
            format!("--grammar {}", path.display()),
        )
    } else if let Some(rx) = &g.regex {
        Grammar::new(GrammarKind::Regex(rx.clone()), "--regex")
    } else {
        return Ok(None);
    }))
}

pub fn run(home: &Home, args: &RunArgs) -> Result<()> {
    let prompt = match &args.prompt {
        Some(p) => p.clone(),
        None if !std::io::stdin().is_terminal() => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the prompt from stdin")?;
            s
        }
        None => return Err(CliError::usage("give a prompt as an argument or on stdin").into()),
    };
    if prompt.is_empty() {
        return Err(candor_engine::Error::EmptyPrompt.into());
    }
    let mut loaded = load(home, &args.model)?;
    let model = &mut loaded.model;
    let (ids, reasoning) = if args.chat {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(Message::new("system", s.as_str()));
        }
        messages.push(Message::new("user", prompt.as_str()));
        let template = model.chat_template()?;
        let text = template.render(&messages, true)?;
        let reasoning = Reasoning::Auto.resolve(Some(template), &text);
        // The template writes any BOS itself.
        (model.tokenizer().encode(&text, false)?, reasoning)
    } else {
        (model.tokenizer().encode(&prompt, true)?, Reasoning::Off)
    };
    let params = GenerateParams {
        grammar: grammar(&args.grammar)?,
        logprobs: args.logprobs.map(usize::from),
        reasoning,
        ..generate_params(&args.sampling)
    };
    let mut printer = Printer::stdout(args.hide_thinking);
    let json = args.json;
    // A closed pipe (`| head`) ends generation instead of failing it.
    let completion = model.generate(&ids, &params, &mut |piece| {
        json || printer.piece(piece).is_ok()
    })?;
    if json {
        let mut out = serde_json::json!({
            "model": args.model.model,
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "prompt_tokens": completion.prompt_tokens,
            "generated_tokens": completion.tokens.len(),
            "tokens": completion.tokens,
            "reasoning": completion.reasoning,
            "prompt_tokens_per_second": completion.prompt_tokens_per_second(),
            "tokens_per_second": completion.tokens_per_second(),
            "verify_ms": loaded.verify_time.as_secs_f64() * 1e3,
            "load_ms": loaded.load_time.as_secs_f64() * 1e3,
            "overrides": loaded.verification.report.decision.overrides,
        });
        if args.logprobs.is_some() {
            out["logprobs"] = serde_json::json!(completion.logprobs);
        }
        println!("{out}");
    } else {
        let _ = printer.end();
        eprintln!(
            "candor: prompt {} tokens ({:.1} tok/s), generated {} tokens ({:.1} tok/s), stop: {:?}",
            completion.prompt_tokens,
            completion.prompt_tokens_per_second(),
            completion.tokens.len(),
            completion.tokens_per_second(),
            completion.finish_reason
        );
    }
    Ok(())
}
