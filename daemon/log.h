/*
 * Levelled logging to stderr. When stderr is the journal (JOURNAL_STREAM matches it) or
 * TALLY_LOG_PREFIX=1, each line starts with the sd-daemon priority prefix "<N>" so journald
 * records the level; otherwise lines carry a time stamp and the level's name.
 * Secrets must never be passed to these functions.
 */
#ifndef TALLY_LOG_H
#define TALLY_LOG_H

enum log_level { LOG_LVL_ERROR = 3, LOG_LVL_WARNING = 4, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

void log_init(enum log_level level);
/* Parses "error", "warning", "info", "debug"; returns -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
