/* The sends history's retention (docs/design.md "Sends: hot days and history"): one
 * partition of sends per UTC day, made a few days ahead and dropped, never deleted from,
 * once older than KILN_SENDS_RETENTION_DAYS. kiln_sends_rotate() (migration 021) does the
 * work under an advisory lock, so any number of kiln-api processes may call it; this
 * module paces the calls from the stats refresher's job and logs what changed. */
#ifndef KILN_RETENTION_H
#define KILN_RETENTION_H

#include "arena.h"
#include "db.h"

#include <stdint.h>

/* Days of partitions kept ahead of today: grants never wait for a rotation. */
#define RETENTION_DAYS_AHEAD 3

/* Owned by the caller (main.c), used by the refresher thread only. */
typedef struct retention {
    int64_t keep_days; /* KILN_SENDS_RETENTION_DAYS (90) */
    int64_t every_s;   /* KILN_SENDS_ROTATE_S (600) */
    int64_t last_ms;   /* monotonic time of the last attempt; 0 = never */
} retention;

/* Rotates when every_s has passed since the last attempt (at once the first time).
 * Returns the partitions dropped, 0 when nothing was due or another process holds the
 * lock, -1 on a database error (logged; retried at the next attempt). */
int retention_tick(retention *r, db *d, arena *a, int64_t now_ms);

#endif
