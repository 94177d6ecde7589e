//! [`ProcessKey`]: how a call names a process, by pid or by the name of a managed process
//! (the `{p}` of docs/protocol/sandbox-api.md, Conventions).

use std::fmt;

use crate::error::ClientError;

/// A process of a sandbox: its pid, or the name (or managed id, `process-<pid>`) of a managed
/// process, which always addresses its current run.
///
/// Every process call takes `impl Into<ProcessKey>`, so a `u32` pid and a `&str` / `String`
/// name both work:
///
/// ```
/// use alcove_client::ProcessKey;
/// assert_eq!(ProcessKey::from(317), ProcessKey::Pid(317));
/// assert_eq!(ProcessKey::from("web"), ProcessKey::Name("web".into()));
/// assert_eq!(ProcessKey::from("web").to_string(), "web");
/// ```
///
/// A name must be non-empty, must not be all digits (an all-digit segment is always a pid),
/// must hold no `/`, and must not be `run`, `.` or `..`; a call given such a name fails with
/// [`ClientError::InvalidArgument`] before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProcessKey {
    /// A process id inside the sandbox.
    Pid(u32),
    /// The name a managed process was started with, or its managed id.
    Name(String),
}

impl ProcessKey {
    /// The `{p}` path segment (unencoded: the URL builder encodes it as one segment).
    pub(crate) fn segment(&self) -> Result<String, ClientError> {
        match self {
            Self::Pid(pid) => Ok(pid.to_string()),
            Self::Name(name) => {
                check_name(name)?;
                Ok(name.clone())
            }
        }
    }
}

/// Refuses a managed-process name the agent refuses (empty, all digits, with `/`, `run`), or
/// that no URL can carry as one path segment (`.` and `..`).
pub(crate) fn check_name(name: &str) -> Result<(), ClientError> {
    let why = if name.is_empty() {
        "must not be empty"
    } else if name.bytes().all(|b| b.is_ascii_digit()) {
        "must not be all digits (pass a pid as a number)"
    } else if name.contains('/') {
        "must not contain '/'"
    } else if name == "run" {
        "must not be \"run\""
    } else if name == "." || name == ".." {
        "must not be \".\" or \"..\""
    } else {
        return Ok(());
    };
    Err(ClientError::invalid(format!("process name {name:?} {why}")))
}

impl fmt::Display for ProcessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pid(pid) => write!(f, "{pid}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl From<u32> for ProcessKey {
    fn from(pid: u32) -> Self {
        Self::Pid(pid)
    }
}

impl From<&str> for ProcessKey {
    fn from(name: &str) -> Self {
        Self::Name(name.to_string())
    }
}

impl From<String> for ProcessKey {
    fn from(name: String) -> Self {
        Self::Name(name)
    }
}

impl From<&String> for ProcessKey {
    fn from(name: &String) -> Self {
        Self::Name(name.clone())
    }
}

impl From<&ProcessKey> for ProcessKey {
    fn from(key: &ProcessKey) -> Self {
        key.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_and_names_become_segments() {
        assert_eq!(ProcessKey::from(42).segment().expect("pid"), "42");
        assert_eq!(
            ProcessKey::from("web server").segment().expect("name"),
            "web server"
        );
        assert_eq!(
            ProcessKey::from(String::from("process-12"))
                .segment()
                .expect("managed id"),
            "process-12"
        );
    }

    #[test]
    fn names_the_agent_refuses_are_refused() {
        for bad in ["", "123", "a/b", "run", ".", ".."] {
            let err = ProcessKey::from(bad).segment().expect_err(bad);
            assert!(
                matches!(err, ClientError::InvalidArgument(_)),
                "{bad}: {err}"
            );
        }
        for good in ["web", "run2", "1a", "-", "a b?c#d%e"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
    }
}
