/* Message identity (api/lease/msgid.h): minted Message-IDs verify to their send id under
 * the current or an accepted key, and nothing else verifies. CRYPTO_memcmp is wrapped
 * (-Wl,--wrap) to prove the MAC comparison goes through it. */
#include "msgid.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

int __real_CRYPTO_memcmp(const void *a, const void *b, size_t n);
int __wrap_CRYPTO_memcmp(const void *a, const void *b, size_t n);
static int memcmp_calls;
static size_t memcmp_last_len;
int __wrap_CRYPTO_memcmp(const void *a, const void *b, size_t n)
{
    memcmp_calls++;
    memcmp_last_len = n;
    return __real_CRYPTO_memcmp(a, b, n);
}

static secret_key master(unsigned char fill)
{
    secret_key k;
    memset(k.key, fill, sizeof k.key);
    return k;
}

static msgid_keyring *ring(const char *current, const char *accepted)
{
    secret_key k = master(7);
    char err[256] = "";
    msgid_keyring *kr = msgid_keyring_new(&k, current, accepted, err, sizeof err);
    if (!kr)
        fail_msg("keyring %s/%s: %s", current, accepted ? accepted : "(null)", err);
    return kr;
}

static int64_t verify(const msgid_keyring *kr, const char *text)
{
    return msgid_verify(kr, text, strlen(text));
}

static void test_minted_message_id_verifies_to_its_send_id(void **state)
{
    (void)state;
    msgid_keyring *kr = ring("1", NULL);
    char mid[MSGID_MAX];
    const int64_t ids[] = {1, 12345, INT64_MAX};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int n = msgid_mint(kr, ids[i], "acme.test", mid);
        assert_int_equal(n, (int)strlen(mid));
        assert_int_equal(verify(kr, mid), ids[i]);
    }
    /* <12345.1 + 24 lowercase hex @acme.test>: a dot-atom-text left side */
    assert_int_equal(msgid_mint(kr, 12345, "Acme.TEST", mid), 1 + 5 + 1 + 1 + 24 + 1 + 9 + 1);
    assert_memory_equal(mid, "<12345.1", 8);
    for (int i = 8; i < 8 + MSGID_MAC_HEX; i++)
        assert_non_null(strchr("0123456789abcdef", mid[i]));
    assert_string_equal(mid + 8 + MSGID_MAC_HEX, "@acme.test>");
    /* the same send id and domain give the same Message-ID (no randomness) */
    char again[MSGID_MAX];
    msgid_mint(kr, 12345, "acme.test", again);
    assert_string_equal(mid, again);
    msgid_keyring_free(kr);
}

/* Known answers, computed apart from this code (Python's hmac and hashlib): the key is
 * HKDF-SHA256 (RFC 5869) of the master key with salt "kiln/message-id" and info
 * "kiln/message-id/v1/<key id>", the MAC the first 12 bytes of HMAC-SHA256 over
 * "<send id>@<domain>". Message-IDs already out in mailboxes must keep verifying, so no
 * change to how the MAC is computed may move these. Each is minted twice, and verified,
 * so a context reused between calls is seen to start afresh. */
static void test_known_answers(void **state)
{
    (void)state;
    msgid_keyring *kr = ring("1", NULL);
    static const struct {
        int64_t id;
        const char *domain, *want;
    } cases[] = {
        {12345, "acme.test", "<12345.123f10301342351f5cb61a9db@acme.test>"},
        {1, "a.b", "<1.111d73f16099423c943641f65@a.b>"},
    };
    char mid[MSGID_MAX];
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            assert_true(msgid_mint(kr, cases[i].id, cases[i].domain, mid) > 0);
            assert_string_equal(mid, cases[i].want);
            assert_int_equal(verify(kr, cases[i].want), cases[i].id);
        }
    }
    msgid_keyring_free(kr);
}

/* Threads minting and verifying at once under one keyring (kiln-api's workers): each
 * has its own keyed contexts, and every answer is the known one. */
static msgid_keyring *shared_ring;
static void *mint_many(void *arg)
{
    (void)arg;
    char mid[MSGID_MAX];
    for (int i = 0; i < 2000; i++) {
        if (msgid_mint(shared_ring, 12345, "acme.test", mid) < 0 ||
            strcmp(mid, "<12345.123f10301342351f5cb61a9db@acme.test>") != 0 ||
            verify(shared_ring, mid) != 12345)
            return (void *)1;
    }
    return NULL;
}

static void test_threads_share_a_keyring(void **state)
{
    (void)state;
    shared_ring = ring("1", NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, mint_many, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *rc = (void *)1;
        assert_int_equal(pthread_join(t[i], &rc), 0);
        assert_null(rc);
    }
    msgid_keyring_free(shared_ring);
    /* a keyring made after, in this thread: its own key, not the last one's contexts */
    secret_key k = master(8);
    char err[256] = "", a[MSGID_MAX], b[MSGID_MAX];
    msgid_keyring *other = msgid_keyring_new(&k, "1", NULL, err, sizeof err);
    msgid_keyring *first = ring("1", NULL);
    assert_non_null(other);
    assert_true(msgid_mint(first, 12345, "acme.test", a) > 0);
    assert_true(msgid_mint(other, 12345, "acme.test", b) > 0);
    assert_string_equal(a, "<12345.123f10301342351f5cb61a9db@acme.test>");
    assert_string_not_equal(a, b);
    assert_int_equal(verify(other, a), -1);
    assert_true(msgid_mint(first, 12345, "acme.test", a) > 0);
    assert_string_equal(a, "<12345.123f10301342351f5cb61a9db@acme.test>");
    msgid_keyring_free(other);
    msgid_keyring_free(first);
}

static void test_changed_send_id_domain_mac_or_key_id_fails(void **state)
{
    (void)state;
    msgid_keyring *kr = ring("1", "2");
    char mid[MSGID_MAX], bad[MSGID_MAX];
    msgid_mint(kr, 12345, "acme.test", mid);
    /* another send id */
    snprintf(bad, sizeof bad, "<12346%s", mid + 6);
    assert_int_equal(verify(kr, bad), -1);
    /* another domain */
    snprintf(bad, sizeof bad, "%.*s@acme.tesu>", 8 + MSGID_MAC_HEX, mid);
    assert_int_equal(verify(kr, bad), -1);
    /* each MAC digit changed */
    for (int i = 8; i < 8 + MSGID_MAC_HEX; i++) {
        memcpy(bad, mid, sizeof bad);
        bad[i] = bad[i] == '0' ? '1' : '0';
        assert_int_equal(verify(kr, bad), -1);
    }
    /* the key id changed to another accepted one: the MAC is not that key's */
    memcpy(bad, mid, sizeof bad);
    bad[7] = '2';
    assert_int_equal(verify(kr, bad), -1);
    /* uppercase hex is not what kiln mints */
    memcpy(bad, mid, sizeof bad);
    for (int i = 8; i < 8 + MSGID_MAC_HEX; i++)
        if (bad[i] >= 'a')
            bad[i] = (char)(bad[i] - 'a' + 'A');
    if (strcmp(bad, mid) != 0)
        assert_int_equal(verify(kr, bad), -1);
    /* another master key */
    secret_key other = master(8);
    char err[128];
    msgid_keyring *kr2 = msgid_keyring_new(&other, "1", NULL, err, sizeof err);
    assert_non_null(kr2);
    assert_int_equal(verify(kr2, mid), -1);
    msgid_keyring_free(kr2);
    msgid_keyring_free(kr);
}

static void test_rotation_old_accepted_key_verifies_unknown_fails(void **state)
{
    (void)state;
    msgid_keyring *old = ring("1", NULL), *rotated = ring("2", "1"), *dropped = ring("2", NULL);
    char mid1[MSGID_MAX], mid2[MSGID_MAX];
    msgid_mint(old, 77, "acme.test", mid1);
    msgid_mint(rotated, 77, "acme.test", mid2);
    assert_int_equal(mid2[4], '2');
    assert_string_not_equal(mid1, mid2);
    /* after rotation, key 1 still verifies while accepted */
    assert_int_equal(verify(rotated, mid1), 77);
    assert_int_equal(verify(rotated, mid2), 77);
    /* a key id no longer accepted, or never known, does not */
    assert_int_equal(verify(dropped, mid1), -1);
    assert_int_equal(verify(old, mid2), -1);
    char z[MSGID_MAX];
    memcpy(z, mid2, sizeof z);
    z[4] = 'z';
    assert_int_equal(verify(rotated, z), -1);
    msgid_keyring_free(old);
    msgid_keyring_free(rotated);
    msgid_keyring_free(dropped);
}

static void test_bad_key_ids_are_refused(void **state)
{
    (void)state;
    secret_key k = master(1);
    char err[256];
    const char *bad_current[] = {"", "12", "A", "-", " "};
    for (size_t i = 0; i < sizeof bad_current / sizeof bad_current[0]; i++) {
        err[0] = '\0';
        assert_null(msgid_keyring_new(&k, bad_current[i], NULL, err, sizeof err));
        assert_non_null(strstr(err, "KILN_MESSAGE_KEY_ID"));
    }
    assert_null(msgid_keyring_new(&k, NULL, NULL, err, sizeof err));
    const char *bad_accepted[] = {"1,", ",1", "1,,2", "12", "1;2", "1, 2", "A"};
    for (size_t i = 0; i < sizeof bad_accepted / sizeof bad_accepted[0]; i++) {
        err[0] = '\0';
        assert_null(msgid_keyring_new(&k, "1", bad_accepted[i], err, sizeof err));
        assert_non_null(strstr(err, "KILN_MESSAGE_KEY_IDS_ACCEPTED"));
    }
    msgid_keyring *kr = msgid_keyring_new(&k, "z", "0,9,a", err, sizeof err);
    assert_non_null(kr);
    msgid_keyring_free(kr);
}

static void test_garbage_and_overlong_input_fail(void **state)
{
    (void)state;
    msgid_keyring *kr = ring("1", NULL);
    char mid[MSGID_MAX];
    msgid_mint(kr, 12345, "acme.test", mid);
    size_t n = strlen(mid);
    /* every strict prefix and every one-byte-longer form */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(msgid_verify(kr, mid, i), -1);
    char longer[MSGID_MAX + 2];
    snprintf(longer, sizeof longer, "%s ", mid);
    assert_int_equal(verify(kr, longer), -1);
    snprintf(longer, sizeof longer, " %s", mid);
    assert_int_equal(verify(kr, longer), -1);
    const char *garbage[] = {
        "",
        "<>",
        "<@>",
        "<1.1@a>",
        "12345.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test",
        "<012345.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test>",
        "<-1.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test>",
        "<12345.1aaaaaaaaaaaaaaaaaaaaaaa@acme.test>",   /* 23 hex */
        "<12345.1aaaaaaaaaaaaaaaaaaaaaaaaa@acme.test>", /* 25 hex */
        "<12345.1aaaaaaaaaaaaaaaaaaaaaaaa@>",
        "<12345.1aaaaaaaaaaaaaaaaaaaaaaaa@acme..test>",
        "<12345.1aaaaaaaaaaaaaaaaaaaaaaaa@.acme.test>",
        "<12345.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test.>",
        "<12345.1aaaaaaaaaaaaaaaaaaaaaaaa@acme test>",
        "<12345.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test>>",
        "<12345.aaaaaaaaaaaaaaaaaaaaaaaa@acme.test>",
        "<9223372036854775808.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test>",  /* INT64_MAX + 1 */
        "<99999999999999999999.1aaaaaaaaaaaaaaaaaaaaaaaa@acme.test>", /* 20 digits */
        "<12345.1gggggggggggggggggggggggg@acme.test>",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        if (verify(kr, garbage[i]) != -1)
            fail_msg("'%s' verified", garbage[i]);
    /* an overlong domain: 254 bytes and more, and input far past any Message-ID */
    char big[4096];
    int p = snprintf(big, sizeof big, "%.*s@", 8 + MSGID_MAC_HEX, mid);
    memset(big + p, 'a', sizeof big - (size_t)p - 2);
    big[sizeof big - 2] = '>';
    big[sizeof big - 1] = '\0';
    assert_int_equal(verify(kr, big), -1);
    char dom[300];
    memset(dom, 'a', sizeof dom);
    for (int i = 60; i < 299; i += 61)
        dom[i] = '.';
    dom[254] = '\0';
    assert_int_equal(msgid_mint(kr, 1, dom, mid), -1);
    dom[253] = '\0';
    dom[252] = 'a';
    assert_true(msgid_mint(kr, 1, dom, mid) > 0);
    assert_int_equal(verify(kr, mid), 1);
    /* not NUL terminated: the length given is the end */
    char raw[MSGID_MAX];
    int m = msgid_mint(kr, 42, "acme.test", raw);
    raw[m] = 'x';
    assert_int_equal(msgid_verify(kr, raw, (size_t)m), 42);
    assert_int_equal(msgid_verify(NULL, raw, (size_t)m), -1);
    /* minting refuses what it could not verify */
    assert_int_equal(msgid_mint(kr, 0, "acme.test", mid), -1);
    assert_int_equal(msgid_mint(kr, -5, "acme.test", mid), -1);
    assert_int_equal(msgid_mint(kr, 5, "", mid), -1);
    assert_int_equal(msgid_mint(kr, 5, "acme>test", mid), -1);
    assert_int_equal(msgid_mint(kr, 5, "acme@test", mid), -1);
    msgid_keyring_free(kr);
}

static void test_mac_is_compared_with_crypto_memcmp(void **state)
{
    (void)state;
    msgid_keyring *kr = ring("1", NULL);
    char mid[MSGID_MAX];
    msgid_mint(kr, 9, "acme.test", mid);
    memcmp_calls = 0;
    assert_int_equal(verify(kr, mid), 9);
    assert_int_equal(memcmp_calls, 1);
    assert_int_equal(memcmp_last_len, MSGID_MAC_HEX / 2);
    /* a MAC wrong in its first digit is still compared in full, by CRYPTO_memcmp */
    mid[8] = mid[8] == '0' ? '1' : '0';
    memcmp_calls = 0;
    assert_int_equal(verify(kr, mid), -1);
    assert_int_equal(memcmp_calls, 1);
    assert_int_equal(memcmp_last_len, MSGID_MAC_HEX / 2);
    msgid_keyring_free(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minted_message_id_verifies_to_its_send_id),
        cmocka_unit_test(test_changed_send_id_domain_mac_or_key_id_fails),
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_threads_share_a_keyring),
        cmocka_unit_test(test_rotation_old_accepted_key_verifies_unknown_fails),
        cmocka_unit_test(test_bad_key_ids_are_refused),
        cmocka_unit_test(test_garbage_and_overlong_input_fail),
        cmocka_unit_test(test_mac_is_compared_with_crypto_memcmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
