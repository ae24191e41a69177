/*
 * tests/test-fs.c: system-call level tests of a mounted snapfs.
 *
 * Each test mounts a fresh store (the snapfs binary of this build, in the
 * foreground, as a child process), makes the calls whose exact results
 * matter (errno values, renameat2 flags, SEEK_DATA/SEEK_HOLE offsets,
 * xattr size rules, st_blocks, page cache kept across opens, pages kept
 * for unlinked files until the last user lets go, setuid and setgid
 * cleared by unprivileged writes, file handles valid across mounts,
 * missing names cached by the kernel, access times, a seal against a
 * truncate(2) in flight, with the daemon built to pause in that gap,
 * allocations of the daemon that fail as it starts and as it serves, and
 * each one of a call that adds a name), and unmounts; the daemon must
 * then exit with status 0.  Shell-level tests with real tools are in
 * tests/e2e/.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "testutil.h"

struct mnt {
	char dir[PATH_MAX];
	char store[PATH_MAX + 8];
	char mnt[PATH_MAX + 8];
	pid_t pid;
};

static bool mnt_mounted(const char *path)
{
	FILE *f = fopen("/proc/mounts", "re");
	char line[4096];
	bool found = false;
	while (f && fgets(line, sizeof(line), f)) {
		char dev[2048], mp[2048], type[64];
		if (sscanf(line, "%2047s %2047s %63s", dev, mp, type) == 3 && !strcmp(mp, path) &&
		    !strcmp(type, "fuse.snapfs"))
			found = true;
	}
	if (f)
		fclose(f);
	return found;
}

/* Start the daemon at prog (in the build tree) to mount m in the
 * foreground, with -o opts unless opts is NULL, and its stderr in the
 * file errpath unless that is NULL.  True once it has mounted; false
 * if it ended first, with its wait status in *status. */
static bool mnt_spawn(struct mnt *m, const char *prog, const char *opts, const char *errpath,
		      int *status)
{
	char bin[PATH_MAX];
	snprintf(bin, sizeof(bin), "%s/%s", getenv("SNAPFS_BUILD_ROOT"), prog);
	pid_t test = getpid();
	m->pid = fork();
	assert_true(m->pid >= 0);
	if (m->pid == 0) {
		/* If the test dies, its daemon unmounts and ends (SIGTERM), and
		 * does not hold the test's output open until meson's timeout. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != test)
			_exit(127);
		int err = errpath ? open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
		if (errpath && (err < 0 || dup2(err, STDERR_FILENO) < 0))
			_exit(127);
		if (opts)
			execl(bin, "snapfs", m->store, m->mnt, "-f", "-o", opts, (char *)NULL);
		else
			execl(bin, "snapfs", m->store, m->mnt, "-f", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 400 && !mnt_mounted(m->mnt); i++) {
		pid_t w = waitpid(m->pid, status, WNOHANG);
		assert_true(w == 0 || w == m->pid);
		if (w == m->pid)
			return false;
		usleep(10000);
	}
	assert_true(mnt_mounted(m->mnt));
	return true;
}

/* Mount m in the foreground with the daemon at prog (in the build tree),
 * with -o opts unless opts is NULL. */
static void mnt_start_prog(struct mnt *m, const char *prog, const char *opts)
{
	int status;
	assert_true(mnt_spawn(m, prog, opts, NULL, &status));
}

static void mnt_start_opts(struct mnt *m, const char *opts)
{
	mnt_start_prog(m, "fsd/snapfs", opts);
}

static void mnt_start(struct mnt *m)
{
	mnt_start_opts(m, NULL);
}

/* Wait for m's daemon to exit with status 0. */
static void mnt_exited(struct mnt *m)
{
	int st;
	assert_int_equal(waitpid(m->pid, &st, 0), m->pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* Unmount m and wait for its daemon to exit with status 0.  Right after
 * a mount the kernel may still call it busy for a few ms (seen in about
 * one of fifteen immediate unmounts, with nothing open in it), so a busy
 * unmount is tried again for up to a second. */
static void mnt_stop(struct mnt *m)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "fusermount3 -u '%s' 2>/dev/null", m->mnt);
	int r = system(cmd);
	for (int i = 0; i < 50 && r != 0 && mnt_mounted(m->mnt); i++) {
		usleep(20000);
		r = system(cmd);
	}
	assert_int_equal(r, 0);
	mnt_exited(m);
}

/* Stop m's daemon with SIGTERM, files perhaps still open, and wait for
 * it to exit with status 0. */
static void mnt_term(struct mnt *m)
{
	assert_int_equal(kill(m->pid, SIGTERM), 0);
	mnt_exited(m);
}

static struct mnt *mnt_new(void)
{
	struct mnt *m = calloc(1, sizeof(*m));
	tu_tmpdir(m->dir, sizeof(m->dir), "fs");
	snprintf(m->store, sizeof(m->store), "%s/store", m->dir);
	snprintf(m->mnt, sizeof(m->mnt), "%s/mnt", m->dir);
	mkdir(m->mnt, 0755);
	return m;
}

static int setup(void **state)
{
	struct mnt *m = mnt_new();
	if (!m)
		return -1;
	mnt_start(m);
	*state = m;
	return 0;
}

/* The mount served by tests/snapfs-hooked, whose store pauses where spec
 * says (SNAPFS_TEST_PAUSE=WHERE:MS). */
static int setup_paused(void **state, const char *spec)
{
	struct mnt *m = mnt_new();
	if (!m)
		return -1;
	setenv("SNAPFS_TEST_PAUSE", spec, 1);
	mnt_start_prog(m, "tests/snapfs-hooked", NULL);
	unsetenv("SNAPFS_TEST_PAUSE");
	*state = m;
	return 0;
}

/* 300 ms between a data change's sealed check and the change, told as
 * a wait (as waiting for the file's lock there is), so that the worker
 * that serves it lets another one serve the requests meanwhile. */
static int setup_truncate_pause(void **state)
{
	return setup_paused(state, "change:300:wait");
}

/* 300 ms between a create's making the file and its open, told as a
 * wait. */
static int setup_create_pause(void **state)
{
	return setup_paused(state, "create:300:wait");
}

/* 200 ms before a read maps the file's pages. */
static int setup_map_pause(void **state)
{
	return setup_paused(state, "map:200");
}

/* 50 ms before the pack writer writes each staging buffer, and reads not
 * spliced, so that reads of staged pages are served from memory. */
static int setup_pack_write_pause(void **state)
{
	struct mnt *m = mnt_new();
	if (!m)
		return -1;
	setenv("SNAPFS_TEST_PAUSE", "pack-write:50", 1);
	mnt_start_prog(m, "tests/snapfs-hooked", "nosplice");
	unsetenv("SNAPFS_TEST_PAUSE");
	*state = m;
	return 0;
}

/* 300 ms before a file's release is handled. */
static int setup_release_pause(void **state)
{
	return setup_paused(state, "release:300");
}

static int teardown(void **state)
{
	struct mnt *m = *state;
	bool ok = true;
	if (mnt_mounted(m->mnt)) {
		/* After a failed test files may still be open: detach lazily
		 * and stop the daemon, so no mount outlives the test. */
		char cmd[2 * PATH_MAX + 128];
		snprintf(cmd, sizeof(cmd), "fusermount3 -u '%s' 2>/dev/null || fusermount3 -uz '%s'",
			 m->mnt, m->mnt);
		int r = system(cmd);
		int st = 0;
		pid_t w = 0;
		/* A daemon closing its store under ASan on a loaded machine
		 * can take seconds to exit. */
		for (int i = 0; i < 3000 && w == 0; i++) {
			w = waitpid(m->pid, &st, WNOHANG);
			if (w == 0)
				usleep(10000);
		}
		if (r != 0 || w != m->pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			if (w == 0) {
				kill(m->pid, SIGTERM);
				waitpid(m->pid, NULL, 0);
			}
			print_error("snapfs did not unmount and exit cleanly (status %#x)\n", st);
			ok = false;
		}
	}
	int r = tu_rmtree(m->dir);
	free(m);
	return r == 0 && ok ? 0 : -1;
}

/* Path inside the mount (a few rotating buffers). */
static const char *P(struct mnt *m, const char *fmt, ...)
{
	static char buf[4][2 * PATH_MAX + 16];
	static int next;
	char rel[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	char *b = buf[next++ % 4];
	snprintf(b, sizeof(buf[0]), "%s/%s", m->mnt, rel);
	return b;
}

static void put_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static size_t get_file(const char *path, void *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, size);
	assert_true(n >= 0);
	close(fd);
	return (size_t)n;
}

static void random_bytes(void *buf, size_t len, unsigned seed)
{
	unsigned char *p = buf;
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (unsigned char)(seed >> 16);
	}
}

static long xattr_num(const char *path, const char *name)
{
	char v[64] = { 0 };
	ssize_t n = getxattr(path, name, v, sizeof(v) - 1);
	assert_true(n > 0);
	return strtol(v, NULL, 10);
}

/* Wait (at most 5 s) until user.snapfs.shared_pages of path equals want. */
static long wait_shared(const char *path, long want)
{
	long v = -1;
	for (int i = 0; i < 500; i++) {
		v = xattr_num(path, "user.snapfs.shared_pages");
		if (v == want)
			break;
		usleep(10000);
	}
	return v;
}

static void test_fs_rename_flags(void **state)
{
	struct mnt *m = *state;
	put_file(P(m, "a"), "AAAA", 4);
	put_file(P(m, "b"), "BB", 2);
	assert_int_equal(renameat2(AT_FDCWD, P(m, "a"), AT_FDCWD, P(m, "b"), RENAME_NOREPLACE), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(renameat2(AT_FDCWD, P(m, "a"), AT_FDCWD, P(m, "b"), RENAME_EXCHANGE), 0);
	char buf[8] = { 0 };
	assert_int_equal(get_file(P(m, "a"), buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "BB", 2);
	assert_int_equal(get_file(P(m, "b"), buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "AAAA", 4);
	assert_int_equal(renameat2(AT_FDCWD, P(m, "a"), AT_FDCWD, P(m, "none"), RENAME_EXCHANGE), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(renameat2(AT_FDCWD, P(m, "a"), AT_FDCWD, P(m, "c"), RENAME_NOREPLACE), 0);
	assert_int_equal(access(P(m, "a"), F_OK), -1);
	/* A whiteout (overlayfs's) is not made: refused, nothing moves. */
	if (geteuid() == 0) {
		assert_int_equal(renameat2(AT_FDCWD, P(m, "c"), AT_FDCWD, P(m, "w"), RENAME_WHITEOUT),
				 -1);
		assert_int_equal(errno, EINVAL);
		assert_int_equal(access(P(m, "w"), F_OK), -1);
		assert_int_equal(get_file(P(m, "c"), buf, sizeof(buf)), 2);
	}

	/* Directories: into itself, onto a non-empty one, file onto dir. */
	assert_int_equal(mkdir(P(m, "d"), 0755), 0);
	assert_int_equal(mkdir(P(m, "d/sub"), 0755), 0);
	assert_int_equal(mkdir(P(m, "e"), 0755), 0);
	put_file(P(m, "e/x"), "x", 1);
	assert_int_equal(rename(P(m, "d"), P(m, "d/sub/in")), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(rename(P(m, "d"), P(m, "e")), -1);
	assert_int_equal(errno, ENOTEMPTY);
	assert_int_equal(rename(P(m, "c"), P(m, "d")), -1);
	assert_int_equal(errno, EISDIR);
	/* Exchanging a file and a directory works and moves both. */
	assert_int_equal(renameat2(AT_FDCWD, P(m, "c"), AT_FDCWD, P(m, "e"), RENAME_EXCHANGE), 0);
	struct stat st;
	assert_int_equal(stat(P(m, "c/x"), &st), 0);
	assert_int_equal(stat(P(m, "e"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
}

static void test_fs_errors(void **state)
{
	struct mnt *m = *state;
	assert_int_equal(mkdir(P(m, "d"), 0755), 0);
	assert_int_equal(mkdir(P(m, "d"), 0755), -1);
	assert_int_equal(errno, EEXIST);
	put_file(P(m, "d/f"), "f", 1);
	assert_int_equal(rmdir(P(m, "d")), -1);
	assert_int_equal(errno, ENOTEMPTY);
	assert_int_equal(unlink(P(m, "d")), -1);
	assert_int_equal(errno, EISDIR);
	assert_int_equal(open(P(m, "d"), O_WRONLY), -1);
	assert_int_equal(errno, EISDIR);
	assert_int_equal(open(P(m, "missing"), O_RDONLY), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(rmdir(P(m, "d/f")), -1);
	assert_int_equal(errno, ENOTDIR);
	char name[300];
	memset(name, 'n', 256);
	name[256] = 0;
	assert_int_equal(open(P(m, "%s", name), O_WRONLY | O_CREAT, 0644), -1);
	assert_int_equal(errno, ENAMETOOLONG);
	char buf[16];
	assert_int_equal(readlink(P(m, "d/f"), buf, sizeof(buf)), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(symlink("d/f", P(m, "l")), 0);
	assert_int_equal(readlink(P(m, "l"), buf, sizeof(buf)), 3);
	assert_int_equal(link(P(m, "d"), P(m, "dl")), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(mknod(P(m, "fifo"), S_IFIFO | 0600, 0), 0);
	struct stat st;
	assert_int_equal(lstat(P(m, "fifo"), &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
}

static void test_fs_seek_data_hole(void **state)
{
	struct mnt *m = *state;
	const char *f = P(m, "sparse");
	int fd = open(f, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	char page[4096];
	random_bytes(page, sizeof(page), 1);
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), 4096);
	assert_int_equal(pwrite(fd, page, 100, 5 * 4096 + 10), 100);
	assert_int_equal(ftruncate(fd, 10 * 4096), 0);
	assert_int_equal(lseek(fd, 0, SEEK_DATA), 0);
	assert_int_equal(lseek(fd, 0, SEEK_HOLE), 4096);
	assert_int_equal(lseek(fd, 4096, SEEK_DATA), 5 * 4096);
	assert_int_equal(lseek(fd, 5 * 4096, SEEK_HOLE), 6 * 4096);
	assert_int_equal(lseek(fd, 6 * 4096, SEEK_DATA), -1);
	assert_int_equal(errno, ENXIO);
	assert_int_equal(lseek(fd, 10 * 4096, SEEK_HOLE), -1);
	assert_int_equal(errno, ENXIO);
	/* A page of zeros written is a hole too. */
	memset(page, 0, sizeof(page));
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), 4096);
	assert_int_equal(lseek(fd, 0, SEEK_DATA), 5 * 4096);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_blocks, 8);
	assert_int_equal(st.st_size, 10 * 4096);
	close(fd);
}

static void test_fs_xattrs(void **state)
{
	struct mnt *m = *state;
	const char *f = P(m, "x");
	char data[3 * 4096 + 5];
	random_bytes(data, sizeof(data), 2);
	put_file(f, data, sizeof(data));
	assert_int_equal(setxattr(f, "user.a", "12345", 5, 0), 0);
	assert_int_equal(setxattr(f, "user.b", "", 0, 0), 0);
	assert_int_equal(setxattr(f, "user.a", "z", 1, XATTR_CREATE), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(setxattr(f, "user.c", "z", 1, XATTR_REPLACE), -1);
	assert_int_equal(errno, ENODATA);
	char v[128];
	assert_int_equal(getxattr(f, "user.a", NULL, 0), 5);
	assert_int_equal(getxattr(f, "user.a", v, 2), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(getxattr(f, "user.a", v, sizeof(v)), 5);
	assert_memory_equal(v, "12345", 5);
	assert_int_equal(getxattr(f, "user.b", v, sizeof(v)), 0);
	char list[256];
	ssize_t n = listxattr(f, list, sizeof(list));
	assert_int_equal(n, (ssize_t)sizeof("user.a") + (ssize_t)sizeof("user.b"));
	assert_null(memmem(list, (size_t)n, "snapfs", 6));
	assert_int_equal(setxattr(f, "security.test", "x", 1, 0), -1);
	assert_int_equal(errno, EOPNOTSUPP);
	assert_int_equal(removexattr(f, "user.a"), 0);
	assert_int_equal(getxattr(f, "user.a", v, sizeof(v)), -1);
	assert_int_equal(errno, ENODATA);

	/* The filesystem's own figures. */
	assert_int_equal(xattr_num(f, "user.snapfs.pages"), 4);
	assert_int_equal(xattr_num(f, "user.snapfs.shared_pages"), 0);
	assert_int_equal(xattr_num(f, "user.snapfs.zero_pages"), 0);
	/* Holes: a page of zeros written, one punched, two past the end
	 * (and its last page partly written: stored). */
	int fd = open(f, O_WRONLY);
	assert_true(fd >= 0);
	static const char zeros[4096];
	assert_int_equal(pwrite(fd, zeros, sizeof(zeros), 4096), 4096);
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * 4096, 4096),
			 0);
	assert_int_equal(pwrite(fd, "end", 3, 6 * 4096), 3);
	assert_int_equal(close(fd), 0);
	assert_int_equal(xattr_num(f, "user.snapfs.pages"), 3);
	assert_int_equal(xattr_num(f, "user.snapfs.zero_pages"), 4);
	put_file(f, data, sizeof(data));
	assert_int_equal(getxattr(f, "user.snapfs.digest", v, sizeof(v)), 64);
	assert_int_equal(getxattr(f, "user.snapfs.digest", v, 10), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(setxattr(f, "user.snapfs.digest", "0", 1, 0), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(removexattr(f, "user.snapfs.pages"), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(getxattr(f, "user.snapfs.sealed", v, sizeof(v)), -1);
	assert_int_equal(errno, ENODATA);
	/* Same bytes, same digest; the copy shares every page. */
	put_file(P(m, "y"), data, sizeof(data));
	char w[128];
	assert_int_equal(getxattr(P(m, "y"), "user.snapfs.digest", w, sizeof(w)), 64);
	assert_memory_equal(v, w, 64);
	assert_int_equal(xattr_num(f, "user.snapfs.shared_pages"), 4);
	data[0] ^= 1;
	put_file(P(m, "y"), data, sizeof(data));
	assert_int_equal(getxattr(P(m, "y"), "user.snapfs.digest", w, sizeof(w)), 64);
	assert_memory_not_equal(v, w, 64);

	/* Names fill a list listxattr can still return, no more. */
	const char *z = P(m, "z");
	put_file(z, "z", 1);
	int i = 0;
	for (; i < 5000; i++) {
		snprintf(w, sizeof(w), "user.name-%05d", i);
		if (setxattr(z, w, "v", 1, 0) != 0)
			break;
	}
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(i, 65536 / 16);
	static char names[65536];
	assert_int_equal(listxattr(z, names, sizeof(names)), sizeof(names));
}

static void test_fs_blocks_statfs(void **state)
{
	struct mnt *m = *state;
	struct statvfs a, b;
	assert_int_equal(statvfs(m->mnt, &a), 0);
	assert_int_equal(a.f_bsize, 4096);
	assert_true(a.f_blocks > 0);
	size_t len = 8u << 20;
	char *data = malloc(len);
	random_bytes(data, len, 3);
	memset(data + 4096, 0, 3 * 4096);	/* three zero pages */
	put_file(P(m, "big"), data, len);
	struct stat st;
	assert_int_equal(stat(P(m, "big"), &st), 0);
	assert_int_equal(st.st_blocks, (blkcnt_t)(len / 4096 - 3) * 8);
	assert_int_equal(statvfs(m->mnt, &b), 0);
	uint64_t used_a = (a.f_blocks - a.f_bfree) * 4096, used_b = (b.f_blocks - b.f_bfree) * 4096;
	assert_true(used_b >= used_a + len - 3 * 4096);
	free(data);
}

/* Pages of a file unlinked while open or mapped stay until the last user
 * lets go: visible as the sharing count of another file with the same
 * content. */
static void test_fs_unlinked_keeps_pages(void **state)
{
	struct mnt *m = *state;
	size_t len = 16 * 4096;
	char *data = malloc(len), *back = malloc(len);
	random_bytes(data, len, 4);
	put_file(P(m, "keep"), data, len);
	put_file(P(m, "gone"), data, len);
	assert_int_equal(wait_shared(P(m, "keep"), 16), 16);

	int fd = open(P(m, "gone"), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(unlink(P(m, "gone")), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_nlink, 0);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	assert_int_equal(pread(fd, back, len, 0), (ssize_t)len);
	assert_memory_equal(back, data, len);
	assert_int_equal(xattr_num(P(m, "keep"), "user.snapfs.shared_pages"), 16);
	/* Still writable, still readable. */
	assert_int_equal(pwrite(fd, "hello", 5, 4096 * 20), 5);
	assert_int_equal(pread(fd, back, 5, 4096 * 20), 5);
	assert_memory_equal(back, "hello", 5);
	close(fd);
	assert_int_equal(wait_shared(P(m, "keep"), 0), 0);

	/* The same with a mapping that outlives the descriptor. */
	put_file(P(m, "mapped"), data, len);
	assert_int_equal(wait_shared(P(m, "keep"), 16), 16);
	fd = open(P(m, "mapped"), O_RDONLY);
	char *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	close(fd);
	assert_int_equal(unlink(P(m, "mapped")), 0);
	usleep(200000);
	assert_int_equal(xattr_num(P(m, "keep"), "user.snapfs.shared_pages"), 16);
	madvise(map, len, MADV_DONTNEED);
	assert_memory_equal(map, data, len);
	munmap(map, len);
	assert_int_equal(wait_shared(P(m, "keep"), 0), 0);
	free(data);
	free(back);
}

/* FOPEN_KEEP_CACHE: a file nobody writes keeps its page cache across
 * opens (seen with mincore() on a fresh mapping). */
static void test_fs_keep_cache(void **state)
{
	struct mnt *m = *state;
	size_t len = 64 * 4096;
	char *data = malloc(len);
	random_bytes(data, len, 5);
	put_file(P(m, "cached"), data, len);
	char *back = malloc(len);
	assert_int_equal(get_file(P(m, "cached"), back, len), len);
	assert_int_equal(get_file(P(m, "cached"), back, len), len);
	int fd = open(P(m, "cached"), O_RDONLY);
	char *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	unsigned char vec[64];
	assert_int_equal(mincore(map, len, vec), 0);
	int resident = 0;
	for (int i = 0; i < 64; i++)
		resident += vec[i] & 1;
	assert_int_equal(resident, 64);
	munmap(map, len);
	close(fd);

	/* After a change through the mount, readers see the new bytes. */
	fd = open(P(m, "cached"), O_WRONLY);
	assert_int_equal(pwrite(fd, "changed", 7, 8192), 7);
	close(fd);
	memcpy(data + 8192, "changed", 7);
	assert_int_equal(get_file(P(m, "cached"), back, len), len);
	assert_memory_equal(back, data, len);
	free(data);
	free(back);
}

static void test_fs_copy_file_range(void **state)
{
	struct mnt *m = *state;
	size_t len = 40 * 4096 + 123;
	char *data = malloc(len), *back = malloc(len + 10000);
	random_bytes(data, len, 6);
	put_file(P(m, "src"), data, len);
	int in = open(P(m, "src"), O_RDONLY), out = open(P(m, "dst"), O_RDWR | O_CREAT, 0644);
	assert_true(in >= 0 && out >= 0);
	/* Aligned: whole pages are shared. */
	loff_t oi = 0, oo = 0;
	assert_int_equal(copy_file_range(in, &oi, out, &oo, len, 0), (ssize_t)len);
	assert_int_equal(pread(out, back, len, 0), (ssize_t)len);
	assert_memory_equal(back, data, len);
	close(out);
	/* All 41 pages, the partial last one too: it ends both files. */
	assert_int_equal(xattr_num(P(m, "dst"), "user.snapfs.shared_pages"), 41);
	/* Unaligned on both sides: bytes copied exactly. */
	out = open(P(m, "dst2"), O_RDWR | O_CREAT, 0644);
	oi = 1000;
	oo = 77;
	assert_int_equal(copy_file_range(in, &oi, out, &oo, 3 * 4096, 0), 3 * 4096);
	assert_int_equal(pread(out, back, 77 + 3 * 4096, 0), 77 + 3 * 4096);
	for (int i = 0; i < 77; i++)
		assert_int_equal(back[i], 0);
	assert_memory_equal(back + 77, data + 1000, 3 * 4096);
	close(out);
	close(in);
	free(data);
	free(back);
}

static void test_fs_inode_numbers_stable(void **state)
{
	struct mnt *m = *state;
	assert_int_equal(mkdir(P(m, "dir"), 0755), 0);
	put_file(P(m, "dir/file"), "x", 1);
	struct stat a, b, r;
	assert_int_equal(stat(P(m, "dir/file"), &a), 0);
	assert_int_equal(stat(m->mnt, &r), 0);
	assert_int_equal(r.st_ino, 1);
	mnt_stop(m);
	mnt_start(m);
	assert_int_equal(stat(P(m, "dir/file"), &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	/* Many lookups and forgets: the table must not lose the root. */
	for (int i = 0; i < 200; i++) {
		char n[32];
		snprintf(n, sizeof(n), "dir/f%d", i);
		put_file(P(m, "%s", n), n, strlen(n));
	}
	assert_int_equal(stat(P(m, "dir/f199"), &b), 0);
}

/* How many threads of process pid have a first line of
 * /proc/PID/task/TID/file that match says yes to (a thread that ended
 * meanwhile is not counted). */
static int threads_where(pid_t pid, const char *file, bool (*match)(const char *line, const void *arg),
			 const void *arg)
{
	char path[128], line[256];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/%s", (int)pid, e->d_name, file);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f))
			n += match(line, arg);
		fclose(f);
	}
	closedir(d);
	return n;
}

/* A stat line of a thread that is not stopped: the state follows the
 * ")" that ends the name. */
static bool not_stopped(const char *line, const void *arg)
{
	(void)arg;
	const char *end = strrchr(line, ')');
	return end && end[1] && end[2] != 'T';
}

/*
 * Whether access(path) gives want_errno (0: the name exists) within 2 s
 * while the daemon is stopped, i.e. from the kernel's caches alone.  The
 * daemon is continued before returning, so a call that had to ask it
 * finishes (and its child is reaped) either way.
 */
static bool answered_from_cache(struct mnt *m, const char *path, int want_errno)
{
	assert_int_equal(kill(m->pid, SIGSTOP), 0);
	/* kill() returns before every thread has stopped. */
	while (threads_where(m->pid, "stat", not_stopped, NULL))
		usleep(1000);
	pid_t c = fork();
	assert_true(c >= 0);
	if (c == 0) {
		int r = access(path, F_OK);
		_exit(r == 0 ? want_errno == 0 : errno == want_errno ? 1 : 2);
	}
	int st = 0;
	pid_t w = 0;
	for (int i = 0; i < 200 && w == 0; i++) {
		w = waitpid(c, &st, WNOHANG);
		if (w == 0)
			usleep(10000);
	}
	assert_int_equal(kill(m->pid, SIGCONT), 0);
	if (w == 0)
		assert_int_equal(waitpid(c, &st, 0), c);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);	/* the answer was right either way */
	return w == c;
}

static void test_fs_sealed(void **state)
{
	struct mnt *m = *state;
	assert_int_equal(mkdir(P(m, "s"), 0755), 0);
	assert_int_equal(mkdir(P(m, "s/in"), 0755), 0);
	put_file(P(m, "s/f"), "sealed", 6);
	assert_int_equal(setxattr(P(m, "s"), "user.snapfs.sealed", "1", 1, 0), 0);
	assert_int_equal(open(P(m, "s/f"), O_WRONLY), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(open(P(m, "s/new"), O_WRONLY | O_CREAT, 0644), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(truncate(P(m, "s/f"), 0), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(unlink(P(m, "s/f")), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(chmod(P(m, "s/f"), 0600), -1);
	assert_int_equal(errno, EPERM);
	/* Only the top of the sealed tree can be unsealed (root is asking). */
	assert_int_equal(removexattr(P(m, "s/in"), "user.snapfs.sealed"), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(rename(P(m, "s/f"), P(m, "moved")), -1);
	assert_int_equal(errno, EPERM);
	char buf[8];
	assert_int_equal(get_file(P(m, "s/f"), buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "sealed", 6);
	/* A missing name in a sealed directory stays missing, and the
	 * kernel keeps the miss long after the normal timeout (1 s).  The
	 * name is looked up from inside s: the root's attributes, needed
	 * for a walk from the root, lapse after 1 s. */
	assert_int_equal(access(P(m, "s/nothing"), F_OK), -1);
	assert_int_equal(errno, ENOENT);
	usleep(1500 * 1000);
	int here = open(".", O_RDONLY | O_DIRECTORY);
	assert_true(here >= 0);
	assert_int_equal(chdir(P(m, "s")), 0);
	bool cached = answered_from_cache(m, "nothing", ENOENT);
	assert_int_equal(fchdir(here), 0);
	close(here);
	assert_true(cached);
	/* Unsealed, everything below changes again, the cached missing
	 * name included. */
	assert_int_equal(removexattr(P(m, "s"), "user.snapfs.sealed"), 0);
	assert_int_equal(getxattr(P(m, "s/in"), "user.snapfs.sealed", buf, sizeof(buf)), -1);
	assert_int_equal(errno, ENODATA);
	put_file(P(m, "s/nothing"), "new", 3);
	assert_int_equal(access(P(m, "s/nothing"), F_OK), 0);
	assert_int_equal(unlink(P(m, "s/f")), 0);
	assert_int_equal(rmdir(P(m, "s/in")), 0);
	assert_int_equal(unlink(P(m, "s/nothing")), 0);
	assert_int_equal(rmdir(P(m, "s")), 0);
}

/*
 * What a seal may be set on, and when: only directories (a sealed file
 * could never be unsealed), with setxattr's XATTR_CREATE and
 * XATTR_REPLACE rules, and not while a file of the tree is open for
 * writing (a shared writable mapping's later writes would be refused
 * while readers saw them in the page cache).  Unsealing one tree leaves a
 * file that also has a name in another sealed tree sealed.
 */
static void test_fs_seal_rules(void **state)
{
	struct mnt *m = *state;
	const char *sealed = "user.snapfs.sealed";
	assert_int_equal(mkdir(P(m, "a"), 0755), 0);
	assert_int_equal(mkdir(P(m, "t"), 0755), 0);
	put_file(P(m, "t/f"), "original", 8);
	assert_int_equal(setxattr(P(m, "t/f"), sealed, "1", 1, 0), -1);
	assert_int_equal(errno, ENOTDIR);

	assert_int_equal(setxattr(P(m, "t"), sealed, "1", 1, XATTR_REPLACE), -1);
	assert_int_equal(errno, ENODATA);
	char buf[16];
	assert_int_equal(getxattr(P(m, "t"), sealed, buf, sizeof(buf)), -1);
	assert_int_equal(errno, ENODATA);

	/* A writable mapping of t/f: sealing t waits until it is gone. */
	int fd = open(P(m, "t/f"), O_RDWR);
	assert_true(fd >= 0);
	char *map = mmap(NULL, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(close(fd), 0);
	assert_int_equal(setxattr(P(m, "t"), sealed, "1", 1, 0), -1);
	assert_int_equal(errno, EBUSY);
	assert_int_equal(getxattr(P(m, "t"), sealed, buf, sizeof(buf)), -1);
	memcpy(map, "mapped", 6);
	assert_int_equal(msync(map, 8, MS_SYNC), 0);
	assert_int_equal(munmap(map, 8), 0);
	/* The release reaches the daemon after munmap returns. */
	int r = -1;
	for (int i = 0; i < 200 && r != 0; i++) {
		r = setxattr(P(m, "t"), sealed, "1", 1, XATTR_CREATE);
		if (r != 0) {
			assert_int_equal(errno, EBUSY);
			usleep(10000);
		}
	}
	assert_int_equal(r, 0);
	assert_int_equal(setxattr(P(m, "t"), sealed, "1", 1, XATTR_CREATE), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(setxattr(P(m, "t"), sealed, "1", 1, XATTR_REPLACE), 0);
	assert_int_equal(get_file(P(m, "t/f"), buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "mappedal", 8);

	/* a/f is t/f: sealed through t.  Sealing and unsealing a keeps it
	 * sealed while t is. */
	assert_int_equal(link(P(m, "t/f"), P(m, "a/f")), -1);	/* t/f is sealed */
	assert_int_equal(errno, EPERM);
	assert_int_equal(removexattr(P(m, "t"), sealed), 0);
	assert_int_equal(link(P(m, "t/f"), P(m, "a/f")), 0);
	assert_int_equal(setxattr(P(m, "t"), sealed, "1", 1, 0), 0);
	assert_int_equal(setxattr(P(m, "a"), sealed, "1", 1, 0), 0);
	assert_int_equal(removexattr(P(m, "a"), sealed), 0);
	assert_int_equal(open(P(m, "a/f"), O_WRONLY), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(getxattr(P(m, "a/f"), sealed, buf, sizeof(buf)), 1);
	put_file(P(m, "a/other"), "a is open again", 15);
	/* Unsealing t too frees it. */
	assert_int_equal(removexattr(P(m, "t"), sealed), 0);
	put_file(P(m, "a/f"), "changed", 7);
	assert_int_equal(get_file(P(m, "t/f"), buf, sizeof(buf)), 7);
	assert_memory_equal(buf, "changed", 7);
}

struct truncation {
	const char *path;
	bool open;	/* open(O_WRONLY|O_TRUNC) rather than truncate(2) */
	int r, err;
	bool done;	/* (atomic) */
};

static void *truncate_main(void *arg)
{
	struct truncation *t = arg;
	t->r = t->open ? open(t->path, O_WRONLY | O_TRUNC) : truncate(t->path, 0);
	t->err = errno;
	__atomic_store_n(&t->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* user.snapfs.pages of path: the daemon's count, never cached. */
static long stored_pages(const char *path)
{
	char v[32];
	ssize_t n = getxattr(path, "user.snapfs.pages", v, sizeof(v) - 1);
	assert_true(n > 0);
	v[n] = 0;
	return strtol(v, NULL, 10);
}

/*
 * A seal of a tree set while a truncate(2) of a file in it has passed its
 * sealed check but not yet truncated (the daemon paused there 300 ms):
 * the seal waits for it, so the file the seal returns on is the file it
 * keeps.
 */
static void test_fs_seal_waits_for_truncate(void **state)
{
	struct mnt *m = *state;
	char data[8192];
	random_bytes(data, sizeof(data), 7);
	assert_int_equal(mkdir(P(m, "s"), 0755), 0);
	put_file(P(m, "s/f"), data, sizeof(data));
	assert_int_equal(stored_pages(P(m, "s/f")), 2);
	struct truncation t = { .path = P(m, "s/f") };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, truncate_main, &t), 0);
	usleep(100000);
	assert_int_equal(setxattr(P(m, "s"), "user.snapfs.sealed", "1", 1, 0), 0);
	long at_seal = stored_pages(P(m, "s/f"));
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(stored_pages(P(m, "s/f")), at_seal);
	/* The truncate came first, or, if this thread was slow to start,
	 * found the tree sealed. */
	if (t.r == 0) {
		assert_int_equal(at_seal, 0);
	} else {
		assert_int_equal(t.err, EPERM);
		assert_int_equal(at_seal, 2);
	}
	assert_int_equal(truncate(P(m, "s/f"), 1), -1);
	assert_int_equal(errno, EPERM);

	/* An open for writing with O_TRUNC is a writer from before it
	 * truncates: a seal set while it truncates waits, then finds it open
	 * (EBUSY), rather than sealing the file between the truncation and
	 * the open (which then failed, the file emptied). */
	assert_int_equal(mkdir(P(m, "o"), 0755), 0);
	put_file(P(m, "o/f"), data, sizeof(data));
	struct truncation o = { .path = P(m, "o/f"), .open = true };
	assert_int_equal(pthread_create(&th, NULL, truncate_main, &o), 0);
	usleep(100000);
	int sealed = setxattr(P(m, "o"), "user.snapfs.sealed", "1", 1, 0);
	int seal_err = errno;
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(o.r >= 0);
	assert_int_equal(sealed, -1);
	assert_int_equal(seal_err, EBUSY);
	assert_int_equal(close(o.r), 0);
	assert_int_equal(stored_pages(P(m, "o/f")), 0);
}

/* How many entries the listing of dir has (with . and ..), or with name
 * not NULL, how many of that name. */
static int dir_names(const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += !name || !strcmp(de->d_name, name);
	closedir(d);
	return n;
}

struct creation {
	const char *path;
	int r, err;
};

static void *create_main(void *arg)
{
	struct creation *c = arg;
	c->r = open(c->path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	c->err = errno;
	return NULL;
}

/*
 * A seal of a tree set while an open(O_CREAT) in it has made the file but
 * not yet opened it (the daemon paused there 300 ms): the seal waits,
 * then finds the new file open (EBUSY), rather than sealing it first, so
 * that the open failed (EPERM) and left the file behind.  The file is
 * made in a directory below the one sealed: the kernel holds the
 * directory a file is made in, so a seal of that one waits anyway.
 */
static void test_fs_seal_waits_for_create(void **state)
{
	struct mnt *m = *state;
	assert_int_equal(mkdir(P(m, "t"), 0755), 0);
	assert_int_equal(mkdir(P(m, "t/s"), 0755), 0);
	struct creation c = { .path = P(m, "t/s/new") };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, create_main, &c), 0);
	usleep(100000);
	int sealed = setxattr(P(m, "t"), "user.snapfs.sealed", "1", 1, 0);
	int seal_err = errno;
	assert_int_equal(pthread_join(th, NULL), 0);
	if (c.r < 0) {
		/* This thread was slow to start: the seal came first. */
		assert_int_equal(c.err, EPERM);
		assert_int_equal(sealed, 0);
		/* Asked of the daemon: the kernel may hold the name's miss. */
		assert_int_equal(dir_names(P(m, "t/s"), "new"), 0);
		return;
	}
	assert_int_equal(sealed, -1);
	assert_int_equal(seal_err, EBUSY);
	assert_int_equal(write(c.r, "x", 1), 1);
	assert_int_equal(close(c.r), 0);
	assert_int_equal(setxattr(P(m, "t"), "user.snapfs.sealed", "1", 1, 0), 0);
	char buf[2];
	assert_int_equal(get_file(P(m, "t/s/new"), buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'x');
}

/*
 * The kernel sends a file's release after close(2) returns (here the
 * daemon takes 300 ms over each): a seal set right after the close waits
 * for it rather than failing with EBUSY; a file still open makes it fail
 * all the same.
 */
static void test_fs_seal_after_close(void **state)
{
	struct mnt *m = *state;
	assert_int_equal(mkdir(P(m, "s"), 0755), 0);
	put_file(P(m, "s/f"), "just closed", 11);
	assert_int_equal(setxattr(P(m, "s"), "user.snapfs.sealed", "1", 1, 0), 0);
	assert_int_equal(mkdir(P(m, "o"), 0755), 0);
	int fd = open(P(m, "o/f"), O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(setxattr(P(m, "o"), "user.snapfs.sealed", "1", 1, 0), -1);
	assert_int_equal(errno, EBUSY);
	assert_int_equal(close(fd), 0);
}

/* Quick requests (lookups of missing names), after which one worker
 * listens on the device and serves short requests itself. */
static void quick_requests(struct mnt *m)
{
	char name[32];
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "missing%d", i);
		assert_int_equal(access(P(m, name), F_OK), -1);
	}
}

/*
 * A request that waits (a truncate the daemon pauses 300 ms in, saying
 * first that it waits, as it does for the file's lock there) holds up no
 * other: short ones asked meanwhile are answered while it waits,
 * although a truncate is served by the worker listening on the device.
 */
static void test_fs_slow_call_holds_up_nothing(void **state)
{
	struct mnt *m = *state;
	char data[8192];
	random_bytes(data, sizeof(data), 8);
	put_file(P(m, "slow"), data, sizeof(data));
	put_file(P(m, "other"), data, sizeof(data));
	quick_requests(m);
	struct truncation t = { .path = P(m, "slow") };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, truncate_main, &t), 0);
	usleep(50000);
	/* Figures are asked of the daemon each time, never cached. */
	for (int i = 0; i < 20; i++)
		assert_int_equal(stored_pages(P(m, "other")), 2);
	DIR *d = opendir(m->mnt);
	assert_non_null(d);
	int names = 0;
	while (readdir(d))
		names++;
	closedir(d);
	assert_int_equal(names, 4);
	assert_false(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE));
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t.r, 0);
}

struct chmoding {
	const char *path;
	int r;
	bool done;	/* (atomic) */
};

static void *chmod_main(void *arg)
{
	struct chmoding *c = arg;
	c->r = chmod(c->path, 0600);
	__atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * While another program holds the index's write lock (an admin command's
 * transaction, here sqlite3 itself), a chmod waits for it, and requests
 * that only read are answered meanwhile: the chmod, served by the worker
 * listening on the device, hands the device on before it waits.
 */
static void test_fs_busy_index_holds_up_nothing(void **state)
{
	struct mnt *m = *state;
	char data[4096], path[PATH_MAX + 32], list[256];
	random_bytes(data, sizeof(data), 10);
	put_file(P(m, "a"), data, sizeof(data));
	put_file(P(m, "b"), data, sizeof(data));
	assert_int_equal(setxattr(P(m, "b"), "user.k", "v", 1, 0), 0);
	quick_requests(m);
	sqlite3 *db;
	snprintf(path, sizeof(path), "%s/index.db", m->store);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);	/* a release may be committing */
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	struct chmoding c = { .path = P(m, "a") };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, chmod_main, &c), 0);
	usleep(100000);
	/* (Not a listing: opening a folder may update its atime.) */
	struct stat sb;
	for (int i = 0; i < 20; i++) {
		assert_int_equal(listxattr(P(m, "b"), list, sizeof(list)), sizeof("user.k"));
		assert_int_equal(stat(P(m, "b"), &sb), 0);
	}
	/* Still waiting for the lock, which only this thread can end. */
	assert_false(__atomic_load_n(&c.done, __ATOMIC_ACQUIRE));
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(c.r, 0);
	assert_int_equal(stat(P(m, "a"), &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
}

/* Reads of a kind that is usually quick but is not now (the daemon
 * pauses each 200 ms before mapping the file's pages) are served side by
 * side, not one after another as quick ones are. */
static void *read_main(void *arg)
{
	char buf[4096];
	return (void *)(intptr_t)pread(*(int *)arg, buf, sizeof(buf), 0);
}

static void test_fs_slow_reads_side_by_side(void **state)
{
	struct mnt *m = *state;
	enum { READERS = 8 };
	char data[4096], name[32];
	random_bytes(data, sizeof(data), 9);
	int fds[READERS];
	for (int i = 0; i < READERS; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		put_file(P(m, name), data, sizeof(data));
		fds[i] = open(P(m, name), O_RDONLY);
		assert_true(fds[i] >= 0);
	}
	quick_requests(m);
	pthread_t th[READERS];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, read_main, &fds[i]), 0);
	for (int i = 0; i < READERS; i++) {
		void *got;
		assert_int_equal(pthread_join(th[i], &got), 0);
		assert_int_equal((intptr_t)got, (intptr_t)sizeof(data));
		close(fds[i]);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* One after another: 8 x 200 ms at least. */
	print_message("# %d reads paused 200 ms each took %.2f s\n", READERS, s);
	assert_true(s < 1.2);
}

/* SIGTERM with files still open (the kernel never sends their release):
 * the daemon still exits cleanly (under LeakSanitizer: nothing leaked),
 * and what was written but not yet closed is kept. */
static void test_fs_stop_with_files_open(void **state)
{
	struct mnt *m = *state;
	int fd = open(P(m, "open"), O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "kept", 4), 4);
	int gone = open(P(m, "gone"), O_RDWR | O_CREAT, 0644);
	assert_true(gone >= 0);
	assert_int_equal(write(gone, "temp", 4), 4);
	assert_int_equal(unlink(P(m, "gone")), 0);
	mnt_term(m);
	close(fd);
	close(gone);
	mnt_start(m);
	char buf[8];
	assert_int_equal(get_file(P(m, "open"), buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "kept", 4);
	assert_int_equal(access(P(m, "gone"), F_OK), -1);
	assert_int_equal(errno, ENOENT);
}

/*
 * Large writes lend their request's buffer to the store, which keeps their
 * new pages there until its pack writer has written them (here held up
 * 50 ms a staging buffer, so that many are staged at once).  256 KiB
 * writes through a write-only (direct) handle: four lent buffers to a
 * staging buffer, so more are held than there are spares, and later
 * writes are copied.  Each write reads back at once, all of them again
 * (the cache dropped) once more writes have come (had a buffer been
 * read into while lent, they would differ), after a SIGTERM while pages
 * are still staged (the daemon writes them out as it closes the store,
 * after its loop and buffers are gone), and on a new mount.
 */
#define LENT_CHUNK (256u << 10)
#define LENT_CHUNKS 96

static void lent_check(int fd, unsigned from, unsigned to)
{
	static uint8_t want[LENT_CHUNK], got[LENT_CHUNK];
	for (unsigned k = from; k < to; k++) {
		random_bytes(want, LENT_CHUNK, 1000 + k);
		assert_int_equal(pread(fd, got, LENT_CHUNK, (off_t)k * LENT_CHUNK), LENT_CHUNK);
		assert_memory_equal(got, want, LENT_CHUNK);
	}
}

static void test_fs_write_lent(void **state)
{
	struct mnt *m = *state;
	static uint8_t buf[LENT_CHUNK];
	int w = open(P(m, "lent"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(w >= 0);
	int r = open(P(m, "lent"), O_RDONLY);
	assert_true(r >= 0);
	for (unsigned k = 0; k < LENT_CHUNKS; k++) {
		random_bytes(buf, LENT_CHUNK, 1000 + k);
		assert_int_equal(pwrite(w, buf, LENT_CHUNK, (off_t)k * LENT_CHUNK), LENT_CHUNK);
		lent_check(r, k, k + 1);
		if (k % 32 == 31) {
			assert_int_equal(posix_fadvise(r, 0, 0, POSIX_FADV_DONTNEED), 0);
			lent_check(r, 0, k + 1);
		}
	}
	mnt_term(m);
	close(w);
	close(r);
	mnt_start(m);
	r = open(P(m, "lent"), O_RDONLY);
	assert_true(r >= 0);
	lent_check(r, 0, LENT_CHUNKS);
	close(r);
}

/* fallocate grows the size without storing anything, but refuses a range
 * whose holes exceed the free space; holes already stored cost nothing. */
static void test_fs_fallocate_space(void **state)
{
	struct mnt *m = *state;
	struct statvfs sv;
	assert_int_equal(statvfs(m->mnt, &sv), 0);
	off_t avail = (off_t)(sv.f_bavail * sv.f_frsize);
	int fd = open(P(m, "f"), O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fallocate(fd, 0, 0, avail + (1 << 30)), -1);
	assert_int_equal(errno, ENOSPC);
	/* Modes that move data are not offered. */
	assert_int_equal(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), -1);
	assert_int_equal(errno, EOPNOTSUPP);
	assert_int_equal(fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, 4096), -1);
	assert_int_equal(errno, EOPNOTSUPP);
	assert_int_equal(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, avail + (1 << 30)), -1);
	assert_int_equal(errno, ENOSPC);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	/* Within the free space: the size grows, nothing is stored. */
	assert_int_equal(fallocate(fd, 0, 0, 1 << 20), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 1 << 20);
	assert_int_equal(st.st_blocks, 0);
	/* Stored pages in the range need no space: with 256 MiB stored, the
	 * free space plus 128 MiB fits (a margin both ways for whatever else
	 * uses the disk meanwhile). */
	enum { MIB = 1 << 20, STORED = 256 };
	char *buf = malloc(MIB);
	for (int i = 0; i < STORED; i++) {
		memset(buf, i, MIB);
		buf[0] = 1;
		assert_int_equal(pwrite(fd, buf, MIB, (off_t)i * MIB), MIB);
	}
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(statvfs(m->mnt, &sv), 0);
	avail = (off_t)(sv.f_bavail * sv.f_frsize);
	assert_int_equal(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, avail + STORED / 2 * MIB), 0);
	assert_int_equal(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, avail + 2 * STORED * MIB), -1);
	assert_int_equal(errno, ENOSPC);
	free(buf);
	close(fd);
}

/* Missing names are cached like present ones (mounted with a long
 * timeout), and every way of making a name through the mount replaces
 * the cached miss at once. */
static void test_fs_negative_entries(void **state)
{
	struct mnt *m = *state;
	mnt_stop(m);
	mnt_start_opts(m, "timeout=60");
	const char *names[] = { "file", "dir", "sym", "hard", "moved", "fifo" };
	put_file(P(m, "src"), "data", 4);
	put_file(P(m, "tomove"), "move", 4);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_int_equal(access(P(m, "%s", names[i]), F_OK), -1);
		assert_int_equal(errno, ENOENT);
		assert_true(answered_from_cache(m, P(m, "%s", names[i]), ENOENT));
	}
	/* The check can tell: a name never looked up needs the daemon. */
	assert_false(answered_from_cache(m, P(m, "never"), ENOENT));

	put_file(P(m, "file"), "new", 3);
	assert_int_equal(mkdir(P(m, "dir"), 0755), 0);
	assert_int_equal(symlink("src", P(m, "sym")), 0);
	assert_int_equal(link(P(m, "src"), P(m, "hard")), 0);
	assert_int_equal(rename(P(m, "tomove"), P(m, "moved")), 0);
	assert_int_equal(mkfifo(P(m, "fifo"), 0644), 0);
	char buf[8];
	assert_int_equal(get_file(P(m, "file"), buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "new", 3);
	struct stat st;
	assert_int_equal(stat(P(m, "dir"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(get_file(P(m, "sym"), buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "data", 4);
	assert_int_equal(get_file(P(m, "hard"), buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "data", 4);
	assert_int_equal(get_file(P(m, "moved"), buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "move", 4);
	assert_int_equal(lstat(P(m, "fifo"), &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	/* The old name of a rename and an unlinked name are gone (whether
	 * the kernel keeps them as misses is its own affair). */
	assert_int_equal(access(P(m, "tomove"), F_OK), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(unlink(P(m, "file")), 0);
	assert_int_equal(access(P(m, "file"), F_OK), -1);
	assert_int_equal(errno, ENOENT);
	put_file(P(m, "file"), "again", 5);
	assert_int_equal(get_file(P(m, "file"), buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "again", 5);
}

/* Set path's atime and mtime (seconds); ctime becomes now. */
static void set_times(const char *path, time_t atime, time_t mtime)
{
	struct timespec ts[2] = { { atime, 0 }, { mtime, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static time_t atime_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_atim.tv_sec;
}

/* Open path with flags (a directory: list it) and close it again. */
static void access_once(const char *path, int flags)
{
	int fd = open(path, flags);
	assert_true(fd >= 0);
	char c;
	if (flags & O_DIRECTORY) {
		DIR *d = fdopendir(fd);
		assert_non_null(d);
		while (readdir(d))
			;
		closedir(d);
		return;
	}
	if ((flags & O_ACCMODE) != O_WRONLY)
		assert_true(read(fd, &c, 1) >= 0);
	close(fd);
}

/* Access times under the mount's flag: relatime by default, none under
 * -o noatime; sealed content keeps its times. */
static void test_fs_atime(void **state)
{
	struct mnt *m = *state;
	time_t now = time(NULL), past = 1000000000;
	assert_int_equal(mkdir(P(m, "d"), 0755), 0);
	put_file(P(m, "f"), "data", 4);
	put_file(P(m, "w"), "data", 4);
	put_file(P(m, "recent"), "data", 4);
	assert_int_equal(mkdir(P(m, "s"), 0755), 0);
	put_file(P(m, "s/f"), "data", 4);

	/* Read after a change (atime before mtime): updated. */
	set_times(P(m, "f"), past, past + 10);
	access_once(P(m, "f"), O_RDONLY);
	assert_true(atime_of(P(m, "f")) >= now);
	/* Accessed since the last change, less than a day ago: kept (the
	 * atime is set ahead of ctime, which utimensat made now). */
	set_times(P(m, "recent"), now + 3600, past);
	access_once(P(m, "recent"), O_RDONLY);
	assert_int_equal(atime_of(P(m, "recent")), now + 3600);
	/* Opened only to write: not an access. */
	set_times(P(m, "w"), past, past + 10);
	access_once(P(m, "w"), O_WRONLY);
	assert_int_equal(atime_of(P(m, "w")), past);
	/* A directory listed. */
	set_times(P(m, "d"), past, past + 10);
	access_once(P(m, "d"), O_RDONLY | O_DIRECTORY);
	assert_true(atime_of(P(m, "d")) >= now);
	/* Sealed content keeps its times. */
	set_times(P(m, "s/f"), past, past + 10);
	set_times(P(m, "s"), past, past + 10);
	assert_int_equal(setxattr(P(m, "s"), "user.snapfs.sealed", "1", 1, 0), 0);
	access_once(P(m, "s/f"), O_RDONLY);
	access_once(P(m, "s"), O_RDONLY | O_DIRECTORY);
	assert_int_equal(atime_of(P(m, "s/f")), past);
	assert_int_equal(atime_of(P(m, "s")), past);

	/* -o noatime: nothing is updated. */
	mnt_stop(m);
	mnt_start_opts(m, "noatime");
	set_times(P(m, "f"), past, past + 10);
	set_times(P(m, "d"), past, past + 10);
	access_once(P(m, "f"), O_RDONLY);
	access_once(P(m, "d"), O_RDONLY | O_DIRECTORY);
	assert_int_equal(atime_of(P(m, "f")), past);
	assert_int_equal(atime_of(P(m, "d")), past);
}

/* A file handle of path (name_to_handle_at), malloc'ed. */
static struct file_handle *handle_of(const char *path)
{
	struct file_handle *h = calloc(1, sizeof(*h) + MAX_HANDLE_SZ);
	h->handle_bytes = MAX_HANDLE_SZ;
	int mount_id;
	assert_int_equal(name_to_handle_at(AT_FDCWD, path, h, &mount_id, 0), 0);
	return h;
}

/*
 * File handles name inodes by number, which the store never reuses: a
 * handle taken before a remount opens the same file and directory after
 * it, when the kernel holds neither inode and must find them through the
 * daemon.  (open_by_handle_at needs CAP_DAC_READ_SEARCH: as another user
 * only the handles are taken.)
 */
static void test_fs_file_handles(void **state)
{
	struct mnt *m = *state;
	assert_int_equal(mkdir(P(m, "d"), 0755), 0);
	assert_int_equal(mkdir(P(m, "d/sub"), 0755), 0);
	put_file(P(m, "d/f"), "handle", 6);
	struct file_handle *hf = handle_of(P(m, "d/f")), *hd = handle_of(P(m, "d/sub"));
	if (geteuid() != 0) {
		print_message("not root: handles taken, not opened\n");
		free(hf);
		free(hd);
		return;
	}
	mnt_stop(m);
	mnt_start(m);
	int root = open(m->mnt, O_RDONLY | O_DIRECTORY);
	assert_true(root >= 0);
	int fd = open_by_handle_at(root, hf, O_RDONLY);
	assert_true(fd >= 0);
	char buf[8];
	assert_int_equal(read(fd, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "handle", 6);
	close(fd);
	/* The directory, and from it its parent: ".." looked up too. */
	fd = open_by_handle_at(root, hd, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstatat(fd, "../f", &st, 0), 0);
	assert_int_equal(st.st_size, 6);
	close(fd);
	/* A handle of a removed file is stale, at once (the daemon deletes
	 * the file a little later) and after a remount. */
	assert_int_equal(unlink(P(m, "d/f")), 0);
	assert_int_equal(open_by_handle_at(root, hf, O_RDONLY), -1);
	assert_int_equal(errno, ESTALE);
	close(root);
	mnt_stop(m);
	mnt_start(m);
	root = open(m->mnt, O_RDONLY | O_DIRECTORY);
	assert_int_equal(open_by_handle_at(root, hf, O_RDONLY), -1);
	assert_int_equal(errno, ESTALE);
	close(root);
	free(hf);
	free(hd);
}

/*
 * What an unprivileged writer does in test_fs_setid, in a child: as user
 * 65534 when the test runs as root (the mount then allows other users),
 * else as the test's own user.  Exits 0 if every call succeeded.
 */
static void setid_writer(struct mnt *m)
{
	if (geteuid() == 0 && (setgroups(0, NULL) || setgid(65534) || setuid(65534)))
		_exit(2);
	const char *wronly[] = { "suid", "sgid", "sgid-noexec" };
	for (size_t i = 0; i < 3; i++) {
		int fd = open(P(m, "%s", wronly[i]), O_WRONLY);
		if (fd < 0 || pwrite(fd, "w", 1, 4096) != 1 || close(fd))
			_exit(3);
	}
	int fd = open(P(m, "suid-rdwr"), O_RDWR);
	if (fd < 0 || pwrite(fd, "w", 1, 0) != 1 || close(fd))
		_exit(4);
	fd = open(P(m, "suid-trunc"), O_WRONLY | O_TRUNC);
	if (fd < 0 || close(fd))
		_exit(5);
	/* Made setuid by its owner while a write-only handle is open. */
	fd = open(P(m, "mine"), O_WRONLY);
	if (fd < 0 || chmod(P(m, "mine"), 04777) || pwrite(fd, "w", 1, 0) != 1 || close(fd))
		_exit(6);
	_exit(0);
}

/* As root, mount m again so that user 65534 can use it: through the test
 * folder, and past FUSE's rule that only the mounting user may use a
 * mount.  False (nothing done) when not root. */
static bool let_nobody_in(struct mnt *m)
{
	if (geteuid() != 0)
		return false;
	mnt_stop(m);
	assert_int_equal(chmod(m->dir, 0755), 0);
	mnt_start_opts(m, "allow_other");
	return true;
}

static void make_setid(struct mnt *m, const char *name, mode_t mode)
{
	put_file(P(m, "%s", name), "data", 4);
	assert_int_equal(chmod(P(m, "%s", name), mode), 0);
}

static mode_t mode_of(struct mnt *m, const char *name)
{
	struct stat st;
	assert_int_equal(stat(P(m, "%s", name), &st), 0);
	return st.st_mode & 07777;
}

/* Writes and O_TRUNC by a caller without CAP_FSETID clear setuid, and
 * setgid with group execute, whichever way they reach the daemon. */
/*
 * Times before 1970 keep their fraction; times past the range of int64
 * nanoseconds (1677 to 2262) are clamped to its ends, not wrapped.
 */
static void test_fs_times_range(void **state)
{
	struct mnt *m = *state;
	put_file(P(m, "t"), "x", 1);
	static const struct {
		time_t sec;
		long nsec;
		time_t want_sec;
		long want_nsec;
	} cases[] = {
		{ -1, 500000000, -1, 500000000 },
		{ -2, 999999999, -2, 999999999 },
		{ -1000000001, 1, -1000000001, 1 },
		{ 1700000000, 123456789, 1700000000, 123456789 },
		{ 32503680000, 0, 9223372036, 854775807 },	/* year 3000 */
		{ -32503680000, 0, -9223372037, 145224192 },	/* year -60 */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timespec ts[2] = { { cases[i].sec, cases[i].nsec },
					  { cases[i].sec, cases[i].nsec } };
		assert_int_equal(utimensat(AT_FDCWD, P(m, "t"), ts, 0), 0);
		for (int fresh = 0; fresh < 2; fresh++) {
			struct stat st;
			if (fresh) {	/* from the store, not the setattr reply */
				mnt_stop(m);
				mnt_start(m);
			}
			assert_int_equal(stat(P(m, "t"), &st), 0);
			if (st.st_mtim.tv_sec != cases[i].want_sec ||
			    st.st_mtim.tv_nsec != cases[i].want_nsec ||
			    st.st_atim.tv_sec != cases[i].want_sec ||
			    st.st_atim.tv_nsec != cases[i].want_nsec)
				fail_msg("set %lld.%09ld: got mtime %lld.%09ld atime %lld.%09ld",
					 (long long)cases[i].sec, cases[i].nsec,
					 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
					 (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec);
		}
	}
}

/* The largest file size the daemon takes (STORE_MAX_FILE_SIZE). */
#define MAX_FILE_SIZE (4ull << 40)

/*
 * A file may reach 4 TiB and no further: a write, truncate, allocation
 * or clone past it fails with EFBIG and changes nothing, and one byte
 * written far out (where the daemon's map index once took 16 GiB and
 * the kernel killed it) leaves the daemon serving.  The byte at the
 * limit's last offset is kept across a remount.
 */
static void test_fs_file_size_limit(void **state)
{
	struct mnt *m = *state;
	int fd = open(P(m, "big"), O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	static const off_t far[] = { 1000ll << 40, 1ll << 50, MAX_FILE_SIZE };
	for (size_t i = 0; i < sizeof(far) / sizeof(far[0]); i++) {
		errno = 0;
		assert_int_equal(pwrite(fd, "x", 1, far[i]), -1);
		assert_int_equal(errno, EFBIG);
	}
	assert_int_equal(pwrite(fd, "x", 1, MAX_FILE_SIZE - 1), 1);
	assert_int_equal(ftruncate(fd, MAX_FILE_SIZE + 1), -1);
	assert_int_equal(errno, EFBIG);
	assert_int_equal(fallocate(fd, FALLOC_FL_KEEP_SIZE, MAX_FILE_SIZE - 4096, 8192), -1);
	assert_int_equal(errno, EFBIG);
	int src = open(P(m, "src"), O_RDWR | O_CREAT, 0644);
	assert_true(src >= 0);
	assert_int_equal(pwrite(src, "yz", 2, 0), 2);
	loff_t in = 0, out = MAX_FILE_SIZE - 1;
	assert_int_equal(copy_file_range(src, &in, fd, &out, 2, 0), -1);
	assert_int_equal(errno, EFBIG);
	close(src);
	assert_int_equal(fsync(fd), 0);
	close(fd);

	mnt_stop(m);
	mnt_start(m);
	struct stat st;
	assert_int_equal(stat(P(m, "big"), &st), 0);
	assert_int_equal(st.st_size, MAX_FILE_SIZE);
	assert_int_equal(st.st_blocks, 4096 / 512);
	fd = open(P(m, "big"), O_RDONLY);
	assert_true(fd >= 0);
	char c[2] = { 0 };
	assert_int_equal(pread(fd, c, 2, MAX_FILE_SIZE - 2), 2);
	assert_memory_equal(c, "\0x", 2);
	assert_int_equal(lseek(fd, 0, SEEK_DATA), MAX_FILE_SIZE - 4096);
	close(fd);
	assert_int_equal(truncate(P(m, "big"), 0), 0);
}

static gid_t gid_of(struct mnt *m, const char *rel)
{
	struct stat st;
	assert_int_equal(lstat(P(m, "%s", rel), &st), 0);
	return st.st_gid;
}

/*
 * Entries made in a setgid directory take its group, and directories its
 * setgid bit, as on a local filesystem.  (Only root can give the folder a
 * group other than its own; other users check the bit alone.)
 */
static void test_fs_setgid_dir(void **state)
{
	struct mnt *m = *state;
	bool root = geteuid() == 0;
	gid_t g = root ? 1234 : getegid();
	assert_int_equal(mkdir(P(m, "pd"), 0755), 0);
	if (root)
		assert_int_equal(chown(P(m, "pd"), (uid_t)-1, g), 0);
	assert_int_equal(chmod(P(m, "pd"), 02755), 0);
	put_file(P(m, "pd/f"), "x", 1);
	assert_int_equal(mkdir(P(m, "pd/d"), 0755), 0);
	assert_int_equal(mkdir(P(m, "pd/d/e"), 0755), 0);
	assert_int_equal(symlink("f", P(m, "pd/l")), 0);
	assert_int_equal(mkfifo(P(m, "pd/p"), 0644), 0);
	static const char *const made[] = { "pd/f", "pd/d", "pd/d/e", "pd/l", "pd/p" };
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++)
		assert_int_equal(gid_of(m, made[i]), g);
	assert_int_equal(mode_of(m, "pd/d"), 02755);
	assert_int_equal(mode_of(m, "pd/d/e"), 02755);
	assert_int_equal(mode_of(m, "pd/f"), 0644);
	if (root) {
		/* Without the bit the creator's group, as before. */
		assert_int_equal(mkdir(P(m, "qd"), 0755), 0);
		assert_int_equal(chown(P(m, "qd"), (uid_t)-1, g), 0);
		put_file(P(m, "qd/f"), "x", 1);
		assert_int_equal(gid_of(m, "qd/f"), getegid());
	}
}

/* Become root without CAP_FSETID in the effective set (g unused). */
static bool become_root_without_fsetid(gid_t g)
{
	(void)g;
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d))
		return false;
	d[0].effective &= ~(1u << CAP_FSETID);
	return !syscall(SYS_capset, &h, d);
}

/* Become user 65534, in group 65534 and, if g is not 65534, in g too. */
static bool become_nobody(gid_t g)
{
	return !setgroups(g != 65534, &g) && !setresgid(65534, 65534, 65534) &&
	       !setresuid(65534, 65534, 65534);
}

/* Run fn(path, arg) in a child that became another caller by become(g)
 * (only root may): fn's result; 100 means become failed. */
static int in_child(bool (*become)(gid_t), gid_t g, int (*fn)(const char *, const void *),
		    const char *path, const void *arg)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(become(g) ? fn(path, arg) : 100);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 100);
	return WEXITSTATUS(st);
}

/* Write a byte at 0 through a write-only handle: 0, or the errno. */
static int write_a_byte(const char *path, const void *unused)
{
	(void)unused;
	int fd = open(path, O_WRONLY);
	if (fd < 0 || pwrite(fd, "w", 1, 0) != 1)
		return errno;
	return close(fd) ? errno : 0;
}

static void test_fs_setid(void **state)
{
	struct mnt *m = *state;
	bool root = let_nobody_in(m);
	make_setid(m, "suid", 04777);
	make_setid(m, "sgid", 02777);
	make_setid(m, "sgid-noexec", 02767);
	make_setid(m, "suid-rdwr", 04777);
	make_setid(m, "suid-trunc", 04777);
	make_setid(m, "mine", 0777);
	if (root)
		assert_int_equal(chown(P(m, "mine"), 65534, 65534), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		setid_writer(m);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(mode_of(m, "suid"), 0777);
	assert_int_equal(mode_of(m, "sgid"), 0777);
	assert_int_equal(mode_of(m, "sgid-noexec"), 02767);
	assert_int_equal(mode_of(m, "suid-rdwr"), 0777);
	assert_int_equal(mode_of(m, "suid-trunc"), 0777);
	assert_int_equal(mode_of(m, "mine"), 0777);
	char buf[4097];
	assert_int_equal(get_file(P(m, "suid"), buf, sizeof(buf)), 4097);
	assert_int_equal(buf[4096], 'w');

	/* Root keeps the bits when it writes, by CAP_FSETID: without
	 * it, it does not. */
	if (root) {
		make_setid(m, "root", 06777);
		assert_int_equal(write_a_byte(P(m, "root"), NULL), 0);
		assert_int_equal(mode_of(m, "root"), 06777);
		assert_int_equal(in_child(become_root_without_fsetid, 0, write_a_byte, P(m, "root"),
					  NULL),
				 0);
		assert_int_equal(mode_of(m, "root"), 0777);
	}
}

/* ---- POSIX ACLs ---- */

enum { A_USER_OBJ = 1, A_USER = 2, A_GROUP_OBJ = 4, A_MASK = 0x10, A_OTHER = 0x20 };
#define A_ANY 0xffffffffu

/* The permissions of the first entry with tag in the ACL xattr name of
 * path, or -1 if it has none. */
static int acl_perm(const char *path, const char *name, unsigned tag)
{
	uint8_t buf[512];
	ssize_t n = getxattr(path, name, buf, sizeof(buf));
	assert_true(n >= 4);
	for (ssize_t at = 4; at + 8 <= n; at += 8) {
		uint16_t t, perm;
		memcpy(&t, buf + at, 2);
		memcpy(&perm, buf + at + 2, 2);
		if (t == tag)
			return perm;
	}
	return -1;
}

/* Open path to read: 0, or the errno. */
static int open_to_read(const char *path, const void *unused)
{
	(void)unused;
	int fd = open(path, O_RDONLY);
	return fd < 0 ? errno : close(fd) ? errno : 0;
}

/* Can user and group 65534 read path (root only: a child drops to them)? */
static bool nobody_reads(const char *path)
{
	int r = in_child(become_nobody, 65534, open_to_read, path, NULL);
	assert_true(r == 0 || r == EACCES);
	return r == 0;
}

/* Set the access ACL arg (a struct acl_arg) on path: 0, or the errno. */
struct acl_arg {
	const void *acl;
	size_t n;
};

static int set_acl(const char *path, const void *arg)
{
	const struct acl_arg *a = arg;
	return setxattr(path, "system.posix_acl_access", a->acl, a->n, 0) ? errno : 0;
}

/*
 * POSIX ACLs: setting one sets the permission bits (the group bits show
 * the mask) and the kernel grants what it says; chmod rewrites it; an ACL
 * that says no more than the bits is not kept; a folder's default ACL
 * replaces the umask for what is made in it, and a new folder keeps it;
 * without one the umask applies (the kernel leaves it to the daemon);
 * sealed files refuse ACL changes; malformed ACLs are refused; an ACL
 * set by a caller neither root nor in the file's group clears its
 * set-group-ID bit.
 */
static void test_fs_acls(void **state)
{
	struct mnt *m = *state;
	bool root = let_nobody_in(m);
	mode_t old_umask = umask(022);
	uint8_t acl[256], def[256];
	char f[PATH_MAX], d[PATH_MAX];	/* P's buffers are reused */
	snprintf(f, sizeof(f), "%s", P(m, "f"));
	snprintf(d, sizeof(d), "%s", P(m, "d"));
	put_file(f, "acl", 3);
	assert_int_equal(chmod(f, 0600), 0);
	if (root)
		assert_false(nobody_reads(f));
	const uint32_t named[][3] = {
		{ A_USER_OBJ, 6, A_ANY }, { A_USER, 4, 65534 }, { A_GROUP_OBJ, 0, A_ANY },
		{ A_MASK, 4, A_ANY }, { A_OTHER, 0, A_ANY },
	};
	size_t n = tu_acl_make(acl, named, 5);
	assert_int_equal(setxattr(f, "system.posix_acl_access", acl, n, 0), 0);
	assert_int_equal(mode_of(m, "f"), 0640);	/* the mask's bits */
	uint8_t back[256];
	assert_int_equal(getxattr(f, "system.posix_acl_access", back, sizeof(back)), (ssize_t)n);
	assert_memory_equal(back, acl, n);
	char list[256];
	ssize_t ln = listxattr(f, list, sizeof(list));
	assert_non_null(memmem(list, (size_t)ln, "system.posix_acl_access", 24));
	if (root)
		assert_true(nobody_reads(f));
	/* chmod sets the mask (the group bits), the owner's and others'. */
	assert_int_equal(chmod(f, 0604), 0);
	assert_int_equal(mode_of(m, "f"), 0604);
	assert_int_equal(acl_perm(f, "system.posix_acl_access", A_MASK), 0);
	assert_int_equal(acl_perm(f, "system.posix_acl_access", A_OTHER), 4);
	assert_int_equal(acl_perm(f, "system.posix_acl_access", A_USER), 4);
	assert_int_equal(chmod(f, 0600), 0);
	if (root)
		assert_false(nobody_reads(f));
	/* Only the base entries: the bits say it all. */
	const uint32_t base[][3] = { { A_USER_OBJ, 7, A_ANY }, { A_GROUP_OBJ, 4, A_ANY },
				     { A_OTHER, 1, A_ANY } };
	n = tu_acl_make(acl, base, 3);
	assert_int_equal(setxattr(f, "system.posix_acl_access", acl, n, 0), 0);
	assert_int_equal(mode_of(m, "f"), 0741);
	assert_int_equal(getxattr(f, "system.posix_acl_access", back, sizeof(back)), -1);
	assert_int_equal(errno, ENODATA);
	/* Removing an ACL that is not there is no error (tar does). */
	assert_int_equal(removexattr(f, "system.posix_acl_access"), 0);
	assert_int_equal(mode_of(m, "f"), 0741);
	/* Malformed: no owner entry; a default ACL on a file. */
	n = tu_acl_make(acl, base + 1, 2);
	assert_int_equal(setxattr(f, "system.posix_acl_access", acl, n, 0), -1);
	assert_int_equal(errno, EINVAL);
	n = tu_acl_make(acl, base, 3);
	assert_int_equal(setxattr(f, "system.posix_acl_default", acl, n, 0), -1);
	assert_int_equal(errno, EACCES);

	/* Set-group-ID: kept when root or a member of the file's group
	 * (0) sets the ACL, cleared when its owner outside the group does
	 * (as chmod(2) would). */
	if (root) {
		char sg[PATH_MAX];
		snprintf(sg, sizeof(sg), "%s", P(m, "sg"));
		put_file(sg, "sg", 2);
		assert_int_equal(chown(sg, 65534, 0), 0);
		n = tu_acl_make(acl, named, 5);
		assert_int_equal(chmod(sg, 02770), 0);
		assert_int_equal(setxattr(sg, "system.posix_acl_access", acl, n, 0), 0);
		assert_int_equal(mode_of(m, "sg"), 02640);
		assert_int_equal(chmod(sg, 02770), 0);
		struct acl_arg aa = { acl, n };
		assert_int_equal(in_child(become_nobody, 0, set_acl, sg, &aa), 0);
		assert_int_equal(mode_of(m, "sg"), 02640);
		assert_int_equal(chmod(sg, 02770), 0);
		assert_int_equal(in_child(become_nobody, 65534, set_acl, sg, &aa), 0);
		assert_int_equal(mode_of(m, "sg"), 0640);
		assert_int_equal(acl_perm(sg, "system.posix_acl_access", A_USER), 4);
		/* Root outside the group (65534) keeps it by CAP_FSETID,
		 * and without that loses it. */
		assert_int_equal(chown(sg, 65534, 65534), 0);
		assert_int_equal(chmod(sg, 02770), 0);
		assert_int_equal(setxattr(sg, "system.posix_acl_access", acl, n, 0), 0);
		assert_int_equal(mode_of(m, "sg"), 02640);
		assert_int_equal(chmod(sg, 02770), 0);
		assert_int_equal(in_child(become_root_without_fsetid, 0, set_acl, sg, &aa), 0);
		assert_int_equal(mode_of(m, "sg"), 0640);
	}

	/* Inheritance: the default ACL, not the umask (077 here), limited
	 * by the mode asked for. */
	assert_int_equal(mkdir(d, 0755), 0);
	const uint32_t dflt[][3] = {
		{ A_USER_OBJ, 7, A_ANY }, { A_USER, 7, 65534 }, { A_GROUP_OBJ, 5, A_ANY },
		{ A_MASK, 7, A_ANY }, { A_OTHER, 0, A_ANY },
	};
	size_t dn = tu_acl_make(def, dflt, 5);
	assert_int_equal(setxattr(d, "system.posix_acl_default", def, dn, 0), 0);
	umask(077);
	put_file(P(m, "d/f"), "in", 2);		/* asks for 0644 */
	assert_int_equal(mode_of(m, "d/f"), 0640);
	assert_int_equal(acl_perm(P(m, "d/f"), "system.posix_acl_access", A_USER), 7);
	assert_int_equal(acl_perm(P(m, "d/f"), "system.posix_acl_access", A_MASK), 4);
	assert_int_equal(mkdir(P(m, "d/sub"), 0777), 0);
	assert_int_equal(mode_of(m, "d/sub"), 0770);
	assert_int_equal(getxattr(P(m, "d/sub"), "system.posix_acl_default", back, sizeof(back)),
			 (ssize_t)dn);
	assert_memory_equal(back, def, dn);
	assert_int_equal(mkfifo(P(m, "d/sub/fifo"), 0666), 0);	/* two levels down */
	assert_int_equal(mode_of(m, "d/sub/fifo"), 0660);
	if (root)
		assert_true(nobody_reads(P(m, "d/f")));
	/* No default ACL: the umask. */
	umask(027);
	put_file(P(m, "g"), "g", 1);
	assert_int_equal(mode_of(m, "g"), 0640);
	assert_int_equal(mkdir(P(m, "e"), 0777), 0);
	assert_int_equal(mode_of(m, "e"), 0750);
	umask(old_umask);

	/* Sealed: no ACL change, no chmod; the ACL stays. */
	assert_int_equal(setxattr(d, "user.snapfs.sealed", "1", 1, 0), 0);
	n = tu_acl_make(acl, named, 5);
	assert_int_equal(setxattr(P(m, "d/f"), "system.posix_acl_access", acl, n, 0), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(chmod(P(m, "d/f"), 0600), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(removexattr(P(m, "d/f"), "system.posix_acl_access"), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(acl_perm(P(m, "d/f"), "system.posix_acl_access", A_USER), 7);
	/* All of it kept across a remount. */
	mnt_stop(m);
	mnt_start_opts(m, root ? "allow_other" : NULL);
	assert_int_equal(mode_of(m, "d/f"), 0640);
	assert_int_equal(acl_perm(P(m, "d/f"), "system.posix_acl_access", A_USER), 7);
	if (root)
		assert_true(nobody_reads(P(m, "d/f")));

	/* -o noacl: the bits alone decide; the ACLs kept are neither
	 * shown nor used, and none can be set, until a mount with ACLs. */
	n = tu_acl_make(acl, named, 5);
	assert_int_equal(chmod(f, 0600), 0);
	assert_int_equal(setxattr(f, "system.posix_acl_access", acl, n, 0), 0);
	assert_int_equal(setxattr(f, "user.k", "v", 1, 0), 0);
	mnt_stop(m);
	mnt_start_opts(m, root ? "allow_other,noacl" : "noacl");
	assert_int_equal(mode_of(m, "f"), 0640);
	if (root)
		assert_false(nobody_reads(f));
	assert_int_equal(getxattr(f, "system.posix_acl_access", back, sizeof(back)), -1);
	assert_int_equal(listxattr(f, NULL, 0), 7);
	assert_int_equal(listxattr(f, list, 6), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(listxattr(f, list, sizeof(list)), 7);
	assert_memory_equal(list, "user.k", 7);
	assert_int_equal(setxattr(f, "system.posix_acl_access", acl, n, 0), -1);
	assert_int_equal(errno, EOPNOTSUPP);
	mnt_stop(m);
	mnt_start_opts(m, root ? "allow_other" : NULL);
	assert_int_equal(getxattr(f, "system.posix_acl_access", back, sizeof(back)), (ssize_t)n);
	assert_memory_equal(back, acl, n);
	if (root)
		assert_true(nobody_reads(f));
}

#define BIG_FILES 1500
#define BIG_DIRS 100
#define BIG_NAMES (BIG_FILES + BIG_DIRS)

/* A folder's entries read with getdents64 into a small buffer, so that
 * the kernel asks the daemon for a few at a time (through glibc's readdir,
 * whose buffer follows st_blksize, one request holds a folder this big). */
struct dents {
	int fd;
	_Alignas(struct dirent64) char buf[4096];
	ssize_t len, at;
};

static struct dirent64 *dents_next(struct dents *d)
{
	if (d->at >= d->len) {
		d->len = getdents64(d->fd, d->buf, sizeof(d->buf));
		assert_true(d->len >= 0);
		d->at = 0;
		if (d->len == 0)
			return NULL;
	}
	struct dirent64 *de = (struct dirent64 *)(d->buf + d->at);
	d->at += de->d_reclen;
	return de;
}

static void dents_seek(struct dents *d, off_t off)
{
	assert_int_equal(lseek(d->fd, off, SEEK_SET), off);
	d->len = d->at = 0;
}

/* Index of a name in the big folder (files first, then folders), or -1
 * for "." and ".." and names made during a listing. */
static int big_index(const struct dirent64 *de)
{
	int i;
	char tail;
	if (sscanf(de->d_name, "a-file-with-a-longer-name-%d%c", &i, &tail) == 1) {
		assert_int_equal(de->d_type, DT_REG);
		return i;
	}
	if (sscanf(de->d_name, "dir-%d%c", &i, &tail) == 1) {
		assert_int_equal(de->d_type, DT_DIR);
		return BIG_FILES + i;
	}
	return -1;
}

/* Count in seen every name of the big folder that the next n entries of
 * d (all if n < 0) hold. */
static void big_count(struct dents *d, int n, int *seen)
{
	for (struct dirent64 *de; n-- != 0 && (de = dents_next(d));) {
		int i = big_index(de);
		if (i >= 0)
			seen[i]++;
	}
}

/*
 * A folder far too big for one reply to the kernel: every name comes
 * once, with its type, whether the kernel continues with plain readdir
 * (nothing looked up in between) or with readdirplus (lookups in between,
 * where the inode numbers must also match).  A seek to an entry's offset
 * resumes after it; names others add and remove during a listing leave
 * every other name listed exactly once; fsync of the folder succeeds.
 */
static void test_fs_large_dir(void **state)
{
	struct mnt *m = *state;
	assert_int_equal(mkdir(P(m, "big"), 0755), 0);
	for (int i = 0; i < BIG_FILES; i++)
		put_file(P(m, "big/a-file-with-a-longer-name-%05d", i), "x", 1);
	for (int i = 0; i < BIG_DIRS; i++)
		assert_int_equal(mkdir(P(m, "big/dir-%03d", i), 0755), 0);

	static struct dents d;
	d.fd = open(P(m, "big"), O_RDONLY | O_DIRECTORY);
	assert_true(d.fd >= 0);
	int seen[BIG_NAMES];
	for (int pass = 0; pass < 2; pass++) {
		memset(seen, 0, sizeof(seen));
		dents_seek(&d, 0);
		for (struct dirent64 *de; (de = dents_next(&d));) {
			int i = big_index(de);
			if (i < 0)
				continue;
			seen[i]++;
			if (pass == 1) {
				struct stat sb;
				assert_int_equal(fstatat(d.fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW), 0);
				assert_int_equal(sb.st_ino, de->d_ino);
			}
		}
		for (int i = 0; i < BIG_NAMES; i++)
			assert_int_equal(seen[i], 1);
	}

	/* The 10 names after the 300th come again after a seek to its offset. */
	dents_seek(&d, 0);
	struct dirent64 *de = NULL;
	for (int i = 0; i < 300; i++)
		assert_non_null(de = dents_next(&d));
	off_t pos = de->d_off;
	char next[10][NAME_MAX + 1];
	for (int i = 0; i < 10; i++)
		snprintf(next[i], sizeof(next[i]), "%s", dents_next(&d)->d_name);
	dents_seek(&d, pos);
	for (int i = 0; i < 10; i++)
		assert_string_equal(dents_next(&d)->d_name, next[i]);

	/* Others remove 400 files and add 400 while the listing goes on. */
	dents_seek(&d, 0);
	memset(seen, 0, sizeof(seen));
	big_count(&d, 200, seen);
	for (int i = 1000; i < 1400; i++) {
		assert_int_equal(unlink(P(m, "big/a-file-with-a-longer-name-%05d", i)), 0);
		put_file(P(m, "big/new-%03d", i - 1000), "y", 1);
	}
	big_count(&d, -1, seen);
	for (int i = 0; i < BIG_NAMES; i++)
		if (i < 1000 || i >= 1400)
			assert_int_equal(seen[i], 1);
		else
			assert_in_range(seen[i], 0, 1);

	/* A fresh listing holds just what is there now. */
	dents_seek(&d, 0);
	int names = 0;
	while (dents_next(&d))
		names++;
	assert_int_equal(names, 2 + BIG_NAMES);
	assert_int_equal(fsync(d.fd), 0);
	assert_int_equal(fdatasync(d.fd), 0);
	close(d.fd);
}

/* ---- allocations that fail in the daemon (tests/snapfs-hooked.c) ---- */

/* The contents of the file at path, which must be readable (at most size
 * bytes; the test's own allocation). */
static char *read_text(const char *path, size_t size)
{
	char *t = calloc(1, size + 1);
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, t, size);
		assert_true(n >= 0);
		close(fd);
	}
	return t;
}

/* Wait (at most 2 s) until the file at path holds n lines with needle;
 * the nth goes to line (size bytes). */
static void wait_line(const char *path, const char *needle, int n, char *line, size_t size)
{
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(path, "re");
		int seen = 0;
		while (f && fgets(line, (int)size, f))
			if (strstr(line, needle) && ++seen == n)
				break;
		if (f)
			fclose(f);
		if (seen == n)
			return;
		usleep(10000);
	}
	fail_msg("%s: no line %d with \"%s\"", path, n, needle);
}

/* snapfs-admin fsck of m's store (not mounted): its exit status. */
static int fsck_status(struct mnt *m)
{
	char cmd[2 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "'%s/fsd/snapfs-admin' fsck '%s' >/dev/null",
		 getenv("SNAPFS_BUILD_ROOT"), m->store);
	return system(cmd);
}

#define OOM_FILE (256u << 10)

/* The end of a test: m's store, mounted by the plain daemon, holds f as
 * data (back: room for it) and, unless NULL, the one-byte file one_byte;
 * fsck then finds it clean.  Frees m, data and back. */
static void oom_finish(struct mnt *m, char *data, char *back, const char *one_byte)
{
	mnt_start(m);
	assert_int_equal(get_file(P(m, "f"), back, OOM_FILE), OOM_FILE);
	assert_memory_equal(back, data, OOM_FILE);
	if (one_byte)
		assert_int_equal(get_file(P(m, "%s", one_byte), back, OOM_FILE), 1);
	mnt_stop(m);
	assert_int_equal(fsck_status(m), 0);
	free(data);
	free(back);
	assert_int_equal(tu_rmtree(m->dir), 0);
	free(m);
}

/*
 * Each of the daemon's own allocations before it serves requests fails in
 * turn, alone and with every one after it.  The daemon must either end
 * with status 1 and a message that says it ran out of memory and names
 * the store or the mount point, mounting nothing, or serve correctly (a
 * failure it can do without, such as setting read_ahead_kb) and exit 0
 * after the unmount.  The store's file stays intact throughout.
 */
static void test_fs_daemon_start_out_of_memory(void **state)
{
	(void)state;
	struct mnt *m = mnt_new();
	char *data = malloc(OOM_FILE), *back = malloc(OOM_FILE);
	random_bytes(data, OOM_FILE, 11);
	mnt_start(m);
	put_file(P(m, "f"), data, OOM_FILE);
	mnt_stop(m);

	char errpath[PATH_MAX + 16], spec[64];
	snprintf(errpath, sizeof(errpath), "%s/stderr", m->dir);
	int status;
	unsigned long long total = 0, failed;
	setenv("SNAPFS_TEST_FAILALLOC", "start:0", 1);
	assert_true(mnt_spawn(m, "tests/snapfs-hooked", NULL, errpath, &status));
	/* It mounts before its last steps of starting (read_ahead_kb among
	 * them), which an unmount would cut short: wait until it serves. */
	char line[256];
	wait_line(errpath, " allocations before serving, ", 1, line, sizeof(line));
	mnt_stop(m);
	assert_int_equal(sscanf(line, "snapfs-hooked: %llu allocations before serving, %llu failed",
				&total, &failed), 2);
	assert_true(total >= 10);

	unsigned refused = 0, served = 0;
	for (unsigned long long at = 1; at <= total + 1; at++) {
		for (int plus = 0; plus <= 1; plus++) {
			snprintf(spec, sizeof(spec), "start:%llu%s", at, plus ? "+" : "");
			setenv("SNAPFS_TEST_FAILALLOC", spec, 1);
			bool mounted = mnt_spawn(m, "tests/snapfs-hooked", NULL, errpath, &status);
			if (mounted) {
				assert_int_equal(get_file(P(m, "f"), back, OOM_FILE), OOM_FILE);
				assert_memory_equal(back, data, OOM_FILE);
				put_file(P(m, "new-%llu-%d", at, plus), spec, strlen(spec));
				mnt_stop(m);
				served++;
			}
			char *err = read_text(errpath, 4096);
			if (!mounted) {
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 1 ||
				    (!strstr(err, "out of memory") &&
				     !strstr(err, "Cannot allocate memory")) ||
				    !strstr(err, m->dir))
					fail_msg("%s: status %#x, stderr: %s", spec, status, err);
				assert_false(mnt_mounted(m->mnt));
				refused++;
			}
			free(err);
		}
	}
	unsetenv("SNAPFS_TEST_FAILALLOC");
	/* Most allocations are needed; a few (read_ahead_kb, the watch of
	 * the mount's flags) only warn; past the last, all serve. */
	assert_true(refused > total);
	assert_true(served >= 2);

	oom_finish(m, data, back, NULL);
}

/* Run tests/snapfs-hooked STORE MOUNTPOINT -o opts for m, with its stderr
 * in the file errpath, and SNAPFS_TEST_FAILALLOC=fail unless NULL: its
 * exit status (as waitpid). */
static int hooked_run(struct mnt *m, const char *opts, const char *fail, const char *errpath)
{
	char bin[PATH_MAX];
	snprintf(bin, sizeof(bin), "%s/tests/snapfs-hooked", getenv("SNAPFS_BUILD_ROOT"));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (err < 0 || dup2(err, STDERR_FILENO) < 0)
			_exit(127);
		if (fail)
			setenv("SNAPFS_TEST_FAILALLOC", fail, 1);
		execl(bin, "snapfs", m->store, m->mnt, "-o", opts, (char *)NULL);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static bool mnt_read_only(struct mnt *m)
{
	struct statvfs sv;
	assert_int_equal(statvfs(m->mnt, &sv), 0);
	return sv.f_flag & ST_RDONLY;
}

/*
 * A remount (mount -o remount,ro runs snapfs STORE MOUNTPOINT -o
 * remount,ro) with each of its own allocations failing in turn: it must
 * end with status 1 and a message that says it ran out of memory and
 * names the mount point or the store, leaving the mount as it was; past
 * its last allocation it remounts.  (Needs root, as mount(8) does.)
 */
static void test_fs_remount_out_of_memory(void **state)
{
	struct mnt *m = *state;
	char errpath[PATH_MAX + 16], spec[32];
	snprintf(errpath, sizeof(errpath), "%s/stderr", m->dir);
	put_file(P(m, "f"), "f", 1);
	int refused = 0;
	for (int at = 1;; at++) {
		snprintf(spec, sizeof(spec), "start:%d", at);
		int status = hooked_run(m, "remount,ro", spec, errpath);
		char *err = read_text(errpath, 4096);
		bool ro = mnt_read_only(m);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			assert_true(ro);
			free(err);
			break;
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 1 ||
		    (!strstr(err, "out of memory") && !strstr(err, "Cannot allocate memory")) ||
		    (!strstr(err, m->mnt) && !strstr(err, m->store)) || ro)
			fail_msg("%s: status %#x, %s, stderr: %s", spec, status,
				 ro ? "read-only" : "writable", err);
		free(err);
		refused++;
		assert_true(at < 100);
	}
	assert_true(refused > 0);
	assert_int_equal(hooked_run(m, "remount,rw", NULL, errpath), 0);
	assert_false(mnt_read_only(m));
	put_file(P(m, "g"), "g", 1);
	char back[2];
	assert_int_equal(get_file(P(m, "f"), back, sizeof(back)), 1);
	assert_int_equal(back[0], 'f');
}

/* Send sig to the daemon and wait (at most 2 s) until open of path fails
 * with ENOMEM (fail) or works (!fail). */
static void oom_switch(struct mnt *m, int sig, const char *path, bool fail)
{
	assert_int_equal(kill(m->pid, sig), 0);
	for (int i = 0; i < 200; i++) {
		int fd = open(path, O_RDONLY);
		if (fd >= 0)
			close(fd);
		if (fail ? fd < 0 && errno == ENOMEM : fd >= 0)
			return;
		usleep(10000);
	}
	fail_msg("%s: the daemon did not %s failing allocations", path, fail ? "start" : "stop");
}

/* A call made while allocations fail: it works, or fails with ENOMEM (or
 * EIO: the store could not recover from a failed commit, and takes
 * changes again once it can, see test-store-oom).  True if it worked. */
static bool oom_call(const char *what, int r, bool eio_ok)
{
	if (r >= 0)
		return true;
	if (errno != ENOMEM && !(eio_ok && errno == EIO))
		fail_msg("%s while out of memory: %s", what, strerror(errno));
	return false;
}

/*
 * Every allocation of the daemon's own (not libfuse's or SQLite's) on the
 * threads serving requests fails for a while, on a mount that splices
 * reads (opts NULL) or copies them.  Each call must fail with ENOMEM or
 * work, the calls that add a name must add nothing when they fail, the
 * daemon must not crash or leak, and afterwards everything committed
 * before is intact and the store takes changes again.
 */
static void daemon_out_of_memory(const char *opts)
{
	struct mnt *m = mnt_new();
	char *data = malloc(OOM_FILE), *back = malloc(OOM_FILE);
	random_bytes(data, OOM_FILE, 12);
	setenv("SNAPFS_TEST_FAILALLOC", "signal", 1);
	mnt_start_prog(m, "tests/snapfs-hooked", opts);
	unsetenv("SNAPFS_TEST_FAILALLOC");
	assert_int_equal(mkdir(P(m, "d"), 0755), 0);
	for (int i = 0; i < 40; i++)
		put_file(P(m, "d/e%02d", i), "e", 1);
	put_file(P(m, "f"), data, OOM_FILE);
	assert_int_equal(setxattr(P(m, "f"), "user.k", "v", 1, 0), 0);
	int fd = open(P(m, "f"), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);

	oom_switch(m, SIGUSR1, P(m, "f"), true);
	/* Each of these needs memory of the daemon's own on the way. */
	DIR *dir = opendir(P(m, "d"));
	assert_non_null(dir);
	errno = 0;
	assert_null(readdir(dir));
	assert_int_equal(errno, ENOMEM);
	closedir(dir);
	char v[16];
	assert_int_equal(getxattr(P(m, "f"), "user.k", v, sizeof(v)), -1);
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(listxattr(P(m, "f"), v, sizeof(v)), -1);
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(open(P(m, "g"), O_WRONLY | O_CREAT | O_EXCL, 0644), -1);
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(mkdir(P(m, "h"), 0755), -1);
	assert_int_equal(errno, ENOMEM);
	assert_int_equal(symlink("f", P(m, "s")), -1);
	assert_int_equal(errno, ENOMEM);
	/* These may get by, or not. */
	bool read_ok = oom_call("read", (int)pread(fd, back, 65536, 0), false);
	if (read_ok)
		assert_memory_equal(back, data, 65536);
	bool renamed = oom_call("rename", rename(P(m, "d/e01"), P(m, "d/e01b")), true);
	bool unlinked = oom_call("unlink", unlink(P(m, "d/e02")), true);
	bool wrote = oom_call("write", (int)pwrite(fd, "x", 1, 5), true);
	oom_call("fsync", fsync(fd), true);
	oom_switch(m, SIGUSR2, P(m, "f"), false);

	/* Nothing the failed calls would have added is there (asked of
	 * the daemon: the kernel keeps the names it found missing). */
	assert_int_equal(dir_names(P(m, ""), NULL), 2 + 2);
	assert_int_equal(dir_names(P(m, ""), "f"), 1);
	assert_int_equal(dir_names(P(m, ""), "d"), 1);
	/* The rest is as the calls that worked left it. */
	assert_int_equal(dir_names(P(m, "d"), "e01b"), renamed);
	assert_int_equal(dir_names(P(m, "d"), "e01"), !renamed);
	assert_int_equal(dir_names(P(m, "d"), "e02"), !unlinked);
	assert_int_equal(dir_names(P(m, "d"), NULL), 2 + 40 - unlinked);
	if (wrote)
		data[5] = 'x';
	assert_int_equal(pread(fd, back, OOM_FILE, 0), OOM_FILE);
	assert_memory_equal(back, data, OOM_FILE);
	assert_int_equal(getxattr(P(m, "f"), "user.k", v, sizeof(v)), 1);
	/* It takes changes again. */
	assert_int_equal(pwrite(fd, "y", 1, 6), 1);
	data[6] = 'y';
	/* A write that failed in the window may be told again at close,
	 * as the store dropped what the file had not committed then. */
	if (close(fd) != 0 && (wrote || (errno != ENOMEM && errno != EIO)))
		fail_msg("close after the window: %s", strerror(errno));
	assert_int_equal(mkdir(P(m, "h"), 0755), 0);
	put_file(P(m, "g"), "g", 1);
	mnt_stop(m);

	oom_finish(m, data, back, "g");
}

static void test_fs_daemon_out_of_memory(void **state)
{
	(void)state;
	daemon_out_of_memory(NULL);
	daemon_out_of_memory("nosplice");
}

/* The calls that add a name, each making name in m's root (0, or -1
 * and errno); link and symlink point at the file f. */
static int add_file(struct mnt *m, const char *name)
{
	int fd = open(P(m, "%s", name), O_WRONLY | O_CREAT | O_EXCL, 0644);
	return fd < 0 ? -1 : close(fd);
}

static int add_dir(struct mnt *m, const char *name)
{
	return mkdir(P(m, "%s", name), 0755);
}

static int add_fifo(struct mnt *m, const char *name)
{
	return mknod(P(m, "%s", name), S_IFIFO | 0644, 0);
}

static int add_symlink(struct mnt *m, const char *name)
{
	return symlink("f", P(m, "%s", name));
}

static int add_link(struct mnt *m, const char *name)
{
	return link(P(m, "f"), P(m, "%s", name));
}

/*
 * Each allocation of the daemon's own that a call adding a name makes
 * (open with O_CREAT, mkdir, mknod, symlink, link) fails in turn, alone.
 * The call must then work, or fail with ENOMEM and leave no name behind;
 * past its last allocation it works.  The store stays clean.
 */
static void test_fs_add_name_out_of_memory(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		int (*add)(struct mnt *m, const char *name);
	} calls[] = {
		{ "create", add_file },	  { "mkdir", add_dir },	  { "mknod", add_fifo },
		{ "symlink", add_symlink }, { "link", add_link },
	};
	struct mnt *m = mnt_new();
	char *data = malloc(OOM_FILE), *back = malloc(OOM_FILE);
	random_bytes(data, OOM_FILE, 13);
	char errpath[PATH_MAX + 16], line[256];
	snprintf(errpath, sizeof(errpath), "%s/stderr", m->dir);
	setenv("SNAPFS_TEST_FAILALLOC", "signal", 1);
	int status;
	assert_true(mnt_spawn(m, "tests/snapfs-hooked", NULL, errpath, &status));
	unsetenv("SNAPFS_TEST_FAILALLOC");
	put_file(P(m, "f"), data, OOM_FILE);

	int round = 0, added = 0;
	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++) {
		int refused = 0;
		for (int at = 1;; at++) {
			char name[64];
			snprintf(name, sizeof(name), "%s-%d", calls[c].what, at);
			round++;
			assert_int_equal(sigqueue(m->pid, SIGUSR1, (union sigval){ .sival_int = at }), 0);
			wait_line(errpath, "snapfs-hooked: armed", round, line, sizeof(line));
			int r = calls[c].add(m, name);
			int e = errno;
			assert_int_equal(kill(m->pid, SIGUSR2), 0);
			wait_line(errpath, " allocations, ", round, line, sizeof(line));
			unsigned long long counted, failed;
			assert_int_equal(sscanf(line, "snapfs-hooked: %llu allocations, %llu failed",
						&counted, &failed), 2);
			if (r != 0 && e != ENOMEM)
				fail_msg("%s with allocation %d failing: %s", name, at, strerror(e));
			/* Asked of the daemon: the kernel keeps missing names. */
			if (dir_names(P(m, ""), name) != (r == 0))
				fail_msg("%s %s, and its name is %s", name,
					 r == 0 ? "worked" : "failed", r == 0 ? "missing" : "there");
			added += r == 0;
			refused += r != 0;
			if (!failed) {
				assert_int_equal(r, 0);
				break;
			}
			assert_true(at < 200);
		}
		/* The first allocation is always needed. */
		if (!refused)
			fail_msg("%s never failed", calls[c].what);
	}
	assert_int_equal(dir_names(P(m, ""), NULL), 2 + 1 + added);
	mnt_stop(m);
	oom_finish(m, data, back, NULL);
}

/* A comm line naming the thread arg. */
static bool named(const char *line, const void *arg)
{
	size_t n = strlen(arg);
	return !strncmp(line, arg, n) && (line[n] == '\n' || !line[n]);
}

/* Threads of process pid named comm. */
static int threads_named(pid_t pid, const char *comm)
{
	return threads_where(pid, "comm", named, comm);
}

struct seek_arg {
	int fd;
	off_t got;
	int err;
};

static void *seek_thread(void *arg)
{
	struct seek_arg *a = arg;
	a->got = lseek(a->fd, 0, SEEK_DATA);
	a->err = a->got < 0 ? errno : 0;
	return NULL;
}

/*
 * The session loop starts its workers without allocating: with every
 * allocation of the daemon's own failing, calls that each wait in the
 * store (the test hook pauses lseek after saying it waits, in a file
 * each) are still served side by side, each by a worker of its own, with
 * one more listening.  (An allocation there would also take a failure
 * meant for the request being served.)  Workers stay once started, and
 * a loaded machine starts some while the files are made (up to the
 * default 10 was seen), so files are made until there are two more than
 * workers, under a max_threads with room for them: at least three
 * workers must start.
 */
#define SEEKERS_MAX 39	/* -o max_threads=40, less the listener */
static void test_fs_loop_starts_workers_without_allocating(void **state)
{
	(void)state;
	struct mnt *m = mnt_new();
	setenv("SNAPFS_TEST_FAILALLOC", "signal", 1);
	setenv("SNAPFS_TEST_PAUSE", "seek:1000:wait", 1);
	mnt_start_prog(m, "tests/snapfs-hooked", "max_threads=40");
	unsetenv("SNAPFS_TEST_FAILALLOC");
	unsetenv("SNAPFS_TEST_PAUSE");
	put_file(P(m, "f"), "data", 4);
	struct seek_arg args[SEEKERS_MAX];
	pthread_t th[SEEKERS_MAX];
	/* Files of their own: the kernel seeks one file at a time. */
	int files = 0, before;
	while ((before = threads_named(m->pid, "snapfs-worker")) + 2 > files) {
		assert_true(files < SEEKERS_MAX);
		put_file(P(m, "s%d", files), "data", 4);
		args[files].fd = open(P(m, "s%d", files), O_RDONLY);
		assert_true(args[files].fd >= 0);
		files++;
	}
	int seekers = before + 2;
	assert_true(before >= 1);
	oom_switch(m, SIGUSR1, P(m, "f"), true);
	for (int i = 0; i < seekers; i++)
		assert_int_equal(pthread_create(&th[i], NULL, seek_thread, &args[i]), 0);
	int most = 0;
	for (int i = 0; i < 100 && most < seekers + 1; i++) {
		int n = threads_named(m->pid, "snapfs-worker");
		most = n > most ? n : most;
		usleep(10000);
	}
	for (int i = 0; i < seekers; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].err, 0);
		assert_int_equal(args[i].got, 0);
	}
	for (int i = 0; i < files; i++)
		close(args[i].fd);
	assert_int_equal(most, seekers + 1);
	oom_switch(m, SIGUSR2, P(m, "f"), false);
	mnt_stop(m);
	assert_int_equal(tu_rmtree(m->dir), 0);
	free(m);
}

int main(void)
{
	tu_require_fuse();
	if (!getenv("SNAPFS_BUILD_ROOT"))
		tu_skip_all("SNAPFS_BUILD_ROOT is not set");
	tu_own_mounts();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fs_rename_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_stop_with_files_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_seek_data_hole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_xattrs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_acls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_blocks_statfs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_unlinked_keeps_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_keep_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_copy_file_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_inode_numbers_stable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_sealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_seal_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_setid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_setgid_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_times_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_file_size_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_file_handles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_fallocate_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_negative_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_large_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_atime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_seal_waits_for_truncate,
						setup_truncate_pause, teardown),
		cmocka_unit_test_setup_teardown(test_fs_slow_call_holds_up_nothing,
						setup_truncate_pause, teardown),
		cmocka_unit_test_setup_teardown(test_fs_busy_index_holds_up_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fs_seal_after_close, setup_release_pause,
						teardown),
		cmocka_unit_test_setup_teardown(test_fs_seal_waits_for_create, setup_create_pause,
						teardown),
		cmocka_unit_test_setup_teardown(test_fs_slow_reads_side_by_side,
						setup_map_pause, teardown),
		cmocka_unit_test_setup_teardown(test_fs_write_lent, setup_pack_write_pause,
						teardown),
		cmocka_unit_test(test_fs_daemon_start_out_of_memory),
		cmocka_unit_test_setup_teardown(test_fs_remount_out_of_memory, setup, teardown),
		cmocka_unit_test(test_fs_daemon_out_of_memory),
		cmocka_unit_test(test_fs_add_name_out_of_memory),
		cmocka_unit_test(test_fs_loop_starts_workers_without_allocating),
	};
	return cmocka_run_group_tests_name("fs", tests, NULL, NULL);
}
