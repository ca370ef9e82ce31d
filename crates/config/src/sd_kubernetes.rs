//! `kubernetes_sd_configs` (Prometheus `discovery/kubernetes.SDConfig` in
//! `discovery/kubernetes/kubernetes.go`, documented in configuration.md
//! `<kubernetes_sd_config>`): role, `api_server`, `kubeconfig_file`,
//! `namespaces` (`own_namespace`, `names`), per-role `selectors`,
//! `attach_metadata` and the inlined `<http_config>`.
//!
//! Validation follows `SDConfig.UnmarshalYAML`: the role is required and
//! must be known; `api_server`, `kubeconfig_file`, a custom HTTP client and
//! `own_namespace` combine only the ways Prometheus allows; selectors are
//! unique per role, limited to the roles the configured role watches, and
//! syntactically valid Kubernetes label/field selectors (checked here so a
//! bad selector fails at load time, not as a 400 from the API server).
//!
//! Without `api_server` and `kubeconfig_file` the discovery side uses the
//! in-cluster service account (token and CA under
//! `/var/run/secrets/kubernetes.io/serviceaccount`, the API server from
//! `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`).

use std::fmt;

use crate::decode::{boolean, file_path, index, seq, string, string_list, Ctx, Fields};
use crate::emit::{http_client_yaml, MapY, Y};
use crate::http::decode_inline;
use crate::types::HttpClientConfig;
use crate::yaml::Node;

/// The kind of object a `kubernetes_sd_configs` entry turns into targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KubernetesRole {
    Node,
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Ingress,
}

impl KubernetesRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KubernetesRole::Node => "node",
            KubernetesRole::Pod => "pod",
            KubernetesRole::Service => "service",
            KubernetesRole::Endpoints => "endpoints",
            KubernetesRole::EndpointSlice => "endpointslice",
            KubernetesRole::Ingress => "ingress",
        }
    }

    pub fn parse(s: &str) -> Option<KubernetesRole> {
        Some(match s {
            "node" => KubernetesRole::Node,
            "pod" => KubernetesRole::Pod,
            "service" => KubernetesRole::Service,
            "endpoints" => KubernetesRole::Endpoints,
            "endpointslice" => KubernetesRole::EndpointSlice,
            "ingress" => KubernetesRole::Ingress,
            _ => return None,
        })
    }

    /// The selector roles a role may carry (Prometheus's `allowedSelectors`):
    /// a role can filter every resource it watches.
    pub fn allowed_selector_roles(self) -> &'static [KubernetesRole] {
        use KubernetesRole::*;
        match self {
            Pod => &[Pod, Node],
            Service => &[Service],
            EndpointSlice => &[Pod, Service, EndpointSlice],
            Endpoints => &[Pod, Service, Endpoints],
            Node => &[Node],
            Ingress => &[Ingress],
        }
    }
}

impl fmt::Display for KubernetesRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `selectors:` entry, applied server-side to the lists and watches of
/// `role`'s resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSelector {
    pub role: KubernetesRole,
    pub label: String,
    pub field: String,
}

/// `namespaces:`; both empty means every namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KubernetesNamespaces {
    pub own_namespace: bool,
    pub names: Vec<String>,
}

/// `attach_metadata:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KubernetesAttachMetadata {
    /// `__meta_kubernetes_node_*` on pod/endpoints/endpointslice targets.
    pub node: bool,
    /// `__meta_kubernetes_namespace_*` labels.
    pub namespace: bool,
    /// `__meta_kubernetes_pod_job_name` for pods owned by a Job.
    pub job: bool,
    /// `__meta_kubernetes_pod_deployment_name` for pods whose ReplicaSet a
    /// Deployment controls (Prometheus 3.11+; needs a ReplicaSet watch).
    pub deployment: bool,
    /// `__meta_kubernetes_pod_cronjob_name` for pods whose Job a CronJob
    /// controls (Prometheus 3.11+; needs a Job watch).
    pub cronjob: bool,
}

/// One `kubernetes_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSdConfig {
    /// `None`: in-cluster config or `kubeconfig_file`.
    pub api_server: Option<String>,
    pub role: KubernetesRole,
    /// Resolved against the configuration file's directory.
    pub kubeconfig_file: Option<String>,
    pub namespaces: KubernetesNamespaces,
    pub selectors: Vec<KubernetesSelector>,
    pub attach_metadata: KubernetesAttachMetadata,
    pub http_client: HttpClientConfig,
}

impl KubernetesSdConfig {
    /// The `(label, field)` selectors for `role`'s resource (empty strings
    /// when none is configured).
    pub fn selector_for(&self, role: KubernetesRole) -> (&str, &str) {
        self.selectors
            .iter()
            .find(|s| s.role == role)
            .map_or(("", ""), |s| (s.label.as_str(), s.field.as_str()))
    }
}

pub(crate) fn kubernetes_sd_configs(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
) -> Option<Vec<KubernetesSdConfig>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "kubernetes.SDConfig") else {
            continue;
        };
        let cfg = kubernetes_sd_config(ctx, &mut f, &p);
        f.finish(ctx);
        if let Some(cfg) = cfg {
            out.push(cfg);
        }
    }
    Some(out)
}

fn role(ctx: &mut Ctx, node: &Node, path: &str) -> Option<KubernetesRole> {
    let s = string(ctx, node, path)?;
    let parsed = KubernetesRole::parse(&s);
    if parsed.is_none() {
        ctx.error(node.pos, path, format!("unknown Kubernetes SD role {s:?}"));
    }
    parsed
}

fn kubernetes_sd_config(ctx: &mut Ctx, f: &mut Fields, path: &str) -> Option<KubernetesSdConfig> {
    let had_role = f.has_key("role");
    let role = f.get(ctx, "role", role);
    let api_server = f.get(ctx, "api_server", string).filter(|s| !s.is_empty());
    if let Some(url) = &api_server {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            ctx.error(
                f.pos_of("api_server"),
                &f.path_of("api_server"),
                format!("api_server {url:?} is not an http(s) URL"),
            );
        }
    }
    let kubeconfig_file = f
        .get(ctx, "kubeconfig_file", file_path)
        .filter(|s| !s.is_empty());
    let namespaces = f.get(ctx, "namespaces", namespaces).unwrap_or_default();
    let selectors = f.get(ctx, "selectors", selectors).unwrap_or_default();
    let attach_metadata = f
        .get(ctx, "attach_metadata", attach_metadata)
        .unwrap_or_default();
    let http_client = decode_inline(ctx, f, HttpClientConfig::default_for_scrape());

    let Some(role) = role else {
        if !had_role {
            ctx.error(
                f.pos,
                path,
                "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)",
            );
        }
        return None;
    };
    let custom_http = http_client != HttpClientConfig::default_for_scrape();
    let mut fail = |msg: &str| ctx.error(f.pos, path, msg);
    if api_server.is_some() && kubeconfig_file.is_some() {
        fail("cannot use 'kubeconfig_file' and 'api_server' simultaneously");
    }
    if kubeconfig_file.is_some() && custom_http {
        fail("cannot use a custom HTTP client configuration together with 'kubeconfig_file'");
    }
    if api_server.is_none() && kubeconfig_file.is_none() && custom_http {
        fail("to use custom HTTP client configuration please provide the 'api_server' URL explicitly");
    }
    if api_server.is_some() && namespaces.own_namespace {
        fail("cannot use 'api_server' and 'namespaces.own_namespace' simultaneously");
    }
    if kubeconfig_file.is_some() && namespaces.own_namespace {
        fail("cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously");
    }
    validate_selectors(ctx, f, role, &selectors);

    Some(KubernetesSdConfig {
        api_server: api_server.map(|s| s.trim_end_matches('/').to_string()),
        role,
        kubeconfig_file,
        namespaces,
        selectors,
        attach_metadata,
        http_client,
    })
}

fn validate_selectors(
    ctx: &mut Ctx,
    f: &Fields,
    role: KubernetesRole,
    selectors: &[KubernetesSelector],
) {
    let at = f.pos_of("selectors");
    let path = f.path_of("selectors");
    let mut seen = Vec::new();
    for s in selectors {
        if seen.contains(&s.role) {
            ctx.error(at, &path, format!("duplicated selector role: {}", s.role));
            return;
        }
        seen.push(s.role);
        let allowed = role.allowed_selector_roles();
        if !allowed.contains(&s.role) {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            ctx.error(
                at,
                &path,
                format!("{role} role supports only {} selectors", names.join(", ")),
            );
            return;
        }
        if let Err(e) = validate_field_selector(&s.field) {
            ctx.error(at, &path, e);
        }
        if let Err(e) = validate_label_selector(&s.label) {
            ctx.error(at, &path, e);
        }
    }
}

fn namespaces(ctx: &mut Ctx, node: &Node, path: &str) -> Option<KubernetesNamespaces> {
    let mut f = Fields::open(ctx, node, path, "kubernetes.NamespaceDiscovery")?;
    let ns = KubernetesNamespaces {
        own_namespace: f.get(ctx, "own_namespace", boolean).unwrap_or(false),
        names: f.get(ctx, "names", string_list).unwrap_or_default(),
    };
    f.finish(ctx);
    Some(ns)
}

fn selectors(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<KubernetesSelector>> {
    let items = seq(ctx, node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        let Some(mut f) = Fields::open(ctx, item, &p, "kubernetes.SelectorConfig") else {
            continue;
        };
        let had_role = f.has_key("role");
        let role = f.get(ctx, "role", role);
        let label = f.get(ctx, "label", string).unwrap_or_default();
        let field = f.get(ctx, "field", string).unwrap_or_default();
        f.finish(ctx);
        match role {
            Some(role) => out.push(KubernetesSelector { role, label, field }),
            None if !had_role => ctx.error(item.pos, &p, "selector role missing"),
            None => {}
        }
    }
    Some(out)
}

fn attach_metadata(ctx: &mut Ctx, node: &Node, path: &str) -> Option<KubernetesAttachMetadata> {
    let mut f = Fields::open(ctx, node, path, "kubernetes.AttachMetadataConfig")?;
    let meta = KubernetesAttachMetadata {
        node: f.get(ctx, "node", boolean).unwrap_or(false),
        namespace: f.get(ctx, "namespace", boolean).unwrap_or(false),
        job: f.get(ctx, "job", boolean).unwrap_or(false),
        deployment: f.get(ctx, "deployment", boolean).unwrap_or(false),
        cronjob: f.get(ctx, "cronjob", boolean).unwrap_or(false),
    };
    f.finish(ctx);
    Some(meta)
}

/// Checks the syntax of a Kubernetes field selector (`k=v`, `k==v`, `k!=v`,
/// comma-separated, `\` escapes), as `fields.ParseSelector` does.
pub(crate) fn validate_field_selector(sel: &str) -> Result<(), String> {
    for term in split_unescaped(sel, ',') {
        if term.is_empty() {
            continue;
        }
        let has_op = ["!=", "==", "="]
            .iter()
            .any(|op| find_unescaped(&term, op).is_some_and(|i| i > 0));
        if !has_op {
            return Err(format!(
                "invalid selector: '{sel}'; can't understand '{term}'"
            ));
        }
    }
    Ok(())
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn find_unescaped(s: &str, op: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'\\') {
            i += 2;
            continue;
        }
        if s.get(i..).is_some_and(|rest| rest.starts_with(op)) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Checks the syntax of a Kubernetes label selector (`labels.Parse`):
/// `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`,
/// `k>1`, `k<1`, comma-separated; keys and values obey the label syntax.
pub(crate) fn validate_label_selector(sel: &str) -> Result<(), String> {
    let mut p = LabelSelectorParser {
        s: sel.as_bytes(),
        i: 0,
    };
    p.skip_ws();
    if p.at_end() {
        return Ok(());
    }
    loop {
        p.requirement()
            .map_err(|e| format!("unable to parse requirement: {e}"))?;
        p.skip_ws();
        if p.at_end() {
            return Ok(());
        }
        if !p.eat(b",") {
            return Err(format!("found '{}', expected: ','", p.rest()));
        }
    }
}

struct LabelSelectorParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LabelSelectorParser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    fn rest(&self) -> String {
        String::from_utf8_lossy(self.s.get(self.i..).unwrap_or_default()).into_owned()
    }
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, tok: &[u8]) -> bool {
        self.skip_ws();
        if self.s.get(self.i..).is_some_and(|r| r.starts_with(tok)) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }
    /// A key or value: the characters Kubernetes allows in either.
    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        {
            self.i += 1;
        }
        String::from_utf8_lossy(self.s.get(start..self.i).unwrap_or_default()).into_owned()
    }

    fn requirement(&mut self) -> Result<(), String> {
        let negated = self.eat(b"!");
        let key = self.word();
        validate_label_key(&key)?;
        self.skip_ws();
        if negated || self.at_end() || self.s.get(self.i) == Some(&b',') {
            return Ok(());
        }
        if self.eat(b"==") || self.eat(b"!=") || self.eat(b"=") {
            return validate_label_value(&self.word());
        }
        if self.eat(b">") || self.eat(b"<") {
            let v = self.word();
            return v.parse::<i64>().map(|_| ()).map_err(|_| {
                format!("for 'Gt', 'Lt' operators, the value must be an integer: {v:?}")
            });
        }
        let op = self.word();
        if op != "in" && op != "notin" {
            return Err(format!(
                "found '{op}', expected: in, notin, =, ==, !=, gt, lt"
            ));
        }
        if !self.eat(b"(") {
            return Err(format!("found '{}', expected: '('", self.rest()));
        }
        loop {
            validate_label_value(&self.word())?;
            if self.eat(b")") {
                return Ok(());
            }
            if !self.eat(b",") {
                return Err(format!("found '{}', expected: ',' or ')'", self.rest()));
            }
        }
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            })
    });
    if prefix_ok && is_label_name(name) {
        Ok(())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!("invalid label value: {value:?}"))
    }
}

pub(crate) fn kubernetes_sd_yaml(c: &KubernetesSdConfig) -> Y {
    let mut m = MapY::default();
    m.opt_str("api_server", c.api_server.as_deref())
        .str("role", c.role.as_str())
        .str(
            "kubeconfig_file",
            c.kubeconfig_file.as_deref().unwrap_or(""),
        );
    let mut ns = MapY::default();
    ns.raw("own_namespace", c.namespaces.own_namespace);
    ns.list("names", &c.namespaces.names);
    m.put("namespaces", ns.build());
    let selectors: Vec<Y> = c
        .selectors
        .iter()
        .map(|s| {
            let mut sm = MapY::default();
            sm.str("role", s.role.as_str())
                .opt_str("label", Some(&s.label))
                .opt_str("field", Some(&s.field));
            sm.build()
        })
        .collect();
    m.non_empty("selectors", Y::Seq(selectors));
    let mut am = MapY::default();
    am.raw("node", c.attach_metadata.node)
        .raw("namespace", c.attach_metadata.namespace)
        .raw("deployment", c.attach_metadata.deployment)
        .raw("job", c.attach_metadata.job)
        .raw("cronjob", c.attach_metadata.cronjob);
    m.put("attach_metadata", am.build());
    http_client_yaml(&mut m, &c.http_client);
    m.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_parse_like_kubernetes() {
        for ok in [
            "",
            "app=web",
            "app==web,tier!=db",
            "app in (a, b),!legacy",
            "env notin (dev)",
            "example.com/team=x",
            "gen>3",
            "present",
            "app=",
        ] {
            assert!(validate_label_selector(ok).is_ok(), "{ok:?} rejected");
        }
        for bad in [
            "app=web,",
            "app in a",
            "=x",
            "a b",
            "gen>x",
            "app=-x",
            "Bad.Prefix/x=1",
        ] {
            assert!(validate_label_selector(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn field_selectors_parse_like_kubernetes() {
        for ok in [
            "",
            "spec.nodeName=n1",
            "metadata.name!=x,status.phase==Running",
            "a=b\\,c",
        ] {
            assert!(validate_field_selector(ok).is_ok(), "{ok:?} rejected");
        }
        for bad in ["spec.nodeName", "a=b,c", "=x"] {
            assert!(validate_field_selector(bad).is_err(), "{bad:?} accepted");
        }
    }
}
