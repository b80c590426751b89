//! `servers_from = "patroni"`: a task per database polls Patroni's
//! `GET /cluster` and keeps the database's server list in sync.
//!
//! A change of membership goes through the path a reload takes when a
//! database's servers change: the database is rebuilt from the new list
//! (its pools drain; sessions route again on the new one). A change of
//! roles alone (a switchover, a failover) rebuilds nothing: it asks the
//! lag monitor to probe now, and the monitor, which stays the authority on
//! who is primary, on lag and on split brain, confirms it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use causeway_config::ServerConfig;
use causeway_pool::Pool;
use parking_lot::RwLock;

use super::patroni_cluster::{self as cluster, Member};
use super::{patroni_http as http, Database};

/// How often Patroni is asked (its own loop_wait is 10 s by default; a
/// switchover shows in /cluster within a second of Patroni's decision).
const POLL: Duration = Duration::from_secs(1);
/// Deadline of one request (each `patroni_url` in turn).
const DEADLINE: Duration = Duration::from_secs(1);

pub type Map = RwLock<HashMap<String, Arc<Database>>>;

/// One database's Patroni view, shared by its watcher and [`super::Databases`].
pub struct Source {
    pub urls: Vec<String>,
    /// The servers Patroni last reported (None until it first answers).
    pub servers: RwLock<Option<Vec<ServerConfig>>>,
    /// The routing view of the database last rebuilt, until its successor
    /// takes it over (see [`super::carry_over`]).
    pub carried: parking_lot::Mutex<Option<super::Carried>>,
}

impl Source {
    /// Starts watching `urls` for database `name`. The watcher ends when
    /// the returned source (or the database map) is dropped.
    pub fn start(name: &str, urls: Vec<String>, map: Weak<Map>) -> Arc<Source> {
        let src = Arc::new(Source {
            urls,
            servers: RwLock::new(None),
            carried: parking_lot::Mutex::new(None),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tracing::info!(database = %name, urls = ?src.urls, "following Patroni");
            tokio::spawn(watch(name.to_string(), Arc::downgrade(&src), map));
        }
        src
    }
}

async fn watch(name: String, src: Weak<Source>, map: Weak<Map>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(urls) = src.upgrade().map(|s| s.urls.clone()) else {
            return;
        };
        let got = fetch(&urls).await;
        let (Some(src), Some(map)) = (src.upgrade(), map.upgrade()) else {
            return;
        };
        match got {
            Ok(members) => {
                if failing {
                    tracing::info!(database = %name, "Patroni answers again");
                }
                failing = false;
                apply(&name, &src, &map, &members);
            }
            Err(e) if !failing => {
                tracing::warn!(database = %name, error = %e, "no answer from Patroni; keeping the last server list");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// The members from the first `patroni_url` that answers.
async fn fetch(urls: &[String]) -> Result<Vec<Member>, String> {
    let mut last = String::from("no patroni_url");
    for url in urls {
        let Some((host, port)) = causeway_config::patroni_authority(url) else {
            continue;
        };
        match http::get(&host, port, "/cluster", DEADLINE).await {
            Ok(body) => match cluster::parse(&body) {
                // An empty member list is a DCS in trouble, not a cluster
                // without servers: keep what was known.
                Ok(m) if m.is_empty() => last = format!("{url}: no members with an address"),
                Ok(m) => return Ok(m),
                Err(e) => last = format!("{url}: {e}"),
            },
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(last)
}

/// Brings the database in line with Patroni's members.
fn apply(name: &str, src: &Source, map: &Map, members: &[Member]) {
    let new = cluster::servers(members);
    let live = map.read().get(name).map(|db| db.servers.clone());
    let prev = src.servers.read().clone();
    let rebuild = live
        .as_ref()
        .is_some_and(|s| !cluster::same_members(s, &new));
    if prev.as_ref() == Some(&new) && !rebuild {
        return;
    }
    let leader = members
        .iter()
        .find(|m| m.is_leader())
        .map(|m| m.name.as_str());
    let view: Vec<String> = members
        .iter()
        .map(|m| {
            format!(
                "{} {}:{} {} {} tl={} lag={}",
                m.name,
                m.host.as_deref().unwrap_or(""),
                m.port.unwrap_or(0),
                m.role,
                m.state,
                m.timeline.map_or("?".into(), |t| t.to_string()),
                m.lag.as_ref().map_or("-".into(), |l| l.to_string()),
            )
        })
        .collect();
    let mut map = map.write();
    *src.servers.write() = Some(new);
    if rebuild {
        tracing::info!(database = %name, ?leader, members = ?view, "Patroni membership changed; rebuilding the server list");
        if let Some(db) = map.remove(name) {
            *src.carried.lock() = Some(super::Carried::of(&db));
            db.pools().iter().for_each(Pool::close);
        }
    } else if prev.is_none() {
        tracing::info!(database = %name, ?leader, members = ?view, "Patroni's members");
    } else {
        tracing::info!(database = %name, ?leader, members = ?view, "Patroni roles changed; probing to confirm");
        if let Some(m) = map.get(name).and_then(|db| db.monitor.as_ref()) {
            m.request_probe();
        }
    }
}
