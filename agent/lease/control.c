/* Control-plane HTTP client over libcurl (see control.h). */
#include "control.h"

#include "agent_config.h"
#include "agent_wire.h"
#include "log.h"
#include "rand.h"
#include "xalloc.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RESP_MAX (64u << 20)

struct control {
    CURL *h;
    struct curl_slist *headers;
    char base_url[512];
    char ca_file[1024];
    int timeout_s, attempts, backoff_base_ms, backoff_max_ms;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int control_backoff_ms(int base_ms, int max_ms, int attempt, double u)
{
    int64_t d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    double f = 0.5 + (u < 0 ? 0 : u >= 1 ? 0.999999 : u);
    return (int)((double)d * f);
}

control *control_new(const control_config *cfg, char *err, size_t errlen)
{
    if (strncmp(cfg->base_url, "https://", 8) != 0 && !agent_config_url_loopback(cfg->base_url)) {
        snprintf(err, errlen, "%s: the control plane must be https (plain http only on loopback)",
                 cfg->base_url);
        return NULL;
    }
    pthread_once(&curl_once, curl_init_once);
    control *c = xcalloc(1, sizeof *c);
    c->h = curl_easy_init();
    if (!c->h) {
        snprintf(err, errlen, "libcurl could not start");
        free(c);
        return NULL;
    }
    snprintf(c->base_url, sizeof c->base_url, "%s", cfg->base_url);
    snprintf(c->ca_file, sizeof c->ca_file, "%s", cfg->ca_file ? cfg->ca_file : "");
    c->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 30;
    c->attempts = cfg->attempts > 0 ? cfg->attempts : 1;
    c->backoff_base_ms = cfg->backoff_base_ms > 0 ? cfg->backoff_base_ms : 250;
    c->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 5000;
    buf auth = BUF_INIT;
    buf_printf(&auth, "Authorization: Bearer %s", cfg->token ? cfg->token : "");
    c->headers = curl_slist_append(NULL, auth.data);
    c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:");
    /* the token is in the header list now; do not leave a second copy around */
    explicit_bzero(auth.data, auth.len);
    buf_free(&auth);
    return c;
}

void control_free(control *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->h);
    curl_slist_free_all(c->headers);
    free(c);
}

void control_resp_free(control_resp *r)
{
    buf_free(&r->body);
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    buf *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > RESP_MAX)
        return 0; /* makes curl fail the call */
    buf_append(b, p, n);
    return n;
}

/* Pulls code/field/message out of a kiln error body. */
static void parse_error(control_resp *r)
{
    wire_error e;
    wire_error_parse(r->body.data ? r->body.data : "", r->body.len, &e);
    snprintf(r->err_code, sizeof r->err_code, "%s", e.code);
    snprintf(r->err_field, sizeof r->err_field, "%s", e.field);
    snprintf(r->error, sizeof r->error, "HTTP %ld %s%s%s", r->status, e.code,
             e.has_message ? ": " : "", e.message);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* One call; body NULL = GET. Returns 0 when an HTTP answer came, -1 (resp->error) when
 * none did; *retryable says whether trying again may help. */
static int perform(control *c, const char *url, const char *path, const char *body, size_t n,
                   control_resp *resp, bool *retryable)
{
    buf_reset(&resp->body);
    resp->status = 0;
    resp->error[0] = resp->err_code[0] = resp->err_field[0] = '\0';
    CURL *h = c->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp->body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)c->timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)(c->timeout_s < 10 ? c->timeout_s : 10));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        if (resp->status >= 400)
            parse_error(resp);
        *retryable = resp->status == 429 || resp->status >= 500;
        return 0;
    }
    snprintf(resp->error, sizeof resp->error, "%s: %s", path, curl_easy_strerror(cc));
    /* a certificate problem does not heal by retrying */
    *retryable = !(cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ||
                   cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL);
    return -1;
}

int control_get(control *c, const char *path, control_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    buf url = BUF_INIT;
    buf_printf(&url, "%s%s", c->base_url, path);
    bool retryable;
    int rc = perform(c, url.data, path, NULL, 0, resp, &retryable);
    buf_free(&url);
    return rc;
}

int control_post(control *c, const char *path, const char *body, size_t n, control_resp *resp,
                 const volatile bool *abort)
{
    memset(resp, 0, sizeof *resp);
    buf url = BUF_INIT;
    buf_printf(&url, "%s%s", c->base_url, path);
    int rc = -1;
    for (int attempt = 1; attempt <= c->attempts; attempt++) {
        bool retryable = false;
        rc = perform(c, url.data, path, body, n, resp, &retryable);
        if (!retryable)
            break;
        if (attempt == c->attempts || (abort && *abort))
            break;
        int d = control_backoff_ms(c->backoff_base_ms, c->backoff_max_ms, attempt,
                                   (double)random_range(0, 999999) / 1e6);
        log_debug("control %s: %s; retry %d in %d ms", path, resp->error[0] ? resp->error : "error",
                  attempt, d);
        sleep_ms(d);
    }
    buf_free(&url);
    return rc;
}
