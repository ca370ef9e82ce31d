//! Target groups per role, label for label as Prometheus builds them
//! (discovery/kubernetes/{pod,node,service,ingress,endpoints,endpointslice}.go;
//! label lists in configuration.md `<kubernetes_sd_config>`).
//!
//! Group sources are Prometheus's: `pod/<ns>/<name>`, `node/<name>`,
//! `svc/<ns>/<name>`, `ingress/<ns>/<name>`, `endpoints/<ns>/<name>`,
//! `endpointslice/<ns>/<name>`. Labels with an empty value are left out
//! (Tributary's `Labels` cannot hold them; relabeling treats an empty label
//! and a missing one alike).

use std::collections::{BTreeMap, HashMap};

use tributary_model::Labels;

use super::objects::{
    Container, EndpointAddress, EndpointPort, EndpointSlice, Endpoints, Ingress, Meta, Node, Pod,
    Service, SliceEndpoint, SlicePort,
};
use crate::group::TargetGroup;
use crate::refresh::{join_host_port, sanitize_label_name};

const PREFIX: &str = "__meta_kubernetes_";
const NAMESPACE: &str = "__meta_kubernetes_namespace";

/// Everything besides the object itself that a build may consult: the
/// stores kept for cross-references and `attach_metadata`.
pub(crate) struct Lookups<'a> {
    pub pods: &'a HashMap<String, Pod>,
    pub services: &'a HashMap<String, Service>,
    /// `Some` when `attach_metadata.node` is on.
    pub nodes: Option<&'a HashMap<String, Meta>>,
    /// `Some` when `attach_metadata.namespace` is on.
    pub namespaces: Option<&'a HashMap<String, Meta>>,
    pub attach_job: bool,
    /// `Some` when `attach_metadata.deployment` is on: ReplicaSet → Deployment.
    pub deployments: Option<&'a HashMap<String, String>>,
    /// `Some` when `attach_metadata.cronjob` is on: Job → CronJob.
    pub cronjobs: Option<&'a HashMap<String, String>>,
}

/// A label set under construction; a later `set` of a name wins, which is
/// what Go's `LabelSet.Merge` does.
#[derive(Default)]
struct Ls(Vec<(String, String)>);

impl Ls {
    fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }
    fn extend(&mut self, other: &Ls) {
        self.0.extend(other.0.iter().cloned());
    }
    fn labels(&self) -> Labels {
        Labels::from_pairs(self.0.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }
}

/// `<resource>_label_*`, `_labelpresent_*`, `_annotation_*`,
/// `_annotationpresent_*` (names sanitized).
fn add_labels_and_annotations(ls: &mut Ls, meta: &Meta, resource: &str) {
    for (k, v) in &meta.labels {
        let ln = sanitize_label_name(k);
        ls.set(format!("{PREFIX}{resource}_label_{ln}"), v.as_str());
        ls.set(format!("{PREFIX}{resource}_labelpresent_{ln}"), "true");
    }
    for (k, v) in &meta.annotations {
        let ln = sanitize_label_name(k);
        ls.set(format!("{PREFIX}{resource}_annotation_{ln}"), v.as_str());
        ls.set(format!("{PREFIX}{resource}_annotationpresent_{ln}"), "true");
    }
}

/// `<resource>_name` plus labels and annotations.
fn add_object_meta(ls: &mut Ls, meta: &Meta, resource: &str) {
    ls.set(format!("{PREFIX}{resource}_name"), meta.name.as_str());
    add_labels_and_annotations(ls, meta, resource);
}

fn add_node_meta(ls: &mut Ls, lk: &Lookups, node_name: Option<&str>) {
    let (Some(nodes), Some(name)) = (lk.nodes, node_name) else {
        return;
    };
    if let Some(meta) = nodes.get(name) {
        add_object_meta(ls, meta, "node");
    }
}

fn add_namespace_meta(ls: &mut Ls, lk: &Lookups, namespace: &str) {
    if let Some(meta) = lk.namespaces.and_then(|m| m.get(namespace)) {
        add_labels_and_annotations(ls, meta, "namespace");
    }
}

fn group(source: String, labels: &Ls, targets: &[Ls]) -> TargetGroup {
    TargetGroup {
        source,
        targets: targets.iter().map(Ls::labels).collect(),
        labels: labels.labels(),
    }
}

// ---- pod ----

pub(crate) fn pod_source(namespace: &str, name: &str) -> String {
    format!("pod/{namespace}/{name}")
}

/// Prometheus's `podLabels`: the pod-level labels shared by the pod role
/// and the pod-backed endpoints targets.
fn pod_labels(pod: &Pod, lk: &Lookups<'_>) -> Ls {
    let mut ls = Ls::default();
    let s = &pod.status;
    ls.set(format!("{PREFIX}pod_ip"), s.pod_ip.as_str());
    ls.set(format!("{PREFIX}pod_ready"), pod_ready(pod));
    ls.set(format!("{PREFIX}pod_phase"), s.phase.as_str());
    ls.set(
        format!("{PREFIX}pod_node_name"),
        pod.spec.node_name.as_str(),
    );
    ls.set(format!("{PREFIX}pod_host_ip"), s.host_ip.as_str());
    ls.set(format!("{PREFIX}pod_uid"), pod.metadata.uid.as_str());
    add_object_meta(&mut ls, &pod.metadata, "pod");
    if let Some(owner) = pod.metadata.controller() {
        ls.set(format!("{PREFIX}pod_controller_kind"), owner.kind.as_str());
        ls.set(format!("{PREFIX}pod_controller_name"), owner.name.as_str());
        // The controller's own controller (pod.go `podLabels`): looked up
        // in the ReplicaSet / Job stores, so absent until they are listed.
        let owner_key = || format!("{}/{}", pod.metadata.namespace, owner.name);
        match owner.kind.as_str() {
            "ReplicaSet" => {
                if let Some(d) = lk.deployments.and_then(|m| m.get(&owner_key())) {
                    ls.set(format!("{PREFIX}pod_deployment_name"), d.as_str());
                }
            }
            "Job" => {
                if lk.attach_job {
                    ls.set(format!("{PREFIX}pod_job_name"), owner.name.as_str());
                }
                if let Some(c) = lk.cronjobs.and_then(|m| m.get(&owner_key())) {
                    ls.set(format!("{PREFIX}pod_cronjob_name"), c.as_str());
                }
            }
            _ => {}
        }
    }
    ls
}

fn pod_ready(pod: &Pod) -> String {
    pod.status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map_or_else(|| "unknown".to_string(), |c| c.status.to_lowercase())
}

/// Containers then init containers, with the init flag.
fn all_containers(pod: &Pod) -> impl Iterator<Item = (&Container, bool)> {
    pod.spec
        .containers
        .iter()
        .map(|c| (c, false))
        .chain(pod.spec.init_containers.iter().map(|c| (c, true)))
}

fn container_id<'a>(pod: &'a Pod, name: &str, init: bool) -> &'a str {
    let statuses = if init {
        &pod.status.init_container_statuses
    } else {
        &pod.status.container_statuses
    };
    statuses
        .iter()
        .find(|s| s.name == name)
        .map_or("", |s| s.container_id.as_str())
}

/// The pod role's group; `None` when the pod has no IP yet (or, with
/// `attach_metadata.node`, its node is unknown): no targets.
pub(crate) fn build_pod(pod: &Pod, lk: &Lookups) -> Option<TargetGroup> {
    if pod.status.pod_ip.is_empty() {
        return None;
    }
    if let Some(nodes) = lk.nodes {
        if !nodes.contains_key(&pod.spec.node_name) {
            return None;
        }
    }
    let mut labels = pod_labels(pod, lk);
    labels.set(NAMESPACE, pod.metadata.namespace.as_str());
    add_node_meta(&mut labels, lk, Some(&pod.spec.node_name));
    add_namespace_meta(&mut labels, lk, &pod.metadata.namespace);

    let ip = pod.status.pod_ip.as_str();
    let mut targets = Vec::new();
    for (c, init) in all_containers(pod) {
        let mut base = Ls::default();
        base.set(format!("{PREFIX}pod_container_name"), c.name.as_str());
        base.set(
            format!("{PREFIX}pod_container_id"),
            container_id(pod, &c.name, init),
        );
        base.set(format!("{PREFIX}pod_container_image"), c.image.as_str());
        base.set(format!("{PREFIX}pod_container_init"), init.to_string());
        if c.ports.is_empty() {
            base.set("__address__", ip);
            targets.push(base);
            continue;
        }
        for p in &c.ports {
            let mut t = Ls::default();
            t.extend(&base);
            t.set("__address__", join_host_port(ip, p.container_port));
            t.set(
                format!("{PREFIX}pod_container_port_number"),
                p.container_port.to_string(),
            );
            t.set(format!("{PREFIX}pod_container_port_name"), p.name.as_str());
            t.set(
                format!("{PREFIX}pod_container_port_protocol"),
                p.protocol.as_str(),
            );
            targets.push(t);
        }
    }
    Some(group(
        pod_source(&pod.metadata.namespace, &pod.metadata.name),
        &labels,
        &targets,
    ))
}

// ---- node ----

pub(crate) fn node_source(name: &str) -> String {
    format!("node/{name}")
}

/// Kubelet address preference of Prometheus's `nodeAddress`.
const NODE_ADDRESS_PREFERENCE: [&str; 6] = [
    "InternalIP",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
    "LegacyHostIP",
    "Hostname",
];

/// The node role's group; `None` when the node has no usable address
/// (Prometheus then sends nothing, leaving any previous group in place).
pub(crate) fn build_node(node: &Node) -> Option<TargetGroup> {
    let mut first_by_type: BTreeMap<&str, &str> = BTreeMap::new();
    for a in &node.status.addresses {
        first_by_type
            .entry(a.type_.as_str())
            .or_insert(a.address.as_str());
    }
    let addr = NODE_ADDRESS_PREFERENCE
        .iter()
        .find_map(|t| first_by_type.get(t))?;

    let mut labels = Ls::default();
    labels.set(
        format!("{PREFIX}node_provider_id"),
        node.spec.provider_id.as_str(),
    );
    for c in &node.status.conditions {
        let ty = sanitize_label_name(&c.type_.to_lowercase());
        labels.set(
            format!("{PREFIX}node_condition_{ty}"),
            c.status.to_lowercase(),
        );
    }
    add_object_meta(&mut labels, &node.metadata, "node");

    let mut t = Ls::default();
    t.set(
        "__address__",
        join_host_port(addr, node.status.daemon_endpoints.kubelet_endpoint.port),
    );
    t.set("instance", node.metadata.name.as_str());
    for (ty, a) in &first_by_type {
        t.set(
            sanitize_label_name(&format!("{PREFIX}node_address_{ty}")),
            *a,
        );
    }
    Some(group(node_source(&node.metadata.name), &labels, &[t]))
}

// ---- service ----

pub(crate) fn service_source(namespace: &str, name: &str) -> String {
    format!("svc/{namespace}/{name}")
}

fn service_labels(svc: &Service) -> Ls {
    let mut ls = Ls::default();
    ls.set(NAMESPACE, svc.metadata.namespace.as_str());
    add_object_meta(&mut ls, &svc.metadata, "service");
    ls
}

pub(crate) fn build_service(svc: &Service, lk: &Lookups) -> TargetGroup {
    let mut labels = service_labels(svc);
    add_namespace_meta(&mut labels, lk, &svc.metadata.namespace);
    let spec = &svc.spec;
    let host = format!("{}.{}.svc", svc.metadata.name, svc.metadata.namespace);
    let targets: Vec<Ls> = spec
        .ports
        .iter()
        .map(|p| {
            let mut t = Ls::default();
            t.set("__address__", join_host_port(&host, p.port));
            t.set(format!("{PREFIX}service_port_name"), p.name.as_str());
            t.set(format!("{PREFIX}service_port_number"), p.port.to_string());
            t.set(
                format!("{PREFIX}service_port_protocol"),
                p.protocol.as_str(),
            );
            t.set(format!("{PREFIX}service_type"), spec.type_.as_str());
            if spec.type_ == "ExternalName" {
                t.set(
                    format!("{PREFIX}service_external_name"),
                    spec.external_name.as_str(),
                );
            } else {
                t.set(
                    format!("{PREFIX}service_cluster_ip"),
                    spec.cluster_ip.as_str(),
                );
            }
            if spec.type_ == "LoadBalancer" {
                t.set(
                    format!("{PREFIX}service_loadbalancer_ip"),
                    load_balancer_ips(svc),
                );
            }
            t
        })
        .collect();
    group(
        service_source(&svc.metadata.namespace, &svc.metadata.name),
        &labels,
        &targets,
    )
}

fn load_balancer_ips(svc: &Service) -> String {
    let ips: Vec<&str> = svc
        .status
        .load_balancer
        .ingress
        .iter()
        .map(|i| i.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if ips.is_empty() {
        svc.spec.load_balancer_ip.clone()
    } else {
        ips.join(",")
    }
}

// ---- ingress ----

pub(crate) fn ingress_source(namespace: &str, name: &str) -> String {
    format!("ingress/{namespace}/{name}")
}

pub(crate) fn build_ingress(ing: &Ingress, lk: &Lookups) -> TargetGroup {
    let mut labels = Ls::default();
    labels.set(NAMESPACE, ing.metadata.namespace.as_str());
    if let Some(class) = &ing.spec.ingress_class_name {
        labels.set(format!("{PREFIX}ingress_class_name"), class.as_str());
    }
    add_object_meta(&mut labels, &ing.metadata, "ingress");
    add_namespace_meta(&mut labels, lk, &ing.metadata.namespace);

    let tls_hosts: Vec<&str> = ing
        .spec
        .tls
        .iter()
        .flat_map(|t| t.hosts.iter().map(String::as_str))
        .collect();
    let mut targets = Vec::new();
    for rule in &ing.spec.rules {
        let scheme = if tls_hosts
            .iter()
            .any(|pattern| matches_host_pattern(pattern, &rule.host))
        {
            "https"
        } else {
            "http"
        };
        // No HTTP section means the whole host: path "/".
        let paths: Vec<&str> = match &rule.http {
            None => vec!["/"],
            Some(h) => h
                .paths
                .iter()
                .map(|p| {
                    if p.path.is_empty() {
                        "/"
                    } else {
                        p.path.as_str()
                    }
                })
                .collect(),
        };
        for path in paths {
            let mut t = Ls::default();
            t.set("__address__", rule.host.as_str());
            t.set(format!("{PREFIX}ingress_scheme"), scheme);
            t.set(format!("{PREFIX}ingress_host"), rule.host.as_str());
            t.set(format!("{PREFIX}ingress_path"), path);
            targets.push(t);
        }
    }
    group(
        ingress_source(&ing.metadata.namespace, &ing.metadata.name),
        &labels,
        &targets,
    )
}

/// A TLS host entry covers a rule host when equal, or when it is a
/// `*.suffix` wildcard over exactly one leading label.
fn matches_host_pattern(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match host.split_once('.') {
        Some((_, rest)) => rest == suffix,
        None => false,
    }
}

// ---- endpoints / endpointslice: pod-backed targets ----

/// Pods seen behind an endpoints object, with the ports already targeted.
#[derive(Default)]
struct SeenPods<'a> {
    by_key: BTreeMap<String, (&'a Pod, Vec<i32>)>,
}

fn resolve_pod<'a>(
    lk: &Lookups<'a>,
    target_ref: Option<&super::objects::ObjectReference>,
) -> Option<&'a Pod> {
    let r = target_ref.filter(|r| r.kind == "Pod")?;
    lk.pods.get(&format!("{}/{}", r.namespace, r.name))
}

/// Labels of the container port matching an endpoint port, if any. The
/// endpoints role labels the endpoint port's protocol, the endpointslice
/// role the container port's (as Prometheus does).
fn matching_container_labels(t: &mut Ls, pod: &Pod, port: i32, endpoint_protocol: Option<&str>) {
    for (c, init) in all_containers(pod) {
        if let Some(cp) = c.ports.iter().find(|cp| cp.container_port == port) {
            t.set(format!("{PREFIX}pod_container_name"), c.name.as_str());
            t.set(format!("{PREFIX}pod_container_image"), c.image.as_str());
            t.set(format!("{PREFIX}pod_container_port_name"), cp.name.as_str());
            t.set(
                format!("{PREFIX}pod_container_port_number"),
                port.to_string(),
            );
            t.set(
                format!("{PREFIX}pod_container_port_protocol"),
                endpoint_protocol.unwrap_or(cp.protocol.as_str()),
            );
            t.set(format!("{PREFIX}pod_container_init"), init.to_string());
            return;
        }
    }
}

/// One target per container port of each seen pod that no endpoint port
/// covered, as Prometheus adds them.
fn unseen_container_ports(seen: &SeenPods, lk: &Lookups, targets: &mut Vec<Ls>) {
    for (pod, ports) in seen.by_key.values() {
        if pod.status.pod_ip.is_empty() {
            continue;
        }
        for (c, init) in all_containers(pod) {
            for cp in &c.ports {
                if ports.contains(&cp.container_port) {
                    continue;
                }
                let mut t = Ls::default();
                t.set(
                    "__address__",
                    join_host_port(&pod.status.pod_ip, cp.container_port),
                );
                t.set(format!("{PREFIX}pod_container_name"), c.name.as_str());
                t.set(format!("{PREFIX}pod_container_image"), c.image.as_str());
                t.set(format!("{PREFIX}pod_container_port_name"), cp.name.as_str());
                t.set(
                    format!("{PREFIX}pod_container_port_number"),
                    cp.container_port.to_string(),
                );
                t.set(
                    format!("{PREFIX}pod_container_port_protocol"),
                    cp.protocol.as_str(),
                );
                t.set(format!("{PREFIX}pod_container_init"), init.to_string());
                t.extend(&pod_labels(pod, lk));
                targets.push(t);
            }
        }
    }
}

pub(crate) fn endpoints_source(namespace: &str, name: &str) -> String {
    format!("endpoints/{namespace}/{name}")
}

pub(crate) fn build_endpoints(eps: &Endpoints, lk: &Lookups) -> TargetGroup {
    let ns = eps.metadata.namespace.as_str();
    let mut labels = Ls::default();
    labels.set(NAMESPACE, ns);
    if let Some(svc) = lk.services.get(&format!("{ns}/{}", eps.metadata.name)) {
        labels.extend(&service_labels(svc));
    }
    add_object_meta(&mut labels, &eps.metadata, "endpoints");
    add_namespace_meta(&mut labels, lk, ns);

    let mut seen = SeenPods::default();
    let mut targets = Vec::new();
    for subset in &eps.subsets {
        for port in &subset.ports {
            for addr in &subset.addresses {
                targets.push(endpoint_target(addr, port, "true", lk, &mut seen));
            }
            for addr in &subset.not_ready_addresses {
                targets.push(endpoint_target(addr, port, "false", lk, &mut seen));
            }
        }
    }
    unseen_container_ports(&seen, lk, &mut targets);
    group(endpoints_source(ns, &eps.metadata.name), &labels, &targets)
}

fn endpoint_target<'a>(
    addr: &EndpointAddress,
    port: &EndpointPort,
    ready: &str,
    lk: &Lookups<'a>,
    seen: &mut SeenPods<'a>,
) -> Ls {
    let mut t = Ls::default();
    t.set("__address__", join_host_port(&addr.ip, port.port));
    t.set(format!("{PREFIX}endpoint_port_name"), port.name.as_str());
    t.set(
        format!("{PREFIX}endpoint_port_protocol"),
        port.protocol.as_str(),
    );
    t.set(format!("{PREFIX}endpoint_ready"), ready);
    if let Some(r) = &addr.target_ref {
        t.set(
            format!("{PREFIX}endpoint_address_target_kind"),
            r.kind.as_str(),
        );
        t.set(
            format!("{PREFIX}endpoint_address_target_name"),
            r.name.as_str(),
        );
    }
    if let Some(n) = &addr.node_name {
        t.set(format!("{PREFIX}endpoint_node_name"), n.as_str());
    }
    t.set(format!("{PREFIX}endpoint_hostname"), addr.hostname.as_str());
    let node_ref = match (&addr.node_name, &addr.target_ref) {
        (Some(n), _) => Some(n.as_str()),
        (None, Some(r)) if r.kind == "Node" => Some(r.name.as_str()),
        _ => None,
    };
    add_node_meta(&mut t, lk, node_ref);
    if let Some(pod) = resolve_pod(lk, addr.target_ref.as_ref()) {
        note_seen(seen, pod, Some(port.port));
        t.extend(&pod_labels(pod, lk));
        matching_container_labels(&mut t, pod, port.port, Some(&port.protocol));
    }
    t
}

fn note_seen<'a>(seen: &mut SeenPods<'a>, pod: &'a Pod, port: Option<i32>) {
    let entry = seen
        .by_key
        .entry(pod.metadata.key())
        .or_insert_with(|| (pod, Vec::new()));
    if let Some(p) = port {
        entry.1.push(p);
    }
}

pub(crate) fn endpointslice_source(namespace: &str, name: &str) -> String {
    format!("endpointslice/{namespace}/{name}")
}

/// The service an EndpointSlice belongs to (its
/// `kubernetes.io/service-name` label).
pub(crate) fn slice_service_key(slice: &EndpointSlice) -> Option<String> {
    slice
        .metadata
        .labels
        .get("kubernetes.io/service-name")
        .map(|svc| format!("{}/{svc}", slice.metadata.namespace))
}

pub(crate) fn build_endpointslice(slice: &EndpointSlice, lk: &Lookups) -> TargetGroup {
    let ns = slice.metadata.namespace.as_str();
    let mut labels = Ls::default();
    labels.set(NAMESPACE, ns);
    labels.set(
        format!("{PREFIX}endpointslice_address_type"),
        slice.address_type.as_str(),
    );
    add_object_meta(&mut labels, &slice.metadata, "endpointslice");
    let svc = slice_service_key(slice).and_then(|k| lk.services.get(&k));
    if let Some(svc) = svc {
        labels.extend(&service_labels(svc));
    }
    add_namespace_meta(&mut labels, lk, ns);
    let source = endpointslice_source(ns, &slice.metadata.name);
    if svc.is_some_and(|s| non_primary_ip_family(s, slice)) {
        return group(source, &labels, &[]);
    }

    let mut seen = SeenPods::default();
    let mut targets = Vec::new();
    for ep in &slice.endpoints {
        for port in &slice.ports {
            for addr in &ep.addresses {
                targets.push(slice_target(addr, ep, port, lk, &mut seen));
            }
        }
    }
    unseen_container_ports(&seen, lk, &mut targets);
    group(source, &labels, &targets)
}

/// A dual-stack service gets one slice per family; only the slices of its
/// primary family become targets.
fn non_primary_ip_family(svc: &Service, slice: &EndpointSlice) -> bool {
    let dual = matches!(
        svc.spec.ip_family_policy.as_deref(),
        Some("PreferDualStack" | "RequireDualStack")
    );
    match svc.spec.ip_families.first() {
        Some(primary) if dual => *primary != slice.address_type,
        _ => false,
    }
}

fn slice_target<'a>(
    addr: &str,
    ep: &SliceEndpoint,
    port: &SlicePort,
    lk: &Lookups<'a>,
    seen: &mut SeenPods<'a>,
) -> Ls {
    let mut t = Ls::default();
    let address = match port.port {
        Some(p) => join_host_port(addr, p),
        None => addr.to_string(),
    };
    t.set("__address__", address);
    let opt = |t: &mut Ls, name: &str, v: &Option<String>| {
        if let Some(v) = v {
            t.set(format!("{PREFIX}{name}"), v.as_str());
        }
    };
    opt(&mut t, "endpointslice_port_name", &port.name);
    opt(&mut t, "endpointslice_port_protocol", &port.protocol);
    if let Some(p) = port.port {
        t.set(format!("{PREFIX}endpointslice_port"), p.to_string());
    }
    opt(
        &mut t,
        "endpointslice_port_app_protocol",
        &port.app_protocol,
    );
    let cond = &ep.conditions;
    for (name, v) in [
        ("ready", cond.ready),
        ("serving", cond.serving),
        ("terminating", cond.terminating),
    ] {
        if let Some(v) = v {
            t.set(
                format!("{PREFIX}endpointslice_endpoint_conditions_{name}"),
                v.to_string(),
            );
        }
    }
    opt(&mut t, "endpointslice_endpoint_hostname", &ep.hostname);
    if let Some(r) = &ep.target_ref {
        t.set(
            format!("{PREFIX}endpointslice_address_target_kind"),
            r.kind.as_str(),
        );
        t.set(
            format!("{PREFIX}endpointslice_address_target_name"),
            r.name.as_str(),
        );
    }
    opt(&mut t, "endpointslice_endpoint_node_name", &ep.node_name);
    opt(&mut t, "endpointslice_endpoint_zone", &ep.zone);
    for (k, v) in &ep.deprecated_topology {
        let ln = sanitize_label_name(k);
        t.set(
            format!("{PREFIX}endpointslice_endpoint_topology_{ln}"),
            v.as_str(),
        );
        t.set(
            format!("{PREFIX}endpointslice_endpoint_topology_present_{ln}"),
            "true",
        );
    }
    let node_ref = match &ep.target_ref {
        Some(r) if r.kind == "Node" => Some(r.name.as_str()),
        _ => ep.node_name.as_deref(),
    };
    add_node_meta(&mut t, lk, node_ref);
    if let Some(pod) = resolve_pod(lk, ep.target_ref.as_ref()) {
        note_seen(seen, pod, port.port);
        t.extend(&pod_labels(pod, lk));
        if let Some(p) = port.port {
            matching_container_labels(&mut t, pod, p, None);
        }
    }
    t
}
