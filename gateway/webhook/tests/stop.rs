//! Stopping the webhook: what is queued is POSTed within the grace period; a web service that
//! is down does not hold the stop past it, and what is left is counted as dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use portico_core::message::Origin;
use portico_core::{Broker, BrokerConfig, Message, QoS, TopicName};
use portico_webhook::{Rule, Webhook, WebhookSettings};
use tokio::net::TcpListener;

/// A web service counting the POSTs it answered (after `delay` each).
async fn web_service(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let count = Arc::new(AtomicUsize::new(0));
    let answered = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answered = answered.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let answered = answered.clone();
                    async move {
                        req.into_body().collect().await.expect("body");
                        tokio::time::sleep(delay).await;
                        answered.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, count)
}

fn settings(url: String, max_retries: u32) -> WebhookSettings {
    WebhookSettings {
        url,
        pool_size: 1,
        max_retries,
        rules: vec![Rule::new("message.publish", None).expect("valid rule")],
        ..WebhookSettings::default()
    }
}

fn publish(broker: &Broker, n: usize) {
    for _ in 0..n {
        let topic = TopicName::new("t/1").expect("valid topic");
        let origin = Origin {
            client_id: "c".into(),
            protocol: "mqtt",
        };
        let message = Message::new(0, topic, Bytes::from_static(b"x"), QoS::AtMostOnce, false, origin);
        broker.publish(message).expect("published");
    }
}

fn metric(broker: &Broker, name: &str) -> u64 {
    broker
        .metrics_snapshot()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_posts_what_is_queued() {
    let (web, answered) = web_service(Duration::from_millis(20)).await;
    let broker = Broker::new(BrokerConfig::default());
    let webhook = Webhook::start(settings(format!("http://{web}/"), 0), &broker).expect("starts");
    publish(&broker, 5);
    webhook.stop(Duration::from_secs(5)).await;
    assert_eq!(answered.load(Ordering::SeqCst), 5);
    assert_eq!(metric(&broker, "webhook.requests.success"), 5);
    assert_eq!(metric(&broker, "webhook.queue.depth"), 0);
    // Stopped: later events are not even built for it.
    publish(&broker, 1);
    assert_eq!(metric(&broker, "webhook.requests.dropped"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_is_bounded_when_the_service_is_down() {
    let down = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = down.local_addr().expect("address");
    drop(down);
    let broker = Broker::new(BrokerConfig::default());
    let webhook = Webhook::start(settings(format!("http://{addr}/"), 50), &broker).expect("starts");
    publish(&broker, 3);
    // Let the first attempt fail and the retry wait begin.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    webhook.stop(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    // Every event is accounted for: given up on (no retry waits once stopping) or dropped.
    assert_eq!(metric(&broker, "webhook.requests.dropped"), 3);
    assert_eq!(metric(&broker, "webhook.requests.success"), 0);
}
