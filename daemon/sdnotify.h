/*
 * The systemd notify protocol, spoken directly: one datagram to $NOTIFY_SOCKET. A no-op when
 * the variable is unset, so tallyd runs the same outside systemd.
 */
#ifndef TALLY_SDNOTIFY_H
#define TALLY_SDNOTIFY_H

#include <stdint.h>

/* Sends `state` (e.g. "READY=1\nSTATUS=serving"). Returns 0, or a negative errno. */
int sd_notify_send(const char *state);
/* Watchdog interval in microseconds from $WATCHDOG_USEC (for this pid), 0 when not enabled. */
uint64_t sd_watchdog_usec(void);

#endif
