/*
 * lib/mountinfo.c: finding a mount in /proc/self/mountinfo (see
 * mountinfo.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mountinfo.h"

/* Undo the octal escapes (\040 etc.) of a mountinfo field. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

/* Fields: id parent maj:min root mountpoint options [optional...] - fstype source super. */
static bool parse(const char *line, struct mountinfo_ent *e)
{
	char mnt[2 * PATH_MAX], source[2 * PATH_MAX];
	if (sscanf(line, "%*u %*u %u:%u %*s %8191s %511s", &e->maj, &e->min, mnt, e->opts) != 4)
		return false;
	const char *dash = strstr(line, " - ");
	if (!dash || sscanf(dash + 3, "%255s %8191s", e->fstype, source) != 2)
		return false;
	unescape(mnt);
	unescape(source);
	unescape(e->fstype);
	if (strlen(mnt) >= sizeof(e->mnt) || strlen(source) >= sizeof(e->source))
		return false;
	strcpy(e->mnt, mnt);
	strcpy(e->source, source);
	return true;
}

bool mountinfo_at(const struct mountinfo_ent *ent, const void *arg)
{
	return !strcmp(ent->mnt, arg);
}

bool mountinfo_fuse_at(const struct mountinfo_ent *ent, const void *arg)
{
	return mountinfo_at(ent, arg) && !strncmp(ent->fstype, "fuse", 4);
}

bool mountinfo_fuse_of(const struct mountinfo_ent *ent, const void *arg)
{
	return !strcmp(ent->source, arg) && !strncmp(ent->fstype, "fuse", 4);
}

bool mountinfo_is_snapfs(const struct mountinfo_ent *ent)
{
	char index[PATH_MAX + 16];
	snprintf(index, sizeof(index), "%s/index.db", ent->source);
	return !strcmp(ent->fstype, "fuse.snapfs") || access(index, F_OK) == 0;
}

int mountinfo_find(bool (*match)(const struct mountinfo_ent *ent, const void *arg),
		   const void *arg, struct mountinfo_ent *out)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	struct mountinfo_ent *e = malloc(sizeof(*e));
	char *line = malloc(4 * PATH_MAX + 512);
	int r = 0;
	if (!e || !line)
		r = -ENOMEM;
	while (r >= 0 && fgets(line, 4 * PATH_MAX + 512, f))
		if (parse(line, e) && match(e, arg)) {
			*out = *e;	/* the last match is the topmost */
			r = 1;
		}
	fclose(f);
	free(line);
	free(e);
	return r;
}
