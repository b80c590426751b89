"""asyncpg through Causeway (run by integration/tests/drivers.rs).

Usage: python asyncpg_check.py DSN TAG MODE
  MODE: direct | session | transaction (what is behind DSN)

Prepared queries with asyncpg's default statement cache, executemany, COPY
both ways, transactions, then 50 concurrent connections (over a Causeway
pool of 5 in transaction mode). Prints one line per check; exits non-zero
on the first failure.
"""

import asyncio
import io
import sys

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


async def main():
    dsn, tag, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    table = f"drv_asyncpg_{tag}"
    print(f"asyncpg {asyncpg.__version__} mode={mode}", flush=True)
    await single(dsn, table)
    await concurrent(dsn, table)
    print("asyncpg: all checks passed", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
