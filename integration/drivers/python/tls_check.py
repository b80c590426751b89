"""psycopg 3 and asyncpg over TLS through Causeway (run by integration/tests/tls.rs).

Usage: python tls_check.py HOST PORT CA_FILE USER PASSWORD DBNAME

Causeway must run with client_tls_sslmode = require and a certificate for
127.0.0.1 signed by CA_FILE. Checks: psycopg (libpq) with sslmode=verify-full
and channel_binding=require (SCRAM-SHA-256-PLUS), PostgreSQL 17's direct TLS
(sslnegotiation=direct), a wrong host name refused by verify-full, plaintext
refused; asyncpg with a verifying SSL context, and asyncpg's direct_tls.
Prints one line per check; exits non-zero on the first failure.
"""

import asyncio
import ssl
import sys

import asyncpg
import psycopg


def ok(what, detail=""):
    print(f"ok {what} {detail}".rstrip(), flush=True)


def psycopg_checks(host, port, ca, user, password, db):
    base = f"host={host} port={port} user={user} password={password} dbname={db} connect_timeout=10"
    libpq = psycopg.pq.version()
    with psycopg.connect(f"{base} sslmode=verify-full sslrootcert={ca} channel_binding=require") as c:
        assert c.info.pgconn.ssl_in_use, "not encrypted"
        assert c.execute("SELECT 41 + 1").fetchone()[0] == 42
    ok("psycopg verify-full + channel_binding=require", f"libpq {libpq}")
    if libpq >= 170000:
        with psycopg.connect(f"{base} sslmode=verify-full sslrootcert={ca} sslnegotiation=direct") as c:
            assert c.info.pgconn.ssl_in_use
            assert c.execute("SELECT 'direct'").fetchone()[0] == "direct"
        ok("psycopg sslnegotiation=direct")
    else:
        print(f"skip sslnegotiation=direct (libpq {libpq} < 17)")
    try:
        psycopg.connect(
            f"host=wrong.example hostaddr={host} port={port} user={user} password={password} "
            f"dbname={db} sslmode=verify-full sslrootcert={ca} connect_timeout=10"
        )
        raise AssertionError("verify-full accepted a certificate for another host name")
    except psycopg.OperationalError as e:
        ok("psycopg verify-full wrong host name refused", str(e).splitlines()[0][:80])
    try:
        psycopg.connect(f"{base} sslmode=disable")
        raise AssertionError("plaintext accepted under client_tls_sslmode=require")
    except psycopg.OperationalError as e:
        assert "SSL required" in str(e), e
        ok("psycopg sslmode=disable refused", "SSL required")


async def asyncpg_checks(host, port, ca, user, password, db):
    ctx = ssl.create_default_context(cafile=ca)
    conn = await asyncpg.connect(host=host, port=port, user=user, password=password, database=db, ssl=ctx)
    try:
        assert await conn.fetchval("SELECT $1::int * 2", 21) == 42
    finally:
        await conn.close()
    ok("asyncpg ssl context (verify-full)")
    # Direct TLS must announce ALPN "postgresql" (as PostgreSQL 17 demands);
    # asyncpg sets it only on contexts it builds itself.
    try:
        await asyncpg.connect(
            host=host, port=port, user=user, password=password, database=db, ssl=ctx, direct_tls=True
        )
        raise AssertionError("direct TLS without ALPN was accepted")
    except (ConnectionError, OSError, asyncpg.PostgresError) as e:
        ok("asyncpg direct_tls without ALPN refused", type(e).__name__)
    ctx.set_alpn_protocols(["postgresql"])
    conn = await asyncpg.connect(
        host=host, port=port, user=user, password=password, database=db, ssl=ctx, direct_tls=True
    )
    try:
        assert await conn.fetchval("SELECT 'direct'") == "direct"
    finally:
        await conn.close()
    ok("asyncpg direct_tls (ALPN postgresql)")
    wrong = ssl.create_default_context()  # system CAs: do not know the test CA
    try:
        await asyncpg.connect(host=host, port=port, user=user, password=password, database=db, ssl=wrong)
        raise AssertionError("a certificate from an unknown CA was accepted")
    except ssl.SSLCertVerificationError:
        ok("asyncpg unknown CA refused")


def main():
    host, port, ca, user, password, db = sys.argv[1:7]
    print(f"psycopg {psycopg.__version__}, asyncpg {asyncpg.__version__}", flush=True)
    psycopg_checks(host, int(port), ca, user, password, db)
    asyncio.run(asyncpg_checks(host, int(port), ca, user, password, db))
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
