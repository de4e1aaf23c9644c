//! Routes with `cache:`: answer from the store when it may, otherwise fetch through the
//! gateway's own exchange (transformed answers are stored transformed) and store what RFC 9111
//! and the route allow. Admission (authentication, authorization, rate limits) ran before this
//! on every request, hits included.
//!
//! One request fills a key at a time: the others wait for it (`lock_timeout`) and are then
//! answered from the store. An expired entry is revalidated with its validators (a 304 keeps the
//! body), served stale at once while a background request refreshes it
//! (`stale_while_revalidate`; that request is nobody's, so no rate limit counts it), or served
//! stale when the upstream fails (`stale_if_error`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, DATE, ETAG, EXPIRES, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
    TRANSFER_ENCODING,
};
use http::{Method, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::conditional_filter::{not_modified_filter, to_304};
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::exchange::{self, Framing, Prepared, Served};
use super::problem::Problem;
use super::{edges, peer};
use crate::cache::key::{self, Audience, RequestKey};
use crate::cache::policy;
use crate::cache::store::{Fill, FillGuard, Item, Label, Object, Store};
use crate::cache::{CacheStatus, RouteCache};
use crate::observe::metrics;
use crate::route::Route;
use crate::runtime::Snapshot;
use crate::upstream::client::{Body, Call, Reply, UpstreamClient};
use crate::upstream::pool::Pool;

/// Serve an admitted request on a caching route.
///
/// A hit is answered here; everything that goes upstream (a bypass, a fill) runs boxed in a
/// future of its own. An upstream exchange's state is about 15 KiB, and an `async fn`'s future
/// holds its largest branch: unboxed, every hit would carry (and, boxed by the caller, copy)
/// the exchange's state without using it.
pub async fn serve(
    client: &Arc<UpstreamClient>,
    store: &Arc<Store>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Served> {
    let snapshot = Arc::clone(&ctx.snapshot);
    let Some(route) = ctx.admission.route.and_then(|id| snapshot.routes.routes.get(id)) else {
        return Ok(Served::no_route());
    };
    let (Some(cache), Some(pool), Some(uri)) = (
        route.cache.as_ref(),
        ctx.pool().cloned(),
        ctx.admission.upstream_uri.clone(),
    ) else {
        return Box::pin(exchange::serve(client, session, ctx)).await;
    };
    // A body on a GET is not part of any key: such a request is not the store's to answer.
    let bodiless = session.is_body_empty();
    let req = session.req_header();
    let trusted = super::forwarding::is_trusted(ctx.client.ip, &ctx.snapshot.settings.trusted_proxies);
    let site = key::site(req, ctx.client.tls, trusted, &route.pass_headers);
    let key = RequestKey::new(cache, &pool.name, ctx.version_name(), &site, &uri, req);
    let who = Who::of(cache, ctx, req);
    // A method override that reaches the upstream makes a GET another method there: never
    // answered from the store, never stored, and (when it succeeds as an unsafe one) an
    // invalidation. The client's override headers are looked at even where the route strips
    // them (the cost is one uncached request); the query as it goes upstream.
    let overridden = crate::upstream::retry::overrides_method(&req.headers, uri.query());
    let entry = Entry {
        route,
        cache,
        pool,
        key,
        who,
        uri,
    };
    // Headers the client's `Connection` names are removed from the request that goes upstream,
    // so its answer would be stored under a variant the client never sent: not the store's.
    let named = super::forwarding::names_headers(&req.headers);
    if policy::request_bypass(&cache.config, req).is_some() || !bodiless || overridden || named {
        return Box::pin(bypass(client, store, session, ctx, &entry, overridden)).await;
    }
    let now = SystemTime::now();
    let found = lookup(store, &entry.key, &entry.who, req);
    match &found {
        Some(o) if o.is_fresh(now) => return answer(session, ctx, route, o, CacheStatus::Hit).await,
        Some(o) if o.staleness(now) < o.stale_while_revalidate => {
            if let Fill::Lead(guard) = store.fill(&entry.key.primary(&entry.who.lock())) {
                if let Some(fetch) = Fetch::new(store, &entry, req, ctx)? {
                    fetch.spawn(Arc::clone(client), Arc::clone(store), Arc::clone(o), guard);
                }
            }
            return answer(session, ctx, route, o, CacheStatus::Updating).await;
        }
        _ => {}
    }
    Box::pin(fill(client, store, session, ctx, &entry, found)).await
}

/// What a request on a caching route is stored under and fetched from.
struct Entry<'a> {
    route: &'a Route,
    cache: &'a RouteCache,
    pool: Arc<Pool>,
    key: RequestKey,
    who: Who,
    /// The path and query that go upstream.
    uri: http::Uri,
}

impl Entry<'_> {
    /// What purges and invalidations know this request's entries by (only a request that
    /// stores or invalidates builds it).
    fn label(&self, ctx: &RequestCtx) -> Arc<Label> {
        key::label(self.cache, &ctx.client.host, &ctx.admission.path, &self.uri)
    }
}

/// A request the store does not answer (a method or header it does not answer, a request with
/// a body, or one that overrides its method): sent upstream, and when it is a successful unsafe
/// one, the stored answers for its target are invalidated.
async fn bypass(
    client: &UpstreamClient,
    store: &Store,
    session: &mut Session,
    ctx: &mut RequestCtx,
    entry: &Entry<'_>,
    overridden: bool,
) -> pingora::Result<Served> {
    let unsafe_method = !session.req_header().method.is_safe() || overridden;
    mark(ctx, entry.route, CacheStatus::Bypass);
    let reply = match exchange::send(client, session, ctx, entry.route).await? {
        Ok(reply) => reply,
        Err(problem) => return Ok(Served::Refused(problem)),
    };
    // RFC 9111 §4.4: a successful unsafe request makes the stored answers for its target
    // stale. They go before the client hears of the success, so no request it sends next
    // (on any connection, served by any thread) can still be answered from them.
    let status = reply.head.status;
    if unsafe_method && (status.is_success() || status.is_redirection()) {
        let keys = entry
            .who
            .lookups()
            .iter()
            .map(|audience| entry.key.primary(audience))
            .collect::<Vec<_>>();
        let label = entry.label(ctx);
        store.invalidate(&label.printable, keys);
    }
    exchange::respond(client, session, ctx, entry.route, reply).await
}

/// A miss (or a stale answer past `stale_while_revalidate`): fill the entry, or wait for the
/// request filling it and answer from what it stored.
async fn fill(
    client: &Arc<UpstreamClient>,
    store: &Arc<Store>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    entry: &Entry<'_>,
    found: Option<Arc<Object>>,
) -> pingora::Result<Served> {
    let (route, key, who) = (entry.route, &entry.key, &entry.who);
    let filling = match store.fill(&key.primary(&who.lock())) {
        Fill::Lead(guard) => Some(guard),
        Fill::Wait(mut filled) => {
            let _ = tokio::time::timeout(entry.cache.config.lock_timeout, filled.changed()).await;
            let now = SystemTime::now();
            if let Some(o) = lookup(store, key, who, session.req_header()).filter(|o| o.is_fresh(now)) {
                return answer(session, ctx, route, &o, CacheStatus::Hit).await;
            }
            None
        }
        Fill::Unlocked => None,
    };
    let Some(fetch) = Fetch::new(store, entry, session.req_header(), ctx)? else {
        return Ok(Served::no_route());
    };
    let outcome = fetch
        .run(
            client,
            store,
            found.as_ref(),
            &mut ctx.upstream.tried,
            &mut ctx.upstream.current,
            ctx.trace.as_ref(),
        )
        .await?;
    // Stored (or not storable): the waiters need not wait for this client to be answered.
    drop(filling);
    ctx.upstream.retries = ctx.upstream.tried.len().saturating_sub(1);
    match outcome {
        Fetched::Stored(object, status) => answer(session, ctx, route, &object, status).await,
        Fetched::Stale(object) => answer(session, ctx, route, &object, CacheStatus::Stale).await,
        Fetched::Unstored(prepared) => {
            let prepared = *prepared;
            mark(ctx, route, first_status(found.is_some()));
            match prepared {
                Prepared::Whole { head, body, reply } => {
                    client.release(reply).await;
                    let method = session.req_header().method.clone();
                    write(session, ctx, head, body, &method, None).await?;
                    Ok(Served::Answered)
                }
                // Boxed, as in `exchange::respond`: only a miss that streams holds its state.
                Prepared::Stream { head, reply, already } => {
                    Box::pin(exchange::pass_through(client, session, ctx, reply, head, already)).await
                }
                Prepared::Refused(problem) => Ok(Served::Refused(problem)),
            }
        }
    }
}

/// The stored answer for this request, if any: per audience in order, through the variant
/// the origin's `Vary` selects.
fn lookup(store: &Store, key: &RequestKey, who: &Who, req: &RequestHeader) -> Option<Arc<Object>> {
    who.lookups().iter().find_map(|audience| {
        let primary = key.primary_text(audience);
        match store.get(&primary)? {
            Item::Object(o) => Some(o),
            Item::Variants {
                names, generation, ..
            } => match store.get(&key::variant(&primary, generation, &names, req))? {
                Item::Object(o) => Some(o),
                Item::Variants { .. } => None,
            },
        }
    })
}

/// Who an answer may go to, decided by the route and the request's credentials.
#[derive(Clone)]
struct Who {
    /// The consumer (`authenticator/consumer`) on an authenticated route.
    consumer: Option<String>,
    /// `consumer: shared`: a `public` answer is shared by every consumer.
    shared: bool,
    /// Credentials were presented: the route's, or an `Authorization` or a `Cookie` for the
    /// upstream (which may answer per user without saying `private`).
    authenticated: bool,
}

impl Who {
    fn of(cache: &RouteCache, ctx: &RequestCtx, req: &RequestHeader) -> Who {
        let consumer = ctx.admission.identity.as_ref().map(|id| {
            let by = ctx
                .admission
                .authenticator
                .and_then(|i| ctx.snapshot.authenticators.get(i))
                .map_or("", |a| a.name.as_str());
            key::consumer(by, &id.consumer, &ctx.admission.identity_headers)
        });
        Who {
            shared: cache.config.consumer == crate::config::cache_schema::ConsumerKey::Shared,
            authenticated: consumer.is_some()
                || req.headers.contains_key(http::header::AUTHORIZATION)
                || req.headers.contains_key(http::header::COOKIE),
            consumer,
        }
    }

    /// Where to look, in order.
    fn lookups(&self) -> Vec<Audience> {
        match &self.consumer {
            None => vec![Audience::Everyone],
            Some(c) if self.shared => vec![Audience::Everyone, Audience::Consumer(c.clone())],
            Some(c) => vec![Audience::Consumer(c.clone())],
        }
    }

    /// The key one filling request at a time holds.
    fn lock(&self) -> Audience {
        match &self.consumer {
            Some(c) if !self.shared => Audience::Consumer(c.clone()),
            _ => Audience::Everyone,
        }
    }

    /// Where an answer is stored.
    fn store(&self, public: bool) -> Audience {
        match &self.consumer {
            Some(c) if !(self.shared && public) => Audience::Consumer(c.clone()),
            _ => Audience::Everyone,
        }
    }
}

fn unstored(prepared: Prepared) -> Fetched {
    Fetched::Unstored(Box::new(prepared))
}

/// What a fetch for the store ended with.
enum Fetched {
    /// Stored: answer from the object.
    Stored(Arc<Object>, CacheStatus),
    /// The upstream failed and the expired entry may stand in for it.
    Stale(Arc<Object>),
    /// Not stored (not storable, too large, or refused): answered as the exchange prepared it.
    Unstored(Box<Prepared>),
}

/// One upstream request for the store, from the client's request. It owns what it needs, so
/// a background refresh can take it along.
struct Fetch {
    snapshot: Arc<Snapshot>,
    route: usize,
    pool: Arc<Pool>,
    key: RequestKey,
    /// What purges and invalidations know what it stores by.
    label: Arc<Label>,
    who: Who,
    /// The client's request head (its `Vary` values select the variant).
    request: RequestHeader,
    /// What goes upstream: the whole representation (GET for HEAD), no client preconditions
    /// or ranges.
    upstream: RequestHeader,
    hash_key: Vec<u8>,
    deadline: Option<Instant>,
    request_id: super::request_id::RequestId,
    max_object: u64,
    /// The target's invalidation generation before the upstream was asked: an answer is
    /// stored only if no successful unsafe request or purge came in between.
    since: u64,
}

impl Fetch {
    fn new(
        store: &Store,
        entry: &Entry<'_>,
        req: &RequestHeader,
        ctx: &RequestCtx,
    ) -> pingora::Result<Option<Fetch>> {
        let (Some(id), Some(route)) = (ctx.admission.route, ctx.route()) else {
            return Ok(None);
        };
        let mut upstream = exchange::upstream_head(req, ctx, route, Framing::None)?;
        pingora_cache::filters::upstream::request_filter(&mut upstream, None);
        let label = entry.label(ctx);
        Ok(Some(Fetch {
            snapshot: Arc::clone(&ctx.snapshot),
            route: id,
            pool: Arc::clone(&entry.pool),
            key: entry.key.clone(),
            since: store.generation(&label.printable),
            label,
            who: entry.who.clone(),
            request: req.clone(),
            hash_key: peer::hash_key(&entry.pool, req, ctx.client.ip),
            upstream,
            deadline: ctx.admission.deadline,
            request_id: ctx.request_id.clone(),
            max_object: store.max_object,
        }))
    }

    fn route(&self) -> Option<&Route> {
        self.snapshot.routes.routes.get(self.route)
    }

    fn cache(&self) -> Option<&RouteCache> {
        self.route()?.cache.as_ref()
    }

    async fn run(
        &self,
        client: &UpstreamClient,
        store: &Store,
        stale: Option<&Arc<Object>>,
        tried: &mut Vec<std::net::SocketAddr>,
        current: &mut Option<crate::upstream::attempt::Attempt>,
        trace: Option<&crate::observe::trace::TraceContext>,
    ) -> pingora::Result<Fetched> {
        let Some(route) = self.route() else {
            let problem = Problem::no_route();
            return Ok(unstored(Prepared::Refused(problem)));
        };
        let now = SystemTime::now();
        let mut head = self.upstream.clone();
        let revalidating = stale.filter(|o| o.has_validator());
        if let Some(o) = revalidating {
            for (validator, condition) in [(ETAG, IF_NONE_MATCH), (LAST_MODIFIED, IF_MODIFIED_SINCE)] {
                if let Some(v) = o.head.headers.get(&validator) {
                    head.insert_header(condition, v.clone())?;
                }
            }
        }
        let may_stand_in = |o: &&Arc<Object>| o.staleness(now) < o.stale_if_error;
        let call = Call {
            pool: &self.pool,
            key: &self.hash_key,
            head,
            body: Body::Full(Bytes::new()),
            deadline: self.deadline,
            repeatable: true,
            trace,
        };
        let reply = match client.exchange(call, tried, current).await {
            Ok(reply) => reply,
            Err(e) => {
                return Ok(match stale.filter(may_stand_in) {
                    Some(o) => Fetched::Stale(Arc::clone(o)),
                    None => unstored(Prepared::Refused(exchange::call_problem(&e))),
                })
            }
        };
        let status = reply.head.status;
        if let (Some(o), StatusCode::NOT_MODIFIED) = (revalidating, status) {
            let refreshed = self.revalidated(o, &reply.head);
            client.release(reply).await;
            return Ok(match refreshed {
                Some(object) => {
                    self.put(store, &object);
                    Fetched::Stored(object, CacheStatus::Revalidated)
                }
                // No longer storable: this once, the confirmed body still answers.
                None => Fetched::Stored(Arc::clone(o), CacheStatus::Revalidated),
            });
        }
        if status.is_server_error() {
            if let Some(o) = stale.filter(may_stand_in) {
                return Ok(Fetched::Stale(Arc::clone(o)));
            }
        }
        let first = first_status(stale.is_some());
        let prepared = exchange::prepare(
            route,
            &Method::GET,
            reply,
            self.deadline,
            self.request_id.as_str(),
        )
        .await?;
        Ok(match prepared {
            refused @ Prepared::Refused(_) => unstored(refused),
            Prepared::Whole { head, body, reply } => match self.object(&head, body.clone(), now) {
                Some(object) => {
                    client.release(reply).await;
                    self.put(store, &object);
                    Fetched::Stored(object, first)
                }
                None => unstored(Prepared::Whole { head, body, reply }),
            },
            Prepared::Stream {
                head,
                mut reply,
                mut already,
            } => {
                let storable = self.object(&head, Bytes::new(), now).is_some();
                let declared_too_large = crate::transform::body::declared_too_large(
                    &head,
                    usize::try_from(self.max_object).unwrap_or(usize::MAX),
                );
                if !storable || declared_too_large {
                    return Ok(unstored(Prepared::Stream { head, reply, already }));
                }
                match read_whole(&mut reply, &mut already, self.max_object, self.deadline).await {
                    Some(body) => match self.object(&head, body.clone(), now) {
                        Some(object) => {
                            client.release(reply).await;
                            self.put(store, &object);
                            Fetched::Stored(object, first)
                        }
                        None => unstored(Prepared::Whole { head, body, reply }),
                    },
                    // Over `max_object` (or cut short): streamed, the part read first.
                    None => unstored(Prepared::Stream { head, reply, already }),
                }
            }
        })
    }

    /// The object to store for `head` and `body`, if the route and RFC 9111 allow it.
    fn object(&self, head: &ResponseHeader, body: Bytes, now: SystemTime) -> Option<Arc<Object>> {
        let cache = self.cache()?;
        if policy::request_no_store(&self.request) || body.len() as u64 > self.max_object {
            return None;
        }
        let life = policy::lifetime(&cache.config, head, self.who.authenticated, now).ok()?;
        policy::variance(&cache.config, head).ok()?;
        let mut head = head.clone();
        // Stored without Pingora's case map: every hit clones the head, and decoration drops
        // the map anyway (the names go out in lower case).
        edges::without_case_response(&mut head).ok()?;
        head.remove_header(&TRANSFER_ENCODING);
        head.remove_header(&http::header::AGE);
        // RFC 9110 §8.6: a 204 carries no Content-Length.
        match head.status {
            StatusCode::NO_CONTENT => {
                head.remove_header(&CONTENT_LENGTH);
            }
            _ => head.insert_header(CONTENT_LENGTH, body.len().to_string()).ok()?,
        }
        let validator = head.headers.contains_key(ETAG) || head.headers.contains_key(LAST_MODIFIED);
        let revalidation = if validator {
            cache.config.keep
        } else {
            Duration::ZERO
        };
        let keep = life.fresh
            + life
                .stale_while_revalidate
                .max(life.stale_if_error)
                .max(revalidation);
        Some(Arc::new(Object {
            head,
            body,
            received: now,
            initial_age: life.initial_age,
            fresh_until: now + life.fresh,
            stale_while_revalidate: life.stale_while_revalidate,
            stale_if_error: life.stale_if_error,
            keep_until: Instant::now() + keep,
            label: Arc::clone(&self.label),
            public: life.public,
        }))
    }

    /// The stored answer updated by a 304 (RFC 9111 §4.3.4): its freshness metadata only. The
    /// stored head describes the body the gateway holds (transformed, re-framed); a 304's
    /// `Content-Type`, `Content-Encoding` or strong `ETag` describe the origin's. The 304's
    /// `Age` (a cache between here and the origin held the answer that long) counts in the
    /// refreshed entry's age (§4.2.3); the stored head itself never keeps an `Age`.
    fn revalidated(&self, old: &Object, not_modified: &ResponseHeader) -> Option<Arc<Object>> {
        let transformed = self.route().is_some_and(|r| r.transform.response.is_some());
        let mut head = old.head.clone();
        for name in [
            CACHE_CONTROL,
            EXPIRES,
            DATE,
            LAST_MODIFIED,
            ETAG,
            http::header::AGE,
        ] {
            if name == ETAG && transformed {
                continue;
            }
            let mut values = not_modified.headers.get_all(&name).iter().peekable();
            if values.peek().is_none() {
                continue;
            }
            let values: Vec<http::HeaderValue> = values.cloned().collect();
            head.remove_header(&name);
            for value in values {
                head.append_header(name.clone(), value).ok()?;
            }
        }
        self.object(&head, old.body.clone(), SystemTime::now())
    }

    /// Store `object` under the key its audience and variance give.
    fn put(&self, store: &Store, object: &Arc<Object>) {
        let Some(cache) = self.cache() else {
            return;
        };
        let Ok(names) = policy::variance(&cache.config, &object.head) else {
            return;
        };
        let primary = self.key.primary(&self.who.store(object.public));
        let target = &self.label.printable;
        if names.is_empty() {
            store.insert_since(
                target,
                self.since,
                vec![(primary, Item::Object(Arc::clone(object)))],
            );
            return;
        }
        // The variants are keyed by the generation this fill began in: a record written
        // after an invalidation starts afresh (the variants stored before it stay
        // unreachable); one written in the same generation keeps its siblings reachable.
        let generation = self.since;
        let variant = key::variant(&primary, generation, &names, &self.request);
        let record = Item::Variants {
            names: names.into(),
            keep_until: object.keep_until,
            label: Arc::clone(&object.label),
            generation,
        };
        store.insert_since(
            target,
            self.since,
            vec![(primary, record), (variant, Item::Object(Arc::clone(object)))],
        );
    }

    /// Refresh in the background (the entry was served stale): nobody waits for the answer;
    /// the fill lock is held until it is stored.
    fn spawn(mut self, client: Arc<UpstreamClient>, store: Arc<Store>, stale: Arc<Object>, guard: FillGuard) {
        // Its own deadline: the client's request is already answered.
        self.deadline = self.route().and_then(|r| r.timeout).map(|t| Instant::now() + t);
        tokio::spawn(async move {
            let _filling = guard;
            let (mut tried, mut current) = (Vec::new(), None);
            match self
                .run(&client, &store, Some(&stale), &mut tried, &mut current, None)
                .await
            {
                Ok(Fetched::Unstored(prepared)) => {
                    if let Prepared::Refused(problem) = *prepared {
                        log::warn!(
                            "cache refresh of {} failed: {}, request id {}",
                            self.label.printable,
                            problem.detail,
                            self.request_id
                        );
                    }
                }
                Err(e) => log::warn!(
                    "cache refresh of {} failed: {e}, request id {}",
                    self.label.printable,
                    self.request_id
                ),
                Ok(_) => {}
            }
            if let Some(attempt) = current.as_mut() {
                attempt.finish();
            }
        });
    }
}

/// MISS, or EXPIRED when an expired entry was there.
fn first_status(had_entry: bool) -> CacheStatus {
    if had_entry {
        CacheStatus::Expired
    } else {
        CacheStatus::Miss
    }
}

/// Read the rest of the body into `already`; the whole body if it stays within `max`, `None`
/// (what was read left in `already`) once it does not or the read fails.
async fn read_whole(
    reply: &mut Reply,
    already: &mut Vec<Bytes>,
    max: u64,
    deadline: Option<Instant>,
) -> Option<Bytes> {
    let mut held: u64 = already.iter().map(|b| b.len() as u64).sum();
    loop {
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), reply.body_chunk()).await.ok()?,
            None => reply.body_chunk().await,
        };
        match next.ok()? {
            Some(piece) => {
                held += piece.len() as u64;
                already.push(piece);
                if held > max {
                    return None;
                }
            }
            None => break,
        }
    }
    let mut body = BytesMut::with_capacity(held as usize);
    for piece in already.drain(..) {
        body.extend_from_slice(&piece);
    }
    Some(body.freeze())
}

/// Answer from a stored object: `Age`, the client's own preconditions (304), HEAD.
async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    object: &Object,
    status: CacheStatus,
) -> pingora::Result<Served> {
    mark(ctx, route, status);
    let age = http::HeaderValue::from(object.age(SystemTime::now()).as_secs());
    let method = session.req_header().method.clone();
    let head = object.head.clone();
    write(
        session,
        ctx,
        head,
        object.body.clone(),
        &method,
        Some((http::header::AGE, age)),
    )
    .await?;
    Ok(Served::Answered)
}

/// Write a whole answer: 304 when the client's validators match, no body for HEAD. `extra`
/// (a stored answer's `Age`) is added with the gateway's own headers, in the same edit of the
/// head, as one map insert: through Pingora's `insert_header`, with the number formatted into a
/// `String` first, it cost about 1k instructions more per hit (scenario CACHE of
/// `benches/load/run.sh`, callgrind).
async fn write(
    session: &mut Session,
    ctx: &RequestCtx,
    mut head: ResponseHeader,
    body: Bytes,
    method: &Method,
    extra: Option<(http::HeaderName, http::HeaderValue)>,
) -> pingora::Result<()> {
    let not_modified = not_modified_filter(session.req_header(), &head);
    if not_modified {
        to_304(&mut head);
    }
    edges::decorate_with(ctx, &mut head, extra)?;
    let bodiless = not_modified || *method == Method::HEAD || matches!(head.status.as_u16(), 204 | 304);
    session.write_response_header(Box::new(head), bodiless).await?;
    if !bodiless {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Record what the store did: the header, the log field, the metric.
fn mark(ctx: &mut RequestCtx, route: &Route, status: CacheStatus) {
    ctx.reply.cache_status = Some(status);
    metrics::get()
        .cache_requests
        .with_label_values(&[route.name.as_str(), status.as_str()])
        .inc();
}
