//! Which job each job waits for. The jobs of one incident with one chain (a delivery's
//! chain is its channel) run one at a time, in the order they were written: each waits
//! for the chain's job before it. An incident's row keeps the last job of each of its
//! chains, so that linking a new job costs no look-up beyond the incident's row, which
//! the change that causes the job reads and writes anyway.

use std::collections::BTreeMap;

use crate::StoreError;

/// The last job of each of an incident's chains (`incidents.job_chains`, a JSON object
/// of chain names and job ids).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JobChains(BTreeMap<String, i64>);

impl JobChains {
    pub(crate) fn parse(text: Option<&str>) -> Result<Self, StoreError> {
        match text {
            None => Ok(JobChains::default()),
            Some(text) => serde_json::from_str(text)
                .map(JobChains)
                .map_err(|error| StoreError::Internal(format!("an incident's job chains `{text}`: {error}"))),
        }
    }

    /// None when the incident has no chain.
    pub(crate) fn to_text(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| serde_json::to_string(&self.0).expect("a map of strings and numbers serializes"))
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
        assert!(JobChains::parse(Some("[")).is_err());
    }
}
