//! Client secrets from the PgBouncer-format auth_file.

use std::collections::HashMap;
use std::path::Path;

use causeway_protocol::auth::userlist::parse_userlist;
use causeway_protocol::auth::Secret;

#[derive(Default)]
pub struct Secrets {
    by_user: HashMap<String, Secret>,
}

impl Secrets {
    pub fn load(path: Option<&Path>) -> Result<Secrets, String> {
        let Some(path) = path else {
            return Ok(Secrets::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read auth_file {}: {e}", path.display()))?;
        let entries =
            parse_userlist(&text).map_err(|e| format!("auth_file {}: {e}", path.display()))?;
        Ok(Secrets {
            by_user: entries.into_iter().collect(),
        })
    }

    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.by_user.get(user)
    }

    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }
}
