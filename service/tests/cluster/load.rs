//! Steady load for the cluster tests: workers add one unit of a fresh product to carts of
//! users spread over every master, remembering each add that was answered 200, so a test
//! can tell how long requests failed and whether an acknowledged line was lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cart_test_support::app::TestApp;

/// Users the load spreads over: enough that every master serves some of them.
pub const USERS: usize = 24;
/// Concurrent workers, each with its own keep-alive connection.
const WORKERS: usize = 8;

/// One answered request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub at: Instant,
    pub status: u16,
    pub user: String,
    pub product: String,
}

/// Load running against one service until [`Load::stop`].
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

/// What the load saw.
#[derive(Debug)]
pub struct Outcome {
    pub answers: Vec<Answer>,
}

/// The user ids of this load, `prefix-0` to `prefix-(USERS-1)`.
pub fn users(prefix: &str) -> Vec<String> {
    (0..USERS).map(|i| format!("{prefix}-{i}")).collect()
}

impl Load {
    /// Starts the workers: with an `Idempotency-Key` on each add when `keyed`.
    pub fn start(app: &TestApp, prefix: &str, keyed: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let users = Arc::new(users(prefix));
        let workers = (0..WORKERS)
            .map(|worker| {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("an HTTP client");
                let base = app.url("/v1/cart/");
                let (stop, users) = (Arc::clone(&stop), Arc::clone(&users));
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let user = users[(worker + n * WORKERS) % users.len()].clone();
                        let product = format!("w{worker}-{n}");
                        let mut request = client
                            .post(format!("{base}{user}"))
                            .json(&serde_json::json!({"product_id": product, "quantity": 1}));
                        if keyed {
                            request = request.header("Idempotency-Key", format!("k-{product}"));
                        }
                        let status = match request.send().await {
                            Ok(response) => response.status().as_u16(),
                            Err(_) => 0,
                        };
                        answers.push(Answer {
                            at: Instant::now(),
                            status,
                            user,
                            product,
                        });
                    }
                    answers
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the workers and gathers their answers.
    pub async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut answers = Vec::new();
        for worker in self.workers {
            answers.extend(worker.await.expect("a load worker ends cleanly"));
        }
        answers.sort_by_key(|answer| answer.at);
        Outcome { answers }
    }
}

impl Outcome {
    /// Answers that were not 200.
    pub fn failures(&self) -> Vec<&Answer> {
        self.answers.iter().filter(|a| a.status != 200).collect()
    }

    /// From the first failed answer to the last: how long requests failed.
    pub fn failing_for(&self) -> Duration {
        let failures = self.failures();
        match (failures.first(), failures.last()) {
            (Some(first), Some(last)) => last.at - first.at,
            _ => Duration::ZERO,
        }
    }

    /// Lines that were answered 200 but are not in the carts `app` now returns.
    pub async fn lost(&self, app: &TestApp) -> Vec<(String, String)> {
        let mut lost = Vec::new();
        let mut carts = std::collections::HashMap::new();
        for answer in self.answers.iter().filter(|a| a.status == 200) {
            if !carts.contains_key(&answer.user) {
                let cart = app.cart(&answer.user).await;
                let products: std::collections::HashSet<String> = cart["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|item| item["product_id"].as_str().expect("product_id").to_owned())
                    .collect();
                carts.insert(answer.user.clone(), products);
            }
            if !carts[&answer.user].contains(&answer.product) {
                lost.push((answer.user.clone(), answer.product.clone()));
            }
        }
        lost
    }

    /// A line for `--nocapture`.
    pub fn summary(&self) -> String {
        let ok = self.answers.iter().filter(|a| a.status == 200).count();
        let mut statuses: Vec<u16> = self.failures().iter().map(|a| a.status).collect();
        statuses.sort_unstable();
        statuses.dedup();
        format!(
            "{} requests, {ok} answered 200, {} not ({statuses:?}), failing for {:.2} s",
            self.answers.len(),
            self.failures().len(),
            self.failing_for().as_secs_f64()
        )
    }
}
