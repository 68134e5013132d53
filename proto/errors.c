/* The one table that maps error codes to their wire names and descriptions. */
#include <string.h>

#include "tally/protocol.h"

struct err_entry {
    int err;
    const char *code;
    const char *text;
};

static const struct err_entry err_table[] = {
    {TALLY_OK, "ok", "success"},
    {TALLY_E_INTERNAL, "internal", "internal error"},
    {TALLY_E_BAD_REQUEST, "bad_request", "not a valid request"},
    {TALLY_E_UNKNOWN_METHOD, "unknown_method", "unknown method"},
    {TALLY_E_INVALID_PARAMS, "invalid_params", "invalid parameters"},
    {TALLY_E_NOT_FOUND, "not_found", "not found"},
    {TALLY_E_FORBIDDEN, "forbidden", "permission denied"},
    {TALLY_E_CONFLICT, "conflict", "id reused with different content"},
    {TALLY_E_INSUFFICIENT, "insufficient_stock", "insufficient stock"},
    {TALLY_E_TOO_LARGE, "too_large", "message too large"},
    {TALLY_E_MALFORMED, "malformed", "malformed MessagePack"},
    {TALLY_E_TOO_DEEP, "too_deep", "nesting too deep"},
    {TALLY_E_OVERLOADED, "overloaded", "server overloaded"},
    {TALLY_E_STORAGE, "storage", "storage error"},
    {TALLY_E_DISK_FULL, "disk_full", "disk full"},
    {TALLY_E_HELLO_REQUIRED, "hello_required", "hello required"},
    {TALLY_E_VERSION, "version_mismatch", "protocol version not supported"},
    {TALLY_E_SHUTTING_DOWN, "shutting_down", "daemon is shutting down"},
    {TALLY_E_IO, "io", "connection failed"},
    {TALLY_E_TIMEOUT, "timeout", "timed out"},
    {TALLY_E_NOT_RUNNING, "not_running", "tallyd is not running"},
    {TALLY_E_NOMEM, "no_memory", "out of memory"},
    {TALLY_E_BUSY, "busy", "busy: nothing was changed; try again"},
};

static const struct err_entry *err_find(int err)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].err == err)
            return &err_table[i];
    return NULL;
}

const char *tally_strerror_code(int err)
{
    const struct err_entry *e = err_find(err);
    return e ? e->code : "internal";
}

const char *tally_strerror(int err)
{
    const struct err_entry *e = err_find(err);
    return e ? e->text : "unknown error";
}

int tally_error_from_code(const char *code, unsigned len)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (strlen(err_table[i].code) == len && memcmp(err_table[i].code, code, len) == 0)
            return err_table[i].err;
    return TALLY_E_INTERNAL;
}
