/*
 * tests/test-store-ns.c: the namespace.  Create/lookup of every kind,
 * link counts, unlink/rmdir (ENOTEMPTY), rename with replace, NOREPLACE
 * and EXCHANGE and the loop check, setattr, xattrs with CREATE/REPLACE,
 * readdir cookies that survive changes, sealing, unlink while open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cmocka.h>

#include "test-store-util.h"

static int teardown(void **state)
{
	assert_int_equal(tsu_fixture_close(*state), 0);
	return 0;
}

#define ROOT STORE_ROOT_INO

static void test_store_ns_create_kinds(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr a, b;
	assert_int_equal(store_mknod(st, ROOT, "file", S_IFREG | 0640, 0, 10, 20, &a), 0);
	assert_true(S_ISREG(a.mode));
	assert_int_equal(a.mode & 07777, 0640);
	assert_int_equal(a.uid, 10);
	assert_int_equal(a.gid, 20);
	assert_int_equal(a.nlink, 1);
	assert_true(a.ino > ROOT);
	assert_int_equal(store_mknod(st, ROOT, "file", S_IFREG | 0640, 0, 0, 0, NULL), -EEXIST);

	assert_int_equal(store_mkdir(st, ROOT, "dir", 0755, 0, 0, &b), 0);
	assert_true(S_ISDIR(b.mode));
	assert_int_equal(b.nlink, 2);
	assert_int_equal(store_getattr(st, ROOT, &a), 0);
	assert_int_equal(a.nlink, 3);	/* root gained a subdirectory */

	assert_int_equal(store_mknod(st, b.ino, "fifo", S_IFIFO | 0600, 0, 0, 0, &a), 0);
	assert_true(S_ISFIFO(a.mode));
	assert_int_equal(store_mknod(st, b.ino, "dev", S_IFCHR | 0600, 0x0103, 0, 0, &a), 0);
	assert_int_equal(a.rdev, 0x0103);
	assert_int_equal(store_mknod(st, b.ino, "sock", S_IFSOCK | 0600, 0, 0, 0, NULL), 0);
	assert_int_equal(store_mknod(st, b.ino, "bad", S_IFLNK | 0777, 0, 0, 0, NULL), -EINVAL);

	assert_int_equal(store_symlink(st, ROOT, "ln", "dir/fifo", 0, 0, &a), 0);
	assert_true(S_ISLNK(a.mode));
	assert_int_equal(a.size, 8);
	char buf[64];
	assert_int_equal(store_readlink(st, a.ino, buf, sizeof(buf)), 8);
	assert_string_equal(buf, "dir/fifo");
	assert_int_equal(store_readlink(st, b.ino, buf, sizeof(buf)), -EINVAL);

	/* Lookups, and what bad names and non-directories give. */
	assert_int_equal(store_lookup(st, ROOT, "dir", &a), 0);
	assert_int_equal(a.ino, b.ino);
	/* A missing name gives the directory's attributes, a missing
	 * directory none. */
	assert_int_equal(store_lookup(st, ROOT, "nope", &a), -ENOENT);
	assert_int_equal(a.ino, ROOT);
	assert_true(S_ISDIR(a.mode));
	assert_int_equal(store_lookup(st, b.ino + 1000, "x", &a), -ENOENT);
	assert_int_equal(a.ino, 0);
	a.ino = ROOT;
	assert_int_equal(store_lookup(st, ROOT, "a/b", &a), -ENOENT);	/* no such name can be */
	assert_int_equal(a.ino, 0);
	assert_int_equal(store_mkdir(st, ROOT, "a/b", 0755, 0, 0, NULL), -EINVAL);
	assert_int_equal(store_mkdir(st, ROOT, "..", 0755, 0, 0, NULL), -EINVAL);
	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	assert_int_equal(store_mkdir(st, ROOT, longname, 0755, 0, 0, NULL), -ENAMETOOLONG);
	assert_int_equal(store_lookup(st, ROOT, "file", &a), 0);
	assert_int_equal(store_mkdir(st, a.ino, "x", 0755, 0, 0, NULL), -ENOTDIR);
	assert_int_equal(store_lookup(st, a.ino, "x", &b), -ENOTDIR);
}

static void test_store_ns_links_and_removal(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr a, d;
	uint64_t gone = 99;
	assert_int_equal(store_mknod(st, ROOT, "f", S_IFREG | 0644, 0, 0, 0, &a), 0);
	assert_int_equal(store_mkdir(st, ROOT, "d", 0755, 0, 0, &d), 0);
	assert_int_equal(store_link(st, a.ino, d.ino, "g", &a), 0);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(store_link(st, d.ino, ROOT, "d2", NULL), -EPERM);	/* no dir links */

	assert_int_equal(store_rmdir(st, ROOT, "d", &gone), -ENOTEMPTY);
	assert_int_equal(store_rmdir(st, ROOT, "f", &gone), -ENOTDIR);
	assert_int_equal(store_unlink(st, ROOT, "d", &gone), -EISDIR);
	assert_int_equal(store_unlink(st, ROOT, "f", &gone), 0);
	assert_int_equal(gone, 0);	/* still linked as d/g */
	assert_int_equal(store_getattr(st, a.ino, &a), 0);
	assert_int_equal(a.nlink, 1);
	assert_int_equal(store_unlink(st, d.ino, "g", &gone), 0);
	assert_int_equal(gone, a.ino);
	/* Without links but not released: still there. */
	assert_int_equal(store_getattr(st, a.ino, &a), 0);
	assert_int_equal(a.nlink, 0);
	assert_int_equal(store_inode_release(st, a.ino), 0);
	assert_int_equal(store_getattr(st, a.ino, &a), -ENOENT);

	assert_int_equal(store_rmdir(st, ROOT, "d", &gone), 0);
	assert_int_equal(gone, d.ino);
	assert_int_equal(store_getattr(st, ROOT, &a), 0);
	assert_int_equal(a.nlink, 2);
	/* A removed directory takes no new entries. */
	assert_int_equal(store_mkdir(st, d.ino, "x", 0755, 0, 0, NULL), -ENOENT);
	assert_int_equal(store_inode_release(st, d.ino), 0);
	assert_int_equal(store_getattr(st, d.ino, &a), -ENOENT);
	assert_int_equal(store_unlink(st, ROOT, "zz", &gone), -ENOENT);
}

static void test_store_ns_rename(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr a, b, d, e, x;
	uint64_t gone;
	assert_int_equal(store_mknod(st, ROOT, "a", S_IFREG | 0644, 0, 0, 0, &a), 0);
	assert_int_equal(store_mknod(st, ROOT, "b", S_IFREG | 0644, 0, 0, 0, &b), 0);
	assert_int_equal(store_mkdir(st, ROOT, "d", 0755, 0, 0, &d), 0);
	assert_int_equal(store_mkdir(st, d.ino, "e", 0755, 0, 0, &e), 0);

	/* NOREPLACE refuses an existing target and keeps both. */
	assert_int_equal(store_rename(st, ROOT, "a", ROOT, "b", STORE_RENAME_NOREPLACE, &gone), -EEXIST);
	assert_int_equal(store_lookup(st, ROOT, "a", &x), 0);
	assert_int_equal(x.ino, a.ino);
	/* EXCHANGE swaps. */
	assert_int_equal(store_rename(st, ROOT, "a", ROOT, "b", STORE_RENAME_EXCHANGE, &gone), 0);
	assert_int_equal(store_lookup(st, ROOT, "a", &x), 0);
	assert_int_equal(x.ino, b.ino);
	assert_int_equal(store_lookup(st, ROOT, "b", &x), 0);
	assert_int_equal(x.ino, a.ino);
	assert_int_equal(store_rename(st, ROOT, "a", ROOT, "nope", STORE_RENAME_EXCHANGE, &gone), -ENOENT);
	assert_int_equal(store_rename(st, ROOT, "a", ROOT, "b",
				      STORE_RENAME_EXCHANGE | STORE_RENAME_NOREPLACE, &gone),
			 -EINVAL);
	/* Plain rename replaces, and reports the replaced inode. */
	assert_int_equal(store_rename(st, ROOT, "a", ROOT, "b", 0, &gone), 0);
	assert_int_equal(gone, a.ino);
	assert_int_equal(store_lookup(st, ROOT, "a", &x), -ENOENT);
	assert_int_equal(store_lookup(st, ROOT, "b", &x), 0);
	assert_int_equal(x.ino, b.ino);
	store_inode_release(st, a.ino);

	/* File over directory and back. */
	assert_int_equal(store_rename(st, ROOT, "b", d.ino, "e", 0, &gone), -EISDIR);
	assert_int_equal(store_mkdir(st, ROOT, "d3", 0755, 0, 0, NULL), 0);
	assert_int_equal(store_rename(st, ROOT, "d3", ROOT, "b", 0, &gone), -ENOTDIR);
	/* A directory over a non-empty one. */
	assert_int_equal(store_rename(st, ROOT, "d3", ROOT, "d", 0, &gone), -ENOTEMPTY);
	/* Into itself or below itself. */
	assert_int_equal(store_rename(st, ROOT, "d", d.ino, "dd", 0, &gone), -EINVAL);
	assert_int_equal(store_rename(st, ROOT, "d", e.ino, "dd", 0, &gone), -EINVAL);
	assert_int_equal(store_rename(st, ROOT, "d3", e.ino, "x", STORE_RENAME_EXCHANGE, &gone), -ENOENT);

	/* Moving a directory moves its "..": link counts follow. */
	assert_int_equal(store_rename(st, d.ino, "e", ROOT, "e", 0, &gone), 0);
	assert_int_equal(store_getattr(st, d.ino, &x), 0);
	assert_int_equal(x.nlink, 2);
	assert_int_equal(store_getattr(st, ROOT, &x), 0);
	assert_int_equal(x.nlink, 5);	/* d, d3, e */
	/* Directory over an empty directory. */
	assert_int_equal(store_rename(st, ROOT, "e", ROOT, "d3", 0, &gone), 0);
	assert_true(gone != 0);
	assert_int_equal(store_getattr(st, ROOT, &x), 0);
	assert_int_equal(x.nlink, 4);
	/* Exchange a directory and a file across directories. */
	assert_int_equal(store_rename(st, ROOT, "d3", d.ino, "x", 0, &gone), 0);
	assert_int_equal(store_rename(st, ROOT, "b", d.ino, "x", STORE_RENAME_EXCHANGE, &gone), 0);
	assert_int_equal(store_lookup(st, ROOT, "b", &x), 0);
	assert_true(S_ISDIR(x.mode));
	assert_int_equal(store_getattr(st, d.ino, &x), 0);
	assert_int_equal(x.nlink, 2);
	assert_int_equal(store_getattr(st, ROOT, &x), 0);
	assert_int_equal(x.nlink, 4);
	/* Renaming onto itself changes nothing, exchanging too. */
	assert_int_equal(store_rename(st, ROOT, "b", ROOT, "b", 0, &gone), 0);
	assert_int_equal(store_lookup(st, ROOT, "b", &x), 0);
	assert_int_equal(store_rename(st, ROOT, "b", ROOT, "b", STORE_RENAME_EXCHANGE, &gone), 0);
	assert_int_equal(store_lookup(st, ROOT, "b", &e), 0);
	assert_int_equal(e.ino, x.ino);
	/* A directory is not exchanged with one below it, either way. */
	assert_int_equal(store_mkdir(st, d.ino, "sub", 0755, 0, 0, &e), 0);
	assert_int_equal(store_rename(st, ROOT, "d", d.ino, "sub", STORE_RENAME_EXCHANGE, &gone),
			 -EINVAL);
	assert_int_equal(store_rename(st, d.ino, "sub", ROOT, "d", STORE_RENAME_EXCHANGE, &gone),
			 -EINVAL);
	assert_int_equal(store_lookup(st, d.ino, "sub", &x), 0);
	assert_int_equal(x.ino, e.ino);
	/* Nor with a sealed one. */
	assert_int_equal(store_seal(st, e.ino, NULL, NULL), 0);
	assert_int_equal(store_rename(st, ROOT, "b", d.ino, "sub", STORE_RENAME_EXCHANGE, &gone),
			 -EPERM);
	assert_int_equal(store_lookup(st, d.ino, "sub", &x), 0);
	assert_int_equal(x.ino, e.ino);

	struct store_fsck_result res;
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
}

struct listing {
	char names[64][32];
	uint64_t cookies[64];
	int n, limit;
};

static int collect(void *arg, const char *name, const struct store_attr *attr, uint64_t next)
{
	(void)attr;
	struct listing *l = arg;
	if (l->n == l->limit)
		return 1;
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s", name);
	l->cookies[l->n++] = next;
	return 0;
}

static bool listed(const struct listing *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (!strcmp(l->names[i], name))
			return true;
	return false;
}

static void test_store_ns_readdir(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	char name[16];
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(store_mknod(st, ROOT, name, S_IFREG | 0644, 0, 0, 0, NULL), 0);
	}
	struct listing l = { .limit = 64 };
	assert_int_equal(store_readdir(st, ROOT, 0, collect, &l), 0);
	assert_int_equal(l.n, 12);
	assert_string_equal(l.names[0], ".");
	assert_string_equal(l.names[1], "..");

	/* Stop after 5, change the directory, resume from the cookie. */
	struct listing a = { .limit = 5 };
	assert_int_equal(store_readdir(st, ROOT, 0, collect, &a), 0);
	assert_int_equal(a.n, 5);
	assert_string_equal(a.names[4], "n2");
	uint64_t gone;
	assert_int_equal(store_unlink(st, ROOT, "n1", &gone), 0);	/* already listed */
	assert_int_equal(store_unlink(st, ROOT, "n5", &gone), 0);	/* not yet listed */
	assert_int_equal(store_mknod(st, ROOT, "late", S_IFREG | 0644, 0, 0, 0, NULL), 0);
	struct listing b = { .limit = 64 };
	assert_int_equal(store_readdir(st, ROOT, a.cookies[4], collect, &b), 0);
	assert_false(listed(&b, "n2"));
	assert_false(listed(&b, "n5"));
	assert_true(listed(&b, "n3"));
	assert_true(listed(&b, "n9"));
	assert_true(listed(&b, "late"));
	assert_int_equal(b.n, 7);	/* n3 n4 n6 n7 n8 n9 late */

	struct store_attr x;
	assert_int_equal(store_lookup(st, ROOT, "n0", &x), 0);
	assert_int_equal(store_readdir(st, x.ino, 0, collect, &b), -ENOTDIR);
}

static void test_store_ns_setattr(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr a, in = { 0 };
	assert_int_equal(store_mknod(st, ROOT, "f", S_IFREG | 0644, 0, 0, 0, &a), 0);
	in.mode = 0600;
	in.uid = 7;
	in.gid = 8;
	in.atime = (struct timespec){ 1000, 5 };
	in.mtime = (struct timespec){ 2000, 6 };
	in.size = 10000;
	assert_int_equal(store_setattr(st, a.ino, &in,
				       STORE_SET_MODE | STORE_SET_UID | STORE_SET_GID | STORE_SET_ATIME |
					       STORE_SET_MTIME | STORE_SET_SIZE,
				       &a),
			 0);
	assert_int_equal(a.mode, S_IFREG | 0600);
	assert_int_equal(a.uid, 7);
	assert_int_equal(a.gid, 8);
	assert_int_equal(a.atime.tv_sec, 1000);
	assert_int_equal(a.atime.tv_nsec, 5);
	assert_int_equal(a.mtime.tv_sec, 2000);
	assert_int_equal(a.mtime.tv_nsec, 6);
	assert_int_equal(a.size, 10000);
	assert_true(a.ctime.tv_sec > 2000);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_getattr(st, a.ino, &a), 0);
	assert_int_equal(a.mtime.tv_sec, 2000);	/* the commit kept the set time */
	assert_int_equal(a.size, 10000);

	/* Each attribute alone: the others stay as they were. */
	struct store_attr one = { .mode = 0640, .uid = 70, .gid = 80 };
	one.atime = (struct timespec){ 3000, 7 };
	one.mtime = (struct timespec){ 4000, 8 };
	assert_int_equal(store_setattr(st, a.ino, &one, STORE_SET_GID, &a), 0);
	assert_int_equal(a.mode, S_IFREG | 0600);
	assert_int_equal(a.uid, 7);
	assert_int_equal(a.gid, 80);
	assert_int_equal(a.atime.tv_sec, 1000);
	assert_int_equal(a.mtime.tv_sec, 2000);
	assert_int_equal(store_setattr(st, a.ino, &one, STORE_SET_MODE | STORE_SET_ATIME, &a), 0);
	assert_int_equal(a.mode, S_IFREG | 0640);
	assert_int_equal(a.uid, 7);
	assert_int_equal(a.atime.tv_sec, 3000);
	assert_int_equal(a.atime.tv_nsec, 7);
	assert_int_equal(a.mtime.tv_sec, 2000);
	assert_int_equal(store_setattr(st, a.ino, &one, STORE_SET_UID | STORE_SET_MTIME, &a), 0);
	assert_int_equal(a.uid, 70);
	assert_int_equal(a.gid, 80);
	assert_int_equal(a.mtime.tv_sec, 4000);
	assert_int_equal(a.mtime.tv_nsec, 8);
	assert_int_equal(a.size, 10000);
	assert_int_equal(store_getattr(st, a.ino, &a), 0);	/* as the database has it */
	assert_int_equal(a.mode, S_IFREG | 0640);
	assert_int_equal(a.uid, 70);
	assert_int_equal(a.gid, 80);
	assert_int_equal(a.atime.tv_sec, 3000);
	assert_int_equal(a.mtime.tv_sec, 4000);

	struct store_attr d;
	assert_int_equal(store_mkdir(st, ROOT, "d", 0755, 0, 0, &d), 0);
	assert_int_equal(store_setattr(st, d.ino, &in, STORE_SET_SIZE, NULL), -EISDIR);
}

/* Set ino's ctime back to a second since the epoch. */
static void age_ctime(struct store *st, uint64_t ino)
{
	struct store_attr in = { .ctime = { 1, 0 } };
	assert_int_equal(store_setattr(st, ino, &in, STORE_SET_CTIME, NULL), 0);
}

static int64_t ctime_of(struct store *st, uint64_t ino)
{
	struct store_attr a;
	assert_int_equal(store_getattr(st, ino, &a), 0);
	return a.ctime.tv_sec;
}

/* Gaining or losing a link changes an inode's ctime, also while the file
 * is open, when its times are kept in memory beside the index. */
/* An access changes atime alone: mtime and ctime (also as cached for a
 * file with uncommitted writes) stay. */
static void test_store_ns_set_atime(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr a, b;
	assert_int_equal(store_mknod(st, ROOT, "f", S_IFREG | 0644, 0, 0, 0, &a), 0);
	assert_int_equal(store_write(st, a.ino, "data", 4, 0), 4);	/* pending */
	assert_int_equal(store_getattr(st, a.ino, &a), 0);
	struct timespec when = { a.ctime.tv_sec + 100, 42 };
	assert_int_equal(store_set_atime(st, a.ino, when), 0);
	assert_int_equal(store_getattr(st, a.ino, &b), 0);
	assert_int_equal(b.atime.tv_sec, when.tv_sec);
	assert_int_equal(b.atime.tv_nsec, 42);
	assert_int_equal(b.mtime.tv_sec, a.mtime.tv_sec);
	assert_int_equal(b.mtime.tv_nsec, a.mtime.tv_nsec);
	assert_int_equal(b.ctime.tv_sec, a.ctime.tv_sec);
	assert_int_equal(b.ctime.tv_nsec, a.ctime.tv_nsec);
	assert_int_equal(b.size, 4);
	/* The commit of the pending write keeps it. */
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_getattr(st, a.ino, &b), 0);
	assert_int_equal(b.atime.tv_sec, when.tv_sec);
	assert_int_equal(b.ctime.tv_nsec, a.ctime.tv_nsec);
	assert_int_equal(store_set_atime(st, 999999, when), -ENOENT);
}

static void test_store_ns_link_ctime(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr a, b, x;
	assert_int_equal(store_mknod(st, ROOT, "f", S_IFREG | 0644, 0, 0, 0, &a), 0);
	assert_int_equal(store_mknod(st, ROOT, "g", S_IFREG | 0644, 0, 0, 0, &b), 0);
	assert_int_equal(store_link(st, b.ino, ROOT, "g2", NULL), 0);
	for (int open = 0; open < 2; open++) {
		if (open) {
			assert_int_equal(store_file_open(st, a.ino), 0);
			assert_int_equal(store_file_open(st, b.ino), 0);
			assert_int_equal(store_write(st, a.ino, "a", 1, 0), 1);
			assert_int_equal(store_write(st, b.ino, "b", 1, 0), 1);
		}
		age_ctime(st, a.ino);
		assert_int_equal(ctime_of(st, a.ino), 1);
		assert_int_equal(store_link(st, a.ino, ROOT, "f2", &x), 0);
		assert_true(x.ctime.tv_sec > 1000);
		assert_true(ctime_of(st, a.ino) > 1000);

		age_ctime(st, a.ino);
		assert_int_equal(store_unlink(st, ROOT, "f2", NULL), 0);
		assert_true(ctime_of(st, a.ino) > 1000);

		/* Renamed over, g loses its name but g2 keeps the inode. */
		age_ctime(st, b.ino);
		assert_int_equal(store_rename(st, ROOT, "f", ROOT, "g", 0, NULL), 0);
		assert_true(ctime_of(st, b.ino) > 1000);
		assert_int_equal(store_rename(st, ROOT, "g", ROOT, "f", 0, NULL), 0);
		assert_int_equal(store_link(st, b.ino, ROOT, "g", NULL), 0);
	}
	assert_int_equal(store_file_release(st, a.ino), 0);
	assert_int_equal(store_file_release(st, b.ino), 0);
}

static void test_store_ns_xattrs(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr a;
	assert_int_equal(store_mknod(st, ROOT, "f", S_IFREG | 0644, 0, 0, 0, &a), 0);
	char buf[64];
	assert_int_equal(store_xattr_get(st, a.ino, "user.k", buf, sizeof(buf)), -ENODATA);
	assert_int_equal(store_xattr_set(st, a.ino, "user.k", "v1", 2, XATTR_REPLACE), -ENODATA);
	assert_int_equal(store_xattr_set(st, a.ino, "user.k", "v1", 2, XATTR_CREATE), 0);
	assert_int_equal(store_xattr_set(st, a.ino, "user.k", "v2", 2, XATTR_CREATE), -EEXIST);
	assert_int_equal(store_xattr_set(st, a.ino, "user.k", "value2", 6, XATTR_REPLACE), 0);
	assert_int_equal(store_xattr_get(st, a.ino, "user.k", NULL, 0), 6);
	assert_int_equal(store_xattr_get(st, a.ino, "user.k", buf, 3), -ERANGE);
	assert_int_equal(store_xattr_get(st, a.ino, "user.k", buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "value2", 6);
	assert_int_equal(store_xattr_set(st, a.ino, "user.empty", "", 0, 0), 0);
	assert_int_equal(store_xattr_get(st, a.ino, "user.empty", buf, sizeof(buf)), 0);

	assert_int_equal(store_xattr_list(st, a.ino, NULL, 0), 18);
	assert_int_equal(store_xattr_list(st, a.ino, buf, 5), -ERANGE);
	assert_int_equal(store_xattr_list(st, a.ino, buf, sizeof(buf)), 18);
	assert_memory_equal(buf, "user.empty\0user.k\0", 18);

	assert_int_equal(store_xattr_remove(st, a.ino, "user.k"), 0);
	assert_int_equal(store_xattr_remove(st, a.ino, "user.k"), -ENODATA);
	assert_int_equal(store_xattr_list(st, a.ino, buf, sizeof(buf)), 11);
	static char big[STORE_XATTR_SIZE_MAX + 1];
	assert_int_equal(store_xattr_set(st, a.ino, "user.big", big, sizeof(big), 0), -ERANGE);
	assert_int_equal(store_xattr_set(st, a.ino + 100, "user.k", "v", 1, 0), -ENOENT);
}

/* store_make: a new inode with its extended attributes, made in one
 * transaction, or nothing when one of them is refused; open makes a
 * regular file only. */
static void test_store_ns_make(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	static const struct store_xattr xa[] = {
		{ "system.posix_acl_access", "\2\0\0\0", 4 },
		{ "user.empty", "", 0 },
	};
	struct store_new n = { .mode = S_IFDIR | 02750, .uid = 7, .gid = 8, .xattrs = xa,
			       .n_xattrs = 2 };
	struct store_attr a, b;
	assert_int_equal(store_make(st, ROOT, "d", &n, false, &a), 0);
	assert_int_equal(a.mode, S_IFDIR | 02750);
	assert_int_equal(a.uid, 7);
	assert_int_equal(a.gid, 8);
	char buf[64];
	assert_int_equal(store_xattr_get(st, a.ino, xa[0].name, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, xa[0].value, 4);
	assert_int_equal(store_xattr_get(st, a.ino, xa[1].name, buf, sizeof(buf)), 0);
	assert_int_equal(store_xattr_list(st, a.ino, NULL, 0), 35);

	/* A refused attribute, the last one: no inode, no name. */
	char longname[STORE_XATTR_NAME_MAX + 2];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	static char big[STORE_XATTR_SIZE_MAX + 1];
	const struct store_xattr bad[][2] = {
		{ xa[0], { longname, "v", 1 } },
		{ xa[0], { "user.big", big, sizeof(big) } },
		{ xa[0], { "", "v", 1 } },
		{ xa[0], { NULL, "v", 1 } },
	};
	const int want[] = { -ERANGE, -ERANGE, -EINVAL, -EINVAL };
	uint64_t next_ino = 0;
	for (unsigned i = 0; i < 4; i++) {
		n = (struct store_new){ .mode = S_IFREG | 0644, .xattrs = bad[i], .n_xattrs = 2 };
		assert_int_equal(store_make(st, ROOT, "f", &n, i & 1, &b), want[i]);
		assert_int_equal(store_lookup(st, ROOT, "f", &b), -ENOENT);
	}
	/* Nor did a transaction take an inode number: the next file gets
	 * the one after d's. */
	n = (struct store_new){ .mode = 0644 };
	assert_int_equal(store_make(st, ROOT, "f", &n, true, &b), 0);
	next_ino = b.ino;
	assert_int_equal(next_ino, a.ino + 1);
	assert_int_equal(b.mode, S_IFREG | 0644);
	assert_int_equal(store_xattr_list(st, b.ino, NULL, 0), 0);
	assert_int_equal(store_file_release(st, b.ino), 0);	/* it was open */
	assert_int_equal(store_file_release(st, b.ino), -EBADF);

	/* A failure inside the transaction rolls the inode back too: more
	 * names than a list holds (found only as they are put), the name
	 * is taken, or the folder is not one. */
	enum { MANY = STORE_XATTR_LIST_MAX / (STORE_XATTR_NAME_MAX + 1) + 1 };
	static char names[MANY][STORE_XATTR_NAME_MAX + 1];
	static struct store_xattr many[MANY];
	for (unsigned i = 0; i < MANY; i++) {
		snprintf(names[i], sizeof(names[i]), "user.%0250u", i);
		many[i] = (struct store_xattr){ names[i], "v", 1 };
	}
	n = (struct store_new){ .mode = S_IFREG | 0644, .xattrs = many, .n_xattrs = MANY };
	assert_int_equal(store_make(st, ROOT, "g", &n, true, &b), -ENOSPC);
	assert_int_equal(store_lookup(st, ROOT, "g", &b), -ENOENT);
	n.n_xattrs = MANY - 1;	/* as many as fit */
	assert_int_equal(store_make(st, ROOT, "g", &n, false, &b), 0);
	assert_int_equal(b.ino, next_ino + 1);
	assert_int_equal(store_xattr_list(st, b.ino, NULL, 0),
			 (MANY - 1) * (STORE_XATTR_NAME_MAX + 1));
	next_ino = b.ino;
	n = (struct store_new){ .mode = S_IFREG | 0644, .xattrs = xa, .n_xattrs = 2 };
	assert_int_equal(store_make(st, ROOT, "f", &n, false, &b), -EEXIST);
	assert_int_equal(store_make(st, next_ino, "g", &n, false, &b), -ENOTDIR);
	/* Only a regular file is made open; a kind store_mknod does not
	 * make is refused. */
	n = (struct store_new){ .mode = S_IFIFO | 0644 };
	assert_int_equal(store_make(st, ROOT, "p", &n, true, &b), -EINVAL);
	n = (struct store_new){ .mode = S_IFLNK | 0777 };
	assert_int_equal(store_make(st, ROOT, "p", &n, false, &b), -EINVAL);
	assert_int_equal(store_lookup(st, ROOT, "p", &b), -ENOENT);
	n = (struct store_new){ .mode = S_IFIFO | 0644 };
	assert_int_equal(store_make(st, ROOT, "p", &n, false, &b), 0);
	assert_int_equal(b.ino, next_ino + 1);
}

/* A file's xattr names fill at most STORE_XATTR_LIST_MAX bytes of list:
 * a new name past that is refused (ENOSPC), a new value for a present
 * one is not, and removing a name makes room again. */
static void test_store_ns_xattr_list_full(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr a;
	assert_int_equal(store_mknod(st, ROOT, "f", S_IFREG | 0644, 0, 0, 0, &a), 0);
	/* "user.name-00000" and its NUL: 16 bytes, 4096 of them fill it. */
	char name[32];
	int r = 0, n = 0;
	for (; n < 5000 && !r; n++) {
		snprintf(name, sizeof(name), "user.name-%05d", n);
		r = store_xattr_set(st, a.ino, name, "v", 1, 0);
	}
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(n - 1, STORE_XATTR_LIST_MAX / 16);
	assert_int_equal(store_xattr_list(st, a.ino, NULL, 0), STORE_XATTR_LIST_MAX);
	static char list[STORE_XATTR_LIST_MAX];
	assert_int_equal(store_xattr_list(st, a.ino, list, sizeof(list)), sizeof(list));
	assert_memory_equal(list + sizeof(list) - 16, "user.name-04095", 16);
	assert_int_equal(store_xattr_set(st, a.ino, "user.name-00007", "new", 3, XATTR_REPLACE), 0);
	assert_int_equal(store_xattr_set(st, a.ino, "user.x", "v", 1, 0), -ENOSPC);
	assert_int_equal(store_xattr_get(st, a.ino, "user.x", NULL, 0), -ENODATA);
	assert_int_equal(store_xattr_remove(st, a.ino, "user.name-00000"), 0);
	assert_int_equal(store_xattr_set(st, a.ino, "user.x", "v", 1, 0), 0);
	assert_int_equal(store_xattr_list(st, a.ino, NULL, 0), STORE_XATTR_LIST_MAX - 16 + 7);
	/* Another file has room of its own. */
	struct store_attr b;
	assert_int_equal(store_mknod(st, ROOT, "g", S_IFREG | 0644, 0, 0, 0, &b), 0);
	assert_int_equal(store_xattr_set(st, b.ino, "user.x", "v", 1, 0), 0);
}

static void test_store_ns_seal(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr d, sub, file, outside, x;
	assert_int_equal(store_mkdir(st, ROOT, "snap", 0755, 0, 0, &d), 0);
	assert_int_equal(store_mkdir(st, d.ino, "sub", 0755, 0, 0, &sub), 0);
	assert_int_equal(store_mknod(st, sub.ino, "mem", S_IFREG | 0644, 0, 0, 0, &file), 0);
	assert_int_equal(store_mknod(st, ROOT, "free", S_IFREG | 0644, 0, 0, 0, &outside), 0);
	assert_int_equal(store_write(st, file.ino, "data", 4, 0), 4);	/* pending */
	assert_int_equal(store_seal(st, d.ino, NULL, NULL), 0);

	assert_int_equal(store_getattr(st, file.ino, &x), 0);
	assert_true(x.flags & STORE_INODE_SEALED);
	assert_int_equal(x.size, 4);
	assert_int_equal(store_lookup(st, sub.ino, "none", &x), -ENOENT);
	assert_int_equal(x.ino, sub.ino);
	assert_true(x.flags & STORE_INODE_SEALED);
	assert_int_equal(store_lookup(st, outside.ino, "none", &x), -ENOTDIR);
	uint64_t gone;
	assert_int_equal(store_write(st, file.ino, "x", 1, 0), -EPERM);
	assert_int_equal(store_truncate(st, file.ino, 0), -EPERM);
	assert_int_equal(store_punch(st, file.ino, 0, 4), -EPERM);
	assert_int_equal(store_clone(st, outside.ino, 0, file.ino, 0, 1), -EPERM);
	assert_int_equal(store_unlink(st, sub.ino, "mem", &gone), -EPERM);
	assert_int_equal(store_mknod(st, sub.ino, "new", S_IFREG | 0644, 0, 0, 0, NULL), -EPERM);
	assert_int_equal(store_rename(st, sub.ino, "mem", ROOT, "stolen", 0, &gone), -EPERM);
	assert_int_equal(store_rename(st, ROOT, "free", sub.ino, "mem", 0, &gone), -EPERM);
	assert_int_equal(store_rmdir(st, ROOT, "snap", &gone), -EPERM);
	assert_int_equal(store_link(st, file.ino, ROOT, "l", NULL), -EPERM);
	assert_int_equal(store_xattr_set(st, file.ino, "user.a", "b", 1, 0), -EPERM);
	struct store_attr in = { .mode = 0777 };
	assert_int_equal(store_setattr(st, file.ino, &in, STORE_SET_MODE, NULL), -EPERM);
	assert_int_equal(store_set_atime(st, file.ino, (struct timespec){ 5, 0 }), -EPERM);
	/* Reading works; outside the sealed tree everything works. */
	char buf[8] = { 0 };
	assert_int_equal(store_read(st, file.ino, buf, sizeof(buf), 0), 4);
	assert_string_equal(buf, "data");
	assert_int_equal(store_write(st, outside.ino, "ok", 2, 0), 2);
	assert_int_equal(store_seal(st, d.ino, NULL, NULL), 0);	/* again: fine */
}

static void test_store_ns_unseal(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	struct store_attr d, sub, file, other, x;
	uint64_t gone;
	assert_int_equal(store_mkdir(st, ROOT, "snap", 0755, 0, 0, &d), 0);
	assert_int_equal(store_mkdir(st, d.ino, "sub", 0755, 0, 0, &sub), 0);
	assert_int_equal(store_mknod(st, sub.ino, "mem", S_IFREG | 0644, 0, 0, 0, &file), 0);
	assert_int_equal(store_mkdir(st, ROOT, "other", 0755, 0, 0, &other), 0);
	/* Keep the file's state cached: unsealing must reach it too. */
	assert_int_equal(store_file_open(st, file.ino), 0);
	assert_int_equal(store_write(st, file.ino, "data", 4, 0), 4);
	assert_int_equal(store_seal(st, d.ino, NULL, NULL), 0);
	assert_int_equal(store_write(st, file.ino, "x", 1, 0), -EPERM);

	/* Only the top of a sealed tree, only directories, only sealed ones. */
	assert_int_equal(store_unseal(st, file.ino), -ENOTDIR);
	assert_int_equal(store_unseal(st, sub.ino), -EINVAL);
	assert_int_equal(store_unseal(st, other.ino), -EINVAL);
	assert_int_equal(store_unseal(st, 999999), -ENOENT);
	assert_int_equal(store_getattr(st, sub.ino, &x), 0);
	assert_true(x.flags & STORE_INODE_SEALED);

	/* A read-only open beside the writer refuses. */
	struct store *ro;
	assert_int_equal(store_open(f->path, STORE_RDONLY, &ro, NULL), 0);
	assert_int_equal(store_unseal(ro, d.ino), -EROFS);
	assert_int_equal(store_close(ro, NULL), 0);

	assert_int_equal(store_unseal(st, d.ino), 0);
	assert_int_equal(store_unseal(st, d.ino), -EINVAL);	/* no longer sealed */
	uint64_t all[] = { d.ino, sub.ino, file.ino };
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(store_getattr(st, all[i], &x), 0);
		assert_false(x.flags & STORE_INODE_SEALED);
	}
	/* Everything changes again, through the cached state too. */
	assert_int_equal(store_write(st, file.ino, "D", 1, 0), 1);
	char buf[8] = { 0 };
	assert_int_equal(store_read(st, file.ino, buf, sizeof(buf), 0), 4);
	assert_string_equal(buf, "Data");
	assert_int_equal(store_file_release(st, file.ino), 0);
	struct store_attr in = { .mode = 0700 };
	assert_int_equal(store_setattr(st, sub.ino, &in, STORE_SET_MODE, NULL), 0);

	/* It was committed: a reopened store sees it unsealed. */
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(f->path, 0, &f->st, NULL), 0);
	st = f->st;
	assert_int_equal(store_getattr(st, file.ino, &x), 0);
	assert_false(x.flags & STORE_INODE_SEALED);
	assert_int_equal(store_unlink(st, sub.ino, "mem", &gone), 0);
	assert_int_equal(store_rmdir(st, d.ino, "sub", &gone), 0);
	assert_int_equal(store_rmdir(st, ROOT, "snap", &gone), 0);

	/* The root has no parent to be sealed: a sealed root can be unsealed. */
	assert_int_equal(store_seal(st, ROOT, NULL, NULL), 0);
	assert_int_equal(store_mkdir(st, ROOT, "n", 0755, 0, 0, NULL), -EPERM);
	assert_int_equal(store_unseal(st, other.ino), -EINVAL);
	assert_int_equal(store_unseal(st, ROOT), 0);
	assert_int_equal(store_mkdir(st, ROOT, "n", 0755, 0, 0, NULL), 0);
	assert_int_equal(store_rmdir(st, ROOT, "other", &gone), 0);
}

static void test_store_ns_unlink_while_open(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t ino = tsu_file(st, "f");
	static uint8_t data[3 * STORE_PAGE_SIZE];
	tsu_fill(data, sizeof(data), 77);
	assert_int_equal(store_file_open(st, ino), 0);
	assert_int_equal(store_write(st, ino, data, sizeof(data), 0), sizeof(data));
	assert_int_equal(store_sync(st, NULL), 0);
	uint64_t gone = 0;
	assert_int_equal(store_unlink(st, ROOT, "f", &gone), 0);
	assert_int_equal(gone, ino);
	/* The kernel forgot it but a handle is open: the data stays. */
	assert_int_equal(store_inode_release(st, ino), 0);
	static uint8_t back[sizeof(data)];
	assert_int_equal(store_read(st, ino, back, sizeof(back), 0), sizeof(back));
	assert_memory_equal(back, data, sizeof(data));
	assert_int_equal(store_write(st, ino, "more", 4, sizeof(data)), 4);
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 4);
	/* The last release deletes it and frees its pages. */
	assert_int_equal(store_file_release(st, ino), 0);
	struct store_attr a;
	assert_int_equal(store_getattr(st, ino, &a), -ENOENT);
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 0);
	assert_int_equal(s.unreferenced_pages, 4);
	struct store_fsck_result res;
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
}

static void test_store_ns_orphans_reclaimed(void **state)
{
	struct tsu_fixture *f = *state;
	uint64_t ino = tsu_file(f->st, "f");
	uint8_t page[STORE_PAGE_SIZE];
	tsu_fill(page, sizeof(page), 3);
	assert_int_equal(store_write(f->st, ino, page, sizeof(page), 0), sizeof(page));
	uint64_t gone;
	assert_int_equal(store_unlink(f->st, ROOT, "f", &gone), 0);
	/* Closed without release, as a crash would leave it. */
	assert_int_equal(store_close(f->st, NULL), 0);
	assert_int_equal(store_open(f->path, 0, &f->st, NULL), 0);
	struct store_attr a;
	assert_int_equal(store_getattr(f->st, ino, &a), -ENOENT);
	struct store_stats s;
	assert_int_equal(store_stats(f->st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_ns_create_kinds, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_links_and_removal, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_rename, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_readdir, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_setattr, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_set_atime, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_link_ctime, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_xattrs, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_make, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_xattr_list_full, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_seal, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_unseal, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_unlink_while_open, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ns_orphans_reclaimed, tsu_setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
