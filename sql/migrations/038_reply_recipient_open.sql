-- A pending reply lifts its sender's pacing only while it can go out (session 35): its
-- recipient (the mailbox it answers) takes warmup mail now, not deleted, it and its user
-- active. A reply to a mailbox paused, in error or deleted since used to lift pacing all
-- the same: the lease's planner brought the sender's next slot forward to the reply's due
-- time, the reply could not take it (its recipient is not a candidate), a fresh send did,
-- and the sender sent every cooldown until the reply's 3 days ran out. kiln-api's
-- statements say it as REPLY_RECIPIENT_OPEN (api/lease/lease_reply.h); these are the SQL
-- functions' spellings of the same rule. Nothing is rewritten: due times computed before
-- are read again at the next pick.

CREATE OR REPLACE FUNCTION kiln_reply_due(p_mailbox bigint, p_now timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT min(pr.due_at) FROM pending_replies pr
    WHERE pr.mailbox_id = p_mailbox AND pr.send_id IS NULL
      AND pr.due_at > p_now - interval '3 days'
      AND EXISTS (SELECT 1 FROM mailboxes rm JOIN users ru ON ru.id = rm.user_id
                  WHERE rm.id = pr.recipient_id AND rm.deleted_at IS NULL
                    AND rm.state = 'active' AND ru.state = 'active')
$$;

CREATE OR REPLACE FUNCTION kiln_due_for(p_ids bigint[])
RETURNS TABLE (mailbox_id bigint, due_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT m.id,
           kiln_due_at_reply(k.now, m.timezone, m.window_start_hour, m.window_end_hour,
                             kiln_mailbox_target(m, p, t.day),
                             coalesce(d.sent, 0) + coalesce(d.in_flight, 0), ml.next_at,
                             NOT coalesce(s.last_trigger_at > coalesce(ml.leased_at, '-infinity'),
                                          false),
                             m.deleted_at IS NULL AND m.state = 'active' AND u.state = 'active',
                             (SELECT min(pr.due_at) FROM pending_replies pr
                              WHERE pr.mailbox_id = m.id AND pr.send_id IS NULL
                                AND pr.due_at > k.now - interval '3 days'
                                AND EXISTS (SELECT 1 FROM mailboxes rm
                                            JOIN users ru ON ru.id = rm.user_id
                                            WHERE rm.id = pr.recipient_id
                                              AND rm.deleted_at IS NULL
                                              AND rm.state = 'active' AND ru.state = 'active')))
    FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id
    JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id CROSS JOIN service s
    CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k
    CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) t
    LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.day
    WHERE ml.mailbox_id = ANY (p_ids)
$$;
