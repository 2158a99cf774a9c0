//! Machine hooks written in any language, and metrics.
//!
//! The reference runtime's users extend machines with Python hook classes. This crate gives
//! the same reach without writing Rust:
//!
//! - [`WebhookHooks`] posts every hook event as JSON to an HTTP endpoint, with a timeout, an
//!   optional bearer token and an optional HMAC signature ([`signature`]); the receiver's
//!   reply may change the context, the output or the next state. A webhook that fails is
//!   logged and the run goes on, unless `fatal: true`.
//! - [`CommandHooks`] keeps one subprocess per machine and speaks JSON lines with it over its
//!   stdin and stdout, with the same events and replies. A process that crashes, hangs or
//!   prints something other than JSON gives a clear error, and never hangs the run.
//! - With the `otel` feature, [`otel`] records runs as OpenTelemetry metrics.
//! - [`effects`] tells, from a `hooks:` config alone, which programs it will run and which
//!   URLs it will call, for `validate` and reviews.
//!
//! Both hook types are [`EventHooks`] over an [`EventSink`]: the sink carries an event to the
//! receiver and brings its reply back; `EventHooks` filters events, applies replies and
//! decides what a failure means. Another transport needs only another sink.
//!
//! The facade crate `flatmachines` registers the hook classes `webhook` (`WebhookHooks`) and
//! `command` (`CommandHooks`), so a config can say:
//!
//! ```yaml
//! hooks:
//!   class: command
//!   args: {command: [python3, hooks.py], timeout: 10}
//! ```
//!
//! The events, payloads, replies and the command protocol are described in `docs/hooks.md`.

mod args;
pub mod command;
mod effects;
mod error;
mod event;
mod reply;
mod secret;
pub mod signature;
mod sink;
pub mod webhook;
mod work;

#[cfg(feature = "otel")]
pub mod otel;

pub use args::SetupError;
pub use command::{CommandConfig, CommandHooks, CommandProcess};
pub use effects::{Effect, effects};
pub use error::DeliveryError;
pub use event::{EventKind, EventSet, HookEvent};
pub use secret::Secret;
pub use sink::{DeliveryPolicy, EventHooks, EventSink};
pub use webhook::{Webhook, WebhookConfig, WebhookHooks};
pub use work::ObservedWorkPool;
