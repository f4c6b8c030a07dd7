// SPDX-License-Identifier: MIT OR Apache-2.0
/* exec_probe: tries to run host-native code from inside the guest, one
 * "key: result" line each: "refused: ERROR" (the exec failed), "killed:
 * signal N" (the child died by a signal before the program could exit by
 * itself) or "RAN (status N)". The sandbox tests expect none to run:
 *   x86-elf   an x86-64 ELF the guest writes into /tmp
 *   fd-exec   the same through execveat(fd, "", AT_EMPTY_PATH)
 *   proc-fd   the same through /proc/self/fd/N
 *   memfd     the same written into a memfd_create file and run from it
 *   script    a #! script in /tmp whose interpreter is that ELF
 *   qemu      QEMU's own binary, where the sandbox bound it
 *   loader    the host's dynamic loader, likewise
 *   loader-script  a #! script whose interpreter is the host's loader
 *   argv[1..] any further paths given */
#define _GNU_SOURCE
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

#include <sys/syscall.h>

/* Run path (or, if path is NULL, the file open at fd) in a child. */
static void try_exec_fd(const char *key, const char *path, int fd)
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        char *argv[] = {(char *)(path ? path : key), NULL};
        char *envp[] = {NULL};
        if (path)
            execv(path, argv);
        else
            syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
        _exit(100 + (errno & 0x7f));
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) >= 100)
        printf("%s: refused: %s\n", key, strerror(WEXITSTATUS(st) - 100));
    else if (WIFSIGNALED(st))
        printf("%s: killed: signal %d\n", key, WTERMSIG(st));
    else
        printf("%s: RAN (status %d)\n", key, WEXITSTATUS(st));
}

static void try_exec(const char *key, const char *path)
{
    try_exec_fd(key, path, -1);
}

static int write_file(const char *path, const void *data, size_t n, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, data, n) != (ssize_t)n) {
        printf("%s: cannot write: %s\n", path, strerror(errno));
        return -1;
    }
    return close(fd);
}

int main(int argc, char **argv)
{
    if (write_file("/tmp/native-x86", tiny_elf, sizeof tiny_elf, 0755) == 0) {
        try_exec("x86-elf", "/tmp/native-x86");
        int fd = open("/tmp/native-x86", O_RDONLY);
        try_exec_fd("fd-exec", NULL, fd);
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        try_exec("proc-fd", proc);
        close(fd);
        static const char script[] = "#!/tmp/native-x86\n";
        if (write_file("/tmp/native-script", script, sizeof script - 1, 0755) == 0)
            try_exec("script", "/tmp/native-script");
    }
    int m = syscall(SYS_memfd_create, "guestview-probe", 0);
    if (m < 0)
        printf("memfd: refused: %s\n", strerror(errno));
    else if (write(m, tiny_elf, sizeof tiny_elf) != (ssize_t)sizeof tiny_elf)
        printf("memfd: refused: %s\n", strerror(errno));
    else
        try_exec_fd("memfd", NULL, m);
    try_exec("qemu", "/.guestview/bin/qemu-mips");
    try_exec("loader", "/.guestview/lib/ld-linux-x86-64.so.2");
    static const char lscript[] = "#!/.guestview/lib/ld-linux-x86-64.so.2\n";
    if (write_file("/tmp/loader-script", lscript, sizeof lscript - 1, 0755) == 0)
        try_exec("loader-script", "/tmp/loader-script");
    for (int i = 1; i < argc; i++)
        try_exec(argv[i], argv[i]);
    return 0;
}
