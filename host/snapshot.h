/*
 * host/snapshot.h: snapshots — a sandbox's state as a directory of files,
 * and sandboxes started from such a directory.
 *
 * A snapshot directory (doc/snapshot-format.md) holds:
 *   manifest      what the directory holds (host/manifest.h)
 *   cpu           the vCPU state (host/cpustate.h)
 *   NAME.mem      one file per guest memory region (text, rodata, data,
 *                 heap...): its exact bytes, all-zero pages left as holes
 *   scratch.img   the used part of the sandbox's scratch region: page
 *                 tables (every region page mapped read-only, writable ones
 *                 copy on write), stack, call buffer and the pages the guest
 *                 copied on write
 *
 * Opening a snapshot maps each region file PROT_READ MAP_SHARED (once per
 * process, host/snapmap.h) and makes a struct guest whose regions are those
 * mappings: every sandbox made from it uses them as KVM_MEM_READONLY slots
 * and gets a private copy of the scratch image only.  No region memory is
 * copied, so N sandboxes share one copy of the snapshot in the page cache.
 *
 *	struct snapshot *s;  struct sandbox *sb;
 *	snapshot_open("/mnt/snaps/warm", &s, &e);
 *	sandbox_new(snapshot_guest(s), NULL, &sb, &e);
 *	sandbox_call(sb, "query", "7", 1, out, sizeof(out), &n, &e);
 *	sandbox_free(sb);  snapshot_close(s);
 *
 * Writing: snapshot_take() saves a sandbox.  A sandbox made from snapshot P
 * (pass P as origin) is written as clones of P's region files
 * (copy_file_range: in a snapfs mount only page references are copied)
 * plus a new scratch image and cpu file, so the bytes written grow with
 * what the guest changed, not with its memory size.  The directory appears
 * under its name only when complete (written under a temporary name beside
 * it, synced, renamed), then it is sealed (xattr user.snapfs.sealed) where
 * the filesystem supports that.
 *
 * Threads: a struct snapshot may be used by several threads to make
 * sandboxes at once (it is read-only after snapshot_open()); closing it
 * must wait until every sandbox made from it is freed.
 */
#ifndef SNAPVM_SNAPSHOT_H
#define SNAPVM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "cpustate.h"
#include "err.h"
#include "guest.h"
#include "manifest.h"
#include "sandbox.h"

#define SNAPSHOT_SEAL_XATTR "user.snapfs.sealed"
#define SNAPSHOT_SCRATCH_FILE "scratch.img"
#define SNAPSHOT_MANIFEST "manifest"
#define SNAPSHOT_CPU "cpu"

struct snapshot;

/*
 * Open the snapshot directory dir: parse manifest and cpu, check the
 * regions fit a guest (names, addresses, one scratch region), open each
 * region file O_RDONLY and check its size against the manifest, map it
 * (or reuse this process's mapping), read the scratch image and check its
 * digest.  Region files are not read here: their digests are checked by
 * snapshot_verify().  Returns 0 or -errno with e naming the file and the
 * problem ("DIR/heap.mem: 4096 bytes, the manifest says 67108864").
 */
int snapshot_open(const char *dir, struct snapshot **out, struct err *e);

/* Close it (unmaps files no other snapshot uses).  NULL is fine. */
void snapshot_close(struct snapshot *s);

/* The guest to make sandboxes from; owned by s. */
struct guest *snapshot_guest(const struct snapshot *s);

/* The parsed manifest and cpu state; owned by s. */
const struct manifest *snapshot_manifest(const struct snapshot *s);
const struct cpustate *snapshot_cpu(const struct snapshot *s);

/* The directory as given to snapshot_open(). */
const char *snapshot_dir(const struct snapshot *s);

/* The open file of the mapped region whose file is named file, or -1. */
int snapshot_region_fd(const struct snapshot *s, const char *file);

#define SNAPSHOT_EXPORTS_MAX 4096

/*
 * The names of the functions the snapshot's guest exports, read from its
 * files alone (no KVM): the guest runtime records at boot where its export
 * table is (struct snapvm_boot, in the scratch image), and the table is
 * read through the saved page tables — from the region file, or from the
 * scratch image where the guest had written to that page.  Everything is
 * checked as untrusted.  *names is malloc'd, *n entries of NUL-terminated
 * names in table order; the caller frees it.  Returns 0; -ENOENT if the
 * snapshot does not record the table (its guest never booted with a
 * runtime that records it); -EINVAL if the record, the table or a name is
 * not valid; or the -errno of reading a region file.
 */
int snapshot_exports(const struct snapshot *s, char (**names)[SNAPVM_NAME_MAX], size_t *n,
		     struct err *e);

/*
 * Bring *sb back to the state of snapshot s for reuse.  A sandbox made
 * from s (ended or not) is reset in place with sandbox_reset(): same VM,
 * scratch and vCPU state set again, opt ignored.  Otherwise (NULL, made
 * from something else, or the reset failed) *sb is freed and a new
 * sandbox made from s's mappings with opt.  On failure *sb is NULL.
 * Returns 0 or -errno as sandbox_new().
 */
int snapshot_reset(const struct snapshot *s, const struct sandbox_options *opt,
		   struct sandbox **sb, struct err *e);

/* ---- writing --------------------------------------------------------------- */

struct snapshot_stats {
	uint64_t bytes_written;		/* file bytes written with write() */
	uint64_t bytes_cloned;		/* bytes given to copy_file_range */
	uint64_t bytes_zero;		/* all-zero pages left as holes */
	uint64_t bytes_logical;		/* sum of the files' sizes */
	int sealed;			/* 1 if user.snapfs.sealed was set */
	int seal_errno;			/* why not (ENOTSUP on plain disks), else 0 */
};

/*
 * Everything a snapshot directory holds, for snapshot_write().  For region
 * i, either mem[i] gives its len[i] bytes (len[i] == m.regions[i].size,
 * or for the scratch region at most that), and the digest in m is
 * computed here; or mem[i] is NULL and the file m.regions[i].file of
 * directory clone_dir is cloned, and m.regions[i].digest is taken as given
 * (it comes from that directory's manifest).  With clone_from, the files
 * are cloned from that open snapshot's own descriptors instead (clone_dir
 * names it in messages): the bytes its manifest and mappings describe,
 * even if its directory has been replaced or deleted since it was opened.
 */
struct snapshot_parts {
	struct manifest m;
	const void *mem[MANIFEST_REGIONS_MAX];
	size_t len[MANIFEST_REGIONS_MAX];
	const char *clone_dir;
	const struct snapshot *clone_from;
	struct cpustate cpu;
};

/*
 * Write parts p as the snapshot directory dir, which must not exist: all
 * files under a temporary name beside dir, every file and the directory
 * fsync'ed, renamed to dir, then sealed.  Zero pages of written files are
 * skipped (holes).  st (may be NULL) gets the figures.  On failure nothing
 * is left under dir's name or the temporary one.  Returns 0 or -errno
 * (-EEXIST if dir exists).
 */
int snapshot_write(const char *dir, const struct snapshot_parts *p, struct snapshot_stats *st,
		   struct err *e);

/*
 * Would snapshot_take() be able to write dir (a usable name of at most
 * NAME_MAX bytes, not there yet) and record parent (may be NULL) in its
 * manifest?  For callers to ask before running anything.  0 or -errno.
 */
int snapshot_check_target(const char *dir, const struct snapshot *parent, struct err *e);

/* Where the sandbox given to snapshot_take() came from. */
struct snapshot_origin {
	const char *elf_path;		/* cold boot: the guest ELF (hashed for identity) */
	const struct snapshot *parent;	/* or: the snapshot it was made from */
};

/*
 * Save sandbox sb (between calls) as snapshot dir.  With o->parent, sb
 * must have been made from snapshot_guest(o->parent): its region files are
 * cloned and the manifest's parent line names it.  Returns 0 or -errno
 * (-ESHUTDOWN for an ended sandbox, -EINVAL for a sandbox that was not
 * made from o->parent).
 */
int snapshot_take(struct sandbox *sb, const struct snapshot_origin *o, const char *dir,
		  struct snapshot_stats *st, struct err *e);

/*
 * Check the snapshot dir completely: manifest and cpu parse, every region
 * file has its size and its digest.  report (may be NULL) is called once
 * per file checked, with code 0 or -errno and a message.  Returns 0 if
 * everything is right, else the first failure's code with e saying how
 * many files failed.
 */
typedef void snapshot_report_fn(void *ctx, const char *file, int code, const char *msg);
int snapshot_verify(const char *dir, snapshot_report_fn *report, void *ctx, struct err *e);

#endif
