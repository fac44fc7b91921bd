// The second peer of the leasing bench (issue 15): graphile-worker, a PostgreSQL-backed
// job queue, in its batched mode as its own perf test runs it (perfTest/graphile.config.js:
// 24 concurrent jobs a process, a local queue of 500 jobs fetched and locked at once,
// completions batched with completeJobBatchDelay 0), on the PostgreSQL of the bench, in a
// database of its own. Jobs do nothing: the figure is the queue's overhead alone.
//   node graphile_peer.js bench PROCESSES JOBS SECONDS   prints one JSON line
//   node graphile_peer.js work                           (a worker process; internal)
// Env: GW_PGHOST (socket dir), GW_PGPORT, GW_PGDATABASE; NODE_PATH has graphile-worker
// (installed at bench time under the build dir by bench.py, never in the repository);
// GW_PGPID, the postmaster's pid: the CPU of PostgreSQL (its process tree) and of the
// worker processes over the timed window, per job, to set beside kiln's per send.
"use strict";
const { fork } = require("child_process");
const fs = require("fs");
const { Pool } = require("pg");
const { Logger, run, runMigrations } = require("graphile-worker");

const CONCURRENCY = 24;
const WARMUP_MS = 3000;

function pool(max) {
  return new Pool({
    host: process.env.GW_PGHOST,
    port: Number(process.env.GW_PGPORT),
    user: "postgres",
    database: process.env.GW_PGDATABASE,
    max,
  });
}

const preset = {
  worker: {
    concurrentJobs: CONCURRENCY,
    maxPoolSize: CONCURRENCY + 1,
    localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};
// Only errors would matter, and a job that does nothing has none: no log at all.
const quiet = new Logger(() => () => {});

async function work() {
  const pgPool = pool(CONCURRENCY + 1);
  const runner = await run({
    pgPool,
    concurrency: CONCURRENCY,
    noHandleSignals: true,
    logger: quiet,
    preset,
    taskList: { noop: async () => {} },
  });
  const stop = async () => {
    await runner.stop();
    await pgPool.end();
    process.exit(0);
  };
  process.on("message", (m) => m === "stop" && stop());
  process.on("SIGTERM", stop);
  process.send("ready");
}

// CPU seconds (user + system, from /proc) of pid and every process below it: each live
// member's own and its reaped children's (cutime, cstime), so a backend that exits inside
// the window still counts (tests/lib/proc_cpu.py tree_cpu, the same rule).
function treeCpu(root) {
  const tick = 100; // USER_HZ: 100 on Linux
  const kids = new Map();
  const cpu = new Map();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(d)) continue;
    let st;
    try {
      st = fs.readFileSync("/proc/" + d + "/stat", "utf8");
    } catch (e) {
      continue; // gone meanwhile
    }
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(f[1]);
    cpu.set(Number(d), (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / tick);
    if (!kids.has(ppid)) kids.set(ppid, []);
    kids.get(ppid).push(Number(d));
  }
  let sum = 0;
  const todo = [root];
  while (todo.length) {
    const p = todo.pop();
    sum += cpu.get(p) || 0;
    for (const k of kids.get(p) || []) todo.push(k);
  }
  return sum;
}

function cpuNow(children) {
  const pg = process.env.GW_PGPID ? treeCpu(Number(process.env.GW_PGPID)) : NaN;
  let node = treeCpu(process.pid);
  for (const c of children) if (c.exitCode !== null) node = NaN;
  return { pg, node };
}

async function remaining(db) {
  const r = await db.query("SELECT count(*)::bigint AS n FROM graphile_worker._private_jobs");
  return Number(r.rows[0].n);
}

async function bench(procs, jobs, seconds) {
  const db = pool(2);
  await runMigrations({ pgPool: db, logger: quiet });
  // Jobs added the public way (add_jobs), 50,000 a statement.
  for (let done = 0; done < jobs; done += 50000) {
    const n = Math.min(50000, jobs - done);
    await db.query(
      "SELECT graphile_worker.add_jobs(array_agg(ROW('noop', json_build_object('id', g), " +
        "NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec)) " +
        "FROM generate_series($1::int, $2::int) g",
      [done + 1, done + n],
    );
  }
  await db.query("VACUUM ANALYZE graphile_worker._private_jobs");
  const children = [];
  await Promise.all(
    Array.from({ length: procs }, () => {
      const c = fork(__filename, ["work"], { stdio: "inherit" });
      children.push(c);
      return new Promise((ok) => c.once("message", ok));
    }),
  );
  await new Promise((ok) => setTimeout(ok, WARMUP_MS));
  const n0 = await remaining(db);
  const c0 = cpuNow(children);
  const t0 = process.hrtime.bigint();
  await new Promise((ok) => setTimeout(ok, seconds * 1000));
  const n1 = await remaining(db);
  const c1 = cpuNow(children);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  await Promise.all(
    children.map(
      (c) =>
        new Promise((ok) => {
          const kill = setTimeout(() => c.kill("SIGKILL"), 10000);
          c.once("exit", () => {
            clearTimeout(kill);
            ok();
          });
          c.send("stop");
        }),
    ),
  );
  await db.end();
  console.log(
    JSON.stringify({
      processes: procs,
      concurrency: CONCURRENCY,
      jobs_done: n0 - n1,
      seconds: dt,
      jobs_per_s: (n0 - n1) / dt,
      emptied: n1 === 0,
      pg_cpu_us_per_job: ((c1.pg - c0.pg) * 1e6) / Math.max(1, n0 - n1),
      node_cpu_us_per_job: ((c1.node - c0.node) * 1e6) / Math.max(1, n0 - n1),
    }),
  );
}

const [mode, ...args] = process.argv.slice(2);
const main =
  mode === "work" ? work() : bench(Number(args[0]), Number(args[1]), Number(args[2]));
main.catch((e) => {
  console.error("graphile_peer: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
