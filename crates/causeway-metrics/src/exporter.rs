//! Prometheus exposition of a [`Snapshot`].
//!
//! # Library choice
//!
//! Encoding uses `prometheus-client` (0.25), the Prometheus project's own
//! Rust client (github.com/prometheus/client_rust), rather than the tikv
//! `prometheus` crate: it is maintained under the Prometheus organisation,
//! released regularly (0.25.x in 2026, with label-value escaping fixed in
//! 0.25.2), speaks OpenMetrics natively, and has a [`Collector`] API that
//! encodes at scrape time from whatever the caller hands it. The tikv crate
//! has had a single release since 2025, and its registry model wants
//! long-lived metric objects that we would have to mirror from our own
//! atomics. Causeway keeps its hot-path counters in its own atomics
//! ([`crate::DbStats`], [`crate::AtomicHistogram`]); the binary copies them
//! into a [`Snapshot`] at scrape time, and [`SnapshotCollector`] /
//! [`SourceCollector`] encode that with `ConstCounter`, `ConstGauge` and the
//! `MetricEncoder::encode_histogram` API (0.25 has no `ConstHistogram`).
//!
//! # Formats
//!
//! `prometheus-client` writes the OpenMetrics 1.0.0 text format
//! ([`Format::OpenMetrics`], `application/openmetrics-text; version=1.0.0;
//! charset=utf-8`): counter families are named without `_total` (the sample
//! carries it), `# UNIT` lines, a final `# EOF`. Prometheus asks for it in
//! its `Accept` header. Clients that do not (curl, older scrapers,
//! `promtool check metrics`, which parses only the classic format) get
//! [`Format::Text`], `text/plain; version=0.0.4; charset=utf-8`, derived from
//! the same output: counter HELP/TYPE lines take the `_total` name, `# UNIT`
//! and `# EOF` are dropped. Samples are identical in both.
//!
//! # Series
//!
//! Every series is left out when its source is `None` or a non-finite float;
//! a family with no series is left out entirely. Rows with the same label set
//! are merged (counts summed; for servers, databases and RYW rows the first
//! row wins), so the output never holds a duplicate series.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `causeway_clients` | gauge | | client connections open now |
//! | `causeway_max_client_conn` | gauge | | configured `max_client_conn` |
//! | `causeway_uptime_seconds` | gauge | | seconds since the process started |
//! | `causeway_server_assignments_total` | counter | database | times a client was given a server connection |
//! | `causeway_transactions_total` | counter | database | transactions finished |
//! | `causeway_queries_total` | counter | database | queries finished |
//! | `causeway_received_bytes_total` | counter | database | bytes received from clients |
//! | `causeway_sent_bytes_total` | counter | database | bytes sent to clients |
//! | `causeway_client_parses_total` | counter | database | Parse messages from clients (docs/prepared-statements.md) |
//! | `causeway_server_parses_total` | counter | database | Parse messages sent to servers, Causeway's own (prepare on demand) included |
//! | `causeway_binds_total` | counter | database | Bind messages from clients |
//! | `causeway_client_wait_seconds` | histogram | database | time a client waited for a server connection |
//! | `causeway_query_duration_seconds` | histogram | database | query duration |
//! | `causeway_transaction_duration_seconds` | histogram | database | transaction duration |
//! | `causeway_client_connections` | gauge | database, user, state=`active`\|`waiting`\|`idle` | logged-in client connections of a pool (summed over its server pools); SHOW POOLS `cl_active` = `active` + `idle` |
//! | `causeway_client_maxwait_seconds` | gauge | database, user | wait of the oldest waiting client |
//! | `causeway_client_pinned` | gauge | database, user | clients kept on their server by session state (`pin_session_state`) |
//! | `causeway_server_connections` | gauge | database, user, server, role, state=`active`\|`idle`\|`login`\|`tested` | server connections of a pool |
//! | `causeway_pool_size` | gauge | database, user, server, role | configured pool size |
//! | `causeway_server_up` | gauge | database, server | 1 when the monitor reaches the server |
//! | `causeway_server_role` | gauge | database, server, role | always 1; `role` is `primary`, `replica` or `unknown` |
//! | `causeway_server_banned` | gauge | database, server | 1 while the router keeps the server out of rotation |
//! | `causeway_server_in_flight` | gauge | database, server | statements currently routed to the server |
//! | `causeway_server_weight` | gauge | database, server | load-balancing weight |
//! | `causeway_monitor_login_error` | gauge | database, server | 1 while the lag monitor cannot log in to the server |
//! | `causeway_replica_replay_lsn` | gauge | database, server | replica's replay position (WAL byte offset); only when known |
//! | `causeway_replica_lag_bytes` | gauge | database, server | replica's replay lag in WAL bytes; only when known |
//! | `causeway_replica_lag_seconds` | gauge | database, server | replica's replay lag in seconds; only when known |
//! | `causeway_routing_decisions_total` | counter | database, target=`primary`\|`replica`, reason | routing decisions, by where and why (`write`, `hint`, `read`, `no_replica`, `retry_*`, `refused`, `ryw_fallback`, `stale_token`, `token_unknown`, `unbounded_read`, ...) |
//! | `causeway_ryw_token_advances_total` | counter | database | read-your-writes token advances |
//! | `causeway_ryw_wait_seconds` | histogram | database | time reads waited for a replica to reach the token |
//! | `causeway_ryw_fallbacks_total` | counter | database | reads sent to the primary because no replica caught up |
//! | `causeway_ryw_errors_total` | counter | database | errors while checking replica positions for read-your-writes |
//! | `causeway_tls_handshakes_total` | counter | side=`client`\|`server`, result | TLS handshakes, by side and result (`ok`, `plaintext_refused`, `server_refused`, `disabled`, `bad_certificate`, `incompatible`, `no_alpn`, `protocol`, `io`) |
//! | `causeway_ryw_position_queries_total` | counter | database | position queries the monitor ran for waiting reads |
//! | `causeway_ryw_forced_flushes_total` | counter | database | WAL flushes forced on the primary for reads waiting on `synchronous_commit = off` writes |
//!
//! Histograms use the buckets of [`crate::DURATION_BUCKETS`] (100 µs to
//! 10 s, then `+Inf`) unless the snapshot carries others.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::histogram::HistogramSnapshot;
use crate::snapshot::{DbRow, RywRow, ServerRow, Snapshot, Source, StatsTotals};

/// The two text formats `/metrics` can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text, what `prometheus-client` encodes.
    OpenMetrics,
    /// Classic Prometheus text format 0.0.4.
    Text,
}

impl Format {
    pub const OPENMETRICS_CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";
    pub const TEXT_CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    pub const fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => Self::OPENMETRICS_CONTENT_TYPE,
            Format::Text => Self::TEXT_CONTENT_TYPE,
        }
    }

    /// Picks the format for an `Accept` header: OpenMetrics when the client
    /// lists `application/openmetrics-text` with a q-value at least as high
    /// as any `text/plain`, `text/*` or `*/*` it lists; the classic format
    /// otherwise (including no header and a bare `*/*`).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut q_om: f32 = 0.0;
        let mut q_text: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let mut q: f32 = 1.0;
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                    }
                }
            }
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                q_om = q_om.max(q);
            } else if media.eq_ignore_ascii_case("text/plain")
                || media.eq_ignore_ascii_case("text/*")
                || media == "*/*"
            {
                q_text = q_text.max(q);
            }
        }
        if q_om > 0.0 && q_om >= q_text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// A [`Collector`] over one fixed [`Snapshot`].
#[derive(Debug, Clone, Default)]
pub struct SnapshotCollector(pub Snapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        encode_snapshot(&self.0, encoder)
    }
}

/// A [`Collector`] that asks its [`Source`] for a fresh [`Snapshot`] on each
/// scrape.
pub struct SourceCollector(pub Arc<dyn Source>);

impl fmt::Debug for SourceCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceCollector").finish_non_exhaustive()
    }
}

impl Collector for SourceCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.0.snapshot();
        encode_snapshot(&snapshot, encoder)
    }
}

/// A registry holding one [`SourceCollector`]; [`Exporter::render`] is a
/// scrape.
pub struct Exporter {
    registry: Registry,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    pub fn new(source: Arc<dyn Source>) -> Self {
        Self::with_collector(SourceCollector(source))
    }

    pub fn with_collector(collector: impl Collector) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        Self { registry }
    }

    /// Encodes everything the registry holds, in `format`.
    pub fn render(&self, format: Format) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(match format {
            Format::OpenMetrics => out,
            Format::Text => openmetrics_to_classic(&out),
        })
    }
}

/// Renders one snapshot (convenience for tests and one-off dumps).
pub fn render(snapshot: Snapshot, format: Format) -> Result<String, fmt::Error> {
    Exporter::with_collector(SnapshotCollector(snapshot)).render(format)
}

/// Turns `prometheus-client`'s OpenMetrics text into the classic 0.0.4
/// format: counter families are named with their `_total` sample name,
/// `# UNIT` and `# EOF` lines go. Relies on the encoder writing `# HELP`
/// right before `# TYPE`, which it always does; help texts here contain no
/// characters that the two formats escape differently (`"`).
pub fn openmetrics_to_classic(om: &str) -> String {
    let mut out = String::with_capacity(om.len() + 1024);
    let mut help: Option<(&str, &str)> = None;
    let flush_help = |out: &mut String, help: &mut Option<(&str, &str)>, suffix: &str| {
        if let Some((name, text)) = help.take() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push_str(suffix);
            out.push(' ');
            out.push_str(text);
            out.push('\n');
        }
    };
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, &mut help, "");
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, ty) = match ty {
                "counter" => ("_total", "counter"),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            match help {
                Some((help_name, _)) if help_name == name => {
                    flush_help(&mut out, &mut help, suffix)
                }
                _ => flush_help(&mut out, &mut help, ""),
            }
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(suffix);
            out.push(' ');
            out.push_str(ty);
            out.push('\n');
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            flush_help(&mut out, &mut help, "");
            out.push_str(line);
            out.push('\n');
        }
    }
    flush_help(&mut out, &mut help, "");
    out
}

static SECONDS: Unit = Unit::Seconds;
static BYTES: Unit = Unit::Bytes;

/// A classic histogram from a [`HistogramSnapshot`].
struct ConstHistogram<'a>(&'a HistogramSnapshot);

impl EncodeMetric for ConstHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let buckets = per_bucket(self.0);
        // The encoder re-accumulates: `count` must equal its `+Inf` value.
        let count = buckets.iter().fold(0u64, |a, (_, n)| a.wrapping_add(*n));
        let sum = if self.0.sum_seconds.is_finite() {
            self.0.sum_seconds
        } else {
            0.0
        };
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Cumulative `(le, count)` pairs to the per-bucket counts the encoder takes,
/// always ending with `+Inf`. Tolerates unsorted, NaN or non-monotonic input
/// from the binary without producing an invalid histogram.
fn per_bucket(h: &HistogramSnapshot) -> Vec<(f64, u64)> {
    let mut cum: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .copied()
        .filter(|(le, _)| !le.is_nan())
        .collect();
    cum.sort_by(|a, b| a.0.total_cmp(&b.0));
    cum.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = earlier.1.max(later.1);
            true
        } else {
            false
        }
    });
    if cum.last().map(|(le, _)| *le) != Some(f64::INFINITY) {
        let top = cum.last().map_or(0, |(_, c)| *c).max(h.count);
        cum.push((f64::INFINITY, top));
    }
    let mut prev = 0u64;
    cum.into_iter()
        .map(|(le, c)| {
            let n = c.saturating_sub(prev);
            prev = prev.max(c);
            (le, n)
        })
        .collect()
}

/// One family: descriptor, then one sample (set) per label set. Nothing at
/// all when `samples` is empty.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: &[(L, M)],
) -> fmt::Result {
    let Some((_, first)) = samples.first() else {
        return Ok(());
    };
    let mut metric = enc.encode_descriptor(name, help, unit, first.metric_type())?;
    for (labels, m) in samples {
        m.encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

/// A family with a single unlabelled sample.
fn single<M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    m: M,
) -> fmt::Result {
    let metric = enc.encode_descriptor(name, help, unit, m.metric_type())?;
    m.encode(metric)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

type DbCounter = (
    &'static str,
    &'static str,
    Option<&'static Unit>,
    fn(&StatsTotals) -> u64,
);

/// Per-database counters: (name without unit and `_total`, help, unit,
/// field).
const DB_COUNTERS: [DbCounter; 8] = [
    (
        "causeway_server_assignments",
        "Times a client was assigned a server connection.",
        None,
        |t| t.server_assignments,
    ),
    (
        "causeway_transactions",
        "Transactions finished.",
        None,
        |t| t.xacts,
    ),
    ("causeway_queries", "Queries finished.", None, |t| t.queries),
    (
        "causeway_received",
        "Bytes received from clients.",
        Some(&BYTES),
        |t| t.bytes_received,
    ),
    (
        "causeway_sent",
        "Bytes sent to clients.",
        Some(&BYTES),
        |t| t.bytes_sent,
    ),
    (
        "causeway_client_parses",
        "Parse messages received from clients.",
        None,
        |t| t.client_parses,
    ),
    (
        "causeway_server_parses",
        "Parse messages sent to servers.",
        None,
        |t| t.server_parses,
    ),
    (
        "causeway_binds",
        "Bind messages received from clients.",
        None,
        |t| t.binds,
    ),
];

type L1<'a> = [(&'static str, &'a str); 1];
type L2<'a> = [(&'static str, &'a str); 2];
type L3<'a> = [(&'static str, &'a str); 3];
type L4<'a> = [(&'static str, &'a str); 4];
type L5<'a> = [(&'static str, &'a str); 5];

#[derive(Default)]
struct ClientAgg {
    active: u64,
    waiting: u64,
    idle: u64,
    pinned: u64,
    maxwait: Option<f64>,
}

#[derive(Default)]
struct ServerPoolAgg {
    pool_size: u64,
    active: u64,
    idle: u64,
    login: u64,
    tested: u64,
}

/// Writes every family of `s` (see the module docs for the list).
pub fn encode_snapshot(s: &Snapshot, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
    let enc = &mut enc;

    // Process-wide.
    single(
        enc,
        "causeway_clients",
        "Client connections open now.",
        None,
        ConstGauge::new(s.clients_total),
    )?;
    single(
        enc,
        "causeway_max_client_conn",
        "Configured max_client_conn.",
        None,
        ConstGauge::new(s.max_client_conn),
    )?;
    if let Some(up) = finite(s.up_seconds) {
        single(
            enc,
            "causeway_uptime",
            "Seconds since the process started.",
            Some(&SECONDS),
            ConstGauge::new(up),
        )?;
    }

    // Per database.
    let mut dbs: BTreeMap<&str, &DbRow> = BTreeMap::new();
    for d in &s.databases {
        dbs.entry(d.name.as_str()).or_insert(d);
    }
    for (name, help, unit, field) in DB_COUNTERS {
        let samples: Vec<(L1, _)> = dbs
            .iter()
            .map(|(db, row)| ([("database", *db)], ConstCounter::new(field(&row.totals))))
            .collect();
        family(enc, name, help, unit, &samples)?;
    }
    type HistField = fn(&DbRow) -> &HistogramSnapshot;
    let db_hists: [(&str, &str, HistField); 3] = [
        (
            "causeway_client_wait",
            "Time clients waited for a server connection.",
            |r| &r.wait,
        ),
        ("causeway_query_duration", "Query duration.", |r| &r.query),
        (
            "causeway_transaction_duration",
            "Transaction duration.",
            |r| &r.xact,
        ),
    ];
    for (name, help, field) in db_hists {
        let samples: Vec<(L1, _)> = dbs
            .iter()
            .map(|(db, row)| ([("database", *db)], ConstHistogram(field(row))))
            .collect();
        family(enc, name, help, Some(&SECONDS), &samples)?;
    }

    // Pools.
    let mut clients: BTreeMap<(&str, &str), ClientAgg> = BTreeMap::new();
    let mut server_pools: BTreeMap<(&str, &str, &str, &str), ServerPoolAgg> = BTreeMap::new();
    for p in &s.pools {
        let c = clients
            .entry((p.database.as_str(), p.user.as_str()))
            .or_default();
        c.active = c.active.saturating_add(p.cl_active);
        c.waiting = c.waiting.saturating_add(p.cl_waiting);
        c.idle = c.idle.saturating_add(p.cl_idle);
        c.pinned = c.pinned.saturating_add(p.cl_pinned);
        if let Some(w) = finite(p.maxwait_seconds) {
            c.maxwait = Some(c.maxwait.map_or(w, |m| m.max(w)));
        }
        let sp = server_pools
            .entry((
                p.database.as_str(),
                p.user.as_str(),
                p.server.as_str(),
                p.role.as_str(),
            ))
            .or_default();
        sp.pool_size = sp.pool_size.max(p.pool_size);
        sp.active = sp.active.saturating_add(p.sv_active);
        sp.idle = sp.idle.saturating_add(p.sv_idle);
        sp.login = sp.login.saturating_add(p.sv_login);
        sp.tested = sp.tested.saturating_add(p.sv_tested);
    }
    let mut samples: Vec<(L3, ConstGauge<u64>)> = Vec::with_capacity(clients.len() * 3);
    for ((db, user), c) in &clients {
        for (state, v) in [
            ("active", c.active),
            ("waiting", c.waiting),
            ("idle", c.idle),
        ] {
            samples.push((
                [("database", db), ("user", user), ("state", state)],
                ConstGauge::new(v),
            ));
        }
    }
    family(
        enc,
        "causeway_client_connections",
        "Client connections of a pool, by state.",
        None,
        &samples,
    )?;
    let samples: Vec<(L2, _)> = clients
        .iter()
        .filter_map(|((db, user), c)| {
            c.maxwait
                .map(|w| ([("database", *db), ("user", *user)], ConstGauge::new(w)))
        })
        .collect();
    family(
        enc,
        "causeway_client_maxwait",
        "How long the oldest waiting client of a pool has waited.",
        Some(&SECONDS),
        &samples,
    )?;
    let samples: Vec<(L2, _)> = clients
        .iter()
        .map(|((db, user), c)| {
            (
                [("database", *db), ("user", *user)],
                ConstGauge::new(c.pinned),
            )
        })
        .collect();
    family(
        enc,
        "causeway_client_pinned",
        "Clients of a pool kept on their server by session state (pin_session_state).",
        None,
        &samples,
    )?;
    let mut samples: Vec<(L5, ConstGauge<u64>)> = Vec::with_capacity(server_pools.len() * 4);
    for ((db, user, server, role), p) in &server_pools {
        for (state, v) in [
            ("active", p.active),
            ("idle", p.idle),
            ("login", p.login),
            ("tested", p.tested),
        ] {
            samples.push((
                [
                    ("database", db),
                    ("user", user),
                    ("server", server),
                    ("role", role),
                    ("state", state),
                ],
                ConstGauge::new(v),
            ));
        }
    }
    family(
        enc,
        "causeway_server_connections",
        "Server connections of a pool, by state.",
        None,
        &samples,
    )?;
    let samples: Vec<(L4, _)> = server_pools
        .iter()
        .map(|((db, user, server, role), p)| {
            (
                [
                    ("database", *db),
                    ("user", *user),
                    ("server", *server),
                    ("role", *role),
                ],
                ConstGauge::new(p.pool_size),
            )
        })
        .collect();
    family(
        enc,
        "causeway_pool_size",
        "Configured size of a pool.",
        None,
        &samples,
    )?;

    // Servers.
    let mut servers: BTreeMap<(&str, &str), &ServerRow> = BTreeMap::new();
    for r in &s.servers {
        servers
            .entry((r.database.as_str(), r.server.as_str()))
            .or_insert(r);
    }
    let server_gauge = |f: &dyn Fn(&ServerRow) -> Option<u64>| -> Vec<(L2, ConstGauge<u64>)> {
        servers
            .iter()
            .filter_map(|((db, server), r)| {
                f(r).map(|v| ([("database", *db), ("server", *server)], ConstGauge::new(v)))
            })
            .collect()
    };
    family(
        enc,
        "causeway_server_up",
        "1 when the monitor reaches the server, else 0.",
        None,
        &server_gauge(&|r| Some(u64::from(r.up))),
    )?;
    let samples: Vec<(L3, _)> = servers
        .iter()
        .map(|((db, server), r)| {
            (
                [
                    ("database", *db),
                    ("server", *server),
                    ("role", r.role.as_str()),
                ],
                ConstGauge::new(1u64),
            )
        })
        .collect();
    family(
        enc,
        "causeway_server_role",
        "Always 1; the role label says whether the server is primary, replica or unknown.",
        None,
        &samples,
    )?;
    family(
        enc,
        "causeway_server_banned",
        "1 while the router keeps the server out of rotation, else 0.",
        None,
        &server_gauge(&|r| Some(u64::from(r.banned))),
    )?;
    family(
        enc,
        "causeway_server_in_flight",
        "Statements currently routed to the server.",
        None,
        &server_gauge(&|r| Some(r.in_flight)),
    )?;
    family(
        enc,
        "causeway_server_weight",
        "Load-balancing weight of the server.",
        None,
        &server_gauge(&|r| Some(u64::from(r.weight))),
    )?;
    family(
        enc,
        "causeway_monitor_login_error",
        "1 while the lag monitor cannot log in to the server (it is then routed by its configured role only).",
        None,
        &server_gauge(&|r| Some(u64::from(r.monitor_login_error))),
    )?;
    family(
        enc,
        "causeway_replica_replay_lsn",
        "Replay position of the replica, as a WAL byte offset.",
        None,
        &server_gauge(&|r| r.replay_lsn),
    )?;
    family(
        enc,
        "causeway_replica_lag",
        "Replay lag of the replica in WAL bytes.",
        Some(&BYTES),
        &server_gauge(&|r| r.lag_bytes),
    )?;
    let samples: Vec<(L2, _)> = servers
        .iter()
        .filter_map(|((db, server), r)| {
            r.lag_seconds
                .and_then(finite)
                .map(|v| ([("database", *db), ("server", *server)], ConstGauge::new(v)))
        })
        .collect();
    family(
        enc,
        "causeway_replica_lag",
        "Replay lag of the replica in seconds.",
        Some(&SECONDS),
        &samples,
    )?;

    // Routing.
    let mut routes: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for r in &s.routing {
        let n = routes
            .entry((r.database.as_str(), r.target.as_str(), r.reason.as_str()))
            .or_default();
        *n = n.saturating_add(r.count);
    }
    let samples: Vec<(L3, _)> = routes
        .iter()
        .map(|((db, target, reason), n)| {
            (
                [("database", *db), ("target", *target), ("reason", *reason)],
                ConstCounter::new(*n),
            )
        })
        .collect();
    family(
        enc,
        "causeway_routing_decisions",
        "Routing decisions, by target and reason.",
        None,
        &samples,
    )?;

    // Read-your-writes.
    let mut ryw: BTreeMap<&str, &RywRow> = BTreeMap::new();
    for r in &s.ryw {
        ryw.entry(r.database.as_str()).or_insert(r);
    }
    let ryw_counter = |f: fn(&RywRow) -> u64| -> Vec<(L1, ConstCounter<u64>)> {
        ryw.iter()
            .map(|(db, r)| ([("database", *db)], ConstCounter::new(f(r))))
            .collect()
    };
    family(
        enc,
        "causeway_ryw_token_advances",
        "Read-your-writes token advances.",
        None,
        &ryw_counter(|r| r.token_advances),
    )?;
    let samples: Vec<(L1, _)> = ryw
        .iter()
        .map(|(db, r)| ([("database", *db)], ConstHistogram(&r.waits)))
        .collect();
    family(
        enc,
        "causeway_ryw_wait",
        "Time reads waited for a replica to reach their read-your-writes token.",
        Some(&SECONDS),
        &samples,
    )?;
    family(
        enc,
        "causeway_ryw_fallbacks",
        "Reads sent to the primary because no replica reached the token in time.",
        None,
        &ryw_counter(|r| r.fallbacks),
    )?;
    family(
        enc,
        "causeway_ryw_position_queries",
        "Position queries the lag monitor ran for reads waiting on a replica or a bound (all servers).",
        None,
        &ryw_counter(|r| r.position_queries),
    )?;
    family(
        enc,
        "causeway_ryw_forced_flushes",
        "WAL flushes forced on the primary for reads waiting on synchronous_commit = off writes.",
        None,
        &ryw_counter(|r| r.forced_flushes),
    )?;
    family(
        enc,
        "causeway_ryw_errors",
        "Errors while checking replica positions for read-your-writes.",
        None,
        &ryw_counter(|r| r.errors),
    )?;

    // TLS.
    let mut tls: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for r in &s.tls {
        let n = tls.entry((r.side.as_str(), r.result.as_str())).or_default();
        *n = n.saturating_add(r.count);
    }
    let samples: Vec<(L2, _)> = tls
        .iter()
        .map(|((side, result), n)| {
            (
                [("side", *side), ("result", *result)],
                ConstCounter::new(*n),
            )
        })
        .collect();
    family(
        enc,
        "causeway_tls_handshakes",
        "TLS handshakes, by side (client, server) and result.",
        None,
        &samples,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        use Format::*;
        assert_eq!(Format::negotiate(None), Text);
        assert_eq!(Format::negotiate(Some("*/*")), Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Text);
        // Prometheus 2.x's scrape header.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            OpenMetrics
        );
        // Prometheus 3.x's, protobuf first (not offered here).
        assert_eq!(
            Format::negotiate(Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                 encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;\
                 escaping=allow-utf-8;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            )),
            OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2, text/plain;q=0.9")),
            Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Text
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text")),
            OpenMetrics
        );
    }

    #[test]
    fn per_bucket_repairs_input() {
        // Missing +Inf, unsorted, a NaN bound, a dip in the cumulative counts.
        let h = HistogramSnapshot {
            buckets: vec![(0.5, 3), (f64::NAN, 9), (0.1, 1), (1.0, 2)],
            sum_seconds: 1.0,
            count: 5,
        };
        assert_eq!(
            per_bucket(&h),
            vec![(0.1, 1), (0.5, 2), (1.0, 0), (f64::INFINITY, 2)]
        );
        // Empty snapshot: a lone +Inf bucket carrying the count.
        let h = HistogramSnapshot {
            buckets: vec![],
            sum_seconds: 0.0,
            count: 4,
        };
        assert_eq!(per_bucket(&h), vec![(f64::INFINITY, 4)]);
    }

    #[test]
    fn classic_conversion() {
        let om = "# HELP a_total_x Help.\n# TYPE a_total_x gauge\na_total_x 1\n\
                  # HELP c Counts.\n# TYPE c counter\nc_total{x=\"y\"} 2\n\
                  # HELP h_seconds Hist.\n# TYPE h_seconds histogram\n# UNIT h_seconds seconds\n\
                  h_seconds_sum 0.5\nh_seconds_count 1\nh_seconds_bucket{le=\"+Inf\"} 1\n# EOF\n";
        let want = "# HELP a_total_x Help.\n# TYPE a_total_x gauge\na_total_x 1\n\
                    # HELP c_total Counts.\n# TYPE c_total counter\nc_total{x=\"y\"} 2\n\
                    # HELP h_seconds Hist.\n# TYPE h_seconds histogram\n\
                    h_seconds_sum 0.5\nh_seconds_count 1\nh_seconds_bucket{le=\"+Inf\"} 1\n";
        assert_eq!(openmetrics_to_classic(om), want);
    }
}
