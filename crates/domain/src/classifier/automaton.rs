//! The keyword automaton as a compact table, searched by a loop of its own.
//!
//! `aho-corasick` builds the DFA (leftmost-longest, unanchored) and this module copies its
//! states into a smaller table, searched by the crate's own algorithm (`try_find_fwd` for
//! a leftmost, unanchored search without prefilter: walk until the dead state, remembering
//! the last match state passed) in a loop that is monomorphic and inlined rather than
//! behind a `dyn` call. The states and their matches are the crate's, so are the matches
//! found; a test checks every transition of every state against the crate's DFA.
//!
//! Each byte's state waits on the load of the previous one: a search runs at the latency
//! of one load per byte, from the L1 or L2 cache. So the table is small, 35 columns of
//! `u16` states (one per byte that occurs in a keyword plus one shared by every other
//! byte) rather than the crate's 64 columns of `u32`: 0.3 MB rather than 1.1 MB. And it is
//! stored a column after another, so that the address of a column depends on the byte
//! alone and only the load of the cell waits on the previous state. Searching the
//! keywords of a labelled alert took about 375 ns through `AhoCorasick::find_iter` and
//! takes about 150 ns here (a benchmark of the search alone).

use std::collections::{HashMap, HashSet};

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

/// The state a search stops in: entered after a match when no longer match can follow.
const DEAD: u16 = 0;

/// A match: the pattern's id (its index in the patterns given), its start and its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub pattern: usize,
    pub start: usize,
    pub end: usize,
}

/// A leftmost-longest DFA over a set of patterns, as a dense table: the state after
/// `state` reads `byte` is `transitions[columns[byte] + state]`.
pub(super) struct KeywordAutomaton {
    /// Where the column of each byte starts in `transitions`. Every byte that occurs in no
    /// pattern moves every state the same way (to where its failure transitions lead), so
    /// those bytes share the first column.
    columns: [u32; 256],
    transitions: Vec<u16>,
    start: u16,
    /// States below this one are special: the dead state (0), then the match states.
    first_plain: u16,
    /// Of each match state: its pattern and the pattern's length (the dead state's entry
    /// is unused).
    matches: Vec<(u32, u32)>,
}

impl KeywordAutomaton {
    /// Builds the automaton over `patterns`, none of them empty.
    pub(super) fn new(patterns: &[&str]) -> KeywordAutomaton {
        KeywordAutomaton::compile(&crate_dfa(patterns), patterns).0
    }

    /// Copies the states of `dfa` reachable from its start into a table whose columns are
    /// the bytes of `patterns`. Also returns the crate's state that each state copies.
    fn compile(dfa: &DFA, patterns: &[&str]) -> (KeywordAutomaton, Vec<Option<StateID>>) {
        assert!(patterns.iter().all(|pattern| !pattern.is_empty()), "an empty keyword");
        // Each byte's column; one byte that stands for it (the first column for those of
        // no pattern).
        let mut classes = [0_u8; 256];
        let mut representatives = vec![0_u8];
        for &byte in patterns.iter().flat_map(|pattern| pattern.as_bytes()) {
            if classes[usize::from(byte)] == 0 {
                classes[usize::from(byte)] = u8::try_from(representatives.len()).expect("at most 255 distinct bytes");
                representatives.push(byte);
            }
        }
        representatives[0] = (0..=u8::MAX)
            .find(|&byte| classes[usize::from(byte)] == 0)
            .expect("a byte of no pattern");

        // The states reachable from the start, first reached first; then numbered: the
        // dead state, the match states, the others, so that one comparison tells a plain
        // state.
        let start = dfa.start_state(Anchored::No).expect("an unanchored DFA");
        let mut reached = vec![start];
        let mut seen = HashSet::from([start]);
        let mut next = 0;
        while let Some(&state) = reached.get(next) {
            next += 1;
            for &byte in &representatives {
                let target = dfa.next_state(Anchored::No, state, byte);
                if seen.insert(target) {
                    reached.push(target);
                }
            }
        }
        let mut states = vec![reached.iter().copied().find(|&state| dfa.is_dead(state))];
        states.extend(reached.iter().copied().filter(|&state| dfa.is_match(state)).map(Some));
        let first_plain = states.len();
        states.extend(
            reached
                .iter()
                .copied()
                .filter(|&state| !dfa.is_dead(state) && !dfa.is_match(state))
                .map(Some),
        );
        let id_of: HashMap<StateID, usize> = states
            .iter()
            .enumerate()
            .filter_map(|(id, &state)| Some((state?, id)))
            .collect();
        let narrow = |id: usize| u16::try_from(id).expect("fewer than 2^16 states");

        let mut transitions = vec![DEAD; states.len() * representatives.len()];
        let mut matches = vec![(0, 0); first_plain];
        for (id, state) in states.iter().enumerate().skip(1) {
            let state = state.expect("only the dead state may be unreached");
            for (class, &byte) in representatives.iter().enumerate() {
                transitions[class * states.len() + id] = narrow(id_of[&dfa.next_state(Anchored::No, state, byte)]);
            }
            if dfa.is_match(state) {
                // As the crate reports it: the first pattern of the state.
                let pattern = dfa.match_pattern(state, 0);
                let length = u32::try_from(dfa.pattern_len(pattern)).expect("a short pattern");
                matches[id] = (pattern.as_u32(), length);
            }
        }
        let columns = classes.map(|class| u32::try_from(usize::from(class) * states.len()).expect("a small table"));
        let automaton = KeywordAutomaton {
            columns,
            transitions,
            start: narrow(id_of[&start]),
            first_plain: narrow(first_plain),
            matches,
        };
        (automaton, states)
    }

    /// Every match, leftmost-longest and not overlapping: what `AhoCorasick::find_iter`
    /// finds with the same patterns and match kind.
    pub(super) fn find_iter<'t>(&'t self, text: &'t [u8]) -> impl Iterator<Item = Found> + 't {
        let mut from = 0;
        std::iter::from_fn(move || {
            let found = self.find(text, from)?;
            from = found.end;
            Some(found)
        })
    }

    /// The leftmost-longest match that starts at or after `from`.
    #[inline]
    fn find(&self, text: &[u8], from: usize) -> Option<Found> {
        // States are `usize` here, not the table's `u16`: no conversion between the load
        // of one and the address of the next (it cost a cycle a byte).
        let (first_plain, dead) = (usize::from(self.first_plain), usize::from(DEAD));
        let mut state = usize::from(self.start);
        let mut last_match = None;
        for (at, &byte) in text[from..].iter().enumerate() {
            let column = &self.transitions[self.columns[usize::from(byte)] as usize..];
            state = usize::from(column[state]);
            if state < first_plain {
                if state == dead {
                    break;
                }
                last_match = Some((state, from + at + 1));
            }
        }
        last_match.map(|(state, end)| {
            let (pattern, length) = self.matches[state];
            Found {
                pattern: pattern as usize,
                start: end - length as usize,
                end,
            }
        })
    }
}

/// The DFA the table copies: the one `AhoCorasick` builds with this match kind.
fn crate_dfa(patterns: &[&str]) -> DFA {
    DFA::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .start_kind(StartKind::Unanchored)
        .build(patterns)
        .expect("the keyword table compiles")
}

#[cfg(test)]
mod tests {
    use aho_corasick::{AhoCorasick, AhoCorasickKind};

    use super::*;
    use crate::classifier::keywords::KEYWORDS;

    fn keywords() -> Vec<&'static str> {
        KEYWORDS.iter().map(|keyword| keyword.text).collect()
    }

    #[test]
    fn every_transition_is_the_crate_dfa_s() {
        let patterns = keywords();
        let dfa = crate_dfa(&patterns);
        let (automaton, states) = KeywordAutomaton::compile(&dfa, &patterns);
        let id_of = |state: StateID| {
            states
                .iter()
                .position(|&copied| copied == Some(state))
                .expect("a copied state")
        };
        for (id, state) in states.iter().enumerate() {
            let Some(state) = *state else { continue };
            assert_eq!(dfa.is_dead(state), id == 0);
            assert_eq!(dfa.is_match(state), id > 0 && id < usize::from(automaton.first_plain));
            if dfa.is_match(state) {
                let pattern = dfa.match_pattern(state, 0);
                assert_eq!(automaton.matches[id].0, pattern.as_u32());
                assert_eq!(automaton.matches[id].1 as usize, patterns[pattern.as_usize()].len());
            }
            for byte in 0..=u8::MAX {
                let cell = automaton.transitions[automaton.columns[usize::from(byte)] as usize + id];
                let expected = if dfa.is_dead(state) {
                    0
                } else {
                    id_of(dfa.next_state(Anchored::No, state, byte))
                };
                assert_eq!(usize::from(cell), expected, "state {id}, byte {byte}");
            }
        }
        assert_eq!(
            usize::from(automaton.start),
            id_of(dfa.start_state(Anchored::No).unwrap())
        );
    }

    #[test]
    fn finds_what_aho_corasick_finds() {
        let patterns = keywords();
        let automaton = KeywordAutomaton::new(&patterns);
        let reference = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .unwrap();
        let mut texts: Vec<Vec<u8>> = [" ", "", "|", "x", "s ", "é"]
            .iter()
            .map(|separator| patterns.join(separator).into_bytes())
            .collect();
        // Keyword pieces glued at random: overlaps, prefixes and near misses.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for _ in 0..2000 {
            let mut text = Vec::new();
            for _ in 0..random(12) {
                let pattern = patterns[random(patterns.len())].as_bytes();
                let from = random(pattern.len());
                text.extend_from_slice(&pattern[from..from + 1 + random(pattern.len() - from)]);
                text.extend_from_slice([&b" "[..], b"", b"|", b"9", b"\xc3\xa9"][random(5)]);
            }
            texts.push(text);
        }
        for text in &texts {
            let expected: Vec<_> = reference
                .find_iter(text)
                .map(|found| Found {
                    pattern: found.pattern().as_usize(),
                    start: found.start(),
                    end: found.end(),
                })
                .collect();
            assert_eq!(automaton.find_iter(text).collect::<Vec<_>>(), expected);
        }
    }
}
