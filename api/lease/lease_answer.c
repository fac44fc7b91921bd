/* Lease answers (see lease_answer.h). Legacy rows may hold a secret (or text) that is
 * not UTF-8 without NUL; emitted, it makes the whole answer unreadable to the agent,
 * and every mailbox leased with it, of every tenant, stalls until the lease expires.
 * So what an answer emits is checked first, and one bad mailbox is left out instead. */
#include "lease_answer.h"

#include "lease_reply.h"

#include "codec.h"
#include "json.h"
#include "log.h"

#include <string.h>

const char *lease_answer_check_row(arena *a, const secret_key *key, const lease_row *row,
                                   lease_text *t)
{
    const struct {
        const char *value;
        const char *name;
    } texts[] = {{row->address, "address"},
                 {row->display_name, "display_name"},
                 {row->smtp_host, "smtp.host"},
                 {row->smtp_security, "smtp.security"},
                 {row->smtp_username, "smtp.username"}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (!utf8_valid(texts[i].value, strlen(texts[i].value)))
            return arena_printf(a,
                                "the stored %s is not valid UTF-8 text without NUL; "
                                "change it, then resume the mailbox",
                                texts[i].name);
    if (!msgid_domain_ok(row->m.domain, strlen(row->m.domain)))
        return "the address's domain cannot end a Message-ID (a DNS name is expected); "
               "change the address, then resume the mailbox";
    buf sealed = BUF_INIT, secret = BUF_INIT;
    t->password = NULL;
    t->password_len = 0;
    if (hex_decode_append(&sealed, row->secret_hex, strlen(row->secret_hex)) != 0 ||
        secret_open(key, sealed.data ? sealed.data : "", sealed.len, NULL, &secret) != 0) {
        /* Emitted as null: the agent reports auth, which puts the mailbox in error. */
        log_warn("mailbox %lld: SMTP secret does not open with this key", (long long)row->m.id);
        buf_free(&sealed);
        buf_free(&secret);
        return NULL;
    }
    buf_free(&sealed);
    const char *plain = secret.data ? secret.data : "";
    bool text = utf8_valid(plain, secret.len);
    if (text) {
        t->password = arena_strndup(a, plain, secret.len);
        t->password_len = secret.len;
    }
    if (secret.data)
        memset(secret.data, 0, secret.len);
    buf_free(&secret);
    return text ? NULL
                : "the stored SMTP password is not valid UTF-8 text without NUL; "
                  "set smtp.password again, then resume the mailbox";
}

bool lease_answer_recipient_ok(const char *address, const char *display_name)
{
    return utf8_valid(address, strlen(address)) && utf8_valid(display_name, strlen(display_name));
}

const char *lease_answer_message_id(arena *a, const struct msgid_keyring *keys, int64_t send_id,
                                    const char *domain)
{
    char mid[MSGID_MAX];
    int n = msgid_mint(keys, send_id, domain, mid);
    return n < 0 ? NULL : arena_strndup(a, mid, (size_t)n);
}

void lease_answer_empty(arena *a, const secret_key *key, http_resp *rs, int64_t ttl_s,
                        int64_t retry_after_s, const char *service, const inbox_request *inbox)
{
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_null(g, "lease_id");
    json_kv_i(g, "ttl_s", ttl_s);
    json_key(g, "mailboxes");
    json_arr_open(g);
    json_arr_close(g);
    json_kv_i(g, "retry_after_s", retry_after_s);
    json_kv_s(g, "service", service);
    inbox_answer_members(a, key, g, inbox);
    json_obj_close(g);
    json_gen_free(g);
}

/* Replaces {from} {to} {weekday} {topic} in src. */
static const char *render(arena *a, const char *src, const char *from, const char *to,
                          const char *weekday, const char *topic)
{
    buf o = BUF_INIT;
    const char *keys[] = {"{from}", "{to}", "{weekday}", "{topic}"};
    const char *vals[] = {from, to, weekday, topic};
    for (const char *s = src; *s;) {
        bool hit = false;
        for (int k = 0; k < 4 && *s == '{'; k++) {
            size_t n = strlen(keys[k]);
            if (!strncmp(s, keys[k], n)) {
                buf_puts(&o, vals[k]);
                s += n;
                hit = true;
                break;
            }
        }
        if (!hit)
            buf_putc(&o, *s++);
    }
    char *out = arena_strndup(a, o.data ? o.data : "", o.len);
    buf_free(&o);
    return out;
}

/* A first name for greetings: the display name's first word, else the local part. */
static const char *first_name(arena *a, const char *display, const char *address)
{
    const char *s = display && *display ? display : address;
    size_t n = strcspn(s, " @");
    return arena_strndup(a, s, n ? n : strlen(s));
}

static void write_smtp(yajl_gen g, const lease_row *row, const lease_text *text)
{
    json_key(g, "smtp");
    json_obj_open(g);
    json_kv_s(g, "host", row->smtp_host);
    json_kv_i(g, "port", row->smtp_port);
    json_kv_s(g, "security", row->smtp_security);
    json_kv_s(g, "username", row->smtp_username);
    json_key(g, "password");
    if (text->password)
        json_str_n(g, text->password, text->password_len);
    else
        json_null(g);
    json_kv_null(g, "oauth_token");
    json_kv_null(g, "ca_file");
    json_kv_b(g, "allow_plaintext_auth", row->allow_plaintext_auth);
    json_obj_close(g);
}

void lease_answer_compose(arena *a, const lease_pool *pool, lease_granted *gr)
{
    const lease_row *row = gr->r;
    size_t n = (size_t)(gr->nslots > 0 ? gr->nslots : 1);
    gr->subjects = arena_alloc(a, n * sizeof *gr->subjects);
    gr->templates = arena_alloc(a, n * sizeof *gr->templates);
    gr->topics = arena_alloc(a, n * sizeof *gr->topics);
    const char *from = first_name(a, row->display_name, row->address);
    lease_rng rng;
    lease_rng_seed(&rng);
    for (int s = 0; s < gr->nslots; s++) {
        int ci = gr->slots[s].candidate;
        int ti = pool->ntemplates ? (int)lease_rng_range(&rng, 0, pool->ntemplates - 1) : -1;
        const char *topic =
            pool->ntopics ? pool->topics[lease_rng_range(&rng, 0, pool->ntopics - 1)] : "";
        gr->templates[s] = ti;
        gr->topics[s] = topic;
        if (gr->replies && gr->replies[s]) {
            gr->subjects[s] = gr->replies[s]->subject;
            continue;
        }
        const char *to = first_name(a, pool->display_name[ci], pool->address[ci]);
        gr->subjects[s] =
            ti >= 0 ? render(a, pool->subjects[ti], from, to, row->weekday, topic) : "Hello";
    }
}

/* A reply's threading: In-Reply-To and the References msg-ids (stored space separated). */
static void write_threading(yajl_gen g, const lease_reply *rp)
{
    json_kv_s(g, "in_reply_to", rp->in_reply_to);
    json_key(g, "references");
    json_arr_open(g);
    for (const char *p = rp->thread_refs; *p;) {
        size_t n = strcspn(p, " ");
        if (n)
            json_str_n(g, p, n);
        p += n;
        p += strspn(p, " ");
    }
    json_arr_close(g);
}

static void write_sends(arena *a, yajl_gen g, const lease_answer *ans, const lease_granted *gr)
{
    const lease_pool *pool = ans->pool;
    const lease_row *row = gr->r;
    const char *from = first_name(a, row->display_name, row->address);
    json_key(g, "sends");
    json_arr_open(g);
    for (int s = 0; s < gr->nslots; s++) {
        const lease_slot *sl = &gr->slots[s];
        int ci = sl->candidate;
        const char *to = first_name(a, pool->display_name[ci], pool->address[ci]);
        int ti = gr->templates[s];
        const char *body =
            ti >= 0 ? render(a, pool->bodies[ti], from, to, row->weekday, gr->topics[s]) : "Hello";
        json_obj_open(g);
        json_kv_i(g, "id", gr->send_ids[s]);
        json_kv_i(g, "not_before_s", sl->at_s > ans->now_s ? sl->at_s - ans->now_s : 0);
        json_kv_s(g, "to", pool->address[ci]);
        json_kv_s(g, "subject", gr->subjects[s]);
        json_kv_s(g, "body", body);
        json_kv_s(g, "message_id", gr->message_ids[s]);
        if (gr->replies && gr->replies[s])
            write_threading(g, gr->replies[s]);
        json_obj_close(g);
    }
    json_arr_close(g);
}

void lease_answer_write(arena *a, http_resp *rs, const lease_answer *ans)
{
    yajl_gen g = http_json(rs, 200);
    json_obj_open(g);
    json_kv_s(g, "lease_id", ans->lease_id);
    json_kv_i(g, "ttl_s", ans->ttl_s);
    json_key(g, "mailboxes");
    json_arr_open(g);
    for (int gi = 0; gi < ans->ngranted; gi++) {
        const lease_granted *gr = &ans->granted[gi];
        json_obj_open(g);
        json_kv_i(g, "id", gr->r->m.id);
        json_kv_s(g, "address", gr->r->address);
        json_kv_s(g, "display_name", gr->r->display_name);
        write_smtp(g, gr->r, &ans->texts[gr->row]);
        write_sends(a, g, ans, gr);
        json_obj_close(g);
    }
    json_arr_close(g);
    json_kv_s(g, "service", "running");
    inbox_answer_members(a, ans->key, g, ans->inbox);
    json_obj_close(g);
    json_gen_free(g);
}
