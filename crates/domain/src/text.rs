//! Helpers for text that came from a client and goes back into a message.

/// The most characters of a client's value an error message repeats.
pub const MAX_ECHO_CHARS: usize = 64;

/// `text` as an error message may repeat it: at most [`MAX_ECHO_CHARS`] characters (an
/// ellipsis marks a cut) with control characters escaped, so a hostile value can neither
/// flood an answer nor forge lines in a log.
pub fn excerpt(text: &str) -> String {
    let mut shown = String::with_capacity(text.len().min(MAX_ECHO_CHARS * 4));
    for (index, character) in text.chars().enumerate() {
        if index == MAX_ECHO_CHARS {
            shown.push('…');
            break;
        }
        if character.is_control() {
            shown.extend(character.escape_default());
        } else {
            shown.push(character);
        }
    }
    shown
}

/// `text` cut to at most `limit` characters, the last one an ellipsis when it was cut.
pub fn shortened(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_control_characters_escaped() {
        assert_eq!(excerpt("short"), "short");
        let long = "x".repeat(1000);
        let shown = excerpt(&long);
        assert_eq!(shown.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(excerpt("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn shortened_text_keeps_the_limit_with_its_ellipsis() {
        assert_eq!(shortened("abc", 3), "abc");
        let cut = shortened("abcdef", 4);
        assert_eq!(cut, "abc…");
        assert_eq!(cut.chars().count(), 4);
    }
}
