//! Progress bars on a terminal, for the library's [`imgstore::Progress`]
//! reports: one bar per task (a file imported, a blob downloaded), several
//! at once when the library runs tasks in parallel, nothing on a pipe.

use std::io::IsTerminal;
use std::sync::Arc;

use imgstore::{Progress, ProgressTask};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Draws a bar per task on stderr.
pub struct Bars {
    multi: MultiProgress,
    style: ProgressStyle,
}

impl Bars {
    /// Bars when stderr is a terminal; `None` on a pipe or a file, where
    /// bars would be noise.
    pub fn on_terminal() -> Option<Arc<dyn Progress>> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let style = ProgressStyle::with_template(
            "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Some(Arc::new(Bars {
            multi: MultiProgress::new(),
            style,
        }))
    }
}

impl Progress for Bars {
    fn begin(&self, label: &str, total: Option<u64>) -> Box<dyn ProgressTask> {
        let bar = match total {
            Some(len) => ProgressBar::new(len).with_style(self.style.clone()),
            None => ProgressBar::new_spinner(),
        };
        let bar = self.multi.add(bar);
        bar.set_message(label.to_string());
        Box::new(Bar(bar))
    }
}

struct Bar(ProgressBar);

impl ProgressTask for Bar {
    fn advance(&mut self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn set_total(&mut self, total: u64) {
        self.0.set_length(total);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
