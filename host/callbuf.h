/*
 * host/callbuf.h: the host's side of the call buffer (layout in
 * guest/include/snapvm_abi.h).
 *
 * The buffer lives in guest memory, so everything read back from it is
 * untrusted: the host keeps its own copy of the layout it chose and only
 * reads the fields the guest is meant to write, each once, each checked
 * (result length against the result capacity, message length against
 * SNAPVM_MSG_MAX).  Works on plain memory: no KVM needed, so it is unit
 * tested directly.  Call these only while the guest is stopped.
 */
#ifndef SNAPVM_CALLBUF_H
#define SNAPVM_CALLBUF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "snapvm_abi.h"

struct callbuf {
	uint8_t *mem;		/* host view of the buffer */
	uint64_t gpa, size;	/* where the guest sees it, its size */
	uint64_t in_off, in_cap;
	uint64_t out_off, out_cap;
};

/* smallest buffer: the header page plus one page each for in and out */
#define CALLBUF_MIN (SNAPVM_CALLBUF_HDR + 2 * SNAPVM_PAGE_SIZE)

/*
 * Lay out a buffer of size bytes (>= CALLBUF_MIN, page multiple) at mem:
 * after the header page, the rest is split evenly between argument and
 * result.  Writes the magic.  Returns 0 or -EINVAL.
 */
int callbuf_init(struct callbuf *cb, void *mem, uint64_t gpa, uint64_t size, struct err *e);

/* Prepare a boot entry (op SNAPVM_OP_BOOT). */
void callbuf_put_boot(const struct callbuf *cb);

/*
 * Prepare a call of fn with in_len bytes at in.  Returns 0, -EINVAL if fn
 * is empty, too long or has characters outside [A-Za-z0-9_.-], or -E2BIG
 * if in_len > cb->in_cap.
 */
int callbuf_put_call(const struct callbuf *cb, const char *fn, const void *in, size_t in_len,
		     struct err *e);

/*
 * After SNAPVM_PORT_DONE: the guest's status and result.  *out points into
 * the buffer (valid until the next call).  Returns 0, or -EPROTO if the
 * guest claims more result bytes than out_cap.
 */
int callbuf_get_result(const struct callbuf *cb, int64_t *status, const void **out,
		       size_t *out_len, struct err *e);

/*
 * After SNAPVM_PORT_PRINT or _ABORT: the message (not NUL-terminated) in
 * the buffer.  Returns 0, or -EPROTO if hc_len > SNAPVM_MSG_MAX.
 */
int callbuf_get_msg(const struct callbuf *cb, const char **msg, size_t *len, struct err *e);

/* Answer a host call (hc_ret). */
void callbuf_set_ret(const struct callbuf *cb, int64_t ret);

/* After SNAPVM_PORT_FAULT: a copy of the guest's fault description. */
void callbuf_get_fault(const struct callbuf *cb, struct snapvm_fault *f);

/*
 * Describe a fault for a person, e.g. "page fault (#PF, error 0x2) at
 * address 0x0": into buf (always NUL-terminated).  Unknown kinds and
 * vectors are named by number.
 */
void callbuf_describe_fault(const struct snapvm_fault *f, char *buf, size_t cap);

/* Is name a valid export name ([A-Za-z0-9_.-]+, shorter than SNAPVM_NAME_MAX)? */
int callbuf_name_ok(const char *name);

#endif
