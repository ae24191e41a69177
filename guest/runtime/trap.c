/*
 * guest/runtime/trap.c: exceptions and copy-on-write.
 *
 * Every CPU exception lands in trap_handle().  A write to a page that the
 * page tables mark SNAPVM_PTE_COW (a region page shared read-only with
 * other sandboxes or a snapshot) is served here: the page is copied into a
 * free scratch page and the entry repointed there, writable.  Anything else
 * is reported to the host, which ends the sandbox and says what happened,
 * instead of letting the CPU triple-fault.
 *
 * The double-fault vector runs on its own stack (IST1, set up by the host
 * in the TSS) so a stack overflow is still reported.
 */
#include "rt.h"

struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rdi, rsi, rbp, rbx, rdx, rcx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

struct idt_gate {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
};

extern const uint64_t trap_stubs[32];

#define PF_PRESENT 1u
#define PF_WRITE 2u
#define GDT_CODE 0x08

static inline uint64_t read_cr2(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}

static inline uint64_t read_cr3(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr3, %0" : "=r"(v));
	return v;
}

void trap_init(void)
{
	struct idt_gate *idt = (struct idt_gate *)(uintptr_t)RT_BOOT->idt_gpa;
	for (int v = 0; v < 32; v++) {
		uint64_t a = trap_stubs[v];
		idt[v] = (struct idt_gate){
			.off0 = (uint16_t)a, .sel = GDT_CODE,
			.ist = v == 8 ? 1 : 0, .type = 0x8e,	/* present, interrupt gate */
			.off1 = (uint16_t)(a >> 16), .off2 = (uint32_t)(a >> 32),
		};
	}
	struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = {
		32 * sizeof(struct idt_gate) - 1, (uint64_t)(uintptr_t)idt,
	};
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

/*
 * The leaf entry that maps va, or NULL.  Page tables live in scratch,
 * identity-mapped, so physical addresses can be dereferenced directly.
 */
uint64_t *snapvm_pte(const void *addr)
{
	uint64_t va = (uint64_t)(uintptr_t)addr;
	uint64_t *table = (uint64_t *)(uintptr_t)(read_cr3() & SNAPVM_PTE_ADDR);
	for (int shift = 39; shift > 12; shift -= 9) {
		uint64_t ent = table[(va >> shift) & 511];
		if (!(ent & SNAPVM_PTE_P) || (ent & SNAPVM_PTE_PS))
			return NULL;
		table = (uint64_t *)(uintptr_t)(ent & SNAPVM_PTE_ADDR);
	}
	return &table[(va >> 12) & 511];
}

static inline void invlpg(uint64_t va)
{
	__asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

void snapvm_cow_bypass(const void *addr)
{
	uint64_t va = (uint64_t)(uintptr_t)addr;
	uint64_t *pte = snapvm_pte(addr);
	if (!pte)
		snapvm_abort("cow_bypass: %p is not mapped", addr);
	*pte = (*pte | SNAPVM_PTE_RW) & ~SNAPVM_PTE_COW;
	invlpg(va);
}

/* Copy the page behind a CoW entry into scratch; 0 if done. */
static int cow_copy(uint64_t va, uint64_t *pte)
{
	struct snapvm_boot *b = RT_BOOT;
	uint64_t page = b->free_next;
	if (page + SNAPVM_PAGE_SIZE > b->free_end || page < b->scratch_gpa)
		return -1;
	b->free_next = page + SNAPVM_PAGE_SIZE;
	b->cow_pages++;
	uint64_t src = va & ~(SNAPVM_PAGE_SIZE - 1);
	memcpy((void *)(uintptr_t)page, (const void *)(uintptr_t)src, SNAPVM_PAGE_SIZE);
	uint64_t flags = *pte & ~SNAPVM_PTE_ADDR & ~SNAPVM_PTE_COW;
	*pte = page | flags | SNAPVM_PTE_RW | SNAPVM_PTE_D;
	invlpg(src);
	return 0;
}

void trap_handle(struct trap_frame *f)
{
	if (f->vector == 14) {
		uint64_t addr = read_cr2();
		if ((f->error & (PF_PRESENT | PF_WRITE)) == (PF_PRESENT | PF_WRITE)) {
			uint64_t *pte = snapvm_pte((const void *)(uintptr_t)addr);
			if (pte && (*pte & SNAPVM_PTE_COW)) {
				if (cow_copy(addr, pte) == 0)
					return;
				rt_fault(SNAPVM_FAULT_SCRATCH, 14, f->error, f->rip, addr);
			}
			rt_fault(SNAPVM_FAULT_WRITE_RO, 14, f->error, f->rip, addr);
		}
		rt_fault(SNAPVM_FAULT_EXCEPTION, 14, f->error, f->rip, addr);
	}
	rt_fault(SNAPVM_FAULT_EXCEPTION, f->vector, f->error, f->rip, 0);
}
