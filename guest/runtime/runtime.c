/*
 * guest/runtime/runtime.c: entry, dispatch, host calls and the heap.
 *
 * rt_entry() runs for every entry from the host.  SNAPVM_OP_BOOT sets up
 * the exception table; SNAPVM_OP_CALL looks the function up by name in the
 * guest's own (relocated) export table and runs it on the argument bytes in
 * the call buffer.  Either way the result is written back to the call
 * buffer and the host is told through SNAPVM_PORT_DONE.
 *
 * The dispatcher does not check what a function returns against out_cap:
 * the host is the trust boundary and checks every length it reads back.
 */
#include "rt.h"

/* from the linker script */
extern struct snapvm_export __snapvm_exports_start[], __snapvm_exports_end[];

/* heap state: lives in the image's data, so it persists with the heap */
static uint64_t heap_next;

static void hostcall(uint16_t port)
{
	rt_outb(port, 0);
}

void snapvm_print(const char *s, size_t n)
{
	while (n > 0) {
		size_t k = n < SNAPVM_MSG_MAX ? n : SNAPVM_MSG_MAX;
		memcpy(rt_cb->hc_msg, s, k);
		rt_cb->hc_len = k;
		hostcall(SNAPVM_PORT_PRINT);
		s += k;
		n -= k;
	}
}

void snapvm_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	size_t n = snapvm_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snapvm_print(buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
}

void snapvm_abort(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t n = snapvm_vsnprintf(rt_cb->hc_msg, SNAPVM_MSG_MAX, fmt, ap);
	va_end(ap);
	rt_cb->hc_len = n < SNAPVM_MSG_MAX ? n : SNAPVM_MSG_MAX - 1;
	for (;;)
		hostcall(SNAPVM_PORT_ABORT);
}

void rt_fault(uint64_t kind, uint64_t vector, uint64_t error, uint64_t rip, uint64_t addr)
{
	rt_cb->fault = (struct snapvm_fault){ kind, vector, error, rip, addr };
	for (;;)
		hostcall(SNAPVM_PORT_FAULT);
}

uint64_t snapvm_time_ns(void)
{
	hostcall(SNAPVM_PORT_TIME);
	return (uint64_t)rt_cb->hc_ret;
}

void *snapvm_alloc(size_t size, size_t align)
{
	const struct snapvm_boot *b = RT_BOOT;
	if (align == 0)
		align = 16;
	if (align & (align - 1))
		return NULL;
	if (heap_next < b->heap_gpa)
		heap_next = b->heap_gpa;
	uint64_t end = b->heap_gpa + b->heap_size;
	uint64_t p = (heap_next + align - 1) & ~(uint64_t)(align - 1);
	if (p < heap_next || p > end || size > end - p)
		return NULL;
	heap_next = p + size;
	return (void *)(uintptr_t)p;
}

size_t snapvm_heap_free(void)
{
	const struct snapvm_boot *b = RT_BOOT;
	uint64_t next = heap_next < b->heap_gpa ? b->heap_gpa : heap_next;
	return b->heap_gpa + b->heap_size - next;
}

static const struct snapvm_export *find_export(const char *name)
{
	for (const struct snapvm_export *x = __snapvm_exports_start; x < __snapvm_exports_end; x++)
		if (strcmp(x->name, name) == 0)
			return x;
	return NULL;
}

__attribute__((noreturn)) void rt_entry(struct snapvm_callbuf *cb)
{
	cb->out_len = 0;
	if (cb->op == SNAPVM_OP_BOOT) {
		trap_init();
		RT_BOOT->exports_gva = (uint64_t)(uintptr_t)__snapvm_exports_start;
		RT_BOOT->exports_count = (uint64_t)(__snapvm_exports_end - __snapvm_exports_start);
		cb->status = 0;
	} else if (cb->op == SNAPVM_OP_CALL) {
		cb->fn[SNAPVM_NAME_MAX - 1] = 0;
		const struct snapvm_export *x = find_export(cb->fn);
		if (!x) {
			cb->status = SNAPVM_STATUS_NOFUNC;
		} else {
			uint8_t *base = (uint8_t *)cb;
			long r = ((snapvm_fn)(uintptr_t)x->fn)(base + cb->in_off, cb->in_len,
							       base + cb->out_off, cb->out_cap);
			if (r < 0) {
				cb->status = r;
			} else {
				cb->status = 0;
				cb->out_len = (uint64_t)r;
			}
		}
	} else {
		cb->status = SNAPVM_STATUS_BADOP;
	}
	for (;;)
		hostcall(SNAPVM_PORT_DONE);
}
