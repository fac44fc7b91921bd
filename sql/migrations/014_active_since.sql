-- Judge a mailbox from when it became active (issue 13): what is "due by now" today was
-- measured from the opening of its send window even for a mailbox registered (or
-- resumed) this afternoon, so it read as far behind the moment it appeared. active_since
-- is set on insert and whenever the state turns active again; on the local day it falls
-- in, the window's elapsed share counts from then.
ALTER TABLE mailboxes ADD COLUMN active_since timestamptz;
UPDATE mailboxes SET active_since = created_at;
ALTER TABLE mailboxes ALTER COLUMN active_since SET DEFAULT kiln_now(),
                      ALTER COLUMN active_since SET NOT NULL;

CREATE FUNCTION kiln_active_since() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.active_since := kiln_now();
    RETURN NEW;
END
$$;
CREATE TRIGGER mailboxes_active_since BEFORE UPDATE OF state ON mailboxes FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM 'active' AND NEW.state = 'active')
    EXECUTE FUNCTION kiln_active_since();

-- The share of today's send window that has elapsed for a mailbox: from the window's
-- start, or from when the mailbox became active if that was later today; 0 before,
-- 1 after the end; 0 all day when it became active after today's window closed (nothing
-- was due of it today).
CREATE FUNCTION kiln_window_elapsed(local_ts timestamp, start_hour integer, end_hour integer,
                                    active_local timestamp) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN eff >= end_hour THEN 0.0
                ELSE greatest(0.0, least(1.0, (now_h - eff) / (end_hour - eff))) END
    FROM (SELECT extract(epoch FROM local_ts::time) / 3600.0 AS now_h,
                 CASE WHEN active_local::date = local_ts::date
                      THEN greatest(start_hour::numeric, extract(epoch FROM active_local::time) / 3600.0)
                      ELSE start_hour::numeric END AS eff) x
$$;

-- 009's view, window_elapsed through kiln_window_elapsed (same columns, same meaning
-- for a mailbox active before today).
CREATE OR REPLACE VIEW mailbox_today AS
SELECT m.id, m.user_id, m.address, m.state, m.timezone, m.window_start_hour,
       m.window_end_hour, m.last_error, m.last_error_at, m.last_send_at, u.state AS user_state,
       u.plan_id, t.local_ts, t.local_ts::date AS local_day,
       kiln_mailbox_target(m, p, t.local_ts::date) AS target,
       coalesce(d.sent, 0) AS sent, coalesce(d.failed, 0) AS failed,
       coalesce(d.in_flight, 0) AS in_flight,
       kiln_window_elapsed(t.local_ts, m.window_start_hour, m.window_end_hour,
                           m.active_since AT TIME ZONE m.timezone) AS window_elapsed
FROM (SELECT kiln_now() AS now OFFSET 0) c  -- OFFSET 0: keep it a subquery, evaluated once
CROSS JOIN mailboxes m
JOIN users u ON u.id = m.user_id
JOIN plans p ON p.id = u.plan_id
CROSS JOIN LATERAL (SELECT c.now AT TIME ZONE m.timezone AS local_ts) t
LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.local_ts::date
WHERE m.deleted_at IS NULL;
