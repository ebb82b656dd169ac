//! Stop requests from signals, the same for every long command (`train`, `study run`,
//! `reproduce`, `study run-task`): SIGINT (Ctrl-C), SIGTERM (schedulers, `kill`) and SIGUSR1
//! (Slurm's warning before a time limit, `--signal`) set a stop flag that the trainer polls; it
//! checkpoints and records the run as interrupted. A second signal while that happens ends the
//! process at once with status 128 + the signal number.

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Signals that stop a command after a checkpoint.
const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGUSR1];

/// The stop flag and the signal that set it.
pub struct StopSignals {
    pub stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    /// The handlers that end the process on a second signal.
    shutdown: Vec<signal_hook::SigId>,
}

impl StopSignals {
    /// Installs the handlers.
    pub fn install() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        let mut shutdown = Vec::with_capacity(STOP_SIGNALS.len());
        for sig in STOP_SIGNALS {
            // Registered first, so that it sees the flag as it was before this signal.
            let id = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stop.clone())
                .context("installing signal handlers")?;
            shutdown.push(id);
            signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
                .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
                .context("installing signal handlers")?;
        }
        Ok(StopSignals { stop, signal, shutdown })
    }

    /// Once the work is saved, a further signal need not end the process at once: after this a
    /// second signal only sets the flag again (e.g. the SIGTERM Slurm sends to a task that asked
    /// to be requeued, while it still reports the outcome).
    pub fn disarm_second_signal(&self) {
        for &id in &self.shutdown {
            signal_hook::low_level::unregister(id);
        }
    }

    /// The signal that asked to stop, if any.
    pub fn received(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// Whether that signal was SIGUSR1 (Slurm's time-limit warning).
    pub fn was_usr1(&self) -> bool {
        self.received() == Some(SIGUSR1)
    }

    /// The exit status for a command stopped by a signal: 128 + its number (130 for Ctrl-C).
    pub fn exit_status(&self) -> i32 {
        128 + self.received().unwrap_or(SIGINT)
    }

    /// The signal's name.
    pub fn name(&self) -> &'static str {
        match self.received() {
            Some(SIGTERM) => "SIGTERM",
            Some(SIGUSR1) => "SIGUSR1",
            _ => "SIGINT",
        }
    }
}
