"""Causeway's own commands and read-your-writes tokens through real drivers
(run by integration/tests/drivers.rs).

Usage: python causeway_commands.py URL_A URL_B TAG
  URL_A, URL_B: two Causeway instances (transaction mode) in front of the
  same primary and replicas; the replicas apply WAL 1 s late (long enough that the control read is stale even on a loaded machine).

1. SET/SHOW/RESET causeway.* answer the same through psycopg 3 (the
   default prepare threshold, which prepares a statement after 5 runs, and
   prepare_threshold=0) and asyncpg (fetchval: named prepared statements
   with Parse/Describe/Flush; execute: the simple protocol).
2. Tokens carried from instance A to instance B through prepared SHOW and
   SET, in psycopg and asyncpg: B never misses A's write (0 stale), while a
   session on B without the token does (the control: the check can fail).

Prints one line per check; exits non-zero on the first failure.
"""

import asyncio
import time
import sys

import asyncpg
import psycopg

ROUNDS = 7  # past psycopg's default prepare_threshold of 5
TOKEN_LOOPS = 30


def ok(what, detail=""):
    print(f"ok {what} {detail}".rstrip(), flush=True)


def expected(tok):
    """(SQL, what it must answer) in order, for a fresh session."""
    return [
        ("SHOW causeway.route", ("row", "auto")),
        ("SET causeway.route = primary", ("done",)),
        ("SHOW causeway.route", ("row", "primary")),
        ("RESET causeway.route", ("done",)),
        ("SHOW causeway.route", ("row", "auto")),
        (f"SET causeway.token = '{tok}'", ("done",)),
        ("SHOW causeway.token", ("row", tok)),
        ("SET causeway.token = 'not-a-token'", ("error", "22023")),
        ("SHOW causeway.nope", ("error", "42704")),
        ("RESET causeway.token", ("error", "55000")),
        ("SHOW causeway.consistency", ("row", "session")),
    ]


def psycopg_answer(conn, sql, prepare=None):
    try:
        cur = conn.execute(sql, prepare=prepare)
        if cur.description is None:
            return ("done",)
        return ("row", cur.fetchone()[0])
    except psycopg.Error as e:
        return ("error", e.sqlstate)


async def asyncpg_answer(conn, sql, prepared):
    try:
        if prepared:
            v = await conn.fetch(sql)
            return ("row", v[0][0]) if v else ("done",)
        await conn.execute(sql)
        return ("done",) if sql.upper().startswith(("SET", "RESET")) else ("row", None)
    except asyncpg.PostgresError as e:
        return ("error", e.sqlstate)


def check_psycopg(url, tok, threshold, label):
    with psycopg.connect(url, autocommit=True, prepare_threshold=threshold) as conn:
        for r in range(ROUNDS):
            for sql, want in expected(tok):
                got = psycopg_answer(conn, sql)
                assert got == want, f"{label} round {r}: {sql!r} answered {got}, expected {want}"
        # The commands change what they say they change: a read forced to
        # the primary by a prepared SET runs there.
        psycopg_answer(conn, "SET causeway.route = primary", prepare=True)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        psycopg_answer(conn, "RESET causeway.route", prepare=True)
    ok(label, f"{ROUNDS} rounds of {len(expected(tok))} commands")


async def check_asyncpg(url, tok):
    conn = await asyncpg.connect(url)
    try:
        for r in range(ROUNDS):
            for sql, want in expected(tok):
                got = await asyncpg_answer(conn, sql, prepared=True)
                assert got == want, f"asyncpg prepared round {r}: {sql!r} answered {got}, expected {want}"
        # The simple protocol (asyncpg's execute) answers SET/RESET alike.
        for sql, want in expected(tok):
            if want[0] != "row":
                got = await asyncpg_answer(conn, sql, prepared=False)
                assert got == want, f"asyncpg execute: {sql!r} answered {got}, expected {want}"
        await conn.fetch("SET causeway.route = primary")
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
        await conn.fetch("RESET causeway.route")
    finally:
        await conn.close()
    ok("asyncpg", f"{ROUNDS} rounds of {len(expected(tok))} prepared commands, and execute()")


def wait_replicated(read):
    """Polls `read` (bounded, 15 s) until six reads in a row are served by
    replicas that have the row (both replicas, round-robin): they are late
    and out of rotation at first."""
    run = 0
    for _ in range(300):
        try:
            r = read()
            run = run + 1 if r and r[1] else 0
            if run >= 6:
                return
        except psycopg.errors.UndefinedTable:
            run = 0
        time.sleep(0.05)
    raise AssertionError("the control session never read the row from the replicas")


def seen(row, i):
    """(stale, on a replica) of a control read: a replica that has not yet
    replayed the row at all is stale too."""
    return (True, True) if row is None else (row[0] < i, row[1])


def tokens_psycopg(url_a, url_b, table):
    stale = control = on_replica = c_on_replica = 0
    with psycopg.connect(url_a, autocommit=True) as a, psycopg.connect(
        url_b, autocommit=True
    ) as b, psycopg.connect(url_b, autocommit=True) as c:
        # The control: plain lag-aware routing, so its reads show what a
        # replica 1 s late returns (with consistency = session a read
        # that once fell back to the primary would keep it there).
        c.execute("SET causeway.consistency = none")
        wait_replicated(
            lambda: c.execute(f"SELECT v, pg_is_in_recovery() FROM {table} WHERE k = 1").fetchone()
        )
        for i in range(1, TOKEN_LOOPS + 1):
            a.execute(f"UPDATE {table} SET v = %s WHERE k = 1", (i,))
            tok = a.execute("SHOW causeway.token", prepare=True).fetchone()[0]
            assert tok.startswith("cw1-"), tok
            b.execute(f"SET causeway.token = '{tok}'", prepare=True)
            v, standby = b.execute(f"SELECT v, pg_is_in_recovery() FROM {table} WHERE k = 1").fetchone()
            stale += v < i
            on_replica += standby
            was_stale, standby = seen(
                c.execute(f"SELECT v, pg_is_in_recovery() FROM {table} WHERE k = 1").fetchone(), i
            )
            control += was_stale
            c_on_replica += standby
    return stale, control, on_replica, c_on_replica


async def tokens_asyncpg(url_a, url_b, table):
    stale = control = on_replica = c_on_replica = 0
    a = await asyncpg.connect(url_a)
    b = await asyncpg.connect(url_b)
    c = await asyncpg.connect(url_b)
    await c.execute("SET causeway.consistency = none")  # the control, as above
    sql = f"SELECT v, pg_is_in_recovery() FROM {table} WHERE k = 1"
    run = 0
    for _ in range(300):  # as wait_replicated
        try:
            r = await c.fetchrow(sql)
            run = run + 1 if r and r[1] else 0
            if run >= 6:
                break
        except asyncpg.exceptions.UndefinedTableError:
            run = 0
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("asyncpg: the control session never read the row from the replicas")
    try:
        for i in range(1, TOKEN_LOOPS + 1):
            await a.execute(f"UPDATE {table} SET v = {i} WHERE k = 1")
            tok = await a.fetchval("SHOW causeway.token")
            assert tok.startswith("cw1-"), tok
            await b.fetch(f"SET causeway.token = '{tok}'")
            r = await b.fetchrow(f"SELECT v, pg_is_in_recovery() FROM {table} WHERE k = 1")
            stale += r[0] < i
            on_replica += r[1]
            was_stale, standby = seen(await c.fetchrow(sql), i)
            control += was_stale
            c_on_replica += standby
    finally:
        for x in (a, b, c):
            await x.close()
    return stale, control, on_replica, c_on_replica


def main():
    url_a, url_b, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    table = f"cw_tokens_{tag}"
    print(f"psycopg {psycopg.__version__}, asyncpg {asyncpg.__version__}", flush=True)
    with psycopg.connect(url_a, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (k int PRIMARY KEY, v int)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 0)")
        tok = conn.execute("SHOW causeway.token").fetchone()[0]
    assert tok.startswith("cw1-"), f"no token after a write: {tok!r}"

    check_psycopg(url_a, tok, None, "psycopg (prepare_threshold=None: never prepared)")
    check_psycopg(url_a, tok, 5, "psycopg (default prepare_threshold=5)")
    check_psycopg(url_a, tok, 0, "psycopg (prepare_threshold=0)")
    asyncio.run(check_asyncpg(url_a, tok))

    for name, run in [
        ("psycopg", lambda: tokens_psycopg(url_a, url_b, table)),
        ("asyncpg", lambda: asyncio.run(tokens_asyncpg(url_a, url_b, table))),
    ]:
        stale, control, on_replica, c_on_replica = run()
        print(
            f"{name}: tokens from instance A to instance B through prepared SHOW/SET: "
            f"{TOKEN_LOOPS} loops, {stale} stale, {on_replica} reads on replicas; "
            f"without the token {control} stale ({c_on_replica} reads on replicas)",
            flush=True,
        )
        assert stale == 0, f"{name}: {stale} stale reads with the token"
        assert control > 0, f"{name}: the control read was never stale: the check cannot fail"
        ok(f"{name} tokens across instances")
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
