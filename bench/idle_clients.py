#!/usr/bin/env python3
"""Hold N idle PostgreSQL client connections open and report a server's RSS.

Used by bench/run.sh to measure how much memory a pooler spends per idle
client. Standard library only (speaks the wire protocol directly), trust
auth only: each client sends a StartupMessage, expects AuthenticationOk and
waits for ReadyForQuery, then stays idle until the hold time is over.

Prints one machine-readable line on stdout:
    connected=N failed=N rss_before_kb=N rss_held_kb=N per_client_kb=X
rss_before_kb is VmRSS of --pid before the first connect; rss_held_kb is the
largest VmRSS sampled while all clients were held. Exit code 0 when every
client logged in, 1 otherwise (the line is still printed).

With --ready-file the hold ends when --release-file appears (or after
--hold): bench/run.sh runs pgbench beside the idle clients in between.
"""

import argparse
import asyncio
import os
import resource
import struct
import sys
import time

PROTOCOL_3_0 = 196608


def vm_rss_kb(pid):
    """VmRSS of a process in KiB, or -1 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def startup_message(user, database):
    body = struct.pack("!I", PROTOCOL_3_0)
    for key, value in (("user", user), ("database", database),
                       ("application_name", "idle_clients")):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def error_text(body):
    """Human-readable text of an ErrorResponse body."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', 'ERROR')} {fields.get('C', '')}: {fields.get('M', '?')}"


async def login(host, port, user, database, timeout):
    """Open one connection and log in; returns the writer (kept open)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port), timeout)
    try:
        writer.write(startup_message(user, database))
        await writer.drain()
        while True:
            header = await asyncio.wait_for(reader.readexactly(5), timeout)
            kind = header[:1]
            (length,) = struct.unpack("!I", header[1:])
            body = await asyncio.wait_for(reader.readexactly(length - 4), timeout)
            if kind == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code != 0:
                    raise RuntimeError(f"server wants auth method {code}; only trust is supported")
            elif kind == b"E":
                raise RuntimeError(error_text(body))
            elif kind == b"Z":
                return reader, writer
            # ParameterStatus, BackendKeyData, NoticeResponse: ignore.
    except BaseException:
        writer.close()
        raise


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--dbname", default="postgres")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--hold", type=float, default=5.0, help="seconds to hold all clients")
    ap.add_argument("--pid", type=int, required=True, help="process whose VmRSS to read")
    ap.add_argument("--parallel", type=int, default=50, help="logins in flight at once")
    ap.add_argument("--timeout", type=float, default=15.0, help="per-login timeout (s)")
    ap.add_argument("--ready-file", help="written (connected=N failed=N) once every login is done")
    ap.add_argument("--release-file", help="hold until this file exists (at most --hold s)")
    args = ap.parse_args()

    # Our own fd limit must fit the sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.clients + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    rss_before = vm_rss_kb(args.pid)
    gate = asyncio.Semaphore(args.parallel)
    errors = []

    async def one():
        async with gate:
            try:
                return await login(args.host, args.port, args.user, args.dbname, args.timeout)
            except Exception as e:  # noqa: BLE001 - count and report any failure
                errors.append(f"{type(e).__name__}: {e}")
                return None

    started = time.monotonic()
    conns = [c for c in await asyncio.gather(*(one() for _ in range(args.clients))) if c]
    login_secs = time.monotonic() - started

    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(f"connected={len(conns)} failed={len(errors)}\n")
        os.rename(args.ready_file + ".tmp", args.ready_file)

    # Hold: sample RSS a few times and keep the peak.
    rss_held = vm_rss_kb(args.pid)
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:
        if args.release_file and os.path.exists(args.release_file):
            break
        await asyncio.sleep(0.25)
        rss_held = max(rss_held, vm_rss_kb(args.pid))

    for _, writer in conns:
        try:
            writer.write(b"X\x00\x00\x00\x04")  # Terminate
            writer.close()
        except Exception:  # noqa: BLE001 - best effort
            pass
    await asyncio.sleep(0.2)

    if errors:
        print(f"idle_clients: {len(errors)} logins failed, first: {errors[0]}", file=sys.stderr)
    per_client = (rss_held - rss_before) / len(conns) if conns and rss_before >= 0 and rss_held >= 0 else float("nan")
    print(f"connected={len(conns)} failed={len(errors)} rss_before_kb={rss_before} "
          f"rss_held_kb={rss_held} per_client_kb={per_client:.1f} login_secs={login_secs:.2f}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
