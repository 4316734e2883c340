//! How well the offline classifier agrees with experts on real alerts.
//!
//! `tests/data/labelled_alerts.jsonl` holds public alert rules and LLM-ops events, each
//! labelled with a severity and a category (LLM.md, `The offline classifier`, says where
//! they come from and how they were labelled). About a third of them, chosen by a fixed
//! hash of title and description, is held out: the rules were written without looking at
//! it, so its numbers tell how the rules generalise. The floors sit a little below what the
//! held-out split reaches, so a regression fails. `LIM_CLASSIFIER_MISSES=1` prints the
//! misses of the training split (never of the held-out one).

use std::collections::BTreeMap;

use lim_domain::classifier::classify;
use lim_domain::{Category, Severity};
use serde::Deserialize;

const DATA: &str = include_str!("data/labelled_alerts.jsonl");

/// Floors on the held-out split, a little below what it reached: severity 72.5%, within one
/// level 97.6% and category 86.0% when the rules were written; severity 70.3%, within one
/// level 96.7% and category 80.4% on the set re-assembled on 2026-12-04 (LLM.md), for which
/// the category floor was lowered from 83% to 78%.
const HELD_OUT_FLOORS: Floors = Floors {
    severity: 0.70,
    severity_within_one: 0.95,
    category: 0.78,
};

struct Floors {
    severity: f64,
    severity_within_one: f64,
    category: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Labelled {
    title: String,
    description: String,
    labels: BTreeMap<String, String>,
    severity: Severity,
    category: Category,
    source: String,
}

/// FNV-1a, so the split never changes with a library's hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn is_held_out(alert: &Labelled) -> bool {
    fnv1a(&format!("{}\n{}", alert.title, alert.description)).is_multiple_of(3)
}

#[derive(Default)]
struct Score {
    total: usize,
    severity: usize,
    severity_within_one: usize,
    category: usize,
}

impl Score {
    fn ratio(&self, hits: usize) -> f64 {
        hits as f64 / self.total as f64
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<9} {:>3} alerts: severity exact {:.1}%, within one level {:.1}%, category {:.1}%",
            self.total,
            100.0 * self.ratio(self.severity),
            100.0 * self.ratio(self.severity_within_one),
            100.0 * self.ratio(self.category),
        )
    }
}

fn level(severity: Severity) -> i32 {
    Severity::ALL.iter().position(|s| *s == severity).unwrap() as i32
}

#[test]
fn labelled_alerts_are_classified_above_the_held_out_floors() {
    let alerts: Vec<Labelled> = DATA
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    assert!(alerts.len() >= 300, "the labelled set has {} alerts", alerts.len());
    assert!(alerts.iter().all(|alert| !alert.source.is_empty()));
    let show_misses = std::env::var_os("LIM_CLASSIFIER_MISSES").is_some();

    let (mut training, mut held_out) = (Score::default(), Score::default());
    for alert in &alerts {
        let verdict = classify(&alert.title, &alert.description, &alert.labels);
        let held = is_held_out(alert);
        let score = if held { &mut held_out } else { &mut training };
        score.total += 1;
        let severity_right = verdict.severity == alert.severity;
        let category_right = verdict.category == alert.category;
        score.severity += usize::from(severity_right);
        score.severity_within_one += usize::from((level(verdict.severity) - level(alert.severity)).abs() <= 1);
        score.category += usize::from(category_right);
        assert!((0.0..=1.0).contains(&verdict.confidence));
        assert!(verdict.reasoning.chars().count() <= 200, "{}", verdict.reasoning);
        if show_misses && !held && !(severity_right && category_right) {
            println!(
                "MISS {} {} (expected {} {}) | {} | {} | {}",
                verdict.severity,
                verdict.category,
                alert.severity,
                alert.category,
                alert.title,
                alert.description,
                verdict.reasoning
            );
        }
    }
    println!("{}", training.line("training"));
    println!("{}", held_out.line("held-out"));

    let floors = HELD_OUT_FLOORS;
    assert!(
        held_out.ratio(held_out.severity) >= floors.severity,
        "{}",
        held_out.line("held-out")
    );
    assert!(
        held_out.ratio(held_out.severity_within_one) >= floors.severity_within_one,
        "{}",
        held_out.line("held-out")
    );
    assert!(
        held_out.ratio(held_out.category) >= floors.category,
        "{}",
        held_out.line("held-out")
    );
}
