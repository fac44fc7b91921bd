"""pg_stat_statements for the benches (BENCH_PGSS=1 in the leasing and scale benches):
loaded once before the load, reset at a window's start, and per statement of kiln's
database over the window: calls, time (wall: lock waits included), planning, rows, WAL
bytes, full-page images and buffers dirtied, each per send."""
from kiln_test import psql, stack_bash


def pgss_setup():
    """pg_stat_statements loaded: PostgreSQL and kiln-api restart once (before the load: a
    kiln-agent connected through them sees its requests fail meanwhile)."""
    stack_bash("stack_api_down; stack_psql -tA -c \"ALTER SYSTEM SET shared_preload_libraries "
               "= 'pg_stat_statements'\" && stack_pg_down && stack_pg_up && stack_api_up")
    psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    psql("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
    psql("SELECT pg_reload_conf()")


def pgss_reset():
    psql("SELECT pg_stat_statements_reset()")


def pgss_summary(sends):
    """Per statement of kiln's database, this level: calls, the time it ran (wall: lock
    waits included) per send, rows, WAL bytes and full-page images per send."""
    rows = psql("""SELECT calls, total_exec_time, plans, total_plan_time, rows, wal_bytes,
                   wal_fpi, shared_blks_dirtied, left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
                   FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                   WHERE d.datname = 'kiln'
                   ORDER BY total_exec_time + total_plan_time DESC LIMIT 16""")
    n = max(sends, 1)
    tot = [0.0, 0.0, 0.0, 0.0]
    for r in rows:
        calls, ms, plans, pms, nrows, wal, fpi, dirt, q = r.split("|", 8)
        tot[0] += float(ms)
        tot[1] += float(pms)
        tot[2] += float(wal)
        tot[3] += float(fpi)
        print("  pgss calls=%-5s us/send=%6.2f plans=%-5s plan_us/send=%5.2f rows/send=%5.2f "
              "wal_bytes/send=%6.1f fpi/1000sends=%5.1f dirtied/1000sends=%5.1f  %s"
              % (calls, 1000.0 * float(ms) / n, plans, 1000.0 * float(pms) / n, float(nrows) / n,
                 float(wal) / n, 1000.0 * float(fpi) / n, 1000.0 * float(dirt) / n, q))
    print("  pgss top 16: us/send=%.1f (planning %.1f) wal_bytes/send=%.0f fpi/1000sends=%.1f"
          % (1000.0 * tot[0] / n, 1000.0 * tot[1] / n, tot[2] / n, 1000.0 * tot[3] / n),
          flush=True)
