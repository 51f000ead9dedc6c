//! `candor perplexity --file FILE`.

use crate::args::PerplexityArgs;
use crate::home::Home;
use crate::load::load;
use anyhow::{Context, Result};

pub fn run(home: &Home, args: &PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let mut loaded = load(home, &args.model)?;
    let p = loaded.model.perplexity(&text)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"perplexity": p.perplexity, "tokens": p.tokens, "windows": p.windows})
        );
    } else {
        println!("perplexity: {:.4}", p.perplexity);
        eprintln!(
            "candor: {} tokens scored in {} window(s)",
            p.tokens, p.windows
        );
    }
    Ok(())
}
