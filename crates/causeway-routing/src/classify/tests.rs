use super::lexer::{Kind, Lexer};
use super::*;

use Hazard as H;
use TxnControl as T;

fn r() -> Class<'static> {
    Class::Read
}

fn w(h: Hazard) -> Class<'static> {
    Class::Write(h)
}

fn wf(name: &str) -> Class<'static> {
    Class::Write(H::WritingFunction(name.into()))
}

fn t(c: TxnControl) -> Class<'static> {
    Class::Transaction(c)
}

fn begin(read_only: Option<bool>, isolation: Option<Isolation>) -> Class<'static> {
    t(T::Begin {
        read_only,
        isolation,
    })
}

fn set_txn(read_only: Option<bool>, isolation: Option<Isolation>) -> Class<'static> {
    t(T::SetTransaction {
        read_only,
        isolation,
    })
}

fn cw(c: CausewayCommand<'static>) -> Class<'static> {
    Class::Causeway(c)
}

/// Runs a table; reports every mismatch at once.
fn check(classifier: &Classifier, cases: &[(&str, Class<'static>)]) {
    let mut failures = Vec::new();
    for (sql, want) in cases {
        let got = classifier.classify(sql).class;
        if &got != want {
            failures.push(format!("{sql:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn reads() -> Vec<(&'static str, Class<'static>)> {
    vec![
        ("SELECT 1", r()),
        ("select 1", r()),
        ("SeLeCt 1;", r()),
        ("  SELECT 1 ;  ;; ", r()),
        ("VALUES (1)", r()),
        ("VALUES (1), (2)", r()),
        ("TABLE t", r()),
        ("(SELECT 1) UNION (SELECT 2)", r()),
        ("SELECT * FROM t WHERE a = $1", r()),
        ("SHOW search_path", r()),
        ("SHOW ALL", r()),
        ("SHOW causeway", r()),
        ("WITH a AS (SELECT 1) SELECT * FROM a", r()),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
            r(),
        ),
        ("WITH a AS MATERIALIZED (SELECT 1) SELECT * FROM a", r()),
        ("EXPLAIN SELECT 1", r()),
        ("EXPLAIN ANALYZE SELECT * FROM t", r()),
        ("EXPLAIN ANALYSE VERBOSE SELECT * FROM t", r()),
        ("EXPLAIN (ANALYZE, BUFFERS, FORMAT json) SELECT 1", r()),
        ("EXPLAIN (SELECT 1)", r()),
        ("COPY t TO STDOUT", r()),
        ("copy t to stdout with (format csv, header)", r()),
        ("COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", r()),
        ("COPY public.t (a, b) TO STDOUT", r()),
        ("COPY BINARY t TO STDOUT", r()),
        ("SELECT now(), count(*), coalesce(a, 0) FROM t", r()),
        ("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()", r()),
        ("SELECT current_setting('search_path')", r()),
        ("SELECT my_function(1)", r()),
        ("SELECT 1; SELECT 2", r()),
        ("SELECT 1; VALUES (2); TABLE t; SHOW x;", r()),
        (
            "SELECT * FROM t t1 JOIN u ON t1.id = u.id WHERE u.x IN (SELECT y FROM v)",
            r(),
        ),
        ("SELECT substring('abc' FROM 1 FOR 2)", r()),
        ("SELECT a FROM t ORDER BY a FETCH FIRST 1 ROWS ONLY", r()),
        ("SELECT ARRAY(SELECT 1)", r()),
        ("SELECT * FROM generate_series(1, 10) AS g(i)", r()),
        ("SELECT sum(a) OVER w FROM t WINDOW w AS (PARTITION BY b)", r()),
        ("SELECT x::numeric(10,2), CAST(y AS varchar(3)) FROM t", r()),
        ("SELECT 1.5e-3, .5, 0x1F, 1_000, 1e+5", r()),
        ("SELECT 1 FROM t WHERE a ~~ 'x' AND b <@ c AND d->>'k' = $2", r()),
        ("", r()),
        ("   ", r()),
        ("-- only a comment", r()),
        ("/* only a comment */", r()),
        (";", r()),
        (";;;", r()),
        // Names that look like hazards but are not.
        ("SELECT t.update, t.delete FROM t", r()),
        ("SELECT 1 AS delete", r()),
        ("SELECT update.x FROM tbl AS update", r()),
        ("SELECT nextval FROM t", r()),
        ("SELECT \"currval\" FROM t", r()),
        ("SELECT pg_temporal FROM t", r()),
        ("SELECT * FROM t WHERE for_update = 1 AND into_x = 2", r()),
    ]
}

fn lexing() -> Vec<(&'static str, Class<'static>)> {
    vec![
        // Keywords inside strings, dollar quotes, comments, quoted names.
        ("SELECT 'delete from t'", r()),
        ("SELECT 'it''s; DELETE FROM t'", r()),
        ("SELECT $$ delete from t $$", r()),
        ("SELECT $fn$ DROP TABLE t; $x$ $fn$", r()),
        ("SELECT $a$ $ab$ ; DELETE FROM t $a$", r()),
        ("SELECT 1 -- ; delete from t", r()),
        ("SELECT 1 --; delete from t\n, 2", r()),
        ("SELECT /* ; delete from t */ 1", r()),
        ("/* a /* b */ c */ SELECT 1", r()),
        ("SELECT /* a /* b; */ DELETE FROM t; */ 1", r()),
        ("SELECT \"update\" FROM t", r()),
        ("SELECT \"delete\"\"; DELETE FROM t\" FROM t", r()),
        ("SELECT x FROM \"for\" \"update\"", r()),
        ("SELECT 'nextval('", r()),
        ("SELECT 'x' FOR_x", r()),
        // E'' strings: backslash escapes.
        (r"SELECT E'\\'' DELETE'", r()),
        (r"SELECT E'\' DELETE FROM t; '", r()),
        (r"SELECT e'\\' , 1", r()),
        (r"SELECT E'\'' DELETE'", w(H::Unknown)),
        // Other string flavours.
        (r"SELECT U&'d\0061t\+000061; delete' FROM t", r()),
        ("SELECT B'101', X'1F', N'delete'", r()),
        ("SELECT a$b, $1 FROM t", r()),
        ("SELECT 1 /* x */ + /* y */ 2", r()),
        ("SELECT 1 +-- comment; DELETE\n 2", r()),
        // standard_conforming_strings = off would end the string at \'.
        (r"SELECT * FROM t WHERE p LIKE 'a\%'", r()),
        (r"SELECT 'a\', ' ; DELETE FROM t; -- '", w(H::Dml)),
        (r"SELECT 'C:\'", w(H::Unknown)),
        // Garbage and unterminated input.
        ("'abc", w(H::Unknown)),
        ("SELECT 'abc", w(H::Unknown)),
        ("SELECT \"abc", w(H::Unknown)),
        ("SELECT $$abc", w(H::Unknown)),
        ("SELECT $x$abc$y$", w(H::Unknown)),
        ("SELECT 1 /* x", w(H::Unknown)),
        ("SELECT 1 /* /* */", w(H::Unknown)),
        ("SELECT \"\" FROM t", w(H::Unknown)),
        ("SELECT U&\"\" FROM t", w(H::Unknown)),
        ("FROBNICATE t", w(H::Unknown)),
        ("42", w(H::Unknown)),
        ("\"select\" 1", w(H::Unknown)),
        ("SELECT (1", w(H::Unknown)),
        ("SELECT 1)", w(H::Unknown)),
        ("SELECT (1; SELECT 2)", w(H::Unknown)),
        // Glued to a number: PostgreSQL < 15 lexes `1` `FOR`.
        ("SELECT 1FOR UPDATE", w(H::LockingRead)),
        ("SELECT 1INTO t", w(H::SelectInto)),
    ]
}

fn writes() -> Vec<(&'static str, Class<'static>)> {
    vec![
        ("INSERT INTO t VALUES (1)", w(H::Dml)),
        ("insert into t select * from u", w(H::Dml)),
        ("UPDATE t SET a = 1", w(H::Dml)),
        ("DELETE FROM t", w(H::Dml)),
        (
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
            w(H::Dml),
        ),
        (
            "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2",
            w(H::Dml),
        ),
        ("INSERT INTO t (id) VALUES (nextval('s'))", w(H::Dml)),
        ("SELECT 1; DELETE FROM t", w(H::Dml)),
        ("SELECT 1 /* causeway:replica */; DELETE FROM t", w(H::Dml)),
        ("SELECT * FROM t; COPY t FROM STDIN", w(H::CopyFrom)),
        ("SELECT 1;\n-- trailing comment\n", r()),
        ("SELECT $q$it's$q$, 'delete'", r()),
        (
            "WITH a AS (SELECT 1) SELECT * FROM a FOR UPDATE",
            w(H::LockingRead),
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT 1",
            w(H::Ddl),
        ),
        ("DELETE FROM t; SELECT 1", w(H::Dml)),
        // Writing CTEs and DML after a WITH list.
        (
            "WITH a AS (UPDATE t SET x=1 RETURNING *) SELECT * FROM a",
            w(H::WritingCte),
        ),
        (
            "WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a",
            w(H::WritingCte),
        ),
        (
            "with a as not materialized (insert into t values (1) returning id) select id from a",
            w(H::WritingCte),
        ),
        (
            "WITH a AS (SELECT 1), b AS (MERGE INTO t USING a ON true WHEN NOT MATCHED THEN DO NOTHING RETURNING *) SELECT 1",
            w(H::WritingCte),
        ),
        (
            "WITH a AS (SELECT 1), b AS (WITH c AS (DELETE FROM t RETURNING 1) SELECT * FROM c) SELECT * FROM b",
            w(H::WritingCte),
        ),
        ("WITH a AS (SELECT 1) DELETE FROM t", w(H::Dml)),
        (
            "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a",
            w(H::Dml),
        ),
        // Locking reads, at any depth.
        ("SELECT * FROM t FOR UPDATE", w(H::LockingRead)),
        ("SELECT * FROM t FOR NO KEY UPDATE", w(H::LockingRead)),
        ("SELECT * FROM t FOR SHARE", w(H::LockingRead)),
        ("SELECT * FROM t FOR KEY SHARE SKIP LOCKED", w(H::LockingRead)),
        ("select * from t for update of t nowait", w(H::LockingRead)),
        ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", w(H::LockingRead)),
        (
            "WITH a AS (SELECT * FROM t FOR NO KEY UPDATE) SELECT * FROM a",
            w(H::LockingRead),
        ),
        (
            "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)",
            w(H::LockingRead),
        ),
        ("TABLE t FOR UPDATE", w(H::LockingRead)),
        // SELECT INTO.
        ("SELECT * INTO new_t FROM t", w(H::SelectInto)),
        ("SELECT * INTO UNLOGGED new_t FROM t", w(H::SelectInto)),
        ("SELECT * INTO TEMP new_t FROM t", w(H::TempTable)),
        ("SELECT * INTO LOCAL TEMPORARY new_t FROM t", w(H::TempTable)),
        // Writing functions anywhere.
        ("select nextval('s')", wf("nextval")),
        ("SELECT NEXTVAL('s')", wf("nextval")),
        ("SELECT pg_catalog.nextval('s')", wf("nextval")),
        ("SELECT \"pg_catalog\".\"nextval\"('s')", wf("nextval")),
        ("SELECT \"nextval\"('s')", wf("nextval")),
        ("SELECT nextval ('s')", wf("nextval")),
        ("SELECT nextval/* x */('s')", wf("nextval")),
        ("SELECT setval('s', 1)", wf("setval")),
        ("SELECT currval('s'), lastval()", wf("currval")),
        (
            "SELECT * FROM t WHERE id = (SELECT max(id) FROM u WHERE x = nextval('s'))",
            wf("nextval"),
        ),
        ("VALUES (nextval('s'))", wf("nextval")),
        ("SELECT * FROM nextval('s')", wf("nextval")),
        ("SELECT lo_import('/tmp/x')", wf("lo_import")),
        ("SELECT txid_current()", wf("txid_current")),
        ("SELECT pg_current_xact_id()", wf("pg_current_xact_id")),
        ("SELECT pg_current_wal_lsn()", wf("pg_current_wal_lsn")),
        (
            "SELECT dblink_exec('c', 'delete from t')",
            wf("dblink_exec"),
        ),
        (
            "SELECT pg_copy_logical_replication_slot('a', 'b')",
            wf("pg_copy_logical_replication_slot"),
        ),
        ("SELECT pg_promote()", wf("pg_promote")),
        ("SELECT pg_terminate_backend(123)", wf("pg_terminate_backend")),
        ("SELECT U&\"\\006Eextval\"('s')", w(H::Unknown)),
        ("SELECT U&\"!006Eextval\" UESCAPE '!' ('s')", w(H::Unknown)),
        // Advisory locks, settings, notify: they pin the session.
        ("SELECT pg_advisory_lock(1)", w(H::AdvisoryLock)),
        ("SELECT pg_try_advisory_xact_lock(1)", w(H::AdvisoryLock)),
        ("SELECT pg_advisory_unlock_all()", w(H::AdvisoryLock)),
        ("SELECT nextval('s'), pg_advisory_lock(1)", w(H::AdvisoryLock)),
        ("INSERT INTO t VALUES (pg_advisory_lock(1))", w(H::AdvisoryLock)),
        (
            "SELECT 1; DELETE FROM t; SELECT pg_advisory_lock(1)",
            w(H::AdvisoryLock),
        ),
        ("SELECT set_config('a.b', 'c', false)", w(H::SessionState)),
        ("SELECT pg_notify('ch', 'x')", w(H::ListenNotify)),
        // EXPLAIN is its statement.
        ("EXPLAIN ANALYZE DELETE FROM t", w(H::Dml)),
        ("EXPLAIN (ANALYZE) UPDATE t SET a = 1", w(H::Dml)),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", w(H::Dml)),
        ("EXPLAIN DELETE FROM t", w(H::Dml)),
        ("EXPLAIN ANALYZE SELECT nextval('s')", wf("nextval")),
        ("EXPLAIN SELECT * INTO x FROM t", w(H::SelectInto)),
        ("EXPLAIN", w(H::Unknown)),
        ("EXPLAIN (ANALYZE", w(H::Unknown)),
        ("EXPLAIN BEGIN", w(H::Unknown)),
        // COPY.
        ("COPY t FROM STDIN", w(H::CopyFrom)),
        ("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", w(H::CopyFrom)),
        ("COPY t FROM '/tmp/x.csv'", w(H::CopyFrom)),
        ("COPY t TO '/tmp/x.csv'", w(H::CopyToServer)),
        ("COPY t TO PROGRAM 'gzip > /tmp/x'", w(H::CopyToServer)),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", w(H::Dml)),
        ("COPY (SELECT nextval('s')) TO STDOUT", wf("nextval")),
        ("COPY pg_temp.t TO STDOUT", w(H::TempTable)),
        ("COPY t", w(H::Unknown)),
        ("COPY () TO STDOUT", w(H::Unknown)),
        // DDL and utilities.
        ("CREATE TABLE t (id int)", w(H::Ddl)),
        ("CREATE INDEX CONCURRENTLY i ON t (a)", w(H::Ddl)),
        (
            "CREATE TABLE t (id int DEFAULT nextval('s'))",
            w(H::Ddl),
        ),
        ("ALTER TABLE t ADD COLUMN b int", w(H::Ddl)),
        ("ALTER SYSTEM SET work_mem = '1GB'", w(H::Ddl)),
        ("DROP TABLE t", w(H::Ddl)),
        ("TRUNCATE t", w(H::Ddl)),
        ("GRANT SELECT ON t TO u", w(H::Ddl)),
        ("REVOKE ALL ON t FROM u", w(H::Ddl)),
        ("COMMENT ON TABLE t IS 'x'", w(H::Ddl)),
        ("SECURITY LABEL ON TABLE t IS 'x'", w(H::Ddl)),
        ("VACUUM ANALYZE t", w(H::Ddl)),
        ("ANALYZE t", w(H::Ddl)),
        ("REINDEX TABLE t", w(H::Ddl)),
        ("CLUSTER t USING i", w(H::Ddl)),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", w(H::Ddl)),
        ("CHECKPOINT", w(H::Ddl)),
        ("IMPORT FOREIGN SCHEMA s FROM SERVER f INTO l", w(H::Ddl)),
        ("REASSIGN OWNED BY a TO b", w(H::Ddl)),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
            w(H::Ddl),
        ),
        (
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT pg_advisory_lock(1) $$ LANGUAGE sql",
            w(H::Ddl),
        ),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); NOTIFY x)",
            w(H::Ddl),
        ),
        // Temporary objects.
        ("CREATE TEMP TABLE x AS SELECT 1", w(H::TempTable)),
        ("CREATE TEMPORARY TABLE x (a int)", w(H::TempTable)),
        ("create global temporary table x (a int)", w(H::TempTable)),
        ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", w(H::TempTable)),
        ("CREATE TEMP SEQUENCE s", w(H::TempTable)),
        ("CREATE TABLE pg_temp.x (a int)", w(H::TempTable)),
        ("SELECT * FROM pg_temp.x", w(H::TempTable)),
        ("SELECT * FROM \"pg_temp_3\".x", w(H::TempTable)),
        // Other hazards.
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", w(H::Lock)),
        ("CALL p(1)", w(H::Procedure)),
        ("DO $$ BEGIN PERFORM 1; END $$", w(H::Procedure)),
        ("LISTEN ch", w(H::ListenNotify)),
        ("UNLISTEN *", w(H::ListenNotify)),
        ("NOTIFY ch, 'x'", w(H::ListenNotify)),
    ]
}

fn session() -> Vec<(&'static str, Class<'static>)> {
    vec![
        ("SET search_path = a, b", w(H::SessionState)),
        ("SET LOCAL statement_timeout = '1s'", w(H::SessionState)),
        ("SET SESSION AUTHORIZATION u", w(H::SessionState)),
        ("SET TIME ZONE 'UTC'", w(H::SessionState)),
        ("SET ROLE r", w(H::SessionState)),
        ("SET CONSTRAINTS ALL DEFERRED", w(H::SessionState)),
        ("RESET search_path", w(H::SessionState)),
        ("RESET ALL", w(H::SessionState)),
        ("DISCARD ALL", w(H::SessionState)),
        ("PREPARE q AS SELECT 1", w(H::SessionState)),
        ("PREPARE transaction AS SELECT 1", w(H::SessionState)),
        ("EXECUTE q(1)", w(H::SessionState)),
        ("DEALLOCATE ALL", w(H::SessionState)),
        ("DECLARE c CURSOR FOR SELECT 1", w(H::SessionState)),
        ("DECLARE c CURSOR FOR SELECT nextval('s')", w(H::SessionState)),
        ("FETCH 10 FROM c", w(H::SessionState)),
        ("MOVE NEXT IN c", w(H::SessionState)),
        ("CLOSE c", w(H::SessionState)),
        ("LOAD 'auto_explain'", w(H::SessionState)),
        // Read-only defaults the router can track.
        (
            "SET default_transaction_read_only = on",
            w(H::DefaultReadOnly(Some(true))),
        ),
        (
            "SET default_transaction_read_only TO 'off'",
            w(H::DefaultReadOnly(Some(false))),
        ),
        (
            "set session default_transaction_read_only = TRUE",
            w(H::DefaultReadOnly(Some(true))),
        ),
        (
            "SET default_transaction_read_only=1",
            w(H::DefaultReadOnly(Some(true))),
        ),
        (
            "SET default_transaction_read_only = DEFAULT",
            w(H::DefaultReadOnly(None)),
        ),
        (
            "RESET default_transaction_read_only",
            w(H::DefaultReadOnly(None)),
        ),
        (
            "SET LOCAL default_transaction_read_only = on",
            w(H::SessionState),
        ),
        ("SET default_transaction_read_only = maybe", w(H::SessionState)),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            w(H::DefaultReadOnly(Some(true))),
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE",
            w(H::DefaultReadOnly(Some(false))),
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            w(H::SessionState),
        ),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION", w(H::Unknown)),
        // Modes of the current transaction.
        ("SET TRANSACTION READ ONLY", set_txn(Some(true), None)),
        (
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            set_txn(None, Some(Isolation::Serializable)),
        ),
        (
            "SET LOCAL transaction_read_only = on",
            set_txn(Some(true), None),
        ),
        (
            "SET transaction_read_only TO off",
            set_txn(Some(false), None),
        ),
        (
            "SET transaction_isolation = 'repeatable read'",
            set_txn(None, Some(Isolation::RepeatableRead)),
        ),
        ("SET TRANSACTION SNAPSHOT '00000003-1B'", w(H::SessionState)),
        ("SET TRANSACTION", w(H::Unknown)),
        ("SET TRANSACTION READ SOMETIMES", w(H::Unknown)),
    ]
}

fn transactions() -> Vec<(&'static str, Class<'static>)> {
    use Isolation::*;
    vec![
        ("BEGIN", begin(None, None)),
        ("begin;", begin(None, None)),
        ("BEGIN WORK", begin(None, None)),
        ("BEGIN TRANSACTION READ ONLY", begin(Some(true), None)),
        ("BEGIN READ WRITE", begin(Some(false), None)),
        (
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            begin(Some(true), Some(RepeatableRead)),
        ),
        (
            "BEGIN READ ONLY ISOLATION LEVEL READ COMMITTED DEFERRABLE",
            begin(Some(true), Some(ReadCommitted)),
        ),
        (
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, NOT DEFERRABLE",
            begin(Some(true), Some(Serializable)),
        ),
        (
            "BEGIN ISOLATION LEVEL READ UNCOMMITTED",
            begin(None, Some(ReadUncommitted)),
        ),
        ("START TRANSACTION READ ONLY", begin(Some(true), None)),
        (
            "start transaction isolation level read committed, read write",
            begin(Some(false), Some(ReadCommitted)),
        ),
        ("BEGIN READ ONLY, READ WRITE", begin(Some(false), None)),
        ("BEGIN READ ONLY,", w(H::Unknown)),
        ("BEGIN FOO", w(H::Unknown)),
        ("BEGIN ISOLATION LEVEL READ", w(H::Unknown)),
        ("START", w(H::Unknown)),
        ("COMMIT", t(T::Commit { chain: false })),
        ("COMMIT AND CHAIN", t(T::Commit { chain: true })),
        ("END TRANSACTION", t(T::Commit { chain: false })),
        ("ROLLBACK", t(T::Rollback { chain: false })),
        ("ABORT WORK AND NO CHAIN", t(T::Rollback { chain: false })),
        ("ROLLBACK AND CHAIN", t(T::Rollback { chain: true })),
        ("SAVEPOINT s1", t(T::Savepoint)),
        ("RELEASE SAVEPOINT s1", t(T::Release)),
        ("RELEASE \"s1\"", t(T::Release)),
        ("ROLLBACK TO SAVEPOINT s1", t(T::RollbackTo)),
        ("ROLLBACK TRANSACTION TO s1", t(T::RollbackTo)),
        ("PREPARE TRANSACTION 'tx1'", t(T::PrepareTransaction)),
        ("COMMIT PREPARED 'tx1'", t(T::CommitPrepared)),
        ("ROLLBACK PREPARED 'tx1'", t(T::RollbackPrepared)),
        ("COMMIT garbage", w(H::Unknown)),
        ("SAVEPOINT", w(H::Unknown)),
        ("ABORT TO s1", w(H::Unknown)),
        ("BEGIN; SELECT 1; COMMIT", w(H::MultiStatement)),
        ("SELECT 1; BEGIN", w(H::MultiStatement)),
        ("BEGIN READ ONLY; SELECT 1", w(H::MultiStatement)),
    ]
}

fn causeway() -> Vec<(&'static str, Class<'static>)> {
    use CausewayCommand::*;
    vec![
        (
            "SET causeway.route = replica",
            cw(Set {
                name: "route",
                value: "replica",
                local: false,
            }),
        ),
        (
            "set CAUSEWAY.route to 'primary'",
            cw(Set {
                name: "route",
                value: "primary",
                local: false,
            }),
        ),
        (
            "SET LOCAL causeway.route = auto;",
            cw(Set {
                name: "route",
                value: "auto",
                local: true,
            }),
        ),
        (
            "SET SESSION causeway.min_lsn = '0/3000060'",
            cw(Set {
                name: "min_lsn",
                value: "0/3000060",
                local: false,
            }),
        ),
        (
            "SET causeway.list = a, 'b'",
            cw(Set {
                name: "list",
                value: "a, 'b'",
                local: false,
            }),
        ),
        (
            "SET \"causeway.route\" = replica",
            cw(Set {
                name: "route",
                value: "replica",
                local: false,
            }),
        ),
        (
            "SET causeway.a.b = 1",
            cw(Set {
                name: "a.b",
                value: "1",
                local: false,
            }),
        ),
        ("SET causeway.route TO DEFAULT", cw(Reset { name: "route" })),
        ("RESET causeway.route", cw(Reset { name: "route" })),
        ("SHOW causeway.route", cw(Show { name: "route" })),
        ("SHOW causeway.\"route\"", cw(Show { name: "route" })),
        ("SET causeway.route", w(H::Unknown)),
        ("SET causeway.route =", w(H::Unknown)),
        ("SHOW causeway.route extra", w(H::Unknown)),
        (
            "SELECT 1; SET causeway.route = replica",
            w(H::MultiStatement),
        ),
    ]
}

#[test]
fn classifies_reads() {
    check(&Classifier::default(), &reads());
}

#[test]
fn lexes_like_postgres() {
    check(&Classifier::default(), &lexing());
}

#[test]
fn classifies_writes() {
    check(&Classifier::default(), &writes());
}

#[test]
fn classifies_session_state() {
    check(&Classifier::default(), &session());
}

#[test]
fn classifies_transaction_control() {
    check(&Classifier::default(), &transactions());
}

#[test]
fn classifies_causeway_commands() {
    check(&Classifier::default(), &causeway());
}

#[test]
fn the_tables_are_big_enough() {
    let n = reads().len()
        + lexing().len()
        + writes().len()
        + session().len()
        + transactions().len()
        + causeway().len();
    println!("{n} table cases");
    assert!(n >= 80, "only {n} cases");
}

#[test]
fn strict_functions_make_unknown_calls_writes() {
    let strict = Classifier::default().strict_functions(true);
    let unknown = |n: &str| w(H::UnknownFunction(n.into()));
    check(
        &strict,
        &[
            ("SELECT my_function(1)", unknown("my_function")),
            ("SELECT * FROM my_srf()", unknown("my_srf")),
            ("SELECT s.now()", unknown("now")),
            ("SELECT \"My_Fn\"(1)", unknown("my_fn")),
            ("SELECT now(), count(*), coalesce(a, 0) FROM t", r()),
            ("SELECT pg_catalog.now()", r()),
            ("SELECT CAST(x AS numeric(10,2)) FROM t", r()),
            ("SELECT x::varchar(3) FROM t", r()),
            (
                "WITH a(x) AS (SELECT 1), b(y) AS MATERIALIZED (SELECT 2) SELECT * FROM a, b",
                r(),
            ),
            (
                "SELECT * FROM t WHERE a IN (1, 2) AND EXISTS (SELECT 1) AND b = ANY ($1)",
                r(),
            ),
            ("SELECT * FROM generate_series(1, 3) AS g(i)", r()),
            // Writing functions keep their own hazard.
            ("SELECT nextval('s')", wf("nextval")),
            // A call with a column definition list is not a CTE (found by
            // classifier-check over PostgreSQL's rangefuncs.sql).
            (
                "SELECT * FROM my_srf(5) AS (a int, b numeric, c text)",
                unknown("my_srf"),
            ),
            ("SELECT * FROM t, my_srf(1) AS (a int)", unknown("my_srf")),
            (
                "SELECT * FROM ROWS FROM( my_srf(1) AS (a int, b text) ) WITH ORDINALITY",
                unknown("my_srf"),
            ),
            (
                "WITH a(x) AS (VALUES (1)), b(y) AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b",
                r(),
            ),
        ],
    );
    let allowed = Classifier::default()
        .strict_functions(true)
        .safe_functions(&["My_Function".into()]);
    check(&allowed, &[("SELECT my_function(1)", r())]);
    // The default classifier lets unknown calls through.
    check(&Classifier::default(), &[("SELECT my_function(1)", r())]);
}

/// Built-ins with side effects that PostgreSQL's regression SQL calls in
/// plain SELECTs (found by tools/classifier-check): none may be a read.
#[test]
fn builtins_with_side_effects_are_not_reads() {
    let c = Classifier::default();
    check(
        &c,
        &[
            ("SELECT setseed(0.5)", w(H::SessionState)),
            ("SELECT pg_catalog.setseed(0.5)", w(H::SessionState)),
            (
                "SELECT brin_summarize_new_values('i')",
                wf("brin_summarize_new_values"),
            ),
            (
                "SELECT brin_summarize_range('i', 0)",
                wf("brin_summarize_range"),
            ),
            (
                "SELECT brin_desummarize_range('i', 0)",
                wf("brin_desummarize_range"),
            ),
            (
                "SELECT gin_clean_pending_list('i')",
                wf("gin_clean_pending_list"),
            ),
            ("SELECT pg_walfile_name('0/0')", wf("pg_walfile_name")),
            (
                "SELECT pg_walfile_name_offset('0/0')",
                wf("pg_walfile_name_offset"),
            ),
            (
                "SELECT pg_logical_slot_peek_changes('s', NULL, NULL)",
                wf("pg_logical_slot_peek_changes"),
            ),
            (
                "SELECT * FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL)",
                wf("pg_logical_slot_peek_binary_changes"),
            ),
        ],
    );
}

#[test]
fn extra_writing_functions() {
    let c = Classifier::new(&["Audit_Log".into(), "app_*".into(), " ".into()]);
    check(
        &c,
        &[
            ("SELECT audit_log(1)", wf("audit_log")),
            ("SELECT app_touch()", wf("app_touch")),
            ("SELECT application()", r()),
            ("SELECT nextval('s')", wf("nextval")),
        ],
    );
    check(&Classifier::default(), &[("SELECT audit_log(1)", r())]);
}

#[test]
fn hints_come_from_leading_comments() {
    let c = Classifier::default();
    let cases: &[(&str, Option<Hint>, Class)] = &[
        ("/* causeway:replica */ SELECT 1", Some(Hint::Replica), r()),
        ("/* causeway:primary */ SELECT 1", Some(Hint::Primary), r()),
        ("-- causeway:primary\nSELECT 1", Some(Hint::Primary), r()),
        (
            "/* causeway:token=0/3000060 */ SELECT 1",
            Some(Hint::Token("0/3000060")),
            r(),
        ),
        (
            "/* causeway:token=abc def */ SELECT 1",
            Some(Hint::Token("abc")),
            r(),
        ),
        (
            "/* app=web */ -- x\n /* causeway:replica */ SELECT 1",
            Some(Hint::Replica),
            r(),
        ),
        ("/*causeway:replica*/SELECT 1", Some(Hint::Replica), r()),
        ("/* CAUSEWAY: Replica */ SELECT 1", Some(Hint::Replica), r()),
        (
            "/* causeway:primary */ /* causeway:replica */ SELECT 1",
            Some(Hint::Primary),
            r(),
        ),
        (
            "/* causeway:bogus */ /* causeway:replica */ SELECT 1",
            Some(Hint::Replica),
            r(),
        ),
        // A hint never turns a write into a read.
        (
            "/* causeway:replica */ DELETE FROM t",
            Some(Hint::Replica),
            w(H::Dml),
        ),
        ("SELECT 1 /* causeway:replica */", None, r()),
        ("SELECT 1; /* causeway:replica */ SELECT 2", None, r()),
        ("/* causeway:bogus */ SELECT 1", None, r()),
        ("/* causeway:token= */ SELECT 1", None, r()),
        ("/* causeway replica */ SELECT 1", None, r()),
        ("/* causeway:replica", None, w(H::Unknown)),
        (
            "/* ünïcode */ /* causeway:replica */ SELECT 1",
            Some(Hint::Replica),
            r(),
        ),
    ];
    for (sql, hint, class) in cases {
        let got = c.classify(sql);
        assert_eq!(&got.hint, hint, "{sql:?}");
        assert_eq!(&got.class, class, "{sql:?}");
    }
}

#[test]
fn counts_statements() {
    for (sql, n) in [
        ("", 0),
        ("  -- x", 0),
        (";;", 0),
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1;;SELECT 2", 2),
        ("SELECT ';'; SELECT $$;$$", 2),
        ("SELECT 1; SELECT 'x", 2),
        ("SELECT 'x", 1),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO v VALUES (2))",
            1,
        ),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SELECT 3",
            2,
        ),
        ("SELECT 1; BEGIN; SELECT 2; END", 4),
    ] {
        assert_eq!(statement_count(sql), n, "{sql:?}");
    }
}

#[test]
fn lexer_token_kinds() {
    use Kind::*;
    let cases: &[(&str, &[Kind])] = &[
        ("SELECT a$b, $1", &[Ident, Ident, Comma, Param]),
        ("$$x$$ $t$y$t$ $", &[String, String, Other]),
        (r"E'\'' e'x' N'y' B'1' X'F' U&'z'", &[String; 6]),
        ("U&\"x\" \"a\"\"b\"", &[UnicodeIdent, QuotedIdent]),
        (
            "1.5 .5 1e-3 0x1F 1_000 1..",
            &[Number, Number, Number, Number, Number, Number, Dot, Dot],
        ),
        ("a::int <> b", &[Ident, Op, Ident, Op, Ident]),
        ("a+-1", &[Ident, Op, Op, Number]),
        ("a @- 1", &[Ident, Op, Number]),
        ("a<--b\n>c", &[Ident, Op, Op, Ident]),
        (
            "f(x)[1];",
            &[
                Ident, LParen, Ident, RParen, Other, Number, Other, Semicolon,
            ],
        ),
        ("t.c", &[Ident, Dot, Ident]),
        ("ünï 1", &[Ident, Number]),
    ];
    for (sql, want) in cases {
        let mut lx = Lexer::new(sql, false);
        let mut got = Vec::new();
        while let Some(tok) = lx.next_token() {
            got.push(tok.expect(sql).kind);
        }
        assert_eq!(&got[..], *want, "{sql:?}");
    }
    // `standard_conforming_strings = off`.
    let mut lx = Lexer::new(r"'a\'b' x", true);
    assert_eq!(lx.next_token().unwrap().unwrap().end, 6);
    assert!(lx.saw_backslash_in_plain_string);
}

#[test]
fn helpers() {
    assert!(Class::Read.is_read());
    assert!(!w(H::Dml).is_read());
    assert!(H::AdvisoryLock.pins_session());
    assert!(H::DefaultReadOnly(None).pins_session());
    assert!(!H::Dml.pins_session());
    let c = Classifier::default();
    let eligible = |sql| match c.classify(sql).class {
        Class::Transaction(t) => t.replica_eligible(),
        other => panic!("{sql}: {other:?}"),
    };
    assert!(eligible("BEGIN READ ONLY"));
    assert!(eligible("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    assert!(!eligible("BEGIN"));
    assert!(!eligible("BEGIN READ WRITE"));
    assert!(!eligible("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"));
    assert!(!eligible("COMMIT"));
    let route = |sql| match c.classify(sql).class {
        Class::Causeway(cmd) => cmd.route(),
        other => panic!("{sql}: {other:?}"),
    };
    assert_eq!(
        route("SET causeway.route = REPLICA"),
        Some(RouteOverride::Replica)
    );
    assert_eq!(
        route("SET causeway.route = 'primary'"),
        Some(RouteOverride::Primary)
    );
    assert_eq!(
        route("SET causeway.Route TO auto"),
        Some(RouteOverride::Auto)
    );
    assert_eq!(route("SET causeway.route = sideways"), None);
    assert_eq!(route("SET causeway.other = replica"), None);
    assert_eq!(route("SHOW causeway.route"), None);
}

#[test]
fn safe_function_list_is_sorted_and_lowercase() {
    for pair in SAFE_FUNCTIONS.windows(2) {
        assert!(pair[0] < pair[1], "{} >= {}", pair[0], pair[1]);
    }
    for name in SAFE_FUNCTIONS.iter().chain(DEFAULT_WRITING_FUNCTIONS) {
        assert_eq!(*name, name.to_ascii_lowercase());
        assert!(name.matches('*').count() <= 1, "{name}");
    }
}

#[test]
fn classify_is_reentrant_across_threads() {
    let c = std::sync::Arc::new(Classifier::default());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let sql = if i % 2 == 0 {
                        "SELECT 1"
                    } else {
                        "DELETE FROM t"
                    };
                    let want = if i % 2 == 0 { r() } else { w(H::Dml) };
                    assert_eq!(c.classify(sql).class, want);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn never_panics_on_prefixes_or_token_soup() {
    let c = Classifier::default();
    let strict = Classifier::default().strict_functions(true);
    let all: Vec<_> = [
        reads(),
        lexing(),
        writes(),
        session(),
        transactions(),
        causeway(),
    ]
    .concat();
    for (sql, _) in &all {
        for (i, _) in sql.char_indices().chain([(sql.len(), ' ')]) {
            let p = &sql[..i];
            let _ = c.classify(p);
            let _ = strict.classify(p);
            let _ = statement_count(p);
        }
    }
    const PIECES: &[&str] = &[
        "SELECT",
        "set",
        "causeway",
        ".",
        "route",
        "=",
        "'",
        "\"",
        "$$",
        "$a$",
        "$1",
        "E'",
        "U&\"",
        "U&'",
        "\\",
        "(",
        ")",
        ";",
        "--",
        "\n",
        "/*",
        "*/",
        "FOR",
        "UPDATE",
        "INTO",
        "nextval",
        "WITH",
        "AS",
        "BEGIN",
        "READ",
        "ONLY",
        ",",
        "COPY",
        "TO",
        "STDOUT",
        "EXPLAIN",
        "1",
        ".5",
        "0x",
        "é",
        "::",
        "+-",
        " ",
        "pg_temp",
        "UESCAPE",
        "END",
        "CASE",
        "CREATE",
        "FUNCTION",
        "TRANSACTION",
        "SHOW",
        "RESET",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut sql = String::new();
    for _ in 0..20_000 {
        sql.clear();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (seed % 12) as usize;
        let mut x = seed;
        for _ in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            sql.push_str(PIECES[(x >> 33) as usize % PIECES.len()]);
            if x & 1 == 0 {
                sql.push(' ');
            }
        }
        let _ = c.classify(&sql);
        let _ = strict.classify(&sql);
        let _ = statement_count(&sql);
    }
}

/// Prints the cost per statement; never asserts on time. Run with
/// `cargo test -p causeway-routing --release -- --ignored --nocapture classify_timing`.
#[test]
#[ignore]
fn classify_timing() {
    use std::hint::black_box;
    use std::time::Instant;

    let mut long = String::from("SELECT ");
    let mut i = 0;
    while long.len() < 1400 {
        long.push_str(&format!("t{}.col_{i} AS c{i}, ", i % 5));
        i += 1;
    }
    long.push_str("1 FROM t0 JOIN t1 ON t1.id = t0.id JOIN t2 ON t2.id = t1.id WHERE ");
    while long.len() < 2048 {
        long.push_str(&format!("(t0.x{i} = ${i} OR t1.y{i} LIKE 'abc%') AND "));
        i += 1;
    }
    long.push_str("true ORDER BY 1 LIMIT 10");

    let queries: Vec<(&str, String)> = vec![
        (
            "pgbench select",
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1;".into(),
        ),
        (
            "5-table join",
            "SELECT o.id, c.name, p.title, s.status, w.city FROM orders o \
             JOIN customers c ON c.id = o.customer_id \
             JOIN products p ON p.id = o.product_id \
             JOIN shipments s ON s.order_id = o.id \
             LEFT JOIN warehouses w ON w.id = s.warehouse_id \
             WHERE o.created_at > now() - interval '1 day' AND c.region = $1 \
             ORDER BY o.created_at DESC LIMIT 50"
                .into(),
        ),
        (
            "pgbench update",
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;".into(),
        ),
        (
            "CTE + comment hint",
            "/* causeway:replica */ WITH a AS (SELECT id FROM t WHERE x = $1) \
             SELECT count(*), coalesce(max(id), 0) FROM a"
                .into(),
        ),
        ("2 KB query", long),
    ];
    for strict in [false, true] {
        let c = Classifier::default().strict_functions(strict);
        for (name, sql) in &queries {
            let class = c.classify(sql).class;
            // Best of 20 batches: the machine may be busy.
            let iters = 20_000 / (1 + sql.len() / 100);
            let mut ns = f64::MAX;
            for _ in 0..20 {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(c.classify(black_box(sql)));
                }
                ns = ns.min(start.elapsed().as_nanos() as f64 / iters as f64);
            }
            println!(
                "strict={strict:<5} {name:<20} {:>5} bytes {ns:>8.0} ns/stmt  {class:?}",
                sql.len()
            );
        }
    }
}
