-- kiln core schema: plans, users (tenants), mailboxes, per-day counters, service state,
-- agents, tokens, leases, sends, metric counters. Applied by `kiln-api migrate`.

-- One clock for all policy. Tests move it by setting kiln_clock.offset_s; production
-- leaves it at 0. Every policy query calls kiln_now(), never now() directly.
CREATE TABLE kiln_clock (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    offset_s double precision NOT NULL DEFAULT 0
);
INSERT INTO kiln_clock DEFAULT VALUES;

CREATE FUNCTION kiln_now() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT now() + make_interval(secs => offset_s) FROM kiln_clock
$$;

CREATE TYPE user_state AS ENUM ('active', 'paused', 'disabled');
CREATE TYPE mailbox_state AS ENUM ('active', 'paused', 'error', 'disabled');
CREATE TYPE smtp_security AS ENUM ('starttls', 'tls', 'plain');
-- A send's status is an ENUM: the legacy 'SENT' vs 'sent' mismatch cannot be written.
CREATE TYPE send_status AS ENUM ('leased', 'sent', 'deferred', 'failed', 'auth', 'tls',
                                 'unknown', 'expired', 'cancelled');
CREATE TYPE token_scope AS ENUM ('admin', 'tenant', 'agent', 'metrics');
CREATE TYPE service_state AS ENUM ('running', 'stopped');

CREATE TABLE plans (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    ramp_start      integer NOT NULL CHECK (ramp_start BETWEEN 0 AND 10000),
    ramp_step       integer NOT NULL CHECK (ramp_step BETWEEN 0 AND 10000),
    daily_max       integer NOT NULL CHECK (daily_max BETWEEN 0 AND 10000),
    cooldown_min_s  integer NOT NULL DEFAULT 120 CHECK (cooldown_min_s >= 0),
    cooldown_max_s  integer NOT NULL DEFAULT 300,
    reply_rate      real NOT NULL DEFAULT 0.3 CHECK (reply_rate BETWEEN 0 AND 1),
    weekdays_only   boolean NOT NULL DEFAULT false,
    user_hourly_cap integer NOT NULL DEFAULT 500 CHECK (user_hourly_cap >= 0),
    user_minute_cap integer NOT NULL DEFAULT 20 CHECK (user_minute_cap >= 0),
    max_mailboxes   integer NOT NULL DEFAULT 100 CHECK (max_mailboxes >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (cooldown_max_s >= cooldown_min_s)
);

CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    plan_id    bigint NOT NULL REFERENCES plans (id),
    timezone   text NOT NULL DEFAULT 'UTC',
    state      user_state NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_plan_idx ON users (plan_id);

CREATE TABLE mailboxes (
    id                bigserial PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id),
    address           text NOT NULL,
    display_name      text NOT NULL DEFAULT '',
    smtp_host         text NOT NULL,
    smtp_port         integer NOT NULL CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_security     smtp_security NOT NULL DEFAULT 'starttls',
    smtp_username     text NOT NULL,
    smtp_secret       bytea NOT NULL,          -- AES-256-GCM sealed, never returned by a GET
    timezone          text NOT NULL,
    window_start_hour integer NOT NULL DEFAULT 6 CHECK (window_start_hour BETWEEN 0 AND 23),
    window_end_hour   integer NOT NULL DEFAULT 22 CHECK (window_end_hour BETWEEN 1 AND 24),
    daily_target      integer CHECK (daily_target BETWEEN 0 AND 10000),
    state             mailbox_state NOT NULL DEFAULT 'active',
    last_error        text,
    last_error_at     timestamptz,
    warmup_start      date NOT NULL,
    last_send_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CHECK (window_end_hour > window_start_hour)
);
CREATE UNIQUE INDEX mailboxes_address_live_idx ON mailboxes (lower(address)) WHERE deleted_at IS NULL;
CREATE INDEX mailboxes_user_idx ON mailboxes (user_id, id) WHERE deleted_at IS NULL;

-- Per mailbox per local day: written in the report transaction, so quota and metric
-- reads never scan sends. fillfactor leaves room for HOT updates of the counters.
CREATE TABLE mailbox_days (
    mailbox_id bigint NOT NULL REFERENCES mailboxes (id),
    day        date NOT NULL,
    sent       integer NOT NULL DEFAULT 0,
    failed     integer NOT NULL DEFAULT 0,
    replied    integer NOT NULL DEFAULT 0,
    in_flight  integer NOT NULL DEFAULT 0,
    received   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, day)
) WITH (fillfactor = 70);

CREATE TABLE service (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    state           service_state NOT NULL DEFAULT 'running',
    since           timestamptz NOT NULL DEFAULT now(),
    last_trigger_at timestamptz,
    trigger_count   bigint NOT NULL DEFAULT 0
);
INSERT INTO service DEFAULT VALUES;

CREATE TABLE agents (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz
);

-- Bearer tokens, stored as SHA-256 hex of the token; the token itself is shown once.
CREATE TABLE tokens (
    id         bigserial PRIMARY KEY,
    scope      token_scope NOT NULL,
    user_id    bigint REFERENCES users (id),
    agent_id   bigint REFERENCES agents (id),
    hash       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK ((scope = 'tenant') = (user_id IS NOT NULL)),
    CHECK ((scope = 'agent') = (agent_id IS NOT NULL))
);

CREATE TABLE leases (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id    bigint NOT NULL REFERENCES agents (id),
    created_at  timestamptz NOT NULL DEFAULT kiln_now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz,            -- released or expired
    ttl_s       integer NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX leases_live_idx ON leases (expires_at) WHERE ended_at IS NULL;

CREATE TABLE sends (
    id            bigserial PRIMARY KEY,
    mailbox_id    bigint NOT NULL REFERENCES mailboxes (id),
    recipient_id  bigint REFERENCES mailboxes (id),
    lease_id      uuid REFERENCES leases (id),
    day           date NOT NULL,           -- the sender's local day the send counts for
    scheduled_at  timestamptz NOT NULL,
    status        send_status NOT NULL DEFAULT 'leased',
    smtp_code     integer,
    enhanced_code text,
    detail        text,
    latency_ms    integer,
    message_id    text,
    created_at    timestamptz NOT NULL DEFAULT kiln_now(),
    reported_at   timestamptz
) WITH (fillfactor = 80);
CREATE INDEX sends_lease_idx ON sends (lease_id);
CREATE INDEX sends_mailbox_idx ON sends (mailbox_id, scheduled_at);

-- Monotonic metric counters (kiln_sends_total, kiln_send_errors_total...), sharded so
-- concurrent report transactions rarely touch the same row; read as a sum.
CREATE TABLE counters (
    name  text NOT NULL,
    label text NOT NULL DEFAULT '',
    shard smallint NOT NULL DEFAULT 0,
    value bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, label, shard)
) WITH (fillfactor = 50);

-- Today's target for a mailbox: the plan's ramp from the warmup start day, capped at
-- daily_max; an explicit override is still capped by the plan; 0 on weekends when the
-- plan says weekdays only, and 0 before the warmup starts.
CREATE FUNCTION kiln_target(ramp_start integer, ramp_step integer, daily_max integer,
                            weekdays_only boolean, override integer, warmup_start date,
                            day date) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN day < warmup_start THEN 0
        WHEN weekdays_only AND extract(isodow FROM day) >= 6 THEN 0
        WHEN override IS NOT NULL THEN least(override, daily_max)
        ELSE least(daily_max::bigint, ramp_start + ramp_step::bigint * (day - warmup_start))::integer
    END
$$;

-- Each live mailbox as of now in its own timezone: local day and time, today's target,
-- counters, and what is due by now (the target spread evenly over the send window).
CREATE VIEW mailbox_today AS
SELECT m.id, m.user_id, m.address, m.state, m.timezone, m.window_start_hour,
       m.window_end_hour, m.last_error, m.last_error_at, m.last_send_at, u.state AS user_state,
       u.plan_id, t.local_ts, t.local_ts::date AS local_day,
       kiln_target(p.ramp_start, p.ramp_step, p.daily_max, p.weekdays_only, m.daily_target,
                   m.warmup_start, t.local_ts::date) AS target,
       coalesce(d.sent, 0) AS sent, coalesce(d.failed, 0) AS failed,
       coalesce(d.in_flight, 0) AS in_flight,
       greatest(0.0, least(1.0,
           (extract(epoch FROM t.local_ts::time) / 3600.0 - m.window_start_hour)
           / (m.window_end_hour - m.window_start_hour))) AS window_elapsed
FROM mailboxes m
JOIN users u ON u.id = m.user_id
JOIN plans p ON p.id = u.plan_id
CROSS JOIN LATERAL (SELECT kiln_now() AT TIME ZONE m.timezone AS local_ts) t
LEFT JOIN mailbox_days d ON d.mailbox_id = m.id AND d.day = t.local_ts::date
WHERE m.deleted_at IS NULL;

-- ISO 8601 UTC text of a timestamp, the API's one time format.
CREATE FUNCTION kiln_iso(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;
