//! One pass over an event's text: lower case, words split (`KubePodCrashLooping` reads
//! `kube pod crash looping`), clauses marked, numbers read with their units, then the
//! keywords found by one automaton.

use std::collections::BTreeMap;

use super::keywords::{AUTOMATON, Bound, KEYWORDS, Keyword};
use crate::vocabulary::Category;

/// How much of a description is read: what decides a triage is at its start, and the
/// cost per event stays bounded whatever a sender writes.
pub(super) const MAX_DESCRIPTION_BYTES: usize = 4096;
const MAX_LABEL_VALUE_BYTES: usize = 256;
const MAX_LABELS_BYTES: usize = 2048;

/// Ends a clause in the normalised text: negation and numbers do not reach across it.
pub(super) const CLAUSE_END: u8 = b'|';

/// Label keys whose value is the caller's business (mapped separately) or noise.
const IGNORED_LABELS: [&str; 5] = ["severity", "priority", "urgency", "fingerprint", "category"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Title,
    Description,
    Labels,
}

impl Field {
    pub(super) const fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Description => "description",
            Field::Labels => "labels",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Unit {
    Plain,
    Percent,
    /// A duration, in seconds.
    Seconds,
    Multiplier,
    Money,
    Ordinal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Comparison {
    /// A measured value (`is 97%`).
    Exact,
    /// A threshold passed upwards (`> 80%`, `more than 1s`).
    Above,
    /// A threshold passed downwards (`< 10% left`).
    Below,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Quantity {
    pub start: usize,
    pub end: usize,
    pub value: f64,
    pub unit: Unit,
    pub comparison: Comparison,
    /// Follows `in`, `within` or `next`: a time from now.
    pub ahead: bool,
    /// Opens its clause or follows a verb of counting (`0 errors`, `with 0 errors`): a
    /// zero here denies what follows.
    pub leads: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Hit {
    pub start: usize,
    pub end: usize,
    pub keyword: &'static Keyword,
}

/// An event's text as the rules read it.
pub(super) struct Evidence {
    pub text: Vec<u8>,
    title_end: usize,
    description_end: usize,
    pub hits: Vec<Hit>,
    pub quantities: Vec<Quantity>,
    /// A `category` label in one of the vocabulary's spellings.
    pub category_label: Option<Category>,
}

impl Evidence {
    pub(super) fn gather(title: &str, description: &str, labels: &BTreeMap<String, String>) -> Evidence {
        let description = cut(description, MAX_DESCRIPTION_BYTES);
        let mut normaliser = Normaliser {
            out: Vec::with_capacity(title.len() + description.len() + 64 * labels.len().min(8) + 8),
            quantities: Vec::new(),
        };
        normaliser.push(title);
        let title_end = normaliser.out.len();
        normaliser.push(description);
        let description_end = normaliser.out.len();
        let mut label_bytes = 0;
        let mut category_label = None;
        for (key, value) in labels {
            if key.eq_ignore_ascii_case("category") {
                category_label = Category::parse_lenient(value).ok();
            }
            if IGNORED_LABELS.iter().any(|ignored| key.eq_ignore_ascii_case(ignored)) {
                continue;
            }
            let value = cut(value, MAX_LABEL_VALUE_BYTES);
            label_bytes += value.len();
            if label_bytes > MAX_LABELS_BYTES {
                break;
            }
            normaliser.push(value);
        }
        let Normaliser { out: text, quantities } = normaliser;
        let hits = find_keywords(&text);
        Evidence {
            text,
            title_end,
            description_end,
            hits,
            quantities,
            category_label,
        }
    }

    pub(super) fn field(&self, position: usize) -> Field {
        if position < self.title_end {
            Field::Title
        } else if position < self.description_end {
            Field::Description
        } else {
            Field::Labels
        }
    }

    /// Whether `from..to` stays within one clause.
    pub(super) fn same_clause(&self, from: usize, to: usize) -> bool {
        from <= to && !self.text[from..to].contains(&CLAUSE_END)
    }

    /// Words between two positions of one clause.
    pub(super) fn words_between(&self, from: usize, to: usize) -> usize {
        self.text[from..to].iter().filter(|&&b| b == b' ').count()
    }
}

/// `text` cut to at most `limit` bytes, at a character boundary.
fn cut(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn find_keywords(text: &[u8]) -> Vec<Hit> {
    let mut hits = Vec::with_capacity(16);
    for found in AUTOMATON.find_iter(text) {
        let keyword = &KEYWORDS[found.pattern().as_usize()];
        let (start, end) = (found.start(), found.end());
        // A keyword that starts (or ends) with a sign, like `% left`, needs no boundary there.
        let pattern = keyword.text.as_bytes();
        let starts_word = start == 0 || !pattern[0].is_ascii_alphanumeric() || !text[start - 1].is_ascii_alphanumeric();
        let ends_word = end == text.len()
            || !pattern[pattern.len() - 1].is_ascii_alphanumeric()
            || !text[end].is_ascii_alphanumeric();
        if starts_word && (ends_word || keyword.bound == Bound::Stem) {
            hits.push(Hit { start, end, keyword });
        }
    }
    hits
}

struct Normaliser {
    out: Vec<u8>,
    quantities: Vec<Quantity>,
}

impl Normaliser {
    /// Appends one field (or label value) and closes its last clause.
    fn push(&mut self, raw: &str) {
        let raw = raw.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            let byte = raw[i];
            match byte {
                b'A'..=b'Z' => {
                    let previous = if i > 0 { raw[i - 1] } else { 0 };
                    let next = raw.get(i + 1).copied().unwrap_or(0);
                    if previous.is_ascii_lowercase() || (previous.is_ascii_uppercase() && next.is_ascii_lowercase()) {
                        self.space();
                    }
                    self.out.push(byte.to_ascii_lowercase());
                }
                b'0'..=b'9' if self.at_word_start() => {
                    i = self.number(raw, i);
                    continue;
                }
                b'a'..=b'z' | b'0'..=b'9' | b'%' | b'$' | b'<' | b'>' | b'&' => self.out.push(byte),
                b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\n' => self.clause_end(),
                b'\'' => {}
                0x80.. => self.out.push(byte),
                _ => self.space(),
            }
            i += 1;
        }
        self.clause_end();
    }

    fn space(&mut self) {
        if !matches!(self.out.last(), None | Some(b' ' | &CLAUSE_END)) {
            self.out.push(b' ');
        }
    }

    fn clause_end(&mut self) {
        if self.out.last() == Some(&b' ') {
            self.out.pop();
        }
        if !matches!(self.out.last(), None | Some(&CLAUSE_END)) {
            self.out.push(CLAUSE_END);
        }
    }

    fn at_word_start(&self) -> bool {
        !self.out.last().is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.')
    }

    /// Reads the number starting at `raw[start]` (`1,900`, `0.15`), writes its digits,
    /// notes it with its unit and comparison, and returns where reading goes on.
    fn number(&mut self, raw: &[u8], start: usize) -> usize {
        let (comparison, ahead, money, leads) = self.before_number();
        let out_start = self.out.len();
        let mut value = 0.0_f64;
        let mut i = start;
        while i < raw.len() {
            let byte = raw[i];
            if byte.is_ascii_digit() {
                value = value * 10.0 + f64::from(byte - b'0');
                self.out.push(byte);
                i += 1;
            } else if byte == b',' && raw.len() >= i + 4 && raw[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
                i += 1;
            } else {
                break;
            }
        }
        if raw.get(i) == Some(&b'.') && raw.get(i + 1).is_some_and(u8::is_ascii_digit) {
            self.out.push(b'.');
            i += 1;
            let mut scale = 0.1;
            while let Some(&digit) = raw.get(i).filter(|b| b.is_ascii_digit()) {
                value += f64::from(digit - b'0') * scale;
                scale /= 10.0;
                self.out.push(digit);
                i += 1;
            }
        }
        let (unit, factor) = if money {
            (Unit::Money, 1.0)
        } else {
            unit_after(&raw[i..])
        };
        let identifier = unit == Unit::Plain && raw.get(i).is_some_and(u8::is_ascii_alphabetic);
        if identifier {
            // `0a1b2c`, `5xx`: a name, not a number.
            return i;
        }
        self.quantities.push(Quantity {
            start: out_start,
            end: self.out.len(),
            value: value * factor,
            unit,
            comparison,
            ahead,
            leads,
        });
        i
    }

    /// What the words just written say about the number that follows.
    /// The comparison before a number, whether it counts time from now, whether it is an
    /// amount of money, and whether it leads its clause.
    fn before_number(&self) -> (Comparison, bool, bool, bool) {
        let text = self.out.as_slice();
        let trimmed = text.strip_suffix(b" ").unwrap_or(text);
        match trimmed.last() {
            Some(b'>') => return (Comparison::Above, false, false, false),
            Some(b'<') => return (Comparison::Below, false, false, false),
            Some(b'$') => return (Comparison::Exact, false, true, false),
            None | Some(&CLAUSE_END) => return (Comparison::Exact, false, false, true),
            _ => {}
        }
        let (last, rest) = last_word(trimmed);
        let comparison = match last {
            b"over" | b"above" | b"exceeds" | b"exceeded" | b"exceeding" | b"beyond" | b"least" => Comparison::Above,
            b"under" | b"below" | b"most" => Comparison::Below,
            b"than" => match last_word(rest.strip_suffix(b" ").unwrap_or(rest)).0 {
                b"more" | b"greater" | b"higher" | b"longer" | b"slower" => Comparison::Above,
                b"less" | b"fewer" | b"lower" | b"shorter" => Comparison::Below,
                _ => Comparison::Exact,
            },
            _ => Comparison::Exact,
        };
        let ahead = matches!(last, b"in" | b"within" | b"next") || (last == b"than" && rest.ends_with(b"in less "));
        let leads = matches!(
            last,
            b"with" | b"has" | b"had" | b"have" | b"saw" | b"found" | b"reported" | b"detected" | b"and" | b"are"
        );
        (comparison, ahead, false, leads)
    }
}

/// The last word of `text` and what comes before it.
fn last_word(text: &[u8]) -> (&[u8], &[u8]) {
    let start = text.iter().rposition(|b| !b.is_ascii_alphabetic()).map_or(0, |p| p + 1);
    (&text[start..], &text[..start])
}

/// The unit written right after a number (`%`, `ms`, ` hours`, `x`), and the factor that
/// brings durations to seconds.
fn unit_after(raw: &[u8]) -> (Unit, f64) {
    let raw = raw.strip_prefix(b" ").unwrap_or(raw);
    if raw.first() == Some(&b'%') {
        return (Unit::Percent, 1.0);
    }
    let length = raw.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let word = &raw[..length];
    let is = |spellings: &[&str]| spellings.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(word));
    if is(&["ms", "msec", "msecs", "millisecond", "milliseconds"]) {
        (Unit::Seconds, 0.001)
    } else if is(&["s", "sec", "secs", "second", "seconds"]) {
        (Unit::Seconds, 1.0)
    } else if is(&["m", "min", "mins", "minute", "minutes"]) {
        (Unit::Seconds, 60.0)
    } else if is(&["h", "hr", "hrs", "hour", "hours"]) {
        (Unit::Seconds, 3600.0)
    } else if is(&["d", "day", "days"]) {
        (Unit::Seconds, 86_400.0)
    } else if is(&["w", "wk", "week", "weeks"]) {
        (Unit::Seconds, 604_800.0)
    } else if is(&["x"]) {
        (Unit::Multiplier, 1.0)
    } else if is(&["k"]) {
        (Unit::Plain, 1000.0)
    } else if is(&["st", "nd", "rd", "th"]) {
        (Unit::Ordinal, 1.0)
    } else {
        (Unit::Plain, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(title: &str) -> (String, Vec<Quantity>) {
        let evidence = Evidence::gather(title, "", &BTreeMap::new());
        (String::from_utf8(evidence.text).unwrap(), evidence.quantities)
    }

    #[test]
    fn words_are_split_and_lower_cased_and_clauses_marked() {
        assert_eq!(normalised("KubePodCrashLooping").0, "kube pod crash looping|");
        assert_eq!(normalised("HTTPCode_ELB_5XX_Count").0, "http code elb 5xx count|");
        assert_eq!(
            normalised("OOMKilled: doesn't restart, ok").0,
            "oom killed|doesnt restart|ok|"
        );
        assert_eq!(normalised("Ünïcode stays").0, "Ünïcode stays|");
    }

    #[test]
    fn numbers_keep_their_units_and_comparisons() {
        let (text, quantities) = normalised("p99 is 1,900 ms; disk > 97.5% full; expires in 3 days; $412 at 6x");
        assert_eq!(text, "p99 is 1900 ms|disk > 97.5% full|expires in 3 days|$412 at 6x|");
        let summary: Vec<_> = quantities
            .iter()
            .map(|q| ((q.value * 1000.0).round() / 1000.0, q.unit, q.comparison, q.ahead))
            .collect();
        assert_eq!(
            summary,
            [
                (1.9, Unit::Seconds, Comparison::Exact, false),
                (97.5, Unit::Percent, Comparison::Above, false),
                (259_200.0, Unit::Seconds, Comparison::Exact, true),
                (412.0, Unit::Money, Comparison::Exact, false),
                (6.0, Unit::Multiplier, Comparison::Exact, false),
            ]
        );
        assert_eq!(&text[quantities[1].start..quantities[1].end], "97.5");
    }

    #[test]
    fn identifiers_are_not_numbers_and_a_leading_zero_can_deny() {
        let (text, quantities) = normalised("i-0a1b2c 5XXError: 0 errors, gpu 0 limit");
        assert_eq!(text, "i 0a1b2c 5xx error|0 errors|gpu 0 limit|");
        let zeros: Vec<_> = quantities.iter().map(|q| (q.value, q.leads)).collect();
        assert_eq!(zeros, [(0.0, true), (0.0, false)]);
    }

    #[test]
    fn long_descriptions_are_cut_at_a_character_boundary() {
        let description = "é".repeat(MAX_DESCRIPTION_BYTES);
        let evidence = Evidence::gather("t", &description, &BTreeMap::new());
        assert!(evidence.text.len() <= MAX_DESCRIPTION_BYTES + 4);
        assert!(std::str::from_utf8(&evidence.text).is_ok());
    }
}
