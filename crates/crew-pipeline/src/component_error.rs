//! The error type shared in shape by sources and sinks: a message and
//! whether trying again may help.

/// Whether an I/O error may pass on a later attempt. A full disk, a missing
/// file or a closed pipe do not heal by themselves; an interrupted or
/// timed-out call may.
pub(crate) fn io_is_transient(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
    )
}

/// Defines a component error type: `message`, `retriable`, the `fatal` and
/// `retriable` constructors, `Display`, `Error` and `From<io::Error>`.
macro_rules! component_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            /// What went wrong.
            pub message: String,
            /// Whether trying again may succeed.
            pub retriable: bool,
        }

        impl $name {
            /// A failure that retrying will not fix.
            pub fn fatal(message: impl Into<String>) -> Self {
                $name {
                    message: message.into(),
                    retriable: false,
                }
            }

            /// A failure worth retrying after a backoff.
            pub fn retriable(message: impl Into<String>) -> Self {
                $name {
                    message: message.into(),
                    retriable: true,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl std::error::Error for $name {}

        impl From<std::io::Error> for $name {
            fn from(error: std::io::Error) -> Self {
                $name {
                    retriable: $crate::component_error::io_is_transient(&error),
                    message: error.to_string(),
                }
            }
        }
    };
}

pub(crate) use component_error;
