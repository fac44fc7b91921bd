/* Unit tests of the report spool: append and replay, an intent without an outcome comes
 * back as "unknown", a torn last record and a CRC mismatch are skipped, acknowledged
 * records are trimmed, a second opener is refused, and the CRC is zlib's; inbox events
 * (their own record kinds) survive a crash byte for byte, mixed with send results, and
 * are trimmed once acknowledged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "spool.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kiln-spool-test.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char p[512];
    snprintf(p, sizeof p, "%s/results.spool", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/spool.lock", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/results.spool.tmp", dir);
    unlink(p);
    rmdir(dir);
    return 0;
}

static spool_record rec(int type, const char *lease, int64_t send_id, const char *status)
{
    spool_record r;
    memset(&r, 0, sizeof r);
    r.type = type;
    snprintf(r.lease_id, sizeof r.lease_id, "%s", lease);
    r.send_id = send_id;
    r.mailbox_id = send_id / 100;
    if (status) {
        snprintf(r.status, sizeof r.status, "%s", status);
        r.smtp_code = 250;
        snprintf(r.enhanced, sizeof r.enhanced, "2.0.0");
        snprintf(r.detail, sizeof r.detail, "queued as %lld", (long long)send_id);
        r.latency_ms = 12;
        r.attempts = 1;
    }
    return r;
}

static spool *open_ok(spool_replay *rep)
{
    char err[256] = "";
    spool *sp = spool_open(dir, rep, err, sizeof err);
    if (!sp)
        fail_msg("spool_open: %s", err);
    return sp;
}

static void append_sync(spool *sp, spool_record r)
{
    assert_int_equal(spool_sync(sp, spool_append(sp, &r)), 0);
}

static off_t file_size(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/results.spool", dir);
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static void test_crc32_matches_zlib(void **state)
{
    (void)state;
    /* zlib: crc32(0, "123456789", 9) == 0xCBF43926 */
    assert_int_equal(spool_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(spool_crc32(spool_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

static void test_replay_reports_unacknowledged_outcomes_and_unknown_intents(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    assert_int_equal(rep.npending, 0);
    append_sync(sp, rec(SPOOL_LEASE, "L1", 0, NULL));
    append_sync(sp, rec(SPOOL_INTENT, "L1", 101, NULL));
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 101, "sent"));
    append_sync(sp, rec(SPOOL_INTENT, "L1", 102, NULL)); /* died during this one */
    append_sync(sp, rec(SPOOL_INTENT, "L1", 103, NULL));
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 103, "failed"));
    append_sync(sp, rec(SPOOL_ACK, "L1", 103, NULL)); /* acknowledged: not replayed */
    spool_close(sp);

    sp = open_ok(&rep);
    assert_int_equal(rep.records, 7);
    assert_int_equal(rep.bad_records, 0);
    assert_int_equal(rep.torn_bytes, 0);
    assert_int_equal(rep.npending, 2);
    assert_int_equal(rep.pending[0].send_id, 101);
    assert_string_equal(rep.pending[0].status, "sent");
    assert_int_equal(rep.pending[0].smtp_code, 250);
    assert_string_equal(rep.pending[0].detail, "queued as 101");
    assert_int_equal(rep.pending[1].send_id, 102);
    assert_string_equal(rep.pending[1].status, "unknown");
    assert_string_equal(rep.pending[1].lease_id, "L1");
    assert_int_equal(rep.pending[1].smtp_code, 0);
    assert_int_equal(rep.nleases, 1);
    assert_string_equal(rep.leases[0], "L1");
    spool_replay_free(&rep);
    spool_close(sp);
}

static void test_unsynced_records_are_written_at_close(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    spool_record r = rec(SPOOL_OUTCOME, "L2", 7, "sent");
    spool_append(sp, &r);
    spool_close(sp);
    sp = open_ok(&rep);
    assert_int_equal(rep.npending, 1);
    spool_replay_free(&rep);
    spool_close(sp);
}

static void test_torn_last_record_is_skipped_and_cut(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 201, "sent"));
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 202, "sent"));
    spool_close(sp);
    off_t full = file_size();
    /* cut the last record in the middle, as a crash during write(2) would */
    char p[512];
    snprintf(p, sizeof p, "%s/results.spool", dir);
    assert_int_equal(truncate(p, full - 20), 0);

    sp = open_ok(&rep);
    assert_int_equal(rep.npending, 1);
    assert_int_equal(rep.pending[0].send_id, 201);
    assert_true(rep.torn_bytes > 0);
    assert_int_equal(file_size(), full - 20 - (off_t)rep.torn_bytes);
    spool_replay_free(&rep);
    /* appends after the cut land on a clean boundary */
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 203, "deferred"));
    spool_close(sp);
    sp = open_ok(&rep);
    assert_int_equal(rep.npending, 2);
    assert_int_equal(rep.pending[1].send_id, 203);
    assert_int_equal(rep.torn_bytes, 0);
    spool_replay_free(&rep);
    spool_close(sp);
}

static void test_crc_mismatch_skips_only_that_record(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 301, "sent"));
    off_t first_end = file_size();
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 302, "sent"));
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 303, "sent"));
    spool_close(sp);
    /* flip one byte inside the second record's payload */
    char p[512];
    snprintf(p, sizeof p, "%s/results.spool", dir);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    char c;
    assert_int_equal(pread(fd, &c, 1, first_end + 20), 1);
    c ^= 0x5A;
    assert_int_equal(pwrite(fd, &c, 1, first_end + 20), 1);
    close(fd);

    sp = open_ok(&rep);
    assert_int_equal(rep.bad_records, 1);
    assert_int_equal(rep.torn_bytes, 0);
    assert_int_equal(rep.npending, 2);
    assert_int_equal(rep.pending[0].send_id, 301);
    assert_int_equal(rep.pending[1].send_id, 303);
    spool_replay_free(&rep);
    spool_close(sp);
}

static void test_acknowledged_records_are_trimmed(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    /* everything acknowledged: compaction empties the file */
    for (int64_t i = 1; i <= 100; i++) {
        spool_record a = rec(SPOOL_INTENT, "L3", i, NULL), b = rec(SPOOL_OUTCOME, "L3", i, "sent"),
                     k = rec(SPOOL_ACK, "L3", i, NULL);
        spool_append(sp, &a);
        spool_append(sp, &b);
        spool_append(sp, &k);
    }
    assert_int_equal(spool_sync(sp, spool_last_seq(sp)), 0);
    assert_true(spool_file_bytes(sp) > 10000);
    assert_int_equal(spool_live_records(sp), 0);
    assert_int_equal(spool_compact(sp, 1 << 20), 1);
    assert_int_equal(spool_file_bytes(sp), 0);
    assert_int_equal(file_size(), 0);

    /* mostly dead, a few live: rewritten with the live ones only */
    append_sync(sp, rec(SPOOL_LEASE, "L4", 0, NULL));
    for (int64_t i = 1000; i < 1400; i++) {
        spool_record a = rec(SPOOL_INTENT, "L4", i, NULL), b = rec(SPOOL_OUTCOME, "L4", i, "sent");
        spool_append(sp, &a);
        spool_append(sp, &b);
        if (i >= 1003) {
            spool_record k = rec(SPOOL_ACK, "L4", i, NULL);
            spool_append(sp, &k);
        }
    }
    spool_record in = rec(SPOOL_INTENT, "L4", 5000, NULL);
    spool_append(sp, &in);
    assert_int_equal(spool_sync(sp, spool_last_seq(sp)), 0);
    size_t before = spool_file_bytes(sp);
    assert_int_equal(spool_compact(sp, before + 1), 0); /* under the threshold: left alone */
    assert_int_equal(spool_compact(sp, 4096), 1);
    assert_true(spool_file_bytes(sp) < before / 20);
    assert_int_equal(spool_live_records(sp), 5); /* lease + 3 outcomes + 1 intent */
    spool_close(sp);

    sp = open_ok(&rep);
    assert_int_equal(rep.npending, 4);
    assert_int_equal(rep.pending[0].send_id, 1000);
    assert_int_equal(rep.pending[2].send_id, 1002);
    assert_int_equal(rep.pending[3].send_id, 5000);
    assert_string_equal(rep.pending[3].status, "unknown");
    assert_int_equal(rep.nleases, 1);
    spool_replay_free(&rep);
    /* a released lease is not replayed */
    append_sync(sp, rec(SPOOL_RELEASED, "L4", 0, NULL));
    spool_close(sp);
    sp = open_ok(&rep);
    assert_int_equal(rep.nleases, 0);
    spool_replay_free(&rep);
    spool_close(sp);
}

static void test_second_agent_on_the_same_spool_is_refused(void **state)
{
    (void)state;
    spool_replay rep, rep2;
    spool *sp = open_ok(&rep);
    char err[256] = "";
    assert_null(spool_open(dir, &rep2, err, sizeof err));
    assert_non_null(strstr(err, "in use by another kiln-agent"));
    spool_close(sp);
}

static void test_long_fields_are_truncated_not_overflowed(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    spool_record r = rec(SPOOL_OUTCOME, "L5", 9, "sent");
    memset(r.detail, 'x', sizeof r.detail - 1);
    r.detail[sizeof r.detail - 1] = '\0';
    append_sync(sp, r);
    spool_close(sp);
    sp = open_ok(&rep);
    assert_int_equal(rep.npending, 1);
    assert_int_equal(strlen(rep.pending[0].detail), sizeof r.detail - 1);
    spool_replay_free(&rep);
    spool_close(sp);
}

/* ---- inbox events ---- */

static uint64_t append_event(spool *sp, const char *lease, int64_t mailbox, int64_t action,
                             const char *json)
{
    spool_inbox_event e;
    memset(&e, 0, sizeof e);
    snprintf(e.lease_id, sizeof e.lease_id, "%s", lease);
    e.mailbox_id = mailbox;
    e.action_id = action;
    e.json = (char *)json;
    e.json_len = strlen(json);
    assert_true(spool_sync(sp, spool_append_inbox_event(sp, &e)) == 0);
    return e.key;
}

static const char ev_found[] = "{\"type\":\"found\",\"mailbox_id\":11,\"message_id\":\"<1.a@b>\"}";
static const char ev_action[] = "{\"type\":\"action\",\"mailbox_id\":11,\"action_id\":501,"
                                "\"status\":\"done\",\"detail\":null}";

static void test_inbox_events_replay_byte_for_byte_mixed_with_sends(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    spool_record il = rec(SPOOL_INBOX_LEASE, "IL1", 0, NULL);
    append_sync(sp, il);
    append_sync(sp, rec(SPOOL_LEASE, "L1", 0, NULL));
    uint64_t k1 = append_event(sp, "IL1", 11, 0, ev_found);
    append_sync(sp, rec(SPOOL_OUTCOME, "L1", 101, "sent"));
    uint64_t k2 = append_event(sp, "IL1", 11, 501, ev_action);
    uint64_t k3 = append_event(sp, "IL1", 12, 0, ev_found);
    assert_true(k1 < k2 && k2 < k3);
    assert_int_equal(spool_sync(sp, spool_append_inbox_ack(sp, "IL1", k3)), 0);
    assert_int_equal(spool_live_records(sp), 2 + 1 + 2); /* leases, outcome, 2 events */
    spool_close(sp);

    sp = open_ok(&rep);
    assert_int_equal(rep.bad_records, 0);
    assert_int_equal(rep.npending, 1);
    assert_int_equal(rep.pending[0].send_id, 101);
    assert_int_equal(rep.nleases, 1);
    assert_string_equal(rep.leases[0], "L1");
    assert_int_equal(rep.ninbox_leases, 1);
    assert_string_equal(rep.inbox_leases[0], "IL1");
    assert_int_equal(rep.ninbox_pending, 2);
    assert_int_equal(rep.inbox_pending[0].key, k1);
    assert_string_equal(rep.inbox_pending[0].json, ev_found);
    assert_int_equal(rep.inbox_pending[0].json_len, strlen(ev_found));
    assert_int_equal(rep.inbox_pending[0].mailbox_id, 11);
    assert_int_equal(rep.inbox_pending[1].key, k2);
    assert_int_equal(rep.inbox_pending[1].action_id, 501);
    assert_string_equal(rep.inbox_pending[1].json, ev_action);
    assert_string_equal(rep.inbox_pending[1].lease_id, "IL1");
    spool_replay_free(&rep);
    /* keys go on after the replay: a new event never takes an old one's */
    uint64_t k4 = append_event(sp, "IL1", 11, 0, ev_found);
    assert_true(k4 > k3);
    spool_close(sp);
}

static void test_inbox_event_torn_by_a_crash_is_cut_the_others_kept(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    append_event(sp, "IL1", 11, 0, ev_found);
    off_t first_end = file_size();
    append_event(sp, "IL1", 11, 501, ev_action);
    spool_close(sp);
    /* a crash in the middle of the second record's write */
    char p[512];
    snprintf(p, sizeof p, "%s/results.spool", dir);
    off_t full = file_size();
    assert_int_equal(truncate(p, first_end + (full - first_end) / 2), 0);

    sp = open_ok(&rep);
    assert_int_equal(rep.ninbox_pending, 1);
    assert_string_equal(rep.inbox_pending[0].json, ev_found);
    assert_true(rep.torn_bytes > 0);
    assert_int_equal(file_size(), first_end);
    spool_replay_free(&rep);
    /* the action's outcome was never durable: it is not made up; a new append lands
     * after the cut and replays */
    append_event(sp, "IL1", 11, 501, ev_action);
    spool_close(sp);
    sp = open_ok(&rep);
    assert_int_equal(rep.ninbox_pending, 2);
    assert_string_equal(rep.inbox_pending[1].json, ev_action);
    assert_int_equal(rep.torn_bytes, 0);
    spool_replay_free(&rep);
    spool_close(sp);
}

static void test_acknowledged_inbox_events_are_trimmed(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    for (int i = 0; i < 200; i++) {
        uint64_t k = append_event(sp, "IL2", 11, 0, ev_found);
        spool_append_inbox_ack(sp, "IL2", k);
    }
    assert_int_equal(spool_sync(sp, spool_last_seq(sp)), 0);
    assert_int_equal(spool_live_records(sp), 0);
    assert_int_equal(spool_compact(sp, 1 << 20), 1);
    assert_int_equal(file_size(), 0);
    /* mostly acknowledged: rewritten with the live ones, which replay as they were */
    append_sync(sp, rec(SPOOL_INBOX_LEASE, "IL3", 0, NULL));
    uint64_t keep = append_event(sp, "IL3", 12, 7, ev_action);
    for (int i = 0; i < 300; i++) {
        uint64_t k = append_event(sp, "IL3", 11, 0, ev_found);
        spool_append_inbox_ack(sp, "IL3", k);
    }
    assert_int_equal(spool_sync(sp, spool_last_seq(sp)), 0);
    size_t before = spool_file_bytes(sp);
    assert_int_equal(spool_compact(sp, 4096), 1);
    assert_true(spool_file_bytes(sp) < before / 20);
    assert_int_equal(spool_live_records(sp), 2);
    spool_close(sp);
    sp = open_ok(&rep);
    assert_int_equal(rep.ninbox_pending, 1);
    assert_int_equal(rep.inbox_pending[0].key, keep);
    assert_string_equal(rep.inbox_pending[0].json, ev_action);
    assert_int_equal(rep.ninbox_leases, 1);
    spool_replay_free(&rep);
    /* released: the inbox lease is not replayed */
    append_sync(sp, rec(SPOOL_RELEASED, "IL3", 0, NULL));
    spool_close(sp);
    sp = open_ok(&rep);
    assert_int_equal(rep.ninbox_leases, 0);
    spool_replay_free(&rep);
    spool_close(sp);
}

/* An inbox record of a version this spool does not know is skipped like a corrupt one
 * (what an older agent does with a newer spool), and a too large event is refused. */
static void test_unknown_inbox_version_is_skipped_and_oversize_refused(void **state)
{
    (void)state;
    spool_replay rep;
    spool *sp = open_ok(&rep);
    append_event(sp, "IL1", 11, 0, ev_found);
    off_t first_end = file_size();
    append_event(sp, "IL1", 12, 0, ev_found);
    spool_close(sp);
    /* the second record's version byte (header 12, type 1) becomes 2, its CRC fixed up */
    char p[512];
    snprintf(p, sizeof p, "%s/results.spool", dir);
    int fd = open(p, O_RDWR);
    unsigned char hdr[12], payload[512];
    assert_int_equal(pread(fd, hdr, 12, first_end), 12);
    size_t plen = hdr[4] | hdr[5] << 8;
    assert_true(plen < sizeof payload);
    assert_int_equal(pread(fd, payload, plen, first_end + 12), (ssize_t)plen);
    payload[1] = 2;
    uint32_t crc = spool_crc32(0, payload, plen);
    unsigned char c4[4] = {(unsigned char)crc, (unsigned char)(crc >> 8),
                           (unsigned char)(crc >> 16), (unsigned char)(crc >> 24)};
    assert_int_equal(pwrite(fd, c4, 4, first_end + 8), 4);
    assert_int_equal(pwrite(fd, payload, plen, first_end + 12), (ssize_t)plen);
    close(fd);
    sp = open_ok(&rep);
    assert_int_equal(rep.ninbox_pending, 1);
    assert_int_equal(rep.inbox_pending[0].mailbox_id, 11);
    spool_replay_free(&rep);

    spool_inbox_event e;
    memset(&e, 0, sizeof e);
    e.json_len = 300 * 1024;
    e.json = calloc(1, e.json_len);
    assert_int_equal(spool_append_inbox_event(sp, &e), 0);
    free(e.json);
    spool_close(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_matches_zlib),
        cmocka_unit_test_setup_teardown(
            test_replay_reports_unacknowledged_outcomes_and_unknown_intents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsynced_records_are_written_at_close, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_torn_last_record_is_skipped_and_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crc_mismatch_skips_only_that_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acknowledged_records_are_trimmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_agent_on_the_same_spool_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_long_fields_are_truncated_not_overflowed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_inbox_events_replay_byte_for_byte_mixed_with_sends,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbox_event_torn_by_a_crash_is_cut_the_others_kept,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_acknowledged_inbox_events_are_trimmed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_inbox_version_is_skipped_and_oversize_refused,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
