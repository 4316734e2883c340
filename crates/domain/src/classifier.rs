//! The offline classifier: the default provider of triage, with no key and no network.
//!
//! A pure function over an event's title, description and labels that names a severity,
//! a category, how sure it is and why, in microseconds, so ingest can run it inline for
//! events that name neither. The rules are word families rather than alert names: signals
//! of outage, errors, timeouts, latency, saturation, data integrity, security, drift, cost
//! and compliance; notices of resolution, completion and tests; negations (`no errors`,
//! `0 errors`), hedges (`may`), scope (`all`, `one node`), the subject a signal is about
//! (a host or a service) and the numbers beside signal words (`disk 97% full`, `error
//! rate 45%`, `p99 12s`, `expires in 3 days`). LLM.md (`The offline classifier`) explains
//! the rules and how they were measured.

mod automaton;
mod keywords;
mod scan;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;

use keywords::{FAMILIES, Family, Kind, Measure, Notice, Subject};
use scan::{Comparison, Evidence, Field, Hit, Quantity, Unit};

use crate::vocabulary::{Category, Severity};

/// What the rules decided, and how sure they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub severity: Severity,
    pub category: Category,
    /// From 0 (a guess) to 1.
    pub confidence: f32,
    /// One short sentence naming the signals found; it quotes keywords of the rules, never
    /// more than a few words of the event.
    pub reasoning: String,
}

/// The classifier's name and version as a provider/model would be named, for the incident's record.
pub const MODEL: &str = "rules-v1";

/// The severity of an alert with no known signal: the ingest default (P2, DESIGN §2), the
/// most common severity of real alerts, within one level of both P1 and P3. Its category
/// is `other`.
pub const UNKNOWN_SEVERITY: Severity = Severity::P2;
/// How sure the classifier is of an alert with no known signal.
pub const UNKNOWN_CONFIDENCE: f32 = 0.3;

const MAX_REASONING_CHARS: usize = 200;
/// Room for the reasoning of nearly every event (the longest of the labelled alerts is
/// 105 bytes), so that writing it allocates once.
const REASONING_CAPACITY: usize = 128;

/// Classifies an event. A `severity` label is not read (the caller maps it); a `category`
/// label in one of the vocabulary's spellings is taken as given.
pub fn classify(title: &str, description: &str, labels: &BTreeMap<String, String>) -> Verdict {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => scratch.classify(title, description, labels),
        // Only when a classification is already running on this thread (it never calls
        // itself, so this is defensive): fresh buffers, same verdict.
        Err(_) => Scratch::default().classify(title, description, labels),
    })
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The buffers of one classification, kept by each thread from one event to the next:
/// ingest classifies inline, and allocating the normalised text, its keyword hits, its
/// numbers and its signals anew for every event cost about a tenth of the classification.
#[derive(Default)]
struct Scratch {
    evidence: Evidence,
    signals: Vec<Signal>,
}

impl Scratch {
    /// Signals kept allocated between events; a larger buffer (only a huge title makes
    /// one: the description and labels are cut) is let go after its event.
    const KEPT_SIGNALS: usize = 1024;

    fn classify(&mut self, title: &str, description: &str, labels: &BTreeMap<String, String>) -> Verdict {
        self.evidence.gather(title, description, labels);
        let reading = Reading::of(&self.evidence, std::mem::take(&mut self.signals));
        let mut verdict = reading.verdict();
        self.signals = reading.signals;
        if let Some(category) = self.evidence.category_label {
            verdict.category = category;
            verdict.confidence = (verdict.confidence + 0.1).min(0.95);
        }
        self.evidence.release_excess();
        if self.signals.capacity() > Scratch::KEPT_SIGNALS {
            self.signals = Vec::new();
        }
        verdict
    }
}

/// A signal word as the rules read it in its context.
#[derive(Debug, Clone, Copy)]
struct Signal {
    hit: Hit,
    family: Family,
    severity: Severity,
    field: Field,
    negated: bool,
    subject: Option<Subject>,
    /// A number beside it that set the severity.
    quantity: Option<Quantity>,
    scope: Scope,
    hedged: bool,
}

/// What the words just around a signal word, in its clause, say of it.
#[derive(Debug, Default, Clone, Copy)]
struct Around {
    /// `all`, `entire` before it.
    whole: bool,
    /// `some`, `one of`, either side.
    partial: bool,
    /// `may`, `predicted` before it.
    hedge: bool,
    /// `no`, `not` a few words before it.
    negator: bool,
}

impl Around {
    /// How far (in bytes) a word of scope reaches, either side.
    const SCOPE_REACH: usize = 40;
    /// How far before a signal a hedge reaches.
    const HEDGE_REACH: usize = 60;
    /// How far before a signal a negation is looked for.
    const NEGATION_REACH: usize = 48;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Unsaid,
    Whole,
    Partial,
}

#[derive(Debug, Clone, Copy)]
struct NoticeHit {
    hit: Hit,
    notice: Notice,
    field: Field,
}

/// The notices a verdict reads, not negated: the first of each kind, in the order of the
/// text. Only these are kept (and only for these is a negation looked for).
#[derive(Default)]
struct Notices {
    test: Option<NoticeHit>,
    resolved: Option<NoticeHit>,
    /// That something finished, is within limits or is a report.
    calm: Option<NoticeHit>,
    /// The same, in the title.
    calm_in_title: Option<NoticeHit>,
}

impl Notices {
    /// Whether a notice of this kind in this field would be the first of its kind.
    fn wants(&self, notice: Notice, field: Field) -> bool {
        match notice {
            Notice::Test => self.test.is_none(),
            Notice::Resolved => self.resolved.is_none(),
            Notice::Completed | Notice::Ok | Notice::Report => {
                self.calm.is_none() || (field == Field::Title && self.calm_in_title.is_none())
            }
        }
    }

    fn record(&mut self, found: NoticeHit) {
        let slots = match found.notice {
            Notice::Test => [Some(&mut self.test), None],
            Notice::Resolved => [Some(&mut self.resolved), None],
            Notice::Completed | Notice::Ok | Notice::Report => [
                Some(&mut self.calm),
                (found.field == Field::Title).then_some(&mut self.calm_in_title),
            ],
        };
        for slot in slots.into_iter().flatten() {
            slot.get_or_insert(found);
        }
    }
}

/// Everything found in one event, read.
struct Reading<'a> {
    evidence: &'a Evidence,
    signals: Vec<Signal>,
    notices: Notices,
    /// The first severity word of the title that is not negated.
    hint: Option<(Hit, Severity)>,
}

impl<'a> Reading<'a> {
    /// Reads the evidence into `signals` (a buffer to reuse: emptied first).
    fn of(evidence: &'a Evidence, mut signals: Vec<Signal>) -> Reading<'a> {
        signals.clear();
        let mut reading = Reading {
            evidence,
            signals,
            notices: Notices::default(),
            hint: None,
        };
        for (index, hit) in evidence.hits.iter().enumerate() {
            let field = evidence.field(hit.start);
            match hit.keyword.kind {
                Kind::Signal(family, severity, measure) => {
                    let signal = reading.read_signal(index, family, severity, measure, field);
                    reading.signals.push(signal);
                }
                Kind::Notice(notice) if reading.notices.wants(notice, field) && !reading.negated(index) => {
                    reading.notices.record(NoticeHit {
                        hit: *hit,
                        notice,
                        field,
                    });
                }
                Kind::Hint(severity) if field == Field::Title && reading.hint.is_none() && !reading.negated(index) => {
                    reading.hint = Some((*hit, severity));
                }
                _ => {}
            }
        }
        reading
    }

    fn hits(&self) -> &[Hit] {
        &self.evidence.hits
    }

    fn read_signal(&self, index: usize, family: Family, base: Severity, measure: Measure, field: Field) -> Signal {
        let hit = self.hits()[index];
        let subject = self.subject_of(index);
        let around = self.around(index);
        let scope = if around.whole {
            Scope::Whole
        } else if around.partial {
            Scope::Partial
        } else {
            Scope::Unsaid
        };
        let hedged = around.hedge;
        let measured = self.quantity_for(&hit, measure).and_then(|quantity| {
            measured_severity(measure, &quantity, self.is_free_near(&quantity), base)
                .map(|severity| (quantity, severity))
        });
        let quantity = measured.map(|(quantity, _)| quantity);
        let mut severity = measured.map_or(base, |(_, severity)| severity);
        match family {
            Family::Outage => {
                if scope == Scope::Whole {
                    severity = Severity::P0;
                } else if scope == Scope::Partial {
                    severity = lighter(severity);
                } else if severity == Severity::P0
                    && (field != Field::Title
                        || matches!(subject, Some(Subject::Part | Subject::Infra | Subject::Node)))
                {
                    severity = Severity::P1;
                }
            }
            Family::Security => {
                if hit.keyword.text == "leak" && self.any_near(index, 40, |kind| kind == Kind::Subject(Subject::Secret))
                {
                    severity = Severity::P0;
                }
                if severity == Severity::P0 && self.any_near(index, 40, |kind| kind == Kind::Attempt) {
                    severity = Severity::P1;
                }
                if severity < Severity::P2 && self.any_in_text(|kind| kind == Kind::Mitigated) {
                    severity = lighter(severity);
                }
            }
            Family::Cost
                if self.any_near(index, 40, |kind| kind == Kind::Exceeded)
                    && !self.any_near(index, 80, |kind| kind == Kind::Hedge) =>
            {
                severity = severity.min(Severity::P1);
            }
            _ => {}
        }
        if hedged && quantity.is_none() && severity < Severity::P2 {
            severity = lighter(severity);
        }
        Signal {
            hit,
            family,
            severity,
            field,
            negated: around.negator || self.zero_before(index),
            subject,
            quantity,
            scope,
            hedged,
        }
    }

    /// A negation a few words before, in the same clause (`no errors`, `not down`,
    /// `0 errors`, `within budget`).
    fn negated(&self, index: usize) -> bool {
        self.around(index).negator || self.zero_before(index)
    }

    /// What the keywords around the hit at `index`, in its clause, say of it: one pass
    /// over the hits before it (and one after it, for a narrowing word), rather than one
    /// for each kind of word looked for.
    fn around(&self, index: usize) -> Around {
        let hit = &self.hits()[index];
        let mut around = Around::default();
        // The hedge reaches farthest. Hits come in the order of the text, so their clauses
        // never decrease: the first of another clause ends the scan.
        for other in self.before(index, Around::HEDGE_REACH) {
            if other.clause != hit.clause {
                break;
            }
            let distance = hit.start - other.end;
            match other.keyword.kind {
                Kind::Whole => around.whole |= distance <= Around::SCOPE_REACH,
                Kind::Partial => around.partial |= distance <= Around::SCOPE_REACH,
                Kind::Hedge => around.hedge = true,
                // Three words of any length: the byte bound only keeps the scan short.
                Kind::Negator => {
                    around.negator |=
                        distance <= Around::NEGATION_REACH && self.evidence.words_between(other.end, hit.start) <= 3;
                }
                _ => {}
            }
        }
        if !around.partial {
            around.partial = self
                .after(index, Around::SCOPE_REACH)
                .take_while(|other| other.clause == hit.clause)
                .any(|other| other.keyword.kind == Kind::Partial);
        }
        around
    }

    /// A zero a word or two before, in the same clause, that opens it or follows a verb of
    /// counting (`0 errors`, `with 0 errors`).
    fn zero_before(&self, index: usize) -> bool {
        let hit = &self.hits()[index];
        let evidence = self.evidence;
        evidence.quantities.iter().any(|quantity| {
            quantity.value == 0.0
                && quantity.unit == Unit::Plain
                && quantity.leads
                && quantity.end <= hit.start
                && hit.start - quantity.end <= Around::NEGATION_REACH
                && quantity.clause == hit.clause
                && evidence.words_between(quantity.end, hit.start) <= 2
        })
    }

    /// The hits before the hit at `index` that end at most `reach` bytes before it starts,
    /// nearest first. Hits do not overlap and come in the order of the text, so the scan
    /// stops at the first one too far: no scan of every hit for every hit.
    fn before(&self, index: usize, reach: usize) -> impl Iterator<Item = &Hit> {
        let start = self.hits()[index].start;
        self.hits()[..index]
            .iter()
            .rev()
            .take_while(move |other| start - other.end <= reach)
    }

    /// The hits after the hit at `index` that start at most `reach` bytes after it ends,
    /// nearest first.
    fn after(&self, index: usize, reach: usize) -> impl Iterator<Item = &Hit> {
        let end = self.hits()[index].end;
        self.hits()[index + 1..]
            .iter()
            .take_while(move |other| other.start - end <= reach)
    }

    /// Whether a keyword of this kind is in the same clause, either side, within `reach` bytes.
    fn any_near(&self, index: usize, reach: usize, wanted: impl Fn(Kind) -> bool) -> bool {
        let hit = &self.hits()[index];
        let near = |other: &Hit| {
            if !wanted(other.keyword.kind) {
                return false;
            }
            let (from, to) = if other.end <= hit.start {
                (other.end, hit.start)
            } else {
                (hit.end, other.start)
            };
            from <= to && to - from <= reach && other.clause == hit.clause
        };
        self.before(index, reach).any(near) || self.after(index, reach).any(near)
    }

    /// Whether a keyword of this kind is in the title or the description.
    fn any_in_text(&self, wanted: impl Fn(Kind) -> bool) -> bool {
        self.hits()
            .iter()
            .any(|other| wanted(other.keyword.kind) && self.evidence.field(other.start) != Field::Labels)
    }

    /// The subject a signal is about: the nearest subject word before it in its field,
    /// else the nearest after. A node named after a service is a member of that service.
    fn subject_of(&self, index: usize) -> Option<Subject> {
        let hit = &self.hits()[index];
        let field = self.evidence.field(hit.start);
        let subject_at = |other: &Hit| match other.keyword.kind {
            Kind::Subject(subject) if self.evidence.field(other.start) == field => Some(subject),
            _ => None,
        };
        let before = self.hits()[..index].iter().enumerate().rev().find_map(|(at, other)| {
            let subject = subject_at(other)?;
            if subject != Subject::Node {
                return Some(subject);
            }
            let member_of_service = self.hits()[..at]
                .iter()
                .any(|earlier| subject_at(earlier) == Some(Subject::Service) && earlier.clause == other.clause);
            Some(if member_of_service {
                Subject::Part
            } else {
                Subject::Node
            })
        });
        before.or_else(|| self.hits()[index + 1..].iter().find_map(subject_at))
    }

    /// The number a signal word is about: the nearest one after it in its clause, or one
    /// right before it (`97% full`), of a unit the word's measure reads.
    fn quantity_for(&self, hit: &Hit, measure: Measure) -> Option<Quantity> {
        let wanted = match measure {
            Measure::None => return None,
            Measure::Used | Measure::Remaining | Measure::ErrorRate | Measure::Share => [Unit::Percent, Unit::Percent],
            Measure::Fill => [Unit::Percent, Unit::Seconds],
            Measure::Latency | Measure::Expiry => [Unit::Seconds, Unit::Seconds],
            Measure::Spike => [Unit::Multiplier, Unit::Multiplier],
        };
        let evidence = self.evidence;
        evidence
            .quantities
            .iter()
            .filter(|quantity| wanted.contains(&quantity.unit))
            .filter_map(|quantity| {
                let distance = if quantity.start >= hit.end {
                    let distance = quantity.start - hit.end;
                    (distance <= 48 && quantity.clause == hit.clause).then_some(distance)
                } else if quantity.end <= hit.start {
                    let distance = hit.start - quantity.end;
                    (distance <= 16 && quantity.clause == hit.clause).then_some(distance)
                } else {
                    None
                }?;
                Some((distance, *quantity))
            })
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, quantity)| quantity)
    }

    /// Whether a word like `left` or `free` says the number is what remains.
    fn is_free_near(&self, quantity: &Quantity) -> bool {
        self.hits().iter().any(|other| {
            other.keyword.kind == Kind::Free && {
                let (from, to, reach) = if other.start >= quantity.end {
                    (quantity.end, other.start, 24)
                } else {
                    (other.end, quantity.start, 12)
                };
                from <= to && to - from <= reach && other.clause == quantity.clause
            }
        })
    }

    fn verdict(&self) -> Verdict {
        // The decisive signal of each active family, in the order of `FAMILIES`; a family
        // with no signal (most of them) is not active.
        let present = self
            .signals
            .iter()
            .fold(0_u32, |present, signal| present | 1 << signal.family as u32);
        let mut decisive_of_family = [None; FAMILIES.len()];
        for (family, decisive) in FAMILIES.into_iter().zip(&mut decisive_of_family) {
            if present & 1 << family as u32 != 0 {
                let summary = self.summary(family);
                if summary.is_active() {
                    *decisive = summary.decisive(&self.signals);
                }
            }
        }
        let decisive = || decisive_of_family.iter().flatten();
        let in_title = || decisive().filter(|signal| signal.field == Field::Title);
        let title_best = in_title()
            .filter(|signal| signal.family.is_domain())
            .min_by_key(|signal| rank(signal))
            .or_else(|| in_title().min_by_key(|signal| rank(signal)))
            .copied();
        let primary = title_best.or_else(|| decisive().min_by_key(|signal| rank(signal)).copied());
        let negated = self.signals.iter().find(|signal| signal.negated);

        let mut reasoning = String::with_capacity(REASONING_CAPACITY);
        if let Some(test) = self.notices.test {
            say(
                &mut reasoning,
                &["test or heartbeat notice `", test.hit.keyword.text, "`: informational"],
            );
            return Verdict {
                severity: Severity::P4,
                category: Category::Other,
                confidence: 0.9,
                reasoning,
            };
        }
        if let Some(resolved) = self.notices.resolved {
            let category = primary.map_or(Category::Other, |signal| category_of(signal.family, signal.subject));
            say(
                &mut reasoning,
                &[
                    "resolution notice `",
                    resolved.hit.keyword.text,
                    "` in the ",
                    resolved.field.name(),
                    ": the problem is over",
                ],
            );
            if let Some(signal) = primary {
                say(
                    &mut reasoning,
                    &[
                        "; it was: ",
                        signal.family.name(),
                        " signal `",
                        signal.hit.keyword.text,
                        "`",
                    ],
                );
            }
            return Verdict {
                severity: Severity::P4,
                category,
                confidence: 0.85,
                reasoning: shortened(reasoning),
            };
        }
        let calm = self.calm_notice(decisive().next().is_some());
        let Some(signal) = primary else {
            return self.without_signal(calm, negated, reasoning);
        };

        let mut severity = signal.severity;
        say(
            &mut reasoning,
            &[
                signal.family.name(),
                " signal `",
                signal.hit.keyword.text,
                "` in the ",
                signal.field.name(),
            ],
        );
        if let Some(quantity) = signal.quantity {
            reasoning.push_str("; ");
            describe(&mut reasoning, &quantity);
        }
        match signal.scope {
            Scope::Whole => reasoning.push_str("; whole scope"),
            Scope::Partial => reasoning.push_str("; partial scope"),
            Scope::Unsaid => {}
        }
        if signal.hedged {
            reasoning.push_str("; hedged");
        }
        if let Some((hint, said)) = &self.hint {
            let adjusted = match *said {
                Severity::P0 | Severity::P1 => severity.min(*said),
                Severity::P2 if severity == Severity::P1 && signal.quantity.is_none() => Severity::P2,
                Severity::P3 if severity == Severity::P2 => Severity::P3,
                Severity::P4 if severity >= Severity::P2 => Severity::P4,
                _ => severity,
            };
            if adjusted != severity {
                say(&mut reasoning, &["; the title says `", hint.keyword.text, "`"]);
                severity = adjusted;
            }
        }
        let body_alarm = self.signals.iter().any(|other| {
            other.field != Field::Title
                && !other.negated
                && matches!(
                    other.family,
                    Family::Outage | Family::Errors | Family::Integrity | Family::Security
                )
        });
        if let Some(calm) = calm.filter(|_| severity >= Severity::P2 && !body_alarm) {
            say(&mut reasoning, &["; informational `", calm.hit.keyword.text, "`"]);
            severity = Severity::P4;
        }
        match negated {
            Some(negated) => {
                say(&mut reasoning, &["; negated `", negated.hit.keyword.text, "`"]);
            }
            None => reasoning.push_str("; no negation"),
        }

        let category = category_of(signal.family, signal.subject);
        let mut confidence: f32 = if signal.field == Field::Title { 0.8 } else { 0.6 };
        if signal.quantity.is_some() {
            confidence += 0.05;
        }
        if let Some(other) = in_title().find(|other| {
            other.family != signal.family
                && category_of(other.family, other.subject) != category
                && other.severity <= signal.severity
        }) {
            say(
                &mut reasoning,
                &["; also ", other.family.name(), " `", other.hit.keyword.text, "`"],
            );
            confidence -= 0.15;
        }
        Verdict {
            severity,
            category,
            confidence: confidence.clamp(0.2, 0.95),
            reasoning: shortened(reasoning),
        }
    }

    /// The verdict when no family is decisive; `reasoning` is an empty buffer to write it in.
    fn without_signal(&self, calm: Option<NoticeHit>, negated: Option<&Signal>, mut reasoning: String) -> Verdict {
        let infra = self
            .hits()
            .iter()
            .find(|hit| matches!(hit.keyword.kind, Kind::Subject(Subject::Infra | Subject::Node)));
        if let Some(calm) = calm {
            let category = match (negated.filter(|negated| negated.field == Field::Title), infra) {
                (Some(negated), _) => category_of(negated.family, negated.subject),
                (None, Some(_)) => Category::Infrastructure,
                (None, None) => Category::Other,
            };
            say(
                &mut reasoning,
                &[
                    "informational notice `",
                    calm.hit.keyword.text,
                    "` in the ",
                    calm.field.name(),
                    "; no problem signal",
                ],
            );
            return Verdict {
                severity: Severity::P4,
                category,
                confidence: 0.7,
                reasoning: shortened(reasoning),
            };
        }
        if let Some(negated) = negated {
            let category = category_of(negated.family, negated.subject);
            say(
                &mut reasoning,
                &[
                    negated.family.name(),
                    " signal `",
                    negated.hit.keyword.text,
                    "` is negated in the ",
                    negated.field.name(),
                    "; nothing else reported",
                ],
            );
            return Verdict {
                severity: Severity::P4,
                category,
                confidence: 0.5,
                reasoning: shortened(reasoning),
            };
        }
        let hint = self.hint.as_ref();
        let severity = hint.map_or(UNKNOWN_SEVERITY, |(_, said)| *said);
        match (infra, hint) {
            (Some(subject), _) => {
                say(
                    &mut reasoning,
                    &[
                        "no problem signal; infrastructure subject `",
                        subject.keyword.text,
                        "`, so ",
                        severity.as_str(),
                        " and `infrastructure`",
                    ],
                );
                Verdict {
                    severity,
                    category: Category::Infrastructure,
                    confidence: 0.4,
                    reasoning: shortened(reasoning),
                }
            }
            (None, Some((hint, _))) => {
                say(
                    &mut reasoning,
                    &["no problem signal; the title says `", hint.keyword.text, "`"],
                );
                Verdict {
                    severity,
                    category: Category::Other,
                    confidence: UNKNOWN_CONFIDENCE,
                    reasoning,
                }
            }
            (None, None) => {
                say(
                    &mut reasoning,
                    &[
                        "no known signal; an unknown alert gets ",
                        UNKNOWN_SEVERITY.as_str(),
                        " (the ingest default) and `other`",
                    ],
                );
                Verdict {
                    severity: UNKNOWN_SEVERITY,
                    category: Category::Other,
                    confidence: UNKNOWN_CONFIDENCE,
                    reasoning,
                }
            }
        }
    }

    /// A notice that something finished, is within limits or is a report: in the title,
    /// or in the body when no problem is reported at all.
    fn calm_notice(&self, problem_anywhere: bool) -> Option<NoticeHit> {
        if problem_anywhere {
            self.notices.calm_in_title
        } else {
            self.notices.calm
        }
    }

    /// What the signals of a family say together, read in the order of the text.
    fn summary(&self, family: Family) -> FamilySummary {
        let mut summary = FamilySummary::default();
        for (index, signal) in self.signals.iter().enumerate() {
            if signal.family != family {
                continue;
            }
            if signal.negated {
                if signal.field == Field::Title {
                    summary.title_negated += 1;
                } else {
                    summary.body_negated += 1;
                }
                continue;
            }
            let better =
                |current: Option<usize>| current.is_none_or(|current| signal.severity < self.signals[current].severity);
            if signal.field == Field::Title {
                summary.title_positive += 1;
                if better(summary.title_best) {
                    summary.title_best = Some(index);
                }
            } else {
                summary.body_positive += 1;
                if better(summary.body_best) {
                    summary.body_best = Some(index);
                }
            }
            if signal.quantity.is_some() && better(summary.measured) {
                summary.measured = Some(index);
            }
        }
        summary
    }
}

/// What one family's signals say together; its signals are indexes in [`Reading::signals`].
#[derive(Debug, Default, Clone, Copy)]
struct FamilySummary {
    title_positive: usize,
    title_negated: usize,
    body_positive: usize,
    body_negated: usize,
    title_best: Option<usize>,
    body_best: Option<usize>,
    /// The most severe signal with a number beside it, in any field.
    measured: Option<usize>,
}

impl FamilySummary {
    /// Said in the title; or, when the title does not deny it, said in the body more often
    /// than denied there. The title is the event's own statement.
    fn is_active(&self) -> bool {
        self.title_positive > 0 || (self.title_negated == 0 && self.body_positive > self.body_negated)
    }

    /// The family's word and severity: its word in the title (else in the body), with the
    /// severity a number beside one of its words sets, wherever that number is.
    fn decisive(&self, signals: &[Signal]) -> Option<Signal> {
        let mut signal = signals[self.title_best.or(self.body_best)?];
        if signal.quantity.is_none()
            && let Some(measured) = self.measured.map(|index| signals[index])
        {
            signal.severity = measured.severity;
            signal.quantity = measured.quantity;
        }
        Some(signal)
    }
}

/// Most severe first; between equals, the more specific family.
fn rank(signal: &Signal) -> (Severity, Family) {
    (signal.severity, signal.family)
}

fn category_of(family: Family, subject: Option<Subject>) -> Category {
    match family {
        Family::Outage | Family::Errors => match subject {
            Some(Subject::Infra | Subject::Node) => Category::Infrastructure,
            Some(Subject::Delivery) => Category::Other,
            _ => Category::Availability,
        },
        Family::Timeout | Family::Latency => Category::Performance,
        Family::Saturation | Family::Orchestration => Category::Infrastructure,
        Family::Integrity => Category::DataQuality,
        Family::Security => Category::Security,
        Family::Compliance => Category::Compliance,
        Family::Cost => Category::Cost,
        Family::Drift => Category::ModelDrift,
    }
}

/// One level less severe (P0 → P1), P4 staying P4.
fn lighter(severity: Severity) -> Severity {
    match severity {
        Severity::P0 => Severity::P1,
        Severity::P1 => Severity::P2,
        Severity::P2 => Severity::P3,
        Severity::P3 | Severity::P4 => Severity::P4,
    }
}

/// What a number says about the severity of the signal word it stands beside, if anything.
fn measured_severity(measure: Measure, quantity: &Quantity, free: bool, base: Severity) -> Option<Severity> {
    let threshold = quantity.comparison != Comparison::Exact;
    let value = quantity.value;
    match (measure, quantity.unit) {
        (Measure::Used | Measure::Remaining | Measure::Fill, Unit::Percent) => {
            let remaining = measure == Measure::Remaining || free;
            let used = if remaining { 100.0 - value } else { value };
            Some(if used >= 97.0 {
                Severity::P1
            } else if used >= 70.0 || threshold {
                Severity::P2
            } else if used >= 50.0 {
                Severity::P3
            } else {
                Severity::P4
            })
        }
        (Measure::Fill, Unit::Seconds) if quantity.ahead => Some(if value <= 6.0 * 3600.0 {
            Severity::P1
        } else {
            Severity::P2
        }),
        (Measure::ErrorRate, Unit::Percent) => Some(if value >= 75.0 {
            Severity::P0
        } else if value >= 5.0 {
            Severity::P1
        } else if value >= 1.0 || threshold {
            Severity::P2
        } else {
            Severity::P3
        }),
        (Measure::Share, Unit::Percent) => Some(if value >= 33.0 {
            base.min(Severity::P1)
        } else if value >= 1.0 || threshold {
            base
        } else {
            Severity::P3.max(base)
        }),
        // Ten seconds or more is a request badly degraded; hours are a batch job running late.
        (Measure::Latency, Unit::Seconds) => Some(if (10.0..3600.0).contains(&value) {
            Severity::P1
        } else if value >= 0.2 || threshold {
            Severity::P2
        } else {
            Severity::P3
        }),
        (Measure::Expiry, Unit::Seconds) if quantity.ahead => Some(if value <= 3.0 * 86_400.0 {
            Severity::P1
        } else {
            Severity::P2
        }),
        (Measure::Spike, Unit::Multiplier) if value >= 10.0 => Some(base.min(Severity::P1)),
        _ => None,
    }
}

/// Appends the pieces of a sentence to `reasoning`: `push_str` rather than `write!`, whose
/// formatting machinery cost more than the rest of writing a verdict.
fn say(reasoning: &mut String, pieces: &[&str]) {
    for piece in pieces {
        reasoning.push_str(piece);
    }
}

/// Writes what the reasoning says of a quantity (`quantity over 97%`) to `out`.
fn describe(out: &mut String, quantity: &Quantity) {
    let comparison = match quantity.comparison {
        Comparison::Exact => "",
        Comparison::Above => "over ",
        Comparison::Below => "under ",
    };
    // Writing to a `String` does not fail.
    let _ = match quantity.unit {
        Unit::Percent => write!(out, "quantity {comparison}{}%", round(quantity.value)),
        Unit::Seconds => write!(out, "quantity {comparison}{}", duration(quantity.value)),
        Unit::Multiplier => write!(out, "quantity {}x", round(quantity.value)),
        Unit::Plain | Unit::Money | Unit::Ordinal => write!(out, "quantity {}", round(quantity.value)),
    };
}

fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{}s", round(seconds))
    } else if seconds < 3600.0 {
        format!("{}min", round(seconds / 60.0))
    } else if seconds < 86_400.0 {
        format!("{}h", round(seconds / 3600.0))
    } else {
        format!("{}d", round(seconds / 86_400.0))
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn shortened(reasoning: String) -> String {
    // No more bytes than the limit is no more characters: no count needed.
    if reasoning.len() <= MAX_REASONING_CHARS || reasoning.chars().count() <= MAX_REASONING_CHARS {
        return reasoning;
    }
    crate::text::shortened(&reasoning, MAX_REASONING_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(title: &str, description: &str) -> Verdict {
        classify(title, description, &BTreeMap::new())
    }

    fn assert_verdict(title: &str, description: &str, severity: Severity, category: Category) -> Verdict {
        let verdict = verdict(title, description);
        assert_eq!(
            (verdict.severity, verdict.category),
            (severity, category),
            "{title} | {description}: {}",
            verdict.reasoning
        );
        verdict
    }

    #[test]
    fn a_negated_signal_is_not_a_problem() {
        let denied = assert_verdict("No errors since the deploy", "", Severity::P4, Category::Availability);
        assert!(denied.reasoning.contains("negated"), "{}", denied.reasoning);
        assert_verdict("Errors since the deploy", "", Severity::P2, Category::Availability);
        assert_verdict(
            "Checkout service not down",
            "0 errors in the last hour",
            Severity::P4,
            Category::Availability,
        );
        assert_verdict(
            "Nightly eval finished",
            "412 cases, no regressions",
            Severity::P4,
            Category::Other,
        );
        // A negation reaches a few words, within its clause only.
        assert_verdict(
            "No deploy today. Checkout API is down",
            "",
            Severity::P0,
            Category::Availability,
        );
    }

    #[test]
    fn numbers_beside_signal_words_set_the_severity() {
        assert_verdict("Disk 97% full on db-1", "", Severity::P1, Category::Infrastructure);
        assert_verdict("Disk usage 40%", "", Severity::P4, Category::Infrastructure);
        assert_verdict(
            "Host out of disk space",
            "Disk is almost full (< 10% left)",
            Severity::P2,
            Category::Infrastructure,
        );
        assert_verdict(
            "Filesystem almost out of space",
            "only 2.1% available space left",
            Severity::P1,
            Category::Infrastructure,
        );
        assert_verdict("Error rate 45% on /checkout", "", Severity::P1, Category::Availability);
        assert_verdict("Error rate 0.1% on /checkout", "", Severity::P3, Category::Availability);
        assert_verdict("Latency p99 12s", "", Severity::P1, Category::Performance);
        assert_verdict("Latency p99 300ms", "", Severity::P2, Category::Performance);
        assert_verdict("Disk will fill in 4 hours", "", Severity::P1, Category::Infrastructure);
        assert_verdict("Disk will fill in 3 days", "", Severity::P2, Category::Infrastructure);
        let quoted = verdict("GPU memory usage 98%", "");
        assert!(quoted.reasoning.contains("98%"), "{}", quoted.reasoning);
    }

    #[test]
    fn outages_are_p0_for_a_whole_service_and_p1_for_a_part() {
        assert_verdict("Payments API is down", "", Severity::P0, Category::Availability);
        assert_verdict("All backends are down", "", Severity::P0, Category::Availability);
        assert_verdict("Cassandra node down", "", Severity::P1, Category::Availability);
        assert_verdict("Node ip-10-0-1-7 down", "", Severity::P1, Category::Infrastructure);
        assert_verdict(
            "Some replicas are unreachable",
            "",
            Severity::P2,
            Category::Availability,
        );
        assert_verdict("Orders DB may go down", "", Severity::P1, Category::Availability);
    }

    #[test]
    fn informational_notices_are_p4() {
        assert_verdict("Deploy of api v2.3 finished", "", Severity::P4, Category::Other);
        assert_verdict(
            "Backup completed",
            "Nightly backup of orders completed in 12 minutes",
            Severity::P4,
            Category::Other,
        );
        assert_verdict(
            "Test alert",
            "This is a test notification, please ignore",
            Severity::P4,
            Category::Other,
        );
        assert_verdict(
            "Watchdog",
            "An alert that should always be firing",
            Severity::P4,
            Category::Other,
        );
        assert_verdict("[RESOLVED] MySQL down", "", Severity::P4, Category::Availability);
        assert_verdict(
            "Disk space recovered",
            "now 41% used after cleanup",
            Severity::P4,
            Category::Infrastructure,
        );
        assert_verdict(
            "Latency within SLO",
            "p95 latency is 0.8s",
            Severity::P4,
            Category::Performance,
        );
        // A notice does not hide a problem reported beside it.
        assert_verdict(
            "Deploy finished",
            "but the API is down since then",
            Severity::P1,
            Category::Availability,
        );
    }

    #[test]
    fn security_signals_rank_a_breach_above_an_attack_above_a_suspicion() {
        assert_verdict(
            "Data exfiltration from bucket exports",
            "",
            Severity::P0,
            Category::Security,
        );
        assert_verdict("API key leaked in a completion", "", Severity::P0, Category::Security);
        assert_verdict(
            "SSH brute force attack on bastion",
            "",
            Severity::P1,
            Category::Security,
        );
        assert_verdict("Suspicious login pattern", "", Severity::P2, Category::Security);
        assert_verdict(
            "TLS certificate expires in 2 days",
            "",
            Severity::P1,
            Category::Security,
        );
        assert_verdict(
            "TLS certificate expires in 30 days",
            "",
            Severity::P2,
            Category::Security,
        );
        assert_verdict(
            "Exfiltration attempt",
            "a prompt asked for the system prompt",
            Severity::P1,
            Category::Security,
        );
    }

    #[test]
    fn llm_operations_signals_are_recognised() {
        assert_verdict(
            "Prompt injection detected",
            "37 requests tried to override the system prompt",
            Severity::P1,
            Category::Security,
        );
        assert_verdict(
            "Jailbreak attempt blocked by guardrail",
            "",
            Severity::P2,
            Category::Security,
        );
        assert_verdict(
            "PII leak in model output",
            "emails in 14 responses",
            Severity::P1,
            Category::Security,
        );
        assert_verdict("Hallucination rate 45%", "", Severity::P1, Category::ModelDrift);
        assert_verdict(
            "Hallucination rate above threshold",
            "14% of answers (threshold 10%)",
            Severity::P2,
            Category::ModelDrift,
        );
        assert_verdict(
            "Embedding drift detected",
            "centroid distance 0.38",
            Severity::P2,
            Category::ModelDrift,
        );
        assert_verdict(
            "Token cost spike",
            "spend is 6x the hourly average",
            Severity::P2,
            Category::Cost,
        );
        assert_verdict("Daily LLM budget exceeded", "", Severity::P1, Category::Cost);
        assert_verdict(
            "Toxicity rate elevated",
            "6% of responses",
            Severity::P2,
            Category::Compliance,
        );
        assert_verdict("GPU memory usage 98%", "", Severity::P1, Category::Infrastructure);
        assert_verdict(
            "CUDA out of memory errors",
            "3 pods OOM killed",
            Severity::P1,
            Category::Infrastructure,
        );
        assert_verdict("Time to first token p95 4.8s", "", Severity::P2, Category::Performance);
        assert_verdict(
            "LLM provider returning 503",
            "Service Unavailable for 64% of requests",
            Severity::P1,
            Category::Availability,
        );
    }

    #[test]
    fn severity_words_in_a_title_count() {
        assert_verdict("Heap usage critical", "", Severity::P1, Category::Infrastructure);
        assert_verdict("Heap usage warning", "", Severity::P2, Category::Infrastructure);
        assert_verdict("Info: quarterly access review", "", Severity::P4, Category::Other);
        // Only in the title: a description that says `critical` is not a verdict.
        assert_verdict(
            "Heap usage",
            "this could become critical",
            Severity::P2,
            Category::Infrastructure,
        );
    }

    #[test]
    fn empty_or_unknown_text_gets_the_documented_default() {
        let empty = verdict("", "");
        assert_eq!((empty.severity, empty.category), (UNKNOWN_SEVERITY, Category::Other));
        assert_eq!(empty.confidence, UNKNOWN_CONFIDENCE);
        let unknown = verdict("Kafka consumers group", "Kafka consumers group");
        assert_eq!(
            (unknown.severity, unknown.category),
            (UNKNOWN_SEVERITY, Category::Other)
        );
        assert!(unknown.reasoning.contains("no known signal"), "{}", unknown.reasoning);
    }

    #[test]
    fn labels_count_but_a_severity_label_does_not() {
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let from_labels = classify("Alert fired", "", &labels(&[("alertname", "KubePodCrashLooping")]));
        assert_eq!(
            (from_labels.severity, from_labels.category),
            (Severity::P2, Category::Availability)
        );
        let plain = classify("Alert fired", "", &BTreeMap::new());
        let with_severity = classify("Alert fired", "", &labels(&[("severity", "critical")]));
        assert_eq!(plain, with_severity);
        let with_category = classify("Alert fired", "", &labels(&[("category", "model-drift")]));
        assert_eq!(with_category.category, Category::ModelDrift);
    }

    #[test]
    fn confidence_is_low_for_guesses_and_high_for_clear_signals() {
        let guess = verdict("Something happened", "");
        let clear = verdict("Checkout API is down", "");
        assert!(guess.confidence < 0.5 && clear.confidence >= 0.8, "{guess:?} {clear:?}");
        for title in ["", "Disk 97% full", "No errors", "[RESOLVED] x", "Test alert"] {
            let confidence = verdict(title, "").confidence;
            assert!((0.0..=1.0).contains(&confidence), "{title}: {confidence}");
        }
    }

    #[test]
    fn reasoning_is_short_and_never_repeats_the_input() {
        let secret = "supercalifragilistic".repeat(500);
        let long = verdict(&format!("{secret} down"), &secret.repeat(10));
        assert!(
            long.reasoning.chars().count() <= MAX_REASONING_CHARS,
            "{}",
            long.reasoning
        );
        assert!(!long.reasoning.contains("supercali"), "{}", long.reasoning);
        assert_eq!(long.severity, Severity::P0);
    }
}
