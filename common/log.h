/* Leveled logging to stderr, one line per event, with an ISO 8601 UTC time.
 * Thread-safe (one write(2) per line). Secrets must never be passed here. */
#ifndef KILN_LOG_H
#define KILN_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* "debug", "info", "warn" or "error" into *out: 0, or -1 (NULL or anything else). */
int log_level_parse(const char *s, enum log_level *out);
/* Reads KILN_LOG_LEVEL (debug|info|warn|error) once; defaults to info. */
void log_init(const char *program);
/* Any thread, any time (SIGHUP reloads): the level is atomic. */
void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
