/*
 * guest/runtime/entry.S: the guest's entry point and exception stubs.
 *
 * The host enters at _start for every boot and every call, with rsp at the
 * top of the stack (16-byte aligned) and rdi pointing at the call buffer.
 * rt_entry never returns: it ends by writing to SNAPVM_PORT_DONE, after
 * which the host does not resume this run.
 *
 * Each exception vector gets a stub that pushes a uniform frame (a dummy
 * error code where the CPU pushes none, then the vector number) and jumps
 * to trap_common, which saves the general registers, calls trap_handle()
 * and returns with iretq when the handler fixed the cause (a copy on
 * write).  The guest is built general-registers-only, so no vector or
 * floating-point state needs saving.
 */
	.section .text.entry, "ax"
	.globl _start
	.type _start, @function
_start:
	xorl	%ebp, %ebp
	call	rt_entry
1:	hlt			/* not reached; the host reports a hlt as an error */
	jmp	1b
	.size _start, . - _start

	.text
/* vectors whose exception pushes an error code: 8, 10-14, 17, 21, 29, 30 */
.macro STUB vec
	.globl trap_stub_\vec
trap_stub_\vec:
	.if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$\vec
	jmp	trap_common
.endm

	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	STUB \v
	.endr

trap_common:
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rbx
	pushq	%rbp
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, %rdi
	/* the frame is 22 quadwords; align the stack for the C call */
	movq	%rsp, %rbx
	andq	$-16, %rsp
	call	trap_handle
	movq	%rbx, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rdi
	popq	%rsi
	popq	%rbp
	popq	%rbx
	popq	%rdx
	popq	%rcx
	popq	%rax
	addq	$16, %rsp	/* vector and error code */
	iretq

/* table of the 32 stub addresses, for the IDT */
	.section .data.rel.ro, "aw"
	.globl trap_stubs
	.balign 8
trap_stubs:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad	trap_stub_\v
	.endr

	.section .note.GNU-stack, "", @progbits
