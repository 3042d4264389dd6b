//! The history vocabulary: operations on one register, what they returned, and when.
//!
//! The register model itself ([`step`]) lives here too, beside the types it interprets, so the
//! semantics of every input/output pair are written down in one place.

use std::fmt;

/// Register operations on one key. Values are `u64`; a register starts absent (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read the current value.
    Read,
    /// Overwrite the value unconditionally.
    Write(u64),
    /// Compare-and-set: if the value equals `expected`, replace it with `new`.
    ///
    /// An absent register equals no `expected` value, so a cas on an absent key always fails.
    Cas {
        /// The value the register must hold for the cas to take effect.
        expected: u64,
        /// The value the register holds afterwards if it took effect.
        new: u64,
    },
}

/// What an operation returned. Must match the kind of its [`Input`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// A read returned this value (`None`: the key was absent).
    Read(Option<u64>),
    /// A write completed (and therefore took effect).
    Write,
    /// A cas completed: `true` means the value equalled `expected` and became `new`; `false` is
    /// an observation that the value was not `expected`, and the cas had no effect.
    Cas(bool),
}

/// One operation of a history: its invocation, its outcome (if known) and its time interval.
///
/// Operations that definitely failed with no effect (an error the client knows was not applied,
/// such as a refused request, or a read that returned no value) must not be passed to the
/// checker at all: they observe nothing and change nothing. Operations whose outcome is unknown
/// (timed out, connection lost) are passed with `output: None` and `ret: None`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client or process that issued the operation (informational, shown in reports).
    pub client: u64,
    /// The key the operation addresses; each key is an independent register.
    pub key: u64,
    /// What was asked.
    pub input: Input,
    /// What was returned; `None` means the outcome is unknown (timed out / Jepsen `:info`): the
    /// operation may have taken effect at any point after `call`, or never, and its return
    /// value constrains nothing.
    pub output: Option<Output>,
    /// Invocation time, in any monotonic unit shared by the whole history.
    pub call: u64,
    /// Completion time; `None` if and only if `output` is `None` (treated as +infinity).
    ///
    /// An operation that returned at time `t` and one invoked at the same `t` are treated as
    /// concurrent, which is the conservative reading of a coarse clock.
    pub ret: Option<u64>,
}

impl Operation {
    /// Why this operation is malformed, or `None` if it is well formed: `output` and `ret`
    /// must both be present or both absent, `ret` must not precede `call`, and the output kind
    /// must match the input kind.
    #[must_use]
    pub fn malformation(&self) -> Option<&'static str> {
        match (&self.output, self.ret) {
            (Some(_), None) => return Some("output is known but ret is None"),
            (None, Some(_)) => return Some("output is None (unknown) but ret is set"),
            (Some(_), Some(ret)) if ret < self.call => return Some("ret precedes call"),
            _ => {}
        }
        match (self.input, self.output) {
            (_, None)
            | (Input::Read, Some(Output::Read(_)))
            | (Input::Write(_), Some(Output::Write))
            | (Input::Cas { .. }, Some(Output::Cas(_))) => None,
            _ => Some("output kind does not match input kind"),
        }
    }
}

impl fmt::Display for Operation {
    /// A one-line description used in verdict details, e.g.
    /// `client 3: cas(1 -> 4) = false, [17, 20]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}: ", self.client)?;
        match self.input {
            Input::Read => write!(f, "read()")?,
            Input::Write(v) => write!(f, "write({v})")?,
            Input::Cas { expected, new } => write!(f, "cas({expected} -> {new})")?,
        }
        match self.output {
            None => write!(f, " = unknown")?,
            Some(Output::Read(Some(v))) => write!(f, " = {v}")?,
            Some(Output::Read(None)) => write!(f, " = absent")?,
            Some(Output::Write) => write!(f, " = ok")?,
            Some(Output::Cas(ok)) => write!(f, " = {ok}")?,
        }
        match self.ret {
            Some(ret) => write!(f, ", [{}, {}]", self.call, ret),
            None => write!(f, ", [{}, inf)", self.call),
        }
    }
}

/// The register model: applies `input` with observed `output` to `state`.
///
/// Returns the state after the operation if the observation is possible in `state`, `None` if it
/// is not. For an unknown outcome (`output: None`) it returns a new state only when the
/// operation *changes* the register: linearizing an unknown operation that would leave the
/// state as it is can never help (leaving it un-linearized is equivalent and keeps more
/// options open), so the search does not try it.
pub(crate) fn step(
    state: Option<u64>,
    input: Input,
    output: Option<Output>,
) -> Option<Option<u64>> {
    match (input, output) {
        (Input::Read, Some(Output::Read(seen))) => (seen == state).then_some(state),
        (Input::Write(v), Some(Output::Write)) => Some(Some(v)),
        (Input::Cas { expected, new }, Some(Output::Cas(true))) => {
            (state == Some(expected)).then_some(Some(new))
        }
        (Input::Cas { expected, .. }, Some(Output::Cas(false))) => {
            (state != Some(expected)).then_some(state)
        }
        (Input::Write(v), None) => (state != Some(v)).then_some(Some(v)),
        (Input::Cas { expected, new }, None) => {
            (state == Some(expected) && expected != new).then_some(Some(new))
        }
        // An unknown read observes nothing; mismatched kinds are rejected before the search.
        (Input::Read, None) | (_, Some(_)) => None,
    }
}
