//! An EC2 query API double (`POST /`): `DescribeAvailabilityZones` from a
//! fixture and `DescribeInstances` in two pages (`NextToken=page2`), whose
//! bodies the test sets. It records every form body and any request whose
//! SigV4 `Authorization` header is malformed (for access key `AKIDTEST` in
//! us-east-1).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;

pub struct Ec2 {
    /// The first `DescribeInstances` page (should carry `<nextToken>page2`
    /// if `page2` is to be asked for).
    pub page1: String,
    pub page2: String,
    /// When set, every request answers 401 `AuthFailure`.
    pub fail: bool,
    /// Form bodies of every request.
    pub bodies: Vec<String>,
    /// Headers of requests with a malformed signature.
    pub bad_auth: Vec<String>,
}

impl Default for Ec2 {
    fn default() -> Self {
        Ec2 {
            page1: super::fixture("ec2_describe_instances_page1.xml"),
            page2: String::new(),
            fail: false,
            bodies: Vec::new(),
            bad_auth: Vec::new(),
        }
    }
}

pub type Shared = Arc<Mutex<Ec2>>;

fn auth_is_well_formed(headers: &HeaderMap) -> bool {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(day) = date.get(..8) else {
        return false;
    };
    let prefix = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDTEST/{day}/us-east-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
    );
    auth.strip_prefix(&prefix)
        .is_some_and(|sig| sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn api(State(s): State<Shared>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let mut s = s.lock();
    if !auth_is_well_formed(&headers) {
        s.bad_auth.push(format!("{headers:?}"));
    }
    s.bodies.push(body.clone());
    if s.fail {
        return (
            StatusCode::UNAUTHORIZED,
            super::fixture("ec2_error_auth.xml"),
        );
    }
    let xml = if body.contains("Action=DescribeAvailabilityZones") {
        super::fixture("ec2_describe_availability_zones.xml")
    } else if body.contains("NextToken=page2") {
        s.page2.clone()
    } else {
        s.page1.clone()
    };
    (StatusCode::OK, xml)
}

/// Serves on an ephemeral loopback port; returns `http://127.0.0.1:port`.
pub async fn serve(s: Shared) -> String {
    let app = Router::new().route("/", post(api)).with_state(s);
    let addr = super::spawn_serve(super::loopback_listener().await, app);
    format!("http://{addr}")
}

/// `(instance id, private IP, [(tag key, tag value)])`.
pub type Instance<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A one-page `DescribeInstances` answer: running instances in us-east-1a.
pub fn instances_page(instances: &[Instance<'_>]) -> String {
    let mut items = String::new();
    for (id, ip, tags) in instances {
        let tags: String = tags
            .iter()
            .map(|(k, v)| format!("<item><key>{k}</key><value>{v}</value></item>"))
            .collect();
        items.push_str(&format!(
            "<item><instanceId>{id}</instanceId><imageId>ami-1</imageId>\
             <instanceState><code>16</code><name>running</name></instanceState>\
             <instanceType>t3.micro</instanceType>\
             <placement><availabilityZone>us-east-1a</availabilityZone></placement>\
             <privateIpAddress>{ip}</privateIpAddress><architecture>x86_64</architecture>\
             <tagSet>{tags}</tagSet><networkInterfaceSet/></item>"
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>00000000-0000-4000-8000-000000000001</requestId><reservationSet><item>\
         <reservationId>r-1</reservationId><ownerId>123456789012</ownerId>\
         <instancesSet>{items}</instancesSet></item></reservationSet></DescribeInstancesResponse>"
    )
}
