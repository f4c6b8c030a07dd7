/*
 * filter-plugin.c - test plugin for the syscall-filter plugin API
 * (qemu_plugin_register_vcpu_syscall_filter_cb, patches/0001-*).
 *
 * Answers two guest syscalls itself, so that QEMU makes no host syscall
 * for them, and lets every other syscall through:
 *
 *   getpid   -> returns 4242 (option ret=N changes the value)
 *   getppid  -> fails with EPERM (the plugin returns -TARGET_EPERM)
 *
 * It also counts the syscall-return callbacks of the filtered calls (the
 * API promises they still run) and prints one summary line at exit via
 * qemu_plugin_outs(), visible with "-d plugin":
 *
 *   filter-plugin: filtered_getpid=3 filtered_getppid=1 ret_cb_getpid=3 ret_cb_getppid=1
 *
 * Options: getpid=NR, getppid=NR override the syscall numbers (default:
 * chosen from the guest architecture), ret=N the value getpid returns.
 *
 * Copyright (C) 2026 guestview maintainers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* EPERM is 1 on every Linux architecture. */
#define TARGET_EPERM 1

static int64_t nr_getpid = -1;
static int64_t nr_getppid = -1;
static uint64_t getpid_ret = 4242;

static uint64_t filtered_getpid, filtered_getppid;
static uint64_t ret_cb_getpid, ret_cb_getppid;

static bool vcpu_syscall_filter(qemu_plugin_id_t id, unsigned int vcpu_index,
                                int64_t num, uint64_t a1, uint64_t a2,
                                uint64_t a3, uint64_t a4, uint64_t a5,
                                uint64_t a6, uint64_t a7, uint64_t a8,
                                uint64_t *sysret)
{
    if (num == nr_getpid) {
        __atomic_add_fetch(&filtered_getpid, 1, __ATOMIC_RELAXED);
        *sysret = getpid_ret;
        return true;
    }
    if (num == nr_getppid) {
        __atomic_add_fetch(&filtered_getppid, 1, __ATOMIC_RELAXED);
        *sysret = (uint64_t)(int64_t)-TARGET_EPERM;
        return true;
    }
    return false;
}

static void vcpu_syscall_ret(qemu_plugin_id_t id, unsigned int vcpu_idx,
                             int64_t num, int64_t ret)
{
    if (num == nr_getpid && (uint64_t)ret == getpid_ret) {
        __atomic_add_fetch(&ret_cb_getpid, 1, __ATOMIC_RELAXED);
    } else if (num == nr_getppid && ret == -TARGET_EPERM) {
        __atomic_add_fetch(&ret_cb_getppid, 1, __ATOMIC_RELAXED);
    }
}

static void plugin_exit(qemu_plugin_id_t id, void *p)
{
    char line[256];

    snprintf(line, sizeof(line),
             "filter-plugin: filtered_getpid=%" PRIu64
             " filtered_getppid=%" PRIu64
             " ret_cb_getpid=%" PRIu64 " ret_cb_getppid=%" PRIu64 "\n",
             filtered_getpid, filtered_getppid,
             ret_cb_getpid, ret_cb_getppid);
    qemu_plugin_outs(line);
}

/* getpid and getppid numbers per guest architecture (Linux UAPI). */
static bool default_numbers(const char *target)
{
    static const struct {
        const char *target;
        int64_t getpid, getppid;
    } table[] = {
        { "mips",    4020, 4064 },  /* o32: 4000 + 20, 4000 + 64 */
        { "mipsel",  4020, 4064 },
        { "arm",       20,   64 },  /* EABI */
        { "aarch64",  172,  173 },  /* asm-generic */
        { "riscv64",  172,  173 },
        { "ppc",       20,   64 },
        { "ppc64le",   20,   64 },
        { "ppc64",     20,   64 },
        { "x86_64",    39,  110 },
        { "i386",      20,   64 },
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(table[i].target, target) == 0) {
            nr_getpid = table[i].getpid;
            nr_getppid = table[i].getppid;
            return true;
        }
    }
    return false;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
                                           const qemu_info_t *info,
                                           int argc, char **argv)
{
    bool known = default_numbers(info->target_name);

    for (int i = 0; i < argc; i++) {
        char *opt = argv[i];
        char *val = strchr(opt, '=');
        if (!val) {
            fprintf(stderr, "filter-plugin: bad option '%s'\n", opt);
            return -1;
        }
        *val++ = '\0';
        if (strcmp(opt, "getpid") == 0) {
            nr_getpid = strtoll(val, NULL, 0);
        } else if (strcmp(opt, "getppid") == 0) {
            nr_getppid = strtoll(val, NULL, 0);
        } else if (strcmp(opt, "ret") == 0) {
            getpid_ret = strtoull(val, NULL, 0);
        } else {
            fprintf(stderr, "filter-plugin: unknown option '%s'\n", opt);
            return -1;
        }
    }
    if (!known && (nr_getpid < 0 || nr_getppid < 0)) {
        fprintf(stderr, "filter-plugin: unknown target '%s': "
                "pass getpid=NR,getppid=NR\n", info->target_name);
        return -1;
    }

    qemu_plugin_register_vcpu_syscall_filter_cb(id, vcpu_syscall_filter);
    qemu_plugin_register_vcpu_syscall_ret_cb(id, vcpu_syscall_ret);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}
