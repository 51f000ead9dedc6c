//! The benchmark's prompts: random common English words, about one token each in the usual
//! tokenizers, so a prompt of N words is roughly N tokens on any server without knowing its
//! tokenizer. Each request gets its own words (a server's prefix cache cannot turn the benchmark
//! into a cache test) from a seed, so a run can be repeated exactly.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been",
    "if", "more", "when", "will", "would", "who", "so", "no", "time", "people", "year", "way",
    "day", "man", "thing", "woman", "life", "child", "world", "school", "state", "family", "group",
    "country", "problem", "hand", "part", "place", "case", "week", "company", "system", "program",
    "question", "work", "number", "night", "point", "home", "water", "room", "mother", "area",
    "money", "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word",
    "business", "side", "kind", "head", "house", "service", "friend", "father", "power", "hour",
    "game", "line", "end", "member", "law", "car", "city", "name", "team", "minute", "idea", "kid",
    "body", "back", "face", "level", "office", "door", "health", "art", "war", "history", "party",
    "result", "change", "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher",
    "force", "education", "good", "new", "first", "last", "long", "great", "little", "own", "other",
    "old", "big", "high", "small", "large", "next", "early", "young", "important", "few", "public",
    "bad", "same", "able", "make", "know", "take", "see", "come", "think", "look", "want", "give",
    "use", "find", "tell", "ask", "seem", "feel", "try", "leave", "call", "keep", "let", "begin",
    "help", "talk", "turn", "start", "show", "hear", "play", "run", "move", "like", "live",
    "believe", "hold", "bring", "happen", "write", "sit", "stand", "lose", "pay", "meet", "include",
    "continue", "set", "learn", "lead", "understand", "watch", "follow", "stop", "create", "speak",
    "read", "spend", "grow", "open", "walk", "win", "offer", "remember", "love", "consider",
    "appear", "buy", "wait", "serve", "die", "send", "build", "stay", "fall", "cut", "reach",
    "kill", "remain",
];

/// The prompt of request `index`: `words` random words, the same for the same seed and index.
pub fn words(seed: u64, index: u64, words: usize) -> String {
    // Requests draw from streams of one seeded generator family: `index` picks the stream.
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut out = String::with_capacity(words * 7);
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS.choose(&mut rng).copied().unwrap_or("the"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_repeat_with_the_seed_and_differ_between_requests() {
        let a = words(7, 0, 64);
        assert_eq!(a.split(' ').count(), 64);
        assert_eq!(a, words(7, 0, 64));
        assert_ne!(a, words(7, 1, 64));
        assert_ne!(a, words(8, 0, 64));
        assert_eq!(words(7, 0, 0), "");
    }
}
