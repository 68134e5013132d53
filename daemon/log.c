#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Logging configuration is process-wide by nature (stderr is), so it lives here, set once. */
static enum log_level max_level = LOG_LVL_INFO;
static int journal_prefix;

static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(enum log_level level)
{
    const char *p = getenv("TALLY_LOG_PREFIX");
    max_level = level;
    journal_prefix = stderr_is_journal() || (p && strcmp(p, "1") == 0);
}

int log_level_parse(const char *s)
{
    if (strcmp(s, "error") == 0)
        return LOG_LVL_ERROR;
    if (strcmp(s, "warning") == 0 || strcmp(s, "warn") == 0)
        return LOG_LVL_WARNING;
    if (strcmp(s, "info") == 0)
        return LOG_LVL_INFO;
    if (strcmp(s, "debug") == 0)
        return LOG_LVL_DEBUG;
    return -1;
}

static const char *level_name(enum log_level l)
{
    switch (l) {
    case LOG_LVL_ERROR:
        return "error";
    case LOG_LVL_WARNING:
        return "warning";
    case LOG_LVL_INFO:
        return "info";
    default:
        return "debug";
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > max_level)
        return;
    char line[1024];
    int n;
    if (journal_prefix) {
        n = snprintf(line, sizeof line, "<%d>", (int)level);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ tallyd %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_name(level));
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len++] = '\n';
    /* One write per line so concurrent writers (and the journal) never see torn lines. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
