-- 014's kiln_window_elapsed computed the window's effective start in a FROM subquery, so
-- PostgreSQL could not inline it: every row of mailbox_today ran it through the
-- SQL-function executor. The stats snapshot (api/db/stats.c, every
-- KILN_STATS_INTERVAL_S on each kiln-api) reads that column for every live mailbox: at
-- 100,000 mailboxes it took ~0.85 s of one backend's CPU a call, the same order as a
-- whole second of event ingestion (docs/benchmarks.md "Inbox event ingestion"). The
-- same rules as one expression (no FROM: inlined into the view's plan). Same result for
-- every input (checked against 014's form over a grid in leasing_stats_snapshot).
CREATE OR REPLACE FUNCTION kiln_window_elapsed(local_ts timestamp, start_hour integer,
                                               end_hour integer, active_local timestamp)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN CASE WHEN active_local::date = local_ts::date
                          THEN greatest(start_hour::numeric,
                                        extract(epoch FROM active_local::time) / 3600.0)
                          ELSE start_hour::numeric END >= end_hour THEN 0.0
                ELSE greatest(0.0, least(1.0,
                    (extract(epoch FROM local_ts::time) / 3600.0
                     - CASE WHEN active_local::date = local_ts::date
                            THEN greatest(start_hour::numeric,
                                          extract(epoch FROM active_local::time) / 3600.0)
                            ELSE start_hour::numeric END)
                    / (end_hour - CASE WHEN active_local::date = local_ts::date
                                       THEN greatest(start_hour::numeric,
                                                     extract(epoch FROM active_local::time) / 3600.0)
                                       ELSE start_hour::numeric END))) END
$$;
