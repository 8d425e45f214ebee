//! cuttle's edge to beanstalkd: the job-body codec (teuthology's job YAML) and an async
//! handle to a beanstalkd connection.
//!
//! YAML never leaves this crate as YAML: callers get typed fields and opaque extra keys.
//! The `beanstalkc` client is blocking, so each connection lives on its own thread and is
//! driven over a channel; nothing here may call it from an async task.

pub mod beanstalk;
pub use cuttle_yaml as budget;
pub mod codec;

pub use beanstalk::{QueueClient, QueueError, Reserved};
pub use codec::{Body, JobConfig, RenderInput, read_body, read_body_with_config};
