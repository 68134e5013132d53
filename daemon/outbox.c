#include "outbox.h"

#include "tally/protocol.h"

int outbox_append(struct store *st, const char *key, const char *target, const char *entity,
                  const char *kind, const void *payload, size_t payload_len, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO outbox(key, target, entity, kind, payload,"
                                     " next_attempt_at, created_at) VALUES(?1,?2,?3,?4,?5,?6,?6)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, target, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, entity, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, kind, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, payload, (int)payload_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, store_now());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbox append");
    *id = sqlite3_last_insert_rowid(store_db(st));
    return 0;
}
