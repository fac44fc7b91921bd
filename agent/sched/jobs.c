/* The scheduler's job structs (see jobs.h): address check, a slot's references, freeing. */
#include "jobs.h"

#include "wire.h"
#include "xalloc.h"

#include <errno.h>
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

int job_send_add_reference(job_send *js, const char *s, size_t n)
{
    if (js->nreferences == WIRE_MAX_REFERENCES)
        return -E2BIG;
    if (memchr(s, 0, n) || !wire_msgid_ok(s, n))
        return -EINVAL;
    if (!js->references)
        js->references = xcalloc(WIRE_MAX_REFERENCES, sizeof *js->references);
    js->references[js->nreferences++] = xstrndup(s, n);
    return 0;
}

void job_send_clear_references(job_send *js)
{
    for (size_t i = 0; i < js->nreferences; i++)
        free(js->references[i]);
    free(js->references);
    js->references = NULL;
    js->nreferences = 0;
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
        free(s->in_reply_to);
        job_send_clear_references(s);
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
