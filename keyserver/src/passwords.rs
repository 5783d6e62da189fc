//! What a new password must be (NIST SP 800-63B §3.1.1.2): long enough, and
//! not one that attackers try first. No composition rules and no expiry —
//! length and a blocklist are what the guidance asks for.
//!
//! The blocklist, `common-passwords.txt`, is the list Django ships
//! (`django/contrib/auth/common-passwords.txt.gz`, BSD-3-Clause, from Royce
//! Williams' list of 20,000 common passwords), lower-cased, ASCII entries of
//! five characters or more.

use crate::error::{Error, Result};

/// The shortest password accepted, in characters.
pub const MIN_CHARS: usize = 12;
/// The longest, in bytes (argon2 takes any length; a bound stops abuse).
pub const MAX_BYTES: usize = 1024;

const COMMON: &str = include_str!("common-passwords.txt");

fn is_common(word: &str) -> bool {
    // The list is sorted: a binary search over its lines.
    static LIST: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| COMMON.lines().collect())
        .binary_search(&word)
        .is_ok()
}

/// A short unit repeated ("abcabcabcabc", "123412341234"), or a run of
/// neighbouring characters ("1234567890123", "abcdefghijklm"; digits wrap
/// from 9 to 0).
fn is_pattern(s: &str) -> bool {
    let c: Vec<char> = s.chars().collect();
    let repeated =
        (1..=4).any(|unit| c.len() > unit && c.iter().enumerate().all(|(i, x)| *x == c[i % unit]));
    let step = |a: char, b: char| -> Option<i32> {
        let (a, b) = (a as i32, b as i32);
        let d = b - a;
        if a >= '0' as i32 && a <= '9' as i32 && b >= '0' as i32 && b <= '9' as i32 {
            Some(if d == -9 {
                1
            } else if d == 9 {
                -1
            } else {
                d
            })
        } else {
            Some(d)
        }
    };
    let steps: Vec<i32> = c.windows(2).filter_map(|w| step(w[0], w[1])).collect();
    let run =
        !steps.is_empty() && (steps.iter().all(|d| *d == 1) || steps.iter().all(|d| *d == -1));
    repeated || run
}

/// Checks a password about to be set for `email`. The message says what
/// to change, never the password.
pub fn check_new(password: &[u8], email: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Invalid(format!("choose another password: {why}")));
    if password.len() > MAX_BYTES {
        return bad("it is longer than 1024 bytes");
    }
    let Ok(text) = std::str::from_utf8(password) else {
        return bad("it is not UTF-8 text");
    };
    if text.chars().count() < MIN_CHARS {
        return bad("it must be at least 12 characters (a few words make a good one)");
    }
    let lower = text.to_lowercase();
    // "password1234!", "Dragon 2024!!!": a common word with digits, spaces
    // and symbols added is as guessable as the word.
    let base = lower.trim_matches(|c: char| !c.is_alphabetic());
    let squeezed: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    if is_common(&lower) || is_common(base) || is_common(&squeezed) {
        return bad("it is on a list of commonly used passwords");
    }
    let mut distinct: Vec<char> = lower.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return bad("it repeats too few characters");
    }
    if is_pattern(&squeezed) {
        return bad("it is a keyboard or counting pattern");
    }
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    if base == email || (!local.is_empty() && base == local) || lower.contains("medseal") {
        return bad("it is made from your e-mail address or the service's name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_new;

    #[test]
    fn long_passphrases_pass() {
        for ok in [
            "correct horse battery staple",
            "a long clinician password",
            "Tr0ub4dor&3-x",
        ] {
            assert!(check_new(ok.as_bytes(), "alice@st.example").is_ok(), "{ok}");
        }
    }

    #[test]
    fn short_common_and_personal_ones_are_refused() {
        for bad in [
            "short-pw",
            "elevenchars",
            "password1234",
            "Password1234!",
            "qwertyuiop[]",
            "1q2w3e4r5t6y",
            "sunshine2024!!",
            "!!!!2024dragon",
            "password 2024",
            "Dragon 2024 !!",
            "1234567890123",
            "9876543210987",
            "abcdefghijklmn",
            "abcdabcdabcd",
            "aaaaaaaaaaaaaaaa",
            "abababababab",
            "alice@st.example",
            "alice12345678",
            "my medseal password",
        ] {
            let err = check_new(bad.as_bytes(), "alice@st.example")
                .unwrap_err()
                .to_string();
            assert!(err.contains("choose another password"), "{bad}: {err}");
            assert!(!err.contains(bad), "the message repeats the password");
        }
        assert!(check_new(&[0xff; 13], "a@b.c").is_err());
        assert!(check_new(&[b'x'; 1025], "a@b.c").is_err());
    }

    #[test]
    fn the_list_is_sorted_and_loaded() {
        let lines: Vec<&str> = super::COMMON.lines().collect();
        assert!(lines.len() > 18_000);
        assert!(
            lines.windows(2).all(|w| w[0] < w[1]),
            "binary search needs a sorted list"
        );
    }
}
