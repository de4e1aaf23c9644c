//! Where access-log lines go when `server.access_log.path` is `stdout` or a file: a writer
//! thread fed through a bounded queue, so a slow disk or a blocked stdout never holds a request
//! (a full queue drops the line and counts it in `portcullis_access_log_dropped_total`).
//! A file is appended to and reopened on SIGUSR1, after logrotate moved it.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::access_log_schema::AccessPath;

enum Message {
    Line(String),
    /// Write to this destination from now on (at start and after a reload).
    Use(AccessPath),
    /// Reopen the file (SIGUSR1).
    Reopen,
    /// Everything queued before this is written; answer when it is (a fast stop).
    Flush(SyncSender<()>),
}

/// Lines waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 16_384;

static SINK: OnceLock<SyncSender<Message>> = OnceLock::new();

/// Where lines go, as the configuration in effect says.
static DESTINATION: std::sync::Mutex<AccessPath> = std::sync::Mutex::new(AccessPath::ProcessLog);

/// The writer is started by the first line, not by the configuration: `run -d` forks after
/// the configuration is loaded, and a thread started before the fork would not exist in the
/// daemon.
fn sender() -> &'static SyncSender<Message> {
    SINK.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let first = DESTINATION
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx, first));
        if let Err(e) = spawned {
            log::error!("cannot start the access-log writer: {e}");
        }
        tx
    })
}

/// Send lines to `path` from now on.
pub fn configure(path: &AccessPath) {
    *DESTINATION
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = path.clone();
    if let Some(tx) = SINK.get() {
        let _ = tx.send(Message::Use(path.clone()));
    }
}

/// Reopen the file (SIGUSR1).
pub fn reopen() {
    if let Some(tx) = SINK.get() {
        let _ = tx.try_send(Message::Reopen);
    }
}

/// Write out every line queued so far, waiting at most `within` (SIGINT's stop exits the
/// process right after; a disk that does not answer does not hold the stop).
pub fn flush_queued(within: Duration) {
    let Some(tx) = SINK.get() else { return };
    let deadline = Instant::now() + within;
    let (done, written) = sync_channel(1);
    let mut message = Message::Flush(done);
    // The queue may be full of lines the writer is behind on: retry until the deadline.
    loop {
        match tx.try_send(message) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                message = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

/// Queue one line (without its newline).
pub fn send(line: String) {
    if sender().try_send(Message::Line(line)).is_err() {
        super::metrics::get().access_log_dropped.inc();
    }
}

enum Out {
    None,
    Stdout(std::io::Stdout),
    File(std::io::BufWriter<std::fs::File>, String),
}

fn open(path: &AccessPath) -> Out {
    match path {
        AccessPath::ProcessLog => Out::None,
        AccessPath::Stdout => Out::Stdout(std::io::stdout()),
        AccessPath::File(p) => match std::fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Out::File(std::io::BufWriter::new(f), p.clone()),
            Err(e) => {
                log::error!(
                    "cannot open the access log {p}: {e}; lines are dropped until SIGUSR1 reopens it"
                );
                Out::None
            }
        },
    }
}

fn writer(rx: Receiver<Message>, first: AccessPath) {
    let mut out = open(&first);
    let mut current = first;
    loop {
        // Block for the next message, then take whatever else is queued before flushing.
        let Ok(mut message) = rx.recv() else { return };
        loop {
            match message {
                Message::Line(line) => {
                    let written = match &mut out {
                        Out::None => Ok(()),
                        Out::Stdout(s) => writeln!(s.lock(), "{line}"),
                        Out::File(f, _) => writeln!(f, "{line}"),
                    };
                    if written.is_err() {
                        super::metrics::get().access_log_dropped.inc();
                    }
                }
                Message::Use(path) if path != current => {
                    flush(&mut out);
                    out = open(&path);
                    current = path;
                }
                Message::Use(_) => {}
                Message::Flush(done) => {
                    flush(&mut out);
                    let _ = done.try_send(());
                }
                Message::Reopen => {
                    flush(&mut out);
                    if let Out::File(_, p) = &out {
                        log::info!("SIGUSR1: reopening the access log {p}");
                    }
                    out = open(&current);
                }
            }
            match rx.try_recv() {
                Ok(next) => message = next,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    flush(&mut out);
                    return;
                }
            }
        }
        flush(&mut out);
    }
}

fn flush(out: &mut Out) {
    let _ = match out {
        Out::None => Ok(()),
        Out::Stdout(s) => s.lock().flush(),
        Out::File(f, _) => f.flush(),
    };
}

/// Reopens the access-log file on SIGUSR1 (logrotate's `postrotate`).
pub struct ReopenOnSignal;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for ReopenOnSignal {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut usr1 = match signal(SignalKind::user_defined1()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGUSR1; the access log will not be reopened: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                got = usr1.recv() => {
                    if got.is_none() {
                        return;
                    }
                    reopen();
                }
            }
        }
    }
}
