//! `SCAN ... MATCH` patterns: Redis's glob rules, matched without backtracking blow-up.
//!
//! The rules are those of `stringmatchlen` in Redis 7's `util.c` (case-sensitive), checked
//! against a real Redis 7.0 in `testdata/glob_redis.txt` (written by
//! `testdata/gen_glob_redis.py`):
//!
//! * `*` matches any run of bytes (consecutive `*`s count as one), `?` any one byte, `\x`
//!   the byte `x` (a `\` at the very end is a literal `\`), any other byte itself;
//! * `[...]` matches one byte listed in the class; `[^...]` one byte not listed. Inside a
//!   class `\x` lists `x`, and `a-z` lists the range from `a` to `z` (either way round: `z-a`
//!   is the same range). The class ends at the first `]` that is not escaped and not the
//!   end of a range (in `[a-]` the `]` *is* the end of the range `]`..`a`); an unterminated
//!   class runs to the end of the pattern. `[]` matches nothing, `[^]` any byte;
//! * the pattern `*` alone matches every key, the empty key too (Redis's `SCAN` and `KEYS`
//!   skip matching for it); otherwise an empty key matches only the empty pattern (so `**`
//!   does not match it);
//! * a pattern with more than 1,000 `*` groups before its last token matches nothing (Redis's
//!   recursion limit, `nesting > 1000`).
//!
//! One deliberate difference: range bounds compare as unsigned bytes. Redis compares them as
//! C `char`, which is signed on x86-64 builds and unsigned on arm64 builds, so the two
//! differ for ranges with one bound below `0x80` and one at or above it; here every replica
//! agrees whatever it runs on.
//!
//! Redis matches `*` by recursion; here a pattern is compiled to tokens that each match one
//! byte, plus `*`, and matched with the classic single-backtrack algorithm: on a mismatch,
//! only the most recent `*` takes one more byte. That is exact because every other token
//! matches exactly one byte, and it takes O(pattern × key) steps whatever the pattern
//! (`*a*a*a*a*b` included), where plain recursion is exponential.

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Glob {
    tokens: Vec<Token>,
    /// The pattern is `*`: every key matches, the empty one too.
    matches_all: bool,
    /// Redis's recursion limit applies: the pattern matches no key.
    matches_nothing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A group of `*`.
    Star,
    /// `?`.
    Any,
    /// A literal byte.
    Byte(u8),
    /// `[...]`.
    Class { negated: bool, items: Vec<Item> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Byte(u8),
    /// Inclusive, low bound first.
    Range(u8, u8),
}

/// Redis gives up beyond this many nested `*` (`stringmatchlen_impl`, `nesting > 1000`).
const STAR_NESTING_MAX: usize = 1000;

impl Glob {
    /// Compiles `pattern`; every byte string is a pattern.
    pub(super) fn new(pattern: &[u8]) -> Self {
        let tokens = tokens(pattern);
        let stars = tokens.iter().filter(|t| **t == Token::Star).count();
        let final_star = usize::from(tokens.last() == Some(&Token::Star));
        Self {
            matches_all: pattern == b"*",
            matches_nothing: stars - final_star > STAR_NESTING_MAX,
            tokens,
        }
    }

    /// A bound on the steps [`matches`](Self::matches) takes per byte of key: the number of
    /// tokens (at least 1).
    pub(super) fn cost_per_byte(&self) -> usize {
        self.tokens.len().max(1)
    }

    /// Whether `key` matches, in O(pattern × key) steps.
    pub(super) fn matches(&self, key: &[u8]) -> bool {
        if self.matches_all {
            return true;
        }
        if key.is_empty() {
            return self.tokens.is_empty();
        }
        if self.matches_nothing {
            return false;
        }
        let tokens = &self.tokens[..];
        let (mut t, mut k) = (0, 0);
        // The token after the latest `*`, and the key position that `*` stopped at.
        let mut resume: Option<(usize, usize)> = None;
        while let Some(&byte) = key.get(k) {
            match tokens.get(t) {
                Some(Token::Star) => {
                    t += 1;
                    resume = Some((t, k));
                    continue;
                }
                Some(token) if token.matches(byte) => {
                    t += 1;
                    k += 1;
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the latest `*` take one more byte, or fail.
            let Some((after, stop)) = resume else {
                return false;
            };
            resume = Some((after, stop + 1));
            t = after;
            k = stop + 1;
        }
        tokens[t..].iter().all(|t| *t == Token::Star)
    }
}

impl Token {
    /// Whether this one-byte token matches `byte` (`Star` is handled by the caller).
    fn matches(&self, byte: u8) -> bool {
        match self {
            Self::Star | Self::Any => true,
            Self::Byte(b) => *b == byte,
            Self::Class { negated, items } => {
                let listed = items.iter().any(|item| match *item {
                    Item::Byte(b) => b == byte,
                    Item::Range(lo, hi) => (lo..=hi).contains(&byte),
                });
                listed != *negated
            }
        }
    }
}

/// Splits a pattern into tokens, following `stringmatchlen`'s parsing step by step.
fn tokens(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&byte) = pattern.get(i) {
        match byte {
            b'*' => {
                while pattern.get(i + 1) == Some(&b'*') {
                    i += 1;
                }
                tokens.push(Token::Star);
                i += 1;
            }
            b'?' => {
                tokens.push(Token::Any);
                i += 1;
            }
            b'[' => {
                let (token, next) = class(pattern, i + 1);
                tokens.push(token);
                i = next;
            }
            b'\\' if i + 1 < pattern.len() => {
                tokens.push(Token::Byte(pattern[i + 1]));
                i += 2;
            }
            _ => {
                tokens.push(Token::Byte(byte));
                i += 1;
            }
        }
    }
    tokens
}

/// Parses the class whose body starts at `i` (just after its `[`). Returns it and where the
/// next token starts.
fn class(pattern: &[u8], mut i: usize) -> (Token, usize) {
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let end = loop {
        match pattern.get(i) {
            None => break pattern.len(),
            Some(b'\\') if i + 1 < pattern.len() => {
                items.push(Item::Byte(pattern[i + 1]));
                i += 2;
            }
            Some(b']') => break i + 1,
            Some(&a) if i + 2 < pattern.len() && pattern[i + 1] == b'-' => {
                let b = pattern[i + 2];
                items.push(Item::Range(a.min(b), a.max(b)));
                i += 3;
            }
            Some(&b) => {
                items.push(Item::Byte(b));
                i += 1;
            }
        }
    };
    (Token::Class { negated, items }, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, key: &str) -> bool {
        Glob::new(pattern.as_bytes()).matches(key.as_bytes())
    }

    /// Cases checked by hand against Redis 7.0.15 (`KEYS`), the doubtful ones first.
    #[test]
    fn redis_rules() {
        for (pattern, key, expected) in [
            ("*", "", true),
            ("", "", true),
            ("**", "", false),
            ("a*", "a", true),
            ("a**", "a", true),
            ("a*?*", "a", false),
            ("h?llo", "hello", true),
            ("h*llo", "hllo", true),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[^e]llo", "hallo", true),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hbllo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hallo", false),
            ("\\", "\\", true),
            ("a\\", "a\\", true),
            ("[abc", "b", true),
            ("[abc", "bc", false),
            ("[]", "]", false),
            ("[]a", "a", false),
            ("[^]", "x", true),
            ("[^]", "]", true),
            ("[a-]", "]", true),
            ("[a-]", "_", true),
            ("[a-]", "-", false),
            ("[a-]x", "ax", false), // one unterminated class: `]`..`a` and `x`
            ("[a-]x", "x", true),
            ("[\\]]", "]", true),
            ("[\\]", "]", true),
            ("[\\", "\\", true),
            ("[", "[", false),
            ("[^", "q", true),
            ("[*]", "*", true),
            ("[*]", "a", false),
            (
                "*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaab", true),
        ] {
            assert_eq!(m(pattern, key), expected, "{pattern:?} ~ {key:?}");
        }
    }

    #[test]
    fn the_recursion_limit_of_redis() {
        let key = format!("{}b", "a".repeat(1001));
        assert!(!m(&format!("{}b", "a*".repeat(1001)), &key));
        assert!(m(&format!("{}b", "a*".repeat(1000)), &key));
        assert!(m(&format!("{}*", "a*".repeat(1001)), &key)); // the last group is final
        assert!(!m(&"a*".repeat(1002), &key));
    }

    /// Pattern, key and whether Redis 7.0.15 matched them (`KEYS`), for patterns drawn at
    /// random over a small alphabet of the special bytes; one case per line, hex-encoded.
    #[test]
    fn agrees_with_redis_on_random_patterns() {
        let table = include_str!("testdata/glob_redis.txt");
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut cases = 0;
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let mut fields = line.split(' ');
            let (pattern, key, expected) = (
                hex(fields.next().unwrap()),
                hex(fields.next().unwrap()),
                fields.next().unwrap() == "1",
            );
            assert_eq!(
                Glob::new(&pattern).matches(&key),
                expected,
                "{:?} ~ {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&key)
            );
            cases += 1;
        }
        assert!(cases > 1000, "{cases}");
    }

    #[test]
    fn adversarial_patterns_take_polynomial_time() {
        let key = vec![b'a'; 20_000];
        let pattern = format!("{}b", "*a".repeat(50));
        let started = std::time::Instant::now();
        assert!(!Glob::new(pattern.as_bytes()).matches(&key));
        // O(pattern × key) = 2 million steps; exponential backtracking would never end.
        assert!(started.elapsed().as_secs() < 10);
    }

    #[test]
    fn ranges_compare_as_unsigned_bytes() {
        let class = Glob::new(b"[a-\xff]");
        assert!(class.matches(b"\x80") && class.matches(b"z") && !class.matches(b"A"));
    }
}
