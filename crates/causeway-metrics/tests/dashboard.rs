//! The Grafana dashboard (docs/grafana/causeway.json) against the exporter:
//! every series its queries use is one the exporter renders, every query is
//! valid PromQL (promtool), and the JSON is a dashboard Grafana imports as
//! is (datasource chosen on import, variables defined, unique panel ids).

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use causeway_metrics::{render, Format};
use common::filled_snapshot;
use serde_json::Value;

const DASHBOARD: &str = include_str!("../../../docs/grafana/causeway.json");

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("docs/grafana/causeway.json is not valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p.get("panels").and_then(Value::as_array) {
            out.extend(nested);
        }
    }
    out
}

/// (panel id, refId, expr) of every query.
fn queries(d: &Value) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push((
                p["id"].as_u64().unwrap_or(0),
                t["refId"].as_str().unwrap_or("").to_string(),
                t["expr"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

/// Metric names (`causeway_...` identifiers) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("causeway_") {
        let start = i + at;
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        let mut end = start;
        while end < b.len() && word(b[end]) {
            end += 1;
        }
        if start == 0 || !word(b[start - 1]) {
            out.insert(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Sample names of a classic text exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_dashboard_series_is_exported() {
    let d = dashboard();
    let exported = sample_names(&render(filled_snapshot(), Format::Text).unwrap());
    let mut used = BTreeSet::new();
    for (id, r, expr) in queries(&d) {
        let names = metric_names(&expr);
        assert!(
            !names.is_empty(),
            "panel {id} {r}: no causeway series in {expr}"
        );
        for n in names {
            assert!(
                exported.contains(&n),
                "panel {id} {r}: {n} is not a series the exporter renders ({expr})"
            );
            used.insert(n);
        }
    }
    // Template variables query real series too.
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            for n in metric_names(q) {
                assert!(exported.contains(&n), "variable {}: {n}", v["name"]);
            }
        }
    }
    // Every family is on the dashboard (a new series gets a panel).
    let families: BTreeSet<String> = exported
        .iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .collect();
    let shown: BTreeSet<String> = used
        .iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .collect();
    let missing: Vec<_> = families.difference(&shown).collect();
    assert!(missing.is_empty(), "exported but on no panel: {missing:?}");
}

#[test]
fn metric_names_are_found() {
    let n = metric_names(
        "sum by (database) (rate(causeway_queries_total{x=\"causeway\"}[5m])) / causeway_pool_size",
    );
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        ["causeway_pool_size", "causeway_queries_total"]
    );
    assert!(metric_names("not_causeway_x + up").is_empty());
}

#[test]
fn dashboard_imports_as_is() {
    let d = dashboard();
    assert_eq!(d["uid"], "causeway");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some());
    let vars: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable, chosen on import"
    );
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for p in panels(&d) {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "panel {id} grid"
        );
        if p["type"] == "row" {
            continue;
        }
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        let refs: BTreeSet<_> = targets.iter().map(|t| t["refId"].as_str()).collect();
        assert_eq!(refs.len(), targets.len(), "panel {id}: refIds not unique");
        queried += 1;
    }
    assert!(queried >= 20, "{queried} panels with queries");
    // Every $variable an expression uses is defined (or Grafana's own).
    for (id, _, expr) in queries(&d) {
        for part in expr.split('$').skip(1) {
            let name: String = part
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                name.starts_with("__") || vars.contains(name.as_str()),
                "panel {id}: undefined variable ${name} in {expr}"
            );
        }
    }
}

/// Grafana's variables replaced by what they expand to for "All".
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$instance", ".*")
        .replace("$database", ".*")
}

/// promtool check rules on a file of recording rules with these exprs.
fn promtool_rules(exprs: &[(String, String)]) -> Option<(bool, String)> {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CAUSEWAY_SKIP_PROMTOOL").as_deref() == Ok("1") {
            eprintln!("promtool not found; PromQL check skipped (CAUSEWAY_SKIP_PROMTOOL=1)");
            return None;
        }
        panic!(
            "promtool not found on PATH: install it (Debian: `apt-get install -y prometheus`) \
             or set CAUSEWAY_SKIP_PROMTOOL=1 to skip this check"
        );
    }
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (record, expr) in exprs {
        // A JSON string is a valid YAML scalar.
        yaml.push_str(&format!(
            "      - record: {record}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("run promtool");
    let mut msg = String::from_utf8_lossy(&out.stdout).into_owned();
    msg.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), msg))
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs: Vec<(String, String)> = queries(&dashboard())
        .into_iter()
        .map(|(id, r, e)| (format!("causeway:dashboard:panel_{id}_{r}"), expand(&e)))
        .collect();
    let Some((ok, msg)) = promtool_rules(&exprs) else {
        return;
    };
    assert!(ok, "promtool rejects a dashboard query:\n{msg}");
    // Not vacuous: a broken expression is rejected.
    let (ok, _) = promtool_rules(&[(
        "causeway:dashboard:broken".into(),
        "sum(rate(causeway_queries_total[5m])".into(),
    )])
    .unwrap();
    assert!(!ok, "promtool accepted broken PromQL");
}
