//! `remote_write[].sigv4`: decoding, prometheus/sigv4's validation, the
//! mutual exclusion with the other auth blocks, and the status output.

use std::path::Path;

use tributary_config::{load_str, Config, ConfigErrors, SigV4Config};

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_str(yaml, "prometheus.yml", Path::new("/etc/prom"))
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("config unexpectedly valid:\n{yaml}"),
        Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_error(errs: &[String], path: &str, needle: &str) {
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!(" {path}: ")) && e.contains(needle)),
        "no error for {path} containing {needle:?}; got:\n{}",
        errs.join("\n")
    );
}

fn remote_write(body: &str) -> String {
    format!("remote_write:\n  - url: https://aps.example/api/v1/remote_write\n{body}")
}

#[test]
fn full_block_is_decoded() {
    let cfg = load(&remote_write(
        "    sigv4:\n      region: eu-west-1\n      access_key: AKID\n      secret_key: s3cret\n      profile: ops\n      use_fips_sts_endpoint: true\n      service_name: custom\n",
    ))
    .unwrap();
    let got = cfg.remote_write[0].http_client.sigv4.clone().unwrap();
    assert_eq!(got.region, "eu-west-1");
    assert_eq!(got.access_key, "AKID");
    assert_eq!(got.secret_key.as_ref().map(|s| s.expose()), Some("s3cret"));
    assert_eq!(got.profile, "ops");
    assert!(got.use_fips_sts_endpoint);
    assert_eq!(got.service_name, "custom");
    assert!(got.role_arn.is_empty());
}

#[test]
fn empty_block_means_default_credential_chain() {
    let cfg = load(&remote_write("    sigv4: {}\n")).unwrap();
    assert_eq!(
        cfg.remote_write[0].http_client.sigv4,
        Some(SigV4Config::default())
    );
    let none = load(&remote_write("    sigv4:\n")).unwrap();
    assert_eq!(none.remote_write[0].http_client.sigv4, None);
}

#[test]
fn access_key_and_secret_key_go_together() {
    for block in ["{access_key: AK}", "{secret_key: SK}"] {
        let errs = errors(&remote_write(&format!("    sigv4: {block}\n")));
        assert_error(
            &errs,
            "remote_write[0].sigv4",
            "must provide a AWS SigV4 Access key and Secret Key if credentials are specified in the SigV4 config",
        );
    }
}

#[test]
fn external_id_needs_role_arn_and_role_arn_is_refused() {
    let errs = errors(&remote_write("    sigv4: {external_id: x}\n"));
    assert_error(
        &errs,
        "remote_write[0].sigv4.external_id",
        "external_id can only be used with role_arn",
    );
    let errs = errors(&remote_write(
        "    sigv4: {role_arn: 'arn:aws:iam::1:role/w', external_id: x}\n",
    ));
    assert_error(
        &errs,
        "remote_write[0].sigv4.role_arn",
        "role_arn (STS AssumeRole) is not supported yet",
    );
    assert!(!errs.iter().any(|e| e.contains("external_id can only")));
}

#[test]
fn unknown_field_is_rejected() {
    let errs = errors(&remote_write("    sigv4: {regoin: eu}\n"));
    assert_error(
        &errs,
        "remote_write[0].sigv4.regoin",
        "field regoin not found in type sigv4.SigV4Config",
    );
}

#[test]
fn sigv4_excludes_every_other_auth_block() {
    let others = [
        "    basic_auth: {username: u, password: p}\n",
        "    authorization: {credentials: t}\n",
        "    bearer_token: t\n",
        "    oauth2: {client_id: c, client_secret: s, token_url: 'http://t/'}\n",
        "    azuread: {cloud: AzurePublic}\n",
    ];
    for other in others {
        let errs = errors(&remote_write(&format!(
            "    sigv4: {{region: eu-west-1}}\n{other}"
        )));
        assert_error(
            &errs,
            "remote_write[0]",
            "at most one of basic_auth, authorization, oauth2, sigv4, azuread or google_iam must be configured",
        );
    }
}

#[test]
fn sigv4_is_only_accepted_on_remote_write() {
    let errs = errors(
        "scrape_configs:\n  - job_name: j\n    sigv4: {region: eu}\n    static_configs: [{targets: ['a:1']}]\n",
    );
    assert_error(&errs, "scrape_configs[0].sigv4", "field sigv4 not found");
}

#[test]
fn status_output_shows_the_block_with_the_secret_redacted() {
    let cfg = load(&remote_write(
        "    sigv4: {region: eu-west-1, access_key: AKID, secret_key: s3cret}\n",
    ))
    .unwrap();
    let yaml = cfg.to_redacted_yaml();
    assert!(yaml.contains("sigv4:"), "{yaml}");
    assert!(yaml.contains("region: eu-west-1"), "{yaml}");
    assert!(yaml.contains("secret_key: <secret>"), "{yaml}");
    assert!(!yaml.contains("s3cret"), "{yaml}");
    // The block takes part in the default queue name (a hash of the entry).
    let plain = load(&remote_write("")).unwrap();
    assert_ne!(plain.remote_write[0].name, cfg.remote_write[0].name);
}
