//! Renders a filled snapshot and checks the exposition.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use causeway_metrics::{render, Format, HistogramSnapshot, Snapshot};
use common::filled_snapshot;

fn openmetrics() -> String {
    render(filled_snapshot(), Format::OpenMetrics).expect("render")
}

fn classic() -> String {
    render(filled_snapshot(), Format::Text).expect("render")
}

fn has_line(out: &str, line: &str) -> bool {
    out.lines().any(|l| l == line)
}

#[track_caller]
fn assert_line(out: &str, line: &str) {
    assert!(has_line(out, line), "missing line {line:?} in:\n{out}");
}

#[test]
fn openmetrics_lines() {
    let out = openmetrics();
    for line in [
        "# TYPE causeway_queries counter",
        "causeway_queries_total{database=\"app\"} 3",
        "causeway_queries_total{database=\"reports\"} 0",
        "causeway_transactions_total{database=\"app\"} 1",
        "causeway_server_assignments_total{database=\"app\"} 2",
        "# TYPE causeway_received_bytes counter",
        "# UNIT causeway_received_bytes bytes",
        "causeway_received_bytes_total{database=\"app\"} 4096",
        "causeway_sent_bytes_total{database=\"app\"} 8192",
        "causeway_client_parses_total{database=\"app\"} 5",
        "causeway_server_parses_total{database=\"app\"} 2",
        "causeway_binds_total{database=\"app\"} 7",
        // Histograms: 1 ms, 2 ms, 30 ms.
        "# TYPE causeway_query_duration_seconds histogram",
        "# UNIT causeway_query_duration_seconds seconds",
        "causeway_query_duration_seconds_count{database=\"app\"} 3",
        "causeway_query_duration_seconds_sum{database=\"app\"} 0.033",
        "causeway_query_duration_seconds_bucket{le=\"0.0005\",database=\"app\"} 0",
        "causeway_query_duration_seconds_bucket{le=\"0.001\",database=\"app\"} 1",
        "causeway_query_duration_seconds_bucket{le=\"0.0025\",database=\"app\"} 2",
        "causeway_query_duration_seconds_bucket{le=\"0.025\",database=\"app\"} 2",
        "causeway_query_duration_seconds_bucket{le=\"0.05\",database=\"app\"} 3",
        "causeway_query_duration_seconds_bucket{le=\"+Inf\",database=\"app\"} 3",
        "causeway_transaction_duration_seconds_count{database=\"app\"} 1",
        // 50 us and 12 s: first bucket and +Inf only.
        "causeway_client_wait_seconds_bucket{le=\"0.0001\",database=\"app\"} 1",
        "causeway_client_wait_seconds_bucket{le=\"10.0\",database=\"app\"} 1",
        "causeway_client_wait_seconds_bucket{le=\"+Inf\",database=\"app\"} 2",
        "causeway_client_wait_seconds_count{database=\"reports\"} 0",
        // Client counts summed over the primary and replica pools.
        "causeway_client_connections{database=\"app\",user=\"alice\",state=\"active\"} 8",
        "causeway_client_connections{database=\"app\",user=\"alice\",state=\"waiting\"} 2",
        "causeway_client_connections{database=\"app\",user=\"alice\",state=\"idle\"} 5",
        "causeway_client_maxwait_seconds{database=\"app\",user=\"alice\"} 1.5",
        "causeway_server_connections{database=\"app\",user=\"alice\",server=\"10.0.0.1:5432\",role=\"primary\",state=\"active\"} 3",
        "causeway_server_connections{database=\"app\",user=\"alice\",server=\"10.0.0.1:5432\",role=\"primary\",state=\"tested\"} 1",
        "causeway_server_connections{database=\"app\",user=\"alice\",server=\"10.0.0.2:5432\",role=\"replica\",state=\"login\"} 1",
        "causeway_pool_size{database=\"app\",user=\"alice\",server=\"10.0.0.2:5432\",role=\"replica\"} 20",
        // Label values are escaped.
        "causeway_client_connections{database=\"reports\",user=\"we\\\"ird\\\\user\",state=\"active\"} 1",
        "causeway_server_up{database=\"app\",server=\"10.0.0.1:5432\"} 1",
        "causeway_server_up{database=\"reports\",server=\"10.0.0.3:5432\"} 0",
        "causeway_server_role{database=\"app\",server=\"10.0.0.2:5432\",role=\"replica\"} 1",
        "causeway_server_role{database=\"reports\",server=\"10.0.0.3:5432\",role=\"unknown\"} 1",
        "causeway_server_banned{database=\"app\",server=\"10.0.0.2:5432\"} 1",
        "causeway_server_in_flight{database=\"app\",server=\"10.0.0.2:5432\"} 5",
        "causeway_server_weight{database=\"app\",server=\"10.0.0.2:5432\"} 2",
        "causeway_replica_replay_lsn{database=\"app\",server=\"10.0.0.2:5432\"} 6093753672",
        "causeway_replica_lag_bytes{database=\"app\",server=\"10.0.0.2:5432\"} 1024",
        "causeway_replica_lag_seconds{database=\"app\",server=\"10.0.0.2:5432\"} 0.5",
        "causeway_routing_decisions_total{database=\"app\",target=\"primary\",reason=\"write\"} 15",
        "causeway_tls_handshakes_total{side=\"client\",result=\"ok\"} 40",
        "causeway_tls_handshakes_total{side=\"server\",result=\"bad_certificate\"} 2",
        "causeway_routing_decisions_total{database=\"app\",target=\"primary\",reason=\"retry_25006\"} 1",
        "causeway_routing_decisions_total{database=\"app\",target=\"replica\",reason=\"read\"} 90",
        "causeway_ryw_token_advances_total{database=\"app\"} 12",
        "causeway_ryw_wait_seconds_bucket{le=\"0.0025\",database=\"app\"} 0",
        "causeway_ryw_wait_seconds_bucket{le=\"0.005\",database=\"app\"} 1",
        "causeway_ryw_wait_seconds_count{database=\"app\"} 1",
        "causeway_ryw_fallbacks_total{database=\"app\"} 2",
        "causeway_ryw_errors_total{database=\"app\"} 1",
        "causeway_clients 14",
        "causeway_max_client_conn 1000",
        "causeway_uptime_seconds 3600.5",
    ] {
        assert_line(&out, line);
    }
    assert_eq!(out.lines().last(), Some("# EOF"));
}

#[test]
fn none_and_non_finite_values_are_omitted() {
    let out = openmetrics();
    // The primary has no replay LSN / lag; the unknown server's lag is NaN.
    for l in out.lines() {
        if l.starts_with("causeway_replica_") {
            assert!(l.contains("10.0.0.2:5432"), "unexpected series {l:?}");
        }
    }
    assert!(!out.contains("NaN"), "{out}");
    assert!(!out.contains("inf\n") && !out.contains(" inf"), "{out}");
}

#[test]
fn no_duplicate_series_and_sorted_families_once() {
    let out = openmetrics();
    let mut seen = std::collections::HashSet::new();
    let mut types = std::collections::HashSet::new();
    for l in out.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(types.insert(name.to_string()), "family {name} twice");
        } else if !l.starts_with('#') {
            let series = l.rsplit_once(' ').unwrap().0;
            assert!(seen.insert(series.to_string()), "duplicate series {series}");
        }
    }
    assert!(types.len() >= 30, "{} families", types.len());
}

#[test]
fn every_documented_series_is_present() {
    let out = openmetrics();
    let exporter_src = include_str!("../src/exporter.rs");
    let documented: Vec<&str> = exporter_src
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `causeway_"))
        .map(|l| l.split('`').next().unwrap())
        .collect();
    assert!(documented.len() >= 30);
    for name in documented {
        let full = format!("causeway_{name}");
        assert!(
            out.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(&full)),
            "documented series {full} not rendered"
        );
    }
}

#[test]
fn classic_format_names_counters_with_total() {
    let out = classic();
    assert_line(&out, "# TYPE causeway_queries_total counter");
    assert_line(&out, "# HELP causeway_queries_total Queries finished.");
    assert_line(&out, "causeway_queries_total{database=\"app\"} 3");
    assert_line(&out, "# TYPE causeway_query_duration_seconds histogram");
    assert_line(&out, "# TYPE causeway_clients gauge");
    assert!(!out.contains("# UNIT") && !out.contains("# EOF"), "{out}");
    // Same samples as the OpenMetrics rendering.
    let samples = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(samples(&out), samples(&openmetrics()));
}

#[test]
fn empty_snapshot_renders_only_process_series() {
    let out = render(Snapshot::default(), Format::OpenMetrics).unwrap();
    let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        samples,
        [
            "causeway_clients 0",
            "causeway_max_client_conn 0",
            "causeway_uptime_seconds 0.0"
        ]
    );
}

#[test]
fn histogram_without_buckets_still_valid() {
    let mut snap = Snapshot::default();
    let mut row = causeway_metrics::DbStats::default().row("x");
    row.query = HistogramSnapshot {
        buckets: vec![],
        sum_seconds: 2.0,
        count: 4,
    };
    snap.databases.push(row);
    let out = render(snap, Format::OpenMetrics).unwrap();
    assert_line(
        &out,
        "causeway_query_duration_seconds_bucket{le=\"+Inf\",database=\"x\"} 4",
    );
    assert_line(
        &out,
        "causeway_query_duration_seconds_count{database=\"x\"} 4",
    );
}

fn promtool_available() -> bool {
    Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `None` when promtool may be skipped; panics when it is missing otherwise.
fn require_promtool() -> Option<()> {
    if promtool_available() {
        return Some(());
    }
    if std::env::var("CAUSEWAY_SKIP_PROMTOOL").as_deref() == Ok("1") {
        eprintln!("promtool not found; skipped (CAUSEWAY_SKIP_PROMTOOL=1)");
        return None;
    }
    panic!(
        "promtool not found on PATH: install it (Debian: `apt-get install -y prometheus`) \
         or set CAUSEWAY_SKIP_PROMTOOL=1 to skip this check"
    );
}

fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut msg = String::from_utf8_lossy(&out.stdout).into_owned();
    msg.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), msg)
}

/// `promtool check metrics` parses the classic text format (what `/metrics`
/// serves to clients that do not ask for OpenMetrics) and lints names, help
/// texts and histogram structure.
#[test]
fn promtool_check_metrics_passes() {
    if require_promtool().is_none() {
        return;
    }
    let text = classic();
    let (ok, msg) = promtool_check_metrics(&text);
    assert!(
        ok && msg.trim().is_empty(),
        "promtool check metrics failed:\n{msg}\n---\n{text}"
    );
}

/// The check is not vacuous: promtool rejects a broken exposition.
#[test]
fn promtool_rejects_broken_output() {
    if require_promtool().is_none() {
        return;
    }
    let broken = classic().replace(
        "# TYPE causeway_queries_total counter",
        "# TYPE causeway_queries_total gauge",
    );
    let (ok, msg) = promtool_check_metrics(&broken);
    assert!(!ok, "promtool accepted a counter-named gauge:\n{msg}");
}

/// The OpenMetrics rendering (what Prometheus scrapes) through promtool's
/// strict OpenMetrics parser: `promtool tsdb create-blocks-from openmetrics`
/// wants `# EOF`, `# UNIT` names ending in their unit, valid syntax and
/// escaping. Backfilling needs timestamps, so the test appends one to every
/// sample.
#[test]
fn promtool_parses_openmetrics() {
    if require_promtool().is_none() {
        return;
    }
    let om = openmetrics();
    let stamped: String = om
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("{l}\n")
            } else {
                format!("{l} 1700000000\n")
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("metrics.om");
    std::fs::write(&input, &stamped).unwrap();
    let run = |input: &std::path::Path, out: &str| {
        Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(input)
            .arg(dir.path().join(out))
            .output()
            .expect("spawn promtool")
    };
    let out = run(&input, "blocks");
    assert!(
        out.status.success(),
        "promtool rejected the OpenMetrics output:\n{}{}\n---\n{om}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Not vacuous: the same parser rejects a unit that is not the suffix.
    let bad = dir.path().join("bad.om");
    std::fs::write(
        &bad,
        stamped.replace(
            "# UNIT causeway_received_bytes bytes",
            "# UNIT causeway_received_bytes seconds",
        ),
    )
    .unwrap();
    assert!(!run(&bad, "bad_blocks").status.success());
}
