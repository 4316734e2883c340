//! Just enough of PromQL to tell which metrics and labels an expression names: the tests
//! of the shipped dashboards and rules check each against what the service exports.
//! Prometheus itself parses the expressions (a query that does not parse fails there).

/// A selector of an expression: the metric it names, its text (to query it alone) and the
/// label names of its matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub metric: String,
    pub text: String,
    pub labels: Vec<String>,
}

/// What an expression names: its selectors, and the labels of its `by`, `without`, `on`,
/// `ignoring`, `group_left` and `group_right` lists.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    pub selectors: Vec<Selector>,
    pub grouping: Vec<String>,
    /// The labels of its `by` lists alone (what an aggregation keeps).
    pub by: Vec<String>,
    /// Labels the expression makes itself (`label_replace`'s destination).
    pub created: Vec<String>,
}

impl Names {
    /// Every label name the expression mentions.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.selectors
            .iter()
            .flat_map(|selector| selector.labels.iter())
            .chain(self.grouping.iter())
            .map(String::as_str)
    }
}

const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Operators, and the aggregations (followed by `by (…)` as often as by their argument).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

fn is_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_part(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index just past the string literal that starts at `start` (its quote).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The label names of the matchers `{…}` that start at `start`, and the index past `}`.
fn matchers(chars: &[char], start: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    let mut i = start + 1;
    let mut expecting_name = true;
    while i < chars.len() && chars[i] != '}' {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
            continue;
        }
        if expecting_name && is_start(c) {
            let begin = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let name: String = chars[begin..i].iter().collect();
            if name != "__name__" {
                labels.push(name);
            }
            expecting_name = false;
            continue;
        }
        if c == ',' {
            expecting_name = true;
        }
        i += 1;
    }
    (labels, i + 1)
}

/// The names of the list `(a, b)` that starts at or after `start`, and the index past it.
fn label_list(chars: &[char], start: usize) -> (Vec<String>, usize) {
    let Some(open) = (start..chars.len()).find(|&i| !chars[i].is_whitespace()) else {
        return (Vec::new(), start);
    };
    if chars[open] != '(' {
        return (Vec::new(), start); // `group_left` without a list
    }
    let close = (open..chars.len()).find(|&i| chars[i] == ')').unwrap_or(chars.len());
    let text: String = chars[open + 1..close].iter().collect();
    let labels = text
        .split(',')
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .map(str::to_owned)
        .collect();
    (labels, close + 1)
}

/// The metrics and labels `expr` names.
pub fn names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Names::default();
    // `label_replace(v, "dst", …)` or `label_join(v, "dst", …)`: the next string names a label.
    let mut destinations = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let end = skip_string(&chars, i);
            if destinations > 0 {
                destinations -= 1;
                names.created.push(chars[i + 1..end - 1].iter().collect());
            }
            i = end;
        } else if c == '[' {
            i = (i..chars.len())
                .find(|&j| chars[j] == ']')
                .map_or(chars.len(), |j| j + 1);
        } else if c == '{' {
            // A selector without a metric name: `{__name__=~"…"}`.
            let (labels, end) = matchers(&chars, i);
            names.grouping.extend(labels);
            i = end;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let begin = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[begin..i].iter().collect();
            let next = (i..chars.len()).find(|&j| !chars[j].is_whitespace());
            if GROUPING.contains(&word.as_str()) {
                let (labels, end) = label_list(&chars, i);
                if word == "by" {
                    names.by.extend(labels.iter().cloned());
                }
                names.grouping.extend(labels);
                i = end;
            } else if next.is_some_and(|j| chars[j] == '(') || KEYWORDS.contains(&word.as_str()) {
                // A function, an aggregation or an operator.
                if word == "label_replace" || word == "label_join" {
                    destinations += 1;
                }
            } else {
                let (labels, end) = match next {
                    Some(j) if chars[j] == '{' => matchers(&chars, j),
                    _ => (Vec::new(), i),
                };
                names.selectors.push(Selector {
                    metric: word,
                    text: chars[begin..end].iter().collect(),
                    labels,
                });
                i = end;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_grouping_labels_are_found() {
        let found = names(
            r#"sum by (job, path) (rate(http_requests_total{job="a", status=~"5.."}[5m])) / ignoring(path) group_left sum without (le) (lim:x:rate5m) > bool 0.5 and on (policy, level) up offset 5m"#,
        );
        let metrics: Vec<&str> = found.selectors.iter().map(|s| s.metric.as_str()).collect();
        assert_eq!(metrics, ["http_requests_total", "lim:x:rate5m", "up"]);
        assert_eq!(found.selectors[0].labels, ["job", "status"]);
        assert_eq!(
            found.selectors[0].text,
            r#"http_requests_total{job="a", status=~"5.."}"#
        );
        assert_eq!(found.grouping, ["job", "path", "path", "le", "policy", "level"]);
        assert_eq!(found.by, ["job", "path"]);
    }

    #[test]
    fn strings_numbers_and_functions_are_not_metrics() {
        let found = names(r#"histogram_quantile(0.95, x_bucket{a="b{c}"}) * 1e3 - time() + vector(1)"#);
        let metrics: Vec<&str> = found.selectors.iter().map(|s| s.metric.as_str()).collect();
        assert_eq!(metrics, ["x_bucket"]);
        assert_eq!(found.selectors[0].labels, ["a"]);
    }

    #[test]
    fn a_label_made_by_label_replace_is_known() {
        let found = names(r#"min by (sev) (label_replace(x{severity="P0"}, "sev", "$1", "severity", "(.*)"))"#);
        assert_eq!(found.created, ["sev"]);
        assert_eq!(found.grouping, ["sev"]);
    }
}
