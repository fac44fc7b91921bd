/* Lease JSON parsing and validation (see jobs.h). */
#include "jobs.h"

#include "json.h"
#include "smtp_session.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jobs_address_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 254)
        return 0;
    const char *at = strrchr(s, '@');
    if (!at || at == s || !at[1])
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == '\\' || c == ',' ||
            c == '(' || c == ')')
            return 0;
    }
    return 1;
}

static int no_controls(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 0;
    return 1;
}

void job_mailbox_free(job_mailbox *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nsends; i++) {
        job_send *s = &m->sends[i];
        free(s->to);
        free(s->subject);
        free(s->body);
        free(s->message_id);
    }
    free(m->sends);
    free(m->address);
    free(m->display_name);
    free(m->host);
    free(m->username);
    if (m->password) {
        memset(m->password, 0, strlen(m->password));
        free(m->password);
    }
    if (m->oauth_token) {
        memset(m->oauth_token, 0, strlen(m->oauth_token));
        free(m->oauth_token);
    }
    free(m->ca_file);
    free(m);
}

void job_lease_free(job_lease *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->nmailboxes; i++)
        job_mailbox_free(l->mailboxes[i]);
    free(l->mailboxes);
    free(l->lease_id);
    free(l);
}

/* Optional string: absent or null gives NULL; a non-string is an error. */
static int opt_str(yajl_val obj, const char *key, char **out, const char *where, char *err,
                   size_t errlen)
{
    yajl_val v = json_get(obj, key);
    *out = NULL;
    if (!v || YAJL_IS_NULL(v))
        return 0;
    const char *s = json_str(v);
    if (!s) {
        snprintf(err, errlen, "%s.%s: must be a string or null", where, key);
        return -1;
    }
    *out = xstrdup(s);
    return 0;
}

static int req_str(yajl_val obj, const char *key, char **out, const char *where, char *err,
                   size_t errlen)
{
    if (opt_str(obj, key, out, where, err, errlen) < 0)
        return -1;
    if (!*out) {
        snprintf(err, errlen, "%s.%s: missing (a string is required)", where, key);
        return -1;
    }
    return 0;
}

static int parse_send(yajl_val v, job_send *s, const char *where, char *err, size_t errlen)
{
    if (!YAJL_IS_OBJECT(v)) {
        snprintf(err, errlen, "%s: must be an object", where);
        return -1;
    }
    if (!json_int(json_get(v, "id"), 1, INT64_MAX, &s->id)) {
        snprintf(err, errlen, "%s.id: must be a positive integer", where);
        return -1;
    }
    yajl_val nb = json_get(v, "not_before_s");
    s->not_before_s = 0;
    if (nb && !YAJL_IS_NULL(nb) && !json_int(nb, 0, (int64_t)7 * 86400, &s->not_before_s)) {
        snprintf(err, errlen, "%s.not_before_s: must be an integer in [0, 604800]", where);
        return -1;
    }
    if (req_str(v, "to", &s->to, where, err, errlen) < 0 ||
        req_str(v, "subject", &s->subject, where, err, errlen) < 0 ||
        req_str(v, "body", &s->body, where, err, errlen) < 0 ||
        opt_str(v, "message_id", &s->message_id, where, err, errlen) < 0)
        return -1;
    if (!jobs_address_ok(s->to)) {
        snprintf(err, errlen, "%s.to: not a usable mail address", where);
        return -1;
    }
    if (!no_controls(s->subject) || strlen(s->subject) > 900) {
        snprintf(err, errlen, "%s.subject: control characters or longer than 900 bytes", where);
        return -1;
    }
    if (s->message_id && (!no_controls(s->message_id) || strlen(s->message_id) > 900 ||
                          s->message_id[0] != '<' || !strchr(s->message_id, '>'))) {
        snprintf(err, errlen, "%s.message_id: must look like <id@domain>", where);
        return -1;
    }
    return 0;
}

static int parse_mailbox(yajl_val v, job_mailbox *m, const char *where, char *err, size_t errlen)
{
    char sub[96];
    if (!YAJL_IS_OBJECT(v)) {
        snprintf(err, errlen, "%s: must be an object", where);
        return -1;
    }
    if (!json_int(json_get(v, "id"), 1, INT64_MAX, &m->id)) {
        snprintf(err, errlen, "%s.id: must be a positive integer", where);
        return -1;
    }
    if (req_str(v, "address", &m->address, where, err, errlen) < 0 ||
        opt_str(v, "display_name", &m->display_name, where, err, errlen) < 0)
        return -1;
    if (!jobs_address_ok(m->address)) {
        snprintf(err, errlen, "%s.address: not a usable mail address", where);
        return -1;
    }
    if (m->display_name && !no_controls(m->display_name)) {
        snprintf(err, errlen, "%s.display_name: control characters", where);
        return -1;
    }
    yajl_val smtp = json_get(v, "smtp");
    snprintf(sub, sizeof sub, "%s.smtp", where);
    if (!smtp || !YAJL_IS_OBJECT(smtp)) {
        snprintf(err, errlen, "%s: missing (an object is required)", sub);
        return -1;
    }
    char *security = NULL;
    int64_t port;
    if (req_str(smtp, "host", &m->host, sub, err, errlen) < 0)
        return -1;
    if (!m->host[0] || strlen(m->host) > 253 || strpbrk(m->host, " \t\r\n/")) {
        snprintf(err, errlen, "%s.host: not a host name or address", sub);
        return -1;
    }
    if (!json_int(json_get(smtp, "port"), 1, 65535, &port)) {
        snprintf(err, errlen, "%s.port: must be an integer in [1, 65535]", sub);
        return -1;
    }
    m->port = (int)port;
    if (req_str(smtp, "security", &security, sub, err, errlen) < 0)
        return -1;
    if (!strcmp(security, "plain"))
        m->security = SMTP_SEC_PLAIN;
    else if (!strcmp(security, "starttls"))
        m->security = SMTP_SEC_STARTTLS;
    else if (!strcmp(security, "tls"))
        m->security = SMTP_SEC_TLS;
    else {
        free(security);
        snprintf(err, errlen, "%s.security: must be plain, starttls or tls", sub);
        return -1;
    }
    free(security);
    if (opt_str(smtp, "username", &m->username, sub, err, errlen) < 0 ||
        opt_str(smtp, "password", &m->password, sub, err, errlen) < 0 ||
        opt_str(smtp, "oauth_token", &m->oauth_token, sub, err, errlen) < 0 ||
        opt_str(smtp, "ca_file", &m->ca_file, sub, err, errlen) < 0)
        return -1;
    if ((m->username && !no_controls(m->username)) || (m->password && !no_controls(m->password)) ||
        (m->oauth_token && !no_controls(m->oauth_token))) {
        snprintf(err, errlen, "%s: credentials contain control characters", sub);
        return -1;
    }
    yajl_val sends = json_get(v, "sends");
    if (!sends || !YAJL_IS_ARRAY(sends)) {
        snprintf(err, errlen, "%s.sends: missing (an array is required)", where);
        return -1;
    }
    m->nsends = sends->u.array.len;
    m->sends = xcalloc(m->nsends ? m->nsends : 1, sizeof *m->sends);
    for (size_t i = 0; i < m->nsends; i++) {
        snprintf(sub, sizeof sub, "%s.sends[%zu]", where, i);
        if (parse_send(sends->u.array.values[i], &m->sends[i], sub, err, errlen) < 0) {
            m->nsends = i + 1; /* free what was filled */
            return -1;
        }
    }
    return 0;
}

int jobs_parse(const char *data, size_t n, job_lease **out, char *err, size_t errlen)
{
    *out = NULL;
    yajl_val root = json_parse(data, n, err, errlen);
    if (!root)
        return -1;
    job_lease *l = xcalloc(1, sizeof *l);
    if (!YAJL_IS_OBJECT(root)) {
        snprintf(err, errlen, "top level: must be an object");
        goto fail;
    }
    if (opt_str(root, "lease_id", &l->lease_id, "lease", err, errlen) < 0)
        goto fail;
    yajl_val ttl = json_get(root, "ttl_s");
    l->ttl_s = 600;
    if (ttl && !json_int(ttl, 1, (int64_t)7 * 86400, &l->ttl_s)) {
        snprintf(err, errlen, "ttl_s: must be an integer in [1, 604800]");
        goto fail;
    }
    yajl_val mbs = json_get(root, "mailboxes");
    if (!mbs || !YAJL_IS_ARRAY(mbs)) {
        snprintf(err, errlen, "mailboxes: missing (an array is required)");
        goto fail;
    }
    /* an array of pointers: sizeof a pointer is meant */
    l->mailboxes = xcalloc(mbs->u.array.len ? mbs->u.array.len : 1,
                           sizeof *l->mailboxes); // NOLINT(bugprone-sizeof-expression)
    for (size_t i = 0; i < mbs->u.array.len; i++) {
        char where[48];
        snprintf(where, sizeof where, "mailboxes[%zu]", i);
        l->mailboxes[i] = xcalloc(1, sizeof(job_mailbox));
        l->nmailboxes = i + 1;
        if (parse_mailbox(mbs->u.array.values[i], l->mailboxes[i], where, err, errlen) < 0)
            goto fail;
    }
    yajl_tree_free(root);
    *out = l;
    return 0;
fail:
    yajl_tree_free(root);
    job_lease_free(l);
    return -1;
}
