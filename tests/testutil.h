/*
 * tests/testutil.h: small helpers shared by the cmocka test programs.
 *
 * Tests that need a device (/dev/kvm, /dev/fuse) call the matching
 * tu_require_*() first: where the device is missing the whole program
 * reports itself skipped in TAP ("1..0 # SKIP ...") and exits, and
 * tools/test.sh then runs the suite inside the QEMU VM harness.
 * Setting SNAPFS_NO_KVM=1 makes tu_require_kvm() skip even where KVM works,
 * so the VM path can be exercised on machines that have KVM.
 */
#ifndef SNAPFS_TESTUTIL_H
#define SNAPFS_TESTUTIL_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>

/* A POSIX ACL in the kernel's xattr format (version 2, then tag,
 * permissions and id per entry, little-endian as on x86) from n
 * (tag, perm, id) triples, into buf: its length. */
static inline size_t tu_acl_make(uint8_t *buf, const uint32_t (*e)[3], unsigned n)
{
	uint32_t version = 2;
	memcpy(buf, &version, 4);
	for (unsigned i = 0; i < n; i++) {
		uint16_t tag = (uint16_t)e[i][0], perm = (uint16_t)e[i][1];
		memcpy(buf + 4 + 8 * i, &tag, 2);
		memcpy(buf + 4 + 8 * i + 2, &perm, 2);
		memcpy(buf + 4 + 8 * i + 4, &e[i][2], 4);
	}
	return 4 + 8 * (size_t)n;
}

static inline void tu_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	fflush(stdout);
	exit(0);
}

/* A new empty folder $TMPDIR/snapfs-test-name.XXXXXX (/tmp without
 * TMPDIR) in buf; the program stops if it cannot be made. */
static inline void tu_tmpdir(char *buf, size_t cap, const char *name)
{
	const char *tmp = getenv("TMPDIR");
	int n = snprintf(buf, cap, "%s/snapfs-test-%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
	if (n < 0 || (size_t)n >= cap || !mkdtemp(buf)) {
		fprintf(stderr, "cannot make a folder %s: %s\n", buf,
			n < 0 || (size_t)n >= cap ? "name too long" : "mkdtemp failed");
		abort();
	}
}

static inline int tu_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove a folder tree: 0, or -1 (errno set) at the first failure. */
static inline int tu_rmtree(const char *dir)
{
	return nftw(dir, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Skip the whole test program unless KVM can create a virtual machine. */
static inline void tu_require_kvm(void)
{
	const char *no = getenv("SNAPFS_NO_KVM");
	if (no && *no && *no != '0')
		tu_skip_all("SNAPFS_NO_KVM is set");
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		tu_skip_all("no usable /dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		close(kvm);
		tu_skip_all("KVM_CREATE_VM fails here");
	}
	close(vm);
	close(kvm);
}

/* Skip the whole test program unless FUSE mounts are possible. */
static inline void tu_require_fuse(void)
{
	if (access("/dev/fuse", R_OK | W_OK) != 0)
		tu_skip_all("no usable /dev/fuse");
}

/*
 * As root, move this program (and what it starts) to a mount namespace of
 * its own, private from the start, so that its FUSE mounts and the other
 * tests' are not copied into each other's namespaces: a copy would keep a
 * mount's connection alive after its own test unmounted it, and the daemon
 * would never hear that it was unmounted.  Other users make no namespaces
 * and need none.  Call it before starting any thread.
 */
static inline void tu_own_mounts(void)
{
	if (geteuid() != 0)
		return;
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		perror("a mount namespace of its own for the test");
		exit(1);
	}
}

#endif
