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
/// Keyword hits and numbers read of one event, at most. The rules compare them pairwise
/// (the subject nearest a signal, the number next to it), so their cost grows with the
/// square of their count: a text made of one repeated word (`down down down …`, title
/// and description at their limits) cost about 400 µs unbounded, 45 µs with these. Real
/// alerts have a few dozen of each; past these, an event only repeats itself.
const MAX_HITS: usize = 256;
const MAX_QUANTITIES: usize = 64;

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
    /// Which clause of the text it is in; see [`Hit::clause`].
    pub clause: usize,
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
    /// Which clause of the text it is in: how many clause ends come before it. Neither a
    /// keyword nor a number spans a clause end, so two of them (in either order, even
    /// overlapping, as `500 error` and `500`) are in one clause when their clauses are
    /// equal: the rules compare these rather than search the text between them.
    pub clause: usize,
    pub keyword: &'static Keyword,
}

/// An event's text as the rules read it. Its buffers are reused from one event to the next.
#[derive(Default)]
pub(super) struct Evidence {
    pub text: Vec<u8>,
    title_end: usize,
    description_end: usize,
    pub hits: Vec<Hit>,
    pub quantities: Vec<Quantity>,
    /// Where the clause ends are in `text`, in order.
    clause_ends: Vec<usize>,
    /// A `category` label in one of the vocabulary's spellings.
    pub category_label: Option<Category>,
}

impl Evidence {
    /// Bytes of normalised text kept allocated between events; a larger buffer (only a
    /// huge title makes one: the description and labels are cut) is let go after its event.
    const KEPT_BYTES: usize = 16 * 1024;

    /// Reads an event into this evidence, replacing what it held.
    pub(super) fn gather(&mut self, title: &str, description: &str, labels: &BTreeMap<String, String>) {
        let description = cut(description, MAX_DESCRIPTION_BYTES);
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        text.reserve(title.len() + description.len() + 64 * labels.len().min(8) + 8);
        let mut quantities = std::mem::take(&mut self.quantities);
        quantities.clear();
        let mut clause_ends = std::mem::take(&mut self.clause_ends);
        clause_ends.clear();
        let mut normaliser = Normaliser {
            out: text,
            quantities,
            clause_ends,
        };
        // Each field ends with a clause end, which no keyword contains: its keywords are
        // the same whatever comes before it. So each is searched as soon as it is written
        // (the search overlaps the writing of the next), and a label that repeats the
        // title is not searched at all.
        self.hits.clear();
        normaliser.push(title);
        let title_end = normaliser.out.len();
        find_keywords(&normaliser.out, 0, &normaliser.clause_ends, &mut self.hits);
        let title_hits = self.hits.len();
        normaliser.push(description);
        let description_end = normaliser.out.len();
        find_keywords(&normaliser.out, title_end, &normaliser.clause_ends, &mut self.hits);
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
            let from = normaliser.out.len();
            normaliser.push(value);
            let text = &normaliser.out;
            if text[from..] == text[..title_end] {
                // A label that reads as the title (an alert's name often does) has the
                // title's keywords, in its own place and clauses.
                let clauses_before = normaliser.clause_ends.partition_point(|&end| end < from);
                let first = self.hits.len();
                self.hits.extend_from_within(..title_hits);
                for hit in &mut self.hits[first..] {
                    hit.start += from;
                    hit.end += from;
                    hit.clause += clauses_before;
                }
            } else {
                find_keywords(text, from, &normaliser.clause_ends, &mut self.hits);
            }
        }
        let Normaliser {
            out: text,
            quantities,
            clause_ends,
        } = normaliser;
        self.clause_ends = clause_ends;
        self.text = text;
        self.quantities = quantities;
        self.title_end = title_end;
        self.description_end = description_end;
        self.category_label = category_label;
    }

    /// Lets go of buffers an outsized event grew, so a thread keeps little between events.
    pub(super) fn release_excess(&mut self) {
        if self.text.capacity() > Evidence::KEPT_BYTES {
            *self = Evidence::default();
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

/// Finds the keywords of the field that starts at `from` and ends `text` (whose clause
/// ends are at `clause_ends`), after those of the fields before it in `hits`.
fn find_keywords(text: &[u8], from: usize, clause_ends: &[usize], hits: &mut Vec<Hit>) {
    let mut clause = clause_ends.partition_point(|&end| end < from);
    for found in AUTOMATON.find_iter(&text[from..]) {
        let keyword = &KEYWORDS[found.pattern];
        let (start, end) = (from + found.start, from + found.end);
        // A keyword that starts (or ends) with a sign, like `% left`, needs no boundary there.
        let pattern = keyword.text.as_bytes();
        let starts_word = start == 0 || !pattern[0].is_ascii_alphanumeric() || !text[start - 1].is_ascii_alphanumeric();
        let ends_word = end == text.len()
            || !pattern[pattern.len() - 1].is_ascii_alphanumeric()
            || !text[end].is_ascii_alphanumeric();
        if hits.len() >= MAX_HITS {
            return;
        }
        if starts_word && (ends_word || keyword.bound == Bound::Stem) {
            while clause_ends.get(clause).is_some_and(|&clause_end| clause_end < start) {
                clause += 1;
            }
            hits.push(Hit {
                start,
                end,
                clause,
                keyword,
            });
        }
    }
}

struct Normaliser {
    out: Vec<u8>,
    quantities: Vec<Quantity>,
    /// Where the clause ends were written (none is ever taken back).
    clause_ends: Vec<usize>,
}

impl Normaliser {
    /// Appends one field (or label value) and closes its last clause.
    fn push(&mut self, raw: &str) {
        let raw = raw.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            // Up to eight bytes at a time while they are written as they are.
            if let Some(lanes) = lanes_at(raw, i) {
                let unchanged = unchanged_prefix(lanes, self.after_word());
                if unchanged > 0 {
                    let len = self.out.len();
                    self.out.extend_from_slice(&lanes.to_le_bytes());
                    self.out.truncate(len + unchanged);
                    i += unchanged;
                    continue;
                }
            }
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

    /// Whether a space would be written now: the last byte written ends a word.
    fn after_word(&self) -> bool {
        !matches!(self.out.last(), None | Some(b' ' | &CLAUSE_END))
    }

    fn space(&mut self) {
        if self.after_word() {
            self.out.push(b' ');
        }
    }

    fn clause_end(&mut self) {
        if self.out.last() == Some(&b' ') {
            self.out.pop();
        }
        if !matches!(self.out.last(), None | Some(&CLAUSE_END)) {
            self.clause_ends.push(self.out.len());
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
        if self.quantities.len() >= MAX_QUANTITIES {
            return i;
        }
        self.quantities.push(Quantity {
            start: out_start,
            end: self.out.len(),
            clause: self.clause_ends.len(),
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

/// The 8 bytes of `raw` from `at` as the lanes of an integer (the first in the lowest),
/// zeros past the end of `raw`; `None` when `raw` is shorter than 8 bytes.
fn lanes_at(raw: &[u8], at: usize) -> Option<u64> {
    let last = raw.len().checked_sub(8)?;
    let lanes = |from: usize| u64::from_le_bytes(raw[from..from + 8].try_into().expect("8 bytes"));
    Some(if at <= last {
        lanes(at)
    } else {
        lanes(last) >> (8 * (at - last))
    })
}

/// How many of the first bytes of `lanes` (up to all 8) [`Normaliser::push`] writes as
/// they are: lower-case ASCII letters, and spaces that follow a word. `after_word` says
/// whether a space would be written before the first byte. A text is mostly such bytes,
/// and a `match` on each mispredicted at nearly every word's end: here the 8 are tested
/// together, each in a lane of one integer (SWAR).
fn unchanged_prefix(lanes: u64, after_word: bool) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    // The high bit of a lane flags a property of its byte. Sums of the low 7 bits and a
    // byte below 0x80 never carry into the next lane.
    let low = lanes & !HIGH;
    let ascii = !lanes & HIGH;
    let from_a = low + ONES * u64::from(0x80 - b'a');
    let past_z = low + ONES * u64::from(0x80 - b'z' - 1);
    let lower = ascii & from_a & !past_z;
    let not_space = lanes ^ (ONES * u64::from(b' '));
    let space = !(((not_space & !HIGH) + !HIGH) | not_space) & HIGH;
    // Where the run stops: a byte of neither kind, or a space with no word before it (after
    // a space, or first after no word), which is not written.
    let no_word_before = (space << 8) | (u64::from(!after_word) * 0x80);
    let stops = (HIGH & !(lower | space)) | (space & no_word_before);
    (stops.trailing_zeros() / 8) as usize
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

    fn gathered(title: &str, description: &str) -> Evidence {
        let mut evidence = Evidence::default();
        evidence.gather(title, description, &BTreeMap::new());
        evidence
    }

    fn normalised(title: &str) -> (String, Vec<Quantity>) {
        let evidence = gathered(title, "");
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
    fn eight_bytes_are_read_as_one_by_one() {
        // What `unchanged_prefix` computes, a byte at a time.
        let expected = |chunk: [u8; 8], after_word: bool| {
            let mut previous_is_word = after_word;
            chunk
                .iter()
                .take_while(|&&byte| {
                    let unchanged = byte.is_ascii_lowercase() || (byte == b' ' && previous_is_word);
                    previous_is_word = byte != b' ';
                    unchanged
                })
                .count()
        };
        // Each range's edges, and the same bytes with the high bit set.
        let bytes = [
            b'a', b'z', b'm', b' ', b'`', b'{', b'A', b'Z', b'0', b'|', 0, 0x7f, 0x80, 0xa0, 0xe1, 0xfa, 0xff,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let chunk: [u8; 8] = std::array::from_fn(|lane| bytes[(seed >> (lane * 5)) as usize % bytes.len()]);
            for after_word in [false, true] {
                assert_eq!(
                    unchanged_prefix(u64::from_le_bytes(chunk), after_word),
                    expected(chunk, after_word),
                    "{chunk:?} {after_word}"
                );
            }
        }
        // Text of every length, so that each is read with a tail of zeros.
        for length in 0..20 {
            let text = "ab cd  ef ".repeat(2)[..length].to_string();
            let written = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let written = if written.is_empty() { written } else { written + "|" };
            assert_eq!(normalised(&text).0, written, "{text:?}");
        }
    }

    #[test]
    fn fields_are_searched_as_one_text() {
        let labels: BTreeMap<String, String> = [
            ("alertname", "KubePodCrashLooping"),
            ("job", "node-exporter"),
            ("summary", "Pod crash looping: 5 restarts, error rate 12%"),
            ("team", "Pod crash looping"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        for (title, description) in [
            (
                "Pod crash looping",
                "Pod is restarting. No errors in the log; disk 97% full",
            ),
            ("", "the API is down"),
            ("Kube pod crash looping", ""),
            ("Latency high. Error rate 12%", "p99 over 2s for 10 minutes, not down"),
        ] {
            let mut evidence = Evidence::default();
            evidence.gather(title, description, &labels);
            let mut searched_once = Vec::new();
            find_keywords(&evidence.text, 0, &evidence.clause_ends, &mut searched_once);
            let summary = |hits: &[Hit]| -> Vec<_> {
                hits.iter()
                    .map(|hit| (hit.start, hit.end, hit.clause, hit.keyword.text))
                    .collect()
            };
            assert_eq!(
                summary(&evidence.hits),
                summary(&searched_once),
                "{title} | {description}"
            );
        }
    }

    #[test]
    fn a_text_of_one_repeated_signal_keeps_a_bounded_number_of_hits_and_numbers() {
        let evidence = gathered(&"down ".repeat(100), &"error 5% down 3 ".repeat(250));
        assert_eq!(evidence.hits.len(), MAX_HITS);
        assert_eq!(evidence.quantities.len(), MAX_QUANTITIES);
    }

    #[test]
    fn long_descriptions_are_cut_at_a_character_boundary() {
        let description = "é".repeat(MAX_DESCRIPTION_BYTES);
        let evidence = gathered("t", &description);
        assert!(evidence.text.len() <= MAX_DESCRIPTION_BYTES + 4);
        assert!(std::str::from_utf8(&evidence.text).is_ok());
    }
}
