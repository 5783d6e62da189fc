//! Progress bars for long operations: drawn on a terminal, silent otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs smaller than this finish too quickly for a bar to help.
const MIN_BYTES_FOR_BAR: u64 = 32 << 20;

/// A bar for `total` bytes (or an unknown amount) on stderr, drawn only when
/// stderr is a terminal and the work is large enough to be worth watching.
pub fn bar(total: Option<u64>, verb: &str) -> ProgressBar {
    let show = std::io::stderr().is_terminal() && total.is_none_or(|n| n >= MIN_BYTES_FOR_BAR);
    let bar = ProgressBar::with_draw_target(total, target(show));
    let style = match total {
        Some(_) => ProgressStyle::with_template(
            "{msg:8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => ProgressStyle::with_template("{msg:8} {bytes} {bytes_per_sec} {elapsed}"),
    };
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_owned());
    bar
}

fn target(show: bool) -> ProgressDrawTarget {
    if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
