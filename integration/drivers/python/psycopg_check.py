"""psycopg 3 through Causeway (run by integration/tests/drivers.rs).

Usage: python psycopg_check.py DSN TAG MODE
  MODE: direct | session | transaction (what is behind DSN)

Server-side prepare (prepare=True), pipeline mode (also psycopg's own
error-on-commit-then-rollback pattern, many times), COPY both ways, notices;
a prepared statement invalidated by ALTER TABLE ... TYPE; reconnecting after
the server side of a connection was terminated; LISTEN/NOTIFY except in
transaction mode (where Causeway does not deliver notifications: see
docs/protocol.md). Prints one line per check; exits non-zero on the first
failure.
"""

import sys
import time

import psycopg

# psycopg's test_pipeline.py::test_errors_raised_on_commit, repeated.
PIPELINE_COMMIT_ROUNDS = 300


def ok(what, detail=""):
    print(f"ok {what} {detail}".rstrip(), flush=True)


def main():
    dsn, tag, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    table = f"drv_psycopg_{tag}"
    failures = []
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}) mode={mode}", flush=True)

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")

        # prepare=True: a named server-side statement from the first execution.
        with conn.cursor() as cur:
            for i in range(50):
                cur.execute("SELECT %s::int4 + %s::int4, upper(%s::text)", (i, 1000, "abc"), prepare=True)
                assert cur.fetchone() == (i + 1000, "ABC")
            for i in range(20):
                cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, f"p{i}"), prepare=True)
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 20
        ok("prepare=True", "70 executions")

        # The same prepared statements while another client holds the server
        # this one used last (in transaction mode the next execution runs on
        # another server, which must prepare them transparently). A failure
        # here is reported at the end, so the checks below still run.
        try:
            with psycopg.connect(dsn, autocommit=True) as other:
                with other.transaction():
                    other.execute("SELECT 1")
                    with conn.cursor() as cur:
                        for i in range(5):
                            cur.execute("SELECT %s::int4 + %s::int4, upper(%s::text)", (i, 1, "x"), prepare=True)
                            assert cur.fetchone() == (i + 1, "X")
            ok("prepare=True across a server switch", "5 executions")
        except Exception as e:  # noqa: BLE001
            failures.append(f"prepare=True across a server switch: {type(e).__name__}: {e}")
            print(f"FAIL {failures[-1]}", flush=True)
            conn.prepare_threshold = None  # no more server-side prepares

        # Pipeline mode: many statements before one Sync.
        with conn.pipeline():
            curs = []
            for i in range(100, 200):
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, f"pipe{i}"))
            for i in range(20):
                curs.append(conn.execute("SELECT %s::int * 3", (i,)))
        assert [c.fetchone()[0] for c in curs] == [i * 3 for i in range(20)]
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE v LIKE 'pipe%%'").fetchone()[0] == 100
        # An error in the middle of a pipeline: later statements are skipped
        # up to the Sync, the connection stays usable.
        try:
            with conn.pipeline():
                conn.execute(f"INSERT INTO {table} VALUES (300, 'before error')")
                conn.execute("SELECT 1/0")
                conn.execute(f"INSERT INTO {table} VALUES (301, 'after error')")
        except psycopg.errors.DivisionByZero:
            pass
        else:
            raise AssertionError("1/0 in a pipeline did not fail")
        got = conn.execute(f"SELECT array_agg(id ORDER BY id) FROM {table} WHERE id >= 300").fetchone()[0]
        # Autocommit pipeline: psycopg syncs after each statement, so the
        # insert before the error stays and the one after it never ran.
        assert got in ([300], None), got
        ok("pipeline", "100 inserts + 20 selects, error mid-pipeline")

        # COPY both ways.
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (id, v) FROM STDIN") as copy:
                for i in range(1000, 6000):
                    copy.write_row((i, f"copy {i}"))
            assert cur.rowcount == 5000, cur.rowcount
            rows = []
            with cur.copy(f"COPY (SELECT id, v FROM {table} WHERE id >= 1000 ORDER BY id) TO STDOUT") as copy:
                for row in copy.rows():
                    rows.append(row)
            assert len(rows) == 5000 and rows[0] == ("1000", "copy 1000"), rows[:1]
        ok("copy", "5000 rows in and out")

        # Notices.
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; RAISE WARNING 'second'; END $$")
        assert notices == ["hello from plpgsql", "second"], notices
        ok("notices", repr(notices))

        # Transactions.
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} VALUES (-1, 'committed')")
        try:
            with conn.transaction():
                conn.execute(f"INSERT INTO {table} VALUES (-2, 'rolled back')")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        got = conn.execute(f"SELECT array_agg(v) FROM {table} WHERE id < 0").fetchone()[0]
        assert got == ["committed"], got
        ok("transactions")

    pipeline_error_on_commit(dsn, mode)
    invalidation(dsn, table)
    reconnect(dsn, tag, mode)

    if mode == "transaction":
        print("skip listen/notify (transaction mode: not delivered, see docs/protocol.md)", flush=True)
    else:
        with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn, autocommit=True) as sender:
            listener.execute(f"LISTEN ch_{tag}")
            for i in range(3):
                sender.execute(f"NOTIFY ch_{tag}, 'payload {i}'")
            got = []
            for n in listener.notifies(timeout=10, stop_after=3):
                got.append((n.channel, n.payload))
            assert got == [(f"ch_{tag}", f"payload {i}") for i in range(3)], got
            ok("listen/notify", f"{len(got)} notifications")

    if failures:
        print(f"psycopg: {len(failures)} check(s) failed: {failures}", flush=True)
        sys.exit(1)
    print("psycopg: all checks passed", flush=True)


def pipeline_error_on_commit(dsn, mode):
    """An error raised by commit() in pipeline mode, then rollback(). psycopg
    raises PipelineAborted from rollback() when the server's error arrives
    before psycopg has sent COMMIT (it happens directly against PostgreSQL
    too, a few percent of the time); Causeway delivers extended-protocol
    errors at the client's Sync, so through it the pattern never fails."""
    aborted = 0
    with psycopg.connect(dsn) as conn:
        for _ in range(PIPELINE_COMMIT_ROUNDS):
            try:
                with conn.pipeline():
                    conn.execute("SELECT 1 FROM no_such_table_pipeline")
                    try:
                        conn.commit()
                    except psycopg.errors.UndefinedTable:
                        pass
                    else:
                        raise AssertionError("commit() did not raise")
                    conn.rollback()
                    cur1 = conn.execute("SELECT 1")
                cur2 = conn.execute("SELECT 2")
                assert cur1.fetchone() == (1,) and cur2.fetchone() == (2,)
            except psycopg.errors.PipelineAborted:
                aborted += 1
                conn.rollback()
    detail = f"{PIPELINE_COMMIT_ROUNDS} rounds, PipelineAborted {aborted} times"
    if mode != "direct":
        assert aborted == 0, detail
    ok("pipeline error on commit, then rollback", detail)


def invalidation(dsn, table):
    """psycopg's own invalidation path: DDL on the connection (ALTER ...)
    makes it forget its prepared statements (DEALLOCATE ALL) and prepare
    again; the re-prepared statement must see the new result type, also
    while another connection still holds the old statement (through
    Causeway, the same text may be prepared on the servers already), and a
    brand-new connection must too."""
    t = f"{table}_inv"
    q = f"SELECT a FROM {t}"
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn, autocommit=True) as other:
        conn.execute(f"DROP TABLE IF EXISTS {t}")
        conn.execute(f"CREATE TABLE {t} (a int)")
        conn.execute(f"INSERT INTO {t} VALUES (7)")
        for _ in range(3):
            assert conn.execute(q, prepare=True).fetchone() == (7,)
            assert other.execute(q, prepare=True).fetchone() == (7,)
        # In transaction mode `other` holds a server meanwhile, so the
        # statement gets prepared on a second server too.
        with other.transaction():
            assert other.execute(q, prepare=True).fetchone() == (7,)
            assert conn.execute(q, prepare=True).fetchone() == (7,)
        conn.execute(f"ALTER TABLE {t} ALTER a TYPE text")
        # And here the re-prepared statement runs on that second server.
        with other.transaction():
            other.execute("SELECT 1")
            for _ in range(5):
                assert conn.execute(q, prepare=True).fetchone() == ("7",)
    with psycopg.connect(dsn, autocommit=True) as fresh:
        for _ in range(5):
            assert fresh.execute(q, prepare=True).fetchone() == ("7",)
    ok("prepared statement invalidated by ALTER TABLE", "re-prepared, also on a new connection")


def reconnect(dsn, tag, mode):
    """The backend behind a connection is terminated while the connection is
    idle. Directly and in session mode the connection is lost
    (OperationalError) and the application reconnects; in transaction mode
    Causeway drops the dead pooled server connection and the client never
    notices. The killer holds a transaction meanwhile, so that in transaction
    mode the dead connection is the one the pool would lend next."""
    name = f"rc_{tag}"
    conn = psycopg.connect(dsn, autocommit=True, application_name=name)
    with psycopg.connect(dsn) as killer:
        killer.execute("SELECT 1")  # holds its server until commit
        assert conn.execute("SELECT 1").fetchone() == (1,)
        others = "application_name = %s AND pid <> pg_backend_pid()"
        n = killer.execute(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {others}", (name,))
        assert n.fetchone()[0] >= 1
        deadline = time.monotonic() + 30
        while True:
            killer.execute("SELECT pg_stat_clear_snapshot()")
            if killer.execute(f"SELECT count(*) FROM pg_stat_activity WHERE {others}", (name,)).fetchone()[0] == 0:
                break
            assert time.monotonic() < deadline, "terminated backends still there"
            time.sleep(0.05)
        try:
            conn.execute("SELECT 2").fetchone()
            survived = True
        except psycopg.OperationalError:
            survived = False
            conn.close()
            conn = psycopg.connect(dsn, autocommit=True, application_name=name)
        assert conn.execute("SELECT 3").fetchone() == (3,)
        killer.commit()
    conn.close()
    assert survived == (mode == "transaction"), f"survived={survived} in {mode} mode"
    ok("reconnect after the server was terminated", "unnoticed" if survived else "reconnected")


if __name__ == "__main__":
    main()
