//! Process metrics, read from `/proc/self` at each scrape, named as every Prometheus
//! client names them (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …).
//!
//! Where `/proc` is missing (not Linux) the collector writes nothing rather than zeros.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub struct ProcessCollector {
    /// None if the kernel would not say; then nothing is written rather than a guess.
    ticks_per_second: Option<f64>,
    /// When the process started (seconds since the epoch): read once, it never changes.
    start_time_seconds: Option<f64>,
}

impl ProcessCollector {
    pub fn new() -> Self {
        let ticks_per_second = clock_ticks_per_second();
        ProcessCollector {
            ticks_per_second,
            start_time_seconds: ticks_per_second.and_then(start_time_seconds),
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // Reading procfs is a few in-memory reads, cheap enough for the scrape's task.
        let (Some(ticks), Some(start_time)) = (self.ticks_per_second, self.start_time_seconds) else {
            return Ok(());
        };
        let Some(sample) = ProcessSample::read(ticks, start_time) else {
            return Ok(());
        };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        // The encoder appends `_total` to counters.
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                Some(sample.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                Some(sample.virtual_bytes),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                Some(sample.open_fds),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                sample.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                Some(sample.threads),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                Some(sample.start_time_seconds),
            ),
            (
                "process_uptime_seconds",
                "Seconds since the process started.",
                Some(sample.uptime_seconds),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessSample {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    /// None when the soft limit is `unlimited`.
    max_fds: Option<f64>,
    threads: f64,
    start_time_seconds: f64,
    uptime_seconds: f64,
}

impl ProcessSample {
    fn read(ticks_per_second: f64, start_time_seconds: f64) -> Option<ProcessSample> {
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| number_after(&limits, "Max open files"));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        Some(ProcessSample {
            cpu_seconds: (stat.user_ticks + stat.system_ticks) / ticks_per_second,
            resident_bytes: number_after(&status, "VmRSS:")? * 1024.0,
            virtual_bytes: stat.virtual_bytes,
            open_fds: open_fds as f64,
            max_fds,
            threads: stat.threads,
            start_time_seconds,
            uptime_seconds: (now - start_time_seconds).max(0.0),
        })
    }
}

struct Stat {
    user_ticks: f64,
    system_ticks: f64,
    threads: f64,
    start_ticks: f64,
    virtual_bytes: f64,
}

/// The fields of `/proc/self/stat` (proc(5)) after the command name, which may hold
/// spaces and parentheses, so the split starts after its last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // after_name starts with field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Option<f64> { fields.get(number - 3)?.parse().ok() };
    Some(Stat {
        user_ticks: field(14)?,
        system_ticks: field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
    })
}

/// The first number after `key` on the line that starts with it: `VmRSS:   1234 kB` of
/// `/proc/self/status`, `btime 1767225600` of `/proc/stat`, the soft limit of
/// `Max open files  1024  524288  files` of `/proc/self/limits` (None when `unlimited`).
fn number_after(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// When this process started, in seconds since the epoch: the machine's boot time plus
/// the process's start in clock ticks after it.
fn start_time_seconds(ticks_per_second: f64) -> Option<f64> {
    let boot_time = number_after(&std::fs::read_to_string("/proc/stat").ok()?, "btime ")?;
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some(boot_time + stat.start_ticks / ticks_per_second)
}

/// The unit of the CPU and start times in `/proc/self/stat`.
fn clock_ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf only reads a configuration value; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 17 0 123456 987654321 3000 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.user_ticks, 250.0);
        assert_eq!(stat.system_ticks, 50.0);
        assert_eq!(stat.threads, 17.0);
        assert_eq!(stat.start_ticks, 123_456.0);
        assert_eq!(stat.virtual_bytes, 987_654_321.0);
    }

    #[test]
    fn status_limits_and_boot_time_are_parsed() {
        assert_eq!(
            number_after("Name:\tx\nVmRSS:\t   20480 kB\nThreads:\t3\n", "VmRSS:"),
            Some(20_480.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(number_after(limits, "Max open files"), Some(1024.0));
        assert_eq!(
            number_after(
                "Max open files            unlimited            unlimited            files\n",
                "Max open files"
            ),
            None
        );
        assert_eq!(
            number_after("cpu  1 2 3\nbtime 1767225600\n", "btime "),
            Some(1_767_225_600.0)
        );
    }

    /// This process's CPU time as the C library counts it (microseconds, user + system).
    fn cpu_seconds_by_getrusage() -> f64 {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF always exists.
        let usage = unsafe {
            assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
            usage.assume_init()
        };
        let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
        seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    #[test]
    fn this_process_is_described() {
        let ticks = clock_ticks_per_second().expect("the kernel tells its clock tick");
        // Spin until the process has used some CPU, however loaded the machine is.
        let mut spins = 0_u64;
        while cpu_seconds_by_getrusage() < 0.2 {
            spins = std::hint::black_box(spins + 1);
        }
        let start_time = start_time_seconds(ticks).expect("procfs tells when the process started");
        let before = cpu_seconds_by_getrusage();
        let sample = ProcessSample::read(ticks, start_time).expect("procfs is readable");
        let after = cpu_seconds_by_getrusage();
        // procfs counts in clock ticks: allow a few either side.
        let slack = 3.0 / ticks;
        assert!(
            before - slack <= sample.cpu_seconds && sample.cpu_seconds <= after + slack,
            "{} s of CPU from procfs, {before}..{after} s from getrusage",
            sample.cpu_seconds
        );
        assert!(sample.resident_bytes > 0.0);
        assert!(sample.virtual_bytes >= sample.resident_bytes);
        assert!(sample.open_fds >= 3.0);
        assert!(sample.threads >= 1.0);
        assert!(sample.uptime_seconds < 3600.0);
    }
}
