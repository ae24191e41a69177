/*
 * host/kvm_ioctl.h: a checked ioctl for KVM.
 *
 * kvm_ioctl(e, fd, CMD, arg) checks at compile time that *arg has the size
 * encoded in CMD (so a wrong struct cannot be passed), and on failure
 * returns -errno with a message naming the ioctl: "KVM_SET_SREGS: Invalid
 * argument".  kvm_ioctl_val() is the same for ioctls that take a plain
 * value.  Both evaluate to the ioctl's non-negative result on success.
 */
#ifndef SNAPVM_KVM_IOCTL_H
#define SNAPVM_KVM_IOCTL_H

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include "err.h"

#define kvm_ioctl(e, fd, cmd, arg) __extension__({				\
	_Static_assert(sizeof(*(arg)) == _IOC_SIZE(cmd), #cmd ": argument size"); \
	int kvm_r_ = ioctl((fd), (cmd), (arg));					\
	kvm_r_ < 0 ? err_set((e), -errno, #cmd ": %s", strerror(errno)) : kvm_r_; })

#define kvm_ioctl_val(e, fd, cmd, val) __extension__({				\
	int kvm_r_ = ioctl((fd), (cmd), (unsigned long)(val));			\
	kvm_r_ < 0 ? err_set((e), -errno, #cmd ": %s", strerror(errno)) : kvm_r_; })

#endif
