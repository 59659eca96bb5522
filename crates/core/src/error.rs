//! One grouped error enum for the whole core crate. Every variant carries enough context (op
//! name, shapes, keys, paths) for a user to find the offending thing without a debugger; the
//! binding maps each group to a stable `code` string.

use std::fmt;

/// The core crate's error. Groups, not one variant per call site: the message carries detail.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A shape or dtype rule of an op was violated while building or verifying a graph.
    Shape { op: String, message: String },
    /// Wrong dtype for an op input, a batch tensor or a file.
    DType {
        what: String,
        expected: String,
        got: String,
    },
    /// A graph invariant broke (a pass bug or hand-built bad IR); carries the graph's text.
    Verify { message: String },
    /// A config key is unknown, ill-typed or has an invalid value.
    Config { key: String, message: String },
    /// A feature that is parsed and validated but not implemented yet: never silently ignored.
    Unsupported { feature: String, message: String },
    /// A batch, input map or data set that does not fit the compiled model.
    Batch { message: String },
    /// A checkpoint or safetensors file is malformed or does not match the model.
    Checkpoint { path: String, message: String },
    /// A token data file is malformed or too short.
    Data { path: String, message: String },
    /// Training diverged: the loss became NaN or infinite.
    NonFinite { step: u64, what: String },
    /// Operating-system I/O failed.
    Io { path: String, message: String },
    /// A user-given size needs more than weft or the host can give (memory, threads); the
    /// message names the quantity, its size and the limit.
    Resource { quantity: String, message: String },
    /// A device or backend could not be used (e.g. CUDA libraries missing).
    Device { message: String },
    /// A collective or point-to-point transfer failed: a rank did not arrive in time, ranks
    /// called different collectives, or buffer sizes disagree. The message names the collective,
    /// its sequence number, the group's ranks and the culprits.
    Collective { message: String },
    /// An internal invariant broke; a bug in weft.
    Internal { message: String },
}

/// The core crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text of a caught panic's payload (a `String` or `&str`, as `panic!` makes them).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic payload".into())
}

/// `f`'s result, or a panic inside it as `Error::Internal` saying that `what` panicked and why:
/// a device's panic must fail its step (and its peers' collectives), never unwind further.
pub fn catch_panic<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(Error::internal(format!(
            "{what} panicked: {}",
            panic_message(p.as_ref())
        )))
    })
}

impl Error {
    /// Stable machine-readable code, used by the binding and the TS error classes.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Shape { .. } => "WEFT_SHAPE",
            Error::DType { .. } => "WEFT_DTYPE",
            Error::Verify { .. } => "WEFT_VERIFY",
            Error::Config { .. } => "WEFT_CONFIG",
            Error::Unsupported { .. } => "WEFT_UNSUPPORTED",
            Error::Batch { .. } => "WEFT_BATCH",
            Error::Checkpoint { .. } => "WEFT_CHECKPOINT",
            Error::Data { .. } => "WEFT_DATA",
            Error::NonFinite { .. } => "WEFT_NON_FINITE",
            Error::Io { .. } => "WEFT_IO",
            Error::Resource { .. } => "WEFT_RESOURCE",
            Error::Device { .. } => "WEFT_DEVICE",
            Error::Collective { .. } => "WEFT_COLLECTIVE",
            Error::Internal { .. } => "WEFT_INTERNAL",
        }
    }

    pub fn shape(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Shape {
            op: op.into(),
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
        }
    }

    pub fn batch(message: impl Into<String>) -> Self {
        Error::Batch {
            message: message.into(),
        }
    }

    /// A config error; `message` is a full sentence naming the key.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A parsed-but-not-implemented feature, refused with a reason (never silently ignored).
    pub fn unsupported(feature: impl Into<String>, detail: impl fmt::Display) -> Self {
        let feature = feature.into();
        let message = format!("{feature} is not yet supported: {detail}");
        Error::Unsupported { feature, message }
    }

    /// A size beyond a limit; `message` is a full sentence naming quantity, size and limit.
    pub fn resource(quantity: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Resource {
            quantity: quantity.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<String>, err: impl fmt::Display) -> Self {
        Error::Io {
            path: path.into(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, message } => write!(f, "{op}: {message}"),
            Error::DType {
                what,
                expected,
                got,
            } => {
                write!(f, "{what}: expected dtype {expected}, got {got}")
            }
            Error::Verify { message } => write!(f, "graph verification failed: {message}"),
            // These carry full sentences that already name the key, feature or quantity.
            Error::Config { message, .. }
            | Error::Unsupported { message, .. }
            | Error::Resource { message, .. } => f.write_str(message),
            Error::Batch { message } => write!(f, "batch: {message}"),
            Error::Checkpoint { path, message } => write!(f, "checkpoint {path}: {message}"),
            Error::Data { path, message } => write!(f, "data file {path}: {message}"),
            Error::NonFinite { step, what } => {
                write!(f, "non-finite {what} at step {step}; training stopped")
            }
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Device { message } => write!(f, "device: {message}"),
            Error::Collective { message } => f.write_str(message),
            Error::Internal { message } => write!(f, "internal error (a weft bug): {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// Return early with an error when a condition does not hold.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $err:expr) => {
        if !$cond {
            return Err($err);
        }
    };
}
