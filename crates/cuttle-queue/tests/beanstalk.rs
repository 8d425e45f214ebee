//! The beanstalkd handle against a real beanstalkd on a free port.

use std::time::Duration;

use cuttle_queue::{QueueClient, QueueError};
use cuttle_testkit::Beanstalkd;

#[tokio::test]
async fn puts_land_on_the_named_tube_with_their_priority() {
    let server = Beanstalkd::start();
    let client = QueueClient::new(&server.addr().to_string());
    let first = client
        .put("smithi", b"a".to_vec(), 100, Duration::from_secs(60))
        .await
        .unwrap();
    let second = client
        .put("mira", b"b".to_vec(), 7, Duration::from_secs(60))
        .await
        .unwrap();
    assert_ne!(first, second);
    let stats = client.stats_job(second).await.unwrap();
    assert_eq!(stats["tube"], "mira");
    assert_eq!(stats["pri"], "7");
    assert_eq!(stats["state"], "ready");
    client.delete(first).await.unwrap();
    assert!(client.stats_job(first).await.is_err());
    assert_eq!(client.max_job_size().await.unwrap(), 65_535);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_by_the_server() {
    let server = Beanstalkd::start_with_args(&["-z", "100"]);
    let client = QueueClient::new(&server.addr().to_string());
    assert_eq!(client.max_job_size().await.unwrap(), 100);
    let error = client
        .put("t", vec![b'x'; 200], 1, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            QueueError::Refused { .. } | QueueError::Unreachable { .. }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn an_absent_or_malformed_server_address_is_named() {
    let port = cuttle_testkit::free_port();
    let client = QueueClient::new(&format!("127.0.0.1:{port}"));
    let error = client.stats().await.unwrap_err();
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(error.to_string().contains("start it"), "{error}");
    let bad = QueueClient::new("no-port-here");
    assert!(
        bad.stats()
            .await
            .unwrap_err()
            .to_string()
            .contains("HOST:PORT")
    );
}

#[tokio::test]
async fn a_hung_server_times_out_and_the_next_command_reconnects() {
    let server = Beanstalkd::start();
    let client = QueueClient::with_timeout(&server.addr().to_string(), Duration::from_millis(500));
    client
        .put("t", b"before".to_vec(), 1, Duration::from_secs(60))
        .await
        .unwrap();
    server.pause();
    let started = std::time::Instant::now();
    let error = client
        .put("t", b"during".to_vec(), 1, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        error.to_string().contains("no answer within 0.5 s"),
        "{error}"
    );
    // Every command behind the stuck one fails in bounded time too, not forever.
    assert!(client.stats().await.is_err());
    server.resume();
    let after = client
        .put("t", b"after".to_vec(), 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(client.stats_job(after).await.unwrap()["tube"], "t");
}

#[tokio::test]
async fn buried_jobs_are_peeked_per_tube_and_kicked_one_by_one() {
    let server = Beanstalkd::start();
    let client = QueueClient::new(&server.addr().to_string());
    let ttr = Duration::from_secs(60);
    assert_eq!(client.peek_buried("smithi").await.unwrap(), None);
    let first = client.put("smithi", b"one".to_vec(), 5, ttr).await.unwrap();
    let second = client.put("smithi", b"two".to_vec(), 5, ttr).await.unwrap();
    let elsewhere = client.put("mira", b"three".to_vec(), 5, ttr).await.unwrap();
    // Reserve and bury in this order; a bury needs the reserving connection.
    for (tube, id) in [("smithi", first), ("smithi", second), ("mira", elsewhere)] {
        let reserved = client
            .reserve(tube, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reserved.id, id);
        client.bury(id, 5).await.unwrap();
    }
    // peek-buried shows only the first buried job of the tube asked about.
    assert_eq!(
        client.peek_buried("smithi").await.unwrap(),
        Some((first, b"one".to_vec()))
    );
    assert_eq!(
        client.peek_buried("mira").await.unwrap(),
        Some((elsewhere, b"three".to_vec()))
    );
    // kick-job takes any buried job, not only the first.
    assert!(client.kick_job(second).await.unwrap());
    assert_eq!(client.stats_job(second).await.unwrap()["state"], "ready");
    // A ready job is not kicked again, and an unknown id is not an error.
    assert!(!client.kick_job(second).await.unwrap());
    assert!(!client.kick_job(999_999).await.unwrap());
    client.delete(first).await.unwrap();
    assert_eq!(client.peek_buried("smithi").await.unwrap(), None);
}
