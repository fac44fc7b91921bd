/* Clocks. Monotonic time for deadlines and latencies (never jumps), wall time
 * only for what is shown to people or put in mail headers. */
#ifndef KILN_CLOCK_H
#define KILN_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);
int64_t clock_wall_ms(void);
/* ISO 8601 UTC ("2026-11-25T10:00:00Z") of a Unix time in seconds. */
void clock_iso8601(int64_t unix_s, char *out, size_t outlen);

#endif
