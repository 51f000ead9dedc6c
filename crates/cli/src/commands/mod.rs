//! One module per command.

pub mod bench;
pub mod chat;
pub mod completions;
pub mod license;
pub mod list;
pub mod man;
pub mod manifest;
pub mod perplexity;
pub mod print;
pub mod pull;
pub mod run;
pub mod serve;
pub mod show;
pub mod tokenize;
pub mod verify;
