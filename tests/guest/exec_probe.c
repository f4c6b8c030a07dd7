// SPDX-License-Identifier: MIT OR Apache-2.0
/* exec_probe: tries to run host-native code from inside the guest, one
 * "key: result" line each (the sandbox tests expect every one refused):
 *   x86-elf   an x86-64 ELF the guest writes into /tmp
 *   qemu      QEMU's own binary, where the sandbox bound it
 *   loader    the host's dynamic loader, likewise
 *   argv[1..] any further paths given */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A complete x86-64 Linux ELF: _start: mov $60,%eax; xor %edi,%edi; syscall */
static const unsigned char tiny_elf[] = {
    0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 0, 0x3e, 0, 1, 0, 0, 0, 0x78, 0, 0x40, 0, 0, 0, 0, 0,
    0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0x40, 0, 0x38, 0, 1, 0, 0, 0, 0, 0, 0, 0,
    1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0,
    0x80, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0,
    0, 0x10, 0, 0, 0, 0, 0, 0,
    0xb8, 60, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05,
};

static void try_exec(const char *key, const char *path)
{
    pid_t p = fork();
    if (p == 0) {
        char *argv[] = {(char *)path, NULL};
        execv(path, argv);
        _exit(100 + (errno & 0x7f));
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) >= 100)
        printf("%s: refused: %s\n", key, strerror(WEXITSTATUS(st) - 100));
    else
        printf("%s: RAN (status %d)\n", key, st);
}

int main(int argc, char **argv)
{
    int fd = open("/tmp/native-x86", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (fd < 0 || write(fd, tiny_elf, sizeof tiny_elf) != (ssize_t)sizeof tiny_elf) {
        printf("x86-elf: cannot write: %s\n", strerror(errno));
    } else {
        close(fd);
        try_exec("x86-elf", "/tmp/native-x86");
    }
    try_exec("qemu", "/.guestview/bin/qemu-mips");
    try_exec("loader", "/.guestview/lib/ld-linux-x86-64.so.2");
    for (int i = 1; i < argc; i++)
        try_exec(argv[i], argv[i]);
    return 0;
}
