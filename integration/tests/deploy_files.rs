//! The deployment files we ship cannot run here (no Docker engine, no
//! Kubernetes cluster), so this checks everything short of that: each YAML
//! under docker/ and deploy/ parses; every file they mount, build or list
//! exists; every Causeway setting they name (mounted TOML, ConfigMap TOML,
//! `CAUSEWAY_*` variables, `--config`/`--set` arguments) loads with
//! Causeway's own loader, which refuses unknown keys; ports, probes,
//! selectors and volume references fit together; Prometheus' file passes
//! `promtool check config`. No PostgreSQL needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use causeway_config::{load, Config, Layers};
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

fn parse(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap();
    let docs =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!docs.is_empty(), "{} is empty", path.display());
    docs
}

/// `h[key]`, also through YAML merge keys (`<<: *anchor`), which compose
/// resolves and the YAML library leaves as a plain key.
fn get<'a>(h: &'a Yaml, key: &str) -> &'a Yaml {
    let direct = &h[key];
    if !direct.is_badvalue() {
        return direct;
    }
    match &h["<<"] {
        Yaml::BadValue => direct,
        merged => get(merged, key),
    }
}

fn s(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| v.iter().map(s).collect())
        .unwrap_or_default()
}

/// A setting from a flag or variable, read as the CLI reads `--set`
/// values: TOML if it parses, else a string.
fn value(v: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()))
}

/// `CAUSEWAY_*` variables of a compose `environment` (map or list) or a
/// Kubernetes `env` list, as (dotted key, value).
fn env_settings(env: &Yaml) -> Vec<(String, toml::Value)> {
    let pairs: Vec<(String, String)> = match env {
        Yaml::Hash(h) => h.iter().map(|(k, v)| (s(k), s(v))).collect(),
        Yaml::Array(a) => a
            .iter()
            .map(|e| match e {
                Yaml::String(kv) => {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                }
                h => (s(&h["name"]), s(&h["value"])),
            })
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| {
            let key = k
                .strip_prefix("CAUSEWAY_")?
                .to_lowercase()
                .replace("__", ".");
            Some((key, value(&v)))
        })
        .collect()
}

/// `--config FILE`s and `--set k=v`s of a command line.
fn arg_settings(args: &[String]) -> (Vec<String>, Vec<(String, toml::Value)>) {
    let (mut files, mut sets) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => files.push(it.next().expect("--config FILE").clone()),
            "--set" => {
                let kv = it.next().expect("--set k=v");
                let (k, v) = kv.split_once('=').expect("k=v");
                sets.push((k.to_string(), value(v)));
            }
            _ => {}
        }
    }
    (files, sets)
}

/// Loads TOML files and settings as Causeway would at start.
fn causeway_load(
    files: &[PathBuf],
    settings: Vec<(String, toml::Value)>,
) -> Result<Config, String> {
    let layers = Layers {
        system_file: PathBuf::from("/nonexistent/causeway.toml"),
        files: files.to_vec(),
        env_prefix: None,
        overrides: settings,
    };
    load(&layers).map_err(|e| e.to_string())
}

fn auth_file(c: &Config) -> String {
    c.auth_file
        .as_ref()
        .expect("auth_file")
        .display()
        .to_string()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr}"))
}

#[test]
fn every_shipped_yaml_parses() {
    let mut files = Vec::new();
    yaml_files(&repo().join("docker"), &mut files);
    yaml_files(&repo().join("deploy"), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for f in files {
        parse(&f);
    }
}

#[test]
fn the_checks_can_fail() {
    // A misspelt variable or an impossible value is caught.
    let env = YamlLoader::load_from_str("CAUSEWAY_LISTEN_PROT: 1\n").unwrap();
    assert!(causeway_load(&[], env_settings(&env[0])).is_err());
    let env = YamlLoader::load_from_str("- name: CAUSEWAY_POOL_MODE\n  value: bogus\n").unwrap();
    assert!(causeway_load(&[], env_settings(&env[0])).is_err());
    let (_, sets) = arg_settings(&["--set".into(), "databases.x.pool_sise=1".into()]);
    assert!(causeway_load(&[], sets).is_err());
}

/// Compose: `host:container` volume mounts from `dir`, by container path.
fn mounts(service: &Yaml, dir: &Path) -> BTreeMap<String, PathBuf> {
    strings(get(service, "volumes"))
        .iter()
        .map(|v| {
            let mut parts = v.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().expect("host:container"));
            let src = dir.join(src);
            assert!(src.exists(), "{v}: {} does not exist", src.display());
            (dst.to_string(), src)
        })
        .collect()
}

#[test]
fn compose_file_fits_together() {
    let dir = repo().join("docker");
    let doc = &parse(&dir.join("compose.yaml"))[0];
    let services = &doc["services"];
    let names: Vec<String> = services.as_hash().unwrap().keys().map(s).collect();
    for want in [
        "primary",
        "replica1",
        "replica2",
        "causeway",
        "prometheus",
        "grafana",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "no service {want}: {names:?}"
        );
    }
    let mut all_mounts = BTreeMap::new();
    for name in &names {
        let svc = &services[name.as_str()];
        all_mounts.insert(name.clone(), mounts(svc, &dir));
        if let Yaml::Hash(_) = get(svc, "build") {
            let b = get(svc, "build");
            let ctx = dir.join(s(&b["context"]));
            assert!(ctx.join(s(&b["dockerfile"])).is_file(), "{name}: build");
        }
        for dep in get(svc, "depends_on")
            .as_hash()
            .map(|h| h.keys().map(s).collect())
            .unwrap_or_else(|| strings(get(svc, "depends_on")))
        {
            assert!(names.contains(&dep), "{name} depends on unknown {dep}");
        }
    }

    for r in ["replica1", "replica2"] {
        assert!(
            all_mounts[r].contains_key("/usr/local/bin/replica.sh"),
            "{r}: {all_mounts:?}"
        );
    }
    assert!(all_mounts["primary"].contains_key("/docker-entrypoint-initdb.d/10-replication.sh"));

    // Causeway: the mounted system config plus the environment, loaded as
    // Causeway loads them.
    let cw = &services["causeway"];
    let m = &all_mounts["causeway"];
    let toml = m
        .get("/etc/causeway/causeway.toml")
        .expect("config mounted where it is read");
    let config = causeway_load(
        std::slice::from_ref(toml),
        env_settings(get(cw, "environment")),
    )
    .unwrap_or_else(|e| panic!("compose causeway settings: {e}"));
    let auth = auth_file(&config);
    assert!(m.contains_key(&auth), "auth_file {auth} is not mounted");
    let published: Vec<String> = strings(get(cw, "ports"));
    for port in [config.listen_port, port_of(&config.metrics_addr)] {
        assert!(
            published.iter().any(|p| p.ends_with(&format!(":{port}"))),
            "port {port} not published: {published:?}"
        );
    }
    assert!(config.metrics_addr.starts_with("0.0.0.0:") && config.listen_addr == "0.0.0.0");
    let hosts: Vec<String> = config.databases["app"]
        .server_list()
        .iter()
        .map(|s| s.host.clone())
        .collect();
    assert_eq!(
        hosts,
        ["primary", "replica1", "replica2"],
        "servers are the compose services"
    );

    // Prometheus scrapes Causeway's metrics port, and promtool accepts it.
    let prom = &all_mounts["prometheus"]["/etc/prometheus/prometheus.yml"];
    let prom_doc = &parse(prom)[0];
    let targets: Vec<String> = prom_doc["scrape_configs"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|j| {
            j["static_configs"]
                .as_vec()
                .unwrap()
                .iter()
                .flat_map(|c| strings(&c["targets"]))
        })
        .collect();
    assert!(
        targets.contains(&format!("causeway:{}", port_of(&config.metrics_addr))),
        "{targets:?}"
    );
    let out = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(prom)
        .output()
        .expect("promtool on PATH (apt-get install prometheus; .ci/run does)");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Grafana: its data source is the Prometheus service, and the
    // dashboard provider reads the directory the dashboard is mounted in.
    let g = &all_mounts["grafana"];
    let prov = &g["/etc/grafana/provisioning"];
    let ds = &parse(&prov.join("datasources/prometheus.yaml"))[0];
    assert_eq!(s(&ds["datasources"][0]["url"]), "http://prometheus:9090");
    let dash = &parse(&prov.join("dashboards/causeway.yaml"))[0];
    let path = s(&dash["providers"][0]["options"]["path"]);
    let json = g
        .iter()
        .find(|(dst, _)| dst.starts_with(&format!("{path}/")) && dst.ends_with(".json"))
        .unwrap_or_else(|| panic!("no dashboard mounted under {path}"));
    assert!(json.1.ends_with("docs/grafana/causeway.json"), "{json:?}");
}

/// Kubernetes objects by (kind, name).
fn k8s_objects(dir: &Path) -> BTreeMap<(String, String), Yaml> {
    let kust = &parse(&dir.join("kustomization.yaml"))[0];
    let mut out = BTreeMap::new();
    for r in strings(&kust["resources"]) {
        let p = dir.join(&r);
        assert!(p.is_file(), "kustomization lists missing {r}");
        for doc in parse(&p) {
            let key = (s(&doc["kind"]), s(&doc["metadata"]["name"]));
            assert!(out.insert(key.clone(), doc).is_none(), "{key:?} twice");
        }
    }
    out
}

/// `matchLabels` (or a Service's plain selector) all present in `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let sel = match &selector["matchLabels"] {
        Yaml::BadValue => selector,
        m => m,
    };
    let sel = sel.as_hash().expect("a selector");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels[s(k).as_str()] == *v)
}

#[test]
fn kubernetes_manifests_fit_together() {
    let objs = k8s_objects(&repo().join("deploy/k8s"));
    let obj = |kind: &str, name: &str| {
        objs.get(&(kind.to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let dep = obj("Deployment", "causeway");
    let pod = &dep["spec"]["template"];
    assert!(selects(
        &dep["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let c = &pod["spec"]["containers"][0];
    let volumes = pod["spec"]["volumes"].as_vec().unwrap();
    let volume_mounts = c["volumeMounts"].as_vec().unwrap();

    // Where a path inside the container comes from: (kind, name, key).
    let source_of = |path: &str| -> (String, String, String) {
        let vm = volume_mounts
            .iter()
            .find(|m| path.starts_with(&format!("{}/", s(&m["mountPath"]))))
            .unwrap_or_else(|| panic!("{path} is not under any volumeMount"));
        let file = &path[s(&vm["mountPath"]).len() + 1..];
        let vol = volumes
            .iter()
            .find(|v| v["name"] == vm["name"])
            .expect("volume of the mount");
        let (kind, name, items) = if !vol["configMap"].is_badvalue() {
            (
                "ConfigMap",
                s(&vol["configMap"]["name"]),
                &vol["configMap"]["items"],
            )
        } else {
            (
                "Secret",
                s(&vol["secret"]["secretName"]),
                &vol["secret"]["items"],
            )
        };
        let item = items
            .as_vec()
            .unwrap()
            .iter()
            .find(|i| s(&i["path"]) == file)
            .unwrap_or_else(|| panic!("{path}: no item for {file}"));
        (kind.to_string(), name, s(&item["key"]))
    };
    let data_of = |(kind, name, key): &(String, String, String)| -> String {
        let o = obj(kind, name);
        let d = if kind == "Secret" {
            &o["stringData"]
        } else {
            &o["data"]
        };
        s(&d[key.as_str()])
    };

    // The configuration: the --config files (from the ConfigMap) and the
    // environment, loaded as Causeway loads them.
    let (files, sets) = arg_settings(&strings(&c["args"]));
    assert!(!files.is_empty(), "no --config in args");
    let tmp = tempfile::tempdir().unwrap();
    let local: Vec<PathBuf> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let p = tmp.path().join(format!("{i}.toml"));
            std::fs::write(&p, data_of(&source_of(f))).unwrap();
            p
        })
        .collect();
    let mut settings = env_settings(&c["env"]);
    settings.extend(sets);
    let config =
        causeway_load(&local, settings).unwrap_or_else(|e| panic!("k8s causeway settings: {e}"));
    let auth = auth_file(&config);
    let userlist = data_of(&source_of(&auth));
    assert!(
        userlist
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with('"')),
        "{userlist}"
    );

    // Ports and probes: Causeway's real endpoints on its real ports.
    let port_named = |n: &str| {
        c["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| s(&p["name"]) == n)
            .map(|p| p["containerPort"].as_i64().unwrap())
    };
    assert_eq!(port_named("postgres"), Some(i64::from(config.listen_port)));
    assert_eq!(
        port_named("metrics"),
        Some(i64::from(port_of(&config.metrics_addr)))
    );
    assert_eq!(config.listen_addr, "0.0.0.0");
    for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
        assert_eq!(s(&c[probe]["httpGet"]["path"]), path, "{probe}");
        assert_eq!(s(&c[probe]["httpGet"]["port"]), "metrics", "{probe}");
    }
    let pre_stop = strings(&c["lifecycle"]["preStop"]["exec"]["command"]).join(" ");
    assert!(
        pre_stop.contains("kill -INT 1"),
        "preStop drains with SIGINT: {pre_stop}"
    );

    // Service, PodDisruptionBudget and ServiceMonitor pick these pods.
    let svc = obj("Service", "causeway");
    assert!(selects(
        &svc["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let svc_ports = svc["spec"]["ports"].as_vec().unwrap();
    for p in svc_ports {
        assert!(
            port_named(&s(&p["targetPort"])).is_some(),
            "targetPort {:?}",
            p["targetPort"]
        );
    }
    let pdb = obj("PodDisruptionBudget", "causeway");
    assert!(selects(
        &pdb["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let sm = obj("ServiceMonitor", "causeway");
    assert!(selects(&sm["spec"]["selector"], &svc["metadata"]["labels"]));
    let ep = &sm["spec"]["endpoints"][0];
    assert!(
        svc_ports.iter().any(|p| p["name"] == ep["port"]),
        "ServiceMonitor port"
    );
    assert_eq!(s(&ep["path"]), "/metrics");
}
