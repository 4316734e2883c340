//! Which job each job waits for. The jobs of one incident with one chain (a delivery's
//! chain is its channel) run one at a time, in the order they were written: each waits
//! for the chain's job before it. An incident's row keeps the last job of each of its
//! chains, so that linking a new job costs no look-up beyond the incident's row, which
//! the change that causes the job reads and writes anyway.

use std::collections::BTreeMap;

use crate::StoreError;

/// The last job of each of an incident's chains (`incidents.job_chains`, a JSON object
/// of chain names and job ids). Read and written on the writer for every change that
/// causes a job, so the common text (names without quotes, backslashes or control
/// characters) is read and written by hand rather than by a general JSON parser.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JobChains(BTreeMap<String, i64>);

impl JobChains {
    pub(crate) fn parse(text: Option<&str>) -> Result<Self, StoreError> {
        let Some(text) = text else {
            return Ok(JobChains::default());
        };
        if let Some(chains) = parse_plain(text) {
            return Ok(JobChains(chains));
        }
        serde_json::from_str(text)
            .map(JobChains)
            .map_err(|error| StoreError::Internal(format!("an incident's job chains `{text}`: {error}")))
    }

    /// None when the incident has no chain.
    pub(crate) fn to_text(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        if self.0.keys().any(|name| !is_plain(name)) {
            return Some(serde_json::to_string(&self.0).expect("a map of strings and numbers serializes"));
        }
        let mut text = String::with_capacity(self.0.len() * 24);
        text.push('{');
        for (index, (name, id)) in self.0.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            text.push('"');
            text.push_str(name);
            text.push_str("\":");
            push_number(&mut text, *id);
        }
        text.push('}');
        Some(text)
    }

    /// The incident's pending escalation level (the last job of its escalation chain) when
    /// `transition` stops its escalation; cancelling it is a no-op unless it is queued.
    pub(crate) fn stopped_escalation(&self, transition: &lim_domain::Transition) -> Option<i64> {
        let stops = transition.before.next_escalation.is_some() && transition.after.next_escalation.is_none();
        if stops {
            self.last(lim_domain::jobs::ESCALATION_CHAIN)
        } else {
            None
        }
    }

    /// The last job of `chain`, if the incident has one.
    pub(crate) fn last(&self, chain: &str) -> Option<i64> {
        self.0.get(chain).copied()
    }

    /// Makes job `id` the last of `chain`; answers the job it waits for, the chain's last
    /// before it (finished or not: claiming checks).
    pub(crate) fn follow(&mut self, chain: &str, id: i64) -> Option<i64> {
        match self.0.get_mut(chain) {
            Some(last) => Some(std::mem::replace(last, id)),
            None => {
                self.0.insert(chain.to_owned(), id);
                None
            }
        }
    }
}

/// Appends `number` in decimal (without the formatting machinery: this runs for every
/// change that causes a job).
fn push_number(text: &mut String, number: i64) {
    let mut digits = [0_u8; 20];
    let mut start = digits.len();
    let mut rest = number.unsigned_abs();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if number < 0 {
        text.push('-');
    }
    text.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

/// A name JSON writes as it is, between quotes.
fn is_plain(name: &str) -> bool {
    !name.chars().any(|c| c == '"' || c == '\\' || c.is_control())
}

/// `{"name":1,"other":2}` with plain names (see [`is_plain`]); None for anything else,
/// which the JSON parser then reads (or refuses).
fn parse_plain(text: &str) -> Option<BTreeMap<String, i64>> {
    let mut chains = BTreeMap::new();
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    if inner.is_empty() {
        return Some(chains);
    }
    for pair in inner.split(',') {
        let (name, id) = pair.strip_prefix('"')?.split_once("\":")?;
        if !is_plain(name) {
            return None;
        }
        chains.insert(name.to_owned(), id.parse().ok()?);
    }
    Some(chains)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_job_waits_for_the_last_of_its_chain() {
        let mut chains = JobChains::parse(None).unwrap();
        assert_eq!(chains.follow("ops", 1), None);
        assert_eq!(chains.follow("pager", 2), None);
        assert_eq!(chains.follow("ops", 3), Some(1));
        let text = chains.to_text().unwrap();
        assert_eq!(text, r#"{"ops":3,"pager":2}"#);
        let mut again = JobChains::parse(Some(&text)).unwrap();
        assert_eq!(again.follow("pager", 4), Some(2));
        assert_eq!(JobChains::default().to_text(), None);
        let mut numbers = JobChains::default();
        for (name, id) in [("zero", 0), ("max", i64::MAX), ("min", i64::MIN), ("ten", 10)] {
            numbers.follow(name, id);
        }
        let text = numbers.to_text().unwrap();
        assert_eq!(
            text,
            format!(r#"{{"max":{},"min":{},"ten":10,"zero":0}}"#, i64::MAX, i64::MIN)
        );
        assert_eq!(JobChains::parse(Some(&text)).unwrap(), numbers);
        assert!(JobChains::parse(Some("[")).is_err());
    }

    #[test]
    fn names_of_any_kind_read_back_as_written() {
        for name in [
            "ops",
            "with,comma",
            "with\"quote",
            "back\\slash",
            "colon\":1",
            "ünïcødé",
            "",
        ] {
            let mut chains = JobChains::default();
            chains.follow(name, 7);
            chains.follow("other", 9);
            let text = chains.to_text().unwrap();
            assert_eq!(JobChains::parse(Some(&text)).unwrap(), chains, "{text}");
            let json: BTreeMap<String, i64> = serde_json::from_str(&text).unwrap();
            assert_eq!(json, chains.0, "the text is JSON: {text}");
        }
        let written_by_json = r#"{ "ops" : 3 }"#;
        assert_eq!(JobChains::parse(Some(written_by_json)).unwrap().last("ops"), Some(3));
    }
}
