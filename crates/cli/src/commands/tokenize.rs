//! `candor tokenize TEXT`: token ids, for debugging and tests.

use crate::args::TokenizeArgs;
use crate::home::Home;
use crate::load::load;
use anyhow::Result;

pub fn run(home: &Home, args: &TokenizeArgs) -> Result<()> {
    let loaded = load(home, &args.model)?;
    let tok = loaded.model.tokenizer();
    let ids = tok.encode(&args.text, !args.no_special)?;
    if args.json {
        println!("{}", serde_json::json!({ "ids": ids }));
    } else {
        for id in ids {
            println!("{id}\t{:?}", tok.id_to_token(id).unwrap_or_default());
        }
    }
    Ok(())
}
