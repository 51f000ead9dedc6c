//! Continuous batching (`candor_engine::serving`): a request's tokens do not depend on what else
//! shares its forward passes, on the default model and on Gemma 3 270M.

mod common;

use candor_engine::serving::{self, Batching, Input, Task};
use candor_engine::{Completion, GenerateParams, Message, Model, SamplingParams};
use common::*;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Eight chat requests whose prompts differ in length (about 20 to 90 tokens).
fn requests(sampling: &SamplingParams) -> Vec<Task> {
    let questions = [
        "Hi!",
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "List three prime numbers and explain why each of them is prime, briefly.",
        "Translate 'good morning' into German, Spanish and Italian, and say which language each is.",
        "Why is the sky blue? Answer in one sentence for a child.",
        "Name a fruit.",
        "Describe, step by step, how to make a cup of tea with loose leaves, a pot and a strainer, \
         and say how long the leaves should steep.",
    ];
    questions
        .iter()
        .map(|q| Task {
            input: Input::Chat(vec![Message::new("user", *q)]),
            params: GenerateParams {
                max_tokens: 24,
                sampling: sampling.clone(),
                ..Default::default()
            },
            stream: true,
            context: vec![],
            ctx_limit: None,
        })
        .collect()
}

/// Runs `tasks` through a scheduler with `batching`, all submitted at once; returns their
/// completions in order.
fn serve(model: Model, tasks: Vec<Task>, batching: Batching) -> Vec<Completion> {
    let cancel = Arc::new(AtomicBool::new(false));
    let (queue, worker) = serving::spawn("test", model, batching, tasks.len(), cancel).unwrap();
    let events: Vec<_> = tasks
        .into_iter()
        .map(|t| queue.submit(t).expect("the queue holds every request"))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let done = rt.block_on(async {
        let mut done = Vec::new();
        for e in events {
            done.push(e.finish().await.expect("the request completes"));
        }
        done
    });
    let stats = queue.stats();
    assert_eq!(stats.completed, done.len() as u64, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    drop(queue);
    worker.join().unwrap();
    done
}

/// The requests one after another in one slot, each reading on from the cached prefix the one
/// before left (the chat template's opening), give the same tokens and text as all eight
/// read fresh in one batch of eight slots; the batch is small enough that prompts are read in
/// several chunks next to the others' decoding.
fn batched_equals_alone(load: fn() -> Model, sampling: SamplingParams) {
    let batch_size = 32;
    let slots = |parallel| Batching {
        parallel,
        batch_size,
        prefix_cache: true,
        ..Default::default()
    };
    let alone = serve(load(), requests(&sampling), slots(1));
    let batched = serve(load(), requests(&sampling), slots(8));
    assert!(
        alone.iter().any(|c| c.prompt_tokens > batch_size),
        "some prompt spans several chunks"
    );
    assert!(
        alone[1..].iter().all(|c| c.cached_prompt_tokens > 0),
        "one after another, each request reuses a prefix"
    );
    assert!(batched.iter().all(|c| c.cached_prompt_tokens == 0));
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        assert!(!a.tokens.is_empty(), "request {i} generated nothing");
        assert_eq!(
            a.tokens, b.tokens,
            "request {i}: alone after a cached prefix vs batched"
        );
        assert_eq!(a.text, b.text, "request {i}");
        assert_eq!(a.finish_reason, b.finish_reason, "request {i}");
    }
}

#[test]
fn default_model_batched_greedy_equals_alone() {
    batched_equals_alone(load_default, SamplingParams::greedy());
}

#[test]
fn default_model_batched_seeded_sampling_equals_alone() {
    let sampling = SamplingParams {
        temperature: 0.8,
        seed: 7,
        ..SamplingParams::default()
    };
    batched_equals_alone(load_default, sampling);
}

#[test]
fn gemma3_batched_greedy_equals_alone() {
    batched_equals_alone(load_gemma, SamplingParams::greedy());
}

/// With prompts that fit in one batch, the scheduler reads them in one pass as `generate` does:
/// eight batched requests give `Model::generate`'s greedy tokens.
#[test]
fn default_model_batched_greedy_equals_generate() {
    let mut model = load_default();
    let tasks = requests(&SamplingParams::greedy());
    let want: Vec<Vec<u32>> = tasks
        .iter()
        .map(|t| {
            let Input::Chat(messages) = &t.input else {
                unreachable!()
            };
            let text = model
                .chat_template()
                .unwrap()
                .render(messages, true)
                .unwrap();
            let ids = model.tokenizer().encode(&text, false).unwrap();
            model.reset();
            model
                .generate(&ids, &t.params, &mut |_| true)
                .unwrap()
                .tokens
        })
        .collect();
    let got = serve(
        model,
        tasks,
        Batching {
            parallel: 8,
            batch_size: 512,
            prefix_cache: false,
            ..Default::default()
        },
    );
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w, &g.tokens, "request {i}");
    }
}

/// A request reuses the cached keys and values of the longest prefix it shares with an earlier
/// one: the chat template's opening with a different question, all but the last prompt
/// token with the same question; here the tokens are the same either way.
#[test]
fn prefix_cache_reuses_an_earlier_prompt() {
    let mut tasks = requests(&SamplingParams::greedy());
    tasks.truncate(2);
    tasks.push(tasks[1].clone());
    let one = Batching {
        parallel: 1,
        batch_size: 512,
        prefix_cache: true,
        ..Default::default()
    };
    let done = serve(load_default(), tasks, one);
    assert_eq!(done[0].cached_prompt_tokens, 0);
    let shared = done[1].cached_prompt_tokens;
    assert!(
        shared > 0 && shared < done[1].prompt_tokens - 1,
        "the template's opening only: {shared} of {}",
        done[1].prompt_tokens
    );
    assert_eq!(done[2].cached_prompt_tokens, done[2].prompt_tokens - 1);
    assert_eq!(done[1].tokens, done[2].tokens);
}

/// With a KV budget that holds about two of the eight requests, they take turns: the cache never
/// holds more positions than the budget, and every request gives the tokens it gives alone. A
/// request whose prompt alone exceeds the budget is refused with the reason; one whose prompt
/// fits but not its max_tokens is cut short.
#[test]
fn a_kv_budget_holds_requests_until_they_fit() {
    let tasks = requests(&SamplingParams::greedy());
    let alone = serve(load_default(), tasks.clone(), Batching::default());
    let longest = alone.iter().map(|c| c.prompt_tokens + 23).max().unwrap();
    let budget = 2 * longest + 10;
    let shared = Batching {
        parallel: 8,
        kv_budget: Some(budget),
        ..Default::default()
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let (queue, worker) = serving::spawn("test", load_default(), shared, 16, cancel).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let events: Vec<_> = tasks
        .into_iter()
        .map(|t| queue.submit(t).unwrap())
        .collect();
    let long = Task {
        input: Input::Tokens(vec![504; budget + 1]),
        ..requests(&SamplingParams::greedy()).remove(0)
    };
    let refused = rt.block_on(queue.submit(long).unwrap().finish());
    assert!(
        matches!(refused, Err(serving::ServeError::OverKvBudget { .. })),
        "{refused:?}"
    );
    let cut = Task {
        input: Input::Tokens(vec![504; budget - 5]),
        ..requests(&SamplingParams::greedy()).remove(0)
    };
    let cut = rt.block_on(queue.submit(cut).unwrap().finish()).unwrap();
    assert_eq!(cut.tokens.len(), 6, "{:?}", cut.finish_reason);
    for (i, (e, a)) in events.into_iter().zip(&alone).enumerate() {
        let b = rt.block_on(e.finish()).unwrap();
        assert_eq!(a.tokens, b.tokens, "request {i}");
    }
    let stats = queue.stats();
    assert!(
        stats.kv_peak_tokens <= budget,
        "{} positions allocated at once, budget {budget}",
        stats.kv_peak_tokens
    );
    drop(queue);
    worker.join().unwrap();
}
