/*
 * host/callbuf.c: write requests into, and read checked answers out of,
 * the call buffer shared with the guest.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "callbuf.h"

#define HDR(cb) ((struct snapvm_callbuf *)(cb)->mem)

/* one read of a field the guest may change */
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))

int callbuf_name_ok(const char *name)
{
	size_t n = strnlen(name, SNAPVM_NAME_MAX);
	if (n == 0 || n >= SNAPVM_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

int callbuf_init(struct callbuf *cb, void *mem, uint64_t gpa, uint64_t size, struct err *e)
{
	if (!mem || size < CALLBUF_MIN || size % SNAPVM_PAGE_SIZE || gpa % SNAPVM_PAGE_SIZE)
		return err_set(e, -EINVAL, "call buffer: bad size 0x%llx or address 0x%llx",
			       (unsigned long long)size, (unsigned long long)gpa);
	uint64_t data = size - SNAPVM_CALLBUF_HDR;
	*cb = (struct callbuf){
		.mem = mem, .gpa = gpa, .size = size,
		.in_off = SNAPVM_CALLBUF_HDR, .in_cap = data / 2,
	};
	cb->out_off = cb->in_off + cb->in_cap;
	cb->out_cap = size - cb->out_off;
	memset(mem, 0, SNAPVM_CALLBUF_HDR);
	HDR(cb)->magic = SNAPVM_CALLBUF_MAGIC;
	return 0;
}

static void put_common(const struct callbuf *cb, uint32_t op)
{
	struct snapvm_callbuf *h = HDR(cb);
	h->magic = SNAPVM_CALLBUF_MAGIC;
	h->op = op;
	h->in_off = cb->in_off;
	h->in_len = 0;
	h->out_off = cb->out_off;
	h->out_cap = cb->out_cap;
	h->out_len = 0;
	h->status = 0;
	h->hc_len = 0;
	memset(&h->fault, 0, sizeof(h->fault));
}

void callbuf_put_boot(const struct callbuf *cb)
{
	put_common(cb, SNAPVM_OP_BOOT);
	memset(HDR(cb)->fn, 0, SNAPVM_NAME_MAX);
}

int callbuf_put_call(const struct callbuf *cb, const char *fn, const void *in, size_t in_len,
		     struct err *e)
{
	if (!callbuf_name_ok(fn))
		return err_set(e, -EINVAL, "\"%.*s\" is not a function name", SNAPVM_NAME_MAX, fn);
	if (in_len > cb->in_cap)
		return err_set(e, -E2BIG, "argument of %zu bytes is larger than the call buffer's %llu",
			       in_len, (unsigned long long)cb->in_cap);
	put_common(cb, SNAPVM_OP_CALL);
	struct snapvm_callbuf *h = HDR(cb);
	memset(h->fn, 0, SNAPVM_NAME_MAX);
	memcpy(h->fn, fn, strlen(fn));
	if (in_len)
		memcpy(cb->mem + cb->in_off, in, in_len);
	h->in_len = in_len;
	return 0;
}

int callbuf_get_result(const struct callbuf *cb, int64_t *status, const void **out,
		       size_t *out_len, struct err *e)
{
	const struct snapvm_callbuf *h = HDR(cb);
	uint64_t len = READ_ONCE(h->out_len);
	*status = READ_ONCE(h->status);
	if (len > cb->out_cap)
		return err_set(e, -EPROTO, "guest claims a result of %llu bytes, the buffer holds %llu",
			       (unsigned long long)len, (unsigned long long)cb->out_cap);
	*out = cb->mem + cb->out_off;
	*out_len = len;
	return 0;
}

int callbuf_get_msg(const struct callbuf *cb, const char **msg, size_t *len, struct err *e)
{
	const struct snapvm_callbuf *h = HDR(cb);
	uint64_t n = READ_ONCE(h->hc_len);
	if (n > SNAPVM_MSG_MAX)
		return err_set(e, -EPROTO, "guest message length %llu exceeds %d",
			       (unsigned long long)n, SNAPVM_MSG_MAX);
	*msg = h->hc_msg;
	*len = n;
	return 0;
}

void callbuf_set_ret(const struct callbuf *cb, int64_t ret)
{
	HDR(cb)->hc_ret = ret;
}

void callbuf_get_fault(const struct callbuf *cb, struct snapvm_fault *f)
{
	memcpy(f, (const void *)&HDR(cb)->fault, sizeof(*f));
}

static const char *const vector_names[32] = {
	[0] = "divide error (#DE)", [1] = "debug (#DB)", [2] = "NMI",
	[3] = "breakpoint (#BP)", [4] = "overflow (#OF)", [5] = "bound range (#BR)",
	[6] = "invalid opcode (#UD)", [7] = "device not available (#NM)",
	[8] = "double fault (#DF)", [10] = "invalid TSS (#TS)",
	[11] = "segment not present (#NP)", [12] = "stack fault (#SS)",
	[13] = "general protection (#GP)", [14] = "page fault (#PF)",
	[16] = "x87 error (#MF)", [17] = "alignment check (#AC)", [18] = "machine check (#MC)",
	[19] = "SIMD error (#XM)", [20] = "virtualization (#VE)", [21] = "control protection (#CP)",
};

void callbuf_describe_fault(const struct snapvm_fault *f, char *buf, size_t cap)
{
	const char *vname = f->vector < 32 ? vector_names[f->vector] : NULL;
	char vbuf[32];
	if (!vname) {
		snprintf(vbuf, sizeof(vbuf), "exception vector %llu", (unsigned long long)f->vector);
		vname = vbuf;
	}
	const char *access = (f->error & 2) ? "writing" : (f->error & 16) ? "executing" : "reading";
	switch (f->kind) {
	case SNAPVM_FAULT_EXCEPTION:
		if (f->vector == 14)
			snprintf(buf, cap, "%s %s address 0x%llx (error 0x%llx, %s) at RIP 0x%llx",
				 vname, access, (unsigned long long)f->addr,
				 (unsigned long long)f->error,
				 (f->error & 1) ? "protection" : "not mapped",
				 (unsigned long long)f->rip);
		else
			snprintf(buf, cap, "%s (error 0x%llx) at RIP 0x%llx", vname,
				 (unsigned long long)f->error, (unsigned long long)f->rip);
		break;
	case SNAPVM_FAULT_WRITE_RO:
		snprintf(buf, cap, "write to read-only page at address 0x%llx at RIP 0x%llx",
			 (unsigned long long)f->addr, (unsigned long long)f->rip);
		break;
	case SNAPVM_FAULT_SCRATCH:
		snprintf(buf, cap, "out of scratch memory: no page left to copy address 0x%llx "
			 "on write, at RIP 0x%llx (scratch keeps every page written since the "
			 "guest booted, in derived snapshots too: boot it with a larger --scratch)",
			 (unsigned long long)f->addr, (unsigned long long)f->rip);
		break;
	default:
		snprintf(buf, cap, "unknown fault kind %llu at RIP 0x%llx",
			 (unsigned long long)f->kind, (unsigned long long)f->rip);
	}
}
