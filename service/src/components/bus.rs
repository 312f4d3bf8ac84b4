//! The event bus: `GET /events/{key}` long-polls topic `key` for an event
//! (answering `timed_out` after `event_poll_timeout`), `POST /events/{key}`
//! publishes the request body as an event to that topic's subscribers.
//!
//! Scenario seeded here: `lapsed-listener` (retention). Every long poll
//! registers a subscriber (with an inbox buffer of `subscriber_buffer_bytes`,
//! default 4 KiB) on the bus. On the leaky path nothing unregisters it when the
//! poll ends, so every poll that times out leaves a subscriber behind, owned by
//! the bus's topic map, that no one will ever read. The fixed path holds a
//! [`Subscription`] guard that unregisters on drop, whichever way the poll
//! ends (event, timeout, or the client going away).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::Notify;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{map_slot_bytes, size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::{Path, RawBody};

/// Bytes of a distinct key as ground truth models it: loadgen's keys
/// (`lg<pid><millis>-<n>`, about 26 bytes) at their jemalloc size class.
const MODEL_KEY_BYTES: u64 = 32;

/// One listener on a topic.
struct Subscriber {
    id: u64,
    /// Events delivered and not yet taken by the long poll, in a buffer of
    /// `subscriber_buffer_bytes` allocated up front; an event that does not fit
    /// is dropped (counted in `bus_events_dropped`). A `std::sync::Mutex`: held
    /// for one append or one drain.
    inbox: Mutex<Vec<u8>>,
    /// Wakes the long poll. `notify_one` stores a permit, so an event published
    /// between subscribing and awaiting is not missed.
    wake: Notify,
}

/// Subscribers by topic.
type Topics = HashMap<String, Vec<Arc<Subscriber>>>;

/// The bus component.
pub struct EventBus {
    ctx: Ctx,
    /// Every registered subscriber, by topic, owned by the process-wide bus.
    /// A subscriber leaves only when something unregisters it: on the fixed
    /// path its [`Subscription`] guard; on the leaky path nothing, so the map
    /// retains it (and its inbox buffer) forever. A `std::sync::Mutex`: held
    /// for one register, unregister or publish, never across an `.await`.
    topics: Mutex<Topics>,
    next_id: AtomicU64,
    /// Subscribers registered now (the `bus_subscribers` gauge).
    subscribers: AtomicU64,
    polls: AtomicU64,
    events_dropped: AtomicU64,
}

/// FIXED PATH: unregisters its subscriber when dropped, which happens however
/// the long poll ends, including when the client disconnects and axum drops
/// the handler's future.
struct Subscription<'a> {
    bus: &'a EventBus,
    topic: &'a str,
    id: u64,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.bus.unregister(self.topic, self.id);
    }
}

/// What `GET /events/{key}` answers.
#[derive(Serialize)]
struct Polled {
    topic: String,
    timed_out: bool,
    event_bytes: usize,
}

/// What `POST /events/{key}` answers.
#[derive(Serialize)]
struct Published {
    topic: String,
    delivered: usize,
    dropped: usize,
}

/// Heap bytes one subscriber costs: its inbox buffer and its `Arc` cell.
fn subscriber_bytes(c: &Config) -> u64 {
    size_class(c.subscriber_buffer_bytes)
        + size_class(16 + std::mem::size_of::<Subscriber>() as u64)
}

impl EventBus {
    pub fn new(ctx: Ctx) -> EventBus {
        EventBus {
            ctx,
            topics: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            subscribers: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
        }
    }

    fn register(&self, topic: &str) -> Arc<Subscriber> {
        let subscriber = Arc::new(Subscriber {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            inbox: Mutex::new(Vec::with_capacity(
                self.ctx.config.subscriber_buffer_bytes as usize,
            )),
            wake: Notify::new(),
        });
        self.topics
            .lock()
            .expect("topics lock")
            .entry(topic.to_owned())
            .or_default()
            .push(subscriber.clone());
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        subscriber
    }

    fn unregister(&self, topic: &str, id: u64) {
        let mut topics = self.topics.lock().expect("topics lock");
        let Some(subscribers) = topics.get_mut(topic) else {
            return;
        };
        let before = subscribers.len();
        subscribers.retain(|s| s.id != id);
        let removed = before - subscribers.len();
        if subscribers.is_empty() {
            topics.remove(topic);
        }
        self.subscribers
            .fetch_sub(removed as u64, Ordering::Relaxed);
    }

    /// Long-polls `topic`: waits up to `event_poll_timeout` for an event.
    async fn poll(&self, topic: &str) -> Polled {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let timeout = self.ctx.config.event_poll_timeout;
        let reserve = subscriber_bytes(&self.ctx.config) + topic_bytes();
        let lapse = self.ctx.leak_admitted(ScenarioId::LapsedListener, reserve);
        let subscriber = self.register(topic);
        // LEAKY (`lapse`): no guard. When this poll ends, the bus's topic map
        // still holds the subscriber and its inbox buffer, and nothing will
        // ever remove them: a lapsed listener.
        // FIXED: the guard unregisters the subscriber when this function
        // returns or its future is dropped (client gone).
        let _subscription = (!lapse).then(|| Subscription {
            bus: self,
            topic,
            id: subscriber.id,
        });
        let timed_out = tokio::time::timeout(timeout, subscriber.wake.notified())
            .await
            .is_err();
        let event_bytes = {
            let mut inbox = subscriber.inbox.lock().expect("inbox lock");
            let n = inbox.len();
            inbox.clear();
            n
        };
        Polled {
            topic: topic.to_owned(),
            timed_out,
            event_bytes,
        }
    }

    /// Delivers `event` to every subscriber of `topic` whose inbox has room.
    fn publish(&self, topic: &str, event: &[u8]) -> Published {
        let subscribers: Vec<Arc<Subscriber>> = self
            .topics
            .lock()
            .expect("topics lock")
            .get(topic)
            .cloned()
            .unwrap_or_default();
        let (mut delivered, mut dropped) = (0, 0);
        for subscriber in &subscribers {
            let mut inbox = subscriber.inbox.lock().expect("inbox lock");
            if inbox.capacity() - inbox.len() >= event.len() {
                inbox.extend_from_slice(event);
                subscriber.wake.notify_one();
                delivered += 1;
            } else {
                dropped += 1;
            }
        }
        self.events_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        Published {
            topic: topic.to_owned(),
            delivered,
            dropped,
        }
    }
}

async fn poll_events(
    State(bus): State<Arc<EventBus>>,
    Path(topic): Path<String>,
) -> Result<Json<Polled>, AppError> {
    let topic = validate_key(&topic)?;
    Ok(Json(bus.poll(topic).await))
}

async fn publish_event(
    State(bus): State<Arc<EventBus>>,
    Path(topic): Path<String>,
    RawBody(event): RawBody,
) -> Result<Json<Published>, AppError> {
    let topic = validate_key(&topic)?;
    let limit = bus.ctx.config.subscriber_buffer_bytes;
    if event.len() as u64 > limit {
        return Err(AppError::Rejected(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("an event must fit a subscriber's {limit}-byte inbox"),
        ));
    }
    Ok(Json(bus.publish(topic, &event)))
}

impl Component for EventBus {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/events/{key}", get(poll_events).post(publish_event))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        let topics = self.topics.lock().expect("topics lock").len() as u64;
        out.gauge(
            "bus_subscribers",
            self.subscribers.load(Ordering::Relaxed),
            "Subscribers registered on the event bus; each holds a 4 KiB inbox until unregistered.",
        );
        out.gauge("bus_topics", topics, "Topics in the event bus topic map.");
        out.counter(
            "bus_polls",
            self.polls.load(Ordering::Relaxed),
            "Long polls served since start.",
        );
        out.counter(
            "bus_events_dropped",
            self.events_dropped.load(Ordering::Relaxed),
            "Events published to a full or gone inbox.",
        );
    }
}

/// Heap bytes a new topic costs the map: its name, its slot (String 24 +
/// Vec 24) and its subscriber list (a first push allocates room for 4 `Arc`s).
fn topic_bytes() -> u64 {
    size_class(MODEL_KEY_BYTES) + map_slot_bytes(24 + 24) + size_class(4 * 8)
}

/// The `lapsed-listener` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // Per timed-out poll on a distinct topic: the subscriber's inbox buffer and
    // its Arc cell, plus the topic entry the bus keeps for it.
    let bytes = subscriber_bytes(c) + topic_bytes();
    Scenario::new(
        ScenarioId::LapsedListener,
        LeakClass::Retention,
        "bus",
        vec![Step::get("/events/{key}")],
    )
    .retains(bytes)
    .gauge("bus_subscribers")
    .paths(
        "each long poll registers a subscriber with a 4 KiB inbox on the bus and never unregisters it; the bus's topic map keeps it after the poll times out",
        "a Subscription guard unregisters the subscriber when the poll ends (event, timeout or client gone)",
    )
}
