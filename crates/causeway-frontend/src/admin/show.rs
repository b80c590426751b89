//! The SHOW command table: each target and the table it answers with.

use super::show_info;
use super::show_stats::{self, Kind};
use super::table::{self, Table};
use super::{show_databases, show_peers, show_pools, show_topology};
use crate::app::App;

type Show = fn(&App) -> Table;

/// SHOW targets (HELP is answered as a notice, not a table).
const SHOWS: &[(&str, Show)] = &[
    ("POOLS", show_pools::table),
    ("STATS", |app| show_stats::table(app, Kind::Stats)),
    ("STATS_TOTALS", |app| show_stats::table(app, Kind::Totals)),
    ("STATS_AVERAGES", |app| {
        show_stats::table(app, Kind::Averages)
    }),
    ("REPLICAS", show_topology::topology),
    ("TOPOLOGY", show_topology::topology),
    ("ROUTING", show_topology::routing),
    ("CLIENTS", show_peers::clients),
    ("SERVERS", show_peers::servers),
    ("DATABASES", show_databases::databases),
    ("USERS", show_databases::users),
    ("LISTS", show_info::lists),
    ("CONFIG", show_info::config),
    ("STATE", show_info::state),
    ("VERSION", version),
];

/// The table SHOW `what` (upper case) answers with; None: not a table.
pub fn table(app: &App, what: &str) -> Option<Table> {
    SHOWS
        .iter()
        .find(|(name, _)| *name == what)
        .map(|(_, show)| show(app))
}

fn version(_: &App) -> Table {
    let mut t = Table::new(&["version"]);
    t.row(vec![table::v(show_info::version())]);
    t
}

/// The SHOW targets HELP lists.
#[cfg(test)]
fn help_targets() -> Vec<&'static str> {
    show_info::HELP
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SHOW "))
        .flat_map(|l| l.split('|'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_exactly_the_show_targets() {
        let mut listed = help_targets();
        listed.sort();
        let mut served: Vec<&str> = SHOWS.iter().map(|(n, _)| *n).chain(["HELP"]).collect();
        served.sort();
        assert_eq!(listed, served);
    }
}
