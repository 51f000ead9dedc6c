//! `candor chat`: multi-turn chat. The conversation is re-rendered with the model's template each
//! turn; the engine reuses the cached prefix, so only the new turn is processed.

use crate::args::ChatArgs;
use crate::commands::print::Printer;
use crate::commands::run::generate_params;
use crate::home::Home;
use crate::load::load;
use anyhow::Result;
use candor_engine::{GenerateParams, Message, Reasoning};
use std::io::{BufRead, IsTerminal};

const HELP: &str =
    "commands: /reset (forget the conversation), /system TEXT (set the system prompt), /exit";

pub fn run(home: &Home, args: &ChatArgs) -> Result<()> {
    let mut loaded = load(home, &args.model)?;
    let model = &mut loaded.model;
    let template = model.chat_template()?.clone();
    let params = generate_params(&args.sampling);
    let interactive = std::io::stdin().is_terminal();
    let mut system = args.system.clone();
    let mut turns: Vec<Message> = Vec::new();
    let mut editor = if interactive {
        eprintln!("candor chat: {HELP}");
        Some(rustyline::DefaultEditor::new()?)
    } else {
        None
    };
    let mut stdin = std::io::stdin().lock();
    loop {
        let line = match editor.as_mut() {
            Some(ed) => match ed.readline(">>> ") {
                Ok(l) => {
                    let _ = ed.add_history_entry(l.as_str());
                    l
                }
                Err(
                    rustyline::error::ReadlineError::Interrupted
                    | rustyline::error::ReadlineError::Eof,
                ) => break,
                Err(e) => return Err(e.into()),
            },
            None => {
                let mut l = String::new();
                if stdin.read_line(&mut l)? == 0 {
                    break;
                }
                l.trim_end_matches(['\n', '\r']).to_string()
            }
        };
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" | "/bye" => break,
            "/reset" => {
                turns.clear();
                model.reset();
                eprintln!("candor: conversation cleared");
                continue;
            }
            "/help" | "/?" => {
                eprintln!("{HELP}");
                continue;
            }
            _ if line.starts_with("/system") => {
                let text = line["/system".len()..].trim();
                system = (!text.is_empty()).then(|| text.to_string());
                eprintln!(
                    "candor: system prompt {}",
                    if system.is_some() { "set" } else { "cleared" }
                );
                continue;
            }
            _ => {}
        }
        turns.push(Message::new("user", line));
        let mut messages = Vec::with_capacity(turns.len() + 1);
        if let Some(s) = &system {
            messages.push(Message::new("system", s.as_str()));
        }
        messages.extend(turns.iter().cloned());
        let text = template.render(&messages, true)?;
        let ids = model.tokenizer().encode(&text, false)?;
        let params = GenerateParams {
            reasoning: Reasoning::Auto.resolve(Some(&template), &text),
            ..params.clone()
        };
        let mut printer = Printer::stdout(args.hide_thinking);
        let completion = model.generate(&ids, &params, &mut |piece| printer.piece(piece).is_ok());
        let completion = match completion {
            Ok(c) => c,
            Err(e) => {
                turns.pop();
                return Err(e.into());
            }
        };
        printer.end()?;
        eprintln!(
            "candor: {} tokens, {:.1} tok/s (prompt: {} new of {} tokens, {:.1} tok/s)",
            completion.tokens.len(),
            completion.tokens_per_second(),
            completion.prompt_tokens - completion.cached_prompt_tokens,
            completion.prompt_tokens,
            completion.prompt_tokens_per_second()
        );
        turns.push(Message::new("assistant", completion.text.trim()));
    }
    Ok(())
}
