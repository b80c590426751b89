"""asyncpg through Causeway (run by integration/tests/drivers.rs).

Usage: python asyncpg_check.py DSN TAG MODE
  MODE: direct | session | transaction (what is behind DSN)

Prepared queries with asyncpg's default statement cache, executemany (its
pipeline: many Bind/Execute before one Sync), COPY both ways, transactions,
a cached statement invalidated by ALTER TABLE ... TYPE (asyncpg re-prepares
it by itself), reconnecting after the server side of connections was
terminated, then 50 concurrent connections (over a Causeway pool of 5 in
transaction mode). Prints one line per check; exits non-zero on the first
failure.
"""

import asyncio
import io
import sys
import time

import asyncpg


def ok(what, detail=""):
    print(f"ok {what} {detail}".rstrip(), flush=True)


async def single(dsn, table):
    conn = await asyncpg.connect(dsn)  # statement_cache_size default (100)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")

        stmt = await conn.prepare("SELECT $1::int4 + $2::int4 AS s, upper($3::text) AS u")
        for i in range(50):
            row = await stmt.fetchrow(i, 1000, "abc")
            assert row["s"] == i + 1000 and row["u"] == "ABC", row
        ok("prepare+fetchrow", "50 executions")

        # fetch/fetchval with arguments go through the statement cache.
        for i in range(50):
            rows = await conn.fetch("SELECT g, $1::text FROM generate_series(1, $2::int) g", "x", i % 5 + 1)
            assert len(rows) == i % 5 + 1 and rows[0][1] == "x", rows
            assert await conn.fetchval("SELECT $1::int8 * 2", i) == i * 2
        ok("fetch+fetchval cached", "100 executions")

        await conn.executemany(
            f"INSERT INTO {table} (id, v) VALUES ($1, $2)",
            [(i, f"row {i}") for i in range(1000)],
        )
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1000
        ok("executemany", "1000 rows")

        res = await conn.copy_records_to_table(
            table, records=[(i, f"copied {i}") for i in range(1000, 6000)], columns=["id", "v"]
        )
        assert res == "COPY 5000", res
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 6000
        buf = io.BytesIO()
        res = await conn.copy_from_query(f"SELECT id, v FROM {table} ORDER BY id", output=buf, format="csv")
        assert res == "COPY 6000", res
        lines = buf.getvalue().decode().splitlines()
        assert len(lines) == 6000 and lines[0] == "0,row 0" and lines[-1] == "5999,copied 5999", lines[:2]
        ok("copy_records_to_table+copy_from_query", "5000 in, 6000 out")

        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES (-1, 'committed')")
        try:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES (-2, 'rolled back')")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        vals = await conn.fetch(f"SELECT v FROM {table} WHERE id < 0 ORDER BY id")
        assert [r["v"] for r in vals] == ["committed"], vals
        try:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES (-3, 'x')")
                await conn.execute("SELECT 1/0")
        except asyncpg.DivisionByZeroError:
            pass
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id = -3") == 0
        ok("transactions", "commit, rollback, error")
    finally:
        await conn.close()


async def concurrent(dsn, table, n=50, rounds=20):
    conns = await asyncio.gather(*[asyncpg.connect(dsn) for _ in range(n)])

    async def work(k, conn):
        for r in range(rounds):
            assert await conn.fetchval("SELECT $1::int4 * 2", k * 1000 + r) == (k * 1000 + r) * 2
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} (id, v) VALUES ($1, $2)", 100000 + k * 1000 + r, f"c{k}")
                got = await conn.fetchval(f"SELECT v FROM {table} WHERE id = $1", 100000 + k * 1000 + r)
                assert got == f"c{k}", got

    try:
        await asyncio.gather(*[work(k, c) for k, c in enumerate(conns)])
    finally:
        await asyncio.gather(*[c.close() for c in conns])
    conn = await asyncpg.connect(dsn)
    try:
        got = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id >= 100000")
        assert got == n * rounds, got
    finally:
        await conn.close()
    ok("concurrent", f"{n} connections x {rounds} rounds")


async def invalidation(dsn, table):
    """A cached statement whose result type changes under it (ALTER TABLE
    from another connection): asyncpg gets InvalidCachedStatementError,
    re-prepares under a new name and retries, so the application never sees
    it, and a new connection's statement works at once."""
    t = f"{table}_inv"
    q = f"SELECT a FROM {t}"
    conn = await asyncpg.connect(dsn)
    other = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {t}")
        await conn.execute(f"CREATE TABLE {t} (a int)")
        await conn.execute(f"INSERT INTO {t} VALUES (7)")
        for _ in range(3):
            assert await conn.fetchval(q) == 7
            assert await other.fetchval(q) == 7
        await other.execute(f"ALTER TABLE {t} ALTER a TYPE text")
        for _ in range(5):
            assert await conn.fetchval(q) == "7"
        fresh = await asyncpg.connect(dsn)
        try:
            for _ in range(5):
                assert await fresh.fetchval(q) == "7"
        finally:
            await fresh.close()
    finally:
        await conn.close()
        await other.close()
    ok("statement invalidated by ALTER TABLE", "re-prepared by asyncpg")


async def reconnect(dsn, tag, mode):
    """An asyncpg pool whose server backends are terminated while idle: the
    pool's next queries work (directly and in session mode asyncpg notices
    the lost connections and opens new ones, so a query or two may fail; in
    transaction mode Causeway drops the dead server connections and the pool
    never notices). The killer holds a transaction throughout, so that in
    transaction mode the pooled servers it kills are the ones lent next."""
    name = f"rc_{tag}"
    killer = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2, server_settings={"application_name": name})
    try:
        async with killer.transaction():
            await killer.execute("SELECT 1")
            async with pool.acquire() as a, pool.acquire() as b:
                await asyncio.gather(a.fetchval("SELECT pg_sleep(0.1)"), b.fetchval("SELECT pg_sleep(0.1)"))
            others = "application_name = $1 AND pid <> pg_backend_pid()"
            pids = [r[0] for r in await killer.fetch(f"SELECT pid FROM pg_stat_activity WHERE {others}", name)]
            assert pids, "no pooled backend found"
            await killer.execute(f"SELECT pg_terminate_backend(pid) FROM unnest(ARRAY{pids}::int[]) pid")
            deadline = time.monotonic() + 30
            while True:
                await killer.execute("SELECT pg_stat_clear_snapshot()")
                if await killer.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", pids) == 0:
                    break
                assert time.monotonic() < deadline, "terminated backends still there"
                await asyncio.sleep(0.05)
            lost = 0
            for i in range(10):
                try:
                    assert await pool.fetchval("SELECT $1::int", i) == i
                except (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.AdminShutdownError,
                        asyncpg.exceptions.InterfaceError):
                    lost += 1
        if mode == "transaction":
            assert lost == 0, f"{lost} queries failed"
        assert await pool.fetchval("SELECT 42") == 42
    finally:
        await killer.close()
        await pool.close()
    ok("pool after its servers were terminated", f"{len(pids)} killed, {lost} queries lost")


async def main():
    dsn, tag, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    table = f"drv_asyncpg_{tag}"
    print(f"asyncpg {asyncpg.__version__} mode={mode}", flush=True)
    await single(dsn, table)
    await invalidation(dsn, table)
    await reconnect(dsn, tag, mode)
    await concurrent(dsn, table)
    print("asyncpg: all checks passed", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
