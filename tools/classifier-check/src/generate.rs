//! Generated statements: every hazard PostgreSQL's parser can see, in the
//! shapes and spellings a lexer might miss (depth, comments between tokens,
//! case, quoting, schema qualification), plus read-only look-alikes.

/// Function calls with side effects, each as written in several ways.
const CALLS: &[&str] = &[
    "nextval('s')",
    "setval('s', 1)",
    "currval('s')",
    "lastval()",
    "setseed(0.5)",
    "set_config('a.b', '1', false)",
    "pg_notify('c', 'x')",
    "pg_advisory_lock(1)",
    "pg_try_advisory_xact_lock(1)",
    "pg_advisory_unlock_all()",
    "lo_create(0)",
    "lo_unlink(1)",
    "lo_import('/etc/hosts')",
    "txid_current()",
    "pg_current_xact_id()",
    "pg_current_wal_lsn()",
    "pg_walfile_name('0/0')",
    "pg_switch_wal()",
    "pg_create_restore_point('r')",
    "pg_logical_emit_message(true, 'p', 'm')",
    "pg_create_physical_replication_slot('s')",
    "pg_drop_replication_slot('s')",
    "pg_logical_slot_peek_changes('s', NULL, NULL)",
    "pg_replication_origin_create('o')",
    "pg_promote()",
    "pg_terminate_backend(1)",
    "pg_cancel_backend(1)",
    "pg_reload_conf()",
    "pg_stat_reset()",
    "pg_stat_reset_shared('bgwriter')",
    "pg_backup_start('l')",
    "pg_import_system_collations('pg_catalog')",
    "brin_summarize_new_values('i')",
    "brin_summarize_range('i', 0)",
    "gin_clean_pending_list('i')",
];

/// Ways to spell the call `name(args)`.
fn call_spellings(call: &str) -> Vec<String> {
    let (name, args) = call.split_once('(').unwrap_or((call, ")"));
    vec![
        call.to_string(),
        format!("pg_catalog.{call}"),
        format!("\"{name}\"({args}"),
        format!("{}({args}", name.to_uppercase()),
        format!("{name} /* c */ ({args}"),
        format!("{name}\n({args}"),
        format!("\"pg_catalog\".\"{name}\"({args}"),
        format!("PG_CATALOG.{}({args}", name.to_uppercase()),
    ]
}

/// Places an expression can hide in a SELECT.
const EXPR_SHAPES: &[&str] = &[
    "SELECT {}",
    "SELECT 1, {} AS x",
    "SELECT * FROM (SELECT {}) s",
    "SELECT (SELECT {})",
    "SELECT x FROM generate_series(1, 2) x WHERE x IS DISTINCT FROM (SELECT {})::text::int",
    "VALUES ({})",
    "SELECT * FROM t ORDER BY {}",
    "WITH c AS (SELECT {}) SELECT * FROM c",
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {}::int) SELECT * FROM c",
    "EXPLAIN ANALYZE SELECT {}",
    "SELECT CASE WHEN true THEN {} END",
    "SELECT * FROM {}",
    "SELECT * FROM t, LATERAL (SELECT {}) l",
    "SELECT coalesce(NULL, {})",
    "SELECT count(*) FILTER (WHERE {} IS NOT NULL) FROM t",
    "SELECT 1 UNION SELECT {}",
    "(SELECT {})",
    "SELECT * FROM t WHERE a IN (SELECT {})",
    "SELECT * FROM t GROUP BY a HAVING max({}) > 0",
    "SELECT row_number() OVER (ORDER BY {}) FROM t",
    "SELECT ARRAY[{}]",
    "SELECT {} -- trailing\n",
    "/* lead */ SELECT {}",
    "SELECT $$x$$, {}",
    "SELECT 'a''b', {}",
    "SELECT E'\\\\', {}",
];

/// Whole statements whose hazard is not a function call.
const STATEMENTS: &[&str] = &[
    // Locking reads.
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * FROM t FOR KEY SHARE",
    "SELECT * FROM t FOR UPDATE OF t NOWAIT",
    "SELECT * FROM t FOR UPDATE SKIP LOCKED",
    "SELECT * FROM t LIMIT 1 FOR UPDATE",
    "SELECT * FROM t FOR/**/UPDATE",
    "SELECT * FROM t FOR -- c\nUPDATE",
    "SELECT * FROM t for update",
    "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
    "WITH c AS (SELECT * FROM t FOR SHARE) SELECT * FROM c",
    "SELECT * FROM t WHERE a IN (SELECT a FROM t FOR KEY SHARE)",
    "(SELECT 1 FROM t FOR UPDATE) UNION ALL SELECT 2",
    "SELECT * FROM t FOR SHARE OF t FOR UPDATE OF t",
    "EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM t t2 FOR UPDATE)",
    // Data-modifying CTEs.
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i",
    "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u",
    "WITH a AS (SELECT 1), b AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT * FROM a",
    "WITH x AS MATERIALIZED (UPDATE t SET a = a RETURNING 1) SELECT 1",
    "WITH x AS NOT MATERIALIZED (DELETE FROM t) SELECT 1",
    "WITH RECURSIVE r AS (SELECT 1), d AS (DELETE FROM t) SELECT * FROM r",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d FOR UPDATE",
    "SELECT * FROM (WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d) s",
    "WITH /* c */ d AS (/* c */ DELETE FROM t) SELECT 1",
    "with d as (delete from t) select 1",
    "WITH \"select\" AS (DELETE FROM t RETURNING 1) SELECT * FROM \"select\"",
    "WITH m AS (MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE RETURNING 1) SELECT 1",
    "EXPLAIN ANALYZE WITH d AS (DELETE FROM t) SELECT 1",
    "EXPLAIN (ANALYZE) DELETE FROM t",
    "EXPLAIN (ANALYZE, BUFFERS) INSERT INTO t VALUES (1)",
    // SELECT INTO.
    "SELECT * INTO new_t FROM t",
    "SELECT 1 AS a INTO TEMP x",
    "SELECT 1 AS a INTO TEMPORARY TABLE x",
    "SELECT 1 AS a INTO UNLOGGED x",
    "SELECT * INTO TABLE x FROM t",
    "SELECT a INTO x FROM t UNION SELECT 1",
    "SELECT /* c */ 1 AS a /* c */ INTO /* c */ x",
    // Temporary objects.
    "SELECT * FROM pg_temp.t",
    "SELECT * FROM \"pg_temp\".t",
    "SELECT * FROM PG_TEMP.t",
    "SELECT * FROM pg_temp_3.t",
    "SELECT * FROM t JOIN pg_temp.u ON true",
    "SELECT * FROM t WHERE a IN (SELECT a FROM pg_temp.u)",
    "SELECT pg_temp.f()",
    // Session state and utility statements.
    "SET search_path = a",
    "SET LOCAL work_mem = '1MB'",
    "SET SESSION statement_timeout = 0",
    "SET ROLE r",
    "SET SESSION AUTHORIZATION u",
    "SET TIME ZONE 'UTC'",
    "SET default_transaction_read_only = on",
    "RESET ALL",
    "RESET search_path",
    "DISCARD ALL",
    "DISCARD TEMP",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "DEALLOCATE p",
    "DEALLOCATE ALL",
    "DECLARE c CURSOR FOR SELECT 1",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "FETCH c",
    "MOVE c",
    "CLOSE c",
    "LISTEN ch",
    "UNLISTEN *",
    "NOTIFY ch",
    "LOAD 'x'",
    "CALL p()",
    "DO $$BEGIN END$$",
    "LOCK TABLE t",
    "LOCK t IN ACCESS SHARE MODE",
    "VACUUM t",
    "ANALYZE t",
    "CLUSTER t",
    "REINDEX TABLE t",
    "REFRESH MATERIALIZED VIEW m",
    "CHECKPOINT",
    "GRANT SELECT ON t TO u",
    "COMMENT ON TABLE t IS 'x'",
    "SECURITY LABEL ON TABLE t IS 'x'",
    "IMPORT FOREIGN SCHEMA s FROM SERVER f INTO l",
    "REASSIGN OWNED BY a TO b",
    "CREATE TEMP TABLE x (a int)",
    "CREATE TABLE x AS SELECT 1",
    "CREATE MATERIALIZED VIEW m AS SELECT 1",
    "CREATE TEMP VIEW v AS SELECT 1",
    "ALTER TABLE t ADD COLUMN b int",
    "DROP TABLE t",
    "TRUNCATE t",
    "INSERT INTO t VALUES (1)",
    "INSERT INTO t SELECT * FROM t",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
    "COPY t FROM STDIN",
    "COPY t TO '/tmp/x'",
    "COPY (SELECT 1) TO PROGRAM 'cat'",
    "COPY (DELETE FROM t RETURNING 1) TO STDOUT",
    "EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1",
    "PREPARE TRANSACTION 'x'",
    "SECURITY LABEL FOR p ON TABLE t IS NULL",
    "ALTER SYSTEM SET work_mem = '1MB'",
    "CREATE SEQUENCE s",
    "SELECT 1; DELETE FROM t",
];

/// Read-only look-alikes: counted separately (a classifier may be
/// conservative about these; it must not be unsafe about the others).
const LOOK_ALIKES: &[&str] = &[
    "SELECT 'FOR UPDATE'",
    "SELECT 1 -- DELETE FROM t",
    "SELECT 1 /* INSERT INTO t */",
    "SELECT $$DELETE FROM t$$",
    "SELECT \"insert\" FROM t",
    "SELECT nextval_like(1)",
    "SELECT update FROM t",
    "SELECT * FROM t WHERE a = 'pg_temp.x'",
    "SELECT E'\\' FOR UPDATE'",
    "SELECT $q$ ; DELETE FROM t; $q$",
    "SELECT * FROM pg_catalog.pg_class",
    "WITH c AS (SELECT 1) SELECT * FROM c",
    "SELECT lower('NEXTVAL(1)')",
    "SHOW search_path",
    "EXPLAIN SELECT 1",
    "TABLE t",
    "VALUES (1), (2)",
];

/// Unsafe statements (expected never to be reads) and look-alikes.
pub fn statements() -> Vec<String> {
    let mut v = Vec::new();
    for call in CALLS {
        for spelling in call_spellings(call) {
            for shape in EXPR_SHAPES {
                v.push(shape.replace("{}", &spelling));
            }
        }
    }
    for s in STATEMENTS {
        v.push(s.to_string());
        v.push(format!("/* lead */ {s}"));
        v.push(format!("-- lead\n{s}"));
        v.push(format!("  \n\t{s}  "));
        v.push(s.to_lowercase());
        v.push(s.to_uppercase());
        v.push(format!("{s};"));
    }
    v.extend(LOOK_ALIKES.iter().map(|s| s.to_string()));
    v
}
