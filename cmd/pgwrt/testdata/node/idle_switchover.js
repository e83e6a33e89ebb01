// node-postgres pg.Pool through pgwrt in transaction mode, across a
// switchover. The Go test (TestNodePostgresSwitchover) drives it: fill the
// pool with idle connections, say "ready", wait for "go" on stdin (the test
// stops the primary and promotes a standby meanwhile), then use every idle
// connection again. It prints one JSON line with what the app saw,
// including the pool's "error" events (node-postgres's "idle client error").
'use strict';
const { Pool } = require('pg');
const readline = require('readline');

const pool = new Pool({ connectionString: process.env.PGWRT_DSN, max: 8, idleTimeoutMillis: 0 });
const idleErrors = [];
pool.on('error', (err) => idleErrors.push(String(err.message)));

async function port() {
  const r = await pool.query('SELECT inet_server_port() AS port');
  return r.rows[0].port;
}

async function fill() {
  // Eight at once, so the pool opens eight connections.
  const clients = await Promise.all(Array.from({ length: 8 }, () => pool.connect()));
  const ports = [];
  for (const c of clients) {
    ports.push((await c.query('SELECT inet_server_port() AS port')).rows[0].port);
    c.release();
  }
  return ports;
}

(async () => {
  const before = await fill();
  process.stdout.write('ready ' + JSON.stringify(before) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim() === 'go') break;
  }
  rl.close();
  const errors = [];
  const after = [];
  await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    try {
      after.push(await port());
    } catch (e) {
      errors.push(`query ${i}: ${e.message}`);
    }
  }));
  process.stdout.write(JSON.stringify({ before, after, errors, idleErrors, total: pool.totalCount }) + '\n');
  await pool.end();
})().catch((e) => {
  process.stdout.write(JSON.stringify({ fatal: String(e && e.stack || e) }) + '\n');
  process.exit(1);
});
