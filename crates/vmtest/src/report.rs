//! The guest's machine-readable output and its check on the host.
//!
//! Lines, one per check and one summary, each starting at a line start:
//!
//! ```text
//! QPCI-RESULT name=scan.victims status=pass detail=3 victims found
//! QPCI-MOVE dev=0000:01:00.0 virtio-pci -> vfio-pci -> virtio-pci
//! QPCI-SUMMARY passed=7 failed=0
//! ```
//!
//! `name` and `status` hold no spaces; `detail` is the rest of the line.
//! Kernel messages can interleave with the console output, so the reader
//! looks for the markers anywhere in a line and ignores everything else.

use std::fmt;

/// Marker of a check's result line.
pub const RESULT: &str = "QPCI-RESULT ";
/// Marker of the closing summary line.
pub const SUMMARY: &str = "QPCI-SUMMARY ";
/// Marker of a driver-move line (informational, echoed by the host).
pub const MOVE: &str = "QPCI-MOVE ";
/// Marker of a timing line (informational, echoed by the host).
pub const TIMING: &str = "QPCI-TIMING ";

/// Every check the guest must report as passed for the stage to pass.
pub const EXPECTED: &[&str] = &[
    "guest.safety",
    "scan.count",
    "scan.sysfs",
    "scan.victims",
    "scan.iommu",
    "scan.reset",
    "modalias.resolve",
    "engine.virtio",
    "engine.nvme",
    "engine.idempotent",
    "engine.strict_reset",
    "engine.group",
    "engine.rollback",
    "engine.timing",
    "shell.bind",
];

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The check held.
    Pass,
    /// The check did not hold.
    Fail,
    /// The check could not run here (does not count as passed).
    Skip,
}

impl Status {
    /// The word in a result line.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }

    fn from_word(w: &str) -> Option<Self> {
        match w {
            "pass" => Some(Status::Pass),
            "fail" => Some(Status::Fail),
            "skip" => Some(Status::Skip),
            _ => None,
        }
    }
}

/// One check's result, as printed by the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultLine {
    /// The check's name, without spaces (`scan.count`).
    pub name: String,
    /// Its outcome.
    pub status: Status,
    /// Free text on one line.
    pub detail: String,
}

impl ResultLine {
    /// A result; spaces in `name` and line breaks in `detail` are replaced
    /// so the line always parses back.
    pub fn new(name: &str, status: Status, detail: &str) -> Self {
        Self {
            name: name.replace(char::is_whitespace, "_"),
            status,
            detail: detail.replace(['\n', '\r'], " | "),
        }
    }

    /// Parses the part of `line` from the [`RESULT`] marker on; `None` when
    /// there is no marker or the fields are malformed.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = &line[line.find(RESULT)? + RESULT.len()..];
        let rest = rest.trim_end();
        let (name, rest) = rest.strip_prefix("name=")?.split_once(' ')?;
        let (status, rest) = match rest.strip_prefix("status=")?.split_once(' ') {
            Some((s, r)) => (s, r),
            None => (rest.strip_prefix("status=")?, ""),
        };
        let detail = rest.strip_prefix("detail=").unwrap_or(rest);
        if name.is_empty() {
            return None;
        }
        Some(Self {
            name: name.to_owned(),
            status: Status::from_word(status)?,
            detail: detail.to_owned(),
        })
    }
}

impl fmt::Display for ResultLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{RESULT}name={} status={} detail={}",
            self.name,
            self.status.word(),
            self.detail
        )
    }
}

/// The closing summary counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl Summary {
    /// Parses the part of `line` from the [`SUMMARY`] marker on.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = &line[line.find(SUMMARY)? + SUMMARY.len()..];
        let mut passed = None;
        let mut failed = None;
        for field in rest.split_whitespace() {
            match field.split_once('=') {
                Some(("passed", n)) => passed = n.parse().ok(),
                Some(("failed", n)) => failed = n.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            passed: passed?,
            failed: failed?,
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SUMMARY}passed={} failed={}", self.passed, self.failed)
    }
}

/// What the host found in a guest's serial log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogReport {
    /// Every result line, in order.
    pub results: Vec<ResultLine>,
    /// Driver-move and timing lines, from their marker on.
    pub notes: Vec<String>,
    /// The summary, if the guest got that far.
    pub summary: Option<Summary>,
    /// Why the log does not pass; empty when it does.
    pub problems: Vec<String>,
    /// Checks that failed, were skipped or are missing (a subset of the
    /// problems: the summary's own problems are not counted).
    pub failed_checks: usize,
}

impl LogReport {
    /// `true` when every expected check passed and nothing failed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads a serial log and checks it: every name in `expected` has a result
/// line and all of them passed, no check failed, and the summary is present
/// and agrees with the lines.
pub fn check_log(log: &str, expected: &[&str]) -> LogReport {
    let mut report = LogReport::default();
    for line in log.lines() {
        if let Some(r) = ResultLine::parse(line) {
            report.results.push(r);
        } else if let Some(s) = Summary::parse(line) {
            report.summary = Some(s);
        } else if let Some(i) = line.find(MOVE).or_else(|| line.find(TIMING)) {
            report.notes.push(line[i..].trim_end().to_owned());
        }
    }
    for name in expected {
        match report.results.iter().find(|r| r.name == *name) {
            None => report.problems.push(format!("{name}: no result line")),
            Some(r) if r.status != Status::Pass => {
                report
                    .problems
                    .push(format!("{name}: {} ({})", r.status.word(), r.detail))
            }
            Some(_) => {}
        }
    }
    for r in &report.results {
        if r.status == Status::Fail && !expected.contains(&r.name.as_str()) {
            report
                .problems
                .push(format!("{}: fail ({})", r.name, r.detail));
        }
    }
    report.failed_checks = report.problems.len();
    let passed = report
        .results
        .iter()
        .filter(|r| r.status == Status::Pass)
        .count();
    let failed = report
        .results
        .iter()
        .filter(|r| r.status == Status::Fail)
        .count();
    match report.summary {
        None => report
            .problems
            .push("no QPCI-SUMMARY line: the guest did not finish".to_owned()),
        Some(s) => {
            if s.failed != 0 {
                report
                    .problems
                    .push(format!("summary says {} failed", s.failed));
            }
            if u64::from(s.passed) != passed as u64 || u64::from(s.failed) != failed as u64 {
                report.problems.push(format!(
                    "summary ({s}) disagrees with the result lines (passed={passed} failed={failed})"
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_round_trips() {
        let r = ResultLine::new("scan count", Status::Pass, "3 devices\nok");
        let text = r.to_string();
        assert_eq!(
            text,
            "QPCI-RESULT name=scan_count status=pass detail=3 devices | ok"
        );
        assert_eq!(ResultLine::parse(&text), Some(r));
    }

    #[test]
    fn result_line_found_after_kernel_noise() {
        let r =
            ResultLine::parse("[    3.1] vfio-pci: QPCI-RESULT name=a status=fail detail=x=y z\r")
                .unwrap();
        assert_eq!(r.name, "a");
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.detail, "x=y z");
        let r = ResultLine::parse("QPCI-RESULT name=a status=skip").unwrap();
        assert_eq!(r.status, Status::Skip);
        assert_eq!(r.detail, "");
    }

    #[test]
    fn malformed_lines_are_not_results() {
        for bad in [
            "QPCI-RESULT",
            "QPCI-RESULT name= status=pass detail=",
            "QPCI-RESULT name=a status=maybe detail=",
            "QPCI-RESULT status=pass name=a",
            "QPCI-RESULTname=a status=pass",
        ] {
            assert_eq!(ResultLine::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn summary_parses() {
        assert_eq!(
            Summary::parse("x QPCI-SUMMARY passed=7 failed=1"),
            Some(Summary {
                passed: 7,
                failed: 1
            })
        );
        assert_eq!(Summary::parse("QPCI-SUMMARY passed=7"), None);
        assert_eq!(Summary::parse("QPCI-SUMMARY passed=x failed=0"), None);
    }

    const GOOD: &str = "boot noise\n\
        QPCI-RESULT name=a status=pass detail=fine\n\
        QPCI-MOVE dev=0000:01:00.0 virtio-pci -> vfio-pci -> virtio-pci\n\
        QPCI-RESULT name=b status=pass detail=\n\
        QPCI-RESULT name=c status=skip detail=no engine\n\
        QPCI-SUMMARY passed=2 failed=0\n";

    #[test]
    fn good_log_passes_and_keeps_notes() {
        let r = check_log(GOOD, &["a", "b"]);
        assert!(r.passed(), "{:?}", r.problems);
        assert_eq!(r.results.len(), 3);
        assert_eq!(r.notes.len(), 1);
    }

    #[test]
    fn skipped_or_missing_expected_check_fails() {
        let r = check_log(GOOD, &["a", "c"]);
        assert_eq!(r.problems, ["c: skip (no engine)"]);
        assert_eq!(r.failed_checks, 1);
        let r = check_log(GOOD, &["a", "d"]);
        assert_eq!(r.problems, ["d: no result line"]);
    }

    #[test]
    fn unexpected_failure_and_truncated_log_fail() {
        let log = GOOD.replace("name=b status=pass", "name=b status=fail");
        let r = check_log(&log, &["a"]);
        assert!(r.problems.iter().any(|p| p.starts_with("b: fail")));
        assert!(r.problems.iter().any(|p| p.contains("disagrees")));
        let cut = GOOD.lines().take(3).collect::<Vec<_>>().join("\n");
        let r = check_log(&cut, &["a"]);
        assert!(r.problems.iter().any(|p| p.contains("did not finish")));
        assert!(!check_log("", &[]).passed());
    }
}
