// SPDX-License-Identifier: MIT OR Apache-2.0
/* minish: a small shell, so a guest can run a script of other guest
 * programs (fork + exec of each, as any shell does).
 *   minish SCRIPT [ARGS]   run SCRIPT's lines ("#" lines and "#!" are
 *                          comments, so a script can start "#!/x/minish")
 * Each line is words split by blanks:
 *   CMD ARGS...            fork, execvp (searches PATH), wait; prints
 *                          "minish: CMD: status N" or "...: signal N"
 *                          when not 0
 *   noenv CMD ARGS...      the same with an empty environment
 *   exec CMD ARGS...       exec without fork (the shell is replaced)
 *   path DIRS              set PATH
 *   exit N                 stop with status N
 * The status of minish is that of its last command (127: not found,
 * 126: could not be executed, as sh's). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int run(char **argv, int use_env)
{
    char *empty[] = {NULL};
    fflush(stdout);
    pid_t p = fork();
    if (p < 0) {
        perror("minish: fork");
        return 126;
    }
    if (p == 0) {
        if (use_env) {
            execvp(argv[0], argv);
        } else {
            execve(argv[0], argv, empty);
        }
        fprintf(stderr, "minish: %s: %s\n", argv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    int st = 0;
    if (waitpid(p, &st, 0) != p) {
        perror("minish: waitpid");
        return 126;
    }
    if (WIFSIGNALED(st)) {
        printf("minish: %s: signal %d\n", argv[0], WTERMSIG(st));
        return 128 + WTERMSIG(st);
    }
    if (WEXITSTATUS(st) != 0)
        printf("minish: %s: status %d\n", argv[0], WEXITSTATUS(st));
    return WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: minish SCRIPT [ARGS]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        fprintf(stderr, "minish: %s: %s\n", argv[1], strerror(errno));
        return 127;
    }
    char line[1024];
    int status = 0;
    while (fgets(line, sizeof line, f)) {
        char *words[64];
        int n = 0;
        for (char *w = strtok(line, " \t\n"); w && n < 63; w = strtok(NULL, " \t\n"))
            words[n++] = w;
        words[n] = NULL;
        if (n == 0 || words[0][0] == '#')
            continue;
        if (!strcmp(words[0], "exit"))
            return n > 1 ? atoi(words[1]) : status;
        if (!strcmp(words[0], "path")) {
            setenv("PATH", n > 1 ? words[1] : "", 1);
            continue;
        }
        if (!strcmp(words[0], "exec") && n > 1) {
            fflush(stdout);
            execvp(words[1], words + 1);
            fprintf(stderr, "minish: exec %s: %s\n", words[1], strerror(errno));
            return errno == ENOENT ? 127 : 126;
        }
        if (!strcmp(words[0], "noenv") && n > 1)
            status = run(words + 1, 0);
        else
            status = run(words, 1);
    }
    return status;
}
