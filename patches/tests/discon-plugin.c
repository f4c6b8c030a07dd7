/*
 * discon-plugin.c - test plugin for patches/0002-* (guest signals reported
 * to plugins as discontinuities in linux-user).
 *
 * Prints one line per exception or interrupt discontinuity via
 * qemu_plugin_outs() (visible with "-d plugin"):
 *
 *   discon: exception from=0x400abc to=0x400def
 *   discon: interrupt from=0x400abc to=0x400def
 *
 * Copyright (C) 2026 guestview maintainers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <inttypes.h>
#include <stdio.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static void vcpu_discon(qemu_plugin_id_t id, unsigned int vcpu_index,
                        enum qemu_plugin_discon_type type,
                        uint64_t from_pc, uint64_t to_pc)
{
    char line[128];

    snprintf(line, sizeof(line), "discon: %s from=0x%" PRIx64 " to=0x%" PRIx64 "\n",
             type == QEMU_PLUGIN_DISCON_EXCEPTION ? "exception" :
             type == QEMU_PLUGIN_DISCON_INTERRUPT ? "interrupt" : "hostcall",
             from_pc, to_pc);
    qemu_plugin_outs(line);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
                                           const qemu_info_t *info,
                                           int argc, char **argv)
{
    qemu_plugin_register_vcpu_discon_cb(id, QEMU_PLUGIN_DISCON_ALL, vcpu_discon);
    return 0;
}
