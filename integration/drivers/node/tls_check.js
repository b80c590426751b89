// node-postgres (pg) over TLS through Causeway (run by integration/tests/tls.rs).
//
// Usage: node tls_check.js HOST PORT CA_FILE USER PASSWORD DBNAME
//
// Causeway must run with client_tls_sslmode = require and a certificate for
// 127.0.0.1 signed by CA_FILE. Checks: a verified TLS connection (CA and
// host name), an unknown CA refused, plaintext refused.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const pg = require('pg');

const [host, port, caFile, user, password, database] = process.argv.slice(2);
const base = { host, port: Number(port), user, password, database, connectionTimeoutMillis: 10000 };

function ok(what, detail = '') {
  console.log(`ok ${what} ${detail}`.trimEnd());
}

async function verified() {
  const client = new pg.Client({ ...base, ssl: { ca: fs.readFileSync(caFile, 'utf8'), rejectUnauthorized: true } });
  await client.connect();
  try {
    assert.ok(client.connection.stream.encrypted, 'not encrypted');
    const r = await client.query('SELECT $1::int * 2 AS v', [21]);
    assert.equal(r.rows[0].v, 42);
    ok('pg ssl { ca, rejectUnauthorized }', client.connection.stream.getProtocol());
  } finally {
    await client.end();
  }
}

async function refused(what, config, check) {
  const client = new pg.Client(config);
  try {
    await client.connect();
  } catch (e) {
    check(e);
    ok(what, String(e.message).slice(0, 80));
    return;
  } finally {
    client.end().catch(() => {});
  }
  throw new Error(`${what}: connected`);
}

async function main() {
  console.log(`pg ${require('pg/package.json').version}, node ${process.version}`);
  await verified();
  await refused('pg unknown CA refused', { ...base, ssl: { rejectUnauthorized: true } }, (e) =>
    assert.match(String(e.code || e.message), /CERT|certificate|VERIFY|SIGNATURE|issuer/i));
  await refused('pg plaintext refused', { ...base, ssl: false }, (e) =>
    assert.match(e.message, /SSL required/));
  console.log('all checks passed');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
