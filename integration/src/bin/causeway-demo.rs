//! `make demo`: a PostgreSQL primary + 2 streaming replicas behind Causeway,
//! running until Ctrl-C. Files (config, userlist, Causeway log) go to
//! `./.demo/`.
//!
//! `make demo TLS=1` (`causeway-demo --tls`): a test CA and certificates are
//! made in `./.demo/`; the servers take TCP logins only over TLS, Causeway
//! requires TLS from clients and verifies the servers (verify-full), and
//! the printed connection string uses `sslmode=verify-full`.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use causeway_integration::causeway::{causeway_bin, first_free_port, userlist, CausewayBuilder};
use causeway_integration::cluster_tls::HOSTSSL_ONLY_HBA;
use causeway_integration::{Cluster, ClusterOptions, Pki};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: set flags, the main loop does the rest.
    SIGNAL.store(sig, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    // Installed first, so Ctrl-C during startup still leads to a clean
    // teardown instead of leaving servers behind.
    // SAFETY: the handler only stores to atomics.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    if let Err(e) = run() {
        eprintln!("causeway-demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    // Fail before spending seconds on PostgreSQL if there is nothing to run.
    let bin = causeway_bin()?;
    let tls = std::env::args().any(|a| a == "--tls");

    eprintln!("Starting PostgreSQL: primary + 2 streaming replicas ...");
    let t = std::time::Instant::now();
    let cluster = Cluster::start(ClusterOptions::default())?;
    eprintln!("  ready in {:.1} s", t.elapsed().as_secs_f64());
    if STOP.load(Ordering::SeqCst) {
        return Ok(());
    }

    let dir = std::env::current_dir()
        .map_err(|e| format!("current dir: {e}"))?
        .join(".demo");
    let builder = CausewayBuilder::in_dir(&dir)?.bin(bin);
    let auth_file = builder.write_file(
        "userlist.txt",
        &userlist(&[
            ("app", "app_pw"),
            ("app_md5", "md5_pw"),
            ("app_plain", "plain_pw"),
            ("admin", "admin_pw"),
        ]),
    )?;
    let port = first_free_port(6432, 6531).ok_or("no free port in 6432..6531")?;
    let mut tls_toml = String::new();
    let mut connect = format!("postgres://app:app_pw@127.0.0.1:{port}/app");
    let mut admin = format!("postgres://admin:admin_pw@127.0.0.1:{port}/pgbouncer");
    if tls {
        let pki = Pki::new(builder.dir(), "demo")?;
        let names = ["localhost", "127.0.0.1", "::1"];
        let pg = pki.server("postgres", &names)?;
        let cw = pki.server("causeway", &names)?;
        cluster.enable_tls(&pg, &pki.ca_file(), HOSTSSL_ONLY_HBA)?;
        let ca = pki.ca_file().display().to_string();
        tls_toml = format!(
            "client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"{}\"\nclient_tls_key_file = \"{}\"\n\
             server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = \"{ca}\"\n",
            cw.cert.display(),
            cw.key.display()
        );
        let verify = format!("sslmode=verify-full&sslrootcert={ca}");
        connect = format!("postgres://app:app_pw@localhost:{port}/app?{verify}");
        admin = format!("postgres://admin:admin_pw@localhost:{port}/pgbouncer?{verify}");
    }
    let metrics_port = first_free_port(9930, 10029).ok_or("no free port in 9930..10029")?;

    let mut toml = format!(
        r#"listen_addr = "127.0.0.1"
listen_port = {port}
metrics_addr = "127.0.0.1:{metrics_port}"
pool_mode = "transaction"
auth_type = "scram-sha-256"
auth_file = "{auth}"
default_pool_size = 20
max_client_conn = 1000
admin_users = ["admin"]
{tls_toml}
[databases.app]
dbname = "app"
pool_size = 20
"#,
        auth = auth_file.display(),
    );
    for node in cluster.nodes() {
        let role = if node.name() == "primary" {
            "primary"
        } else {
            "replica"
        };
        toml.push_str(&format!(
            "\n[[databases.app.servers]]\nhost = \"{}\"\nport = {}\nrole = \"{role}\"\n",
            node.host(),
            node.port()
        ));
    }

    let mut causeway = builder.start(&toml)?;

    println!();
    println!("Causeway demo is running (pid {}).", causeway.pid());
    println!();
    if tls {
        println!("  TLS:            clients must use TLS (certificate signed by the demo CA);");
        println!("                  servers take TCP logins only over TLS, verified (verify-full)");
    }
    println!("  Connect:        psql \"{connect}\"");
    println!("  Admin console:  psql \"{admin}\"");
    println!("  Metrics:        http://127.0.0.1:{metrics_port}/metrics  (also /health, /ready)");
    println!("  Dashboard:      docs/grafana/causeway.json (import into Grafana)");
    println!("  Replicas, lag:  psql \"{admin}\" -c 'SHOW REPLICAS'");
    println!("  Other users:    app_md5/md5_pw, app_plain/plain_pw");
    println!();
    println!("  Reads go to a replica, writes to the primary; see where each ran:");
    println!("    psql \"{connect}\" -c 'select pg_is_in_recovery(), inet_server_port()'");
    println!();
    println!("  Servers:");
    for node in cluster.nodes() {
        println!(
            "    {:<9} 127.0.0.1:{}  (direct: psql \"host=127.0.0.1 port={} user=postgres dbname=app{}\")",
            node.name(),
            node.port(),
            node.port(),
            if tls { " sslmode=require" } else { "" }
        );
    }
    println!();
    println!("  Files:          {}", causeway.dir().display());
    println!("  Causeway log:   {}", causeway.log_path().display());
    println!();
    println!("Press Ctrl-C to stop.");

    while !STOP.load(Ordering::SeqCst) {
        if let Some(st) = causeway.try_wait() {
            eprintln!(
                "causeway exited unexpectedly ({st}); log:\n{}",
                causeway.log_contents()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if STOP.load(Ordering::SeqCst) {
        eprintln!(
            "\nGot signal {}, shutting down ...",
            SIGNAL.load(Ordering::SeqCst)
        );
    }
    // Causeway first (clients go away cleanly), then PostgreSQL.
    drop(causeway);
    drop(cluster);
    eprintln!("Stopped.");
    Ok(())
}
