//! Progress bars for long work (hashing, downloads), drawn only on a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

/// Files smaller than this finish too fast for a bar to help.
const MIN_BAR_BYTES: u64 = 16 << 20;

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verb: &'static str,
}

impl Bars {
    pub fn new(verb: &'static str) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::default(),
            verb,
        }
    }

    pub fn bar(&self, label: &str, total: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(format!("{} {label}", self.verb));
        bar
    }
}

impl candor_verify::Progress for Bars {
    fn start(&self, label: &str, total: u64) {
        if total >= MIN_BAR_BYTES {
            let bar = self.bar(label, total);
            if let Ok(mut bars) = self.bars.lock() {
                bars.insert(label.to_string(), bar);
            }
        }
    }

    fn advance(&self, label: &str, bytes: u64) {
        if let Ok(bars) = self.bars.lock() {
            if let Some(b) = bars.get(label) {
                b.inc(bytes);
            }
        }
    }

    fn finish(&self, label: &str) {
        if let Ok(mut bars) = self.bars.lock() {
            if let Some(b) = bars.remove(label) {
                b.finish_and_clear();
            }
        }
    }
}
