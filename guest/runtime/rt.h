/*
 * guest/runtime/rt.h: internals shared by the runtime's files.
 */
#ifndef SNAPVM_RT_H
#define SNAPVM_RT_H

#include "snapvm.h"

#define RT_BOOT ((struct snapvm_boot *)(uintptr_t)SNAPVM_SCRATCH_GPA)

/*
 * The call buffer, found through the boot block rather than kept in a
 * variable: the runtime writes nothing to the image's data on its own, so
 * a sandbox made from read-only regions copies no page it does not need.
 */
#define rt_cb ((struct snapvm_callbuf *)(uintptr_t)RT_BOOT->callbuf_gpa)

static inline void rt_outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

/* Hand the current fault description to the host; never returns. */
__attribute__((noreturn)) void rt_fault(uint64_t kind, uint64_t vector, uint64_t error,
					uint64_t rip, uint64_t addr);

/* Fill the IDT page named by the boot block and load it. */
void trap_init(void);

#endif
