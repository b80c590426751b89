//! Frontend protocol messages as bytes, for tests that speak the raw
//! protocol so that exactly what reaches the client can be checked.

/// One typed message: tag, length, body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(5 + body.len());
    m.push(tag);
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Appends a NUL-terminated string.
pub fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

/// StartupMessage of protocol `version` with `params`.
pub fn startup(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        cstr(&mut body, k);
        cstr(&mut body, v);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    message(b'Q', &b)
}

/// Parse of statement `name` with parameter type OIDs `types`.
pub fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&(types.len() as i16).to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    message(b'P', &b)
}

/// Bind with text parameters and text results.
pub fn bind(portal: &str, stmt: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    message(b'B', &b)
}

/// Describe ('S' statement or 'P' portal).
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    message(b'D', &b)
}

/// Close ('S' statement or 'P' portal).
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    message(b'C', &b)
}

pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&max_rows.to_be_bytes());
    message(b'E', &b)
}

pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

pub fn flush() -> Vec<u8> {
    message(b'H', &[])
}

pub fn copy_data(d: &[u8]) -> Vec<u8> {
    message(b'd', d)
}

pub fn copy_done() -> Vec<u8> {
    message(b'c', &[])
}

pub fn copy_fail(why: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, why);
    message(b'f', &b)
}

/// FunctionCall of `oid` with binary int4 arguments, binary result.
pub fn function_call(oid: u32, args: &[i32]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&oid.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&(args.len() as i16).to_be_bytes());
    for a in args {
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&a.to_be_bytes());
    }
    b.extend_from_slice(&1i16.to_be_bytes());
    message(b'F', &b)
}

/// Parse, Bind and Execute of `sql` (unnamed statement and portal).
pub fn pbe(sql: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut v = parse("", sql, &[]);
    v.extend(bind("", "", params));
    v.extend(execute("", 0));
    v
}
