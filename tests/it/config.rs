//! Configuration: precedence, every rejection, secret redaction, and the binary's exit
//! status and message for a broken setting.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use secrecy::ExposeSecret;
use webex_archiver::config::{ConfigError, Credentials, DatabaseUrl, FileKind, Needs, Scope, Settings, Since, Sources};

const SECRET: &str = "tok-Sup3rSecret-value";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load(file: Option<PathBuf>, pairs: &[(&str, &str)], needs: Needs) -> Result<Settings, ConfigError> {
    Settings::load(&Sources { file, data_dir: None, env: env(pairs) }, needs)
}

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_then_file_then_environment() {
    let defaults = load(None, &[], Needs::StateOnly).unwrap();
    assert_eq!(defaults.archive.concurrency, 4);
    assert_eq!(defaults.sync.window, Duration::from_secs(7 * 86400));
    assert_eq!(defaults.sync.site_concurrency, 4);
    assert_eq!(defaults.webex.base_url.as_str(), "https://webexapis.com/v1");
    assert!(defaults.database.url.is_sqlite(), "the embedded default is SQLite");

    let file = file_with("[archive]\nconcurrency = 2\n[sync]\nwindow = \"3d\"\n");
    let from_file = load(Some(file.path().into()), &[], Needs::StateOnly).unwrap();
    assert_eq!((from_file.archive.concurrency, from_file.sync.window), (2, Duration::from_secs(3 * 86400)));

    let both =
        load(Some(file.path().into()), &[("WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY", "7")], Needs::StateOnly).unwrap();
    assert_eq!(both.archive.concurrency, 7, "environment wins over the file");
    assert_eq!(both.sync.window, Duration::from_secs(3 * 86400), "the file still wins over the defaults");
    assert_eq!(both.sync.poll_interval, Duration::from_secs(15 * 60), "untouched keys keep their defaults");
    let sites = load(None, &[("WEBEX_ARCHIVER__SYNC__SITE_CONCURRENCY", "64")], Needs::StateOnly).unwrap();
    assert_eq!(sites.sync.site_concurrency, 64, "the largest allowed");
}

#[test]
fn lists_scopes_and_nested_keys_from_the_environment() {
    let s = load(
        None,
        &[
            ("WEBEX_ARCHIVER__WEBEX__SCOPE", "admin"),
            ("WEBEX_ARCHIVER__WEBEX__SITE_URLS", "a.webex.com,b.webex.com"),
            ("WEBEX_ARCHIVER__ARCHIVE__INCLUDE", "recording,transcript"),
            ("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_ID", "cid"),
            ("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_SECRET", SECRET),
            ("WEBEX_ARCHIVER__WEBEX__OAUTH__REFRESH_TOKEN", SECRET),
            ("WEBEX_ARCHIVER__SYNC__SINCE", "2024-01-01T00:00:00Z"),
        ],
        Needs::Webex,
    )
    .unwrap();
    assert_eq!(s.webex.scope, Scope::Admin);
    assert_eq!(s.webex.site_urls, ["a.webex.com", "b.webex.com"]);
    assert_eq!(s.archive.include, [FileKind::Recording, FileKind::Transcript]);
    assert_eq!(s.sync.since, Since::At("2024-01-01T00:00:00Z".parse().unwrap()));
    match s.credentials().unwrap().unwrap() {
        Credentials::OAuth(o) => assert_eq!(
            webex_archiver::webex::auth::token_endpoint(&o, &s.webex.base_url).as_str(),
            "https://webexapis.com/v1/access_token"
        ),
        other => panic!("expected OAuth, got {other:?}"),
    }
}

#[test]
fn token_from_a_file() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "{SECRET}").unwrap();
    let path = f.path().display().to_string();
    let s = load(None, &[("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN_FILE", &path)], Needs::Webex).unwrap();
    match s.credentials().unwrap().unwrap() {
        Credentials::Static(token) => assert_eq!(secrecy::ExposeSecret::expose_secret(&token), SECRET),
        other => panic!("expected a static token, got {other:?}"),
    }
}

#[test]
fn every_bad_setting_is_refused_naming_its_key() {
    let token = ("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[token, ("WEBEX_ARCHIVER__WEBEX__NO_SUCH_KEY", "1")], "webex.no_such_key"),
        (&[token, ("WEBEX_ARCHIVER__NOSECTION__KEY", "1")], "nosection"),
        (&[token, ("WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY", "many")], "archive.concurrency"),
        (&[token, ("WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY", "0")], "archive.concurrency"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__BASE_URL", "not a url")], "webex.base_url"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__BASE_URL", "ftp://x/v1")], "webex.base_url"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__BASE_URL", "http://webexapis.com/v1")], "webex.base_url"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__BASE_URL", "http://10.0.0.8:8080/v1")], "webex.base_url"),
        (
            &[token, ("WEBEX_ARCHIVER__WEBEX__OAUTH__TOKEN_URL", "http://webexapis.com/v1/access_token")],
            "webex.oauth.token_url",
        ),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "https://x.webex.com")], "webex.download_hosts"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "*")], "webex.download_hosts"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "*.com")], "webex.download_hosts"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "a.*.webex.com")], "webex.download_hosts"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "x.webex.com:443")], "webex.download_hosts"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__MAX_RETRY_AFTER", "0s")], "webex.max_retry_after"),
        (&[token, ("WEBEX_ARCHIVER__WEBEX__SCOPE", "everyone")], "webex.scope"),
        (&[token, ("WEBEX_ARCHIVER__STORAGE__URL", "gs://bucket")], "storage.url"),
        (&[token, ("WEBEX_ARCHIVER__STORAGE__URL", "s3:///no-bucket")], "storage.url"),
        (&[token, ("WEBEX_ARCHIVER__STORAGE__URL", "s3://b/a/../x")], "storage.url"),
        (&[token, ("WEBEX_ARCHIVER__DATABASE__URL", "mysql://x/y")], "database.url"),
        (&[token, ("WEBEX_ARCHIVER__SYNC__WINDOW", "8d")], "sync.window"),
        (&[token, ("WEBEX_ARCHIVER__SYNC__WINDOW", "soon")], "sync.window"),
        (&[token, ("WEBEX_ARCHIVER__SYNC__SINCE", "last tuesday")], "sync.since"),
        (&[token, ("WEBEX_ARCHIVER__SYNC__SITE_CONCURRENCY", "0")], "sync.site_concurrency"),
        (&[token, ("WEBEX_ARCHIVER__SYNC__SITE_CONCURRENCY", "65")], "sync.site_concurrency"),
        (&[token, ("WEBEX_ARCHIVER__SYNC__SITE_CONCURRENCY", "all")], "sync.site_concurrency"),
        (&[token, ("WEBEX_ARCHIVER__COMPLIANCE__DELETION_HORIZON", "12h")], "compliance.deletion_horizon"),
        (&[token, ("WEBEX_ARCHIVER__COMPLIANCE__DELETION_HORIZON", "3651d")], "compliance.deletion_horizon"),
        (&[token, ("WEBEX_ARCHIVER__COMPLIANCE__DELETION_SWEEP", "daily")], "compliance.deletion_sweep"),
        (&[token, ("WEBEX_ARCHIVER__ARCHIVE__KEY_TEMPLATE", "{year}/{topic}")], "archive.key_template"),
        (&[token, ("WEBEX_ARCHIVER__ARCHIVE__INCLUDE", "audio")], "archive.include"),
        (&[token, ("WEBEX_ARCHIVER__STORAGE__PART_SIZE", "1024")], "storage.part_size"),
        (&[token, ("WEBEX_ARCHIVER__HTTP__LISTEN", "everywhere")], "http.listen"),
        (&[token, ("WEBEX_ARCHIVER__LOG__FORMAT", "xml")], "log.format"),
        (&[token, ("WEBEX_ARCHIVER__STORAGE__SIGN_PAYLOAD", "sometimes")], "storage.sign_payload"),
        (&[token, ("WEBEX_ARCHIVER__STORAGE__CHECKSUM", "md5")], "storage.checksum"),
        (&[token, ("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__MODE", "strict")], "storage.object_lock.mode"),
        (&[token, ("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETENTION", "7y")], "storage.object_lock.retention"),
        (
            &[
                token,
                ("WEBEX_ARCHIVER__STORAGE__URL", "s3://b/p"),
                ("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__MODE", "compliance"),
            ],
            "storage.object_lock.retention",
        ),
        (
            &[
                token,
                ("WEBEX_ARCHIVER__STORAGE__URL", "s3://b/p"),
                ("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__MODE", "governance"),
                ("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETENTION", "101y"),
            ],
            "storage.object_lock.retention",
        ),
        (
            &[
                token,
                ("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__MODE", "governance"),
                ("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETENTION", "7y"),
            ],
            "storage.object_lock.mode",
        ),
        (
            &[
                token,
                ("WEBEX_ARCHIVER__STORAGE__URL", "s3://b/p"),
                ("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETAIN_FROM", "now"),
            ],
            "storage.object_lock.retain_from",
        ),
        (&[], "webex.access_token"),
        (&[("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN_FILE", "/nonexistent/token")], "webex.access_token_file"),
        (&[("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_ID", "cid")], "webex.oauth.client_secret"),
    ];
    for (pairs, key) in cases {
        let err = load(None, pairs, Needs::Webex).expect_err(&format!("{pairs:?} should be refused"));
        assert!(err.key.starts_with(key), "{pairs:?}: expected key {key}, got {err}");
        assert!(!err.to_string().contains(SECRET), "the message shows a secret: {err}");
    }
    // A missing token is fine for commands that do not talk to Webex; an http API is not.
    load(None, &[], Needs::StateOnly).unwrap();
    let err = load(None, &[("WEBEX_ARCHIVER__WEBEX__BASE_URL", "http://webexapis.com/v1")], Needs::StateOnly)
        .expect_err("plain http to a remote API is refused by every command");
    assert!(err.key == "webex.base_url" && err.problem.contains("https"), "{err}");
    // Plain http is fine to this machine (a simulator, a local proxy).
    for base in ["http://127.0.0.1:8080/v1", "http://[::1]:8080/v1", "http://localhost/v1"] {
        load(None, &[token, ("WEBEX_ARCHIVER__WEBEX__BASE_URL", base)], Needs::Webex).unwrap();
    }
    let s = load(None, &[token, ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", " *.WEBEX.com ,127.0.0.1,,")], Needs::Webex)
        .unwrap();
    assert_eq!(s.webex.download_hosts, ["*.webex.com", "127.0.0.1"]);
    // A configuration file that does not parse names the file.
    let bad = file_with("[archive\nconcurrency = 2");
    let err = load(Some(bad.path().into()), &[token], Needs::Webex).unwrap_err();
    assert!(err.key.contains(bad.path().file_name().unwrap().to_str().unwrap()), "{err}");
    let err = load(Some("/nonexistent/config.toml".into()), &[token], Needs::Webex).unwrap_err();
    assert!(err.key.contains("/nonexistent/config.toml"), "{err}");
}

#[test]
fn secrets_never_reach_debug_or_config_check() {
    let s = load(
        None,
        &[
            ("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET),
            ("WEBEX_ARCHIVER__DATABASE__URL", "postgres://archiver:DbPassw0rd@db:5432/archive"),
            ("WEBEX_ARCHIVER__STORAGE__SECRET_ACCESS_KEY", "S3Secr3tKey"),
            ("AWS_SECRET_ACCESS_KEY", "EnvS3Secret"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ],
        Needs::Webex,
    )
    .unwrap();
    let shown = [format!("{s:?}"), s.to_redacted_toml(), format!("{:?}", s.credentials().unwrap())];
    for text in &shown {
        for secret in [SECRET, "DbPassw0rd", "S3Secr3tKey", "EnvS3Secret"] {
            assert!(!text.contains(secret), "a secret leaked into: {text}");
        }
    }
    let toml = &shown[1];
    assert!(toml.contains("access_token = \"***\""), "{toml}");
    assert!(toml.contains("postgres://archiver:***@db:5432/archive"), "{toml}");
    assert!(toml.contains("http://127.0.0.1:9000"), "non-secret AWS settings are shown: {toml}");
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_webex-archiver"))
}

#[test]
fn config_check_exits_2_naming_the_broken_setting() {
    let out = binary()
        .args(["config", "check"])
        .env("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET)
        .env("WEBEX_ARCHIVER__SYNC__WINDOW", "30d")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(stderr.contains("sync.window"), "{stderr}");
    assert!(!stderr.contains(SECRET));

    // Every command, not only those that talk to Webex, refuses a plain-http API.
    let out =
        binary().args(["status"]).env("WEBEX_ARCHIVER__WEBEX__BASE_URL", "http://webexapis.com/v1").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() == 1 && stderr.contains("webex.base_url"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .args(["config", "check", "--data-dir"])
        .arg(dir.path())
        .env("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("access_token = \"***\"") && !stdout.contains(SECRET), "{stdout}");
    assert!(stdout.contains(&format!("sqlite://{}", dir.path().join("state.db").display())), "{stdout}");
}

const TOKEN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

#[test]
fn the_token_key_is_32_bytes_of_base64_and_never_shown() {
    let s = load(
        None,
        &[("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET), ("WEBEX_ARCHIVER__DATABASE__TOKEN_KEY", TOKEN_KEY)],
        Needs::Webex,
    )
    .unwrap();
    let key = s.token_key().unwrap().expect("a key");
    assert_eq!(key.expose().expose_secret(), b"0123456789abcdef0123456789abcdef");
    let toml = s.to_redacted_toml();
    for shown in [format!("{s:?}"), toml.clone(), format!("{key:?}")] {
        assert!(!shown.contains(TOKEN_KEY), "the key leaked into: {shown}");
    }
    assert!(toml.contains("token_key = \"***\""), "{toml}");

    for (value, problem) in [("not base64 at all!", "is not base64"), ("c2hvcnQ=", "decodes to 5 bytes, not 32")] {
        let err = load(
            None,
            &[("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET), ("WEBEX_ARCHIVER__DATABASE__TOKEN_KEY", value)],
            Needs::Webex,
        )
        .unwrap_err();
        assert_eq!(err.key, "database.token_key", "{err}");
        assert!(err.problem.contains(problem) && err.problem.contains("openssl rand -base64 32"), "{err}");
        assert!(!err.to_string().contains(value), "{err}");
    }

    let file = file_with(&format!("{TOKEN_KEY}\n"));
    let path = file.path().to_str().unwrap();
    let s = load(None, &[("WEBEX_ARCHIVER__DATABASE__TOKEN_KEY_FILE", path)], Needs::StateOnly).unwrap();
    assert!(s.token_key().unwrap().is_some());
    let bad = file_with("c2hvcnQ=");
    let err =
        load(None, &[("WEBEX_ARCHIVER__DATABASE__TOKEN_KEY_FILE", bad.path().to_str().unwrap())], Needs::StateOnly)
            .unwrap_err();
    assert_eq!(err.key, "database.token_key_file", "{err}");
}

fn oauth_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_ID", "client"),
        ("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_SECRET", "ClientS3cret"),
        ("WEBEX_ARCHIVER__WEBEX__OAUTH__REFRESH_TOKEN", SECRET),
    ];
    pairs.extend_from_slice(extra);
    pairs
}

#[test]
fn warnings_name_unencrypted_tokens_and_an_unverified_postgres_connection() {
    let warnings = |pairs: &[(&str, &str)]| load(None, pairs, Needs::Webex).unwrap().warnings();

    let w = warnings(&oauth_env(&[]));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("database.token_key is not set") && w[0].contains("unencrypted"), "{w:?}");
    assert!(warnings(&oauth_env(&[("WEBEX_ARCHIVER__DATABASE__TOKEN_KEY", TOKEN_KEY)])).is_empty());
    // A static token: the database keeps no token.
    assert!(warnings(&[("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET)]).is_empty());

    let db = |url: &'static str| {
        warnings(&[("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET), ("WEBEX_ARCHIVER__DATABASE__URL", url)])
    };
    let w = db("postgres://archiver:DbPassw0rd@db.example:5432/archive");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("database.url:") && w[0].contains("db.example"), "{w:?}");
    assert!(w[0].contains("sslmode=verify-full") && !w[0].contains("DbPassw0rd"), "{w:?}");
    let w = db("postgres://archiver@db.example/archive?sslmode=require");
    assert!(w.len() == 1 && w[0].contains("(it asks for sslmode=require)"), "{w:?}");
    for quiet in [
        "postgres://archiver@db.example/archive?sslmode=verify-full",
        "postgresql://archiver@db.example/archive?SSLMODE=VERIFY-FULL&application_name=wa",
        "postgres://archiver@localhost/archive",
        "postgres://archiver@127.0.0.1:5432/archive",
        "postgres://archiver@[::1]/archive",
        "postgres:///archive?host=/var/run/postgresql",
        "sqlite:///var/lib/webex-archiver/state.db",
    ] {
        assert!(db(quiet).is_empty(), "{quiet}: {:?}", db(quiet));
    }
}

#[test]
fn the_redacted_database_url_hides_a_password_parameter_too() {
    let url = DatabaseUrl::from(
        "postgres://archiver:UserPassw0rd@db.example/archive?password=ParamPassw0rd&sslmode=verify-full".to_owned(),
    );
    for shown in [url.redacted(), format!("{url:?}"), url.to_string()] {
        assert!(!shown.contains("UserPassw0rd") && !shown.contains("ParamPassw0rd"), "{shown}");
        assert!(shown.contains("archiver:***@db.example") && shown.contains("password=***"), "{shown}");
        assert!(shown.contains("sslmode=verify-full"), "{shown}");
    }
    let url = DatabaseUrl::from("postgres://db.example/archive?user=a&PASSWORD=ParamPassw0rd".to_owned());
    assert!(!url.redacted().contains("ParamPassw0rd"), "{}", url.redacted());
    // Nothing to hide: shown as it is.
    let plain = "postgres://archiver@db.example/archive?sslmode=verify-full";
    assert_eq!(DatabaseUrl::from(plain.to_owned()).redacted(), plain);
    // Through config check too.
    let s = load(
        None,
        &[
            ("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", SECRET),
            ("WEBEX_ARCHIVER__DATABASE__URL", "postgres://db.example/archive?password=ParamPassw0rd"),
        ],
        Needs::Webex,
    )
    .unwrap();
    assert!(!s.to_redacted_toml().contains("ParamPassw0rd"));
    assert!(!format!("{s:?}").contains("ParamPassw0rd"));
}

#[test]
fn config_check_prints_its_warnings_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = binary();
    command.args(["config", "check", "--data-dir"]).arg(dir.path());
    for (k, v) in oauth_env(&[("WEBEX_ARCHIVER__DATABASE__URL", "postgres://archiver:DbPassw0rd@db.example/archive")]) {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(warnings[0].contains("database.token_key") && warnings[1].contains("sslmode=verify-full"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [SECRET, "ClientS3cret", "DbPassw0rd"] {
        assert!(!stderr.contains(secret) && !stdout.contains(secret), "{secret} leaked");
    }
}
