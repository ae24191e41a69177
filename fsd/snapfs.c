/*
 * fsd/snapfs.c: the snapfs command, `snapfs STORE MOUNTPOINT [-o OPTIONS]`.
 *
 * Parses the command line in the conventions of sshfs and squashfuse (so
 * mount.fuse3 and /etc/fstab can start it), opens or creates the store,
 * mounts it and serves requests until unmounted (fusermount3 -u, umount,
 * SIGTERM, SIGINT).  Everything is set up here in one order and torn down
 * in the reverse order, so an unmount leaves nothing behind.
 *
 * Going to the background is done by our own fork before anything is
 * opened: the child opens the store, mounts, and only then tells the
 * waiting parent to exit, so every error reaches the terminal and the
 * parent's exit status says whether the mount exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "fs.h"
#include "fs_mount.h"
#include "lib/err.h"
#include "lib/file.h"
#include "lib/mountinfo.h"
#include "store.h"

struct snapfs_opts {
	char *store;		/* first non-option argument */
	unsigned readahead_kb;	/* read_ahead_kb of the mount, 0 = kernel's,
				 * READAHEAD_UNSET: not given (the default) */
	unsigned read_kb;	/* largest read request, KiB */
	int nosplice;
	int noacl;
	int verify;		/* -o verify: reads check pages against their hashes */
	int remount;		/* -o remount: change the flags of a live mount */
	double timeout;
	double sealed_timeout;
	unsigned busy_poll_us;	/* BUSY_POLL_UNSET: not given */
};

#define BUSY_POLL_UNSET UINT_MAX

#define READAHEAD_UNSET UINT_MAX
#define READAHEAD_DEFAULT_KB 4096u

/* Options with a value are parsed here, strictly, rather than by
 * fuse_opt's scanf: "%u" takes -5 for 4294967291. */
enum { KEY_READAHEAD, KEY_READ_SIZE, KEY_TIMEOUT, KEY_SEALED_TIMEOUT, KEY_BUSY_POLL };

#define SNAPFS_OPT(t, p) { t, offsetof(struct snapfs_opts, p), 1 }
static const struct fuse_opt snapfs_opt_spec[] = {
	FUSE_OPT_KEY("readahead=", KEY_READAHEAD),
	FUSE_OPT_KEY("read_size=", KEY_READ_SIZE),
	SNAPFS_OPT("nosplice", nosplice),
	SNAPFS_OPT("noacl", noacl),
	SNAPFS_OPT("verify", verify),
	SNAPFS_OPT("remount", remount),
	FUSE_OPT_KEY("timeout=", KEY_TIMEOUT),
	FUSE_OPT_KEY("sealed_timeout=", KEY_SEALED_TIMEOUT),
	FUSE_OPT_KEY("busy_poll=", KEY_BUSY_POLL),
	FUSE_OPT_END
};

/* The value of "NAME=VALUE" in arg as a whole number of unit from lo to
 * hi; 0, or -1 after a message. */
static int opt_uint(const char *arg, unsigned lo, unsigned hi, const char *unit, unsigned *out)
{
	const char *v = strchr(arg, '=') + 1;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || errno || n < lo || n > hi) {
		fprintf(stderr, "snapfs: %s: must be a number of %s from %u to %u\n", arg, unit, lo,
			hi);
		return -1;
	}
	*out = (unsigned)n;
	return 0;
}

/* The value of "NAME=VALUE" in arg as seconds, 0 to a year; 0, or -1
 * after a message. */
static int opt_seconds(const char *arg, double *out)
{
	const char *v = strchr(arg, '=') + 1;
	char *end;
	double d = strtod(v, &end);
	if (end == v || *end || !(d >= 0 && d <= 366 * 86400.0)) {
		fprintf(stderr, "snapfs: %s: must be a number of seconds from 0 to 31622400\n", arg);
		return -1;
	}
	*out = d;
	return 0;
}

static int snapfs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)outargs;
	struct snapfs_opts *o = data;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (o->store)
			return 1;
		o->store = strdup(arg);
		if (!o->store)
			fprintf(stderr, "snapfs: store %s: out of memory\n", arg);
		return o->store ? 0 : -1;
	case KEY_READAHEAD:
		return opt_uint(arg, 0, 1024 * 1024, "KiB", &o->readahead_kb);
	case KEY_READ_SIZE:
		return opt_uint(arg, 4, 1004, "KiB", &o->read_kb);
	case KEY_TIMEOUT:
		return opt_seconds(arg, &o->timeout);
	case KEY_SEALED_TIMEOUT:
		return opt_seconds(arg, &o->sealed_timeout);
	case KEY_BUSY_POLL:
		return opt_uint(arg, 0, FS_BUSY_POLL_MAX_US, "microseconds", &o->busy_poll_us);
	}
	return 1;
}

static void snapfs_usage(const char *prog)
{
	printf("usage: %s STORE MOUNTPOINT [options]\n\n"
	       "Mount the snapfs page store in the folder STORE at MOUNTPOINT.\n"
	       "STORE is created (mode 0700) if it is missing or an empty folder.\n\n"
	       "snapfs options:\n"
	       "    -o readahead=KB        read_ahead_kb of the mount (default 4096, 0 keeps the kernel's)\n"
	       "    -o read_size=KB        largest read request (default 1004, at most 1004 so splice works)\n"
	       "    -o nosplice            copy read data instead of splicing it from pack files\n"
	       "    -o noacl               no POSIX ACLs: the permission bits alone decide\n"
	       "    -o verify              check each page read against its SHA-256 (slower reads;\n"
	       "                           a damaged page fails with EIO instead of being returned)\n"
	       "    -o timeout=S           attribute and entry timeout (default 1)\n"
	       "    -o sealed_timeout=S    the same for sealed content (default 86400)\n"
	       "    -o busy_poll=US        poll for the next request this long between short\n"
	       "                           requests that come one after another (default 50,\n"
	       "                           0 on one CPU; 0 never polls; at most 1000)\n"
	       "    -o remount             change the flags (ro, rw, noexec, ...) of the live mount\n"
	       "                           of STORE at MOUNTPOINT, as mount -o remount does\n\n"
	       "Checking, cleaning and describing a store: snapfs-admin fsck|gc|stats STORE.\n\n",
	       prog);
}

/* The options every FUSE daemon takes, as this one treats them
 * (libfuse's own list offers clone_fd and max_idle_threads, which
 * fs_loop_run does not use). */
static void snapfs_generic_usage(void)
{
	printf("general options:\n"
	       "    -h   --help            print help\n"
	       "    -V   --version         print version\n"
	       "    -d   -o debug          print every request (implies -f)\n"
	       "    -f                     stay in the foreground\n"
	       "    -s                     serve requests on one thread\n"
	       "    -o max_threads=N       most worker threads (default 10, at most 1000)\n");
}

/* Names snapfs-admin takes as its first word: `snapfs fsck STORE` is a
 * slip for `snapfs-admin fsck STORE`, and would otherwise create a store
 * called fsck and mount it over STORE. */
static bool snapfs_admin_word(const char *store)
{
	static const char *const words[] = { "fsck", "gc", "stats" };
	struct stat sb;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcmp(store, words[i]))
			return lstat(store, &sb) < 0 && errno == ENOENT;
	return false;
}

/*
 * What a mount at mountpoint (an existing folder) would cover: a store
 * (hidden from its own daemon and from snapfs-admin while mounted over),
 * or another snapfs mount (two daemons stacked at one place, the lower
 * one unreachable).  Only the topmost mount there counts: one under
 * another is hidden already.  0, or -1 after a message.
 */
static int snapfs_check_covered(const char *mountpoint)
{
	char abs[PATH_MAX], index[PATH_MAX + 16], packs[PATH_MAX + 16];
	if (!realpath(mountpoint, abs)) {
		fprintf(stderr, "snapfs: mount point %s: %s\n", mountpoint, strerror(errno));
		return -1;
	}
	struct mountinfo_ent *ent = malloc(sizeof(*ent));
	int r = ent ? mountinfo_find(mountinfo_at, abs, ent) : -ENOMEM;
	if (r < 0) {
		fprintf(stderr, "snapfs: mount point %s: cannot read the mount table"
			" (/proc/self/mountinfo): %s\n", mountpoint, strerror(-r));
		free(ent);
		return -1;
	}
	bool stacked = r > 0 && !strncmp(ent->fstype, "fuse", 4) && mountinfo_is_snapfs(ent);
	/* An automount point (x-systemd.automount in fstab) is where this
	 * very mount is awaited: a look inside would wait for it. */
	bool automount = r > 0 && !strcmp(ent->fstype, "autofs");
	if (stacked)
		fprintf(stderr, "snapfs: mount point %s has store %s mounted already: "
			"unmount it first\n", mountpoint, ent->source);
	free(ent);
	if (stacked)
		return -1;
	if (automount)
		return 0;
	snprintf(index, sizeof(index), "%s/index.db", abs);
	snprintf(packs, sizeof(packs), "%s/packs", abs);
	struct stat ist, pst;
	if (stat(index, &ist) == 0 && S_ISREG(ist.st_mode) && stat(packs, &pst) == 0 &&
	    S_ISDIR(pst.st_mode)) {
		fprintf(stderr, "snapfs: mount point %s is a store: a mount there would hide it "
			"(to check or inspect a store: snapfs-admin fsck|gc|stats STORE)\n",
			mountpoint);
		return -1;
	}
	return 0;
}

/*
 * mount -o remount,ro MOUNTPOINT runs `snapfs STORE MOUNTPOINT -o
 * remount,ro,...` through mount.fuse3.  The daemon serving the mount
 * holds the store, so this changes the live mount's flags instead of
 * starting another.  The -o lists left in args (after the snapfs and
 * libfuse options were taken out) carry the flags.
 */
static int snapfs_remount(const struct fuse_args *args, const char *store, const char *mountpoint)
{
	char *opts = NULL;
	for (int i = 1; i < args->argc; i++) {
		const char *a = args->argv[i];
		if (!strcmp(a, "-o") && i + 1 < args->argc)
			a = args->argv[++i];
		else if (!strncmp(a, "-o", 2))
			a += 2;
		else
			continue;
		if (fuse_opt_add_opt(&opts, a) < 0) {
			free(opts);
			fprintf(stderr, "snapfs: remount of %s: out of memory\n", mountpoint);
			return 1;
		}
	}
	char abs[PATH_MAX];
	struct err e = { 0 };
	int r = realpath(store, abs) ? fs_mount_remount(abs, mountpoint, opts, &e)
				     : err_set(&e, -errno, "remount: store %s: %s", store, strerror(errno));
	free(opts);
	if (r < 0)
		fprintf(stderr, "snapfs: %s\n", e.msg);
	return r < 0;
}

/*
 * Daemon handling: the parent waits on a pipe for one status byte from the
 * child; 0 means "mounted".  A child that dies before writing anything
 * closes the pipe, and the parent reports failure.
 */
static int snapfs_fork(int *notify_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("snapfs: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("snapfs: fork");
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		char status = 1;
		ssize_t n;
		do
			n = read(p[0], &status, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1) {
			int ws;
			waitpid(pid, &ws, 0);
			status = 1;
		}
		_exit(status ? 1 : 0);
	}
	close(p[0]);
	*notify_fd = p[1];
	return 0;
}

/* The store's own reports (recovery after a failure, a migration while
 * opening) go where ours go. */
static void snapfs_store_log(void *arg, const char *msg)
{
	(void)arg;
	fuse_log(FUSE_LOG_ERR, "snapfs: %s\n", msg);
}

/* In the background, messages go to syslog (stderr is /dev/null). */
static void snapfs_syslog(enum fuse_log_level level, const char *fmt, va_list ap)
{
	vsyslog((int)level, fmt, ap);
}

static void snapfs_detach(int notify_fd)
{
	char ok = 0;
	if (setsid() < 0)
		perror("snapfs: setsid");
	if (chdir("/") < 0)
		perror("snapfs: chdir /");
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	openlog("snapfs", LOG_PID, LOG_DAEMON);
	fuse_set_log_func(snapfs_syslog);
	if (write(notify_fd, &ok, 1) != 1) {
		/* The parent is gone; nobody is left to tell. */
	}
	close(notify_fd);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct snapfs_opts opts = {
		.readahead_kb = READAHEAD_UNSET,
		.read_kb = 1004,
		.timeout = 1.0,
		.sealed_timeout = 86400.0,
		.busy_poll_us = BUSY_POLL_UNSET,
	};
	struct fuse_cmdline_opts cmd = { 0 };
	struct fuse_session *se = NULL;
	struct store *store = NULL;
	struct fs *fs = NULL;
	struct err e = { 0 };
	char store_path[PATH_MAX];
	int notify_fd = -1;
	int ret = 1;
	int r;

	if (fuse_opt_parse(&args, &opts, snapfs_opt_spec, snapfs_opt_proc) != 0)
		goto out_args;
	if (fuse_parse_cmdline(&args, &cmd) != 0)
		goto out_args;
	if (cmd.show_help) {
		snapfs_usage(argv[0]);
		snapfs_generic_usage();
		fuse_lowlevel_help();
		ret = 0;
		goto out_args;
	}
	if (cmd.show_version) {
		printf("snapfs version %s\n", SNAPFS_VERSION);
		fflush(stdout);	/* before fusermount3 --version writes its line */
		fuse_lowlevel_version();
		ret = 0;
		goto out_args;
	}
	if (!opts.store || !cmd.mountpoint) {
		fprintf(stderr, "usage: %s STORE MOUNTPOINT [options]  (try --help)\n", argv[0]);
		goto out_args;
	}
	if (opts.remount) {
		ret = snapfs_remount(&args, opts.store, cmd.mountpoint);
		goto out_args;
	}
	if (snapfs_admin_word(opts.store)) {
		fprintf(stderr, "snapfs: there is no store %s here; to run the command: "
			"snapfs-admin %s STORE (a new store by that name: ./%s)\n", opts.store,
			opts.store, opts.store);
		goto out_args;
	}
	if (!cmd.singlethread && (cmd.clone_fd || cmd.max_idle_threads != UINT_MAX))
		fprintf(stderr, "snapfs: clone_fd and max_idle_threads are not used: one worker "
			"at a time reads requests, and idle ones stay (continuing)\n");
	bool readahead_given = opts.readahead_kb != READAHEAD_UNSET;
	if (!readahead_given)
		opts.readahead_kb = READAHEAD_DEFAULT_KB;
	/* Check the mount point first, so a typo there creates no store. */
	struct stat mst;
	if (stat(cmd.mountpoint, &mst) < 0) {
		int err = errno;
		if (err == ENOTCONN)	/* a FUSE mount whose daemon died */
			fprintf(stderr, "snapfs: mount point %s: %s (its daemon is gone: "
				"fusermount3 -u %s first)\n", cmd.mountpoint, strerror(err),
				cmd.mountpoint);
		else
			fprintf(stderr, "snapfs: mount point %s: %s\n", cmd.mountpoint,
				strerror(err));
		goto out_args;
	}
	if (!S_ISDIR(mst.st_mode)) {
		fprintf(stderr, "snapfs: mount point %s: not a folder\n", cmd.mountpoint);
		goto out_args;
	}
	if (snapfs_check_covered(cmd.mountpoint) < 0)
		goto out_args;
	if (fs_mount_prepare_store(opts.store, cmd.mountpoint, store_path, &e) < 0) {
		fprintf(stderr, "snapfs: %s\n", e.msg);
		goto out_args;
	}
	/* Mounted already: say where at once, rather than wait for the
	 * store's lock (which a daemon just unmounted does let go of). */
	struct mountinfo_ent *ent = malloc(sizeof(*ent));
	r = ent ? mountinfo_find(mountinfo_fuse_of, store_path, ent) : -ENOMEM;
	if (r > 0)
		fprintf(stderr, "snapfs: store %s is already mounted at %s; a store is served by "
			"one daemon: use that mount, or unmount it first\n", store_path, ent->mnt);
	else if (r < 0)
		fprintf(stderr, "snapfs: store %s: cannot read the mount table"
			" (/proc/self/mountinfo): %s\n", store_path, strerror(-r));
	free(ent);
	if (r != 0)
		goto out_args;
	if (fs_mount_add_options(&args, store_path, opts.read_kb) < 0) {
		fprintf(stderr, "snapfs: store %s: mount options: out of memory\n", store_path);
		goto out_args;
	}

	if (!cmd.foreground && snapfs_fork(&notify_fd) < 0)
		goto out_args;

	/* Every pack stays open, one per GiB stored or so: more than the
	 * usual soft limit of 1024 files on a large store. */
	r = file_raise_open_limit();
	if (r < 0)
		fprintf(stderr, "snapfs: cannot raise the limit on open files: %s (continuing)\n",
			strerror(-r));
	r = store_open_log(store_path,
			   STORE_CREATE | STORE_LOCK_WAIT | (opts.verify ? STORE_VERIFY : 0),
			   snapfs_store_log, NULL, &store, &e);
	if (r < 0) {
		fprintf(stderr, "snapfs: %s\n", err_str(&e, r));
		goto out_args;
	}
	store_set_block_hint(store, fs_loop_blocking);
	struct fs_config cfg = {
		.timeout = opts.timeout,
		.sealed_timeout = opts.sealed_timeout,
		.splice = !opts.nosplice && !opts.verify,	/* splice skips the check */
		.acl = !opts.noacl,
		.max_read = opts.read_kb * 1024,
		.max_readahead = opts.readahead_kb * 1024,
		.debug = cmd.debug,
	};
	if (fs_new(store, &cfg, &fs) < 0) {
		fprintf(stderr, "snapfs: store %s: out of memory\n", store_path);
		goto out_store;
	}
	se = fuse_session_new(&args, fs_lowlevel_ops(), sizeof(struct fuse_lowlevel_ops), fs);
	if (!se)
		goto out_fs;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, cmd.mountpoint) != 0)
		goto out_signals;
	if (opts.readahead_kb) {
		/* sysfs lets only root write it: without root the default
		 * quietly stays the kernel's, and only an asked-for value is
		 * worth a warning. */
		r = fs_mount_set_readahead(cmd.mountpoint, opts.readahead_kb);
		if (r < 0 && (readahead_given || (r != -EACCES && r != -EPERM)))
			fprintf(stderr, "snapfs: %s: cannot set read_ahead_kb=%u: %s (continuing)\n",
				cmd.mountpoint, opts.readahead_kb, strerror(-r));
	}
	/* Access times follow the mount's flags, now and after a remount. */
	struct fs_mount_watch *watch = NULL;
	r = fs_mount_watch_start(fs, cmd.mountpoint, &watch);
	if (r < 0) {
		fprintf(stderr, "snapfs: %s: cannot read the mount's flags: %s (atime not kept)\n",
			cmd.mountpoint, strerror(-r));
		fs_set_atime(fs, FS_ATIME_NONE, false);
	}
	if (notify_fd >= 0) {
		snapfs_detach(notify_fd);
		notify_fd = -1;
	}

	/* -s: one worker, which serves every request itself (and polls
	 * between short ones as the pool's listener does). */
	unsigned threads = cmd.singlethread ? 1 : cmd.max_threads <= 1000 ? cmd.max_threads : 1000;
	unsigned poll_us = opts.busy_poll_us != BUSY_POLL_UNSET ? opts.busy_poll_us
							     : fs_loop_busy_poll_default();
	store_set_hash_spin(store, poll_us ? FS_HASH_SPIN_US : 0);
	/* An unmount or a signal ends the loop with 0: a clean stop. */
	ret = fs_loop_run(se, threads, poll_us) < 0 ? 1 : 0;
	fs_mount_watch_stop(watch);

	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_fs:
	fs_free(fs);
out_store:
	r = store_close(store, &e);
	if (r < 0) {
		fuse_log(FUSE_LOG_ERR, "snapfs: closing %s: %s\n", store_path, err_str(&e, r));
		ret = 1;
	}
out_args:
	free(cmd.mountpoint);
	free(opts.store);
	fuse_opt_free_args(&args);
	return ret;
}
