//! The one Ctrl-C watcher of every measuring loop: the first Ctrl-C flips a
//! `watch` flag that the load engine (and anything else that sends work)
//! stops on; what finished so far is kept by the caller.

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Watches for Ctrl-C while it lives; dropping it stops watching.
pub struct Interrupt {
    rx: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Interrupt {
    /// Starts watching. On Ctrl-C, `on_interrupt` runs once (the binary
    /// says what happens to the results) and the flag turns true.
    pub fn watch(on_interrupt: impl FnOnce() + Send + 'static) -> Interrupt {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_interrupt();
                let _ = tx.send(true);
            }
        });
        Interrupt { rx, task }
    }

    /// A receiver that turns true on Ctrl-C, for the engine's stop input.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Whether Ctrl-C has been pressed.
    pub fn interrupted(&self) -> bool {
        *self.rx.borrow()
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.task.abort();
    }
}
