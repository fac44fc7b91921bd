-- A due reply lifts pacing for its slot (issue 14). Before, a reply waited for its
-- mailbox's next paced slot: a mailbox that had sent 8 of its 10 for the day over a 0-24
-- window had its next slot hours away, and a reply due a minute after the reading left
-- hours later. Now a mailbox with a pending reply is due at the reply's due time (never
-- before its cooldown, inside its window, under its day's target): the reply takes one of
-- the day's sends, so the volume does not change. lease_plan.c places the slot the same
-- way (lease_mailbox.reply_due_s); docs/design.md "Replies are sends".

-- kiln_due_at with the mailbox's earliest pending reply: the paced due time, or, when
-- earlier, the unpaced one (cooldown, window, target) floored at the reply's due time.
CREATE FUNCTION kiln_due_at_reply(p_now timestamptz, p_tz text, p_ws integer, p_we integer,
                                  p_target integer, p_done integer, p_next_at timestamptz,
                                  p_paced boolean, p_active boolean, p_reply_due timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_reply_due IS NULL OR NOT p_paced
        THEN kiln_due_at(p_now, p_tz, p_ws, p_we, p_target, p_done, p_next_at, p_paced, p_active)
        ELSE least(kiln_due_at(p_now, p_tz, p_ws, p_we, p_target, p_done, p_next_at, true,
                               p_active),
                   greatest(kiln_due_at(p_now, p_tz, p_ws, p_we, p_target, p_done, p_next_at,
                                        false, p_active), p_reply_due))
    END
$$;

-- The earliest pending reply of a mailbox still worth sending (lease_reply.c's REPLY_TTL:
-- a reply 3 days past its due time is not sent). pending_replies_due_idx serves it.
CREATE FUNCTION kiln_reply_due(p_mailbox bigint, p_now timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT min(due_at) FROM pending_replies
    WHERE mailbox_id = p_mailbox AND send_id IS NULL AND due_at > p_now - interval '3 days'
$$;

-- 022's kiln_due_for (the due_at kiln_refresh_due stores), with the reply term.
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
                             kiln_reply_due(m.id, k.now))
    FROM mailbox_leasing ml JOIN mailboxes m ON m.id = ml.mailbox_id
    JOIN users u ON u.id = m.user_id JOIN plans p ON p.id = u.plan_id CROSS JOIN service s
    CROSS JOIN (SELECT kiln_now() AS now OFFSET 0) k
    CROSS JOIN LATERAL (SELECT (k.now AT TIME ZONE m.timezone)::date AS day) t
    LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.day
    WHERE ml.mailbox_id = ANY (p_ids)
$$;
