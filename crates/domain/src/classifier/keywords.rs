//! The keyword table: word families, stems and phrases, written as they read after
//! normalisation (lower case, CamelCase and `snake_case` split into words, apostrophes
//! dropped). One automaton finds them all in one pass.

use std::sync::LazyLock;

use super::automaton::KeywordAutomaton;
use crate::vocabulary::Severity::{self, P0, P1, P2, P3, P4};

/// What kind of problem a signal word reports. The order is the tie-break between
/// families of equal severity: the more specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Family {
    Security,
    Integrity,
    Outage,
    Compliance,
    Cost,
    Drift,
    Errors,
    Saturation,
    Orchestration,
    Timeout,
    Latency,
}

pub(super) const FAMILIES: [Family; 11] = [
    Family::Security,
    Family::Integrity,
    Family::Outage,
    Family::Compliance,
    Family::Cost,
    Family::Drift,
    Family::Errors,
    Family::Saturation,
    Family::Orchestration,
    Family::Timeout,
    Family::Latency,
];

impl Family {
    pub(super) const fn name(self) -> &'static str {
        match self {
            Family::Security => "security",
            Family::Integrity => "data integrity",
            Family::Outage => "outage",
            Family::Compliance => "compliance",
            Family::Cost => "cost",
            Family::Drift => "drift",
            Family::Errors => "error",
            Family::Saturation => "saturation",
            Family::Orchestration => "orchestration",
            Family::Timeout => "timeout",
            Family::Latency => "latency",
        }
    }

    /// Families that name a domain of their own: when one is in the title it names the
    /// category, whichever family set the severity.
    pub(super) const fn is_domain(self) -> bool {
        matches!(
            self,
            Family::Security | Family::Integrity | Family::Compliance | Family::Cost | Family::Drift
        )
    }
}

/// How a number next to a signal word is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measure {
    None,
    /// A percentage of a resource in use (`disk 97% full`).
    Used,
    /// A percentage of a resource still free (`2% free`).
    Remaining,
    /// A percentage used, or a time until full (`will fill in 4 hours`).
    Fill,
    /// A percentage of requests failing.
    ErrorRate,
    /// A percentage of requests or outputs affected (hallucinated, empty, toxic).
    Share,
    /// A duration a request takes.
    Latency,
    /// A duration until a certificate or credential expires.
    Expiry,
    /// A multiple of the usual value (`6x`).
    Spike,
}

/// Which class of thing a subject word names; it decides availability against
/// infrastructure, and how much of a system an outage covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subject {
    /// Machines and their parts: an outage of one is an infrastructure problem of one piece.
    Infra,
    /// A node: of the infrastructure, or a member of the service named before it.
    Node,
    /// One workload or member among others (pod, replica, node of a cluster).
    Part,
    /// A service, a database, an API, a model: what users reach.
    Service,
    /// Builds and syncs: their failures are not production categories.
    Delivery,
    /// Secrets and keys: a leak of one is a breach.
    Secret,
}

/// Notices that are not problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    /// The problem is over.
    Resolved,
    /// Something finished as planned (deploy done, backup completed).
    Completed,
    /// A value is within its limits.
    Ok,
    /// A periodic report.
    Report,
    /// A test, heartbeat or always-firing watchdog.
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Signal(Family, Severity, Measure),
    Notice(Notice),
    /// Turns the next few words around (`no errors`, `not down`).
    Negator,
    /// Makes what follows in the clause a possibility (`may`, `predicted`).
    Hedge,
    Subject(Subject),
    /// Widens an outage to everything (`all`, `entire`).
    Whole,
    /// Narrows an outage to a part (`some`, `one of`).
    Partial,
    /// The number beside it is what remains (`10% left`).
    Free,
    /// A severity word in a title (`critical`, `warning`).
    Hint(Severity),
    /// An attack was stopped (`blocked`, `redacted`).
    Mitigated,
    /// An attack was tried, not (yet) achieved.
    Attempt,
    /// A budget or limit was passed.
    Exceeded,
}

/// Where a keyword may match: on whole words, or as the stem of a longer word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    Word,
    Stem,
}

#[derive(Debug)]
pub(super) struct Keyword {
    pub text: &'static str,
    pub bound: Bound,
    pub kind: Kind,
}

use Bound::{Stem as S, Word as W};
use Family::*;
use Measure as M;

const fn k(text: &'static str, bound: Bound, kind: Kind) -> Keyword {
    Keyword { text, bound, kind }
}
const fn sig(text: &'static str, bound: Bound, family: Family, severity: Severity, measure: Measure) -> Keyword {
    k(text, bound, Kind::Signal(family, severity, measure))
}
const fn subject(text: &'static str, bound: Bound, subject: Subject) -> Keyword {
    k(text, bound, Kind::Subject(subject))
}
const fn notice(text: &'static str, bound: Bound, notice: Notice) -> Keyword {
    k(text, bound, Kind::Notice(notice))
}

#[rustfmt::skip]
pub(super) static KEYWORDS: &[Keyword] = &[
    // Outage and unavailability. P0 words lose a level on a part, in a body, or hedged.
    sig("down", W, Outage, P0, M::None), sig("is down", W, Outage, P0, M::None),
    sig("went down", W, Outage, P0, M::None), sig("outage", S, Outage, P0, M::None),
    sig("unreachable", W, Outage, P1, M::None), sig("not reachable", W, Outage, P1, M::None),
    sig("unavailable", W, Outage, P1, M::None), sig("unvailable", W, Outage, P1, M::None),
    sig("not available", W, Outage, P1, M::None), sig("service unavailable", W, Outage, P0, M::None),
    sig("offline", W, Outage, P1, M::None), sig("unresponsive", W, Outage, P1, M::None),
    sig("not responding", W, Outage, P1, M::None), sig("no response", W, Outage, P1, M::None),
    sig("connection refused", W, Outage, P1, M::None), sig("cannot connect", W, Outage, P1, M::None),
    sig("can not connect", W, Outage, P1, M::None), sig("not connected", W, Outage, P1, M::None),
    sig("unable to connect", W, Outage, P1, M::None), sig("lost connection", W, Outage, P1, M::None),
    sig("lose connection", W, Outage, P1, M::None),
    sig("no alive", W, Outage, P0, M::None), sig("no healthy", W, Outage, P0, M::None),
    sig("no living", W, Outage, P0, M::None), sig("no leader", W, Outage, P0, M::None),
    sig("missing leader", W, Outage, P0, M::None), sig("no master", W, Outage, P0, M::None),
    sig("missing master", W, Outage, P0, M::None), sig("no node marked", W, Outage, P0, M::None),
    sig("no quorum", W, Outage, P0, M::None), sig("lost quorum", W, Outage, P0, M::None),
    sig("sealed", W, Outage, P0, M::None), sig("red", W, Outage, P0, M::None),
    sig("blackout", W, Outage, P0, M::None),
    sig("crash", S, Outage, P2, M::None), sig("panic", S, Outage, P1, M::None),
    sig("fatal", W, Outage, P1, M::None), sig("segfault", S, Outage, P1, M::None),
    sig("not running", W, Outage, P1, M::None), sig("not ready", W, Outage, P2, M::None),
    sig("unready", W, Outage, P1, M::None), sig("non ready", W, Outage, P1, M::None),
    sig("not healthy", W, Outage, P1, M::None), sig("unhealthy", W, Outage, P1, M::None),
    sig("not ok", W, Outage, P2, M::None), sig("not working", W, Outage, P1, M::None),
    sig("health check fail", S, Outage, P1, M::None), sig("healthcheck fail", S, Outage, P1, M::None),
    sig("health check", W, Outage, P2, M::None), sig("healthcheck", W, Outage, P2, M::None),
    sig("probe fail", S, Outage, P1, M::None), sig("disappeared", W, Outage, P1, M::None),
    sig("missing", W, Outage, P2, M::None), sig("absent", W, Outage, P2, M::None),
    sig("lost", W, Outage, P2, M::None), sig("killed", W, Outage, P2, M::None),
    sig("stopped", W, Outage, P1, M::None), sig("halted", W, Outage, P1, M::None),
    sig("broken", W, Outage, P1, M::None), sig("terminated", W, Outage, P2, M::None),
    sig("evicted", W, Outage, P2, M::None), sig("flapping", W, Outage, P2, M::None),
    sig("restart", S, Outage, P2, M::None), sig("failover", S, Outage, P2, M::None),
    sig("degraded", W, Outage, P2, M::None), sig("degradation", W, Outage, P2, M::None),
    sig("yellow", W, Outage, P2, M::None), sig("partition", W, Outage, P1, M::None),
    sig("not enough", W, Outage, P2, M::None), sig("unable", W, Outage, P2, M::None),
    sig("not able", W, Outage, P2, M::None), sig("unknown", W, Outage, P3, M::None),
    sig("no consumer", S, Outage, P1, M::None), sig("no requests", W, Outage, P1, M::None),
    sig("no successful", W, Outage, P1, M::None), sig("no traffic", W, Outage, P1, M::None),
    sig("no target", S, Outage, P1, M::None), sig("not replicating", W, Outage, P1, M::None),
    sig("leader change", S, Outage, P2, M::None), sig("leader election", S, Outage, P2, M::None),
    sig("unassigned", W, Outage, P1, M::None), sig("inactive", W, Outage, P2, M::None),
    sig("unactive", W, Outage, P2, M::None), sig("under replicated", S, Outage, P2, M::None),
    sig("underreplicated", S, Outage, P2, M::None),
    // Orchestration and configuration state: desired and actual disagree.
    sig("mismatch", S, Orchestration, P2, M::None), sig("misscheduled", W, Orchestration, P2, M::None),
    sig("mis scheduled", W, Orchestration, P2, M::None), sig("not scheduled", W, Orchestration, P2, M::None),
    sig("rollout stuck", W, Orchestration, P2, M::None), sig("not rolled out", W, Orchestration, P2, M::None),
    sig("suspended", W, Orchestration, P2, M::None), sig("insufficient", W, Orchestration, P2, M::None),
    sig("unused", W, Orchestration, P2, M::None), sig("different version", S, Orchestration, P2, M::None),
    sig("deviation", S, Orchestration, P2, M::None), sig("outdated", W, Orchestration, P2, M::None),
    sig("out of date", W, Orchestration, P2, M::None), sig("skew", S, Orchestration, P2, M::None),
    sig("out of sync", W, Orchestration, P2, M::None), sig("not synced", W, Orchestration, P2, M::None),
    sig("not synchronising", W, Orchestration, P2, M::None), sig("not synchronizing", W, Orchestration, P2, M::None),
    // Errors and failures.
    sig("error", S, Errors, P2, M::ErrorRate), sig("errno", W, Errors, P2, M::None),
    sig("fail", S, Errors, P2, M::ErrorRate), sig("exception", S, Errors, P2, M::ErrorRate),
    sig("5xx", W, Errors, P1, M::ErrorRate),
    sig("http 500", W, Errors, P1, M::ErrorRate), sig("500 error", S, Errors, P1, M::ErrorRate),
    sig("server error", S, Errors, P1, M::ErrorRate), sig("internal error", S, Errors, P1, M::ErrorRate),
    sig("system error", S, Errors, P1, M::ErrorRate), sig("4xx", W, Errors, P2, M::ErrorRate),
    sig("rejected", W, Errors, P2, M::ErrorRate), sig("abort", S, Errors, P2, M::ErrorRate),
    sig("not run", W, Errors, P2, M::None),
    sig("being dropped", W, Errors, P2, M::ErrorRate), sig("are dropped", W, Errors, P2, M::ErrorRate),
    sig("dropped requests", W, Errors, P2, M::ErrorRate), sig("dropped packets", W, Errors, P2, M::ErrorRate),
    sig("dropped messages", W, Errors, P2, M::ErrorRate), sig("dropped connections", W, Errors, P2, M::ErrorRate),
    sig("high error rate", W, Errors, P1, M::ErrorRate), sig("high failure rate", W, Errors, P1, M::ErrorRate),
    sig("error rate high", W, Errors, P1, M::ErrorRate), sig("failure rate high", W, Errors, P1, M::ErrorRate),
    sig("error budget", W, Errors, P1, M::None), sig("burn rate", W, Errors, P1, M::None),
    sig("rate limit", S, Errors, P2, M::ErrorRate), sig("too many requests", W, Errors, P2, M::ErrorRate),
    sig("bad gateway", W, Errors, P1, M::ErrorRate), sig("gateway timeout", W, Errors, P1, M::ErrorRate),
    sig("not successful", W, Errors, P2, M::None),
    sig("unsuccessful", W, Errors, P2, M::None),
    // Timeouts.
    sig("timeout", S, Timeout, P2, M::ErrorRate), sig("timed out", W, Timeout, P2, M::ErrorRate),
    sig("timing out", W, Timeout, P2, M::ErrorRate), sig("time out", W, Timeout, P2, M::ErrorRate),
    // Latency, slowness, lag and backlog.
    sig("latency", S, Latency, P2, M::Latency), sig("latencies", W, Latency, P2, M::Latency),
    sig("slow", S, Latency, P2, M::Latency), sig("slowing down", W, Latency, P2, M::Latency),
    sig("slow down", W, Latency, P2, M::Latency), sig("slowdown", W, Latency, P2, M::Latency),
    sig("response time", S, Latency, P2, M::Latency), sig("time to first token", W, Latency, P2, M::Latency),
    sig("ttft", W, Latency, P2, M::Latency), sig("took more than", W, Latency, P2, M::Latency),
    sig("taking more than", W, Latency, P2, M::Latency), sig("too long", W, Latency, P2, M::Latency),
    sig("duration", S, Latency, P2, M::Latency), sig("delay", S, Latency, P2, M::Latency),
    sig("lag", W, Latency, P2, M::None), sig("lagging", W, Latency, P2, M::None),
    sig("replication lag", W, Latency, P1, M::None), sig("behind", W, Latency, P2, M::None),
    sig("backlog", S, Latency, P2, M::None), sig("queued", W, Latency, P2, M::None),
    sig("queue size", W, Latency, P2, M::None), sig("queue length", W, Latency, P2, M::None),
    sig("queue depth", W, Latency, P2, M::None), sig("queue time", W, Latency, P2, M::None),
    sig("retry", W, Latency, P2, M::None), sig("retries", W, Latency, P2, M::None),
    sig("pending", W, Latency, P2, M::None), sig("stuck", W, Latency, P2, M::None),
    sig("stall", S, Latency, P2, M::None), sig("blocked tasks", W, Latency, P2, M::None),
    sig("are blocked", W, Latency, P2, M::None), sig("is blocked", W, Latency, P2, M::None),
    sig("deadlock", S, Latency, P2, M::None), sig("dead lock", S, Latency, P2, M::None),
    sig("lock contention", W, Latency, P2, M::None), sig("too many locks", W, Latency, P2, M::None),
    sig("throttl", S, Latency, P2, M::None), sig("waiting", W, Latency, P2, M::None),
    sig("iowait", W, Latency, P2, M::None), sig("log waits", W, Latency, P2, M::None),
    sig("preempt", S, Latency, P2, M::None), sig("bloat", S, Latency, P2, M::None),
    sig("not vacuumed", W, Latency, P2, M::None), sig("not analyzed", W, Latency, P2, M::None),
    sig("hit rate", W, Latency, P2, M::None), sig("throughput", W, Latency, P2, M::None),
    sig("tokens per second", W, Latency, P2, M::None), sig("performance", S, Latency, P2, M::None),
    sig("jitter", W, Latency, P2, M::None), sig("not keeping up", W, Latency, P2, M::None), sig("very few", W, Latency, P2, M::None),
    // Saturation and exhaustion.
    sig("out of memory error", W, Saturation, P1, M::Used), sig("outofmemoryerror", W, Saturation, P1, M::Used),
    sig("oom", S, Saturation, P1, M::Used), sig("out of memory", W, Saturation, P2, M::Remaining),
    sig("out of", W, Saturation, P2, M::Remaining), sig("almost out", W, Saturation, P2, M::Remaining),
    sig("nearly out", W, Saturation, P2, M::Remaining), sig("almost full", W, Saturation, P2, M::Fill),
    sig("nearly full", W, Saturation, P2, M::Fill), sig("% left", W, Saturation, P2, M::Remaining),
    sig("% free", W, Saturation, P2, M::Remaining), sig("% available", W, Saturation, P2, M::Remaining),
    sig("% is available", W, Saturation, P2, M::Remaining), sig("% remaining", W, Saturation, P2, M::Remaining),
    sig("out of disk", W, Saturation, P2, M::Remaining), sig("out of space", W, Saturation, P2, M::Remaining),
    sig("out of capacity", W, Saturation, P2, M::Used), sig("out of inodes", W, Saturation, P2, M::Remaining),
    sig("no space left", W, Saturation, P1, M::Remaining), sig("disk full", W, Saturation, P1, M::Used),
    sig("running out", W, Saturation, P2, M::Fill), sig("run out", W, Saturation, P2, M::Fill),
    sig("full", W, Saturation, P2, M::Fill), sig("filling up", W, Saturation, P2, M::Fill),
    sig("fill up", W, Saturation, P2, M::Fill), sig("fill in", W, Saturation, P2, M::Fill),
    sig("will fill", W, Saturation, P2, M::Fill), sig("fills up", W, Saturation, P2, M::Fill),
    sig("exhaust", S, Saturation, P2, M::Fill), sig("exhausted", W, Saturation, P1, M::Fill), sig("pressure", W, Saturation, P2, M::Used),
    sig("usage", W, Saturation, P2, M::Used), sig("utilization", W, Saturation, P2, M::Used),
    sig("utilisation", W, Saturation, P2, M::Used), sig("used", W, Saturation, P2, M::Used),
    sig("in use", W, Saturation, P2, M::Used), sig("load", W, Saturation, P2, M::Used),
    sig("overload", S, Saturation, P2, M::Used), sig("saturat", S, Saturation, P2, M::Used),
    sig("capacity", W, Saturation, P2, M::Used), sig("at capacity", W, Saturation, P2, M::Used),
    sig("quota", S, Saturation, P2, M::Used), sig("overcommit", S, Saturation, P2, M::Used),
    sig("too many", W, Saturation, P2, M::Used), sig("max children", W, Saturation, P2, M::None),
    sig("max connections", W, Saturation, P2, M::None), sig("limit", W, Saturation, P2, M::Used),
    sig("limits", W, Saturation, P2, M::Used), sig("maxmemory", W, Saturation, P2, M::Used),
    sig("memory leak", W, Saturation, P2, M::Used), sig("memory high", W, Saturation, P2, M::Used),
    sig("high memory", W, Saturation, P2, M::Used), sig("high cpu", W, Saturation, P2, M::Used),
    sig("eviction", S, Saturation, P2, M::None),
    sig("low space", W, Saturation, P2, M::Remaining), sig("space low", W, Saturation, P2, M::Remaining),
    sig("space is low", W, Saturation, P2, M::Remaining), sig("storage is low", W, Saturation, P2, M::Remaining),
    sig("low disk", W, Saturation, P2, M::Remaining), sig("low memory", W, Saturation, P2, M::Remaining),
    sig("memory is low", W, Saturation, P2, M::Remaining), sig("free space", W, Saturation, P2, M::Remaining),
    sig("free storage", W, Saturation, P2, M::Remaining), sig("freeable memory", W, Saturation, P2, M::Remaining),
    sig("headroom", W, Saturation, P2, M::Remaining), sig("too hot", W, Saturation, P2, M::None),
    sig("overtemperature", W, Saturation, P1, M::None), sig("temperature", W, Saturation, P2, M::None),
    // Data integrity.
    sig("data loss", W, Integrity, P0, M::Share), sig("lost data", W, Integrity, P0, M::Share),
    sig("data lost", W, Integrity, P0, M::Share), sig("split brain", W, Integrity, P0, M::None),
    sig("corrupt", S, Integrity, P1, M::Share), sig("checksum", S, Integrity, P1, M::Share),
    sig("backup failed", W, Integrity, P1, M::None), sig("backup failure", S, Integrity, P1, M::None),
    sig("backup has failed", W, Integrity, P1, M::None), sig("missing backup", W, Integrity, P1, M::None),
    sig("not been backed up", W, Integrity, P1, M::None), sig("not been backuped", W, Integrity, P1, M::None),
    sig("no backup", W, Integrity, P1, M::None), sig("inconsisten", S, Integrity, P2, M::Share),
    sig("duplicate", S, Integrity, P2, M::Share), sig("stale", W, Integrity, P2, M::Share),
    sig("schema", S, Integrity, P2, M::Share), sig("null", S, Integrity, P2, M::Share),
    sig("missing data", W, Integrity, P2, M::Share), sig("missing values", W, Integrity, P2, M::Share),
    sig("are missing", W, Integrity, P2, M::Share), sig("missing the feature", W, Integrity, P2, M::Share),
    sig("no new documents", W, Integrity, P2, M::None), sig("no new data", W, Integrity, P2, M::None),
    sig("no data", W, Integrity, P2, M::None), sig("incomplete", W, Integrity, P2, M::Share),
    sig("unroutable", W, Integrity, P2, M::Share), sig("dead letter", W, Integrity, P2, M::None),
    sig("truncated", W, Integrity, P2, M::Share), sig("no documents", W, Integrity, P2, M::Share),
    sig("zero documents", W, Integrity, P2, M::Share), sig("empty", W, Integrity, P2, M::Share),
    sig("context window", S, Integrity, P2, M::Share), sig("context length", S, Integrity, P2, M::Share), sig("empty response", S, Integrity, P2, M::Share),
    sig("data quality", W, Integrity, P2, M::Share), sig("offset decreased", W, Integrity, P2, M::None),
    sig("too many masters", W, Integrity, P1, M::None), sig("too many leaders", W, Integrity, P1, M::None),
    sig("too many primary", W, Integrity, P1, M::None),
    // Security and abuse.
    sig("exfiltrat", S, Security, P0, M::None), sig("breach", S, Security, P0, M::None),
    sig("compromis", S, Security, P0, M::None), sig("ransomware", W, Security, P0, M::None),
    sig("backdoor", S, Security, P0, M::None), sig("c&c", W, Security, P0, M::None),
    sig("command and control", W, Security, P0, M::None), sig("reverse shell", S, Security, P0, M::None),
    sig("container escape", S, Security, P0, M::None), sig("rootkit", S, Security, P0, M::None),
    sig("bypass", S, Security, P0, M::None), sig("privilege escalation", S, Security, P1, M::None),
    sig("brute", S, Security, P1, M::None), sig("inject", S, Security, P1, M::None),
    sig("jailbreak", S, Security, P1, M::None), sig("prompt attack", S, Security, P1, M::None),
    sig("attack", S, Security, P1, M::None), sig("ddos", W, Security, P1, M::None),
    sig("malware", S, Security, P1, M::None), sig("trojan", S, Security, P1, M::None),
    sig("crypto", S, Security, P1, M::None), sig("bitcoin", S, Security, P1, M::None),
    sig("miner", S, Security, P1, M::None), sig("exploit", S, Security, P1, M::None),
    sig("unauthori", S, Security, P1, M::None), sig("intrusion", S, Security, P1, M::None),
    sig("hacker", S, Security, P2, M::None), sig("hacked", W, Security, P1, M::None),
    sig("leak", S, Security, P1, M::None), sig("pii", W, Security, P1, M::Share),
    sig("sensitive data", W, Security, P1, M::Share), sig("personal data", W, Security, P1, M::Share),
    sig("remote code execution", W, Security, P1, M::None), sig("netcat", W, Security, P1, M::None),
    sig("kernel module", S, Security, P1, M::None), sig("fileless", W, Security, P1, M::None),
    sig("memfd", S, Security, P1, M::None), sig("abuse", S, Security, P1, M::None),
    sig("revoked", W, Security, P1, M::None), sig("expired", W, Security, P1, M::Expiry),
    sig("expir", S, Security, P2, M::Expiry), sig("renew", S, Security, P2, M::Expiry),
    sig("suspicious", W, Security, P2, M::None), sig("malicious", W, Security, P2, M::None),
    sig("tamper", S, Security, P2, M::None), sig("traversal", W, Security, P2, M::None),
    sig("ptrace", W, Security, P2, M::None), sig("private key", S, Security, P2, M::None),
    sig("sensitive file", S, Security, P2, M::None), sig("port probe", S, Security, P2, M::None),
    sig("portprobe", S, Security, P2, M::None), sig("port scan", S, Security, P2, M::None),
    sig("recon", W, Security, P2, M::None), sig("authentication fail", S, Security, P2, M::None),
    sig("auth fail", S, Security, P2, M::None), sig("login fail", S, Security, P2, M::None),
    sig("failed login", S, Security, P2, M::None), sig("invalid token", S, Security, P2, M::None),
    sig("permission denied", W, Security, P2, M::None), sig("access denied", W, Security, P2, M::None),
    sig("denied", W, Security, P2, M::None), sig("security", W, Security, P2, M::None),
    sig("guardrail", S, Security, P2, M::None), sig("vulnerab", S, Security, P2, M::None),
    sig("cve", W, Security, P2, M::None), sig("system prompt", W, Security, P2, M::None),
    sig("shell", W, Security, P3, M::None), sig("packet socket", W, Security, P3, M::None),
    sig("new binary", W, Security, P2, M::None), sig("write below", W, Security, P1, M::None),
    // Drift and quality of models.
    sig("drift", S, Drift, P2, M::Share), sig("hallucinat", S, Drift, P2, M::Share),
    sig("groundedness", W, Drift, P2, M::Share), sig("faithfulness", W, Drift, P2, M::Share),
    sig("accuracy", W, Drift, P2, M::None), sig("regress", S, Drift, P2, M::None),
    sig("refusal", S, Drift, P2, M::Share), sig("refused", W, Drift, P2, M::Share),
    sig("failure to answer", W, Drift, P2, M::Share), sig("off topic", W, Drift, P2, M::Share),
    sig("relevan", S, Drift, P2, M::Share), sig("sentiment", W, Drift, P3, M::Share),
    sig("quality degradation", W, Drift, P2, M::Share), sig("repetition", W, Drift, P2, M::Share),
    sig("psi", W, Drift, P2, M::None), sig("divergence", W, Drift, P2, M::None),
    sig("perplexity", W, Drift, P2, M::None), sig("model performance", W, Drift, P2, M::None),
    sig("canary prompt", S, Drift, P2, M::None), sig("golden set", W, Drift, P2, M::None),
    sig("eval score", S, Drift, P2, M::None), sig("evaluation score", S, Drift, P2, M::None),
    sig("quality score", S, Drift, P2, M::None), sig("judge score", S, Drift, P2, M::None),
    // Cost.
    sig("cost", S, Cost, P2, M::Spike), sig("spend", S, Cost, P2, M::Spike),
    sig("budget", S, Cost, P2, M::Spike), sig("billed", W, Cost, P3, M::Spike),
    sig("billing", W, Cost, P3, M::Spike), sig("invoice", S, Cost, P3, M::Spike),
    sig("expensive", W, Cost, P2, M::Spike), sig("runaway", W, Cost, P1, M::None),
    sig("token usage", W, Cost, P3, M::Spike), sig("burning tokens", W, Cost, P2, M::Spike),
    sig("tokens per request", W, Cost, P3, M::Spike), sig("token spend", W, Cost, P2, M::Spike),
    // Compliance.
    sig("complian", S, Compliance, P2, M::Share), sig("violat", S, Compliance, P2, M::Share),
    sig("audit", S, Compliance, P2, M::None), sig("gdpr", W, Compliance, P2, M::None),
    sig("hipaa", W, Compliance, P2, M::None), sig("pci", W, Compliance, P2, M::None),
    sig("soc2", W, Compliance, P2, M::None), sig("retention", W, Compliance, P2, M::None),
    sig("residency", W, Compliance, P2, M::None), sig("consent", W, Compliance, P2, M::None),
    sig("toxic", S, Compliance, P2, M::Share), sig("hate speech", W, Compliance, P1, M::Share),
    sig("harass", S, Compliance, P1, M::Share), sig("bias", W, Compliance, P2, M::Share),
    sig("biased", W, Compliance, P2, M::Share), sig("fairness", W, Compliance, P2, M::Share),
    sig("moderation", W, Compliance, P2, M::Share), sig("regulat", S, Compliance, P2, M::None),
    sig("license", S, Compliance, P3, M::None), sig("root credential", S, Compliance, P3, M::None),
    sig("logging disabled", W, Compliance, P2, M::None), sig("content policy", W, Compliance, P2, M::None),
    sig("policy", W, Compliance, P3, M::None), sig("profanity", W, Compliance, P2, M::Share),
    sig("nsfw", W, Compliance, P2, M::Share),
    // Notices that are not problems.
    notice("resolved", W, Notice::Resolved), notice("recovered", W, Notice::Resolved),
    notice("has recovered", W, Notice::Resolved), notice("recovery complete", S, Notice::Resolved),
    notice("back to normal", W, Notice::Resolved), notice("back under", W, Notice::Resolved),
    notice("back below", W, Notice::Resolved), notice("back to", W, Notice::Resolved),
    notice("up again", W, Notice::Resolved), notice("healthy again", W, Notice::Resolved),
    notice("normal again", W, Notice::Resolved), notice("restored", W, Notice::Resolved),
    notice("cleared", W, Notice::Resolved), notice("no longer", W, Notice::Resolved),
    notice("caught up", W, Notice::Resolved), notice("fixed", W, Notice::Resolved),
    notice("completed", W, Notice::Completed), notice("complete", W, Notice::Completed),
    notice("finished", W, Notice::Completed), notice("succeeded", W, Notice::Completed),
    notice("successful", S, Notice::Completed), notice("deployed", W, Notice::Completed),
    notice("rolled out", W, Notice::Completed), notice("published", W, Notice::Completed),
    notice("created", W, Notice::Completed), notice("deleted", W, Notice::Completed),
    notice("has started", W, Notice::Completed), notice("started", W, Notice::Completed),
    notice("rebuilt", W, Notice::Completed), notice("renewed", W, Notice::Completed),
    notice("up and running", W, Notice::Completed), notice("now running", W, Notice::Completed),
    notice("synced", W, Notice::Completed), notice("upgraded", W, Notice::Completed),
    notice("maintenance", S, Notice::Completed), notice("scheduled", W, Notice::Completed),
    notice("healthy", W, Notice::Ok), notice("is healthy", W, Notice::Ok),
    notice("are healthy", W, Notice::Ok), notice("within slo", W, Notice::Ok),
    notice("within budget", W, Notice::Ok), notice("within limits", W, Notice::Ok),
    notice("no action needed", W, Notice::Ok), notice("no action required", W, Notice::Ok),
    notice("no issues", W, Notice::Ok), notice("all clear", W, Notice::Ok),
    notice("no impact", W, Notice::Ok), notice("nominal", W, Notice::Ok),
    notice("as expected", W, Notice::Ok), notice("not degraded", W, Notice::Ok),
    notice("report", W, Notice::Report), notice("digest", W, Notice::Report),
    notice("summary", W, Notice::Report), notice("fyi", W, Notice::Report),
    notice("informational", W, Notice::Report), notice("for your information", W, Notice::Report),
    notice("requires a reboot", W, Notice::Report), notice("requires reboot", W, Notice::Report),
    notice("reboot required", W, Notice::Report), notice("pending reboot", W, Notice::Report),
    notice("test alert", S, Notice::Test), notice("test notification", S, Notice::Test),
    notice("test message", S, Notice::Test), notice("this is a test", W, Notice::Test),
    notice("please ignore", W, Notice::Test), notice("heartbeat", S, Notice::Test),
    notice("watchdog", W, Notice::Test), notice("dead man", S, Notice::Test),
    notice("deadman", S, Notice::Test), notice("dead mans", S, Notice::Test),
    notice("always firing", W, Notice::Test), notice("end to end test", W, Notice::Test),
    notice("inhibit", S, Notice::Test), notice("dummy", W, Notice::Test),
    // Negations, hedges, scopes and modifiers.
    k("no", W, Kind::Negator), k("not", W, Kind::Negator), k("never", W, Kind::Negator),
    k("none", W, Kind::Negator), k("zero", W, Kind::Negator), k("without", W, Kind::Negator),
    k("nothing", W, Kind::Negator), k("within", W, Kind::Negator), k("isnt", W, Kind::Negator),
    k("arent", W, Kind::Negator), k("wasnt", W, Kind::Negator), k("doesnt", W, Kind::Negator),
    k("dont", W, Kind::Negator), k("didnt", W, Kind::Negator), k("hasnt", W, Kind::Negator),
    k("havent", W, Kind::Negator), k("wont", W, Kind::Negator), k("free of", W, Kind::Negator),
    k("may", W, Kind::Hedge), k("might", W, Kind::Hedge), k("could", W, Kind::Hedge),
    k("can", W, Kind::Hedge), k("potential", S, Kind::Hedge), k("possibl", S, Kind::Hedge),
    k("likely", W, Kind::Hedge), k("predict", S, Kind::Hedge), k("expected to", W, Kind::Hedge),
    k("will", W, Kind::Hedge), k("forecast", S, Kind::Hedge), k("approaching", W, Kind::Hedge),
    k("should", W, Kind::Hedge), k("if", W, Kind::Hedge), k("risk", S, Kind::Hedge),
    k("all", W, Kind::Whole), k("entire", W, Kind::Whole), k("every", W, Kind::Whole),
    k("whole", W, Kind::Whole), k("total", W, Kind::Whole), k("global", W, Kind::Whole),
    k("everything", W, Kind::Whole),
    k("some", W, Kind::Partial), k("one of", W, Kind::Partial), k("one or more", W, Kind::Partial),
    k("partial", S, Kind::Partial), k("single", W, Kind::Partial), k("a few", W, Kind::Partial),
    k("less than", W, Kind::Partial), k("at least one", W, Kind::Partial),
    k("left", W, Kind::Free), k("free", W, Kind::Free), k("available", W, Kind::Free),
    k("remaining", W, Kind::Free), k("is available", W, Kind::Free),
    k("critical", W, Kind::Hint(P1)), k("crit", W, Kind::Hint(P1)), k("severe", W, Kind::Hint(P1)),
    k("emergency", W, Kind::Hint(P0)), k("sev1", W, Kind::Hint(P1)), k("warning", W, Kind::Hint(P2)),
    k("warn", W, Kind::Hint(P2)), k("minor", W, Kind::Hint(P3)), k("info", W, Kind::Hint(P4)),
    k("notice", W, Kind::Hint(P4)),
    k("blocked", W, Kind::Mitigated), k("blocking", W, Kind::Mitigated),
    k("redacted", W, Kind::Mitigated), k("prevented", W, Kind::Mitigated), k("mitigated", W, Kind::Mitigated),
    k("attempt", S, Kind::Attempt), k("exceed", S, Kind::Exceeded), k("over budget", W, Kind::Exceeded), k("over the", W, Kind::Exceeded),
    // Subjects.
    subject("host", S, Subject::Infra), subject("node", S, Subject::Node), subject("machine", S, Subject::Infra),
    subject("vm", W, Subject::Infra), subject("virtual machine", S, Subject::Infra),
    subject("disk", S, Subject::Infra), subject("drive", S, Subject::Infra), subject("ssd", W, Subject::Infra),
    subject("filesystem", S, Subject::Infra), subject("file system", S, Subject::Infra),
    subject("volume", S, Subject::Infra), subject("inode", S, Subject::Infra), subject("raid", W, Subject::Infra),
    subject("osd", W, Subject::Infra), subject("object storage daemon", W, Subject::Infra),
    subject("memory", W, Subject::Infra), subject("ram", W, Subject::Infra), subject("swap", W, Subject::Infra),
    subject("cpu", S, Subject::Infra), subject("gpu", S, Subject::Infra), subject("cuda", W, Subject::Infra),
    subject("hardware", W, Subject::Infra), subject("fan", W, Subject::Infra), subject("power supply", W, Subject::Infra),
    subject("network interface", S, Subject::Infra), subject("interface", S, Subject::Infra),
    subject("nic", W, Subject::Infra), subject("bond", W, Subject::Infra), subject("switch", W, Subject::Infra),
    subject("router", W, Subject::Infra), subject("clock", W, Subject::Infra), subject("ntp", W, Subject::Infra),
    subject("kernel", W, Subject::Infra), subject("conntrack", W, Subject::Infra),
    subject("file descriptor", S, Subject::Infra), subject("edac", W, Subject::Infra),
    subject("sector", S, Subject::Infra), subject("kubelet", W, Subject::Infra),
    subject("persistent volume", S, Subject::Infra), subject("pvc", W, Subject::Infra),
    subject("exporter", S, Subject::Infra), subject("collector", S, Subject::Infra),
    subject("scrape", S, Subject::Infra), subject("tsdb", W, Subject::Infra), subject("wal", W, Subject::Infra),
    subject("checkpoint", S, Subject::Infra), subject("compaction", S, Subject::Infra),
    subject("configuration", S, Subject::Infra), subject("config", S, Subject::Infra),
    subject("snapshot", S, Subject::Infra), subject("plugin", S, Subject::Infra),
    subject("pod", S, Subject::Part), subject("container", S, Subject::Part),
    subject("stateful set", S, Subject::Part), subject("statefulset", S, Subject::Part),
    subject("daemon set", S, Subject::Part), subject("daemonset", S, Subject::Part),
    subject("replica", S, Subject::Part), subject("member", S, Subject::Part), subject("slave", S, Subject::Part),
    subject("worker", S, Subject::Part), subject("shard", S, Subject::Part), subject("target", S, Subject::Part),
    subject("agent", S, Subject::Part), subject("instance", S, Subject::Part), subject("server", S, Subject::Part),
    subject("process", S, Subject::Part), subject("job", S, Subject::Part), subject("task", S, Subject::Part),
    subject("bookie", S, Subject::Part), subject("thread", S, Subject::Part), subject("ingester", S, Subject::Part),
    subject("queue", S, Subject::Service),
    subject("service", S, Subject::Service), subject("api", S, Subject::Service), subject("endpoint", S, Subject::Service),
    subject("website", S, Subject::Service), subject("gateway", S, Subject::Service),
    subject("database", S, Subject::Service), subject("db", W, Subject::Service), subject("sql", S, Subject::Service),
    subject("sql server", W, Subject::Service), subject("postgre", S, Subject::Service), subject("mongo", S, Subject::Service),
    subject("redis", S, Subject::Service), subject("mysql", S, Subject::Service), subject("cassandra", S, Subject::Service),
    subject("elasticsearch", S, Subject::Service), subject("kafka", S, Subject::Service), subject("rabbit", S, Subject::Service),
    subject("zookeeper", S, Subject::Service), subject("etcd", W, Subject::Service), subject("consul", W, Subject::Service),
    subject("vault", W, Subject::Service), subject("nginx", W, Subject::Service), subject("apache", W, Subject::Service),
    subject("haproxy", W, Subject::Service), subject("ha proxy", W, Subject::Service), subject("traefik", W, Subject::Service),
    subject("backend", S, Subject::Service), subject("frontend", S, Subject::Service), subject("load balancer", S, Subject::Service),
    subject("ingress", S, Subject::Service), subject("dns", W, Subject::Service), subject("model", S, Subject::Service),
    subject("llm", S, Subject::Service), subject("inference", W, Subject::Service), subject("provider", S, Subject::Service),
    subject("embedding", S, Subject::Service), subject("request", S, Subject::Service), subject("queries", W, Subject::Service),
    subject("query", W, Subject::Service), subject("application", S, Subject::Service), subject("app", W, Subject::Service),
    subject("cluster", S, Subject::Service),
    subject("build", S, Subject::Delivery), subject("sync", S, Subject::Delivery),
    subject("secret", S, Subject::Secret), subject("api key", S, Subject::Secret), subject("access key", S, Subject::Secret),
    subject("credential", S, Subject::Secret), subject("password", S, Subject::Secret),
];

/// The automaton over [`KEYWORDS`], built once; pattern ids are table indexes.
pub(super) static AUTOMATON: LazyLock<KeywordAutomaton> = LazyLock::new(|| {
    let texts: Vec<&str> = KEYWORDS.iter().map(|keyword| keyword.text).collect();
    KeywordAutomaton::new(&texts)
});

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keywords_are_unique_and_already_normalised() {
        let mut seen = HashSet::new();
        for keyword in KEYWORDS {
            assert!(seen.insert(keyword.text), "`{}` is listed twice", keyword.text);
            assert!(
                keyword
                    .text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b" &%".contains(&b)),
                "`{}` is not written as normalised text",
                keyword.text
            );
        }
        // Each keyword alone is found whole, under its own index.
        for (index, keyword) in KEYWORDS.iter().enumerate() {
            let found: Vec<_> = AUTOMATON
                .find_iter(keyword.text.as_bytes())
                .map(|found| (found.pattern, found.start, found.end))
                .collect();
            assert_eq!(found, [(index, 0, keyword.text.len())], "`{}`", keyword.text);
        }
    }
}
