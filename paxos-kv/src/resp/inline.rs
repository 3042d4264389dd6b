//! Inline commands: Redis's rules for splitting a line into words (`sdssplitargs` in
//! Redis's `sds.c`), and the quoting that undoes them.

use super::RespError;

/// Splits an inline command line (without its line end) into words, as Redis does:
///
/// * words are separated by blanks (space, `\t`, `\n`, `\r`, `\v`, `\f`); outside quotes a
///   word ends at a space, `\t`, `\n` or `\r` (so `\v` and `\f` inside a word belong to it);
/// * `"double quotes"` take the escapes `\n \r \t \b \a \\ \"` and `\xHH` (two hex digits);
///   any other escaped byte stands for itself (`\q` is `q`);
/// * `'single quotes'` take one escape only, `\'`; every other byte is literal;
/// * a quote may open in the middle of a word (`a"b c"` is `ab c`), but a closing quote must
///   be followed by a blank or the end of the line;
/// * a NUL byte ends the line: Redis splits the line as a C string.
///
/// An unterminated quote, or a closing quote followed by something else, is
/// `Protocol error: unbalanced quotes in request`; Redis closes the connection after it.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    const UNBALANCED: RespError = RespError::Protocol("unbalanced quotes in request");
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let at = |i: usize| line.get(i).copied();
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while at(i).is_some_and(is_blank) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(words);
        }
        let mut word = Vec::new();
        let mut quote = None;
        loop {
            match (quote, at(i)) {
                (None, None | Some(b' ' | b'\t' | b'\n' | b'\r')) => break,
                (None, Some(q @ (b'"' | b'\''))) => quote = Some(q),
                (None, Some(b)) => word.push(b),
                (Some(_), None) => return Err(UNBALANCED),
                (Some(q), Some(b)) if b == q => {
                    if at(i + 1).is_some_and(|next| !is_blank(next)) {
                        return Err(UNBALANCED);
                    }
                    i += 1;
                    break;
                }
                (Some(b'"'), Some(b'\\')) => match (at(i + 1), at(i + 2), at(i + 3)) {
                    (Some(b'x'), Some(hi), Some(lo))
                        if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() =>
                    {
                        word.push((hex(hi) << 4) | hex(lo));
                        i += 3;
                    }
                    (Some(escaped), ..) => {
                        word.push(unescape(escaped));
                        i += 1;
                    }
                    // A backslash last on the line is literal; the quote is still open.
                    (None, ..) => word.push(b'\\'),
                },
                (Some(b'\''), Some(b'\\')) if at(i + 1) == Some(b'\'') => {
                    word.push(b'\'');
                    i += 1;
                }
                (Some(_), Some(b)) => word.push(b),
            }
            i += 1;
        }
        words.push(word);
    }
}

/// Quotes `arg` so that [`split_args`] gives it back as one word: double quotes, with
/// `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b` escaped and every other byte outside printable
/// ASCII written `\xHH` (what Redis's `sdscatrepr` writes, and `redis-cli` shows).
pub fn quote_arg(arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'"');
    for &b in arg {
        match b {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            b' '..=b'~' => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'"');
    out
}

/// C's `isspace`.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

fn unescape(escaped: u8) -> u8 {
    match escaped {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn split(line: &str) -> Result<Vec<String>, RespError> {
        split_args(line.as_bytes()).map(|words| {
            words
                .into_iter()
                .map(|w| String::from_utf8(w).unwrap())
                .collect()
        })
    }

    fn words(list: &[&str]) -> Result<Vec<String>, RespError> {
        Ok(list.iter().map(|w| (*w).to_string()).collect())
    }

    #[test]
    fn plain_words_and_blanks() {
        assert_eq!(split("SET k v"), words(&["SET", "k", "v"]));
        assert_eq!(split("  \t SET \x0b\x0c k  "), words(&["SET", "k"]));
        assert_eq!(split(""), words(&[]));
        assert_eq!(split(" \t "), words(&[]));
        // Inside a word, \v and \f are not separators (Redis's switch lists only four).
        assert_eq!(split("a\x0bb c"), words(&["a\x0bb", "c"]));
    }

    #[test]
    fn double_quotes_and_their_escapes() {
        assert_eq!(
            split(r#"SET "a key" "l1\nl2\r\t\b\a\\\"""#),
            words(&["SET", "a key", "l1\nl2\r\t\x08\x07\\\""])
        );
        assert_eq!(split(r#""\x41\x6a\x6A""#), words(&["Ajj"]));
        // \x without two hex digits: the x stands for itself.
        assert_eq!(split(r#""\x4" "\xg1" "\q""#), words(&["x4", "xg1", "q"]));
        assert_eq!(split(r#""""#), words(&[""]));
        assert_eq!(split(r#"a"b c"  d"#), words(&["ab c", "d"]));
        assert_eq!(
            split_args(br#""\xff\x00""#).unwrap(),
            vec![vec![0xff, 0x00]]
        );
    }

    #[test]
    fn single_quotes_escape_only_the_quote() {
        assert_eq!(
            split(r"'it\'s' '\n\x41\\b'"),
            words(&["it's", r"\n\x41\\b"])
        );
        assert_eq!(split("''"), words(&[""]));
        assert_eq!(split(r#"'say "hi"'"#), words(&[r#"say "hi""#]));
    }

    #[test]
    fn unbalanced_quotes_are_refused() {
        for bad in [
            r#""abc"#,
            r#"'abc"#,
            r#""abc"def"#,
            r#"'abc'def"#,
            r#"SET k "v\"#,
            r#""a\""#,
            r"'a\'",
            // The second backslash escapes the quote: `\\` is no escape in single quotes.
            r"'a\\'",
        ] {
            assert_eq!(
                split(bad),
                Err(RespError::Protocol("unbalanced quotes in request")),
                "{bad}"
            );
        }
        // A closing quote followed by a blank is fine, whichever blank.
        assert_eq!(split("\"a\"\tb"), words(&["a", "b"]));
    }

    #[test]
    fn a_nul_byte_ends_the_line() {
        assert_eq!(
            split_args(b"GET k\0 more").unwrap(),
            vec![b"GET".to_vec(), b"k".to_vec()]
        );
        // Even inside quotes: the quote is then unterminated.
        assert!(split_args(b"GET \"k\0\"").is_err());
    }

    /// Lines split by a real redis-server (7.0.15), recorded in `testdata/inline_redis.txt`:
    /// every one splits here into the same words, or is refused alike.
    #[test]
    fn redis_splits_these_lines_so() {
        let unhex = |h: &str| -> Vec<u8> {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        };
        let table = include_str!("testdata/inline_redis.txt");
        let mut cases = 0;
        for row in table.lines().filter(|l| !l.starts_with('#')) {
            let (line, expected) = row.split_once('\t').unwrap();
            let line = unhex(line);
            let expected = match expected {
                "unbalanced" => Err(RespError::Protocol("unbalanced quotes in request")),
                words => Ok(words.split(' ').map(|w| unhex(&w[1..])).collect()),
            };
            assert_eq!(
                split_args(&line),
                expected,
                "{:?}",
                String::from_utf8_lossy(&line)
            );
            cases += 1;
        }
        assert!(cases > 300, "{cases}");
    }

    #[test]
    fn quoting_is_what_redis_writes() {
        assert_eq!(quote_arg(b"a b"), br#""a b""#);
        assert_eq!(
            quote_arg(b"\"\\\n\r\t\x07\x08\x00\x7f\xe9~"),
            br#""\"\\\n\r\t\a\b\x00\x7f\xe9~""#
        );
    }

    proptest! {
        /// Any words, quoted and joined by blanks, split back into the same words.
        #[test]
        fn quoted_words_round_trip(
            args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
            gaps in prop::collection::vec(prop::sample::select(vec![&b" "[..], b"\t", b"  \t "]), 8),
        ) {
            let mut line = b" ".to_vec();
            for (arg, gap) in args.iter().zip(&gaps) {
                line.extend_from_slice(&quote_arg(arg));
                line.extend_from_slice(gap);
            }
            prop_assert_eq!(split_args(&line).unwrap(), args);
        }

        /// Whatever the line, splitting never panics, and a line with no quote or NUL
        /// splits exactly at the separators (outside quotes a backslash is literal).
        #[test]
        fn any_line_splits_without_panicking(line in prop::collection::vec(any::<u8>(), 0..80)) {
            let split = split_args(&line);
            if !line.iter().any(|b| matches!(b, b'"' | b'\'' | 0)) {
                let expected: Vec<Vec<u8>> = line
                    .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                    .map(|w| w.iter().copied().skip_while(|&b| is_blank(b)).collect::<Vec<u8>>())
                    .filter(|w| !w.is_empty())
                    .collect();
                prop_assert_eq!(split.unwrap(), expected);
            }
        }
    }
}
