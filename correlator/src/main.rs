//! The `guestview` command line: parse, call the library, map errors to
//! exit codes (2 for usage, bad input or set-up; the guest's status for `run`).

use clap::{Parser, Subcommand, ValueEnum};
use guestview::output::Format;
use guestview::report::Report;
use guestview::run::{run, RunOptions};
use shmem_proto::Arch;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The join allocates and frees a few small objects per guest call; mimalloc
/// does that several times faster than glibc's malloc. Built with `no_thp`:
/// otherwise mimalloc asks for transparent huge pages on its arenas and then
/// purges 64 KiB pieces of them, so the kernel zeroes 2 MiB pages again and
/// again — measured as 13–14% of guestview's CPU and 20–100 ms page-fault
/// stalls, long enough for a busy guest to fill its ring and wait.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "guestview",
    version,
    about = "Watch foreign-architecture Linux programs under QEMU: every guest syscall joined with the host syscalls QEMU made for it"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Jsonl,
    /// One self-contained HTML page.
    Html,
}

#[derive(Clone, Copy, ValueEnum)]
enum DiffFormat {
    Text,
    Jsonl,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a guest program under QEMU with guestview watching.
    Run {
        /// Guest architecture (default: from the ELF header; an error if they disagree).
        #[arg(long, value_parser = parse_arch)]
        arch: Option<Arch>,
        /// QEMU binary (default: qemu-<arch> from PATH).
        #[arg(long)]
        qemu: Option<PathBuf>,
        /// Guest root directory: the sandbox's / (default: the root `guestview
        /// rootfs build` makes for the architecture, built on first use);
        /// with --no-sandbox, QEMU's -L (not isolation).
        #[arg(long)]
        rootfs: Option<PathBuf>,
        /// Enforce this policy (guestview TOML or an OCI seccomp profile,
        /// see docs/policy.md): alert, deny or kill matching guest calls at
        /// the strongest layer; `guestview policy check FILE` explains it.
        #[arg(long, conflicts_with = "native")]
        policy: Option<PathBuf>,
        /// Write a binary trace here (read it with `guestview report`).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Live output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Live output file (default: stderr; the program's own output stays its own).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Working directory of the guest (in the sandbox: a path inside it,
        /// made if missing; default /).
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Show a host path inside the sandbox: SRC[:DST[:ro|rw]] (DST
        /// defaults to SRC, the mode to ro; never executable). Repeatable.
        #[arg(long, value_name = "SRC[:DST[:ro|rw]]", value_parser = parse_bind)]
        bind: Vec<guestview::sandbox::Bind>,
        /// Also show QEMU's internal host syscalls in text output.
        #[arg(long)]
        show_internal: bool,
        /// No live output (use with --trace; the run's status still passes through).
        #[arg(long, short)]
        quiet: bool,
        /// Trace a host (x86-64) program with eBPF alone, without QEMU, in
        /// the same format (each host syscall is a call, verdict `native`),
        /// to compare with a guest run using `guestview diff`.
        #[arg(long, conflicts_with_all = ["qemu", "rootfs", "arch", "bind"])]
        native: bool,
        /// Run without the sandbox, as plain QEMU does: the guest sees the
        /// host's files, processes and network, and an exec of a host
        /// program runs natively. NOT isolation.
        #[arg(long, conflicts_with = "native")]
        no_sandbox: bool,
        /// The default (kept for scripts that ask for it): the guest in its
        /// own user, mount, PID, IPC, UTS and network namespaces.
        #[arg(long, hide = true, conflicts_with_all = ["no_sandbox", "native"])]
        sandbox: bool,
        /// Time every host syscall. By default the plugin reads the eBPF
        /// ring's position at each guest call's entry and return, which
        /// places host calls exactly without a clock read per host call (the
        /// largest part of recording one); their `t_exit_ns` is then 0.
        #[arg(long)]
        host_times: bool,
        /// The guest program and its arguments (everything from PROGRAM on
        /// belongs to the guest).
        #[arg(value_name = "PROGRAM [ARGS]", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Summarise a trace: calls per syscall and verdict, translations, internal calls, losses.
    Report {
        /// Trace written by `guestview run --trace` or by the plugin's out=.
        trace: PathBuf,
        /// Report format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Output file (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Attach to a QEMU started with `-plugin libguestview.so[,wait=on]`
    /// (no ring=): its ring, the eBPF view of its process tree, the same
    /// join and output as `run`. Exits with the guest's status.
    Watch {
        /// The ring the plugin announced (default: the only one in /dev/shm).
        #[arg(long, conflicts_with = "pid")]
        ring: Option<PathBuf>,
        /// The QEMU process (its ring is /dev/shm/guestview-PID.ring).
        #[arg(long)]
        pid: Option<u32>,
        /// Write a binary trace here.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Live output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Live output file (default: stderr).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also show QEMU's internal host syscalls in text output.
        #[arg(long)]
        show_internal: bool,
        /// No live output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Policies: check and explain.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Guest roots: minimal, from Debian's cross libc packages, cached.
    Rootfs {
        #[command(subcommand)]
        cmd: RootfsCmd,
    },
    /// Align the guest syscalls of two traces per thread; show calls added,
    /// removed or changed, with host translations and verdicts side by side.
    /// Exit status 0: no difference, 1: differences, 2: error.
    Diff {
        /// The first trace (A: lines with -).
        trace_a: PathBuf,
        /// The second trace (B: lines with +).
        trace_b: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
        /// Output file (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validate a policy (TOML or OCI seccomp JSON) and explain, rule by
    /// rule, which layer enforces it on this machine and QEMU. Exit status
    /// 0: valid, 2: refused (with file:line:column and the reason).
    Check {
        /// The policy file.
        file: PathBuf,
        /// Guest architecture to explain for.
        #[arg(long, value_parser = parse_arch, default_value = "mips")]
        arch: Arch,
        /// QEMU binary whose syscall-filter API decides the guest layer
        /// (default: qemu-<arch> from PATH).
        #[arg(long)]
        qemu: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RootfsCmd {
    /// Build (or reuse) a minimal root for ARCH: loader, libc and its
    /// companions, /etc, /tmp, mount points. Prints where it is.
    Build {
        /// Guest architecture.
        #[arg(long, value_parser = parse_arch)]
        arch: Arch,
        /// Copy the root here (a new or empty directory); default: print
        /// the cached root's path.
        #[arg(long)]
        out: Option<PathBuf>,
        /// `debian`: a Debian minbase system (debootstrap --foreign, second
        /// stage under QEMU in the sandbox) instead of the minimal root.
        #[arg(long, value_enum)]
        from: Option<RootSource>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RootSource {
    /// Debian minbase (mipsel, arm, aarch64, ppc64le, x86_64: bookworm; riscv64: trixie).
    Debian,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    Arch::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Arch::ALL.iter().map(|a| a.name()).collect();
        format!(
            "unknown architecture '{s}' (supported: {})",
            names.join(", ")
        )
    })
}

fn parse_bind(s: &str) -> Result<guestview::sandbox::Bind, String> {
    s.parse()
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("guestview: error: {msg}");
    ExitCode::from(2)
}

fn diff_cmd(
    a: &std::path::Path,
    b: &std::path::Path,
    format: DiffFormat,
    output: Option<&std::path::Path>,
) -> ExitCode {
    use guestview::diff::{diff, Side};
    let (sa, sb) = match (Side::load(a), Side::load(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let d = diff(&sa, &sb);
    let mut out: Box<dyn Write> = match output {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => return fail(format!("cannot write {}: {e}", p.display())),
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let r = match format {
        DiffFormat::Text => d.write_text(&sa, &sb, &mut out),
        DiffFormat::Jsonl => d.write_jsonl(&mut out),
    };
    if let Err(e) = r.and_then(|_| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return fail(format!("writing the diff failed: {e}"));
        }
    }
    if d.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn policy_check(file: &std::path::Path, arch: Arch, qemu: Option<&std::path::Path>) -> ExitCode {
    use guestview::policy::{layers, Policy};
    let policy = match Policy::load(file) {
        Ok(p) => p,
        Err(e) => return fail(format!("malformed policy: {e}")),
    };
    let q = layers::probe_qemu(arch, qemu);
    if let (Some(_), Err(e)) = (qemu, &q) {
        return fail(e);
    }
    let text = layers::explain(&policy, arch, &q);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            fail(format!("writing failed: {e}"))
        }
        _ => ExitCode::SUCCESS,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUST_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            arch,
            qemu,
            rootfs,
            trace,
            format,
            output,
            workdir,
            bind,
            show_internal,
            quiet,
            native,
            host_times,
            no_sandbox,
            sandbox: _,
            policy,
            command,
        } => {
            // A malformed policy is refused before anything starts.
            let policy = match policy
                .map(|p| guestview::policy::Policy::load(&p))
                .transpose()
            {
                Ok(p) => p.map(std::sync::Arc::new),
                Err(e) => return fail(format!("malformed policy: {e}")),
            };
            let program = PathBuf::from(&command[0]);
            let args = command[1..].to_vec();
            let opts = RunOptions {
                arch,
                qemu,
                rootfs,
                trace,
                format,
                output,
                workdir,
                show_internal,
                quiet,
                native,
                host_times,
                sandbox: !no_sandbox && !native,
                binds: bind,
                persistent_root: false,
                policy,
                program,
                args,
            };
            match run(&opts) {
                Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
                Err(guestview::GuestviewError::Reported(why)) => {
                    tracing::debug!("{why}");
                    ExitCode::from(2)
                }
                Err(e) => fail(e),
            }
        }
        Cmd::Watch {
            ring,
            pid,
            trace,
            format,
            output,
            show_internal,
            quiet,
        } => {
            let opts = guestview::run::WatchOptions {
                ring,
                pid,
                trace,
                format,
                output,
                show_internal,
                quiet,
            };
            match guestview::run::watch(&opts) {
                Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
                Err(e) => fail(e),
            }
        }
        Cmd::Rootfs {
            cmd: RootfsCmd::Build { arch, out, from },
        } => match guestview::rootfs::build(
            arch,
            match from {
                Some(RootSource::Debian) => guestview::rootfs::Source::Debian,
                None => guestview::rootfs::Source::Minimal,
            },
            out.as_deref(),
        ) {
            Ok(p) => {
                println!("{}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Cmd::Policy {
            cmd: PolicyCmd::Check { file, arch, qemu },
        } => policy_check(&file, arch, qemu.as_deref()),
        Cmd::Diff {
            trace_a,
            trace_b,
            format,
            output,
        } => diff_cmd(&trace_a, &trace_b, format, output.as_deref()),
        Cmd::Report {
            trace,
            format,
            output,
        } => {
            let (rep, err) = Report::from_trace(&trace);
            let mut out: Box<dyn Write> = match &output {
                Some(p) => match std::fs::File::create(p) {
                    Ok(f) => Box::new(std::io::BufWriter::new(f)),
                    Err(e) => return fail(format!("cannot write {}: {e}", p.display())),
                },
                None => Box::new(std::io::stdout().lock()),
            };
            let opened = rep.run.is_some() || rep.frames > 0;
            if opened {
                let r = match format {
                    ReportFormat::Text => rep.write_text(&mut out),
                    ReportFormat::Jsonl => rep.write_json(&mut out),
                    ReportFormat::Html => rep.write_html(&mut out),
                };
                if let Err(e) = r.and_then(|_| out.flush()) {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        return fail(format!("writing the report failed: {e}"));
                    }
                }
            }
            match err {
                None => ExitCode::SUCCESS,
                Some(e) if opened => fail(format!(
                    "{e}; the report above covers the {} whole frames before it",
                    rep.frames
                )),
                Some(e) => fail(e),
            }
        }
    }
}
