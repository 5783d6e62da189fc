//! Progress bars for long operations: drawn on a terminal, silent otherwise.

use std::io::{IsTerminal, Read};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs smaller than this finish too quickly for a bar to help.
const MIN_BYTES_FOR_BAR: u64 = 32 << 20;

/// Wraps `reader` so that reading advances a bar on stderr, when stderr is a
/// terminal and the input is large (or of unknown size).
pub fn wrap<R: Read>(reader: R, total: Option<u64>, verb: &str) -> (Box<dyn Read + '_>, ProgressBar)
where
    R: 'static,
{
    let show = std::io::stderr().is_terminal() && total.is_none_or(|n| n >= MIN_BYTES_FOR_BAR);
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), target(show)),
        None => ProgressBar::with_draw_target(None, target(show)),
    };
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
    (Box::new(bar.wrap_read(reader)), bar)
}

fn target(show: bool) -> ProgressDrawTarget {
    if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
