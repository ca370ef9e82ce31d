//! `kubernetes_sd_configs`: targets from the Kubernetes API, watched, for
//! the roles node, pod, service, endpoints, endpointslice and ingress.
//!
//! Behaviour follows Prometheus's `discovery/kubernetes` (kubernetes.go for
//! the watches per role, selectors, namespaces and `attach_metadata`;
//! pod.go, node.go, service.go, ingress.go, endpoints.go, endpointslice.go
//! for the groups; label lists in configuration.md `<kubernetes_sd_config>`),
//! but without client-go: `watch` is a small list+watch client over the
//! shared reqwest client, `connect` resolves in-cluster / kubeconfig /
//! `api_server` access, `objects` decodes only the fields that become
//! labels, and `targets` builds the groups.
//!
//! Design, for memory: one task per provider owns every store. Objects are
//! kept only where a later change elsewhere needs them again: pods and
//! services behind endpoints/endpointslices, the primary objects when
//! `attach_metadata` can force a rebuild, and node/namespace *metadata*
//! only. In the common pod/service/ingress/node roles without
//! `attach_metadata`, each object is turned into its target group and
//! dropped; what stays is the group (shared with the manager through
//! `Labels`' reference-counted buffers) and its key.
//!
//! Like Prometheus (which waits for informer caches to sync), nothing is
//! reported until every list+watch has delivered its first full list;
//! after that, changes are coalesced and the complete group list is sent
//! to the manager at most every [`REPORT_INTERVAL`].

mod connect;
mod exec;
mod objects;
mod targets;
mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tributary_config::{KubernetesAttachMetadata, KubernetesRole, KubernetesSdConfig};

use self::objects::{
    Controlled, EndpointSlice, Endpoints, Ingress, Meta, Namespace, Node, Object, Pod, Service,
};
use self::targets::Lookups;
use self::watch::{Event, ReflectorCtx, Resource, Sink, WatchSpec};
use crate::group::TargetGroup;
use crate::metrics::DiscoveryMetrics;
use crate::refresh::ProviderCtx;

/// Least time between two reports to the manager while objects churn.
const REPORT_INTERVAL: Duration = Duration::from_millis(100);
/// Messages a reflector may queue before it waits for the state task.
const CHANNEL_DEPTH: usize = 1024;

/// One decoded change, by object kind.
enum Change {
    Pod(Event<Pod>),
    Node(Event<Node>),
    Service(Event<Service>),
    Endpoints(Event<Endpoints>),
    EndpointSlice(Event<EndpointSlice>),
    Ingress(Event<Ingress>),
    Namespace(Event<Namespace>),
    ReplicaSet(Event<Controlled>),
    Job(Event<Controlled>),
}

/// Object kinds, for metrics and dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pod,
    Node,
    Service,
    Endpoints,
    EndpointSlice,
    Ingress,
    Namespace,
    ReplicaSet,
    Job,
}

impl Kind {
    /// The `role` label of `prometheus_sd_kubernetes_events_total`.
    fn role_label(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslice",
            Kind::Ingress => "ingress",
            Kind::Namespace => "namespace",
            Kind::ReplicaSet => "replicaset",
            Kind::Job => "job",
        }
    }
}

/// Runs one `kubernetes_sd_configs` entry until cancelled.
pub(crate) async fn run(ctx: ProviderCtx, cfg: KubernetesSdConfig) {
    let mut backoff = Duration::from_secs(1);
    let conn = loop {
        match connect::connect(&cfg).await {
            Ok(c) => break c,
            Err(e) => {
                ctx.count_failure();
                tracing::error!(job = %ctx.job, err = %e, "Cannot create Kubernetes discovery");
                let _ = ctx.report(Err(e.to_string())).await;
                if !e.is_transient() {
                    return;
                }
                // A failing credential plugin may recover: retry, backing off.
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    let namespaces = watched_namespaces(&cfg, conn.own_namespace.as_deref());
    let rctx = ReflectorCtx {
        api: Arc::new(conn.api),
        cancel: ctx.cancel.clone(),
        failures: ctx.metrics.kubernetes_failures.clone(),
    };
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let mut spawner = Spawner {
        rctx,
        tx,
        cfg: &cfg,
        scopes: Vec::new(),
    };
    spawner.spawn_role(&namespaces);
    let scopes = spawner.scopes;
    let state = State::new(&cfg, scopes.len());
    drive(ctx, state, rx).await;
}

/// The namespaces to watch; `[""]` (all) when none are configured.
fn watched_namespaces(cfg: &KubernetesSdConfig, own: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for ns in cfg.namespaces.names.iter().map(String::as_str).chain(own) {
        if !out.iter().any(|n| n == ns) {
            out.push(ns.to_string());
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// Starts the reflectors a role needs (kubernetes.go `Run`).
struct Spawner<'a> {
    rctx: ReflectorCtx,
    tx: mpsc::Sender<(usize, Change)>,
    cfg: &'a KubernetesSdConfig,
    /// Kind per reflector id.
    scopes: Vec<Kind>,
}

impl Spawner<'_> {
    fn spawn<T: Object>(
        &mut self,
        kind: Kind,
        resource: Resource,
        namespace: &str,
        selector_role: Option<KubernetesRole>,
        wrap: fn(Event<T>) -> Change,
    ) {
        let (label, field) = selector_role.map_or(("", ""), |r| self.cfg.selector_for(r));
        let spec = WatchSpec {
            resource,
            namespace: namespace.to_string(),
            label_selector: label.to_string(),
            field_selector: field.to_string(),
        };
        let sink = Sink {
            id: self.scopes.len(),
            tx: self.tx.clone(),
            wrap,
        };
        self.scopes.push(kind);
        tokio::spawn(watch::reflect(self.rctx.clone(), spec, sink));
    }

    fn spawn_role(&mut self, namespaces: &[String]) {
        use KubernetesRole as R;
        let attach = self.cfg.attach_metadata;
        let role = self.cfg.role;
        if role == R::Node || (attach.node && role != R::Service && role != R::Ingress) {
            self.spawn(Kind::Node, watch::NODES, "", Some(R::Node), Change::Node);
        }
        if attach.namespace && role != R::Node {
            self.spawn(
                Kind::Namespace,
                watch::NAMESPACES,
                "",
                None,
                Change::Namespace,
            );
        }
        for ns in namespaces {
            match role {
                R::Node => {}
                R::Pod => self.spawn(Kind::Pod, watch::PODS, ns, Some(R::Pod), Change::Pod),
                R::Service => self.spawn(
                    Kind::Service,
                    watch::SERVICES,
                    ns,
                    Some(R::Service),
                    Change::Service,
                ),
                R::Ingress => self.spawn(
                    Kind::Ingress,
                    watch::INGRESSES,
                    ns,
                    Some(R::Ingress),
                    Change::Ingress,
                ),
                R::Endpoints | R::EndpointSlice => {
                    if role == R::Endpoints {
                        self.spawn(
                            Kind::Endpoints,
                            watch::ENDPOINTS,
                            ns,
                            Some(R::Endpoints),
                            Change::Endpoints,
                        );
                    } else {
                        self.spawn(
                            Kind::EndpointSlice,
                            watch::ENDPOINTSLICES,
                            ns,
                            Some(R::EndpointSlice),
                            Change::EndpointSlice,
                        );
                    }
                    self.spawn(
                        Kind::Service,
                        watch::SERVICES,
                        ns,
                        Some(R::Service),
                        Change::Service,
                    );
                    self.spawn(Kind::Pod, watch::PODS, ns, Some(R::Pod), Change::Pod);
                }
            }
            // Pod controllers' owners (kubernetes.go: ReplicaSet and Job
            // informers per namespace for the pod-backed roles).
            if matches!(role, R::Pod | R::Endpoints | R::EndpointSlice) {
                if attach.deployment {
                    let wrap: fn(Event<Controlled>) -> Change = Change::ReplicaSet;
                    self.spawn(Kind::ReplicaSet, watch::REPLICASETS, ns, None, wrap);
                }
                if attach.cronjob {
                    let wrap: fn(Event<Controlled>) -> Change = Change::Job;
                    self.spawn(Kind::Job, watch::JOBS, ns, None, wrap);
                }
            }
        }
    }
}

/// The objects kept for rebuilding groups.
#[derive(Default)]
struct Stores {
    pods: HashMap<String, Pod>,
    services: HashMap<String, Service>,
    endpoints: HashMap<String, Endpoints>,
    slices: HashMap<String, EndpointSlice>,
    ingresses: HashMap<String, Ingress>,
    /// Node metadata by name (`attach_metadata.node`).
    nodes: HashMap<String, Meta>,
    /// Namespace metadata by name (`attach_metadata.namespace`).
    namespaces: HashMap<String, Meta>,
    /// `ns/replicaset` → the Deployment controlling it
    /// (`attach_metadata.deployment`); ReplicaSets without one are absent.
    deployments: HashMap<String, String>,
    /// `ns/job` → the CronJob controlling it (`attach_metadata.cronjob`).
    cronjobs: HashMap<String, String>,
}

/// Everything one provider task owns.
struct State {
    role: KubernetesRole,
    attach: KubernetesAttachMetadata,
    /// Keep primary objects of the pod/service/ingress roles (only when
    /// attached metadata can change under them).
    keep_primary: bool,
    stores: Stores,
    /// Object keys per reflector, to find what a re-list dropped.
    keys: Vec<HashSet<String>>,
    synced: Vec<bool>,
    /// Primary keys whose groups must be rebuilt from the stores.
    pending: HashSet<String>,
    /// Rebuild every primary (after a dependency re-list).
    rebuild_all: bool,
    groups: BTreeMap<String, TargetGroup>,
    dirty: bool,
}

impl State {
    fn new(cfg: &KubernetesSdConfig, reflectors: usize) -> State {
        let a = cfg.attach_metadata;
        State {
            role: cfg.role,
            attach: a,
            keep_primary: a.namespace
                || ((a.node || a.deployment || a.cronjob) && cfg.role == KubernetesRole::Pod),
            stores: Stores::default(),
            keys: vec![HashSet::new(); reflectors],
            synced: vec![false; reflectors],
            pending: HashSet::new(),
            rebuild_all: false,
            groups: BTreeMap::new(),
            dirty: false,
        }
    }

    fn all_synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    /// Applies one reflector message.
    fn handle(&mut self, id: usize, change: Change, metrics: &DiscoveryMetrics) {
        match change {
            Change::Pod(e) => self.dispatch(id, Kind::Pod, e, metrics, State::apply_pod),
            Change::Node(e) => self.dispatch(id, Kind::Node, e, metrics, State::apply_node),
            Change::Service(e) => {
                self.dispatch(id, Kind::Service, e, metrics, State::apply_service)
            }
            Change::Endpoints(e) => {
                self.dispatch(id, Kind::Endpoints, e, metrics, State::apply_endpoints)
            }
            Change::EndpointSlice(e) => {
                self.dispatch(id, Kind::EndpointSlice, e, metrics, State::apply_slice)
            }
            Change::Ingress(e) => {
                self.dispatch(id, Kind::Ingress, e, metrics, State::apply_ingress)
            }
            Change::Namespace(e) => {
                self.dispatch(id, Kind::Namespace, e, metrics, State::apply_namespace)
            }
            Change::ReplicaSet(e) => {
                self.dispatch(id, Kind::ReplicaSet, e, metrics, State::apply_replicaset)
            }
            Change::Job(e) => self.dispatch(id, Kind::Job, e, metrics, State::apply_job),
        }
    }

    /// Turns an event into applies and deletes, tracking keys and counting
    /// `prometheus_sd_kubernetes_events_total{role,event}`.
    fn dispatch<T: Object>(
        &mut self,
        id: usize,
        kind: Kind,
        event: Event<T>,
        metrics: &DiscoveryMetrics,
        apply: fn(&mut State, T),
    ) {
        let count = |event: &str| {
            // Like Prometheus, only the role's own informers count events.
            if !matches!(kind, Kind::Namespace | Kind::ReplicaSet | Kind::Job) {
                metrics
                    .kubernetes_events
                    .get_or_create(&vec![
                        ("role".into(), kind.role_label().into()),
                        ("event".into(), event.into()),
                    ])
                    .inc();
            }
        };
        let is_dependency = !self.is_primary(kind);
        let Some(keys) = self.keys.get_mut(id) else {
            return;
        };
        match event {
            Event::Applied(obj) => {
                count(if keys.insert(obj.meta().key()) {
                    "add"
                } else {
                    "update"
                });
                apply(self, obj);
            }
            Event::Deleted(obj) => {
                let key = obj.meta().key();
                keys.remove(&key);
                count("delete");
                self.delete(kind, &key);
            }
            Event::Relisted(items) => {
                let fresh: HashSet<String> = items.iter().map(|o| o.meta().key()).collect();
                let removed: Vec<String> = keys
                    .iter()
                    .filter(|k| !fresh.contains(*k))
                    .cloned()
                    .collect();
                let old = std::mem::replace(keys, fresh);
                // A dependency re-list rebuilds every primary once, instead
                // of scanning for dependents object by object.
                if is_dependency {
                    self.rebuild_all = true;
                }
                for key in removed {
                    count("delete");
                    self.delete(kind, &key);
                }
                for obj in items {
                    count(if old.contains(&obj.meta().key()) {
                        "update"
                    } else {
                        "add"
                    });
                    apply(self, obj);
                }
                if let Some(s) = self.synced.get_mut(id) {
                    *s = true;
                }
                self.dirty = true;
            }
        }
    }

    fn is_primary(&self, kind: Kind) -> bool {
        use KubernetesRole as R;
        matches!(
            (self.role, kind),
            (R::Pod, Kind::Pod)
                | (R::Node, Kind::Node)
                | (R::Service, Kind::Service)
                | (R::Ingress, Kind::Ingress)
                | (R::Endpoints, Kind::Endpoints)
                | (R::EndpointSlice, Kind::EndpointSlice)
        )
    }

    fn lookups(stores: &Stores, attach: KubernetesAttachMetadata) -> Lookups<'_> {
        Lookups {
            pods: &stores.pods,
            services: &stores.services,
            nodes: attach.node.then_some(&stores.nodes),
            namespaces: attach.namespace.then_some(&stores.namespaces),
            attach_job: attach.job,
            deployments: attach.deployment.then_some(&stores.deployments),
            cronjobs: attach.cronjob.then_some(&stores.cronjobs),
        }
    }

    /// Only namespace metadata applies to the service and ingress roles.
    fn namespace_only(&self) -> KubernetesAttachMetadata {
        KubernetesAttachMetadata {
            namespace: self.attach.namespace,
            ..KubernetesAttachMetadata::default()
        }
    }

    fn set_group(&mut self, source: String, group: Option<TargetGroup>) {
        match group {
            Some(g) => {
                if self.groups.get(&source) != Some(&g) {
                    self.groups.insert(source, g);
                    self.dirty = true;
                }
            }
            None => {
                if self.groups.remove(&source).is_some() {
                    self.dirty = true;
                }
            }
        }
    }

    /// Marks dependents for rebuild, unless a full rebuild is coming.
    fn mark(&mut self, keys: impl IntoIterator<Item = String>) {
        if !self.rebuild_all {
            self.pending.extend(keys);
        }
    }

    // ---- applies ----

    fn apply_pod(&mut self, pod: Pod) {
        let key = pod.metadata.key();
        if self.role == KubernetesRole::Pod {
            let lk = Self::lookups(&self.stores, self.attach);
            let group = targets::build_pod(&pod, &lk);
            self.set_group(
                targets::pod_source(&pod.metadata.namespace, &pod.metadata.name),
                group,
            );
            if self.keep_primary {
                self.stores.pods.insert(key, pod);
            }
            return;
        }
        self.stores.pods.insert(key.clone(), pod);
        let deps = self.endpoints_referencing_pod(&key);
        self.mark(deps);
    }

    fn apply_node(&mut self, node: Node) {
        if self.role == KubernetesRole::Node {
            if let Some(g) = targets::build_node(&node) {
                self.set_group(targets::node_source(&node.metadata.name), Some(g));
            }
            return;
        }
        let name = node.metadata.name.clone();
        self.stores.nodes.insert(name.clone(), node.metadata);
        let deps = self.dependents_of_node(&name);
        self.mark(deps);
    }

    fn apply_service(&mut self, svc: Service) {
        let key = svc.metadata.key();
        match self.role {
            KubernetesRole::Service => {
                let lk = Self::lookups(&self.stores, self.namespace_only());
                let g = targets::build_service(&svc, &lk);
                self.set_group(g.source.clone(), Some(g));
                if self.keep_primary {
                    self.stores.services.insert(key, svc);
                }
            }
            _ => {
                self.stores.services.insert(key.clone(), svc);
                let deps = self.dependents_of_service(&key);
                self.mark(deps);
            }
        }
    }

    fn apply_ingress(&mut self, ing: Ingress) {
        let lk = Self::lookups(&self.stores, self.namespace_only());
        let g = targets::build_ingress(&ing, &lk);
        self.set_group(g.source.clone(), Some(g));
        if self.keep_primary {
            self.stores.ingresses.insert(ing.metadata.key(), ing);
        }
    }

    fn apply_endpoints(&mut self, eps: Endpoints) {
        let key = eps.metadata.key();
        self.stores.endpoints.insert(key.clone(), eps);
        self.pending.insert(key);
    }

    fn apply_slice(&mut self, slice: EndpointSlice) {
        let key = slice.metadata.key();
        self.stores.slices.insert(key.clone(), slice);
        self.pending.insert(key);
    }

    fn apply_namespace(&mut self, ns: Namespace) {
        let name = ns.metadata.name.clone();
        self.stores.namespaces.insert(name.clone(), ns.metadata);
        let deps = self.primaries_in_namespace(&name);
        self.mark(deps);
    }

    fn apply_replicaset(&mut self, rs: Controlled) {
        self.apply_controlled(rs, "ReplicaSet", "Deployment", |s| &mut s.deployments);
    }

    fn apply_job(&mut self, job: Controlled) {
        self.apply_controlled(job, "Job", "CronJob", |s| &mut s.cronjobs);
    }

    /// Records the name of the `owner_kind` controller of a ReplicaSet or
    /// Job (the only thing kept of it) and re-derives the pods it owns when
    /// that name changed.
    fn apply_controlled(
        &mut self,
        obj: Controlled,
        kind: &str,
        owner_kind: &str,
        store: fn(&mut Stores) -> &mut HashMap<String, String>,
    ) {
        let owner = obj
            .metadata
            .controller()
            .filter(|o| o.kind == owner_kind)
            .map(|o| o.name.clone());
        let key = obj.metadata.key();
        let store = store(&mut self.stores);
        let changed = match owner {
            Some(name) => store.insert(key.clone(), name.clone()) != Some(name),
            None => store.remove(&key).is_some(),
        };
        if changed {
            let deps = self.dependents_of_owner(&key, kind);
            self.mark(deps);
        }
    }

    fn delete(&mut self, kind: Kind, key: &str) {
        let primary = self.is_primary(kind);
        match kind {
            Kind::Pod => {
                self.stores.pods.remove(key);
                if primary {
                    self.set_group(format!("pod/{key}"), None);
                } else {
                    let deps = self.endpoints_referencing_pod(key);
                    self.mark(deps);
                }
            }
            Kind::Node => {
                if primary {
                    self.set_group(targets::node_source(key), None);
                } else {
                    self.stores.nodes.remove(key);
                    let deps = self.dependents_of_node(key);
                    self.mark(deps);
                }
            }
            Kind::Service => {
                self.stores.services.remove(key);
                if primary {
                    self.set_group(format!("svc/{key}"), None);
                } else {
                    let deps = self.dependents_of_service(key);
                    self.mark(deps);
                }
            }
            Kind::Ingress => {
                self.stores.ingresses.remove(key);
                self.set_group(format!("ingress/{key}"), None);
            }
            Kind::Endpoints => {
                self.stores.endpoints.remove(key);
                self.set_group(format!("endpoints/{key}"), None);
            }
            Kind::EndpointSlice => {
                self.stores.slices.remove(key);
                self.set_group(format!("endpointslice/{key}"), None);
            }
            Kind::Namespace => {
                self.stores.namespaces.remove(key);
                let deps = self.primaries_in_namespace(key);
                self.mark(deps);
            }
            Kind::ReplicaSet => {
                if self.stores.deployments.remove(key).is_some() {
                    let deps = self.dependents_of_owner(key, "ReplicaSet");
                    self.mark(deps);
                }
            }
            Kind::Job => {
                if self.stores.cronjobs.remove(key).is_some() {
                    let deps = self.dependents_of_owner(key, "Job");
                    self.mark(deps);
                }
            }
        }
    }

    // ---- dependents ----

    fn endpoints_referencing_pod(&self, pod_key: &str) -> Vec<String> {
        let refers = |r: &Option<objects::ObjectReference>| {
            r.as_ref().is_some_and(|r| {
                r.kind == "Pod"
                    && pod_key
                        .strip_prefix(r.namespace.as_str())
                        .and_then(|k| k.strip_prefix('/'))
                        == Some(r.name.as_str())
            })
        };
        match self.role {
            KubernetesRole::Endpoints => self
                .stores
                .endpoints
                .iter()
                .filter(|(_, e)| {
                    e.subsets.iter().any(|s| {
                        s.addresses
                            .iter()
                            .chain(&s.not_ready_addresses)
                            .any(|a| refers(&a.target_ref))
                    })
                })
                .map(|(k, _)| k.clone())
                .collect(),
            KubernetesRole::EndpointSlice => self
                .stores
                .slices
                .iter()
                .filter(|(_, s)| s.endpoints.iter().any(|e| refers(&e.target_ref)))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn dependents_of_service(&self, svc_key: &str) -> Vec<String> {
        match self.role {
            KubernetesRole::Endpoints => self
                .stores
                .endpoints
                .contains_key(svc_key)
                .then(|| svc_key.to_string())
                .into_iter()
                .collect(),
            KubernetesRole::EndpointSlice => self
                .stores
                .slices
                .iter()
                .filter(|(_, s)| targets::slice_service_key(s).as_deref() == Some(svc_key))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn dependents_of_node(&self, node: &str) -> Vec<String> {
        let on_node = |name: &Option<String>, r: &Option<objects::ObjectReference>| {
            name.as_deref() == Some(node)
                || r.as_ref()
                    .is_some_and(|r| r.kind == "Node" && r.name == node)
        };
        match self.role {
            KubernetesRole::Pod => self
                .stores
                .pods
                .iter()
                .filter(|(_, p)| p.spec.node_name == node)
                .map(|(k, _)| k.clone())
                .collect(),
            KubernetesRole::Endpoints => self
                .stores
                .endpoints
                .iter()
                .filter(|(_, e)| {
                    e.subsets.iter().any(|s| {
                        s.addresses
                            .iter()
                            .chain(&s.not_ready_addresses)
                            .any(|a| on_node(&a.node_name, &a.target_ref))
                    })
                })
                .map(|(k, _)| k.clone())
                .collect(),
            KubernetesRole::EndpointSlice => self
                .stores
                .slices
                .iter()
                .filter(|(_, s)| {
                    s.endpoints
                        .iter()
                        .any(|e| on_node(&e.node_name, &e.target_ref))
                })
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Primaries whose labels depend on the ReplicaSet or Job `owner_key`
    /// (`ns/name`): the pods it controls in the pod role; in the endpoints
    /// roles every primary of its namespace (pods are matched there through
    /// their addresses, so the namespace is the cheap, safe superset).
    fn dependents_of_owner(&self, owner_key: &str, owner_kind: &str) -> Vec<String> {
        let (ns, name) = owner_key.split_once('/').unwrap_or(("", owner_key));
        match self.role {
            KubernetesRole::Pod => self
                .stores
                .pods
                .iter()
                .filter(|(_, p)| {
                    p.metadata.namespace == ns
                        && p.metadata
                            .controller()
                            .is_some_and(|o| o.kind == owner_kind && o.name == name)
                })
                .map(|(k, _)| k.clone())
                .collect(),
            _ => self.primaries_in_namespace(ns),
        }
    }

    fn primary_keys(&self) -> Vec<String> {
        let s = &self.stores;
        match self.role {
            KubernetesRole::Pod => s.pods.keys().cloned().collect(),
            KubernetesRole::Service => s.services.keys().cloned().collect(),
            KubernetesRole::Ingress => s.ingresses.keys().cloned().collect(),
            KubernetesRole::Endpoints => s.endpoints.keys().cloned().collect(),
            KubernetesRole::EndpointSlice => s.slices.keys().cloned().collect(),
            KubernetesRole::Node => Vec::new(),
        }
    }

    fn primaries_in_namespace(&self, ns: &str) -> Vec<String> {
        let prefix = format!("{ns}/");
        self.primary_keys()
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .collect()
    }

    /// Rebuilds the groups of marked (or all) primaries from the stores.
    fn rebuild(&mut self) {
        let keys: Vec<String> = if std::mem::take(&mut self.rebuild_all) {
            self.pending.clear();
            self.primary_keys()
        } else {
            self.pending.drain().collect()
        };
        for key in keys {
            let lk = Self::lookups(&self.stores, self.attach);
            let (source, group) = match self.role {
                KubernetesRole::Pod => match self.stores.pods.get(&key) {
                    Some(p) => (format!("pod/{key}"), targets::build_pod(p, &lk)),
                    None => continue,
                },
                KubernetesRole::Service => match self.stores.services.get(&key) {
                    Some(s) => (format!("svc/{key}"), Some(targets::build_service(s, &lk))),
                    None => continue,
                },
                KubernetesRole::Ingress => match self.stores.ingresses.get(&key) {
                    Some(i) => (
                        format!("ingress/{key}"),
                        Some(targets::build_ingress(i, &lk)),
                    ),
                    None => continue,
                },
                KubernetesRole::Endpoints => match self.stores.endpoints.get(&key) {
                    Some(e) => (
                        format!("endpoints/{key}"),
                        Some(targets::build_endpoints(e, &lk)),
                    ),
                    None => continue,
                },
                KubernetesRole::EndpointSlice => match self.stores.slices.get(&key) {
                    Some(s) => (
                        format!("endpointslice/{key}"),
                        Some(targets::build_endpointslice(s, &lk)),
                    ),
                    None => continue,
                },
                KubernetesRole::Node => continue,
            };
            self.set_group(source, group);
        }
    }
}

/// The provider's event loop: apply changes, rebuild, report.
async fn drive(ctx: ProviderCtx, mut state: State, mut rx: mpsc::Receiver<(usize, Change)>) {
    let mut next_report = Instant::now();
    loop {
        let wait_for_report = state.dirty && state.all_synced();
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            msg = rx.recv() => {
                let Some((id, change)) = msg else { return };
                state.handle(id, change, &ctx.metrics);
                // Take whatever else is queued before rebuilding once.
                while let Ok((id, change)) = rx.try_recv() {
                    state.handle(id, change, &ctx.metrics);
                }
                state.rebuild();
            }
            _ = tokio::time::sleep_until(next_report), if wait_for_report => {}
        }
        if state.dirty && state.all_synced() && Instant::now() >= next_report {
            state.dirty = false;
            next_report = Instant::now() + REPORT_INTERVAL;
            let groups: Vec<TargetGroup> = state.groups.values().cloned().collect();
            if !ctx.report(Ok(groups)).await {
                return;
            }
        }
    }
}
