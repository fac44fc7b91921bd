-- The due time with a pending reply (028's kiln_due_at_reply) in PL/pgSQL, same
-- signature, same results (issue 15, docs/benchmarks.md "Leasing", third pass).
--
-- 028 wrote it in SQL. Its callers pass kiln_reply_due(...) (a SQL function with a FROM,
-- so not inlined, and costed as expensive) as p_reply_due, which the body references
-- twice, so PostgreSQL never inlined kiln_due_at_reply either: every row ran it through
-- the SQL-function executor, which set up the nested kiln_due_at (a SQL function with a
-- FROM) afresh on each call, parse and plan included. The picked mailboxes' details of a
-- lease (agent_details, ~100 rows) and a report's kiln_refresh_due (~70 rows) cost about
-- 1 ms per row: in the leasing bench at 8 leasers they took ~28 % of kiln's sampled
-- backends, from ~3 % before 028. A PL/pgSQL function keeps the nested call's plan for
-- the transaction: 300 mailboxes' due times 10 times took 68 CPU ticks of the backend
-- with 028's version, 9 with this one, 7 without the reply term as before 028
-- (tests/leasing/test_lease_path.py checks both, the values and the cost).
--
-- CREATE OR REPLACE keeps the function's oid and every caller (kiln_due_for, the
-- lease's agent_details, kiln-api builds of before this migration): online-safe, no
-- table is touched.
CREATE OR REPLACE FUNCTION kiln_due_at_reply(p_now timestamptz, p_tz text, p_ws integer,
                                             p_we integer, p_target integer, p_done integer,
                                             p_next_at timestamptz, p_paced boolean,
                                             p_active boolean, p_reply_due timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF p_reply_due IS NULL OR NOT p_paced THEN
        RETURN kiln_due_at(p_now, p_tz, p_ws, p_we, p_target, p_done, p_next_at, p_paced,
                           p_active);
    END IF;
    RETURN least(kiln_due_at(p_now, p_tz, p_ws, p_we, p_target, p_done, p_next_at, true,
                             p_active),
                 greatest(kiln_due_at(p_now, p_tz, p_ws, p_we, p_target, p_done, p_next_at,
                                      false, p_active), p_reply_due));
END
$$;
