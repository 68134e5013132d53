/*
 * Frame scanning: finds where one MessagePack object ends in a byte stream, without building
 * it, and enforces the protocol's structural limits before msgpack-c's unpacker allocates
 * anything. msgpack-c sizes an array's storage from its declared length, so a five-byte header
 * claiming 2^32 elements must be refused here, not discovered there.
 */
#ifndef TALLY_WIRE_H
#define TALLY_WIRE_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Scans buf[0..len) for one complete MessagePack object.
 * Returns its length in bytes (> 0) when complete; 0 when more bytes are needed; or
 * TALLY_E_MALFORMED (the reserved byte 0xc1), TALLY_E_TOO_DEEP (nesting > max_depth), or
 * TALLY_E_TOO_LARGE (the object is, or declares contents that would be, longer than
 * max_frame bytes). An incomplete prefix longer than max_frame is also TALLY_E_TOO_LARGE.
 */
ssize_t wire_frame_scan(const unsigned char *buf, size_t len, size_t max_frame, int max_depth);

#endif
