// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * hostview: record every host syscall of a traced process tree (QEMU and
 * everything it forks), one host-ring record per syscall, plus fork, exec
 * and exit. Loaded and read by guestview-bpf (src/lib.rs).
 *
 * Cost model: an untraced task pays one program run, with
 * bpf_get_current_pid_tgid() and one bit test, per syscall exit (there
 * is no program on the raw sys_enter tracepoint; see gv_sys_exit). A traced
 * one also pays one record in the host ring (see ring_reserve). Nothing
 * wakes the consumer: it drains on a timer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "hostview.h"

/*
 * The lookup tables live in a data section of their own, not in .rodata:
 * libbpf binds a .rodata map to every program with BPF_PROG_BIND_MAP, four
 * more syscalls on the start-up's critical path (~2.5 ms of 18 ms under
 * strace). Nothing writes them.
 */
#define GV_TABLE __attribute__((section(".data.tables")))
#include "x86_64_nargs.h"

char LICENSE[] SEC("license") = "GPL";

#define NR_EXECVE 59
#define NR_EXIT 60
#define NR_EXIT_GROUP 231
#define NR_EXECVEAT 322
#define NR_RT_SIGRETURN 15

/*
 * The sets of processes (struct gv_pidsets), one bit per pid, in .bss:
 * user space maps it. The test runs at every syscall exit of every process
 * on the host, so it is a plain load from the program's own data, no
 * helper call and no hash: the difference is measurable on every syscall
 * of the machine.
 */
struct gv_pidsets pidsets;

/* The exec guard of a sandboxed run (see struct gv_guard). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gv_guard);
} guard SEC(".maps");

/* Scratch for the guard's copy of the new image's arguments. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, char[GV_GUARD_PREFIX_MAX]);
} guard_buf SEC(".maps");

/* The host ring (see GV_RING_BYTES in hostview.h): data, then positions. */
struct gv_ring_data {
	char bytes[GV_RING_BYTES + GV_RING_PAD];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gv_ring_data);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gv_ring_ctl);
} ringctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gv_stats);
} stats SEC(".maps");

/*
 * What sched_process_exec saw, kept on the task until the exec's own
 * sys_exit (which runs in the new image, the old arguments gone). Task
 * storage lives on the task_struct, so it survives execve and needs no
 * clean-up when the thread dies.
 */
struct gv_pending {
	__u64 t_enter;
	__s64 nr;
	__u32 tid;
	__u16 path_len;
	__u8 active;
	__u8 path_truncated;
	char path[GV_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct gv_pending);
} pending SEC(".maps");

/*
 * For each x86-64 syscall number, 1 + the index of its path argument, or 0.
 * Dirfd-relative calls take the path in arg 1; for two-path calls the first
 * path is kept (symlink: the target, which is arg 0).
 */
#define GV_NR_TABLE 512
static GV_TABLE __u8 path_arg_plus1[GV_NR_TABLE] = {
	[2] = 1,   /* open */
	[4] = 1,   /* stat */
	[6] = 1,   /* lstat */
	[21] = 1,  /* access */
	[59] = 1,  /* execve */
	[76] = 1,  /* truncate */
	[80] = 1,  /* chdir */
	[82] = 1,  /* rename */
	[83] = 1,  /* mkdir */
	[84] = 1,  /* rmdir */
	[85] = 1,  /* creat */
	[86] = 1,  /* link */
	[87] = 1,  /* unlink */
	[88] = 1,  /* symlink (target) */
	[89] = 1,  /* readlink */
	[90] = 1,  /* chmod */
	[92] = 1,  /* chown */
	[94] = 1,  /* lchown */
	[133] = 1, /* mknod */
	[137] = 1, /* statfs */
	[161] = 1, /* chroot */
	[165] = 2, /* mount (dir_name) */
	[166] = 1, /* umount2 */
	[188] = 1, /* setxattr */
	[189] = 1, /* lsetxattr */
	[191] = 1, /* getxattr */
	[192] = 1, /* lgetxattr */
	[194] = 1, /* listxattr */
	[195] = 1, /* llistxattr */
	[197] = 1, /* removexattr */
	[198] = 1, /* lremovexattr */
	[257] = 2, /* openat */
	[258] = 2, /* mkdirat */
	[259] = 2, /* mknodat */
	[260] = 2, /* fchownat */
	[262] = 2, /* newfstatat */
	[263] = 2, /* unlinkat */
	[264] = 2, /* renameat */
	[267] = 2, /* readlinkat */
	[268] = 2, /* fchmodat */
	[269] = 2, /* faccessat */
	[280] = 2, /* utimensat (may be NULL) */
	[316] = 2, /* renameat2 */
	[322] = 2, /* execveat */
	[332] = 2, /* statx */
	[437] = 2, /* openat2 */
	[439] = 2, /* faccessat2 */
};

static __always_inline struct gv_stats *stats_slot(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&stats, &zero);
}

static __always_inline void count_dropped(void)
{
	struct gv_stats *s = stats_slot();

	if (s)
		__sync_fetch_and_add(&s->dropped, 1);
}

static __always_inline void count_path_failure(void)
{
	struct gv_stats *s = stats_slot();

	if (s)
		__sync_fetch_and_add(&s->path_failures, 1);
}

static __always_inline void count_pending_failure(void)
{
	struct gv_stats *s = stats_slot();

	if (s)
		__sync_fetch_and_add(&s->pending_failures, 1);
}

/*
 * Reserve `len` bytes of record in the host ring: one compare-and-swap on
 * the producer position (a few tries against another CPU's), refused when
 * the reader has not freed the room. Nothing else is done per record (no
 * counter, no wake-up: guestview drains the ring on a timer; user space
 * counts what it receives). Returns where the record goes, its position
 * in *pos.
 */
static __always_inline void *ring_reserve(__u32 len, __u64 *pos)
{
	__u32 zero = 0;
	struct gv_ring_ctl *c = bpf_map_lookup_elem(&ringctl, &zero);
	struct gv_ring_data *d = bpf_map_lookup_elem(&ring, &zero);
	__u64 total = (8 + (__u64)len + 7) & ~7ULL;

	if (!c || !d || len > GV_RING_PAD - 8)
		return 0;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 head = *(volatile __u64 *)&c->head;
		__u64 cons = *(volatile __u64 *)&c->cons;

		if (head + total - cons > GV_RING_BYTES)
			return 0;
		if (__sync_val_compare_and_swap(&c->head, head, head + total) == head) {
			/* head is a multiple of 8: the mask says so to the verifier. */
			struct gv_ring_hdr *h = (void *)&d->bytes[head & (GV_RING_BYTES - 8)];

			/* Not yet written, for a reader that looks at once. */
			h->len = len;
			h->tag = 0;
			*pos = head;
			return h + 1;
		}
	}
	return 0;
}

/* Publish a record reserved at `pos`: its header, after its body. */
static __always_inline void ring_commit(void *e, __u32 len, __u64 pos)
{
	__u64 hdr = (__u64)len | ((__u64)GV_RING_TAG(pos) << 32);

	/* An exchange: a full barrier, so the body is visible before it. */
	__sync_lock_test_and_set((__u64 *)((char *)e - 8), hdr);
}

static __always_inline void fill_hdr(struct gv_event_hdr *h, __u16 op, __u16 flags,
				     __u32 size, __u64 now)
{
	h->op = op;
	h->flags = flags;
	h->size = size;
	h->ktime = now;
}

/*
 * The kernel's x86-64 pt_regs, declared here without CO-RE: its layout is
 * the ptrace ABI (asm/ptrace.h) and never moves, and every CO-RE type costs
 * libbpf a scan of the kernel's whole BTF at start-up. The verifier still
 * checks each access against the kernel's own pt_regs.
 */
struct gv_pt_regs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

/* The x86-64 syscall argument registers, in order. */
static __always_inline void copy_regs_args(__u64 *dst, struct gv_pt_regs *regs)
{
	dst[0] = regs->di;
	dst[1] = regs->si;
	dst[2] = regs->dx;
	dst[3] = regs->r10;
	dst[4] = regs->r8;
	dst[5] = regs->r9;
}

/* Syscall argument i (0-5) straight from the registers. */
static __always_inline __u64 reg_arg(struct gv_pt_regs *regs, __u32 i)
{
	switch (i) {
	case 0: return regs->di;
	case 1: return regs->si;
	case 2: return regs->dx;
	case 3: return regs->r10;
	case 4: return regs->r8;
	default: return regs->r9;
	}
}

/*
 * args[i] for a small i, written so that the verifier sees constant offsets
 * (clang turns args[i - 1] into an index it cannot bound).
 */
static __always_inline __u64 pick_arg(const __u64 *args, __u32 i)
{
	switch (i) {
	case 0: return args[0];
	case 1: return args[1];
	case 2: return args[2];
	case 3: return args[3];
	case 4: return args[4];
	default: return args[5];
	}
}

/*
 * The word of tgid's bit in a set. Pids are below GV_PID_LIMIT (the kernel
 * never hands out more), so the mask changes nothing; it is there for the
 * verifier, which must see the index bounded on this very register.
 */
#define PID_WORD(set, tgid) (&pidsets.set[((tgid) / 64) & (GV_PID_LIMIT / 64 - 1)])
#define PID_BIT(tgid) (1ULL << ((tgid) % 64))

static __always_inline int is_traced(__u32 tgid)
{
	return (*PID_WORD(traced, tgid) & PID_BIT(tgid)) != 0;
}

static __always_inline int is_untimed(__u32 tgid)
{
	return (*PID_WORD(untimed, tgid) & PID_BIT(tgid)) != 0;
}

static __always_inline void set_traced(__u32 tgid)
{
	__sync_fetch_and_or(PID_WORD(traced, tgid), PID_BIT(tgid));
}

static __always_inline void set_untimed(__u32 tgid)
{
	__sync_fetch_and_or(PID_WORD(untimed, tgid), PID_BIT(tgid));
}

/* A process leaves both sets when it exits (its pid may be reused). */
static __always_inline void forget_pid(__u32 tgid)
{
	__sync_fetch_and_and(PID_WORD(traced, tgid), ~PID_BIT(tgid));
	__sync_fetch_and_and(PID_WORD(untimed, tgid), ~PID_BIT(tgid));
}

/* A new image: its plugin has not mapped the ring's producer page yet. */
static __always_inline void clear_untimed(__u32 tgid)
{
	__sync_fetch_and_and(PID_WORD(untimed, tgid), ~PID_BIT(tgid));
}

/*
 * Every record's `pos` is left 0 here: the reader sets it to the record's
 * own position in the ring, which it knows exactly as it reads them in
 * order (no record is ever discarded, so none is skipped). That is the
 * position the reservation moved the producer past, the one the plugin
 * compares with; asking the ring for it here cost a helper call a syscall.
 */

/* Emit a syscall that will not reach sys_exit. */
static __always_inline void emit_noreturn(__u32 tgid, __u32 tid, __s64 nr, const __u64 *args,
					  __u64 t_enter, __u64 now, __u16 flags)
{
	__u64 pos;
	struct gv_syscall_event *e = ring_reserve(sizeof(*e), &pos);

	if (!e) {
		count_dropped();
		return;
	}
	fill_hdr(&e->hdr, GV_OP_NORETURN, flags, sizeof(*e), now);
	e->tgid = tgid;
	e->tid = tid;
	e->nr = nr;
#pragma unroll
	for (int i = 0; i < 6; i++)
		e->args[i] = args[i];
	e->ret = 0;
	e->t_enter = t_enter;
	e->t_exit = now;
	e->pos = 0;
	ring_commit(e, sizeof(*e), pos);
}

/*
 * There is no sys_enter program. A program on the raw sys_enter tracepoint
 * runs for every syscall of every process on the host, and on this machine
 * kind that alone cost about 50 ns a syscall. The join needs only exit
 * times (a host call whose exit lies in a guest call's window began in it:
 * one thread makes one syscall at a time), the arguments are still in
 * pt_regs at sys_exit, and a path argument is still in memory. What sys_exit
 * cannot see comes from the process tracepoints, which fire rarely:
 *   exit, exit_group  never reach sys_exit: sched_process_exit sees the
 *                     thread still inside them (gv_exit);
 *   execve, execveat  a successful one reaches sys_exit in the new image,
 *                     its arguments gone: sched_process_exec keeps the file
 *                     name for it in task storage (gv_exec).
 * rt_sigreturn restores orig_ax to -1, so a sys_exit with orig_ax -1 is it.
 * (The per-syscall tracepoints, syscalls/sys_enter_*, were tried: they are
 * cheap while attached, but detaching each one waits for an RCU tasks-trace
 * grace period, which added 300 ms to every run.)
 */

static __always_inline int is_exec(__s64 nr)
{
	return nr == NR_EXECVE || nr == NR_EXECVEAT;
}

/* Fill the path fields of `e` from user memory at `up`; returns its flags. */
static __always_inline __u16 path_at_exit(struct gv_syscall_path_event *e, const char *up)
{
	long n = bpf_probe_read_user_str(e->path, sizeof(e->path), up);

	if (n > 0) {
		e->path_len = n - 1;
		return n == sizeof(e->path) ? GV_F_PATH_TRUNCATED : 0;
	}
	e->path_len = 0;
	e->path[0] = 0;
	count_path_failure();
	return GV_F_PATH_FAULT;
}

/*
 * A syscall whose arguments sys_exit can no longer see (rt_sigreturn: its
 * exit restores the interrupted registers): a full record, arguments 0,
 * flagged GV_F_NO_ENTER. Every other call without a path gets emit_sc.
 */
static __always_inline void emit_no_args(__u32 tgid, __u32 tid, __s64 nr, long ret, __u64 now)
{
	__u64 pos;
	struct gv_syscall_event *e = ring_reserve(sizeof(*e), &pos);

	if (!e) {
		count_dropped();
		return;
	}
	fill_hdr(&e->hdr, GV_OP_SYSCALL, GV_F_NO_ENTER, sizeof(*e), now);
	e->tgid = tgid;
	e->tid = tid;
	e->nr = nr;
	__builtin_memset(e->args, 0, sizeof(e->args));
	e->ret = ret;
	e->t_enter = 0;
	e->t_exit = now;
	e->pos = 0;
	ring_commit(e, sizeof(*e), pos);
}

/*
 * The short record (struct gv_sc_event) of a syscall that returned and
 * has no path: only the arguments the call takes, the time only when the
 * process does not read ring positions: 32 to 80 bytes in the ring
 * instead of 120.
 */
static __always_inline void emit_sc(__u32 tgid, __u32 tid, struct gv_pt_regs *regs, __s64 nr,
				    long ret, __u64 now)
{
	struct gv_sc_event *e;
	__u64 w[7];
	__u32 n = (__u64)nr < GV_NR_TABLE ? x86_64_nargs_plus1[nr] : 0;
	__u32 timed = now != 0;
	__u32 words;
	__u64 pos;

	n = n == 0 || n > 7 ? 6 : n - 1;
	words = n + timed;
	if (timed) {
		w[0] = now;
		copy_regs_args(&w[1], regs);
	} else {
		copy_regs_args(w, regs);
		w[6] = 0;
	}
	e = ring_reserve(24 + 8 * words, &pos);
	if (!e) {
		count_dropped();
		return;
	}
	e->op = GV_OP_SC;
	e->nargs = n;
	e->timed = timed;
	e->nr = nr;
	e->tgid = tgid;
	e->tid = tid;
	e->ret = ret;
#pragma unroll
	for (int i = 0; i < 7; i++)
		if (i < words)
			e->words[i] = w[i];
	ring_commit(e, 24 + 8 * words, pos);
}

/*
 * An exec's sys_exit. A successful one runs in the new image: its file name
 * is the one sched_process_exec kept, its arguments are gone (0, flagged).
 * A failed one is still in the old image with its registers and memory.
 */
static __always_inline void exec_at_exit(__u32 tgid, __u32 tid, struct gv_pt_regs *regs, __s64 nr,
					 long ret, __u64 now)
{
	struct gv_pending *p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0, 0);
	struct gv_syscall_path_event *e;
	int done = p && p->active;
	__u16 flags = 0;

	if (p)
		p->active = 0;
	__u64 pos;
	e = ring_reserve(sizeof(*e), &pos);
	if (!e) {
		count_dropped();
		return;
	}
	e->sc.tgid = tgid;
	e->sc.tid = tid;
	e->sc.nr = nr;
	e->sc.ret = ret;
	e->sc.t_enter = 0;
	e->sc.t_exit = now;
	e->sc.pos = 0;
	e->path_arg = nr == NR_EXECVEAT ? 1 : 0;
	__builtin_memset(e->_pad0, 0, sizeof(e->_pad0));
	if (done && ret == 0) {
		__builtin_memset(e->sc.args, 0, sizeof(e->sc.args));
		flags |= GV_F_NO_ENTER;
		bpf_probe_read_kernel(e->path, sizeof(e->path), p->path);
		e->path_len = p->path_len;
		if (p->path_truncated)
			flags |= GV_F_PATH_TRUNCATED;
	} else {
		copy_regs_args(e->sc.args, regs);
		flags |= GV_F_PATH_AT_EXIT |
			 path_at_exit(e, (const char *)pick_arg(e->sc.args, e->path_arg));
	}
	fill_hdr(&e->sc.hdr, GV_OP_SYSCALL_PATH, flags, sizeof(*e), now);
	ring_commit(e, sizeof(*e), pos);
}

/*
 * BTF-typed raw tracepoint rather than a classic one: a classic tracepoint
 * first copies the event into a perf buffer for every syscall of every
 * process, which made untraced processes 2.6x slower on a syscall-heavy
 * loop; tp_btf hands us the registers directly.
 */
/*
 * Enforcement (policy kill rules and rate limits), decided here where the
 * guest cannot reach. Settings and counters live in their own section so
 * the traced bitmap's .bss layout stays as it is.
 */
#define NR_CONNECT 42
#define GV_SIGKILL 9

struct gv_enforce enforce SEC(".data.enforce");

/* New processes beyond the fork rate: killed at their first syscall exit. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} doomed SEC(".maps");

static __always_inline void emit_enforce(__u32 tgid, __u32 tid, __s64 nr, __u32 reason,
					 __u64 count, __u32 limit, __u8 killed, __u64 now)
{
	__u64 pos;
	struct gv_enforce_event *e = ring_reserve(sizeof(*e), &pos);

	if (!e) {
		count_dropped();
		return;
	}
	fill_hdr(&e->hdr, GV_OP_ENFORCE, 0, sizeof(*e), now);
	e->tgid = tgid;
	e->tid = tid;
	e->nr = nr;
	e->reason = reason;
	e->count = count > 0xffffffffULL ? 0xffffffffU : (__u32)count;
	e->limit = limit;
	e->killed = killed;
	__builtin_memset(e->_pad0, 0, sizeof(e->_pad0));
	ring_commit(e, sizeof(*e), pos);
}

/*
 * Count one event against a rate; returns the count in this window when
 * it is over `limit` (0 when within). Sets *alert when this is the first
 * excess of the window (one alert per second).
 */
static __always_inline __u64 rate_over(struct gv_rate *r, __u32 limit, __u64 now, int *alert)
{
	__u64 win = now / 1000000000ULL;
	__u64 seen = r->window;
	__u64 n;

	if (seen != win && __sync_val_compare_and_swap(&r->window, seen, win) == seen)
		__sync_lock_test_and_set(&r->count, 0);
	n = __sync_fetch_and_add(&r->count, 1) + 1;
	if (n <= limit)
		return 0;
	__sync_fetch_and_add(&r->exceeded, 1);
	seen = r->alerted;
	*alert = seen != win + 1 &&
		 __sync_val_compare_and_swap(&r->alerted, seen, win + 1) == seen;
	return n;
}

/*
 * Enforcement at a traced syscall exit: kill rules, connect rate, doomed
 * children. `now` is 0 for an untimed process: the clock is read only
 * where a decision needs it.
 */
static __always_inline void enforce_at_exit(__u32 tgid, __u32 tid, __s64 nr, __u64 now)
{
	__u32 limit;
	int alert = 0;
	__u64 n;

	if ((__u64)nr < GV_NR_LIMIT &&
	    (enforce.kill_nr_bits[((__u64)nr / 64) & (GV_NR_LIMIT / 64 - 1)] >> (nr % 64)) & 1) {
		if (!now)
			now = bpf_ktime_get_ns();
		bpf_send_signal(GV_SIGKILL);
		__sync_fetch_and_add(&enforce.kills, 1);
		emit_enforce(tgid, tid, nr, GV_ENF_KILL_NR, 1, 0, 1, now);
		return;
	}
	limit = enforce.connect_per_sec;
	if (nr == NR_CONNECT && limit) {
		if (!now)
			now = bpf_ktime_get_ns();
		n = rate_over(&enforce.connect, limit, now, &alert);
		if (n) {
			bpf_send_signal(GV_SIGKILL);
			__sync_fetch_and_add(&enforce.kills, 1);
			if (alert)
				emit_enforce(tgid, tid, nr, GV_ENF_CONNECT_RATE, n, limit, 1, now);
		}
	}
	if (enforce.fork.exceeded) {
		struct task_struct *t = bpf_get_current_task_btf();
		__u8 *d = bpf_task_storage_get(&doomed, t, 0, 0);

		if (d && *d) {
			*d = 0;
			bpf_send_signal(GV_SIGKILL);
			__sync_fetch_and_add(&enforce.kills, 1);
		}
	}
}

/* A new process of the traced tree: count it against the fork rate. */
static __always_inline void enforce_at_fork(struct task_struct *child, __u32 ptgid, __u32 ptid)
{
	__u32 limit = enforce.fork_per_sec;
	__u64 now, n;
	int alert = 0;
	__u8 *d;

	if (!limit)
		return;
	now = bpf_ktime_get_ns();
	n = rate_over(&enforce.fork, limit, now, &alert);
	if (!n)
		return;
	d = bpf_task_storage_get(&doomed, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (d)
		*d = 1;
	if (alert)
		emit_enforce(ptgid, ptid, -1, GV_ENF_FORK_RATE, n, limit, d != 0, now);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(gv_sys_exit, struct gv_pt_regs *regs, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 tid = (__u32)pid_tgid;
	__s64 nr;
	__u32 ai;
	__u64 now;
	const char *up;

	if (!is_traced(tgid))
		return 0;

	nr = (__s64)regs->orig_ax;
	if (nr == GV_NR_FCNTL && (int)regs->di == -1 && regs->si == GV_UNTIMED_FCNTL_CMD)
		set_untimed(tgid);
	now = is_untimed(tgid) ? 0 : bpf_ktime_get_ns();
	enforce_at_exit(tgid, tid, nr, now);
	if (nr == -1) {
		/* rt_sigreturn put the interrupted context's orig_ax (-1) back;
		 * its arguments are gone with it. */
		emit_no_args(tgid, tid, NR_RT_SIGRETURN, ret, now);
		return 0;
	}
	if (is_exec(nr)) {
		/* Rare, and the image may have changed under it: timed. */
		exec_at_exit(tgid, tid, regs, nr, ret, now ? now : bpf_ktime_get_ns());
		return 0;
	}
	ai = (__u64)nr < GV_NR_TABLE ? path_arg_plus1[nr] : 0;
	/* utimensat(fd, NULL, ...) has no path: a plain record (decided
	 * before reserving: a discarded record would shift the positions the
	 * reader counts). */
	up = ai == 0 || ai > 6 ? 0 : (const char *)reg_arg(regs, ai - 1);
	if (!up) {
		emit_sc(tgid, tid, regs, nr, ret, now);
		return 0;
	}
	{
		__u64 pos;
		struct gv_syscall_path_event *e = ring_reserve(sizeof(*e), &pos);
		__u16 flags = GV_F_PATH_AT_EXIT;

		if (!e) {
			count_dropped();
			return 0;
		}
		e->sc.tgid = tgid;
		e->sc.tid = tid;
		e->sc.nr = nr;
		copy_regs_args(e->sc.args, regs);
		e->sc.ret = ret;
		e->sc.t_enter = 0;
		e->sc.t_exit = now;
		e->sc.pos = 0;
		e->path_arg = ai - 1;
		__builtin_memset(e->_pad0, 0, sizeof(e->_pad0));
		flags |= path_at_exit(e, up);
		fill_hdr(&e->sc.hdr, GV_OP_SYSCALL_PATH, flags, sizeof(*e), now);
		ring_commit(e, sizeof(*e), pos);
	}
	return 0;
}

/* A task's id in the innermost PID namespace it belongs to. */
static __always_inline __u32 ns_tid_of(struct task_struct *t)
{
	struct pid *p = BPF_CORE_READ(t, thread_pid);
	unsigned int level = BPF_CORE_READ(p, level);

	return BPF_CORE_READ(p, numbers[level].nr);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(gv_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid;
	__u32 ctgid = child->tgid;
	struct gv_fork_event *e;

	if (!is_traced(ptgid))
		return 0;

	/* Before the child first runs, so none of its syscalls is missed. */
	if (ctgid != ptgid) {
		set_traced(ctgid);
		/* The child has its parent's memory, the plugin's mapping of
		 * the producer page included. */
		if (is_untimed(ptgid))
			set_untimed(ctgid);
		else
			clear_untimed(ctgid);
		enforce_at_fork(child, ptgid, parent->pid);
	}

	__u64 pos;
	e = ring_reserve(sizeof(*e), &pos);
	if (!e) {
		count_dropped();
		return 0;
	}
	fill_hdr(&e->hdr, GV_OP_FORK, 0, sizeof(*e), bpf_ktime_get_ns());
	e->parent_tgid = ptgid;
	e->parent_tid = parent->pid;
	e->child_tgid = ctgid;
	e->child_tid = child->pid;
	e->child_ns_tid = ns_tid_of(child);
	e->child_ns_tgid = ns_tid_of(BPF_CORE_READ(child, group_leader));
	e->is_thread = ctgid == ptgid;
	__builtin_memset(e->_pad0, 0, sizeof(e->_pad0));
	ring_commit(e, sizeof(*e), pos);
	return 0;
}

struct guard_cmp {
	const char *buf;
	const struct gv_guard *g;
	__u32 n;
	int differ;
};

/*
 * One word of the guard's comparison; the last word only up to n (past
 * it, buf holds what an earlier exec left there). Little-endian: the low
 * bytes come first.
 */
static long guard_word(__u64 i, void *ctx)
{
	struct guard_cmp *c = ctx;
	__u64 at = i * 8, a, b, mask = ~0ULL;

	if (at >= c->n || at > GV_GUARD_PREFIX_MAX - 8)
		return 1;
	if (c->n - at < 8)
		mask = (1ULL << ((c->n - at) * 8)) - 1;
	a = *(const __u64 *)(c->buf + at);
	b = *(const __u64 *)(c->g->prefix + at);
	if ((a ^ b) & mask) {
		c->differ = 1;
		return 1;
	}
	return 0;
}

/*
 * The exec guard: is the image this exec loaded the allowed one (QEMU's
 * loader, file and arguments as guestview starts it)? Runs after the point
 * of no return but before the new image's first instruction, so a SIGKILL
 * sent here is taken before anything of the image runs.
 */
static __always_inline int exec_allowed(struct task_struct *p, struct linux_binprm *bprm,
					const struct gv_guard *g)
{
	struct inode *inode = BPF_CORE_READ(bprm, file, f_inode);
	__u32 zero = 0, n = g->prefix_len;
	unsigned long start, end;
	char *buf;

	if (!inode || BPF_CORE_READ(inode, i_ino) != g->ino ||
	    BPF_CORE_READ(inode, i_sb, s_dev) != g->dev)
		return 0;
	if (n == 0 || n > GV_GUARD_PREFIX_MAX)
		return 0;
	start = BPF_CORE_READ(p, mm, arg_start);
	end = BPF_CORE_READ(p, mm, arg_end);
	if (end < start || end - start < n)
		return 0;
	buf = bpf_map_lookup_elem(&guard_buf, &zero);
	if (!buf)
		return 0;
	if (bpf_probe_read_user(buf, n, (const void *)start))
		return 0;
	/* Word by word in a bpf_loop callback (verified once, not once per
	 * iteration: a plain loop over 4 KiB doubled the programs' load time). */
	{
		struct guard_cmp c = { .buf = buf, .g = g, .n = n, .differ = 0 };

		bpf_loop(GV_GUARD_PREFIX_MAX / 8, guard_word, &c, 0);
		return !c.differ;
	}
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(gv_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid;
	struct gv_exec_event *e;
	struct gv_pending *pend;
	const struct gv_guard *g;
	__u32 zero = 0;
	__u16 killed = 0;
	long n;

	if (!is_traced(tgid))
		return 0;

	/* The new image has no mapping of the producer page until its plugin
	 * makes one and says so: time its calls until then. */
	clear_untimed(tgid);

	g = bpf_map_lookup_elem(&guard, &zero);
	if (g && g->enabled && !exec_allowed(p, bprm, g)) {
		bpf_send_signal(9 /* SIGKILL */);
		killed = GV_F_EXEC_KILLED;
	}

	__u64 pos;
	e = ring_reserve(sizeof(*e), &pos);
	if (!e) {
		count_dropped();
		return 0;
	}
	fill_hdr(&e->hdr, GV_OP_EXEC, killed, sizeof(*e), bpf_ktime_get_ns());
	e->tgid = tgid;
	e->tid = p->pid;
	e->pos = 0;
	e->old_tid = old_pid;
	e->_pad0 = 0;
	n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	if (n > 0) {
		e->filename_len = n - 1;
		if (n == sizeof(e->filename))
			e->hdr.flags |= GV_F_PATH_TRUNCATED;
	} else {
		e->filename_len = 0;
		e->filename[0] = 0;
		e->hdr.flags |= GV_F_PATH_FAULT;
		count_path_failure();
	}

	/* For the exec's own sys_exit, which runs in the new image. */
	pend = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (pend) {
		pend->active = 1;
		pend->t_enter = e->hdr.ktime;
		pend->tid = e->tid;
		pend->nr = -1;
		pend->path_len = e->filename_len;
		pend->path_truncated = n == sizeof(e->filename);
		bpf_probe_read_kernel(pend->path, sizeof(pend->path), e->filename);
	} else {
		count_pending_failure();
	}
	ring_commit(e, sizeof(*e), pos);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(gv_exit, struct task_struct *p, bool group_dead)
{
	__u32 tgid = p->tgid;
	__u32 tid = p->pid;
	struct gv_exit_event *e;
	struct gv_pending *pend;
	__u64 now;

	if (!is_traced(tgid))
		return 0;

	now = bpf_ktime_get_ns();

	/*
	 * A thread that dies inside exit or exit_group: its saved registers
	 * say so (orig_ax is the number; ax still holds the -ENOSYS the entry
	 * code puts there, as the call never returned). A thread killed on
	 * its way back from another syscall has that call's number and result
	 * there, and its sys_exit was recorded already.
	 */
	{
		struct gv_pt_regs *regs = (struct gv_pt_regs *)bpf_task_pt_regs(p);
		__s64 nr = regs ? (__s64)regs->orig_ax : -1;
		__s64 ax = regs ? (__s64)regs->ax : 0;

		if (regs && (nr == NR_EXIT || nr == NR_EXIT_GROUP) && ax == -38 /* -ENOSYS */) {
			__u64 args[6];

			copy_regs_args(args, regs);
			emit_noreturn(tgid, tid, nr, args, now, now, 0);
		}
	}

	/* An exec that was killed between its point of no return and sys_exit. */
	pend = bpf_task_storage_get(&pending, p, 0, 0);
	if (pend && pend->active) {
		__u64 none[6] = {};

		pend->active = 0;
		emit_noreturn(tgid, pend->tid, NR_EXECVE, none, pend->t_enter, now,
			      GV_F_INTERRUPTED);
	}

	__u64 pos;
	e = ring_reserve(sizeof(*e), &pos);
	if (e) {
		fill_hdr(&e->hdr, GV_OP_EXIT, 0, sizeof(*e), now);
		e->tgid = tgid;
		e->tid = tid;
		e->exit_code = p->exit_code;
		e->group_dead = group_dead;
		__builtin_memset(e->_pad0, 0, sizeof(e->_pad0));
		ring_commit(e, sizeof(*e), pos);
	} else {
		count_dropped();
	}

	if (group_dead)
		forget_pid(tgid);
	return 0;
}
