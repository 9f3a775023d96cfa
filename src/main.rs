//! The command line. Everything here is argument handling and choosing an output; the work is
//! done by the `mailscope` library.

#![forbid(unsafe_code)]
// Captures are hostile: nothing that input reaches may panic. Tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

use std::io::{self, BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// jemalloc rather than glibc's malloc: with workers, what one thread allocates (a dissector's
/// events) another frees (the merge), and glibc then locks the first thread's arena; that made
/// two workers on TLS captures a third slower. Measured in bench/ and the README.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod ui;

use clap::{Args, Parser, Subcommand, ValueEnum};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use mailscope::analysis::{self, Analyst};
use mailscope::capture::{
    FileSource, LiveOptions, LiveSource, PacketSource, Record, DEFAULT_LIVE_SNAPLEN,
};
use mailscope::export::files::OutputDir;
use mailscope::export::flows::{describe_stats, write_table, FlowCollector};
use mailscope::export::folder::ExportWriter;
use mailscope::export::follow::{FollowMode, FollowWriter};
use mailscope::export::json::JsonWriter;
use mailscope::export::pcapng::PcapngWriter;
use mailscope::export::slice::{self, Slice};
use mailscope::export::transcript::TranscriptWriter;
use mailscope::pipeline::{Analyzer, Config, Dissection, RunReport};
use mailscope::ports::{MailPorts, PortAssignment};
use mailscope::privileges;
use mailscope::proto::Exchange;
use mailscope::session::model::{Message, Session};
use mailscope::session::SessionSink;
use mailscope::tcp::Direction;
use mailscope::tls::{KeyLog, KeyLogFile};

/// See mail traffic on the wire: SMTP, POP3 and IMAP from captures and live interfaces.
#[derive(Parser)]
#[command(name = "mailscope", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    input: Input,
    #[command(flatten)]
    output: Output,
}

#[derive(Subcommand)]
enum Command {
    /// One line (or NDJSON record with --json) per TCP connection on a mail port.
    Flows {
        #[command(flatten)]
        input: Input,
        /// NDJSON records instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Into DIR: each message as an .eml with its attachments, one transcript per session,
    /// credentials.csv, findings.json, index.json and index.html.
    Export {
        /// Capture files, then the output folder.
        #[arg(required = true, value_name = "FILE... DIR")]
        paths: Vec<String>,
        /// Also every whole message into one mbox file (mboxrd), with the capture time in
        /// its From_ line.
        #[arg(long, value_name = "FILE")]
        mbox: Option<String>,
        /// Instead of the export, write session N's packets as DIR/session-N.pcapng with its
        /// TLS secrets embedded. Repeatable.
        #[arg(long = "slice", value_name = "N")]
        slices: Vec<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Connection N's reassembled bytes, both directions in time order (as Wireshark's Follow
    /// TCP Stream). N is the number `mailscope flows` shows.
    Follow {
        file: String,
        connection: u64,
        /// Write the exact bytes of one direction instead (to a file or pipe, not a terminal).
        #[arg(long, value_enum)]
        raw: Option<Side>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Side {
    Client,
    Server,
}

/// What the top-level form writes instead of the terminal UI.
#[derive(Args)]
struct Output {
    /// NDJSON records (sessions, exchanges, messages, findings).
    #[arg(long, conflicts_with = "text")]
    json: bool,
    /// With --json: Elastic Common Schema fields in every record too (@timestamp, event.*,
    /// source.*, destination.*, email.*, tls.*, user.name), ready for Elasticsearch.
    #[arg(long, requires = "json")]
    ecs: bool,
    /// Annotated transcripts (C:/S: lines per session).
    #[arg(long)]
    text: bool,
    /// With --text: messages in full instead of a summary line.
    #[arg(long, requires = "text")]
    full: bool,
    /// Write the capture as pcapng with the TLS secrets of its connections embedded, so that
    /// Wireshark opens it decrypted with no key log beside it.
    #[arg(long, value_name = "OUT.pcapng", conflicts_with_all = ["json", "text"])]
    inject_secrets: Option<String>,
}

#[derive(Args, Clone)]
struct Input {
    /// Capture files (pcap, pcapng, gzip-compressed or not; - for standard input).
    files: Vec<String>,
    /// Capture live from this interface (`any` for all) instead of reading files.
    #[arg(short = 'i', long = "interface", conflicts_with = "files")]
    interface: Option<String>,
    /// BPF filter for live capture (default: the mail ports and IP fragments).
    #[arg(short = 'f', long = "filter", requires = "interface")]
    filter: Option<String>,
    /// Put the interface in promiscuous mode (off by default).
    #[arg(long, requires = "interface")]
    promiscuous: bool,
    /// Started as root: become this user once the interface is open (as tcpdump's -Z). Files
    /// made before that are given to this user too.
    #[arg(long, value_name = "NAME", requires = "interface")]
    user: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone)]
struct Common {
    /// Treat TCP port N as PROTO (smtp, pop3, imap, or smtps, pop3s, imaps for implicit TLS).
    /// Repeatable.
    #[arg(long = "port", value_name = "PROTO=N")]
    ports: Vec<PortAssignment>,
    /// TLS key log file (NSS format). Repeatable; SSLKEYLOGFILE is read too.
    #[arg(long = "keylog", value_name = "FILE")]
    keylogs: Vec<String>,
    /// No statistics on standard error.
    #[arg(short, long)]
    quiet: bool,
    /// Mask passwords and tokens everywhere: JSON, transcripts, exports and the terminal UI.
    #[arg(long)]
    redact: bool,
    /// A domain the captured mail servers receive mail for (repeatable): a recipient outside
    /// these accepted from an unauthenticated client is an open relay. Without it, a server's
    /// own name and parent domain count as its domains.
    #[arg(long = "local-domain", value_name = "DOMAIN")]
    local_domains: Vec<String>,
    /// Worker threads for --json, --text and export of files (default: one per core; 1 runs
    /// all on one thread). The output is the same for any number.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

impl Common {
    fn analysis(&self) -> analysis::Options {
        analysis::Options {
            local_domains: self.local_domains.clone(),
        }
    }

    /// Worker threads asked for, or one per core.
    fn threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        )
    }

    fn config(&self) -> Config {
        let mut ports = MailPorts::default();
        for p in &self.ports {
            ports.add(p.port, p.service);
        }
        Config {
            ports,
            ..Config::default()
        }
    }
}

/// Exit status of the command-line contract.
const EXIT_FATAL: u8 = 1;
const EXIT_PARTIAL: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_FATAL)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("mailscope: {message}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Some(Command::Flows { input, json }) => flows(&input, json),
        Some(Command::Export {
            mut paths,
            mbox,
            slices,
            common,
        }) => {
            let dir = paths.pop().unwrap_or_default();
            if paths.is_empty() {
                return Err("export needs capture files and then the output folder".into());
            }
            let input = Input {
                files: paths,
                interface: None,
                filter: None,
                promiscuous: false,
                user: None,
                common,
            };
            if slices.is_empty() {
                export(&input, &dir, mbox.as_deref())
            } else {
                export_slices(&input, &dir, &slices)
            }
        }
        Some(Command::Follow {
            file,
            connection,
            raw,
            common,
        }) => follow(&file, connection, raw, &common),
        None => {
            if cli.input.files.is_empty() && cli.input.interface.is_none() {
                return Err(
                    "no capture given: mailscope FILE... or mailscope -i IFACE (see --help)".into(),
                );
            }
            let input = &cli.input;
            let output = &cli.output;
            if output.json {
                let mut writer = JsonWriter::new(BufWriter::new(io::stdout().lock()));
                writer.ecs = output.ecs;
                let code = sessions(input, &mut writer)?;
                writer.flush();
                writer.error.take().map_or(Ok(code), write_failed)
            } else if let Some(out) = &output.inject_secrets {
                inject_secrets(input, out)
            } else if output.text {
                let mut writer =
                    TranscriptWriter::new(BufWriter::new(io::stdout().lock()), output.full);
                let code = sessions(input, &mut writer)?;
                writer.error.take().map_or(Ok(code), write_failed)
            } else {
                terminal_ui(input)
            }
        }
    }
}

/// The output folder `dir`, given to whom [`privileges::owner_for`] says.
fn output_dir(input: &Input, dir: &str) -> Result<OutputDir, String> {
    let root = std::path::Path::new(dir);
    OutputDir::create(root, privileges::owner_for(root, input.user.as_deref())?)
        .map_err(|e| format!("cannot create {dir}: {e}"))
}

/// A new file at `path` the user named, given to whom [`privileges::owner_for`] says.
fn create_new(input: &Input, path: &std::path::Path) -> Result<std::fs::File, String> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let owner = privileges::owner_for(
        parent.unwrap_or(std::path::Path::new(".")),
        input.user.as_deref(),
    )?;
    privileges::create_new(path, owner).map_err(|e| e.to_string())
}

/// A progress line on standard error for reading capture files, when it is a terminal that
/// standard output does not write to too, and the run is not quiet: bytes read of all files,
/// speed and time left; cleared when done.
fn progress_line(input: &Input) -> Option<ProgressBar> {
    if input.common.quiet || !io::stderr().is_terminal() || io::stdout().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template(
        "mailscope: reading {bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec}, {eta} left",
    )
    .ok()?;
    Some(
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_finish(ProgressFinish::AndClear),
    )
}

/// Opens the input; `progress` shows a progress line for files (see [`progress_line`]).
fn open_sources(
    input: &Input,
    ports: &MailPorts,
    progress: bool,
) -> Result<Vec<Box<dyn PacketSource>>, String> {
    if let Some(interface) = &input.interface {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
            .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
        let live = LiveSource::open(LiveOptions {
            interface: interface.clone(),
            filter: input.filter.clone().unwrap_or_else(|| ports.bpf_filter()),
            promiscuous: input.promiscuous,
            snaplen: DEFAULT_LIVE_SNAPLEN,
            stop,
        })
        .map_err(|e| e.to_string())?;
        if let Some(user) = &input.user {
            privileges::drop_to(user)?;
        }
        return Ok(vec![Box::new(live)]);
    }
    if input.files.is_empty() {
        return Err("no capture given (a file, - for standard input, or -i IFACE)".into());
    }
    let bar = progress.then(|| progress_line(input)).flatten();
    let mut sources: Vec<Box<dyn PacketSource>> = Vec::new();
    for path in &input.files {
        let source = match &bar {
            Some(bar) => FileSource::open_watched(path, &mut |raw, size| {
                bar.inc_length(size.unwrap_or(0));
                Box::new(bar.wrap_read(raw))
            }),
            None => FileSource::open(path),
        };
        sources.push(Box::new(source.map_err(|e| e.to_string())?));
    }
    Ok(sources)
}

/// Reports read faults and picks the exit status: partial when anything could not be read.
fn finish(report: &RunReport, quiet: bool) -> ExitCode {
    if !quiet {
        for line in describe_stats(report.frames, &report.decode, &report.tcp) {
            eprintln!("mailscope: {line}");
        }
        if let Some(kib) = peak_memory_kib() {
            eprintln!("mailscope: peak memory {:.1} MB", kib as f64 / 1024.0);
        }
    }
    // Packets lost are worth saying even to a quiet run.
    if let Some(drops) = report
        .drops
        .filter(|d| !quiet || d.kernel + d.interface > 0)
    {
        eprintln!(
            "mailscope: live: {} packets passed the filter, {} dropped by the kernel (mailscope \
             fell behind), {} by the interface",
            drops.received, drops.kernel, drops.interface
        );
    }
    for fault in &report.faults {
        eprintln!("mailscope: {fault} (what was read before it is shown)");
    }
    if report.faults.is_empty() {
        ExitCode::SUCCESS
    } else if report.frames == 0 {
        ExitCode::from(EXIT_FATAL)
    } else {
        ExitCode::from(EXIT_PARTIAL)
    }
}

/// The most memory this process held at once (the kernel's high-water mark of its resident set,
/// VmHWM), where the system tells it (Linux).
fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

fn flows(input: &Input, json: bool) -> Result<ExitCode, String> {
    let config = input.common.config();
    let mut sources = open_sources(input, &config.ports, true)?;
    let mut analyzer = Analyzer::new(config);
    let stdout = io::stdout().lock();
    let (report, mut collector) = if json {
        let mut collector = FlowCollector::json(BufWriter::new(stdout));
        (analyzer.run(&mut sources, &mut collector), collector)
    } else {
        let mut collector = FlowCollector::table();
        (analyzer.run(&mut sources, &mut collector), collector)
    };
    if let Some(e) = collector.error.take() {
        return write_failed(e);
    }
    if !json {
        let mut out = BufWriter::new(io::stdout().lock());
        if let Err(e) = write_table(&mut out, &mut collector.flows).and_then(|()| out.flush()) {
            return write_failed(e);
        }
    }
    Ok(finish(&report, input.common.quiet))
}

/// Dissects the input into sessions and hands them to `sink` as they complete.
fn sessions(input: &Input, sink: &mut impl SessionSink) -> Result<ExitCode, String> {
    dissect(input, sink).map(|(code, _)| code)
}

/// `sessions`, also giving the TLS keys that were read (files and the captures' own).
fn dissect(input: &Input, sink: &mut impl SessionSink) -> Result<(ExitCode, KeyLog), String> {
    let config = input.common.config();
    let mut sources = open_sources(input, &config.ports, true)?;
    let dissection = dissection(input, config)?;
    let analyst = Analyst::new(sink, input.common.analysis());
    let (report, keys) = dissection.run(&mut sources, analyst, None);
    if !input.common.quiet {
        describe_keys(&keys);
    }
    Ok((finish(&report, input.common.quiet), keys))
}

/// How the input is dissected, with the key logs read (live: read as they grow). Called after
/// the inputs are open, so that a live capture reads them as `--user`.
fn dissection(input: &Input, config: Config) -> Result<Dissection, String> {
    let mut keys = KeyLog::default();
    let followed = load_keys(&input.common, &mut keys)?;
    let live = input.interface.is_some();
    Ok(Dissection {
        config,
        threads: input.common.threads(),
        keys,
        live,
        followed: if live { followed } else { Vec::new() },
        redact: input.common.redact,
    })
}

/// The client randoms of the TLS connections in a capture.
#[derive(Default)]
struct ClientRandoms(Vec<[u8; 32]>);

impl SessionSink for ClientRandoms {
    fn exchange(&mut self, _: &Session, _: &Exchange) {}
    fn message(&mut self, _: &Session, _: &Message) {}
    fn session_end(&mut self, session: &Session) {
        self.0.extend(session.tls.info().client_random);
    }
}

/// Reads the input twice: once to learn which secrets its connections use, once to copy its
/// packets after a Decryption Secrets Block holding them.
fn inject_secrets(input: &Input, out: &str) -> Result<ExitCode, String> {
    if input.interface.is_some() || input.files.iter().any(|f| f == "-") {
        return Err("--inject-secrets reads the capture twice: give files, not - or -i".into());
    }
    let mut randoms = ClientRandoms::default();
    let (code, keys) = dissect(input, &mut randoms)?;
    let secrets: String = randoms.0.iter().map(|r| keys.lines_for(r)).collect();
    let matched = randoms
        .0
        .iter()
        .filter(|r| keys.secrets(r).is_some())
        .count();
    let file = create_new(input, std::path::Path::new(out))
        .map_err(|e| format!("cannot create {out}: {e}"))?;
    let mut writer = PcapngWriter::new(BufWriter::new(file), secrets.as_bytes())
        .map_err(|e| format!("cannot write {out}: {e}"))?;
    let mut failed = None;
    for mut source in open_sources(input, &MailPorts::default(), false)? {
        // Read faults were reported by the first pass; here what can be read is copied.
        let _ = source.read(&mut |record| {
            if let Record::Frame(frame) = record {
                if let Err(e) = writer.frame(&frame) {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
    }
    let packets = writer.packets;
    if let Some(e) = failed.map_or_else(|| writer.finish().err(), Some) {
        return Err(format!("cannot write {out}: {e}"));
    }
    if !input.common.quiet {
        eprintln!(
            "mailscope: wrote {packets} packets to {out} with the secrets of {matched} of {} TLS connections",
            randoms.0.len()
        );
    }
    Ok(code)
}

/// The terminal UI on the input; the reading runs on a thread of its own.
fn terminal_ui(input: &Input) -> Result<ExitCode, String> {
    if !io::stdout().is_terminal() {
        return Err("the terminal UI needs a terminal; use --text or --json to print".into());
    }
    // Opened first: a live capture drops privileges there, before the key logs are read.
    let config = input.common.config();
    let sources = open_sources(input, &config.ports, false)?;
    let dissection = dissection(input, config)?;
    let live = dissection.live;
    let total_bytes = (!live && !input.files.iter().any(|f| f == "-"))
        .then(|| {
            input
                .files
                .iter()
                .map(|f| std::fs::metadata(f).map(|m| m.len()).ok())
                .sum::<Option<u64>>()
        })
        .flatten();
    let title = match &input.interface {
        Some(interface) => format!("live on {interface}"),
        None => input.files.join(" "),
    };
    let job = ui::Job {
        sources,
        dissection,
        analysis: input.common.analysis(),
        total_bytes,
    };
    let faults = ui::run(job, title, slicer(input)?).map_err(|e| format!("terminal: {e}"))?;
    for fault in &faults {
        eprintln!("mailscope: {fault} (what was read before it is shown)");
    }
    Ok(if faults.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}

/// What writes a session's packets from the UI (`w`): capture files are read again for them,
/// so there is none for live capture or standard input.
fn slicer(input: &Input) -> Result<Option<ui::Slicer>, String> {
    if input.interface.is_some() || input.files.iter().any(|f| f == "-") {
        return Ok(None);
    }
    let mut keys = KeyLog::default();
    load_keys(&input.common, &mut keys)?;
    let input = input.clone();
    let ports = input.common.config().ports;
    Ok(Some(Box::new(
        move |wanted: &Slice, file: std::fs::File| {
            let open = || open_sources(&input, &ports, false);
            slice::write(&open, &ports, wanted, &keys, BufWriter::new(file))
        },
    )))
}

/// Reads the key logs named with --keylog and in SSLKEYLOGFILE; they stay open to be followed
/// as they grow.
fn load_keys(common: &Common, keys: &mut KeyLog) -> Result<Vec<KeyLogFile>, String> {
    let from_env = std::env::var_os("SSLKEYLOGFILE").filter(|p| !p.is_empty());
    let mut files = Vec::new();
    for path in common
        .keylogs
        .iter()
        .map(std::path::PathBuf::from)
        .chain(from_env.map(Into::into))
    {
        let mut file = KeyLogFile::new(&path);
        file.poll(keys)
            .map_err(|e| format!("cannot read key log {}: {e}", path.display()))?;
        keys.finish();
        files.push(file);
    }
    Ok(files)
}

fn describe_keys(keys: &KeyLog) {
    if keys.lines == 0 && keys.malformed == 0 {
        return;
    }
    eprintln!(
        "mailscope: TLS keys for {} connections ({} key log lines, {} malformed, {} not used)",
        keys.sessions(),
        keys.lines,
        keys.malformed,
        keys.ignored
    );
}

fn export(input: &Input, dir: &str, mbox: Option<&str>) -> Result<ExitCode, String> {
    let out = output_dir(input, dir)?;
    let mut writer = ExportWriter::new(out).map_err(|e| format!("cannot write into {dir}: {e}"))?;
    if let Some(path) = mbox {
        // The user named this file: it may be anywhere, but is never written over.
        let file = create_new(input, std::path::Path::new(path))
            .map_err(|e| format!("cannot create {path}: {e}"))?;
        writer = writer.with_mbox(file);
    }
    let code = sessions(input, &mut writer)?;
    let in_mbox = writer.finish();
    if let Some(e) = writer.error.take() {
        return Err(format!("cannot write into {dir}: {e}"));
    }
    if !input.common.quiet {
        eprintln!("mailscope: wrote {} files into {dir}", writer.files_written);
        if let Some(path) = mbox {
            eprintln!("mailscope: wrote {in_mbox} messages into {path}");
        }
    }
    Ok(code)
}

/// Finds the sessions' packets in a first read, and copies them in a second.
fn export_slices(input: &Input, dir: &str, ids: &[u64]) -> Result<ExitCode, String> {
    if input.files.iter().any(|f| f == "-") {
        return Err("--slice reads the capture twice: give files, not -".into());
    }
    let mut out = output_dir(input, dir)?;
    let mut wanted = SliceFinder {
        ids: ids.to_vec(),
        found: Vec::new(),
    };
    let (code, keys) = dissect(input, &mut wanted)?;
    let ports = input.common.config().ports;
    for &id in ids {
        let Some((_, slice)) = wanted.found.iter().find(|(n, _)| *n == id) else {
            return Err(format!(
                "no session {id} in the input (see `mailscope flows`)"
            ));
        };
        let (path, file) = out
            .create_file(&format!("session-{id}.pcapng"), "session.pcapng")
            .map_err(|e| format!("cannot write into {dir}: {e}"))?;
        let open = || open_sources(input, &ports, false);
        let packets = slice::write(&open, &ports, slice, &keys, BufWriter::new(file))?;
        if !input.common.quiet {
            eprintln!(
                "mailscope: wrote {packets} packets of session {id} to {}",
                path.display()
            );
        }
    }
    Ok(code)
}

/// Remembers where the wanted sessions are.
struct SliceFinder {
    ids: Vec<u64>,
    found: Vec<(u64, Slice)>,
}

impl SessionSink for SliceFinder {
    fn exchange(&mut self, _: &Session, _: &Exchange) {}
    fn message(&mut self, _: &Session, _: &Message) {}
    fn session_end(&mut self, session: &Session) {
        if self.ids.contains(&session.id) {
            self.found.push((session.id, Slice::of(session)));
        }
    }
}

fn follow(
    file: &str,
    connection: u64,
    raw: Option<Side>,
    common: &Common,
) -> Result<ExitCode, String> {
    let mode = match raw {
        None => FollowMode::Text,
        Some(_) if io::stdout().is_terminal() => {
            return Err(
                "--raw writes captured bytes unchanged; redirect it to a file or a pipe".into(),
            )
        }
        Some(Side::Client) => FollowMode::Raw(Direction::ClientToServer),
        Some(Side::Server) => FollowMode::Raw(Direction::ServerToClient),
    };
    let config = common.config();
    let mut sources: Vec<Box<dyn PacketSource>> =
        vec![Box::new(FileSource::open(file).map_err(|e| e.to_string())?)];
    let mut analyzer = Analyzer::new(config);
    let mut writer = FollowWriter::new(connection, mode, BufWriter::new(io::stdout().lock()));
    let report = analyzer.run(&mut sources, &mut writer);
    if let Some(e) = writer.error.take() {
        return write_failed(e);
    }
    let found = writer.found;
    let gaps = (writer.gaps, writer.gap_bytes);
    drop(writer);
    if !found {
        return Err(format!(
            "no connection {connection} in {file} ({} connections on mail ports; see `mailscope flows`)",
            report.tcp.flows
        ));
    }
    if raw.is_some() && gaps.0 > 0 && !common.quiet {
        eprintln!(
            "mailscope: {} gaps, {} bytes not captured, are missing from the output",
            gaps.0, gaps.1
        );
    }
    Ok(finish(&report, true))
}

fn write_failed(e: io::Error) -> Result<ExitCode, String> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("cannot write output: {e}"))
    }
}
