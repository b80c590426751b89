//! The figment side: one provider per line of the PgBouncer file, so a
//! value's metadata names the file and line it came from ("PgBouncer file
//! /etc/pgbouncer/pgbouncer.ini:12"), both in figment's own errors and in
//! Causeway's validation errors.

use figment2::value::{Dict, Map, Value};
use figment2::{Error, Figment, Metadata, Profile, Provider, Source};

use super::{PgBouncerFile, Setting};

impl PgBouncerFile {
    /// Every mapped setting, merged in file order.
    pub fn figment(&self) -> Figment {
        self.settings
            .iter()
            .fold(Figment::new(), |f, s| f.merge(Line(s)))
    }
}

struct Line<'a>(&'a Setting);

impl Provider for Line<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::from("PgBouncer file", Source::Custom(self.0.at.to_string()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut value = Value::serialize(&self.0.value)?;
        for key in self.0.path.iter().rev() {
            let mut d = Dict::new();
            d.insert(key.clone(), value);
            value = Value::from(d);
        }
        let dict = value.into_dict().unwrap_or_default();
        Ok(Map::from([(Profile::Default, dict)]))
    }
}
