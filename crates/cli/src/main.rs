//! `candor`: local LLM inference that proves what it runs.

fn main() {
    candor::main()
}
