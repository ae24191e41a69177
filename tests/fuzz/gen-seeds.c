/*
 * tests/fuzz/gen-seeds.c: write the seed corpora of the fuzz targets.
 *
 * usage: fuzz-gen-seeds DIR   (DIR is tests/fuzz in the source tree)
 *
 * Seeds are small valid inputs from which the fuzzer starts: ELF files from
 * elfgen.h, and manifests and cpu files from the formatters, so that the
 * corpora in the tree can be made again after a format change.
 */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "elfgen.h"
#include "host/cpustate.h"
#include "host/manifest.h"

static int put(const char *dir, const char *sub, const char *name, const void *buf, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

static int elf_seeds(const char *dir)
{
	static const char *const names[] = { "echo", "add", "counter" };
	static struct eg_elf g;
	int r = 0;
	eg_build(&g, ET_EXEC, names, 3);
	r |= put(dir, "corpus-elf", "exec.elf", g.buf, g.len);
	eg_build(&g, ET_DYN, names, 3);
	r |= put(dir, "corpus-elf", "pie.elf", g.buf, g.len);
	eg_build(&g, ET_DYN, NULL, 0);
	eg_ehdr(&g)->e_shoff = 0;
	eg_ehdr(&g)->e_shnum = 0;
	eg_ehdr(&g)->e_shstrndx = 0;
	r |= put(dir, "corpus-elf", "pie-nosections.elf", g.buf, EG_SHSTR_OFF);
	return r;
}

static int manifest_seeds(const char *dir)
{
	static struct manifest m;
	memset(&m, 0, sizeof(m));
	m.version = MANIFEST_VERSION;
	m.created = 1795595400;
	memset(m.guest_digest, 0x3f, sizeof(m.guest_digest));
	strcpy(m.guest, "hello.elf");
	m.entry = 0x1000000;
	static const struct manifest_region regions[] = {
		{ "text", 0x1000000, 0x2000, PROT_READ | PROT_EXEC, MANIFEST_KIND_IMAGE, "text.mem", { 1 } },
		{ "data", 0x1002000, 0x1000, PROT_READ | PROT_WRITE, MANIFEST_KIND_IMAGE, "data.mem", { 2 } },
		{ "heap", 0x40000000, 0x4000000, PROT_READ | PROT_WRITE, MANIFEST_KIND_HEAP, "heap.mem", { 3 } },
		{ "scratch", 0xc0000000, 0x100000, PROT_READ | PROT_WRITE, MANIFEST_KIND_SCRATCH, "scratch.img", { 4 } },
	};
	m.nregions = 4;
	memcpy(m.regions, regions, sizeof(regions));
	char *text;
	size_t len;
	struct err e = { 0 };
	int r = 0;
	if (manifest_format(&m, &text, &len, &e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	r |= put(dir, "corpus-manifest", "warm", text, len);
	free(text);
	strcpy(m.parent, "../web-warm");
	m.nregions = 2;
	m.regions[1] = regions[3];
	if (manifest_format(&m, &text, &len, &e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	r |= put(dir, "corpus-manifest", "derived", text, len);
	free(text);
	static const char liberal[] =
		"snapfs-snapshot 1\n# hand-written\n\nentry 4096\nparent -\n"
		"guest 3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F3F g.elf\n"
		"created 2024-02-29T23:59:59Z\n"
		"region s\t0x1000  4096 rwx scratch s.img 0000000000000000000000000000000000000000000000000000000000000000\n";
	r |= put(dir, "corpus-manifest", "liberal", liberal, sizeof(liberal) - 1);
	return r;
}

static int cpustate_seeds(const char *dir)
{
	static struct cpustate cs;
	memset(&cs, 0, sizeof(cs));
	/* 64-bit long mode as a sandbox starts in it */
	cs.regs.rip = 0x1000000;
	cs.regs.rsp = 0xc0010000;
	cs.regs.rdi = 0xc0004000;
	cs.regs.rflags = 2;
	struct kvm_segment code = { .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1,
				    .s = 1, .l = 1, .g = 1 };
	struct kvm_segment data = { .limit = 0xffffffff, .selector = 16, .type = 3, .present = 1,
				    .db = 1, .s = 1, .g = 1 };
	cs.sregs.cs = code;
	cs.sregs.ds = cs.sregs.es = cs.sregs.fs = cs.sregs.gs = cs.sregs.ss = data;
	cs.sregs.tr = (struct kvm_segment){ .base = 0xc0002000, .limit = 0x67, .selector = 24,
					    .type = 11, .present = 1 };
	cs.sregs.ldt = (struct kvm_segment){ .unusable = 1 };
	cs.sregs.gdt = (struct kvm_dtable){ .base = 0xc0001000, .limit = 39 };
	cs.sregs.idt = (struct kvm_dtable){ .base = 0xc0003000, .limit = 4095 };
	cs.sregs.cr0 = 0x80050033;
	cs.sregs.cr3 = 0xc0010000;
	cs.sregs.cr4 = 0x3406a0;
	cs.sregs.efer = 0xd01;
	cs.sregs.apic_base = 0xfee00900;
	cs.xcrs.nr_xcrs = 1;
	cs.xcrs.xcrs[0].value = 7;
	cs.debugregs.dr6 = CPUSTATE_DR6_INIT;
	cs.debugregs.dr7 = CPUSTATE_DR7_INIT;
	static const uint32_t msrs[] = { 0xc0000081, 0xc0000082, 0xc0000084, 0xc0000102, 0x277 };
	for (size_t i = 0; i < sizeof(msrs) / sizeof(msrs[0]); i++)
		cs.msrs[cs.nmsrs++] = (struct kvm_msr_entry){ .index = msrs[i], .data = 0x1000 * i };
	uint8_t *x = (uint8_t *)cs.xsave.region;
	x[0] = 0x7f;		/* fcw 0x037f */
	x[1] = 0x03;
	x[24] = 0x80;		/* mxcsr 0x1f80 */
	x[25] = 0x1f;
	x[512] = 3;		/* xstate_bv: x87, SSE */
	char *text;
	size_t len;
	struct err e = { 0 };
	if (cpustate_format(&cs, &text, &len, &e)) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	int r = put(dir, "corpus-cpustate", "longmode", text, len);
	/* the same state as version 1 wrote it: no dr lines */
	char *v1 = malloc(len + 1);
	size_t n = 0;
	for (const char *p = text; p < text + len;) {
		const char *nl = memchr(p, '\n', (size_t)(text + len - p));
		size_t ll = nl ? (size_t)(nl - p) + 1 : (size_t)(text + len - p);
		if (p == text)
			n += (size_t)sprintf(v1 + n, "%s 1\n", CPUSTATE_MAGIC);
		else if (strncmp(p, "dr", 2) != 0) {
			memcpy(v1 + n, p, ll);
			n += ll;
		}
		p += ll;
	}
	r |= v1 ? put(dir, "corpus-cpustate", "longmode-v1", v1, n) : 1;
	free(v1);
	free(text);
	return r;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	return elf_seeds(argv[1]) | manifest_seeds(argv[1]) | cpustate_seeds(argv[1]);
}
