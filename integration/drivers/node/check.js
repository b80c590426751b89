// node-postgres (pg) and Sequelize through Causeway (run by
// integration/tests/drivers.rs).
//
// Usage: node check.js CONNECTION_URL TAG MODE
//   MODE: direct | session | transaction (what is behind the URL)
//
// Named prepared queries, a pg.Pool of clients, transactions, a small
// Sequelize model (sync, create, find), a client ended before its connect()
// finished (Terminate before the StartupMessage), and a pg.Pool whose
// server backends are terminated while idle. Prints one line per check;
// exits non-zero on the first failure.
'use strict';

const assert = require('node:assert/strict');
const pg = require('pg');
const { Sequelize, DataTypes } = require('sequelize');

const [url, tag, mode] = process.argv.slice(2);
const table = `drv_node_${tag}`;

function ok(what, detail = '') {
  console.log(`ok ${what} ${detail}`.trimEnd());
}

async function namedPrepared() {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    await client.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`);
    // A named query is parsed once per connection, then only bound.
    for (let i = 0; i < 50; i++) {
      const r = await client.query({
        name: 'add-upper',
        text: 'SELECT $1::int4 + $2::int4 AS s, upper($3::text) AS u',
        values: [i, 1000, 'abc'],
      });
      assert.deepEqual(r.rows, [{ s: i + 1000, u: 'ABC' }]);
    }
    for (let i = 0; i < 20; i++) {
      await client.query({ name: 'ins', text: `INSERT INTO ${table} VALUES ($1, $2)`, values: [i, `n${i}`] });
    }
    const c = await client.query({ name: 'count', text: `SELECT count(*)::int AS n FROM ${table}` });
    assert.equal(c.rows[0].n, 20);
    ok('named prepared', '71 executions of 3 named statements');
  } finally {
    await client.end();
  }
}

async function poolAndTransactions() {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  try {
    // Many concurrent queries over the pool's 10 clients.
    const jobs = [];
    for (let i = 0; i < 200; i++) {
      jobs.push(
        pool
          .query({ name: 'times3', text: 'SELECT $1::int * 3 AS v', values: [i] })
          .then((r) => assert.equal(r.rows[0].v, i * 3)),
      );
    }
    await Promise.all(jobs);
    ok('pool', '200 named queries over 10 clients');

    const tx = async (id, commit) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(`INSERT INTO ${table} VALUES ($1, $2)`, [id, commit ? 'committed' : 'rolled back']);
        const r = await client.query(`SELECT v FROM ${table} WHERE id = $1`, [id]);
        assert.equal(r.rows.length, 1);
        await client.query(commit ? 'COMMIT' : 'ROLLBACK');
      } finally {
        client.release();
      }
    };
    await Promise.all([tx(-1, true), tx(-2, false), tx(-3, true)]);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await assert.rejects(client.query('SELECT 1/0'), /division by zero/);
      await assert.rejects(client.query('SELECT 1'), /current transaction is aborted/);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const r = await pool.query(`SELECT array_agg(id ORDER BY id) AS ids FROM ${table} WHERE id < 0`);
    assert.deepEqual(r.rows[0].ids, [-3, -1]);
    ok('transactions', 'commit, rollback, error in transaction');
  } finally {
    await pool.end();
  }
}

async function sequelizeModel() {
  const sequelize = new Sequelize(url, { logging: false, pool: { max: 5 } });
  try {
    const Item = sequelize.define(
      'Item',
      {
        name: { type: DataTypes.STRING, allowNull: false },
        qty: { type: DataTypes.INTEGER, defaultValue: 0 },
      },
      { tableName: `${table}_items` },
    );
    await Item.sync({ force: true });
    const a = await Item.create({ name: 'apple', qty: 3 });
    await Item.bulkCreate([{ name: 'pear', qty: 5 }, { name: 'plum' }]);
    assert.ok(a.id > 0);
    const found = await Item.findByPk(a.id);
    assert.equal(found.name, 'apple');
    const all = await Item.findAll({ order: [['name', 'ASC']] });
    assert.deepEqual(all.map((i) => [i.name, i.qty]), [['apple', 3], ['pear', 5], ['plum', 0]]);
    await sequelize.transaction(async (t) => {
      await Item.update({ qty: 10 }, { where: { name: 'plum' }, transaction: t });
    });
    const plum = await Item.findOne({ where: { name: 'plum' } });
    assert.equal(plum.qty, 10);
    ok('sequelize', 'sync, create, bulkCreate, findByPk, findAll, transaction');
  } finally {
    await sequelize.close();
  }
}

async function endBeforeConnected() {
  // node-postgres sends Terminate before the StartupMessage when a client is
  // ended while connecting. PostgreSQL closes without a word; an
  // ErrorResponse would surface as an error (unhandled in many apps).
  for (let i = 0; i < 10; i++) {
    const c = new pg.Client({ connectionString: url });
    let outcome = 'pending';
    c.connect().then(
      () => (outcome = 'connected'),
      (e) => (outcome = `error: ${e.message}`),
    );
    await c.end();
    await new Promise((r) => setImmediate(r));
    assert.ok(!outcome.startsWith('error'), outcome);
  }
  ok('end before connected', '10 clients, no error');
}

async function reconnect() {
  // Backends of an idle pg.Pool are terminated. Directly and in session mode
  // the pool drops the dead clients (its 'error' event) and opens new ones;
  // in transaction mode Causeway replaces the dead server connections and
  // the pool never notices. The killer holds a transaction throughout, so
  // that in transaction mode the killed servers are the ones lent next.
  const name = `rc_${tag}`;
  const killer = new pg.Client({ connectionString: url });
  await killer.connect();
  const pool = new pg.Pool({ connectionString: url, max: 2, application_name: name });
  let idleErrors = 0;
  pool.on('error', () => idleErrors++);
  let lost = 0;
  let killed = 0;
  try {
    await killer.query('BEGIN');
    const a = await pool.connect();
    const b = await pool.connect();
    await Promise.all([a.query('SELECT pg_sleep(0.1)'), b.query('SELECT pg_sleep(0.1)')]);
    a.release();
    b.release();
    const others = 'application_name = $1 AND pid <> pg_backend_pid()';
    const r = await killer.query(`SELECT pid FROM pg_stat_activity WHERE ${others}`, [name]);
    const pids = r.rows.map((x) => x.pid);
    killed = pids.length;
    assert.ok(killed > 0, 'no pooled backend found');
    await killer.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid', [pids]);
    const deadline = Date.now() + 30000;
    for (;;) {
      await killer.query('SELECT pg_stat_clear_snapshot()');
      const n = await killer.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1)', [pids]);
      if (n.rows[0].n === 0) break;
      assert.ok(Date.now() < deadline, 'terminated backends still there');
      await new Promise((res) => setTimeout(res, 50));
    }
    for (let i = 0; i < 10; i++) {
      try {
        const q = await pool.query('SELECT $1::int AS v', [i]);
        assert.equal(q.rows[0].v, i);
      } catch (e) {
        lost++;
      }
    }
    await killer.query('COMMIT');
    if (mode === 'transaction') assert.equal(lost, 0, `${lost} queries failed`);
    const q = await pool.query('SELECT 42 AS v');
    assert.equal(q.rows[0].v, 42);
  } finally {
    await killer.end();
    await pool.end();
  }
  ok('pool after its servers were terminated', `${killed} killed, ${lost} queries lost, ${idleErrors} idle client errors`);
}

(async () => {
  console.log(`pg ${require('pg/package.json').version} sequelize ${require('sequelize/package.json').version} mode=${mode}`);
  // Every stage runs; failures are reported together at the end.
  const failures = [];
  for (const [name, stage] of [
    ['named prepared', namedPrepared],
    ['pool and transactions', poolAndTransactions],
    ['sequelize', sequelizeModel],
    ['end before connected', endBeforeConnected],
    ['reconnect', reconnect],
  ]) {
    try {
      await stage();
    } catch (e) {
      failures.push(`${name}: ${e && e.message ? e.message : e}`);
      console.log(`FAIL ${failures[failures.length - 1]}`);
      console.error(e && e.stack ? e.stack : e);
    }
  }
  if (failures.length > 0) {
    console.log(`node: ${failures.length} check(s) failed: ${JSON.stringify(failures)}`);
    process.exit(1);
  }
  console.log('node: all checks passed');
})().catch((e) => {
  console.error('FAILED:', e && e.stack ? e.stack : e);
  process.exit(1);
});
