//! The log: human-readable text (colours only on a terminal) or JSON lines, on stderr.
//!
//! In the text format every event is one line whatever its values hold: a newline or
//! another control character in a value (a resolution note, a title) is written escaped,
//! so a client cannot forge a log line. JSON escapes them by itself.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global `tracing` subscriber.
pub fn init_logging(settings: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::new(&settings.level);
    let _ = match settings.format {
        LogFormat::Text => {
            let colours = io::stderr().is_terminal();
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(colours)
                .with_writer(OneLinePerEvent {
                    make: io::stderr,
                    colours,
                })
                .try_init()
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .json()
            .try_init(),
    };
}

/// Makes writers that escape control characters inside an event's line. The formatter
/// hands each event over in one `write` ending in its newline, and never puts a control
/// character of its own inside a line but for colour codes (`colours`: on a terminal).
#[derive(Clone, Copy)]
pub struct OneLinePerEvent<M> {
    pub make: M,
    pub colours: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLinePerEvent<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: self.make.make_writer(),
            colours: self.colours,
        }
    }
}

pub struct EscapingWriter<W> {
    inner: W,
    colours: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&escape_line(buf, self.colours))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `line` with every control character but its final newline and tabs (and, with
/// `colours`, the escape that starts a colour code) written as `\n`, `\r`, `\u{7}`.
fn escape_line(line: &[u8], colours: bool) -> Vec<u8> {
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let kept = |byte: u8| byte == b'\t' || (colours && byte == 0x1b);
    if !body.iter().any(|&byte| byte.is_ascii_control() && !kept(byte)) {
        return line.to_vec();
    }
    let mut escaped = Vec::with_capacity(line.len() + 16);
    for &byte in body {
        match byte {
            b'\n' => escaped.extend_from_slice(b"\\n"),
            b'\r' => escaped.extend_from_slice(b"\\r"),
            byte if kept(byte) => escaped.push(byte),
            byte if byte.is_ascii_control() => escaped.extend_from_slice(format!("\\u{{{byte:x}}}").as_bytes()),
            byte => escaped.push(byte),
        }
    }
    escaped.extend_from_slice(end);
    escaped
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_value_cannot_forge_a_log_line() {
        let captured = Captured::default();
        let output = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(OneLinePerEvent {
                make: move || output.clone(),
                colours: false,
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let note = "done\n2026-12-01T00:00:00Z  INFO forged: admin logged in\r\u{7}\u{1b}[31m";
            tracing::info!(note, "resolved by ana: {note}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("done\\n2026-12-01T00:00:00Z  INFO forged"), "{text}");
        assert!(text.ends_with("\\r\\u{7}\n") || text.contains("\\r\\u{7}"), "{text}");
        assert!(!text.contains('\u{1b}'), "no colour codes when not a terminal: {text}");
    }
}
