/*
 * guest/examples/evil.c: a guest that misbehaves on request, so the host's
 * defences can be tested.  Every function except fail, ok and boot_break
 * ends the sandbox; the host must report what happened and stay usable.
 *
 *   ok            returns "ok" (a well-behaved call, for comparison)
 *   fail          returns error -7 (a function error; the sandbox lives on)
 *   spin          loops forever (stopped by the host's time limit)
 *   write_rodata  writes to a read-only page (reported by the runtime)
 *   cow_off       turns copy-on-write off for a read-only page and writes
 *                 to it: the write reaches the host's read-only memory
 *   wild_port     writes to an I/O port the host does not know
 *   port_read     reads from an I/O port
 *   no_memory     points a page of its own at a guest-physical address no
 *                 region covers (0xfec00000), and reads it
 *   bad_length    claims a result longer than the result buffer
 *   triple_fault  removes the exception table, then faults
 *   alloc_huge    asks for 1 TiB of heap, aborts when refused
 *   scratch_fill  writes one byte to every heap page (argument: MiB, default
 *                 all): with a read-only heap every page is a copy in
 *                 scratch, so scratch runs out
 *   null_write    writes through a null pointer
 *   divide_zero   divides by zero
 *   stack_overflow  recurses until the stack is gone
 *   halt          executes hlt
 *   abort         calls snapvm_abort
 *   boot_break    writes the boot block, which the host reads back when it
 *                 saves the sandbox and when it resumes one, and returns
 *                 "ok": argument "callbuf" moves the call buffer past the
 *                 end of scratch, "magic" clears the magic number
 */
#include "snapvm.h"

#define UNUSED_ARGS (void)in, (void)in_len, (void)out, (void)out_cap

static const uint64_t rodata_word = 0x5eed;
static uint64_t data_word = 1;
static volatile int forever = 1;
static volatile long depth_limit = 1l << 40;

static long ok(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	memcpy(out, "ok", 2);
	return 2;
}
SNAPVM_EXPORT(ok);

static long fail(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	return -7;
}
SNAPVM_EXPORT(fail);

static long spin(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	while (forever)
		;
	return 0;
}
SNAPVM_EXPORT(spin);

static long write_rodata(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	*(volatile uint64_t *)&rodata_word = 1;
	return 0;
}
SNAPVM_EXPORT(write_rodata);

static long cow_off(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	snapvm_cow_bypass(&rodata_word);
	*(volatile uint64_t *)&rodata_word = 2;
	return 0;
}
SNAPVM_EXPORT(cow_off);

static long cow_off_data(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	snapvm_cow_bypass(&data_word);
	*(volatile uint64_t *)&data_word = 3;
	return (long)snapvm_snprintf(out, out_cap, "%lu", (unsigned long)data_word);
}
SNAPVM_EXPORT(cow_off_data);

static long wild_port(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	__asm__ volatile("outb %%al, %%dx" : : "a"(0x42), "d"(0x1234));
	return 0;
}
SNAPVM_EXPORT(wild_port);

static long port_read(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	uint8_t v;
	__asm__ volatile("inb %%dx, %%al" : "=a"(v) : "d"(0x1234));
	return v;
}
SNAPVM_EXPORT(port_read);

static long no_memory(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	uint64_t *pte = snapvm_pte(&data_word);
	if (!pte)
		snapvm_abort("no_memory: data_word is not mapped");
	*pte = (*pte & ~SNAPVM_PTE_ADDR) | 0xfec00000;
	__asm__ volatile("invlpg (%0)" : : "r"(&data_word) : "memory");
	return (long)*(volatile uint64_t *)&data_word;
}
SNAPVM_EXPORT(no_memory);

static long bad_length(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	return (long)out_cap + 4096;
}
SNAPVM_EXPORT(bad_length);

static long triple_fault(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = { 0, 0 };
	__asm__ volatile("lidt %0; ud2" : : "m"(idtr));
	return 0;
}
SNAPVM_EXPORT(triple_fault);

static long alloc_huge(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	size_t want = (size_t)1 << 40;
	void *p = snapvm_alloc(want, 0);
	if (!p)
		snapvm_abort("alloc_huge: cannot allocate %lu bytes, heap has %lu free",
			     (unsigned long)want, (unsigned long)snapvm_heap_free());
	return 0;
}
SNAPVM_EXPORT(alloc_huge);

static long scratch_fill(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	const char *p = in;
	size_t bytes = in_len ? (size_t)snapvm_strtol(p, p + in_len, NULL) << 20 : snapvm_heap_free();
	if (bytes > snapvm_heap_free())
		bytes = snapvm_heap_free();
	volatile uint8_t *m = snapvm_alloc(bytes, 4096);
	if (!m)
		return -12;
	size_t pages = 0;
	for (size_t off = 0; off < bytes; off += 4096, pages++)
		m[off] = 1;
	return (long)snapvm_snprintf(out, out_cap, "%lu", (unsigned long)pages);
}
SNAPVM_EXPORT(scratch_fill);

static long null_write(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	*(volatile int *)(uintptr_t)in_len = 1;	/* in_len is 0 when called with no argument */
	return 0;
}
SNAPVM_EXPORT(null_write);

static long divide_zero(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	volatile uint64_t zero = in_len;
	return (long)(100 / zero);
}
SNAPVM_EXPORT(divide_zero);

static long recurse(volatile long depth)
{
	volatile char pad[512];
	pad[0] = (char)depth;
	if (depth > depth_limit)
		return 0;
	return recurse(depth + 1) + pad[0];
}

static long stack_overflow(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	return recurse(0);
}
SNAPVM_EXPORT(stack_overflow);

static long halt(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	__asm__ volatile("hlt");
	return 0;
}
SNAPVM_EXPORT(halt);

static long abort_(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	UNUSED_ARGS;
	snapvm_abort("evil: asked to abort (%lu bytes of argument)", (unsigned long)in_len);
}

/* exported under the name "abort" */
static struct snapvm_export snapvm_export_abort
	__attribute__((used, section(SNAPVM_EXPORT_SECTION), aligned(8))) = {
		.name = "abort", .fn = (uint64_t)(uintptr_t)abort_, .flags = 0 };

static long boot_break(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	volatile struct snapvm_boot *b = (struct snapvm_boot *)(uintptr_t)SNAPVM_SCRATCH_GPA;
	if (in_len == 7 && !memcmp(in, "callbuf", 7))
		b->callbuf_gpa = b->scratch_gpa + b->scratch_size + SNAPVM_PAGE_SIZE;
	else if (in_len == 5 && !memcmp(in, "magic", 5))
		b->magic = 0;
	else
		return -22;
	return (long)snapvm_snprintf(out, out_cap, "ok");
}
SNAPVM_EXPORT(boot_break);
