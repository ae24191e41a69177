/*
 * tests/fuzz/replay.c: run a fuzz target over its corpus without libFuzzer.
 *
 * Linked with one fuzz-*.c file, this is an ordinary program that feeds
 * every file named on the command line (or found in a directory named
 * there) to LLVMFuzzerTestOneInput() and reports each as a TAP test.  So
 * builds with any compiler replay the seed corpus and every input the
 * fuzzer ever found worth keeping; a broken invariant aborts the program.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

struct list {
	char **path;
	size_t n, cap;
};

static int add(struct list *l, const char *path)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		char **p = realloc(l->path, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->path = p;
		l->cap = cap;
	}
	l->path[l->n] = strdup(path);
	return l->path[l->n++] ? 0 : -ENOMEM;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int collect(struct list *l, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return add(l, path);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *de;
	int r = 0;
	while (r == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *p;
		if (asprintf(&p, "%s/%s", path, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		r = add(l, p);
		free(p);
	}
	closedir(d);
	return r;
}

static int read_all(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	size_t cap = 4096, n = 0;
	uint8_t *b = malloc(cap);
	int r = b ? 0 : -ENOMEM;
	while (r == 0) {
		n += fread(b + n, 1, cap - n, f);
		if (n < cap)
			break;
		uint8_t *nb = realloc(b, 2 * cap);
		if (!nb)
			r = -ENOMEM;
		else
			b = nb, cap *= 2;
	}
	if (r == 0 && ferror(f))
		r = -EIO;
	fclose(f);
	if (r < 0) {
		free(b);
		return r;
	}
	*buf = b;
	*len = n;
	return 0;
}

int main(int argc, char **argv)
{
	struct list l = { 0 };
	for (int i = 1; i < argc; i++) {
		int r = collect(&l, argv[i]);
		if (r < 0) {
			printf("Bail out! %s: %s\n", argv[i], strerror(-r));
			return 1;
		}
	}
	qsort(l.path, l.n, sizeof(*l.path), cmp_str);
	printf("1..%zu\n", l.n);
	int status = 0;
	for (size_t i = 0; i < l.n; i++) {
		uint8_t *buf = NULL;
		size_t len = 0;
		int r = read_all(l.path[i], &buf, &len);
		if (r < 0) {
			printf("not ok %zu - %s: %s\n", i + 1, l.path[i], strerror(-r));
			status = 1;
		} else {
			fflush(stdout);
			LLVMFuzzerTestOneInput(buf, len);
			printf("ok %zu - %s (%zu bytes)\n", i + 1, l.path[i], len);
			free(buf);
		}
		free(l.path[i]);
	}
	free(l.path);
	return status;
}
