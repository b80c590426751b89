//! What PostgreSQL's parse tree says about a statement: may it run on a
//! replica as a plain read? Walks the tree as JSON (every field, every
//! depth), so nothing the parser saw is skipped.

use serde_json::Value;

/// How calls of functions are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Functions {
    /// The classifier's default: only functions with side effects (the
    /// list below, written from PostgreSQL's documentation, independent of
    /// the classifier's own list) make a statement unsafe.
    SideEffects,
    /// `strict_functions = true`: every function not known read-only
    /// (`SAFE_FUNCTIONS`, unqualified or under `pg_catalog`).
    KnownReadOnly,
}

/// PostgreSQL 15 built-ins that write, lock, change session state, act on
/// the server that runs them or fail during recovery ("System
/// Administration Functions", "Sequence Manipulation Functions", "Advisory
/// Lock Functions", "Large Objects", "Index Maintenance", ...). A trailing
/// `*` is a prefix.
const SIDE_EFFECTS: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "setseed",
    "set_config",
    "pg_notify",
    "pg_advisory_lock*",
    "pg_advisory_unlock*",
    "pg_advisory_xact_lock*",
    "pg_try_advisory_*",
    "lo_import",
    "lo_export",
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_open",
    "lo_close",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    "lo_truncate64",
    "lo_lseek",
    "lo_lseek64",
    "lo_tell",
    "lo_tell64",
    "lowrite",
    "loread",
    "txid_current",
    "pg_current_xact_id",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_walfile_name",
    "pg_walfile_name_offset",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_peek_binary_changes",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_replication_origin_session_setup",
    "pg_replication_origin_session_reset",
    "pg_replication_origin_xact_setup",
    "pg_replication_origin_xact_reset",
    "pg_replication_origin_advance",
    "pg_promote",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_stat_reset_subscription_stats",
    "pg_stat_statements_reset",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_import_system_collations",
    "brin_summarize_new_values",
    "brin_summarize_range",
    "brin_desummarize_range",
    "gin_clean_pending_list",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_disconnect",
    "dblink_open",
    "dblink_send_query",
];

fn side_effect(name: &str) -> bool {
    SIDE_EFFECTS.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

/// Statements that may be a replica read when nothing inside them is unsafe.
const READ_STATEMENTS: &[&str] = &["SelectStmt", "VariableShowStmt", "ExplainStmt"];

/// Statements that write when found at any depth (data-modifying CTEs,
/// EXPLAIN ANALYZE of a write, ...).
const WRITE_NODES: &[&str] = &["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"];

/// `Some(reason)` when the statement must not be classified as a read.
pub fn unsafe_reason(stmt: &Value, functions: Functions) -> Option<String> {
    let node = stmt.get("stmt")?.get("node")?;
    let (kind, body) = node.as_object()?.iter().next()?;
    if kind == "CopyStmt" {
        if let Some(r) = copy_reason(body) {
            return Some(r);
        }
    } else if !READ_STATEMENTS.contains(&kind.as_str()) {
        return Some(format!("statement {kind}"));
    }
    let mut reason = None;
    walk(node, &mut |key, v| {
        if reason.is_some() {
            return;
        }
        reason = judge(key, v, functions);
    });
    reason
}

/// `COPY .. TO STDOUT` reads; from a client, to a server file or a
/// program it does not.
fn copy_reason(copy: &Value) -> Option<String> {
    let from = copy.get("is_from").and_then(Value::as_bool).unwrap_or(true);
    let program = copy
        .get("is_program")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let file = copy.get("filename").and_then(Value::as_str).unwrap_or("x");
    (from || program || !file.is_empty()).then(|| "COPY other than TO STDOUT".into())
}

/// One node of the tree, by the key it appears under.
fn judge(key: &str, v: &Value, functions: Functions) -> Option<String> {
    if WRITE_NODES.contains(&key) {
        return Some(format!("data-modifying {key}"));
    }
    match key {
        "locking_clause" if v.as_array().is_some_and(|a| !a.is_empty()) => {
            Some("locking clause (FOR UPDATE/SHARE)".into())
        }
        "into_clause" if !v.is_null() => Some("SELECT INTO".into()),
        "RangeVar" => {
            let schema = v.get("schemaname").and_then(Value::as_str).unwrap_or("");
            let persistence = v.get("relpersistence").and_then(Value::as_str);
            (schema.to_ascii_lowercase().starts_with("pg_temp") || persistence == Some("t"))
                .then(|| "temporary object".into())
        }
        "FuncCall" => function_reason(v, functions),
        _ => None,
    }
}

/// `CoercionForm::COERCE_SQL_SYNTAX`: a call the grammar made from SQL
/// syntax (`AT TIME ZONE`, `SIMILAR TO`, `COLLATION FOR`, `EXTRACT`, ...),
/// always a read-only built-in.
const SQL_SYNTAX: i64 = 4;

fn function_reason(call: &Value, functions: Functions) -> Option<String> {
    if call.get("funcformat").and_then(Value::as_i64) == Some(SQL_SYNTAX) {
        return None;
    }
    let parts: Vec<&str> = call
        .get("funcname")?
        .as_array()?
        .iter()
        .filter_map(|n| n.pointer("/node/String/sval").and_then(Value::as_str))
        .collect();
    let (name, schema) = match parts.as_slice() {
        [] => return None,
        [.., s, n] => (*n, Some(*s)),
        [n] => (*n, None),
    };
    let lower = name.to_ascii_lowercase();
    let bad = match functions {
        Functions::SideEffects => side_effect(&lower),
        // The grammar writes `x SIMILAR TO y` as a call of
        // pg_catalog.similar_to_escape (without the SQL-syntax mark).
        Functions::KnownReadOnly
            if schema == Some("pg_catalog") && lower == "similar_to_escape" =>
        {
            false
        }
        Functions::KnownReadOnly => {
            schema.is_some_and(|s| s != "pg_catalog")
                || causeway_routing::classify::SAFE_FUNCTIONS
                    .binary_search(&lower.as_str())
                    .is_err()
        }
    };
    bad.then(|| format!("call of {}", parts.join(".")))
}

/// Calls `f(key, value)` for every object member at every depth.
fn walk(v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                f(k, child);
                walk(child, f);
            }
        }
        Value::Array(a) => {
            for child in a {
                walk(child, f);
            }
        }
        _ => {}
    }
}
