// Benchmark peer: nodemailer (the legacy stack's SMTP client) sending N messages of
// 1 KiB, one connection per message (no pool), at most C at once, to a loopback
// server. Usage: node nodemailer_send.js PORT N C [starttls CAFILE USER PASS]
'use strict';
const nodemailer = require('nodemailer');
const fs = require('fs');
const [port, n, c, mode, caFile, user, pass] = process.argv.slice(2);
const total = parseInt(n, 10), conc = parseInt(c, 10);
const body = 'x'.repeat(1024);
const opts = { host: '127.0.0.1', port: parseInt(port, 10), pool: false };
if (mode === 'starttls') {
  Object.assign(opts, { secure: false, requireTLS: true, auth: { user, pass },
    tls: { ca: fs.readFileSync(caFile), servername: 'localhost' } });
} else {
  Object.assign(opts, { secure: false, ignoreTLS: true });
}
const transport = nodemailer.createTransport(opts);
let next = 0, ok = 0, bad = 0;
async function worker() {
  while (next < total) {
    const i = next++;
    try {
      await transport.sendMail({ from: `"M${i}" <m${i}@acme.test>`, to: `r${i}@other.test`,
        subject: `Warmup ${i}`, text: body, messageId: `<n${i}@acme.test>` });
      ok++;
    } catch (e) {
      if (bad++ < 3) console.error(String(e));
    }
  }
}
const t0 = process.hrtime.bigint();
Promise.all(Array.from({ length: conc }, worker)).then(() => {
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ ok, bad, seconds: s }));
});
