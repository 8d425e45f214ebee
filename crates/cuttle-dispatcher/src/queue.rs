//! The dispatcher's view of beanstalkd, as a trait ([`Queue`]) that the real client
//! ([`QueueClient`]) implements, so the loop's decisions run in unit tests too.

use std::future::Future;
use std::time::Duration;

use cuttle_queue::{QueueClient, QueueError, Reserved};

/// A job's copy on beanstalkd, as `stats-job` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub priority: u32,
    /// How long a reservation of it lasts untouched; `None` if beanstalkd did not say.
    pub time_to_run: Option<Duration>,
}

/// The beanstalkd commands the dispatcher uses, all on one connection (beanstalkd ties a
/// reservation to the connection that made it).
pub trait Queue: Send + Sync {
    /// Reserves the next ready job of `tube`, waiting up to `wait`.
    fn reserve(
        &self,
        tube: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<Reserved>, QueueError>> + Send;
    /// The priority of the most urgent ready job of `tube`, if any.
    fn ready_priority(
        &self,
        tube: &str,
    ) -> impl Future<Output = Result<Option<u32>, QueueError>> + Send;
    /// What beanstalkd says of a job's copy (`stats-job`); `None` if it has no such id.
    fn copy_stats(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<Option<CopyStats>, QueueError>> + Send;
    /// A job's body, or `None` if beanstalkd has no such id.
    fn peek(&self, id: u64) -> impl Future<Output = Result<Option<Vec<u8>>, QueueError>> + Send;
    fn touch(&self, id: u64) -> impl Future<Output = Result<(), QueueError>> + Send;
    fn release(
        &self,
        id: u64,
        priority: u32,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
    fn bury(&self, id: u64, priority: u32) -> impl Future<Output = Result<(), QueueError>> + Send;
    fn delete(&self, id: u64) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Whether `tube` has nothing ready or delayed (a tube never used counts as empty);
    /// `None` when beanstalkd cannot say.
    fn is_empty(&self, tube: &str) -> impl Future<Output = Option<bool>> + Send;
}

impl Queue for QueueClient {
    async fn reserve(&self, tube: &str, wait: Duration) -> Result<Option<Reserved>, QueueError> {
        QueueClient::reserve(self, tube, wait).await
    }

    async fn ready_priority(&self, tube: &str) -> Result<Option<u32>, QueueError> {
        Ok(self
            .peek_ready_priority(tube)
            .await?
            .map(|(_, priority)| priority))
    }

    async fn copy_stats(&self, id: u64) -> Result<Option<CopyStats>, QueueError> {
        let stats = self.stats_job(id).await?;
        let number = |key: &str| stats.get(key).and_then(|value| value.parse::<u64>().ok());
        Ok(number("pri").map(|priority| CopyStats {
            priority: u32::try_from(priority).unwrap_or(u32::MAX),
            time_to_run: number("ttr").map(Duration::from_secs),
        }))
    }

    async fn peek(&self, id: u64) -> Result<Option<Vec<u8>>, QueueError> {
        QueueClient::peek(self, id).await
    }

    async fn touch(&self, id: u64) -> Result<(), QueueError> {
        QueueClient::touch(self, id).await
    }

    async fn release(&self, id: u64, priority: u32, delay: Duration) -> Result<(), QueueError> {
        QueueClient::release(self, id, priority, delay).await
    }

    async fn bury(&self, id: u64, priority: u32) -> Result<(), QueueError> {
        QueueClient::bury(self, id, priority).await
    }

    async fn delete(&self, id: u64) -> Result<(), QueueError> {
        QueueClient::delete(self, id).await
    }

    async fn is_empty(&self, tube: &str) -> Option<bool> {
        match self.stats_tube(tube).await {
            Ok(stats) => Some(
                ["current-jobs-ready", "current-jobs-delayed"]
                    .iter()
                    .all(|key| stats.get(*key).is_none_or(|n| n == "0")),
            ),
            Err(QueueError::Refused { .. }) => Some(true),
            Err(_) => None,
        }
    }
}
