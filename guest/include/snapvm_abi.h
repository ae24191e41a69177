/*
 * guest/include/snapvm_abi.h: the contract between a guest ELF and the host.
 *
 * Included by the freestanding guest runtime and by the host, so it uses
 * only fixed-width types and no libc.
 *
 * Exported functions: the guest places one struct snapvm_export per function
 * in the ELF section SNAPVM_EXPORT_SECTION (the SNAPVM_EXPORT macro of the
 * guest runtime does this).  The host lists functions from the section of
 * the file alone; to call one it passes the *name* and the guest's dispatcher
 * finds it in its own (relocated) table, so the host never needs to relocate
 * the fn field itself.
 */
#ifndef SNAPVM_ABI_H
#define SNAPVM_ABI_H

#include <stdint.h>

#define SNAPVM_EXPORT_SECTION ".snapvm_exports"
#define SNAPVM_NAME_MAX 48	/* including the terminating NUL */

struct snapvm_export {
	char name[SNAPVM_NAME_MAX];	/* NUL-terminated, [A-Za-z0-9_.-]+ */
	uint64_t fn;			/* guest virtual address of the function */
	uint64_t flags;			/* reserved, 0 */
};

_Static_assert(sizeof(struct snapvm_export) == 64, "export entry is 64 bytes");

/*
 * Signature of every exported function: reads in_len bytes at in, writes at
 * most out_cap bytes at out, returns the result length (>= 0) or a negative
 * error the host reports.
 */
typedef long (*snapvm_fn)(const void *in, uint64_t in_len, void *out, uint64_t out_cap);

#endif
