//! `auth_type = hba`: PostgreSQL's pg_hba.conf grammar (the part PgBouncer
//! reads, plus `+group`-free user lists): which authentication method a
//! connection gets, from its kind (unix socket, TCP, TLS), address,
//! database and user. The first matching line decides; none = refused.
//!
//! Supported: `local`, `host`, `hostssl`, `hostnossl` (`hostgssenc` never
//! matches, `hostnogssenc` matches every TCP connection: Causeway never
//! does GSSAPI encryption); database lists with `all`, `sameuser`,
//! `replication`, names and `@file`; user lists with `all`, names and
//! `@file`; addresses as `all`, CIDR (IPv4 and IPv6) or address + mask;
//! methods `trust`, `reject`, `md5`, `scram-sha-256`, `password`, `cert`
//! and `peer`; the option `clientcert=verify-ca|verify-full`. Anything else
//! (`+group`, host names, `samenet`, `map=`, `ldap`...) is refused when the
//! file is loaded, with the file and line, rather than silently never
//! matching (a `reject` line that never matched would let clients in).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A parse error: `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct HbaError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// How a matching line authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Trust,
    Reject,
    /// md5, or SCRAM when the stored secret is a SCRAM verifier (as
    /// PostgreSQL and PgBouncer).
    Md5,
    ScramSha256,
    /// Cleartext password.
    Password,
    /// TLS client certificate whose CommonName is the user name.
    Cert,
    /// Unix socket: the peer process's OS user is the user name.
    Peer,
}

/// What a line demands of the client certificate besides the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    /// A certificate signed by client_tls_ca_file.
    VerifyCa,
    /// Also: its CommonName is the user name.
    VerifyFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    Host,
    HostSsl,
    HostNoSsl,
    HostGssEnc,
    HostNoGssEnc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    All,
    SameUser,
    Replication,
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Addr {
    /// `local` lines have no address.
    None,
    All,
    Net {
        net: IpAddr,
        prefix: u8,
    },
}

/// One rule, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub file: PathBuf,
    pub line: usize,
    kind: Kind,
    databases: Vec<Name>,
    users: Vec<Name>,
    addr: Addr,
    pub method: Method,
    pub clientcert: Option<ClientCert>,
}

/// A connection asking to be let in.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Over the unix socket.
    pub local: bool,
    pub tls: bool,
    /// The client's address (None for unix sockets).
    pub addr: Option<IpAddr>,
    pub database: &'a str,
    pub user: &'a str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hba {
    rules: Vec<Rule>,
}

impl Hba {
    /// Reads and parses `path`; `@file` names are relative to its directory.
    pub fn load(path: &Path) -> Result<Hba, HbaError> {
        let text = std::fs::read_to_string(path).map_err(|e| HbaError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read auth_hba_file: {e}"),
        })?;
        Hba::parse(&text, path, &|p| std::fs::read_to_string(p))
    }

    /// Parses `text` (the contents of `file`); `read` opens `@file` lists.
    pub fn parse(
        text: &str,
        file: &Path,
        read: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Hba, HbaError> {
        let mut rules = Vec::new();
        for (line, fields) in logical_lines(text) {
            let fail = |message: String| HbaError {
                file: file.to_path_buf(),
                line,
                message,
            };
            let fields = tokenize(&fields).map_err(fail)?;
            if fields.is_empty() {
                continue;
            }
            let rule = parse_rule(fields, file, line, read).map_err(fail)?;
            rules.push(rule);
        }
        Ok(Hba { rules })
    }

    /// The first rule matching `r` (None: no line matches, refuse).
    pub fn rule_for(&self, r: &Request<'_>) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches(r))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Rule {
    fn matches(&self, r: &Request<'_>) -> bool {
        let kind = match self.kind {
            Kind::Local => r.local,
            Kind::Host | Kind::HostNoGssEnc => !r.local,
            Kind::HostSsl => !r.local && r.tls,
            Kind::HostNoSsl => !r.local && !r.tls,
            Kind::HostGssEnc => false,
        };
        kind && self.addr_matches(r.addr)
            && self.databases.iter().any(|d| match d {
                Name::All => true,
                Name::SameUser => r.database == r.user,
                Name::Replication => false,
                Name::Literal(n) => n == r.database,
            })
            && self.users.iter().any(|u| match u {
                Name::All => true,
                Name::Literal(n) => n == r.user,
                Name::SameUser | Name::Replication => false,
            })
    }

    fn addr_matches(&self, client: Option<IpAddr>) -> bool {
        match (&self.addr, client) {
            (Addr::None, _) | (Addr::All, _) => true,
            (Addr::Net { net, prefix }, Some(ip)) => in_net(ip, *net, *prefix),
            (Addr::Net { .. }, None) => false,
        }
    }
}

/// IPv4 clients on a dual-stack socket arrive as ::ffff:a.b.c.d; they
/// match IPv4 rules as themselves, and an IPv4 client matches IPv6 rules
/// as its mapped address.
fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let v4 = |a: std::net::Ipv4Addr, n: std::net::Ipv4Addr| {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        u32::from(a) & mask == u32::from(n) & mask
    };
    let v6 = |a: std::net::Ipv6Addr, n: std::net::Ipv6Addr| {
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        u128::from(a) & mask == u128::from(n) & mask
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => v4(a, n),
        (IpAddr::V6(a), IpAddr::V6(n)) => v6(a, n),
        (IpAddr::V6(a), IpAddr::V4(n)) => a.to_ipv4_mapped().is_some_and(|a| v4(a, n)),
        (IpAddr::V4(a), IpAddr::V6(n)) => v6(a.to_ipv6_mapped(), n),
    }
}

/// Lines with comments removed and `\` continuations joined, numbered by
/// the line they start on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                acc.push(' ');
                pending = Some((start, acc));
            }
            None => {
                acc.push_str(line);
                out.push((start, acc));
            }
        }
    }
    if let Some(p) = pending {
        out.push(p);
    }
    out
}

/// Drops a `#` comment that is not inside double quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// One token of a field: its text, and whether it was quoted (a quoted
/// `"all"` is a name, not the keyword).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    quoted: bool,
}

/// Fields separated by blanks; each field a comma list of tokens.
fn tokenize(line: &str) -> Result<Vec<Vec<Token>>, String> {
    let mut fields: Vec<Vec<Token>> = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(fields);
        }
        let mut field = Vec::new();
        loop {
            let mut tok = Token {
                text: String::new(),
                quoted: false,
            };
            let mut in_quotes = false;
            while let Some(&c) = chars.peek() {
                if c == '"' {
                    in_quotes = !in_quotes;
                    tok.quoted = true;
                } else if !in_quotes && (c.is_whitespace() || c == ',') {
                    break;
                } else {
                    tok.text.push(c);
                }
                chars.next();
            }
            if in_quotes {
                return Err("unterminated quoted string".into());
            }
            field.push(tok);
            if chars.next_if_eq(&',').is_none() {
                break;
            }
        }
        fields.push(field);
    }
}

fn single<'a>(field: &'a [Token], what: &str) -> Result<&'a str, String> {
    match field {
        [t] => Ok(&t.text),
        _ => Err(format!("{what} must be a single value, not a list")),
    }
}

fn parse_rule(
    fields: Vec<Vec<Token>>,
    file: &Path,
    line: usize,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Rule, String> {
    let mut it = fields.into_iter();
    let kind_field = it.next().unwrap_or_default();
    let kind = match single(&kind_field, "connection type")? {
        "local" => Kind::Local,
        "host" => Kind::Host,
        "hostssl" => Kind::HostSsl,
        "hostnossl" => Kind::HostNoSsl,
        "hostgssenc" => Kind::HostGssEnc,
        "hostnogssenc" => Kind::HostNoGssEnc,
        "include" | "include_if_exists" | "include_dir" => {
            return Err("include directives are not supported".into())
        }
        other => return Err(format!("invalid connection type {other:?}")),
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let databases = names(it.next(), "database", dir, read)?;
    let users = names(it.next(), "user", dir, read)?;
    let addr = if kind == Kind::Local {
        Addr::None
    } else {
        let a = it.next().ok_or("end-of-line before IP address")?;
        let a = single(&a, "IP address")?.to_string();
        parse_addr(&a, &mut it)?
    };
    let method_field = it
        .next()
        .ok_or("end-of-line before authentication method")?;
    let method = match single(&method_field, "authentication method")? {
        "trust" => Method::Trust,
        "reject" => Method::Reject,
        "md5" => Method::Md5,
        "scram-sha-256" => Method::ScramSha256,
        "password" => Method::Password,
        "cert" => Method::Cert,
        "peer" => Method::Peer,
        m @ ("ident" | "gss" | "sspi" | "pam" | "ldap" | "radius" | "bsd" | "any") => {
            return Err(format!(
                "authentication method {m:?} is not supported by Causeway"
            ))
        }
        other => return Err(format!("invalid authentication method {other:?}")),
    };
    if method == Method::Cert && kind != Kind::HostSsl {
        return Err("cert authentication is only supported on hostssl connections".into());
    }
    if method == Method::Peer && kind != Kind::Local {
        return Err("peer authentication is only supported on local sockets".into());
    }
    let mut clientcert = (method == Method::Cert).then_some(ClientCert::VerifyFull);
    for opt in it {
        let opt = single(&opt, "option")?;
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| format!("authentication option not in name=value format: {opt}"))?;
        match (k, v) {
            ("clientcert", "verify-ca" | "1") if method != Method::Cert => {
                if kind != Kind::HostSsl {
                    return Err("clientcert can only be configured for hostssl rows".into());
                }
                clientcert = Some(ClientCert::VerifyCa)
            }
            ("clientcert", "verify-full") => {
                if kind != Kind::HostSsl {
                    return Err("clientcert can only be configured for hostssl rows".into());
                }
                clientcert = Some(ClientCert::VerifyFull)
            }
            ("clientcert", v) => return Err(format!("invalid value for clientcert: {v:?}")),
            (k, _) => return Err(format!("authentication option {k:?} is not supported")),
        }
    }
    Ok(Rule {
        file: file.to_path_buf(),
        line,
        kind,
        databases,
        users,
        addr,
        method,
        clientcert,
    })
}

/// A database or user list, `@file` lists expanded.
fn names(
    field: Option<Vec<Token>>,
    what: &str,
    dir: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Vec<Name>, String> {
    let field = field.ok_or_else(|| format!("end-of-line before {what} specification"))?;
    let mut out = Vec::new();
    for t in field {
        if t.quoted {
            out.push(Name::Literal(t.text));
            continue;
        }
        match t.text.as_str() {
            "all" => out.push(Name::All),
            "sameuser" if what == "database" => out.push(Name::SameUser),
            "replication" if what == "database" => out.push(Name::Replication),
            "samerole" | "samegroup" if what == "database" => {
                return Err(format!(
                    "{:?} is not supported (no role membership lookups)",
                    t.text
                ))
            }
            s if s.starts_with('+') => return Err(format!("group names ({s}) are not supported")),
            s if s.starts_with('/') => {
                return Err(format!("regular expressions ({s}) are not supported"))
            }
            s if s.starts_with('@') => {
                let path = dir.join(&s[1..]);
                let text =
                    read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                for l in text.lines() {
                    let fields = tokenize(strip_comment(l))?;
                    for t in fields.into_iter().flatten() {
                        out.push(Name::Literal(t.text));
                    }
                }
            }
            "" => return Err(format!("empty {what} name")),
            s => out.push(Name::Literal(s.to_string())),
        }
    }
    Ok(out)
}

fn parse_addr(a: &str, rest: &mut impl Iterator<Item = Vec<Token>>) -> Result<Addr, String> {
    match a {
        "all" => return Ok(Addr::All),
        "samehost" | "samenet" => return Err(format!("{a:?} is not supported")),
        _ => {}
    }
    if let Some((ip, bits)) = a.split_once('/') {
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("invalid IP address {ip:?} (host names are not supported)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = bits
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("invalid CIDR mask in address {a:?}"))?;
        return Ok(Addr::Net { net, prefix });
    }
    let net: IpAddr = a.parse().map_err(|_| {
        format!("invalid IP address {a:?} (host names and domain suffixes are not supported)")
    })?;
    // An address without /n is followed by a mask column.
    let mask = rest.next().ok_or("end-of-line before netmask")?;
    let mask: IpAddr = single(&mask, "netmask")?
        .parse()
        .map_err(|_| "invalid IP mask".to_string())?;
    let prefix = match (net, mask) {
        (IpAddr::V4(_), IpAddr::V4(m)) => contiguous(u128::from(u32::from(m)) << 96),
        (IpAddr::V6(_), IpAddr::V6(m)) => contiguous(u128::from(m)),
        _ => None,
    }
    .ok_or("IP address and mask do not match (or the mask is not contiguous)")?;
    Ok(Addr::Net { net, prefix })
}

/// The prefix length of a left-aligned mask, if its ones are contiguous.
fn contiguous(mask: u128) -> Option<u8> {
    let ones = mask.leading_ones();
    (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hba(text: &str) -> Hba {
        Hba::parse(
            text,
            Path::new("/etc/causeway/hba.conf"),
            &|p| match p.to_str() {
                Some("/etc/causeway/admins.txt") => Ok("alice, bob\n# comment\ncarol\n".into()),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file",
                )),
            },
        )
        .unwrap()
    }

    fn err(text: &str) -> HbaError {
        Hba::parse(text, Path::new("/h.conf"), &|p| {
            std::fs::read_to_string(Path::new("/nonexistent").join(p))
        })
        .unwrap_err()
    }

    fn req<'a>(local: bool, tls: bool, ip: &str, db: &'a str, user: &'a str) -> Request<'a> {
        Request {
            local,
            tls,
            addr: (!local).then(|| ip.parse().unwrap()),
            database: db,
            user,
        }
    }

    fn method(h: &Hba, r: Request<'_>) -> Option<(Method, usize)> {
        h.rule_for(&r).map(|r| (r.method, r.line))
    }

    const FILE: &str = r#"
# TYPE   DATABASE      USER        ADDRESS          METHOD
local    all           all                          peer
hostssl  app,"all"     @admins.txt 10.0.0.0/8       cert
host     app           app         127.0.0.1/32     scram-sha-256
hostnossl all          all         127.0.0.0 255.0.0.0  reject
hostssl  sameuser      all         ::1/128          md5 clientcert=verify-ca
host     "pgbouncer"   all         0.0.0.0/0        password
host     all           all         all              \
                                                    reject   # continued
"#;

    #[test]
    fn first_matching_line_decides() {
        let h = hba(FILE);
        assert_eq!(h.len(), 7);
        // Unix socket.
        assert_eq!(
            method(&h, req(true, false, "", "app", "x")),
            Some((Method::Peer, 3))
        );
        // @file users over TLS from 10/8; a quoted "all" is a database name.
        assert_eq!(
            method(&h, req(false, true, "10.1.2.3", "app", "bob")),
            Some((Method::Cert, 4))
        );
        assert_eq!(
            method(&h, req(false, true, "10.1.2.3", "all", "carol")),
            Some((Method::Cert, 4))
        );
        assert_eq!(
            method(&h, req(false, true, "10.1.2.3", "other", "carol")),
            Some((Method::Reject, 9))
        );
        // Not in the @file list: falls through.
        assert_eq!(
            method(&h, req(false, true, "10.1.2.3", "app", "mallory")),
            Some((Method::Reject, 9))
        );
        // Per address: only 127.0.0.1 gets scram for app/app.
        assert_eq!(
            method(&h, req(false, false, "127.0.0.1", "app", "app")),
            Some((Method::ScramSha256, 5))
        );
        assert_eq!(
            method(&h, req(false, false, "127.0.0.2", "app", "app")),
            Some((Method::Reject, 6))
        );
        // hostnossl does not match TLS; sameuser over IPv6.
        assert_eq!(
            method(&h, req(false, true, "::1", "bob", "bob")),
            Some((Method::Md5, 7))
        );
        assert_eq!(
            h.rule_for(&req(false, true, "::1", "bob", "bob"))
                .unwrap()
                .clientcert,
            Some(ClientCert::VerifyCa)
        );
        assert_eq!(
            method(&h, req(false, true, "::1", "app", "bob")),
            Some((Method::Reject, 9))
        );
        assert_eq!(
            method(&h, req(false, false, "192.0.2.1", "pgbouncer", "admin")),
            Some((Method::Password, 8))
        );
    }

    #[test]
    fn no_matching_line_is_none() {
        let h = hba("host app app 127.0.0.1/32 trust\n");
        assert!(method(&h, req(false, false, "127.0.0.1", "other", "app")).is_none());
        assert!(method(&h, req(true, false, "", "app", "app")).is_none());
        assert!(Hba::default()
            .rule_for(&req(true, false, "", "a", "b"))
            .is_none());
    }

    #[test]
    fn ipv4_mapped_and_ipv6_networks() {
        let h = hba("host all all 192.168.0.0/16 trust\nhost all all fe80::/10 md5\n");
        assert_eq!(
            method(&h, req(false, false, "::ffff:192.168.4.5", "d", "u")),
            Some((Method::Trust, 1))
        );
        assert_eq!(
            method(&h, req(false, false, "fe80::1", "d", "u")),
            Some((Method::Md5, 2))
        );
        assert!(method(&h, req(false, false, "2001:db8::1", "d", "u")).is_none());
        let h = hba("host all all ::ffff:10.0.0.0/104 trust\nhost all all 0.0.0.0/0 reject\n");
        assert_eq!(
            method(&h, req(false, false, "10.9.9.9", "d", "u")),
            Some((Method::Trust, 1))
        );
        let h = hba("host all all ::/0 trust\n");
        assert_eq!(
            method(&h, req(false, false, "10.9.9.9", "d", "u")),
            Some((Method::Trust, 1))
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = err("host all all 127.0.0.1/32 trust\nhost all +admins 127.0.0.1/32 md5\n");
        assert_eq!((e.line, e.file.as_path()), (2, Path::new("/h.conf")));
        assert!(e.to_string().starts_with("/h.conf:2: group names"), "{e}");
        for (text, needle) in [
            ("host all all db.example.com trust", "host names"),
            ("host all all 10.0.0.0/33 trust", "CIDR"),
            ("host all all 10.0.0.0 255.0.255.0 trust", "contiguous"),
            ("host all all 127.0.0.1/32 ldap", "not supported"),
            (
                "host all all 127.0.0.1/32 frobnicate",
                "invalid authentication method",
            ),
            (
                "host all all 127.0.0.1/32 cert",
                "only supported on hostssl",
            ),
            ("host all all 127.0.0.1/32 peer", "only supported on local"),
            ("hostssl all all 127.0.0.1/32 md5 map=x", "not supported"),
            (
                "host all all 127.0.0.1/32 md5 clientcert=verify-ca",
                "hostssl",
            ),
            ("local all", "end-of-line before user"),
            ("host all all", "end-of-line before IP"),
            ("host \"all all 1.2.3.4/32 trust", "unterminated"),
            ("hots all all 1.2.3.4/32 trust", "invalid connection type"),
            ("host samerole all all trust", "not supported"),
            ("host all all samenet trust", "not supported"),
            ("host all @missing 127.0.0.1/32 trust", "cannot read"),
        ] {
            let e = err(text);
            assert_eq!(e.line, 1, "{text}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn tokenizer_quotes_commas_and_comments() {
        assert_eq!(
            tokenize(r#"host "a b",c  all # x"#.split('#').next().unwrap()).unwrap(),
            vec![
                vec![Token {
                    text: "host".into(),
                    quoted: false
                }],
                vec![
                    Token {
                        text: "a b".into(),
                        quoted: true
                    },
                    Token {
                        text: "c".into(),
                        quoted: false
                    }
                ],
                vec![Token {
                    text: "all".into(),
                    quoted: false
                }],
            ]
        );
        assert_eq!(strip_comment(r##"host "#x" # c"##), r##"host "#x" "##);
        let lines = logical_lines("a \\\n b\n\nc # d\n");
        assert_eq!(lines[0].0, 1);
        assert_eq!(
            lines[0].1.split_whitespace().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(lines[2], (4, "c ".to_string()));
    }

    #[test]
    fn masks() {
        assert_eq!(contiguous(0), Some(0));
        assert_eq!(contiguous(u128::MAX), Some(128));
        assert_eq!(contiguous(u128::MAX << 120), Some(8));
        assert_eq!(contiguous(0b101 << 125), None);
    }
}
