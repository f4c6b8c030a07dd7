/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The one definition of the records that hostview.bpf.c writes into its ring
 * buffer and guestview-bpf (Rust, through bindgen) reads back.
 *
 * Rules: fixed-width fields only, explicit padding, every record starts with
 * struct gv_event_hdr, and op values are never renumbered (add new ones at
 * the end). The _Static_asserts below pin the layout; the Rust layout test
 * checks the bindgen types against a C program built from this header.
 */
#ifndef GV_HOSTVIEW_H
#define GV_HOSTVIEW_H

#ifndef __bpf__
#include <linux/types.h>
#endif

/* Pids below this can be traced: the kernel's PID_MAX_LIMIT on 64-bit. */
#define GV_PID_LIMIT (1u << 22)

/*
 * A plugin that has mapped the ring's producer page says so to the
 * programs with fcntl(-1, GV_UNTIMED_FCNTL_CMD): they then stop timing the
 * process's syscalls (it fails with EBADF and touches nothing). Said from
 * within the image, it is in step with execs, which end it. The same
 * number is shmem_proto::HOSTPOS_FCNTL_CMD.
 */
#define GV_UNTIMED_FCNTL_CMD 0x67767073 /* "gvps" */
#define GV_NR_FCNTL 72

/* The program's .bss: sets of processes, one bit per pid. */
struct gv_pidsets {
	/* Traced processes (user space seeds, fork extends, exit clears). */
	__u64 traced[GV_PID_LIMIT / 64];
	/*
	 * Processes whose plugin reads ring positions: their syscall records
	 * carry no time (the plugin's fcntl sets, fork inherits, exec and exit
	 * clear).
	 */
	__u64 untimed[GV_PID_LIMIT / 64];
};

/* Bytes of a path or file name kept per record (including the NUL). */
#define GV_PATH_MAX 256

/* Record kinds (gv_event_hdr.op). Stable: add, never renumber. */
enum gv_op {
	/* A host syscall that returned: enter and exit in one record. */
	GV_OP_SYSCALL = 1,
	/* Same as GV_OP_SYSCALL plus the path argument (gv_syscall_path_event). */
	GV_OP_SYSCALL_PATH = 2,
	/*
	 * A syscall that never returns: exit/exit_group (emitted when the
	 * thread dies in it), or an exec killed between its point of no
	 * return and its sys_exit (with GV_F_INTERRUPTED). ret is 0 and
	 * meaningless.
	 */
	GV_OP_NORETURN = 3,
	GV_OP_FORK = 4,
	GV_OP_EXEC = 5,
	GV_OP_EXIT = 6,
	/* An enforcement decision made in the kernel (gv_enforce_event). */
	GV_OP_ENFORCE = 7,
	/* A host syscall that returned, without a path: the short record
	 * (gv_sc_event), only as many arguments as the call takes. */
	GV_OP_SC = 8,
};

/* Bits of gv_event_hdr.flags. */
enum gv_flag {
	/* The arguments are unknown and 0: a successful exec (its sys_exit
	 * runs in the new image), or rt_sigreturn (its exit restores the
	 * interrupted registers). */
	GV_F_NO_ENTER = 1 << 0,
	/* The path filled the whole buffer and may have been cut short. */
	GV_F_PATH_TRUNCATED = 1 << 1,
	/* The path was read at sys_exit (all but a successful exec's). */
	GV_F_PATH_AT_EXIT = 1 << 2,
	/* The path could not be read at all (counted in path_failures). */
	GV_F_PATH_FAULT = 1 << 3,
	/* The thread died while this syscall was in flight (GV_OP_NORETURN). */
	GV_F_INTERRUPTED = 1 << 4,
	/* GV_OP_EXEC: the exec guard found the new image is not the one
	 * allowed (QEMU with the plugin) and sent SIGKILL, which is taken
	 * before the image's first instruction. */
	GV_F_EXEC_KILLED = 1 << 5,
};

/*
 * Bytes of the argument prefix the exec guard compares (a multiple of 8:
 * it compares words). QEMU's command line carries the plugin's arguments,
 * a policy's guest rules among them: a strict policy takes over 1 KiB.
 */
#define GV_GUARD_PREFIX_MAX 4096

/*
 * Value of the array `guard` (key 0), set by user space for a sandboxed
 * run: every exec in the traced tree must load the file (ino, dev) and
 * start with exactly these argument bytes (argv[0..k] with their NULs), or
 * it is killed before it runs.
 */
struct gv_guard {
	__u32 enabled;
	__u32 prefix_len;
	__u64 ino;
	__u32 dev; /* the kernel's dev_t: major << 20 | minor */
	__u32 _pad0;
	char prefix[GV_GUARD_PREFIX_MAX];
};

/*
 * The host ring: guestview's own single ring of variable-size records in
 * an mmapable BPF array (map `ring`, one value of GV_RING_BYTES +
 * GV_RING_PAD bytes), with its positions in a second one (`ringctl`,
 * struct gv_ring_ctl). The kernel's BPF ring buffer cost ~115 ns a record
 * on this machine kind (its reservation lock and commit), a plain write
 * to an array about nothing; this ring reserves with one compare-and-swap.
 *
 * A record at byte position pos (a multiple of 8) starts at data offset
 * pos % GV_RING_BYTES with a struct gv_ring_hdr, then `len` bytes of the
 * record proper (which starts with its op); the next record is at
 * pos + round_up(8 + len, 8). A record that runs past GV_RING_BYTES goes
 * on into the pad, so every record is contiguous. The header is written
 * last (atomically, after the body): until then the reader stops there.
 */
#define GV_RING_BYTES (4u << 20)
#define GV_RING_PAD 512

/* The positions of the host ring (map `ringctl`, key 0): one page. */
struct gv_ring_ctl {
	__u64 head;       /* producer: where the next record goes (bytes) */
	__u64 _pad0[7];
	__u64 cons;       /* consumer: every record below is read (bytes) */
	__u64 _pad1[7];
	__u64 size;       /* GV_RING_BYTES, set by user space for the plugin */
	__u64 _pad2[495];
};

/* The header of a record in the host ring. */
struct gv_ring_hdr {
	__u32 len; /* bytes of the record after this header */
	__u32 tag; /* GV_RING_TAG(pos) once written; anything else: not yet */
};

#define GV_RING_TAG(pos) ((__u32)((pos) >> 3) | 0x80000000u)

/* Common header of every record (16 bytes). */
struct gv_event_hdr {
	__u16 op;    /* enum gv_op */
	__u16 flags; /* enum gv_flag bits */
	__u32 size;  /* bytes of the whole record, header included */
	__u64 ktime; /* bpf_ktime_get_ns() == CLOCK_MONOTONIC, ns */
};

/*
 * GV_OP_SC (24 + 8 * (nargs + timed) bytes): the record of nearly every
 * host syscall. It is the hot path's record, so it is as short as it can
 * be: the ring's lines travel from the traced CPU to the reader's, and
 * each line a record spans costs the traced syscall tens of nanoseconds.
 * Its first 16 bits are the op, as in every record; it has no
 * gv_event_hdr beyond that (its length is the ring record's). The
 * arguments past the call's arity (x86_64_nargs.h) are not recorded; the
 * time is there only for a process that does not read ring positions.
 */
struct gv_sc_event {
	__u16 op;       /* GV_OP_SC */
	__u8 nargs;     /* arguments present (0-6) */
	__u8 timed;     /* 1: words[0] is bpf_ktime_get_ns() */
	__s32 nr;       /* x86-64 syscall number */
	__u32 tgid;
	__u32 tid;      /* thread that made the syscall */
	__s64 ret;      /* raw return value (-errno on failure) */
	__u64 words[7]; /* the ktime first when timed, then args[0 .. nargs) */
};

/* GV_OP_SYSCALL and GV_OP_NORETURN (112 bytes). */
struct gv_syscall_event {
	struct gv_event_hdr hdr;
	__u32 tgid;
	__u32 tid;     /* thread that entered the syscall */
	__s64 nr;      /* x86-64 syscall number */
	__u64 args[6];
	__s64 ret;     /* raw return value (-errno on failure) */
	__u64 t_enter; /* ns; 0: entries are not seen (only exits are needed) */
	__u64 t_exit;  /* ns; equals hdr.ktime; 0 when not timed (see pos) */
	/*
	 * The record's position in the ring buffer (the producer position
	 * its reservation started at). The programs write 0; the reader sets
	 * it, counting records in order (none is ever discarded). The plugin
	 * reads the producer position (a read-only mapping of the ring's
	 * producer page) at each guest call's entry and return, so a host
	 * call of the same thread belongs to a guest call exactly when
	 * enter_pos <= pos < return_pos: no clock needed. For a process whose
	 * plugin reads positions the program takes no time at all
	 * (bpf_ktime_get_ns() costs ~65 ns a call on this machine kind).
	 */
	__u64 pos;
};

/* GV_OP_SYSCALL_PATH (376 bytes). */
struct gv_syscall_path_event {
	struct gv_syscall_event sc;
	__u16 path_len; /* bytes in path, without the NUL */
	__u8 path_arg;  /* which of args[] the path came from */
	__u8 _pad0[5];
	char path[GV_PATH_MAX]; /* NUL-terminated when path_len < GV_PATH_MAX */
};

/* GV_OP_FORK (40 bytes): both new processes and new threads. */
struct gv_fork_event {
	struct gv_event_hdr hdr;
	__u32 parent_tgid;
	__u32 parent_tid;
	__u32 child_tgid;
	__u32 child_tid;
	/* The child's ids in its own (innermost) PID namespace: what getpid()
	 * and gettid() return inside a sandbox. Equal to the above outside one. */
	__u32 child_ns_tgid;
	__u32 child_ns_tid;
	__u8 is_thread;
	__u8 _pad0[7];
};

/* GV_OP_EXEC (296 bytes). */
struct gv_exec_event {
	struct gv_event_hdr hdr;
	__u32 tgid;
	__u32 tid;     /* after exec: equals tgid */
	__u32 old_tid; /* the thread that called execve (differs from tid when
			* a non-leader thread exec'd) */
	__u16 filename_len; /* bytes in filename, without the NUL */
	__u16 _pad0;
	/* The record's position in the ring, set by the reader (see
	 * gv_syscall_event.pos): the old image's host calls are below it. */
	__u64 pos;
	char filename[GV_PATH_MAX];
};

/* GV_OP_EXIT (32 bytes): one per thread; group_dead on the last one. */
struct gv_exit_event {
	struct gv_event_hdr hdr;
	__u32 tgid;
	__u32 tid;
	__s32 exit_code; /* task->exit_code: wait(2) status form */
	__u8 group_dead;
	__u8 _pad0[3];
};

/* Why the kernel enforced (gv_enforce_event.reason). Stable. */
enum gv_enforce_reason {
	/* A traced process returned from a host syscall a kill rule names. */
	GV_ENF_KILL_NR = 1,
	/* The traced tree created more processes in a second than allowed. */
	GV_ENF_FORK_RATE = 2,
	/* The traced tree made more connect calls in a second than allowed. */
	GV_ENF_CONNECT_RATE = 3,
};

/* GV_OP_ENFORCE (48 bytes). */
struct gv_enforce_event {
	struct gv_event_hdr hdr;
	__u32 tgid;
	__u32 tid;
	__s64 nr;      /* host syscall; -1 for a process creation */
	__u32 reason;  /* enum gv_enforce_reason */
	__u32 count;   /* events of this kind in the current one-second window */
	__u32 limit;   /* the limit (rates), 0 for kill rules */
	__u8 killed;   /* 1: SIGKILL sent (to the caller, or to the new process) */
	__u8 _pad0[3];
};

/* Syscall numbers a kill bitmap covers (x86-64 numbers are below 512). */
#define GV_NR_LIMIT 512

/* One rate limit's state: a one-second window, updated with atomics. */
struct gv_rate {
	__u64 window;   /* current window: ktime / 1e9 */
	__u64 count;    /* events in that window */
	__u64 alerted;  /* window + 1 of the last alert event (0: none) */
	__u64 exceeded; /* events beyond the limit, ever */
};

/*
 * Enforcement settings and state, one per loaded tracer (so per traced
 * tree), in the section ".data.enforce" that user space maps: it writes
 * the settings before tracing starts and reads the counters.
 */
struct gv_enforce {
	__u64 kill_nr_bits[GV_NR_LIMIT / 64]; /* exit of these kills the caller */
	__u32 fork_per_sec;    /* 0: no limit */
	__u32 connect_per_sec; /* 0: no limit */
	struct gv_rate fork;
	struct gv_rate connect;
	__u64 kills;           /* SIGKILLs sent */
};

/* Value of the per-CPU array `stats` (key 0). */
struct gv_stats {
	__u64 emitted;          /* unused (0): user space counts records */
	__u64 dropped;          /* records lost: ring full */
	__u64 path_failures;    /* path arguments that could not be read */
	__u64 pending_failures; /* sys_enter state could not be stored */
};

#define GV_ASSERT_LAYOUT(type, field, off) \
	_Static_assert(__builtin_offsetof(struct type, field) == (off), \
		       #type "." #field " moved")

_Static_assert(sizeof(struct gv_event_hdr) == 16, "gv_event_hdr size");
_Static_assert(sizeof(struct gv_ring_ctl) == 4096, "gv_ring_ctl size");
_Static_assert(sizeof(struct gv_ring_hdr) == 8, "gv_ring_hdr size");
_Static_assert(GV_RING_PAD >= 8 + sizeof(struct gv_syscall_path_event), "ring pad");
_Static_assert(sizeof(struct gv_syscall_event) == 112, "gv_syscall_event size");
_Static_assert(sizeof(struct gv_sc_event) == 80, "gv_sc_event size");
_Static_assert(sizeof(struct gv_syscall_path_event) == 376, "gv_syscall_path_event size");
_Static_assert(sizeof(struct gv_fork_event) == 48, "gv_fork_event size");
_Static_assert(sizeof(struct gv_exec_event) == 296, "gv_exec_event size");
_Static_assert(sizeof(struct gv_exit_event) == 32, "gv_exit_event size");
_Static_assert(sizeof(struct gv_stats) == 32, "gv_stats size");
_Static_assert(sizeof(struct gv_guard) == 24 + GV_GUARD_PREFIX_MAX, "gv_guard size");
GV_ASSERT_LAYOUT(gv_event_hdr, ktime, 8);
GV_ASSERT_LAYOUT(gv_ring_ctl, cons, 64);
GV_ASSERT_LAYOUT(gv_ring_ctl, size, 128);
GV_ASSERT_LAYOUT(gv_sc_event, nr, 4);
GV_ASSERT_LAYOUT(gv_sc_event, ret, 16);
GV_ASSERT_LAYOUT(gv_sc_event, words, 24);
GV_ASSERT_LAYOUT(gv_syscall_event, nr, 24);
GV_ASSERT_LAYOUT(gv_syscall_event, args, 32);
GV_ASSERT_LAYOUT(gv_syscall_event, ret, 80);
GV_ASSERT_LAYOUT(gv_syscall_event, pos, 104);
GV_ASSERT_LAYOUT(gv_syscall_path_event, path_len, 112);
GV_ASSERT_LAYOUT(gv_syscall_path_event, path, 120);
GV_ASSERT_LAYOUT(gv_fork_event, child_ns_tgid, 32);
GV_ASSERT_LAYOUT(gv_fork_event, is_thread, 40);
GV_ASSERT_LAYOUT(gv_exec_event, pos, 32);
GV_ASSERT_LAYOUT(gv_exec_event, filename, 40);
GV_ASSERT_LAYOUT(gv_exit_event, exit_code, 24);

#endif /* GV_HOSTVIEW_H */
