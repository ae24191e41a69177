/*
 * tests/test-snapvm-cli.c: the snapvm command as a user runs it — exit
 * status, standard output and the messages on standard error.
 *
 * Run with "unit" (no KVM needed: help, version, list, command-line
 * errors, files that are not guests or snapshots) or "kvm" (calls,
 * snapshots, calls from snapshots, derived snapshots, verification).
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"

#define ARGS_MAX 16

static char root[128];
static char snapvm[4096], hello[4096], evil[4096];

struct run {
	int status;		/* exit status, or 128 + signal */
	char out[16384], err[16384];
};

static void slurp(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	lseek(fd, 0, SEEK_SET);
	for (ssize_t k; n + 1 < cap && (k = read(fd, buf + n, cap - 1 - n)) > 0;)
		n += (size_t)k;
	buf[n] = 0;
	close(fd);
}

/* Run snapvm with the NULL-terminated arguments, stdin from in (or /dev/null). */
static void run_in(struct run *r, const char *in, ...)
{
	const char *argv[ARGS_MAX + 2] = { snapvm };
	va_list ap;
	va_start(ap, in);
	size_t n = 1;
	for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
		assert_true(n <= ARGS_MAX);
		argv[n++] = a;
	}
	va_end(ap);
	char tmpl[3][160];
	int fd[3];
	for (int i = 0; i < 3; i++) {
		snprintf(tmpl[i], sizeof(tmpl[i]), "%s/io.XXXXXX", root);
		fd[i] = mkstemp(tmpl[i]);
		assert_true(fd[i] >= 0);
		unlink(tmpl[i]);
	}
	if (in) {
		assert_int_equal(write(fd[0], in, strlen(in)), (ssize_t)strlen(in));
		lseek(fd[0], 0, SEEK_SET);
	}
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd[0], 0);
		dup2(fd[1], 1);
		dup2(fd[2], 2);
		/* Every command here ends within seconds (even emulated): one
		 * that hangs is killed and fails its test rather than stall. */
		alarm(120);
		execv(snapvm, (char *const *)argv);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	close(fd[0]);
	slurp(fd[1], r->out, sizeof(r->out));
	slurp(fd[2], r->err, sizeof(r->err));
}

#define run(r, ...) run_in(r, NULL, __VA_ARGS__, (const char *)NULL)

/* Exit status want, and (if not NULL) stderr containing needle. */
static void expect_status(const struct run *r, int want, const char *needle)
{
	if (r->status != want || (needle && !strstr(r->err, needle)))
		fail_msg("status %d (want %d), stderr \"%s\" (want \"%s\"), stdout \"%s\"", r->status,
			 want, r->err, needle ? needle : "", r->out);
}

static void path_in_root(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", root, name);
}

static int setup(void **state)
{
	(void)state;
	tu_tmpdir(root, sizeof(root), "cli");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(tu_rmtree(root), 0);
	return 0;
}

/* ---- without KVM ------------------------------------------------------------ */

static void test_cli_help(void **state)
{
	(void)state;
	struct run r;
	run(&r, "--help");
	expect_status(&r, 0, NULL);
	const char *words[] = {
		"snapvm list GUEST.elf | SNAPSHOT", "snapvm call [OPTIONS] GUEST.elf | SNAPSHOT FUNC [ARG]",
		"snapvm snapshot [OPTIONS] GUEST.elf | SNAPSHOT DIR", "--init FUNC", "--call FUNC",
		"snapvm verify SNAPSHOT", "--timeout MS", "--heap MIB", "--scratch MIB", "--shared",
		"--sandboxes N", "--stdin", "--raw", "--quiet", "--version", "exit status",
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strstr(r.out, words[i]))
			fail_msg("--help lacks \"%s\"", words[i]);
	run(&r, "-h");
	expect_status(&r, 0, NULL);
	assert_non_null(strstr(r.out, "snapvm verify"));

	run_in(&r, NULL, (const char *)NULL);	/* no command: usage on stderr */
	expect_status(&r, 2, "usage: snapvm");
	assert_string_equal(r.out, "");
	run(&r, "--version");
	expect_status(&r, 0, NULL);
	assert_int_equal(strncmp(r.out, "snapvm ", 7), 0);
	run(&r, "frobnicate");
	expect_status(&r, 2, "unknown command \"frobnicate\"");
}

static const char *const hello_exports[] = { "echo", "add", "counter", "greet", "now" };

/* out is exactly the n names, one per line, in any order */
static void expect_lines(const char *out, const char *const *names, size_t n)
{
	char buf[16384 + 2];
	snprintf(buf, sizeof(buf), "\n%s", out);
	size_t lines = 0;
	for (const char *c = out; *c; c++)
		lines += *c == '\n';
	if (lines != n)
		fail_msg("%zu lines, want %zu: %s", lines, n, out);
	for (size_t i = 0; i < n; i++) {
		char want[80];
		snprintf(want, sizeof(want), "\n%s\n", names[i]);
		if (!strstr(buf, want))
			fail_msg("no line \"%s\" in: %s", names[i], out);
	}
}

static void test_cli_list(void **state)
{
	(void)state;
	struct run r;
	run(&r, "list", hello);
	expect_status(&r, 0, NULL);
	expect_lines(r.out, hello_exports, 5);
	run(&r, "list");
	expect_status(&r, 2, "list takes one");
	run(&r, "list", hello, evil);
	expect_status(&r, 2, "list takes one");
	run(&r, "list", "/nonexistent/guest.elf");
	expect_status(&r, 3, "/nonexistent/guest.elf");
}

static void test_cli_bad_elf(void **state)
{
	(void)state;
	char bad[256];
	path_in_root(bad, sizeof(bad), "bad.elf");
	FILE *f = fopen(bad, "w");
	assert_non_null(f);
	fputs("\177ELF but not really an ELF file\n", f);
	fclose(f);
	struct run r;
	run(&r, "list", bad);
	expect_status(&r, 3, bad);
	run(&r, "call", bad, "add", "1 2");
	expect_status(&r, 3, bad);
	assert_string_equal(r.out, "");
	char snap[256];
	path_in_root(snap, sizeof(snap), "never");
	run(&r, "snapshot", bad, snap);
	expect_status(&r, 3, bad);
	assert_int_equal(access(snap, F_OK), -1);

	/* A name longer than a directory can have is refused before any
	 * sandbox is started (no KVM needed to see it). */
	char toolong[NAME_MAX + 300];
	int n = snprintf(toolong, sizeof(toolong), "%s/", root);
	memset(toolong + n, 'L', NAME_MAX + 1);
	toolong[n + NAME_MAX + 1] = 0;
	run(&r, "snapshot", "-q", hello, toolong, "--call", "counter");
	expect_status(&r, 1, "more than 255");
	assert_string_equal(r.out, "");

	/* A FIFO is refused at once, not waited on for a writer. */
	char fifo[256];
	path_in_root(fifo, sizeof(fifo), "fifo.elf");
	assert_int_equal(mkfifo(fifo, 0644), 0);
	run(&r, "list", fifo);
	expect_status(&r, 3, "fifo.elf: not a regular file");
}

static void test_cli_bad_args(void **state)
{
	(void)state;
	char dir[256];
	path_in_root(dir, sizeof(dir), "somedir");
	assert_int_equal(mkdir(dir, 0755), 0);
	struct run r;
	struct {
		const char *args[8];
		const char *msg;
	} cases[] = {
		{ { "call", "-x", hello, "add" }, "unknown option -x" },
		{ { "call", "--bogus", hello, "add" }, "unknown option --bogus" },
		{ { "call", "--timeout" }, "--timeout needs a value" },
		{ { "call", "-t", "soon", hello, "add" }, "\"soon\" is not a number" },
		{ { "call", "--heap", "-1", hello, "add" }, "\"-1\" is not a number" },
		{ { "call", "--scratch", "100000", hello, "add" }, "from 0 to 512" },
		{ { "call", "-N", "0", dir, "add" }, "--sandboxes: at least 1" },
		{ { "call", hello }, "call takes" },
		{ { "call", hello, "add", "1", "2" }, "call takes" },
		{ { "call", hello, "add", "1", "-q" }, "option -q must come before " },
		{ { "call", dir, "add", "1", "--timeout=5" }, "option --timeout=5 must come before " },
		{ { "call", "--stdin", hello, "add", "1 2" }, "call takes" },
		{ { "call", "-N", "2", hello, "add" }, "--sandboxes does not apply to a guest ELF" },
		{ { "call", "--heap", "4", dir, "add" }, "--heap does not apply to a snapshot" },
		{ { "call", "--shared", dir, "add" }, "--shared does not apply to a snapshot" },
		{ { "snapshot", hello }, "snapshot takes" },
		{ { "snapshot", "--shared", hello, "x" }, "--shared is not an option of snapshot" },
		{ { "snapshot", "-N", "2", hello, "x" }, "--sandboxes is not an option of snapshot" },
		{ { "snapshot", hello, "x", "--bogus" }, "expected --init FUNC [ARG] or --call" },
		{ { "snapshot", hello, "x", "--heap", "4" }, "option --heap must come before " },
		{ { "snapshot", hello, "x", "--init", "f", "1", "-t5" }, "option -t5 must come before " },
		{ { "snapshot", hello, "x", "--init" }, "expected --init FUNC [ARG] or --call" },
		{ { "snapshot", "--scratch", "4", dir, "x" }, "--scratch does not apply to a snapshot" },
		{ { "verify" }, "verify takes one snapshot directory" },
		{ { "verify", dir, dir }, "verify takes one snapshot directory" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *const *a = cases[i].args;
		run(&r, a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
		print_message("# %s %s: %s", a[0], a[1] ? a[1] : "", r.err);
		expect_status(&r, 2, cases[i].msg);
		assert_string_equal(r.out, "");
	}
}

static void test_cli_verify_not_a_snapshot(void **state)
{
	(void)state;
	char dir[256];
	path_in_root(dir, sizeof(dir), "empty");
	assert_int_equal(mkdir(dir, 0755), 0);
	struct run r;
	run(&r, "verify", dir);
	expect_status(&r, 1, "manifest");
	assert_non_null(strstr(r.out, "manifest: FAILED"));
	run(&r, "call", "-N", "2", "/nonexistent/snapshot", "counter");
	expect_status(&r, 3, "/nonexistent/snapshot: No such file or directory");
	/* Missing, or a file: not loaded (3), said once, nothing verified. */
	run(&r, "verify", "/nonexistent/snapshot");
	expect_status(&r, 3, "/nonexistent/snapshot: No such file or directory");
	assert_string_equal(r.out, "");
	run(&r, "verify", hello);
	expect_status(&r, 3, "hello.elf: not a snapshot directory");
	assert_string_equal(r.out, "");
	run(&r, "call", dir, "counter");
	expect_status(&r, 3, "manifest");

	/* A FIFO as the manifest is refused at once. */
	char fifo[300];
	snprintf(fifo, sizeof(fifo), "%s/manifest", dir);
	assert_int_equal(mkfifo(fifo, 0644), 0);
	run(&r, "verify", dir);
	expect_status(&r, 1, "manifest: not a regular file");
	run(&r, "list", dir);
	expect_status(&r, 3, "manifest: not a regular file");
	run(&r, "call", dir, "counter");
	expect_status(&r, 3, "manifest: not a regular file");
}

/* Without /dev/kvm (the case here unless the machine has it), a call
 * says that /dev/kvm is what is missing; with it, the call is made. */
static void test_cli_no_kvm(void **state)
{
	(void)state;
	struct run r;
	run(&r, "call", hello, "add", "2 3");
	if (access("/dev/kvm", F_OK) != 0) {
		expect_status(&r, 3, "/dev/kvm: No such file or directory");
	} else {
		expect_status(&r, 0, NULL);
		assert_string_equal(r.out, "5\n");
	}
}

/* ---- with KVM ------------------------------------------------------------------ */

static void test_cli_call(void **state)
{
	(void)state;
	struct run r;
	run(&r, "call", hello, "add", "2 3");
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "5\n");
	run(&r, "call", "-n", hello, "add", "40 2");
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "42");
	/* The largest limit the parser takes is far past the clock's
	 * range: no limit, not one already passed. */
	run(&r, "call", "--timeout", "18446744073709", hello, "add", "2 3");
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "5\n");
	run_in(&r, "from stdin", "call", "--stdin", hello, "echo", (const char *)NULL);
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "from stdin\n");
	run(&r, "call", hello, "greet", "you");
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "hello, you\n");
	assert_non_null(strstr(r.err, "guest: greeting 3 bytes of name\n"));
	run(&r, "call", "-q", hello, "greet", "you");
	assert_string_equal(r.err, "");
	run(&r, "call", hello, "nosuch");
	expect_status(&r, 1, "has no function \"nosuch\"");
	run(&r, "call", "-t", "300", evil, "spin");
	expect_status(&r, 1, "time limit of 300 ms");
	run(&r, "call", evil, "triple_fault");
	expect_status(&r, 1, "triple fault");
	run(&r, "call", evil, "fail");
	expect_status(&r, 1, "failed with error -7");
}

static void test_cli_snapshot(void **state)
{
	(void)state;
	char dir[256], dir2[256], bad[256], file[512];
	path_in_root(dir, sizeof(dir), "h1");
	path_in_root(dir2, sizeof(dir2), "h2");
	struct run r;
	run(&r, "snapshot", "-q", hello, dir, "--init", "counter", "--call", "add", "2 3",
	    "--call", "counter");
	expect_status(&r, 0, "bytes in files");
	assert_string_equal(r.out, "counter: 1\nadd: 5\ncounter: 2\n");
	snprintf(file, sizeof(file), "%s/manifest", dir);
	assert_int_equal(access(file, R_OK), 0);
	run(&r, "snapshot", "-q", hello, dir, "--call", "counter");
	expect_status(&r, 1, "already exists");
	assert_string_equal(r.out, "");	/* refused before any call ran */
	run(&r, "snapshot", "-q", hello, dir2, "--call", "nosuch");
	expect_status(&r, 1, "no function \"nosuch\"");
	assert_int_equal(access(dir2, F_OK), -1);

	/* calls from the snapshot carry on from its state */
	run(&r, "call", dir, "counter");
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "3\n");
	run(&r, "call", "-N", "3", dir, "counter");
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "sandbox 0: 3\nsandbox 1: 3\nsandbox 2: 3\n");
	run_in(&r, "piped", "call", "--stdin", "-n", dir, "echo", (const char *)NULL);
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "piped");
	run(&r, "call", dir, "nosuch");
	expect_status(&r, 1, "no function \"nosuch\"");

	/* list reads the functions from the snapshot's files */
	run(&r, "list", dir);
	expect_status(&r, 0, NULL);
	expect_lines(r.out, hello_exports, 5);

	/* derived */
	run(&r, "snapshot", "-q", dir, dir2, "--call", "counter");
	expect_status(&r, 0, "cloned");
	assert_string_equal(r.out, "counter: 3\n");
	run(&r, "call", dir2, "counter");
	assert_string_equal(r.out, "4\n");
	run(&r, "list", dir2);
	expect_status(&r, 0, NULL);
	expect_lines(r.out, hello_exports, 5);

	/* verify */
	run(&r, "verify", dir2);
	expect_status(&r, 0, NULL);
	assert_non_null(strstr(r.out, "/manifest: ok"));
	assert_non_null(strstr(r.out, "/cpu: ok"));
	assert_non_null(strstr(r.out, "/data.mem: ok (size and digest match)"));
	assert_non_null(strstr(r.out, "/scratch.img: ok"));
	assert_null(strstr(r.out, "FAILED"));
	path_in_root(bad, sizeof(bad), "bad");
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && chmod -R u+w '%s' && "
		 "printf X | dd of='%s/data.mem' bs=1 seek=100 conv=notrunc 2>/dev/null",
		 dir, bad, bad, bad);
	assert_int_equal(system(cmd), 0);
	run(&r, "verify", bad);
	expect_status(&r, 1, "1 of");
	assert_non_null(strstr(r.out, "/data.mem: FAILED: "));
	assert_non_null(strstr(r.out, "/text.mem: ok"));

	/* a broken manifest: the call names file and line */
	snprintf(cmd, sizeof(cmd), "sed -i 's/^entry .*/entry nowhere/' '%s/manifest'", bad);
	assert_int_equal(system(cmd), 0);
	run(&r, "call", bad, "counter");
	expect_status(&r, 3, "/manifest:");
	assert_string_equal(r.out, "");
	run(&r, "list", bad);
	expect_status(&r, 3, "/manifest:");
	assert_string_equal(r.out, "");

	/* The longest name a directory can have: the temporary name it is
	 * written under first is cut to fit. */
	char longname[NAME_MAX + 1], longdir[NAME_MAX + 300];
	memset(longname, 'L', NAME_MAX);
	longname[NAME_MAX] = 0;
	snprintf(longdir, sizeof(longdir), "%s/%s", root, longname);
	run(&r, "snapshot", "-q", hello, longdir, "--call", "counter");
	expect_status(&r, 0, NULL);
	run(&r, "call", longdir, "counter");
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "2\n");
	/* A parent whose name a manifest cannot hold: refused before the
	 * calls run, saying so. */
	static const char *const odd[] = { "a b", "-", "tab\there" };
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		char p[512], child[512];
		snprintf(p, sizeof(p), "%s/%s", root, odd[i]);
		snprintf(child, sizeof(child), "%s/child%zu", root, i);
		run(&r, "snapshot", "-q", hello, p);
		expect_status(&r, 0, NULL);
		run(&r, "snapshot", p, child, "--call", "counter");
		expect_status(&r, 1, "cannot be recorded in a manifest; rename the parent");
		assert_string_equal(r.out, "");
		assert_int_equal(access(child, F_OK), -1);
	}

	/* A FIFO in a region file's place: refused at once, not waited on. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s' && chmod -R u+w '%s' && "
		 "rm '%s/data.mem' && mkfifo '%s/data.mem'", bad, dir2, bad, bad, bad, bad);
	assert_int_equal(system(cmd), 0);
	run(&r, "verify", bad);
	expect_status(&r, 1, NULL);
	assert_non_null(strstr(r.out, "/data.mem: FAILED: "));
	assert_non_null(strstr(r.out, "not a regular file"));
	run(&r, "call", bad, "counter");
	expect_status(&r, 3, "data.mem");
}

int main(int argc, char **argv)
{
	const char *b = getenv("SNAPFS_BUILD_ROOT");
	if (!b)
		b = ".";
	snprintf(snapvm, sizeof(snapvm), "%s/host/snapvm", b);
	snprintf(hello, sizeof(hello), "%s/guest/hello.elf", b);
	snprintf(evil, sizeof(evil), "%s/guest/evil.elf", b);
	int kvm = argc > 1 && strcmp(argv[1], "kvm") == 0;
	if (kvm) {
		tu_require_kvm();
		const struct CMUnitTest tests[] = {
			cmocka_unit_test_setup_teardown(test_cli_call, setup, teardown),
			cmocka_unit_test_setup_teardown(test_cli_snapshot, setup, teardown),
		};
		return cmocka_run_group_tests(tests, NULL, NULL);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cli_help, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_bad_elf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_verify_not_a_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_no_kvm, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
