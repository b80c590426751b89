//! Both TLS sides of causeway-net against each other over loopback TCP,
//! with certificates made here: what each server_tls_sslmode accepts, the
//! SSLRequest exchange, and reads that leave plaintext inside the TLS
//! layer.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use causeway_net::stats::{Outcome, Side};
use causeway_net::{
    ClientTls, ClientTlsSettings, EndPoint, ServerTls, ServerTlsSettings, SslMode, Stream,
    HANDSHAKES,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Bound on each step; a broken implementation hangs instead of failing.
const STEP: Duration = Duration::from_secs(10);

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    file: PathBuf,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let file = dir.join(format!("{name}.crt"));
    std::fs::write(&file, issuer.pem()).unwrap();
    Ca { issuer, file }
}

/// (cert file, key file, DER) for `names`, signed by `ca`.
fn leaf(dir: &Path, ca: &Ca, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.der().to_vec())
}

fn acceptor(cert: &Path, key: &Path) -> ClientTls {
    ClientTls::load(&ClientTlsSettings {
        sslmode: SslMode::Require,
        cert_file: Some(cert.into()),
        key_file: Some(key.into()),
        ca_file: None,
        protocols: "secure".into(),
        ciphers: "fast".into(),
    })
    .unwrap()
}

fn connector(mode: SslMode, ca: Option<&Path>) -> ServerTls {
    ServerTls::new(ServerTlsSettings {
        sslmode: mode,
        ca_file: ca.map(Into::into),
        protocols: "secure".into(),
        ciphers: "fast".into(),
        ..Default::default()
    })
    .unwrap()
}

/// A one-connection "server": reads the SSLRequest, answers `answer`,
/// and on 'S' accepts TLS; then writes `payload` and keeps the stream
/// open until the client is done.
async fn serve_once(
    tls: ClientTls,
    answer: u8,
    payload: Vec<u8>,
) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        let mut req = [0u8; 8];
        tcp.read_exact(&mut req).await.unwrap();
        assert_eq!(req, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "SSLRequest");
        tcp.write_all(&[answer]).await.unwrap();
        let mut s: Stream = if answer == b'S' {
            match tls.accept(tcp, false).await {
                Ok(s) => s,
                Err(_) => return,
            }
        } else {
            tcp.into()
        };
        s.write_all(&payload).await.unwrap();
        s.flush().await.unwrap();
        // Until the client closes.
        let mut sink = [0u8; 64];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    (port, task)
}

async fn negotiate(tls: &ServerTls, port: u16, host: &str) -> Result<Stream, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::time::timeout(STEP, tls.negotiate(tcp, host))
        .await
        .expect("negotiation hung")
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn server_sslmodes_against_a_tls_server() {
    let dir = tempfile::tempdir().unwrap();
    let good = ca(dir.path(), "good");
    let rogue = ca(dir.path(), "rogue");
    let (cert, key, der) = leaf(dir.path(), &good, "server", &["localhost", "127.0.0.1"]);
    let accept = acceptor(&cert, &key);
    // (mode, CA, host name, connects)
    let cases = [
        (SslMode::VerifyFull, Some(&good.file), "localhost", true),
        (SslMode::VerifyFull, Some(&good.file), "127.0.0.1", true),
        (
            SslMode::VerifyFull,
            Some(&good.file),
            "wrong.example",
            false,
        ),
        (SslMode::VerifyCa, Some(&good.file), "wrong.example", true),
        (SslMode::VerifyCa, Some(&rogue.file), "localhost", false),
        (SslMode::VerifyFull, Some(&rogue.file), "localhost", false),
        (SslMode::Require, None, "wrong.example", true),
        (SslMode::Prefer, None, "localhost", true),
    ];
    for (mode, ca_file, host, connects) in cases {
        let bad_before = HANDSHAKES.get(Side::Server, Outcome::BadCertificate);
        let (port, task) = serve_once(accept.clone(), b'S', b"hello".to_vec()).await;
        let got = negotiate(&connector(mode, ca_file.map(|p| p.as_path())), port, host).await;
        match got {
            Ok(mut s) => {
                assert!(connects, "{mode:?} {host} with {ca_file:?} connected");
                assert!(s.is_tls());
                assert_eq!(s.end_point(), EndPoint::of_certificate(&der).as_ref());
                assert!(s.tls_description().starts_with("TLSv1.3/"));
                let mut b = [0u8; 5];
                s.read_exact(&mut b).await.unwrap();
                assert_eq!(&b, b"hello");
            }
            Err(e) => {
                assert!(!connects, "{mode:?} {host} with {ca_file:?}: {e}");
                assert!(
                    e.contains("certificate") || e.contains("Certificate"),
                    "{e}"
                );
                assert!(HANDSHAKES.get(Side::Server, Outcome::BadCertificate) > bad_before);
            }
        }
        task.abort();
    }
}

#[tokio::test]
async fn a_server_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let good = ca(dir.path(), "good");
    let (cert, key, _) = leaf(dir.path(), &good, "server", &["localhost"]);
    let accept = acceptor(&cert, &key);
    // prefer: go on in clear.
    let (port, task) = serve_once(accept.clone(), b'N', b"plain".to_vec()).await;
    let mut s = negotiate(&connector(SslMode::Prefer, None), port, "localhost")
        .await
        .unwrap();
    assert!(!s.is_tls());
    let mut b = [0u8; 5];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"plain");
    task.abort();
    // require: refused.
    let (port, task) = serve_once(accept, b'N', Vec::new()).await;
    let e = negotiate(&connector(SslMode::Require, None), port, "localhost")
        .await
        .err()
        .unwrap();
    assert!(e.contains("does not support TLS"), "{e}");
    task.abort();
    // disable: no SSLRequest at all (the stream is returned untouched).
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let s = negotiate(&connector(SslMode::Disable, None), port, "localhost")
        .await
        .unwrap();
    assert!(!s.is_tls());
}

/// After a read that leaves decrypted bytes in the TLS layer (the reader's
/// buffer was smaller than the record), `readable()` must return at once:
/// the socket itself will never become readable for those bytes.
#[tokio::test]
async fn readable_sees_plaintext_buffered_in_tls() {
    let dir = tempfile::tempdir().unwrap();
    let good = ca(dir.path(), "good");
    let (cert, key, _) = leaf(dir.path(), &good, "server", &["localhost"]);
    let payload: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
    let (port, task) = serve_once(acceptor(&cert, &key), b'S', payload.clone()).await;
    let mut s = negotiate(
        &connector(SslMode::VerifyFull, Some(&good.file)),
        port,
        "localhost",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    while got.len() < payload.len() {
        tokio::time::timeout(STEP, s.readable())
            .await
            .expect("readable() hung with bytes buffered in TLS")
            .unwrap();
        // One poll with a small buffer and a no-op waker, as the idle
        // session reads.
        let mut small = [0u8; 1000];
        let mut rb = ReadBuf::new(&mut small);
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(r) = Pin::new(&mut s).poll_read(&mut cx, &mut rb) {
            r.unwrap();
            assert!(!rb.filled().is_empty(), "early EOF");
            got.extend_from_slice(rb.filled());
        }
    }
    assert_eq!(got, payload);
    task.abort();
}

#[test]
fn load_errors_name_the_setting_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = ca(dir.path(), "good");
    let (cert, _, _) = leaf(dir.path(), &good, "a", &["localhost"]);
    let (_, other_key, _) = leaf(dir.path(), &good, "b", &["localhost"]);
    let settings = |cert: &Path, key: &Path| ClientTlsSettings {
        sslmode: SslMode::Require,
        cert_file: Some(cert.into()),
        key_file: Some(key.into()),
        ca_file: None,
        protocols: "secure".into(),
        ciphers: "fast".into(),
    };
    let e = ClientTls::load(&settings(&cert, &other_key)).unwrap_err();
    assert!(e.0.contains("does not fit"), "{e}");
    let missing = dir.path().join("missing.key");
    let e = ClientTls::load(&settings(&cert, &missing)).unwrap_err();
    assert!(
        e.0.contains(&format!("client_tls_key_file {}", missing.display())),
        "{e}"
    );
    let e = ClientTls::load(&ClientTlsSettings {
        sslmode: SslMode::VerifyCa,
        ..settings(&cert, &other_key)
    })
    .unwrap_err();
    assert!(e.0.contains("client_tls_ca_file"), "{e}");
    let e = ServerTls::new(ServerTlsSettings {
        sslmode: SslMode::Require,
        key_file: Some(other_key),
        protocols: "secure".into(),
        ciphers: "fast".into(),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(e.0.contains("go together"), "{e}");
}
