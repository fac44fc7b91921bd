/* Unit tests of kiln-agent's run configuration: the agent.conf file shape, environment
 * overrides, range checks with the key named, the metrics listen address, the
 * https/loopback rule, the token file, and the control client's retry backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent_config.h"
#include "control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char token_path[128];
static const char *env_keys[8], *env_vals[8];
static int env_n;

static const char *fake_env(const char *key)
{
    for (int i = 0; i < env_n; i++)
        if (!strcmp(env_keys[i], key))
            return env_vals[i];
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    snprintf(token_path, sizeof token_path, "/tmp/kiln-agent-token.XXXXXX");
    int fd = mkstemp(token_path);
    if (fd < 0)
        return -1;
    const char t[] = "  tok-123abc\n";
    if (write(fd, t, sizeof t - 1) != (ssize_t)(sizeof t - 1))
        return -1;
    close(fd);
    env_n = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(token_path);
    return 0;
}

static void setenv_fake(const char *k, const char *v)
{
    env_keys[env_n] = k;
    env_vals[env_n++] = v;
}

static int parse(agent_config *c, const char *text, char *err)
{
    char text_buf[2048];
    snprintf(text_buf, sizeof text_buf, "%sKILN_AGENT_TOKEN_FILE=%s\n", text, token_path);
    return agent_config_parse(c, text_buf, strlen(text_buf), fake_env, err, 256);
}

static void test_shipped_agent_conf_shape_parses(void **state)
{
    (void)state;
    agent_config c;
    char err[256] = "";
    const char *text = "# comment\n"
                       "\n"
                       "KILN_API_URL=https://kiln.example.com/\n"
                       "#KILN_API_CA_FILE=/etc/kiln/ca.pem\n"
                       "KILN_AGENT_CONCURRENCY=300\n"
                       "  KILN_AGENT_THREADS = 2\n"
                       "KILN_AGENT_SPOOL_DIR=\"/var/lib/kiln/agent\"\n"
                       "export KILN_AGENT_METRICS_PORT=9465\n"
                       "KILN_AGENT_NAME='host-a'\n"
                       "KILN_SOMETHING_ELSE=ignored\n";
    int rc = parse(&c, text, err);
    /* "KEY = VALUE" with spaces around '=' is not EnvironmentFile syntax */
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "line 6"));

    text = "# comment\n"
           "\n"
           "KILN_API_URL=https://kiln.example.com/\n"
           "KILN_AGENT_CONCURRENCY=300\n"
           "  KILN_AGENT_THREADS=2\n"
           "KILN_AGENT_SPOOL_DIR=\"/var/lib/kiln/agent\"\n"
           "export KILN_AGENT_METRICS_PORT=9465\n"
           "KILN_AGENT_NAME='host-a'\n"
           "KILN_SOMETHING_ELSE=ignored\n";
    assert_int_equal(parse(&c, text, err), 0);
    assert_string_equal(c.api_url, "https://kiln.example.com");
    assert_int_equal(c.concurrency, 300);
    assert_int_equal(c.threads, 2);
    assert_string_equal(c.spool_dir, "/var/lib/kiln/agent");
    assert_int_equal(c.metrics_port, 9465);
    assert_string_equal(c.name, "host-a");
    assert_string_equal(c.token, "tok-123abc");
    assert_string_equal(c.ca_file, "");
    assert_int_equal(c.report_batch, 500); /* default */
    assert_string_equal(c.metrics_addr, "127.0.0.1");
}

static void test_metrics_addr_takes_ip_literals_only(void **state)
{
    (void)state;
    agent_config c;
    char err[256] = "";
    assert_int_equal(parse(&c, "KILN_AGENT_METRICS_ADDR=0.0.0.0\n", err), 0);
    assert_string_equal(c.metrics_addr, "0.0.0.0");
    assert_int_equal(parse(&c, "KILN_AGENT_METRICS_ADDR=::\n", err), 0);
    assert_string_equal(c.metrics_addr, "::");
    /* the environment wins over the file */
    setenv_fake("KILN_AGENT_METRICS_ADDR", "fd00::7");
    assert_int_equal(parse(&c, "KILN_AGENT_METRICS_ADDR=0.0.0.0\n", err), 0);
    assert_string_equal(c.metrics_addr, "fd00::7");
    env_n = 0;

    const char *bad[] = {"KILN_AGENT_METRICS_ADDR=localhost\n", "KILN_AGENT_METRICS_ADDR=[::]\n",
                         "KILN_AGENT_METRICS_ADDR=0.0.0.0:9465\n", "KILN_AGENT_METRICS_ADDR=\n",
                         "KILN_AGENT_METRICS_ADDR=10.0.0.256\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(parse(&c, bad[i], err), -1);
        assert_non_null(strstr(err, "KILN_AGENT_METRICS_ADDR="));
        assert_non_null(strstr(err, "IPv4 or IPv6 address"));
    }
    assert_true(agent_config_ip_literal("127.0.0.1"));
    assert_true(agent_config_ip_literal("::1"));
    assert_false(agent_config_ip_literal("kiln.example.com"));
}

static void test_environment_overrides_the_file(void **state)
{
    (void)state;
    agent_config c;
    char err[256] = "";
    setenv_fake("KILN_AGENT_CONCURRENCY", "42");
    setenv_fake("KILN_AGENT_NAME", "from-env");
    setenv_fake("KILN_AGENT_THREADS", ""); /* empty: unset */
    assert_int_equal(parse(&c, "KILN_AGENT_CONCURRENCY=300\nKILN_AGENT_THREADS=3\n", err), 0);
    assert_int_equal(c.concurrency, 42);
    assert_int_equal(c.threads, 3);
    assert_string_equal(c.name, "from-env");
}

static void test_bad_values_name_the_key(void **state)
{
    (void)state;
    agent_config c;
    char err[256] = "";
    assert_int_equal(parse(&c, "KILN_AGENT_CONCURRENCY=lots\n", err), -1);
    assert_non_null(strstr(err, "KILN_AGENT_CONCURRENCY=lots"));
    assert_non_null(strstr(err, "line 1"));
    assert_int_equal(parse(&c, "KILN_AGENT_METRICS_PORT=70000\n", err), -1);
    assert_non_null(strstr(err, "KILN_AGENT_METRICS_PORT"));
    assert_int_equal(parse(&c, "this is not a pair\n", err), -1);
    assert_non_null(strstr(err, "expected KEY=VALUE"));
    assert_int_equal(parse(&c, "KILN_LOG_LEVEL=loud\n", err), -1);
    assert_non_null(strstr(err, "KILN_LOG_LEVEL"));
}

static void test_plain_http_only_to_loopback(void **state)
{
    (void)state;
    agent_config c;
    char err[256] = "";
    assert_int_equal(parse(&c, "KILN_API_URL=http://kiln.example.com\n", err), -1);
    assert_non_null(strstr(err, "must be https"));
    assert_int_equal(parse(&c, "KILN_API_URL=http://127.0.0.1.evil.test\n", err), -1);
    assert_int_equal(parse(&c, "KILN_API_URL=http://127.0.0.1:8080\n", err), 0);
    assert_int_equal(parse(&c, "KILN_API_URL=http://localhost/\n", err), 0);
    assert_int_equal(parse(&c, "KILN_API_URL=http://[::1]:9/\n", err), 0);
    assert_true(agent_config_url_loopback("http://127.0.0.1"));
    assert_false(agent_config_url_loopback("https://127.0.0.1"));
    assert_false(agent_config_url_loopback("http://localhost.example.com"));

    control_config cc = {.base_url = "http://10.0.0.1", .token = "t"};
    assert_null(control_new(&cc, err, sizeof err));
    cc.base_url = "http://127.0.0.1:1";
    control *ctl = control_new(&cc, err, sizeof err);
    assert_non_null(ctl);
    control_free(ctl);
}

static void test_token_file_problems_are_explained(void **state)
{
    (void)state;
    agent_config c;
    char err[256] = "";
    const char *text = "KILN_AGENT_TOKEN_FILE=/nonexistent/agent.token\n";
    assert_int_equal(agent_config_parse(&c, text, strlen(text), fake_env, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/agent.token"));
    assert_non_null(strstr(err, "POST /api/agents"));
    FILE *f = fopen(token_path, "w");
    fputs("two words\n", f);
    fclose(f);
    assert_int_equal(parse(&c, "", err), -1);
    assert_non_null(strstr(err, "more than one word"));
    f = fopen(token_path, "w");
    fclose(f);
    assert_int_equal(parse(&c, "", err), -1);
    assert_non_null(strstr(err, "empty"));
}

static void test_missing_default_file_is_fine_missing_given_file_is_not(void **state)
{
    (void)state;
    agent_config c;
    char err[256] = "";
    char env_line[160];
    snprintf(env_line, sizeof env_line, "%s", token_path);
    setenv("KILN_AGENT_TOKEN_FILE", env_line, 1);
    assert_int_equal(agent_config_load(&c, "/nonexistent/agent.conf", false, err, sizeof err), 0);
    assert_int_equal(agent_config_load(&c, "/nonexistent/agent.conf", true, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/agent.conf"));
    unsetenv("KILN_AGENT_TOKEN_FILE");
}

static int exported;
static void count_export(const char *k, const char *v)
{
    (void)v;
    if (!strcmp(k, "KILN_AGENT_MAX_ATTEMPTS"))
        exported++;
}

static void test_export_passes_engine_knobs_the_env_lacks(void **state)
{
    (void)state;
    const char *text = "KILN_AGENT_MAX_ATTEMPTS=3\nKILN_AGENT_NAME=x\nOTHER=1\n";
    exported = 0;
    agent_config_export(text, strlen(text), fake_env, count_export);
    assert_int_equal(exported, 1);
    setenv_fake("KILN_AGENT_MAX_ATTEMPTS", "5");
    exported = 0;
    agent_config_export(text, strlen(text), fake_env, count_export);
    assert_int_equal(exported, 0);
}

static char exported_keys[256];

static void record_export(const char *k, const char *v)
{
    size_t n = strlen(exported_keys);
    snprintf(exported_keys + n, sizeof exported_keys - n, "%s=%s;", k, v);
}

/* A SIGHUP reload reads the file again with the environment over it: a key agent_config
 * reads itself, put into the environment at start, would win over the edited file. Only
 * the engines' keys (which they read from the environment) go there. */
static void test_export_leaves_the_agents_own_keys_in_the_file(void **state)
{
    (void)state;
    const char *text = "KILN_AGENT_NAME=x\n"
                       "KILN_AGENT_REPORT_BATCH=7\n"
                       "KILN_AGENT_TOKEN=secret-token\n"
                       "KILN_API_URL=https://kiln.example.com\n"
                       "KILN_AGENT_HELO_NAME=a.example\n"
                       "# KILN_AGENT_IMAP_TIMEOUT_GREETING_MS=1\n"
                       "KILN_AGENT_IMAP_TIMEOUT_GREETING_MS=700\n"
                       "KILN_AGENT_CHECK_IMAP_HOST=imap.example\n";
    exported_keys[0] = '\0';
    agent_config_export(text, strlen(text), fake_env, record_export);
    if (strcmp(exported_keys, "KILN_AGENT_HELO_NAME=a.example;"
                              "KILN_AGENT_IMAP_TIMEOUT_GREETING_MS=700;"
                              "KILN_AGENT_CHECK_IMAP_HOST=imap.example;") != 0)
        fail_msg("expected only the engines' and check's keys exported, got: %s", exported_keys);
}

static void test_control_backoff_doubles_with_jitter_and_cap(void **state)
{
    (void)state;
    assert_int_equal(control_backoff_ms(100, 1000, 1, 0.5), 100);
    assert_int_equal(control_backoff_ms(100, 1000, 2, 0.5), 200);
    assert_int_equal(control_backoff_ms(100, 1000, 3, 0.5), 400);
    assert_int_equal(control_backoff_ms(100, 1000, 9, 0.5), 1000);
    assert_int_equal(control_backoff_ms(100, 1000, 1, 0.0), 50);
    assert_true(control_backoff_ms(100, 1000, 1, 0.999) < 150);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shipped_agent_conf_shape_parses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment_overrides_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values_name_the_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_addr_takes_ip_literals_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_http_only_to_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_file_problems_are_explained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_default_file_is_fine_missing_given_file_is_not,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_passes_engine_knobs_the_env_lacks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_export_leaves_the_agents_own_keys_in_the_file, setup,
                                        teardown),
        cmocka_unit_test(test_control_backoff_doubles_with_jitter_and_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
