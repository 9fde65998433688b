//! Reading a client library's error: walking its chain of causes into one
//! line for a failure message, and classifying it into a [`Reason`] by the
//! first TLS or I/O error inside. Every kind uses these instead of its own
//! walker, so the same fault reads and counts the same in every kind.

use std::error::Error;

use crate::checks::Reason;

/// `err` and each of its sources, outermost first.
pub fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e| {
        let e: &'a (dyn Error + 'static) = *e;
        e.source()
    })
}

/// `err` and its causes on one line, joined by `: `. A cause whose text
/// the line already holds (libraries often repeat their source in their own
/// message) is left out.
pub fn describe(err: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    for e in chain(err) {
        let text = e.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The reason of the first TLS or I/O error in `err`'s chain, looking
/// inside I/O errors too (TLS connectors wrap rustls errors in one or two
/// I/O errors). `None` when the chain holds neither.
pub fn transport_reason(err: &(dyn Error + 'static)) -> Option<Reason> {
    chain(err).find_map(|e| {
        if e.downcast_ref::<rustls::Error>().is_some() {
            Some(Reason::Tls)
        } else {
            e.downcast_ref::<std::io::Error>().map(io_reason)
        }
    })
}

/// The first I/O error in `err`'s chain.
pub fn first_io<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a std::io::Error> {
    chain(err).find_map(|e| e.downcast_ref::<std::io::Error>())
}

/// The first rustls error in `err`'s chain, inside I/O errors included.
pub fn first_tls<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    chain(err).find_map(|e| {
        e.downcast_ref::<rustls::Error>()
            .or_else(|| e.downcast_ref::<std::io::Error>().and_then(tls_in_io))
    })
}

/// Classify an I/O error, looking through the errors wrapped in it: a
/// rustls error inside is `tls`, an I/O error inside is classified itself.
pub fn io_reason(io: &std::io::Error) -> Reason {
    match io.get_ref() {
        Some(inner) if inner.downcast_ref::<rustls::Error>().is_some() => Reason::Tls,
        Some(inner) => match inner.downcast_ref::<std::io::Error>() {
            Some(inner) => io_reason(inner),
            None => Reason::from_io(io),
        },
        None => Reason::from_io(io),
    }
}

/// The rustls error wrapped (once or more) in an I/O error.
fn tls_in_io(io: &std::io::Error) -> Option<&rustls::Error> {
    let inner = io.get_ref()?;
    inner
        .downcast_ref::<rustls::Error>()
        .or_else(|| inner.downcast_ref::<std::io::Error>().and_then(tls_in_io))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<dyn Error + Send + Sync>>);

    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn describe_joins_causes_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Wrap(
            "request failed: refused",
            Some(Box::new(Wrap("connect", Some(Box::new(io))))),
        );
        assert_eq!(describe(&err), "request failed: refused: connect");
        assert_eq!(transport_reason(&err), Some(Reason::ConnectionRefused));
    }

    #[test]
    fn tls_errors_wrapped_in_io_errors_are_tls() {
        let tls = rustls::Error::General("bad certificate".into());
        let once = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let twice = std::io::Error::other(once);
        let err = Wrap("send", Some(Box::new(twice)));
        assert_eq!(transport_reason(&err), Some(Reason::Tls));
        assert!(first_tls(&err).is_some());
        assert_eq!(transport_reason(&Wrap("plain", None)), None);
    }
}
