// Causeway's own commands through node-postgres (run by
// integration/tests/drivers.rs).
//
// Usage: node commands.js CONNECTION_URL TAG
//
// SET/SHOW/RESET causeway.* answer the same over the simple protocol, an
// unnamed extended-protocol query (queryMode: 'extended') and a named
// prepared query (Parse once, then Bind/Execute). Prints one line per
// check; exits non-zero on the first failure.
'use strict';

const assert = require('node:assert/strict');
const pg = require('pg');

const [url, tag] = process.argv.slice(2);
const table = `cw_node_cmd_${tag}`;

async function answer(client, text, how, name) {
  const q = { text };
  if (how === 'extended') q.queryMode = 'extended';
  if (how === 'named') q.name = name;
  try {
    const r = await client.query(q);
    return r.fields.length ? ['row', Object.values(r.rows[0])[0]] : ['done'];
  } catch (e) {
    return ['error', e.code];
  }
}

function expected(tok) {
  return [
    ['SHOW causeway.route', ['row', 'auto']],
    ['SET causeway.route = primary', ['done']],
    ['SHOW causeway.route', ['row', 'primary']],
    ['RESET causeway.route', ['done']],
    ['SHOW causeway.route', ['row', 'auto']],
    [`SET causeway.token = '${tok}'`, ['done']],
    ['SHOW causeway.token', ['row', tok]],
    ["SET causeway.token = 'not-a-token'", ['error', '22023']],
    ['SHOW causeway.nope', ['error', '42704']],
    ['RESET causeway.token', ['error', '55000']],
  ];
}

async function main() {
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  await setup.query(`DROP TABLE IF EXISTS ${table}`);
  await setup.query(`CREATE TABLE ${table} (v int)`);
  await setup.query(`INSERT INTO ${table} VALUES (1)`);
  const tok = (await setup.query('SHOW causeway.token')).rows[0]['causeway.token'];
  assert.match(tok, /^cw1-/, `no token after a write: ${tok}`);
  await setup.end();

  for (const how of ['simple', 'extended', 'named']) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      for (let round = 0; round < 3; round++) {
        const list = expected(tok);
        for (let i = 0; i < list.length; i++) {
          const [sql, want] = list[i];
          const got = await answer(client, sql, how, `cw_${i}`);
          assert.deepEqual(got, want, `${how} round ${round}: ${sql}`);
        }
      }
      // A prepared SET changes where reads go.
      await answer(client, 'SET causeway.route = primary', how, 'cw_route');
      const r = await client.query('SELECT pg_is_in_recovery() AS standby');
      assert.equal(r.rows[0].standby, false, `${how}: SET causeway.route = primary ignored`);
    } finally {
      await client.end();
    }
    console.log(`ok node-postgres ${how}: 3 rounds of ${expected(tok).length} commands`);
  }
  console.log('all checks passed');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
