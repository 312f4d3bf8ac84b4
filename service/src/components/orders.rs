//! Orders: `POST /orders/{key}` builds an order from its line items (the
//! opaque request body, cut into items of `order_item_bytes`), prices it and
//! answers the invoice total. The order is not stored: it is dropped when the
//! request ends.
//!
//! Scenario seeded here: `arc-cycle` (retention). An order owns its line
//! items (`Arc<LineItem>`) and every item points back at its order so an
//! invoice line can name it. On the leaky path that back-pointer is a strong
//! `Arc<Order>`: order and items keep each other's reference counts above
//! zero, so when the handler drops the last outside handle the whole graph
//! is unreachable and never freed. Nothing owns it any more, which is what
//! makes it a leak rather than a cache. The fixed path's back-pointer is a
//! `Weak<Order>`, and the graph is freed when the handler's `Arc` drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::{Path, RawBody};

/// Bytes of a distinct key as ground truth models it: loadgen's keys
/// (`lg<pid><millis>-<n>`, about 26 bytes) at their jemalloc size class.
const MODEL_KEY_BYTES: u64 = 32;

/// An order and its line items.
pub struct Order {
    pub id: String,
    /// The items, attached after the order exists because they point back at
    /// it. A `std::sync::Mutex`: held to attach or to read the items.
    items: Mutex<Vec<Arc<LineItem>>>,
    /// The `orders_alive` gauge, decremented when this order is freed.
    alive: Arc<AtomicU64>,
}

impl Drop for Order {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a line item refers to its order.
enum ParentRef {
    /// LEAKY PATH: a strong reference. With the order's strong references to
    /// its items this forms a cycle that no reference count can break.
    Strong(Arc<Order>),
    /// FIXED PATH: a weak reference; it does not keep the order alive.
    Weak(Weak<Order>),
}

/// One line of an order.
pub struct LineItem {
    order: ParentRef,
    line: u32,
    /// The item's data from the request (sku, quantity, options...), owned.
    payload: Vec<u8>,
    price_cents: u64,
}

impl LineItem {
    /// The order this line belongs to, if it still exists.
    fn order(&self) -> Option<Arc<Order>> {
        match &self.order {
            ParentRef::Strong(order) => Some(order.clone()),
            ParentRef::Weak(order) => order.upgrade(),
        }
    }

    /// The invoice line: needs the order's id, hence the back-pointer.
    fn invoice_line(&self) -> String {
        let order = self.order().map(|o| o.id.clone()).unwrap_or_default();
        format!(
            "{order}#{}: {} bytes, {} cents",
            self.line,
            self.payload.len(),
            self.price_cents
        )
    }
}

/// Prices a line item from its data: deterministic, so answers are checkable.
fn price_cents(payload: &[u8]) -> u64 {
    100 + payload.iter().map(|b| *b as u64).sum::<u64>() % 10_000
}

/// The orders component.
pub struct Orders {
    ctx: Ctx,
    /// Orders not yet freed: rises with every request on the leaky path
    /// (their `Drop` never runs), back to 0 after each request on the fixed path.
    alive: Arc<AtomicU64>,
    placed: AtomicU64,
}

/// What `POST /orders/{key}` answers.
#[derive(Serialize)]
struct Invoice {
    order: String,
    items: usize,
    total_cents: u64,
    /// A digest of the invoice lines (each names its order through its item's back-pointer).
    lines_digest: u64,
}

impl Orders {
    pub fn new(ctx: Ctx) -> Orders {
        Orders {
            ctx,
            alive: Arc::new(AtomicU64::new(0)),
            placed: AtomicU64::new(0),
        }
    }

    /// Builds, prices and drops order `id` made of `data`'s line items.
    fn place(&self, id: &str, data: &[u8]) -> Invoice {
        let item_bytes = self.ctx.config.order_item_bytes.max(1) as usize;
        let lines: Vec<&[u8]> = data.chunks(item_bytes).collect();
        let reserve = order_graph_bytes(lines.len() as u64, item_bytes as u64);
        let cycle = self.ctx.leak_admitted(ScenarioId::ArcCycle, reserve);
        self.alive.fetch_add(1, Ordering::Relaxed);
        let order = Arc::new(Order {
            id: id.to_owned(),
            items: Mutex::new(Vec::with_capacity(lines.len())),
            alive: self.alive.clone(),
        });
        {
            let mut items = order.items.lock().expect("order lock");
            for (line, payload) in lines.into_iter().enumerate() {
                let parent = if cycle {
                    // LEAKY: the item owns its order; the order owns the item.
                    ParentRef::Strong(order.clone())
                } else {
                    // FIXED: the item only observes its order.
                    ParentRef::Weak(Arc::downgrade(&order))
                };
                items.push(Arc::new(LineItem {
                    order: parent,
                    line: line as u32 + 1,
                    payload: payload.to_vec(),
                    price_cents: price_cents(payload),
                }));
            }
        }
        let invoice = {
            let items = order.items.lock().expect("order lock");
            Invoice {
                order: id.to_owned(),
                items: items.len(),
                total_cents: items.iter().map(|i| i.price_cents).sum(),
                lines_digest: items.iter().fold(0u64, |h, item| {
                    item.invoice_line()
                        .bytes()
                        .fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
                }),
            }
        };
        self.placed.fetch_add(1, Ordering::Relaxed);
        // The handler's last handle on the order. FIXED: the strong count
        // drops to 0, the order and then its items are freed. LEAKY: every
        // item still holds a strong count, so nothing is freed, ever.
        drop(order);
        invoice
    }
}

async fn place_order(
    State(orders): State<Arc<Orders>>,
    Path(key): Path<String>,
    RawBody(data): RawBody,
) -> Result<(StatusCode, Json<Invoice>), AppError> {
    let id = validate_key(&key)?;
    let c = &orders.ctx.config;
    let max = (c.order_items * c.order_item_bytes) as usize;
    if data.is_empty() {
        return Err(AppError::BadRequest(
            "an order needs at least one line item (the body is its line-item data)".into(),
        ));
    }
    if data.len() > max {
        return Err(AppError::Rejected(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "an order carries at most {} line items of {} bytes ({max} bytes)",
                c.order_items, c.order_item_bytes
            ),
        ));
    }
    Ok((StatusCode::CREATED, Json(orders.place(id, &data))))
}

impl Component for Orders {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/orders/{key}", post(place_order))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        out.gauge(
            "orders_alive",
            self.alive.load(Ordering::Relaxed),
            "Order graphs not yet freed; placed orders whose graph is still allocated.",
        );
        out.counter(
            "orders_placed",
            self.placed.load(Ordering::Relaxed),
            "Orders placed since start.",
        );
    }
}

/// Heap bytes of one order graph with `items` line items of `item_bytes`:
/// the order's `Arc` cell, its id, its item vector, and per item its `Arc`
/// cell and payload.
fn order_graph_bytes(items: u64, item_bytes: u64) -> u64 {
    let arc = |t: usize| size_class(16 + t as u64);
    arc(std::mem::size_of::<Order>())
        + size_class(MODEL_KEY_BYTES)
        + size_class(items * std::mem::size_of::<Arc<LineItem>>() as u64)
        + items * (arc(std::mem::size_of::<LineItem>()) + size_class(item_bytes))
}

/// The `arc-cycle` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // Per order on the leaky path: the whole unreachable graph at default
    // parameters (8 items of 256 bytes: the body loadgen sends).
    let bytes = order_graph_bytes(c.order_items, c.order_item_bytes);
    Scenario::new(
        ScenarioId::ArcCycle,
        LeakClass::Retention,
        "orders",
        vec![Step::with_body(
            "POST",
            "/orders/{key}",
            c.order_items * c.order_item_bytes,
        )],
    )
    .retains(bytes)
    .gauge("orders_alive")
    .paths(
        "each line item holds an Arc back to its order, which holds Arcs to its items: the dropped order graph is a reference cycle, never freed",
        "the line item's back-pointer is a Weak<Order>, so the graph is freed when the handler drops the order",
    )
}
