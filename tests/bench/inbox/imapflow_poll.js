// The peer of kiln-agent's inbox engine in `make bench BENCH=inbox`: imapflow (the Node
// IMAP client a TypeScript mail-ingest system would use) doing the same IMAP work per
// visit as a kiln inbox session — login, LIST (SPECIAL-USE), then per folder (INBOX and
// the \Junk folder) SELECT and UID FETCH of what is new (flags and the Message-ID,
// Authentication-Results, In-Reply-To and Subject headers), then LOGOUT — on the legacy
// polling mix: each inbox's first visit at once (as kiln-agent's engine does; with
// KILN_BENCH_SPREAD=1 at a random offset within its period), then one per period (high
// 1 min, medium 5, low 15); the high class keeps an IDLE connection on
// INBOX instead and fetches when the server says EXISTS. At most KILN_BENCH_MAX_CONNS
// polling connections at once (the legacy per-server cap, raised for one local server).
//   node imapflow_poll.js INBOXES.json DURATION_S STATS.json
// INBOXES.json: the `kiln-agent inbox --file` input (mailbox_id, imap{host,port,username,
// password}, poll_class). STATS.json: visits, found, errors, idle sessions, wakes.
'use strict';
const fs = require('fs');
const path = require('path');
const { ImapFlow } = require(path.join(__dirname, 'node_modules', 'imapflow'));

const [inboxFile, durationArg, statsFile] = process.argv.slice(2);
if (!inboxFile || !durationArg || !statsFile) {
    console.error('usage: imapflow_poll.js INBOXES.json DURATION_S STATS.json');
    process.exit(2);
}
const durationMs = Number(durationArg) * 1000;
const periodMs = { high: 60000, medium: 300000, low: 900000 };
const maxConns = Number(process.env.KILN_BENCH_MAX_CONNS || 100);
const spread = process.env.KILN_BENCH_SPREAD === '1';
const headers = ['message-id', 'authentication-results', 'in-reply-to', 'subject'];
const parsed = JSON.parse(fs.readFileSync(inboxFile, 'utf8'));
const inboxes = Array.isArray(parsed) ? parsed : parsed.inboxes;
const stats = { visits: 0, found: 0, errors: 0, idle_sessions: 0, wakes: 0, queued_max: 0 };
const lastUid = new Map(); // "mailbox_id/folder" -> last UID seen
let open = 0;
const waiting = [];
let stopping = false;

function client(ib) {
    return new ImapFlow({
        host: ib.imap.host, port: ib.imap.port, secure: ib.imap.security === 'tls',
        doSTARTTLS: ib.imap.security === 'starttls' ? true : false,
        auth: { user: ib.imap.username, pass: ib.imap.password },
        logger: false, disableAutoIdle: true, emitLogs: false,
        tls: { rejectUnauthorized: true },
    });
}

async function fetchNew(c, ib, folder) {
    const lock = await c.getMailboxLock(folder);
    try {
        const key = ib.mailbox_id + '/' + folder;
        let last;
        if (!lastUid.has(key)) {
            last = (c.mailbox.uidNext || 1) - 1; // never watched: from now on, as kiln does
        } else {
            last = lastUid.get(key);
            const from = last + 1;
            // UID FETCH last+1:* as kiln sends it; n:* answers the last message even past the end
            for await (const msg of c.fetch(from + ':*', { uid: true, flags: true, headers }, { uid: true })) {
                if (msg.uid < from) continue;
                stats.found++;
                if (msg.uid > last) last = msg.uid;
            }
        }
        lastUid.set(key, last);
    } finally {
        lock.release();
    }
}

async function folders(c) {
    const list = await c.list({ specialUse: true });
    const junk = list.find((f) => f.specialUse === '\\Junk');
    return junk ? ['INBOX', junk.path] : ['INBOX'];
}

async function visit(ib) {
    const c = client(ib);
    c.on('error', () => {});
    try {
        await c.connect();
        for (const f of await folders(c)) await fetchNew(c, ib, f);
        await c.logout();
        stats.visits++;
    } catch (e) {
        stats.errors++;
        try { c.close(); } catch (_) { /* already closed */ }
    }
}

function slot() {
    if (open < maxConns) { open++; return Promise.resolve(); }
    return new Promise((resolve) => {
        waiting.push(resolve);
        if (waiting.length > stats.queued_max) stats.queued_max = waiting.length;
    });
}
function release() {
    const next = waiting.shift();
    if (next) next(); else open--;
}

async function poller(ib) {
    const period = periodMs[ib.poll_class] || periodMs.medium;
    if (spread) await new Promise((r) => setTimeout(r, Math.random() * period));
    while (!stopping) {
        const started = Date.now();
        await slot();
        if (stopping) { release(); break; }
        await visit(ib);
        release();
        const wait = period - (Date.now() - started);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
}

async function idler(ib) {
    if (spread) await new Promise((r) => setTimeout(r, Math.random() * periodMs.high));
    let backoff = 1000;
    while (!stopping) {
        const c = client(ib);
        c.on('error', () => {});
        try {
            await c.connect();
            const fl = await folders(c);
            for (const f of fl) await fetchNew(c, ib, f);
            stats.visits++;
            stats.idle_sessions++;
            let wake = null;
            c.on('exists', () => { stats.wakes++; if (wake) wake(); });
            await c.mailboxOpen('INBOX'); // IDLE watches INBOX, not the last folder fetched
            while (!stopping && c.usable) {
                const woke = new Promise((r) => { wake = r; });
                const idle = c.idle();
                await Promise.race([woke, idle, stopPromise]);
                if (stopping || !c.usable) break;
                for (const f of fl) await fetchNew(c, ib, f);
                await c.mailboxOpen('INBOX');
                stats.visits++;
            }
            stats.idle_sessions--;
            try { await c.logout(); } catch (_) { /* closing anyway */ }
            backoff = 1000;
        } catch (e) {
            stats.errors++;
            try { c.close(); } catch (_) { /* already closed */ }
            await new Promise((r) => setTimeout(r, backoff));
            backoff = Math.min(backoff * 2, 60000);
        }
    }
}

let stopNow;
const stopPromise = new Promise((r) => { stopNow = r; });
const work = inboxes.map((ib) => (ib.poll_class === 'high' ? idler(ib) : poller(ib)));
setTimeout(() => {
    stopping = true;
    stopNow();
    fs.writeFileSync(statsFile, JSON.stringify(stats));
    // Sessions mid-visit are abandoned: the measurement window is over.
    setTimeout(() => process.exit(0), 2000).unref();
    Promise.allSettled(work).then(() => process.exit(0));
}, durationMs);
const progress = setInterval(() => {
    process.stderr.write(`imapflow: ${stats.visits} visits, ${stats.found} found, ${stats.errors} errors, ` +
        `${stats.idle_sessions} idle, ${open} polling connections, ${waiting.length} queued\n`);
}, 10000);
progress.unref();
