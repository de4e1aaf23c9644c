//! Running the parts: every part whose `after` parts have answered starts at once, so parts
//! without `after` run concurrently and a chain runs as soon as each link is done. A part
//! whose `after` part failed is not sent. Each part is bounded by its own deadline, so the
//! whole fan-out ends by the overall one.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use super::part::{self, Failure, PartAnswer, PartRequest};
use super::plan::{Aggregate, Part};
use crate::upstream::client::UpstreamClient;

/// How one part ended, and how long it took from its start.
pub struct Done {
    pub result: Result<PartAnswer, Failure>,
    pub elapsed: Duration,
}

/// Run every part; `prepare` builds a part's request once its `after` parts are done (their
/// results are in the slice, by part index), or says why it cannot be sent.
pub async fn run(
    client: &UpstreamClient,
    plan: &Aggregate,
    mut prepare: impl FnMut(&Part, &[Option<Done>]) -> Result<PartRequest, Failure>,
) -> Vec<Done> {
    let n = plan.parts.len();
    let mut done: Vec<Option<Done>> = (0..n).map(|_| None).collect();
    let mut started = vec![false; n];
    let mut running = FuturesUnordered::new();
    loop {
        // Start what is ready; a part settled without a request may make others ready.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for (i, part) in plan.parts.iter().enumerate() {
                if started[i] || !part.after.iter().all(|&d| done[d].is_some()) {
                    continue;
                }
                started[i] = true;
                progressed = true;
                let failed = part
                    .after
                    .iter()
                    .find(|&&d| done[d].as_ref().is_some_and(|x| x.result.is_err()));
                let request = match failed {
                    Some(&d) => Err(Failure::Dependency(plan.parts[d].name().to_string())),
                    None => prepare(part, &done),
                };
                match request {
                    Ok(request) => running.push(async move {
                        let begun = Instant::now();
                        let result = part::call(client, request, &part.cfg).await;
                        (
                            i,
                            Done {
                                result,
                                elapsed: begun.elapsed(),
                            },
                        )
                    }),
                    Err(failure) => {
                        done[i] = Some(Done {
                            result: Err(failure),
                            elapsed: Duration::ZERO,
                        })
                    }
                }
            }
        }
        match running.next().await {
            Some((i, finished)) => {
                let required_failed = finished.result.is_err() && plan.parts[i].cfg.required;
                done[i] = Some(finished);
                // The answer is a 502 or 504 now, whatever the others say: stop them (their
                // connections close) rather than spend upstream capacity on them.
                if required_failed {
                    break;
                }
            }
            None => break,
        }
    }
    drop(running);
    // Parts stopped or never started (after a required failure) are `cancelled`; `check`
    // refuses cycles, so nothing else is left unsettled.
    done.into_iter()
        .map(|d| {
            d.unwrap_or(Done {
                result: Err(Failure::Cancelled),
                elapsed: Duration::ZERO,
            })
        })
        .collect()
}
