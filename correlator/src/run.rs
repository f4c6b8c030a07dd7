//! `guestview run`: start QEMU with the plugin under the eBPF tracer, join
//! both views live, write output and trace, pass the exit status through.

use crate::join::Joiner;
use crate::launch::{self, LaunchError, Reaped};
use crate::output::{Format, Output};
use crate::{elf, GuestviewError};
use guestview_bpf::{HostEvent, HostTracer, TracerOptions};
use shmem_proto::trace::{RunInfo, SummaryEvent, TraceEvent, TraceWriter};
use shmem_proto::{monotonic_ns, Arch, Consumer, Region, RegionParams, RingEvent};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to run and where output goes.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Expected guest architecture (checked against the ELF).
    pub arch: Option<Arch>,
    /// QEMU binary.
    pub qemu: Option<PathBuf>,
    /// Guest root passed to QEMU as `-L` (no isolation without a sandbox).
    pub rootfs: Option<PathBuf>,
    /// Binary trace file.
    pub trace: Option<PathBuf>,
    /// Live output format.
    pub format: Format,
    /// Live output file (default stderr).
    pub output: Option<PathBuf>,
    /// Working directory of the guest.
    pub workdir: Option<PathBuf>,
    /// Show QEMU's internal host calls in text output.
    pub show_internal: bool,
    /// No live output (the trace, if any, is still written).
    pub quiet: bool,
    /// Trace a host (x86-64) program with eBPF alone, no QEMU: each host
    /// syscall is its own call, verdict `native` (to diff against a guest).
    pub native: bool,
    /// Run QEMU in a sandbox (see [`crate::sandbox`]): its own namespaces,
    /// the guest root under a throw-away overlay as `/`. The default;
    /// `--no-sandbox` turns it off.
    pub sandbox: bool,
    /// Time every host syscall, also in processes whose plugin reads the
    /// eBPF ring's positions (which place host calls without a clock, and
    /// spare a clock read of ~65 ns per host call on this machine kind).
    pub host_times: bool,
    /// Host paths shown inside the sandbox (`--bind`).
    pub binds: Vec<crate::sandbox::Bind>,
    /// Building a root (`rootfs build --from debian`): `rootfs` is the
    /// sandbox's `/` itself, writable, `program` a path inside it, and the
    /// guest keeps its capabilities in its user namespace.
    pub persistent_root: bool,
    /// The policy to enforce (`--policy`), already loaded and checked.
    pub policy: Option<std::sync::Arc<crate::policy::Policy>>,
    /// Guest program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

struct RingFile(PathBuf);

impl Drop for RingFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// QEMU, found and checked, its ring, and the process started for it.
struct Prepared {
    qemu: launch::Qemu,
    region: Region,
    child: Child,
    /// Where the plugin waits for the eBPF ring (`hostpos=`), if it does.
    positions: Option<launch::PositionChannel>,
    /// What was executed (for messages).
    launched: PathBuf,
    /// In a sandbox: the file (inode, device) and argument prefix every
    /// exec must have (the exec guard).
    guard: Option<(u64, u64, Vec<u8>)>,
    /// In a sandbox: the answers to its seccomp notifications.
    supervisor: Option<crate::seccomp::Supervisor>,
    /// The policy's supervisor (in a sandbox also the sandbox's answers).
    policy_supervisor: Option<guestview_seccomp::Supervisor>,
    /// The policy compiled for this run.
    enforcement: Option<crate::enforce::Enforcement>,
}

/// The launched process, already running: QEMU held by the plugin until
/// the ring is released; in a sandbox, the outer child, QEMU, and the
/// sandbox's init (its first process, whose child QEMU is).
enum Child {
    Running(libc::pid_t, Option<libc::pid_t>, Option<libc::pid_t>),
}

impl Child {
    /// Stop it: set-up failed after the launch.
    fn abort(self) {
        match self {
            Child::Running(pid, ..) => {
                launch::kill(pid as u32, libc::SIGKILL);
                let _ = launch::reap(pid);
            }
        }
    }
}

fn resolve_program(p: &Path) -> Result<PathBuf, GuestviewError> {
    if p.is_file() {
        return Ok(p.to_owned());
    }
    Err(GuestviewError::Input(format!(
        "program {} not found (give a path to a guest ELF program)",
        p.display()
    )))
}

/// Where live output goes: the file given (created now: a bad path is bad
/// input, before anything starts), else standard error. Both are flushed
/// after every pass (about a millisecond): live, without a write per line;
/// a file gets large writes (a busy guest makes hundreds of megabytes of
/// JSONL).
fn live_output(path: Option<&std::path::Path>) -> Result<Box<dyn Write + Send>, GuestviewError> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::with_capacity(
            1 << 18,
            std::fs::File::create(p).map_err(|e| {
                GuestviewError::Input(format!("cannot write output {}: {e}", p.display()))
            })?,
        )),
        None => Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stderr(),
        )),
    })
}

/// Run a guest program; returns its exit status (128 + signal if killed).
pub fn run(opts: &RunOptions) -> Result<i32, GuestviewError> {
    let started = std::time::Instant::now();
    // The program as the host sees it: where the user said, or inside the
    // guest root given with --rootfs when it is there (a root's own
    // /bin/sh), or inside the root being built.
    let in_root = |root: &Path| root.join(opts.program.strip_prefix("/").unwrap_or(&opts.program));
    let program_inside = match &opts.rootfs {
        Some(root) if opts.persistent_root => Some(in_root(root)),
        Some(root)
            if opts.sandbox
                && !opts.native
                && opts.program.is_absolute()
                && in_root(root).is_file() =>
        {
            Some(in_root(root))
        }
        _ => None,
    };
    let host_program = program_inside
        .clone()
        .unwrap_or_else(|| opts.program.clone());
    let program = resolve_program(&host_program)?;
    let arch = elf::arch_of(&program).map_err(|e| GuestviewError::Input(e.to_string()))?;
    if opts.native {
        if arch != Arch::X86_64 {
            return Err(GuestviewError::Input(format!(
                "--native runs host programs, and {} is a {} program (drop --native to run it under QEMU)",
                program.display(),
                arch.name()
            )));
        }
        if opts.qemu.is_some() || opts.rootfs.is_some() {
            return Err(GuestviewError::Input(
                "--native runs the program without QEMU: --qemu and --rootfs do not apply".into(),
            ));
        }
    }
    let sandbox = opts.sandbox && !opts.native;
    if !sandbox && !opts.binds.is_empty() {
        return Err(GuestviewError::Input(
            "--bind shows host paths inside the sandbox: it does not apply with --no-sandbox or --native".into(),
        ));
    }
    if let Some(want) = opts.arch {
        if want != arch {
            return Err(GuestviewError::Input(format!(
                "--arch {} disagrees with {}, which is a {} program",
                want.name(),
                program.display(),
                arch.name()
            )));
        }
    }
    // Output files first: a bad path is bad input, before anything starts.
    let out = live_output(opts.output.as_deref())?;
    let mut output = Output::new(out, opts.format);
    output.show_internal = opts.show_internal;
    let trace = match &opts.trace {
        Some(p) => Some(TraceWriter::create(p).map_err(|e| GuestviewError::Input(e.to_string()))?),
        None => None,
    };
    if sandbox {
        if !launch::is_root() {
            return Err(GuestviewError::Setup(
                "the sandbox and the eBPF view need root: run guestview as root (sudo)".into(),
            ));
        }
        if program_inside.is_none() && !crate::sandbox::readable_inside(&program) {
            return Err(GuestviewError::Input(format!(
                "{} is not readable by the sandbox's user (uid {}): make it readable by others (chmod o+r), or run with --no-sandbox",
                program.display(),
                crate::sandbox::ID_BASE
            )));
        }
    } else if !opts.native {
        eprintln!(
            "guestview: warning: --no-sandbox: the guest runs with the host's files, processes and network, and an exec of a host program runs natively; this is not isolation"
        );
    }
    launch::become_subreaper();
    launch::catch_interrupts();

    let run_id = (u64::from(std::process::id()) << 32) ^ monotonic_ns();
    let ring_path = PathBuf::from(format!(
        "/dev/shm/guestview-{}-{:x}.ring",
        std::process::id(),
        run_id
    ));
    let _ring_guard = (!opts.native).then(|| RingFile(ring_path.clone()));

    // Start-up latency, overlapped: while this thread loads the eBPF
    // programs, another checks QEMU (it runs it twice), finds the plugin
    // and, for a sandbox, QEMU's libraries and the guest root, makes the
    // ring, builds the sandbox and starts QEMU in it at once: the plugin
    // (hold=on) holds the guest before its first instruction until the ring
    // is released, after the host view follows QEMU (its host pid comes
    // back from the sandbox's outer process). The sandbox's set-up and
    // QEMU's own start-up (~10 ms) so run while eBPF loads; their host
    // calls before the trace begins are not seen (they are never a guest
    // call's).
    let prepare = (!opts.native).then(|| {
        let explicit = opts.qemu.clone();
        let binds = opts.binds.clone();
        let rootfs = opts.rootfs.clone();
        let ring_path = ring_path.clone();
        let persistent = opts.persistent_root;
        let inside = program_inside.is_some();
        let program = if inside {
            opts.program.clone()
        } else {
            program.clone()
        };
        let args = opts.args.clone();
        let workdir = opts.workdir.clone();
        let host_times = opts.host_times;
        let mut enforcement = opts
            .policy
            .clone()
            .map(|p| crate::enforce::Enforcement::new(p, arch));
        std::thread::spawn(move || -> Result<Prepared, GuestviewError> {
            let setup = |e: String| GuestviewError::Setup(e);
            let q =
                launch::find_qemu(arch, explicit.as_deref()).map_err(|e| setup(e.to_string()))?;
            let plugin = launch::find_plugin().map_err(|e| setup(e.to_string()))?;
            let region = Region::create(
                &ring_path,
                RegionParams {
                    run_id,
                    ..Default::default()
                },
            )
            .map_err(|e| setup(e.to_string()))?;
            let launched = q.path.clone();
            if sandbox {
                // The sandbox's QEMU runs as the sandbox's user.
                std::os::unix::fs::chown(
                    &ring_path,
                    Some(crate::sandbox::ID_BASE),
                    Some(crate::sandbox::ID_BASE),
                )
                .map_err(|e| {
                    setup(format!(
                        "cannot hand {} to the sandbox: {e}",
                        ring_path.display()
                    ))
                })?;
                let root = match rootfs {
                    Some(r) => r,
                    None => crate::rootfs::build_cached(arch, false)
                        .map_err(|e| setup(e.to_string()))?,
                };
                let mut runtime = crate::sandbox::runtime_of_cached(&q.path).map_err(setup)?;
                // The plugin's own libraries too (libgcc_s: Debian's 7.2
                // links it, our 10.2 does not; without it the loader would
                // find the guest root's).
                let (_, plugin_libs) = crate::sandbox::runtime_of_cached(&plugin).map_err(setup)?;
                for lib in plugin_libs {
                    if !runtime.1.contains(&lib) {
                        runtime.1.push(lib);
                    }
                }
                let mut positions = (!host_times)
                    .then(launch::PositionChannel::new)
                    .transpose()
                    .map_err(|e| setup(e.to_string()))?;
                std::fs::create_dir_all(crate::sandbox::STAGING).map_err(|e| {
                    setup(format!("cannot create {}: {e}", crate::sandbox::STAGING))
                })?;
                let guest_rules = enforcement
                    .as_ref()
                    .map(crate::enforce::Enforcement::guest_rules);
                let spec = crate::sandbox::Spec {
                    plugin_policy: guest_rules.as_deref(),
                    rootfs: &root,
                    qemu: &q.path,
                    qemu_runtime: &runtime,
                    plugin: &plugin,
                    ring: &ring_path,
                    program: &program,
                    args: &args,
                    workdir: workdir.as_deref(),
                    binds: &binds,
                    persistent,
                    program_inside: inside,
                    hostpos: positions.as_ref().and_then(|p| p.theirs()),
                    qemu_env: std::env::vars()
                        .filter(|(k, _)| k.starts_with("QEMU_"))
                        .collect(),
                };
                let mut plan = crate::sandbox::plan(&spec).map_err(setup)?;
                if let Some(enf) = &enforcement {
                    // One filter, one listener: the sandbox's answers and
                    // the policy's, served by one supervisor.
                    plan.seccomp = enf
                        .sandbox_program()
                        .map_err(|e| setup(format!("cannot build the policy's filter: {e}")))?;
                    plan.seccomp_send = false;
                }
                let guard = std::fs::metadata(&plan.guard_file)
                    .map(|m| {
                        use std::os::unix::fs::MetadataExt;
                        (m.ino(), m.dev(), plan.guard_prefix.clone())
                    })
                    .map_err(|e| setup(format!("{}: {e}", plan.guard_file.display())))?;
                // Built and started at once: QEMU (PID 1 inside) loads and
                // waits in the plugin (hold=on) while eBPF loads.
                tracing::debug!(
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "sandbox planned"
                );
                let held = launch::spawn_held_sandboxed(&plan).map_err(|e| setup(e.to_string()))?;
                tracing::debug!(
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "sandbox spawned"
                );
                if let Some(p) = positions.as_mut() {
                    p.forget_theirs();
                }
                let policy_supervisor = match enforcement.as_mut() {
                    Some(enf) => {
                        match enf.start_sandbox_supervisor(held.pid as u32, plan.argv[0].clone()) {
                            Ok(s) => Some(s),
                            Err(e) => {
                                held.abort();
                                return Err(setup(format!(
                                    "cannot supervise the policy's filter: {e}"
                                )));
                            }
                        }
                    }
                    None => None,
                };
                let started = held
                    .release_all(Some(plan.argv[0].clone()))
                    .map_err(|e| setup(e.to_string()))?;
                let supervisor = started.supervisor;
                return Ok(Prepared {
                    qemu: q,
                    region,
                    child: Child::Running(started.outer, started.inner, started.init),
                    positions,
                    launched,
                    guard: Some(guard),
                    supervisor,
                    policy_supervisor,
                    enforcement,
                });
            }
            let mut positions = (!host_times)
                .then(launch::PositionChannel::new)
                .transpose()
                .map_err(|e| setup(e.to_string()))?;
            let keep: Vec<_> = positions.iter().filter_map(|p| p.theirs()).collect();
            let mut plugin_arg = plugin.as_os_str().to_owned();
            plugin_arg.push(",hold=on,ring=");
            plugin_arg.push(&ring_path);
            if let Some(fd) = keep.first() {
                plugin_arg.push(format!(",hostpos={fd}"));
            }
            if let Some(enf) = &enforcement {
                plugin_arg.push(format!(",policy={}", enf.guest_rules()));
            }
            let mut argv: Vec<OsString> = vec![q.path.clone().into(), "-plugin".into(), plugin_arg];
            if let Some(root) = &rootfs {
                argv.push("-L".into());
                argv.push(root.clone().into());
            }
            argv.push(program.into());
            argv.extend(args);
            let sides = enforcement
                .as_ref()
                .map(crate::enforce::Enforcement::prepare_seccomp)
                .transpose()
                .map_err(|e| setup(format!("cannot build the policy's filter: {e}")))?;
            let held = launch::spawn_held(
                &argv,
                workdir.as_deref(),
                &keep,
                sides.as_ref().map(|(c, _)| c),
            )
            .map_err(|e| setup(e.to_string()))?;
            if let Some(p) = positions.as_mut() {
                p.forget_theirs();
            }
            let policy_supervisor = match (enforcement.as_mut(), sides) {
                (Some(enf), Some((_, parent))) => {
                    let prefix = rootfs.as_ref().map(|r| r.display().to_string());
                    match enf.start_supervisor(parent, held.pid as u32, prefix) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            held.abort();
                            return Err(setup(format!(
                                "cannot supervise the policy's filter: {e}"
                            )));
                        }
                    }
                }
                _ => None,
            };
            let pid = held.release().map_err(|e| match e {
                LaunchError::Spawn(io) => {
                    setup(format!("cannot execute {}: {io}", launched.display()))
                }
                other => setup(other.to_string()),
            })?;
            Ok(Prepared {
                qemu: q,
                region,
                child: Child::Running(pid, None, None),
                positions,
                launched,
                guard: None,
                supervisor: None,
                policy_supervisor,
                enforcement,
            })
        })
    });
    // (The host ring is the programs' fixed 4 MiB: a guest run's plugin
    // holds guest calls while half of it is unread, so nothing is lost.)
    let tracer = HostTracer::new(&TracerOptions::default());
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        "eBPF programs loaded"
    );
    let prepared = match prepare {
        Some(p) => Some(
            p.join()
                .map_err(|_| GuestviewError::Setup("preparing QEMU failed".into()))??,
        ),
        None => None,
    };
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        "QEMU checked and started"
    );
    let mut policy_supervisor = None;
    let mut enforcement: Option<crate::enforce::Enforcement> = None;
    let mut tracer = match tracer {
        Ok(t) => t,
        Err(e) => {
            if let Some(p) = prepared {
                p.child.abort();
            }
            return Err(if e.is_permission_denied() || !launch::is_root() {
                GuestviewError::Setup(format!(
                    "cannot load eBPF programs ({e}); run guestview as root (sudo) on a kernel with BPF enabled"
                ))
            } else {
                GuestviewError::Setup(format!("cannot load eBPF programs: {e}"))
            });
        }
    };
    let (qemu, region, child_state, positions, launched, guard, supervisor) = match prepared {
        Some(p) => {
            policy_supervisor = p.policy_supervisor;
            enforcement = p.enforcement;
            (
                Some(p.qemu),
                Some(p.region),
                Some(p.child),
                p.positions,
                p.launched,
                p.guard,
                p.supervisor,
            )
        }
        None => (None, None, None, None, program.clone(), None, None),
    };
    if let Some(enf) = &enforcement {
        // Kill rules and rate limits, decided in the kernel.
        if let Err(e) = enf.apply_to_tracer(&tracer) {
            if let Some(c) = child_state {
                c.abort();
            }
            return Err(GuestviewError::Setup(format!(
                "cannot give the kernel the policy's kill rules and limits: {e}"
            )));
        }
    }
    if let Some((ino, dev, prefix)) = &guard {
        if let Err(e) = tracer.guard_exec(*ino, *dev, prefix) {
            if let Some(c) = child_state {
                c.abort();
            }
            return Err(GuestviewError::Setup(format!(
                "cannot guard the sandbox's execs: {e}"
            )));
        }
    }
    let consumer = region.as_ref().map(Consumer::new);

    let info = RunInfo {
        arch: arch.name().into(),
        qemu: qemu.as_ref().map_or_else(
            || "none (--native)".to_owned(),
            |q| format!("{} ({})", q.path.display(), q.version),
        ),
        argv: std::iter::once(program.display().to_string())
            .chain(opts.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect(),
        guestview: env!("CARGO_PKG_VERSION").into(),
        start_unix_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        source: "run".into(),
    };
    let mut sink = Sink {
        output,
        trace,
        quiet: opts.quiet,
        last_trace_flush: monotonic_ns(),
        // Until the guest runs, events wait: if the plugin refuses this
        // QEMU, its one line is all the user sees.
        held: Some(Vec::new()),
    };
    sink.emit(TraceEvent::Run(Box::new(info)))?;

    let t0 = monotonic_ns();
    let trace_err = |e: guestview_bpf::BpfError| {
        GuestviewError::Setup(format!("cannot trace {}: {e}", launched.display()))
    };
    // The process QEMU runs in, as the kernel numbers it.
    let mut qemu_pid = None;
    let child = match child_state {
        Some(Child::Running(pid, inner, init)) => {
            for p in std::iter::once(pid).chain(init).chain(inner) {
                if let Err(e) = tracer.trace_pid(p as u32) {
                    launch::kill(pid as u32, libc::SIGKILL);
                    return Err(trace_err(e));
                }
            }
            qemu_pid = Some(inner.unwrap_or(pid) as u32);
            pid as u32
        }
        None => {
            // --native: the program itself, held until it is traced.
            let argv: Vec<OsString> = std::iter::once(program.clone().into_os_string())
                .chain(opts.args.iter().cloned())
                .collect();
            let held = launch::spawn_held(&argv, opts.workdir.as_deref(), &[], None)
                .map_err(|e| GuestviewError::Setup(e.to_string()))?;
            if let Err(e) = tracer.trace_pid(held.pid as u32) {
                held.abort();
                return Err(trace_err(e));
            }
            held.release().map_err(|e| match e {
                LaunchError::Spawn(io) => {
                    GuestviewError::Setup(format!("cannot execute {}: {io}", launched.display()))
                }
                other => GuestviewError::Setup(other.to_string()),
            })? as u32
        }
    };
    // The plugin maps the host ring's position page from this before the
    // guest runs; if it cannot, its host calls stay timed (and exact).
    if let Some(p) = positions {
        if let Err(e) = p.send(tracer.ring_fd_for_plugin()) {
            tracing::debug!(%e, "could not hand the plugin the host ring; host calls stay timed");
        }
    }
    // The host view follows QEMU now: let the guest's first instruction run.
    if let Some(r) = &region {
        r.release();
    }

    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        pid = child,
        "program released"
    );
    let mut joiner = if opts.native {
        Joiner::native(child)
    } else {
        Joiner::new(arch)
    };
    if sandbox {
        joiner.in_pid_namespace();
        if let Some(p) = qemu_pid {
            // QEMU's fork by the sandbox's init was before tracing: its id
            // inside (the last NSpid entry; 2) comes from /proc.
            let ns = std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|st| {
                    st.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|v| v.split_whitespace().last()?.parse().ok())
                })
                .unwrap_or(2);
            joiner.map_ns_id(ns, p);
        }
    }
    if let Some(s) = (!opts.native)
        .then(|| crate::symbols::Symbolizer::from_elf(&program))
        .flatten()
    {
        joiner.set_symbols(s, qemu_pid);
    }
    // QEMU's -L directory in unsandboxed runs: host paths under it are
    // judged by the guest's name.
    let rootfs_prefix = (!sandbox)
        .then(|| opts.rootfs.as_ref().map(|r| r.display().to_string()))
        .flatten();
    let prefix = rootfs_prefix.as_deref();
    let mut pending: Vec<shmem_proto::trace::AlertEvent> = Vec::new();
    let mut views = Views {
        joiner,
        consumer,
        tracer: &mut tracer,
        alive: HashSet::from([child]),
        exits: HashMap::new(),
        guest_started: false,
        host_err: None,
    };
    let mut main_status: Option<Reaped> = None;
    let mut orphaned_since = None;
    let mut settled = Vec::new();
    let mut killed_rest = false;
    let mut busy = false;
    let mut guest_seen = false;
    loop {
        // Keep draining without sleeping while the guest produces fast.
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
        busy = views.pass() > 2048;
        // The host layer's decisions so far, before the calls they belong to settle.
        host_alerts(&mut sink, enforcement.as_ref(), &mut pending)?;
        views.joiner.settle_into(&mut settled);
        for ev in settled.drain(..) {
            emit_judged(
                &mut sink,
                ev,
                enforcement.as_ref(),
                &views.joiner,
                prefix,
                &mut pending,
            )?;
        }
        if views.guest_started {
            if !guest_seen {
                guest_seen = true;
                tracing::debug!(
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "first guest record read"
                );
            }
            sink.release()?;
        }
        sink.end_pass()?;
        while let Some((pid, st, cpu)) = launch::reap_any() {
            if pid as u32 == child {
                tracing::debug!(
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    user_ms = cpu.user_ms,
                    sys_ms = cpu.sys_ms,
                    "main process reaped"
                );
                main_status = Some(st);
            }
            views.alive.remove(&(pid as u32));
        }
        if main_status.is_some() && views.alive.is_empty() {
            break;
        }
        // Every process of the run is a descendant (guestview is their
        // subreaper): with none left, an exit the host view has not shown
        // (its record lost) must not keep the run waiting. Give the ring a
        // moment to deliver what is on its way first.
        if main_status.is_some() && !launch::has_children() {
            let since = *orphaned_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > Duration::from_millis(200) {
                tracing::warn!(
                    pids = ?views.alive,
                    "every process is gone but the host view showed no exit for these"
                );
                break;
            }
        }
        if launch::interrupted() && !killed_rest {
            // The user wants out: stop what is left of the guest, keep the trace.
            for p in views.alive.iter() {
                launch::kill(*p, libc::SIGKILL);
            }
            killed_rest = true;
        }
    }
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        "all traced processes gone"
    );
    if let Some(s) = supervisor {
        s.stop();
    }
    if let Some(s) = policy_supervisor {
        if let Err(e) = s.stop() {
            tracing::warn!(%e, "the policy's supervisor ended early");
        }
    }
    // Everything the processes did is in the rings now: two more passes make
    // every host event classifiable, then settle the rest.
    views.pass();
    views.pass();
    let status = main_status.expect("loop ends only after the main child is reaped");
    if !views.guest_started && status == Reaped::Exited(2) {
        // The plugin refused this QEMU (or its arguments), said why in one
        // line on stderr and exited 2: nothing to add.
        return Err(GuestviewError::Reported(format!(
            "{} exited with status 2 before the guest started: the plugin refused it",
            launched.display()
        )));
    }
    sink.release()?;
    host_alerts(&mut sink, enforcement.as_ref(), &mut pending)?;
    for ev in views.joiner.finish() {
        emit_judged(
            &mut sink,
            ev,
            enforcement.as_ref(),
            &views.joiner,
            prefix,
            &mut pending,
        )?;
    }
    // Host-layer decisions no joined call claimed (its guest record lost
    // or refused as corrupt): said as they are, without a seq.
    for a in pending.drain(..) {
        if a.message != crate::enforce::REPEATED {
            sink.emit(TraceEvent::Alert(Box::new(a)))?;
        }
    }
    let host_stats = views.tracer.stats().unwrap_or_default();
    let ring_stats = views
        .consumer
        .as_ref()
        .map(Consumer::stats)
        .unwrap_or_default();
    sink.emit(Joiner::lost(&host_stats, &ring_stats))?;
    let js = views.joiner.stats();
    sink.emit(TraceEvent::Summary(Box::new(SummaryEvent {
        syscalls: js.syscalls,
        host_syscalls: js.host_syscalls,
        host_attributed: js.host_attributed,
        host_internal: js.host_internal,
        exit_code: Some(status.code()),
        wall_ns: monotonic_ns() - t0,
        ring_waits: ring_stats.waits,
        host_ring_waits: js.host_ring_waits,
        qemu_plugin: views.joiner.first_plugin(),
    })))?;
    sink.finish()?;
    tracing::debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        cpu_ms = launch::own_cpu_seconds() * 1e3,
        calls = js.syscalls,
        "output and trace finished"
    );
    if let Some(e) = views.host_err {
        return Err(GuestviewError::Setup(format!(
            "reading host events failed: {e}"
        )));
    }
    if !views.guest_started && status != Reaped::Exited(0) {
        return Err(GuestviewError::Setup(format!(
            "{} exited with status {} before the guest started (see its message above: plugin refused, or program not runnable)",
            launched.display(),
            status.code()
        )));
    }
    Ok(status.code())
}

/// Emit a joined event, a guest call judged by the policy first: its
/// policy fields and verdict (`denied`/`killed` when a layer acted), and
/// right after it the alert it owes, with its `seq`.
fn emit_judged(
    sink: &mut Sink,
    mut ev: TraceEvent,
    enf: Option<&crate::enforce::Enforcement>,
    joiner: &Joiner,
    prefix: Option<&str>,
    pending: &mut Vec<shmem_proto::trace::AlertEvent>,
) -> Result<(), GuestviewError> {
    let alert = match (&mut ev, enf) {
        (TraceEvent::Syscall(s), Some(enf)) => {
            let killed = joiner.ended_signal(s.pid) == Some(libc::SIGKILL);
            let a = crate::enforce::annotate(enf.policy(), s, prefix, killed);
            // The host layer judged what the kernel was asked (the address
            // of a connect, the path as it was when the call was made):
            // its decision inside this call's window is the call's.
            match crate::enforce::claim_host_alert(s, pending) {
                // A rate limit alerts once a second: the call has its
                // verdict, the record was written for the first refusal.
                Some(h) if h.message == crate::enforce::REPEATED => None,
                Some(h) => Some(h),
                None => a,
            }
        }
        _ => None,
    };
    sink.emit(ev)?;
    if let Some(a) = alert {
        sink.emit(TraceEvent::Alert(Box::new(a)))?;
    }
    Ok(())
}

/// The host layer's decisions: kills said at once by the supervisor
/// itself (a record that does not depend on the guest's ring); all of
/// them kept in `pending` for the joined call they belong to.
fn host_alerts(
    sink: &mut Sink,
    enf: Option<&crate::enforce::Enforcement>,
    pending: &mut Vec<shmem_proto::trace::AlertEvent>,
) -> Result<(), GuestviewError> {
    let Some(enf) = enf else {
        return Ok(());
    };
    let (alerts, dropped) = enf.drain_host_alerts();
    for a in alerts {
        if a.action == "kill" {
            let mut k = a.clone();
            k.message = "the host layer killed the caller".into();
            sink.emit(TraceEvent::Alert(Box::new(k)))?;
        }
        pending.push(a);
    }
    if dropped > 0 {
        tracing::warn!(dropped, "host-layer alerts dropped for lack of room");
    }
    Ok(())
}

/// Where joined events go: live output and the trace file.
struct Sink {
    output: Output,
    trace: Option<TraceWriter>,
    quiet: bool,
    last_trace_flush: u64,
    /// Events kept back until [`Sink::release`] (`None`: written at once).
    held: Option<Vec<TraceEvent>>,
}

impl Sink {
    /// Write the events held back so far, and from now on write at once.
    fn release(&mut self) -> Result<(), GuestviewError> {
        for ev in self.held.take().unwrap_or_default() {
            self.emit(ev)?;
        }
        Ok(())
    }

    fn emit(&mut self, ev: TraceEvent) -> Result<(), GuestviewError> {
        if let Some(h) = &mut self.held {
            h.push(ev);
            return Ok(());
        }
        if let TraceEvent::Plugin(p) = &ev {
            tracing::debug!("{}", crate::output::plugin_text(p));
        }
        if !self.quiet {
            match self.output.write(&ev) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(GuestviewError::Setup(format!("writing output failed: {e}"))),
            }
        }
        if let Some(t) = &mut self.trace {
            t.push(&ev)
                .map_err(|e| GuestviewError::Setup(e.to_string()))?;
        }
        Ok(())
    }

    /// After each pass: live output is flushed (about every millisecond, not
    /// per line), and the trace every 100 ms, so a run killed hard loses at
    /// most that much of it.
    fn end_pass(&mut self) -> Result<(), GuestviewError> {
        let _ = self.output.flush();
        let now = monotonic_ns();
        if now - self.last_trace_flush > 100_000_000 {
            self.last_trace_flush = now;
            if let Some(t) = &mut self.trace {
                t.flush()
                    .map_err(|e| GuestviewError::Setup(e.to_string()))?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), GuestviewError> {
        if let Some(t) = &mut self.trace {
            t.flush()
                .map_err(|e| GuestviewError::Setup(e.to_string()))?;
        }
        let _ = self.output.flush();
        Ok(())
    }
}

/// The two views of the run and what the passes learn from them.
struct Views<'r, 't> {
    joiner: Joiner,
    consumer: Option<Consumer<'r>>,
    tracer: &'t mut HostTracer,
    /// Traced processes not yet exited.
    alive: HashSet<u32>,
    /// Exit codes (as the kernel keeps them) of processes that exited.
    exits: HashMap<u32, i32>,
    guest_started: bool,
    host_err: Option<String>,
}

impl Views<'_, '_> {
    /// Drain the guest rings, then the host ring (the order the join relies
    /// on); returns the number of events read.
    fn pass(&mut self) -> usize {
        let Views {
            joiner,
            consumer,
            tracer,
            alive,
            exits,
            guest_started,
            host_err,
        } = self;
        joiner.begin_guest_drain();
        let mut n = match consumer {
            Some(c) => c.poll(|e| {
                if let RingEvent::Record(r) = e {
                    *guest_started = true;
                    joiner.guest(r);
                }
            }),
            None => {
                // Natively there is no guest side: the program runs at once.
                *guest_started = true;
                0
            }
        };
        joiner.begin_host_drain(monotonic_ns());
        match tracer.drain(&mut |ev: HostEvent| {
            match &ev {
                HostEvent::Fork {
                    child_tgid,
                    is_thread: false,
                    ..
                } => {
                    alive.insert(*child_tgid);
                }
                HostEvent::Exit {
                    tgid,
                    group_dead: true,
                    exit_code,
                    ..
                } => {
                    alive.remove(tgid);
                    exits.insert(*tgid, *exit_code);
                }
                _ => {}
            }
            joiner.host(ev);
        }) {
            Ok(k) => n += k,
            Err(e) => *host_err = Some(e.to_string()),
        }
        joiner.host_drained(tracer.consumed_pos());
        n
    }
}

/// What to watch and where output goes (`guestview watch`).
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// The ring the plugin announced.
    pub ring: Option<PathBuf>,
    /// The QEMU process (its ring is `/dev/shm/guestview-PID.ring`).
    pub pid: Option<u32>,
    /// Binary trace file.
    pub trace: Option<PathBuf>,
    /// Live output format.
    pub format: Format,
    /// Live output file (default stderr).
    pub output: Option<PathBuf>,
    /// Show QEMU's internal host calls in text output.
    pub show_internal: bool,
    /// No live output.
    pub quiet: bool,
}

/// Is `pid` running (a zombie, exited but not yet reaped by its parent,
/// is not)?
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may
    // itself hold any character.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// The rings plugins announced whose QEMU still runs.
fn announced_rings() -> Vec<(u32, PathBuf)> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid = name
                .strip_prefix("guestview-")?
                .strip_suffix(".ring")?
                .parse()
                .ok()?;
            Some((pid, e.path()))
        })
        .filter(|(pid, _)| process_alive(*pid))
        .collect();
    found.sort();
    found
}

/// Attach to a QEMU that runs with the plugin and no `ring=` (ideally
/// `wait=on`, which holds the guest until now): its ring, the eBPF view of
/// its process tree, the same join and output as `run`. Returns the
/// guest's exit status once it is gone.
pub fn watch(opts: &WatchOptions) -> Result<i32, GuestviewError> {
    let (pid, ring) = match (&opts.ring, opts.pid) {
        (Some(r), p) => (p, r.clone()),
        (None, Some(p)) => (
            Some(p),
            PathBuf::from(format!("/dev/shm/guestview-{p}.ring")),
        ),
        (None, None) => {
            let found = announced_rings();
            match found.as_slice() {
                [(p, r)] => (Some(*p), r.clone()),
                [] => {
                    return Err(GuestviewError::Input(
                        "no running QEMU announced a guestview ring in /dev/shm (start it with -plugin libguestview.so,wait=on, or give --ring or --pid)".into(),
                    ))
                }
                many => {
                    let pids: Vec<String> = many.iter().map(|(p, _)| p.to_string()).collect();
                    return Err(GuestviewError::Input(format!(
                        "several QEMUs announced rings (pids {}): choose one with --pid",
                        pids.join(", ")
                    )));
                }
            }
        }
    };
    if !ring.exists() {
        return Err(GuestviewError::Input(format!(
            "no ring at {} (is QEMU running with -plugin libguestview.so and no ring= argument?)",
            ring.display()
        )));
    }
    let region = Region::open(&ring)
        .map_err(|e| GuestviewError::Input(format!("cannot attach to {}: {e}", ring.display())))?;
    // A ring the plugin made carries its process id in the run id.
    let pid = pid.unwrap_or((region.run_id() >> 32) as u32);
    if !process_alive(pid) {
        return Err(GuestviewError::Input(format!(
            "process {pid}, which made {}, is not running",
            ring.display()
        )));
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let arch = exe
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("qemu-"))
        .and_then(Arch::from_qemu_target)
        .ok_or_else(|| {
            GuestviewError::Input(format!(
                "process {pid} runs {}, not a qemu-<arch> guestview knows",
                exe.display()
            ))
        })?;
    let mut tracer = HostTracer::new(&TracerOptions::default()).map_err(|e| {
        GuestviewError::Setup(format!(
            "cannot load eBPF programs ({e}); run guestview as root (sudo) on a kernel with BPF enabled"
        ))
    })?;
    let out = live_output(opts.output.as_deref())?;
    let mut output = Output::new(out, opts.format);
    output.show_internal = opts.show_internal;
    let trace = match &opts.trace {
        Some(p) => Some(TraceWriter::create(p).map_err(|e| GuestviewError::Input(e.to_string()))?),
        None => None,
    };
    let mut sink = Sink {
        output,
        trace,
        quiet: opts.quiet,
        last_trace_flush: monotonic_ns(),
        held: None,
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    sink.emit(TraceEvent::Run(Box::new(RunInfo {
        arch: arch.name().into(),
        qemu: exe.display().to_string(),
        argv: cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        guestview: env!("CARGO_PKG_VERSION").into(),
        start_unix_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        source: "watch".into(),
    })))?;
    tracer
        .trace_pid(pid)
        .map_err(|e| GuestviewError::Setup(format!("cannot trace process {pid}: {e}")))?;
    let mut joiner = Joiner::new(arch);
    // Before this, QEMU ran untraced: what it did then has no host view.
    let t0 = monotonic_ns();
    joiner.set_host_view_from(t0);
    // Attaching the consumer releases a guest held by wait=on.
    let consumer = Consumer::new(&region);
    launch::catch_interrupts();
    let mut views = Views {
        joiner,
        consumer: Some(consumer),
        tracer: &mut tracer,
        alive: HashSet::from([pid]),
        exits: HashMap::new(),
        guest_started: false,
        host_err: None,
    };
    let mut busy = false;
    let mut gone_passes = 0;
    let mut settled = Vec::new();
    loop {
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
        busy = views.pass() > 2048;
        views.joiner.settle_into(&mut settled);
        for ev in settled.drain(..) {
            sink.emit(ev)?;
        }
        sink.end_pass()?;
        // The exit event ends it; a process that vanished without one
        // (it exited between the checks above and the tracer) too.
        if views.alive.is_empty() || !process_alive(pid) {
            gone_passes += 1;
            if gone_passes > 3 {
                break;
            }
        }
        if launch::interrupted() {
            // Stop watching; the guest goes on untraced.
            break;
        }
    }
    views.pass();
    views.pass();
    for ev in views.joiner.finish() {
        sink.emit(ev)?;
    }
    let host_stats = views.tracer.stats().unwrap_or_default();
    let ring_stats = views
        .consumer
        .as_ref()
        .map(Consumer::stats)
        .unwrap_or_default();
    sink.emit(Joiner::lost(&host_stats, &ring_stats))?;
    let code = views.exits.get(&pid).map(|c| {
        if c & 0x7f == 0 {
            (c >> 8) & 0xff
        } else {
            128 + (c & 0x7f)
        }
    });
    let js = views.joiner.stats();
    sink.emit(TraceEvent::Summary(Box::new(SummaryEvent {
        syscalls: js.syscalls,
        host_syscalls: js.host_syscalls,
        host_attributed: js.host_attributed,
        host_internal: js.host_internal,
        exit_code: code,
        wall_ns: monotonic_ns() - t0,
        ring_waits: ring_stats.waits,
        host_ring_waits: js.host_ring_waits,
        qemu_plugin: views.joiner.plugin_info(pid),
    })))?;
    sink.finish()?;
    if let Some(e) = views.host_err {
        return Err(GuestviewError::Setup(format!(
            "reading host events failed: {e}"
        )));
    }
    if !process_alive(pid) {
        // Nobody else will read it: the plugin leaves its ring behind.
        drop(views);
        let _ = std::fs::remove_file(&ring);
    }
    Ok(code.unwrap_or(0))
}
