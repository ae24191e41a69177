/*
 * fsd/admin.c: snapfs-admin, the store maintenance commands.
 *
 *	snapfs-admin fsck STORE           check every page and reference
 *	snapfs-admin gc STORE             reclaim unreferenced pages and pack space
 *	snapfs-admin stats [--json] STORE figures: logical and stored bytes, dedup
 *
 * fsck and stats open the store read-only, which takes no lock, so they
 * run safely beside a mounted snapfs (they see its last committed state).
 * gc rewrites pack files, which only the process holding the store may
 * do: on a store snapfs serves, gc asks the daemon to run it, by setting
 * user.snapfs.gc on the root of its mount, and reads the figures back
 * from there.  On a terminal, long runs show their progress on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "lib/err.h"
#include "lib/file.h"
#include "lib/mountinfo.h"
#include "store.h"

struct admin_progress {
	bool tty;
	bool shown;
	struct timespec last;
};

static double admin_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void admin_progress_cb(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	struct admin_progress *p = arg;
	if (!p->tty || (admin_since(&p->last) < 0.2 && done != total))
		return;
	clock_gettime(CLOCK_MONOTONIC, &p->last);
	if (total)
		fprintf(stderr, "\r\033[K%s: %" PRIu64 "/%" PRIu64 " (%.0f%%)", phase, done, total,
			100.0 * (double)done / (double)total);
	else
		fprintf(stderr, "\r\033[K%s: %" PRIu64, phase, done);
	p->shown = true;
}

static void admin_progress_end(struct admin_progress *p)
{
	if (p->shown)
		fprintf(stderr, "\r\033[K");
	p->shown = false;
}

struct admin_fsck {
	struct admin_progress progress;
	const char *store;
};

static void admin_fsck_report(void *arg, const struct store_fsck_problem *pb)
{
	struct admin_fsck *f = arg;
	admin_progress_end(&f->progress);
	/* "STORE: /f page 3 (page 1a2b...): what", or "STORE: what" when
	 * no file or page is named (damage to index.db itself). */
	bool named = pb->path || pb->ino || pb->page >= 0 || pb->hash;
	printf("%s:", f->store);
	if (pb->path)
		printf(" %s", pb->path);
	else if (pb->ino)
		printf(" inode %" PRIu64, pb->ino);
	if (pb->page >= 0)
		printf(" page %" PRId64, pb->page);
	if (pb->hash) {
		printf(" (page ");
		for (int i = 0; i < 8; i++)
			printf("%02x", pb->hash[i]);
		printf("...)");
	}
	printf("%s %s\n", named ? ":" : "", pb->what);
	fflush(stdout);
}

/* What the store reports while opening: a migration of an older store. */
static void admin_store_log(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "snapfs-admin: %s\n", msg);
}

static int admin_open(const char *dir, unsigned flags, struct store **st)
{
	struct err e = { 0 };
	/* Every pack stays open, one per GiB stored or so: more than the
	 * usual soft limit of 1024 files on a large store. */
	int r = file_raise_open_limit();
	if (r < 0)
		fprintf(stderr, "snapfs-admin: cannot raise the limit on open files: %s (continuing)\n",
			strerror(-r));
	r = store_open_log(dir, flags, admin_store_log, NULL, st, &e);
	if (r == -EBUSY && !(flags & (STORE_RDONLY | STORE_LOCK_WAIT)))
		return r;	/* gc, the only writer, looks for the mount first */
	if (r == -EBUSY)
		fprintf(stderr, "snapfs-admin: %s; it is not mounted here: stop it first\n",
			err_str(&e, r));
	else if (r < 0)
		fprintf(stderr, "snapfs-admin: %s\n", err_str(&e, r));
	return r;
}

/* Where snapfs has the store dir mounted, in *ent: 0 or -errno. */
static int admin_find_mount(const char *dir, struct mountinfo_ent *ent)
{
	char abs[PATH_MAX];
	if (!realpath(dir, abs))
		return -errno;
	return mountinfo_find(mountinfo_fuse_of, abs, ent);
}

/* fsck, read-only beside a mount; with repair, of a store nothing else
 * has open, which it opens for writing. */
static int admin_fsck(const char *dir, bool repair)
{
	struct mountinfo_ent ent;
	if (repair && admin_find_mount(dir, &ent) > 0) {
		fprintf(stderr, "snapfs-admin: fsck --repair %s: the store is mounted at %s;"
				" unmount it first\n", dir, ent.mnt);
		return 2;
	}
	struct store *st;
	/* A daemon just unmounted may still be closing: waited for. */
	if (admin_open(dir, repair ? STORE_LOCK_WAIT : STORE_RDONLY, &st) < 0)
		return 2;
	struct admin_fsck f = { .progress.tty = isatty(STDERR_FILENO), .store = dir };
	clock_gettime(CLOCK_MONOTONIC, &f.progress.last);
	struct store_fsck_result res = { 0 };
	struct err e = { 0 };
	int r = (repair ? store_fsck_repair : store_fsck)(st, admin_fsck_report, admin_progress_cb,
							  &f, &res, &e);
	admin_progress_end(&f.progress);
	struct err ce = { 0 };
	int rc = store_close(st, &ce);
	if (r < 0) {
		fprintf(stderr, "snapfs-admin: fsck %s: %s\n", dir, err_str(&e, r));
		if (r == -EUCLEAN)
			fprintf(stderr, "snapfs-admin: 'snapfs-admin salvage %s' makes a new index.db"
					" of what can still be read\n", dir);
		return 2;
	}
	if (rc < 0) {
		fprintf(stderr, "snapfs-admin: closing %s: %s\n", dir, err_str(&ce, rc));
		return 2;
	}
	printf("%s: %" PRIu64 " file%s with stored pages, %" PRIu64 " page%s checked, %" PRIu64
	       " problem%s\n",
	       dir, res.files_checked, res.files_checked == 1 ? "" : "s", res.pages_checked,
	       res.pages_checked == 1 ? "" : "s", res.problems, res.problems == 1 ? "" : "s");
	if (res.refs_repaired)
		printf("%s: repaired: the reference counts of %" PRIu64 " page%s (gc frees those"
		       " no file uses)\n",
		       dir, res.refs_repaired, res.refs_repaired == 1 ? "" : "s");
	if (res.refs_left)
		printf("%s: reference counts not repaired: index.db or a page map is damaged, so"
		       " the references cannot be counted\n",
		       dir);
	if (res.pages_reindexed)
		printf("%s: repaired: indexed %" PRIu64 " intact page%s again whose index row%s"
		       " lost\n",
		       dir, res.pages_reindexed, res.pages_reindexed == 1 ? "" : "s",
		       res.pages_reindexed == 1 ? " was" : "s were");
	if (res.hashes_repaired)
		printf("%s: repaired: set back the damaged hash%s of %" PRIu64 " index row%s, which"
		       " the page%s bytes proved\n",
		       dir, res.hashes_repaired == 1 ? "" : "es", res.hashes_repaired,
		       res.hashes_repaired == 1 ? "" : "s", res.hashes_repaired == 1 ? "'s" : "s'");
	if (res.rows_rebuilt)
		printf("%s: repaired: rebuilt %" PRIu64 " page-map row%s to match %s checksum%s\n",
		       dir, res.rows_rebuilt, res.rows_rebuilt == 1 ? "" : "s",
		       res.rows_rebuilt == 1 ? "its" : "their", res.rows_rebuilt == 1 ? "" : "s");
	if (res.files_rebuilt)
		printf("%s: repaired: made %" PRIu64 " file%s again from page maps whose inode"
		       " was missing\n",
		       dir, res.files_rebuilt, res.files_rebuilt == 1 ? "" : "s");
	if (res.maps_moved)
		printf("%s: repaired: moved the page map%s of %" PRIu64 " inode%s that %s not a"
		       " file to a new file in lost+found\n",
		       dir, res.maps_moved == 1 ? "" : "s", res.maps_moved,
		       res.maps_moved == 1 ? "" : "s", res.maps_moved == 1 ? "is" : "are");
	if (res.pages_repaired)
		printf("%s: repaired: the recorded page counts of %" PRIu64 " file%s\n", dir,
		       res.pages_repaired, res.pages_repaired == 1 ? "" : "s");
	if (res.symlinks_removed)
		printf("%s: repaired: removed %" PRIu64 " symlink%s whose target was lost, and"
		       " %s names\n", dir, res.symlinks_removed, res.symlinks_removed == 1 ? "" : "s",
		       res.symlinks_removed == 1 ? "its" : "their");
	if (res.names_removed)
		printf("%s: repaired: removed %" PRIu64 " entr%s naming missing inodes\n", dir,
		       res.names_removed, res.names_removed == 1 ? "y" : "ies");
	if (res.lost_found)
		printf("%s: repaired: put %" PRIu64 " file%s or folder%s no path reached in"
		       " /lost+found, named #INODE\n",
		       dir, res.lost_found, res.lost_found == 1 ? "" : "s",
		       res.lost_found == 1 ? "" : "s");
	if (res.links_repaired)
		printf("%s: repaired: the link counts of %" PRIu64 " inode%s\n", dir,
		       res.links_repaired, res.links_repaired == 1 ? "" : "s");
	if (res.parents_repaired)
		printf("%s: repaired: the recorded parents of %" PRIu64 " director%s\n", dir,
		       res.parents_repaired, res.parents_repaired == 1 ? "y" : "ies");
	return res.problems ? 1 : 0;
}

/* A new index of what can be read of a damaged one, then fsck --repair
 * of the store with it. */
static int admin_salvage(const char *dir)
{
	struct mountinfo_ent ent;
	if (admin_find_mount(dir, &ent) > 0) {
		fprintf(stderr, "snapfs-admin: salvage %s: the store is mounted at %s;"
				" unmount it first\n", dir, ent.mnt);
		return 2;
	}
	struct admin_progress p = { .tty = isatty(STDERR_FILENO) };
	clock_gettime(CLOCK_MONOTONIC, &p.last);
	struct store_salvage_result res;
	struct err e = { 0 };
	int r = store_salvage(dir, admin_progress_cb, &p, &res, &e);
	admin_progress_end(&p);
	if (r < 0) {
		fprintf(stderr, "snapfs-admin: %s\n", err_str(&e, r));
		return 2;
	}
	for (unsigned i = 0; i < STORE_SALVAGE_TABLES; i++) {
		const struct store_salvage_table *t = &res.tables[i];
		printf("%s: salvaged %s: %" PRIu64 " row%s", dir, t->name, t->rows,
		       t->rows == 1 ? "" : "s");
		if (t->damaged)
			printf(", %" PRIu64 " damaged stretch%s skipped", t->damaged,
			       t->damaged == 1 ? "" : "es");
		printf("\n");
	}
	printf("%s: the damaged index is kept as %s/%s; repairing what the lost rows left:\n",
	       dir, dir, res.kept);
	fflush(stdout);
	return admin_fsck(dir, true);
}

static void admin_gc_print(const char *dir, const struct store_gc_result *res)
{
	printf("%s: %" PRIu64 " pages freed, packs %" PRIu64 " -> %" PRIu64 " bytes\n", dir,
	       res->pages_freed, res->bytes_before, res->bytes_after);
}

/* gc of a store a snapfs daemon holds: run by the daemon, asked through
 * its mount at ent->mnt. */
static int admin_gc_mounted(const char *dir, struct mountinfo_ent *ent)
{
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "gc through the mount at %s (this waits until gc is done)\n",
			ent->mnt);
	char val[96];
	ssize_t n = -1;
	struct store_gc_result res = { 0 };
	if (setxattr(ent->mnt, "user.snapfs.gc", "1", 1, 0) == 0)
		n = getxattr(ent->mnt, "user.snapfs.gc", val, sizeof(val) - 1);
	if (n < 0) {
		fprintf(stderr, "snapfs-admin: gc %s through the mount at %s: %s%s\n", dir, ent->mnt,
			strerror(errno),
			errno == EBUSY ? " (an fsck is running?)"
				       : " (the daemon's log says why: syslog, or its standard error"
					 " with -f)");
		return 2;
	}
	val[n] = 0;
	if (sscanf(val, "%" SCNu64 " %" SCNu64 " %" SCNu64, &res.pages_freed, &res.bytes_before,
		   &res.bytes_after) != 3) {
		fprintf(stderr, "snapfs-admin: gc %s: the mount answered '%s'\n", dir, val);
		return 2;
	}
	admin_gc_print(dir, &res);
	return 0;
}

static int admin_gc(const char *dir)
{
	struct store *st;
	int r = admin_open(dir, 0, &st);
	if (r == -EBUSY) {
		/* Mounted: the daemon runs it.  Not (or no longer) mounted:
		 * perhaps a daemon still closing, which is waited for. */
		struct mountinfo_ent *ent = malloc(sizeof(*ent));
		int m = ent ? admin_find_mount(dir, ent) : -ENOMEM;
		if (m > 0)
			r = admin_gc_mounted(dir, ent);
		free(ent);
		if (m > 0)
			return r;
		if (m < 0) {
			fprintf(stderr, "snapfs-admin: gc %s: the store is busy, and the mount table "
				"(/proc/self/mountinfo) cannot be read: %s\n", dir, strerror(-m));
			return 2;
		}
		r = admin_open(dir, STORE_LOCK_WAIT, &st);
	}
	if (r < 0)
		return 2;
	struct admin_progress p = { .tty = isatty(STDERR_FILENO) };
	clock_gettime(CLOCK_MONOTONIC, &p.last);
	struct store_gc_result res = { 0 };
	struct err e = { 0 };
	r = store_gc(st, admin_progress_cb, &p, &res, &e);
	admin_progress_end(&p);
	struct err ce = { 0 };
	int rc = store_close(st, &ce);
	if (r < 0) {
		fprintf(stderr, "snapfs-admin: gc %s: %s\n", dir, err_str(&e, r));
		return 2;
	}
	if (rc < 0) {
		fprintf(stderr, "snapfs-admin: closing %s: %s\n", dir, err_str(&ce, rc));
		return 2;
	}
	admin_gc_print(dir, &res);
	return 0;
}

/* How many bytes of s (1-4) form one UTF-8 character, or 0 if its first
 * byte starts none: a stray continuation byte, an overlong form, a
 * surrogate or past U+10FFFF, or cut short. */
static unsigned utf8_len(const unsigned char *s)
{
	unsigned n;
	if (s[0] < 0x80)
		n = 1;
	else if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	for (unsigned i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

/* s as a JSON string.  JSON is UTF-8; a path need not be: a byte that is
 * not part of a UTF-8 character comes out as U+FFFD. */
static void admin_json_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		unsigned n = utf8_len(p);
		if (n == 0)
			fputs("\\ufffd", stdout);
		else if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			fwrite(p, 1, n, stdout);
		p += n ? n : 1;
	}
	putchar('"');
}

static int admin_stats(const char *dir, bool json)
{
	struct store *st;
	if (admin_open(dir, STORE_RDONLY, &st) < 0)
		return 2;
	struct store_stats s;
	struct err e = { 0 };
	int r = store_stats(st, &s, &e);
	store_close(st, NULL);
	if (r < 0) {
		fprintf(stderr, "snapfs-admin: stats %s: %s\n", dir, err_str(&e, r));
		return 2;
	}
	if (json) {
		printf("{\"store\": ");
		admin_json_string(dir);
		printf(", \"files\": %" PRIu64 ", \"dirs\": %" PRIu64 ", \"inodes\": %" PRIu64
		       ", \"logical_bytes\": %" PRIu64 ", \"logical_pages\": %" PRIu64
		       ", \"zero_pages\": %" PRIu64 ", \"referenced_pages\": %" PRIu64
		       ", \"unique_pages\": %" PRIu64 ", \"unreferenced_pages\": %" PRIu64
		       ", \"stored_bytes\": %" PRIu64 ", \"pack_bytes\": %" PRIu64
		       ", \"packs\": %" PRIu64 ", \"dedup_ratio\": %.4f}\n",
		       s.files, s.dirs, s.inodes, s.logical_bytes, s.logical_pages, s.zero_pages,
		       s.referenced_pages, s.unique_pages, s.unreferenced_pages, s.stored_bytes,
		       s.pack_bytes, s.packs, s.dedup_ratio);
		return 0;
	}
	printf("store:              %s\n"
	       "files:              %" PRIu64 "\n"
	       "directories:        %" PRIu64 "\n"
	       "inodes:             %" PRIu64 "\n"
	       "logical bytes:      %" PRIu64 " (%.1f MiB)\n"
	       "logical pages:      %" PRIu64 "\n"
	       "zero pages:         %" PRIu64 "\n"
	       "referenced pages:   %" PRIu64 "\n"
	       "unique pages:       %" PRIu64 "\n"
	       "unreferenced pages: %" PRIu64 " (gc frees them)\n"
	       "stored bytes:       %" PRIu64 " (%.1f MiB)\n"
	       "pack files:         %" PRIu64 " holding %" PRIu64 " bytes\n"
	       "dedup ratio:        %.2f\n",
	       dir, s.files, s.dirs, s.inodes, s.logical_bytes, (double)s.logical_bytes / 1048576.0,
	       s.logical_pages, s.zero_pages, s.referenced_pages, s.unique_pages,
	       s.unreferenced_pages, s.stored_bytes, (double)s.stored_bytes / 1048576.0, s.packs,
	       s.pack_bytes, s.dedup_ratio);
	return 0;
}

static void admin_usage(FILE *f)
{
	fprintf(f, "usage: snapfs-admin fsck [--repair] STORE\n"
		   "       snapfs-admin salvage STORE\n"
		   "       snapfs-admin gc STORE\n"
		   "       snapfs-admin stats [--json] STORE\n"
		   "       snapfs-admin --help | --version\n"
		   "STORE is the store folder, or the mount point of a store snapfs serves.\n"
		   "fsck and stats work beside a mounted store; gc of a mounted store is run\n"
		   "by its snapfs daemon, and calls on the filesystem wait only briefly.\n"
		   "fsck exits 0 if clean, 1 if it found problems, 2 if it could not run.\n"
		   "fsck --repair also sets wrong reference, link and page counts right,\n"
		   "indexes again intact pages whose index rows were lost,\n"
		   "rebuilds damaged page-map rows where their checksums prove it,\n"
		   "removes entries naming missing inodes, makes files again of page maps\n"
		   "whose inode is missing and names lost files and folders in /lost+found\n"
		   "(the store unmounted).\n"
		   "salvage replaces an index.db SQLite finds damaged by the rows it can\n"
		   "still read, keeps the old one as index.db.damaged, then runs\n"
		   "fsck --repair and exits as it does (the store unmounted).\n");
}

/*
 * STORE as the user gave it, or, when that is where snapfs has a store
 * mounted (an easy slip: the mount is the path people use), that store,
 * said on stderr so that stdout stays what the command prints.
 */
static const char *admin_store_arg(const char *arg, char buf[PATH_MAX])
{
	char abs[PATH_MAX];
	struct mountinfo_ent ent;
	if (!realpath(arg, abs) || mountinfo_find(mountinfo_fuse_at, abs, &ent) <= 0 ||
	    !mountinfo_is_snapfs(&ent))
		return arg;	/* not a mount point, or some other FUSE filesystem */
	snprintf(buf, PATH_MAX, "%s", ent.source);
	fprintf(stderr, "snapfs-admin: %s is where snapfs mounts the store %s; using the store\n",
		arg, buf);
	return buf;
}

int main(int argc, char *argv[])
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		admin_usage(stdout);
		return 0;
	}
	if (argc == 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
		printf("snapfs-admin version %s (store schema %d)\n", SNAPFS_VERSION,
		       store_schema_version());
		return 0;
	}
	/* COMMAND [--json | --repair] STORE: say what is wrong before the usage. */
	const char *cmd = argc > 1 ? argv[1] : NULL, *store = NULL, *bad = NULL;
	bool json = false, repair = false;
	if (!cmd) {
		fprintf(stderr, "snapfs-admin: no command given\n");
	} else if (strcmp(cmd, "fsck") && strcmp(cmd, "gc") && strcmp(cmd, "stats") &&
		   strcmp(cmd, "salvage")) {
		fprintf(stderr, "snapfs-admin: unknown command '%s'\n", cmd);
	} else {
		for (int i = 2; i < argc && !bad; i++) {
			if (!strcmp(cmd, "stats") && !strcmp(argv[i], "--json") && !json)
				json = true;
			else if (!strcmp(cmd, "fsck") && !strcmp(argv[i], "--repair") && !repair)
				repair = true;
			else if (argv[i][0] == '-' || store)
				bad = argv[i];
			else
				store = argv[i];
		}
		if (bad)
			fprintf(stderr, "snapfs-admin %s: unexpected argument '%s'\n", cmd, bad);
		else if (!store)
			fprintf(stderr, "snapfs-admin %s: STORE is missing\n", cmd);
	}
	if (!cmd || !store || bad) {
		admin_usage(stderr);
		return 2;
	}
	char buf[PATH_MAX];
	store = admin_store_arg(store, buf);
	if (!strcmp(cmd, "fsck"))
		return admin_fsck(store, repair);
	if (!strcmp(cmd, "gc"))
		return admin_gc(store);
	if (!strcmp(cmd, "salvage"))
		return admin_salvage(store);
	return admin_stats(store, json);
}
