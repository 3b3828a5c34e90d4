//! A stand-in for the Amazon MSK control plane, for the local stack only — never deployed.
//!
//! moto's MSK backend lacks the calls the autoscaler makes (and its timestamps have no time zone,
//! which the Rust SDK rejects), so this small HTTP server speaks the same REST/JSON as the MSK
//! API for one provisioned cluster backed by the local Kafka nodes, and the real `aws-sdk-kafka`
//! client talks to it: DescribeClusterV2, ListClusterOperationsV2, DescribeClusterOperationV2,
//! UpdateBrokerCount, ListNodes and GetBootstrapBrokers.
//!
//! UpdateBrokerCount behaves as MSK does where it matters: the request must carry the current
//! cluster version and a target that is a larger multiple of the AZ count; the cluster goes
//! UPDATING while the new broker nodes really start (in racks assigned round-robin over the AZs),
//! then ACTIVE with a new version, and the operation UPDATE_COMPLETE.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::{RACKS, Stack};

/// Client subnets of the stand-in cluster, one per AZ, in rack order.
pub const SUBNETS: [&str; 3] = ["subnet-az-a", "subnet-az-b", "subnet-az-c"];

#[derive(Debug, Clone)]
struct Operation {
    arn: String,
    state: &'static str,
    start: String,
    end: Option<String>,
}

#[derive(Debug)]
struct Cluster {
    arn: String,
    name: String,
    state: &'static str,
    version: u32,
    broker_ids: Vec<i32>,
    instance_type: String,
    operations: Vec<Operation>,
    created: String,
}

/// A running stand-in.
pub struct MskStandIn {
    pub endpoint: String,
    pub cluster_arn: String,
    cluster: Arc<Mutex<Cluster>>,
}

/// The ARN the stand-in gives the cluster called `name`.
pub fn cluster_arn(name: &str) -> String {
    format!(
        "arn:aws:kafka:us-east-1:123456789012:cluster/{name}/8f3e2c1a-0000-4000-8000-000000000001-1"
    )
}

impl MskStandIn {
    /// Serves on 127.0.0.1:`port` (0: any free port) a cluster called `name` made of
    /// `stack`'s current nodes.
    pub async fn start(
        stack: Arc<Mutex<Stack>>,
        name: &str,
        instance_type: &str,
        port: u16,
    ) -> Result<Self> {
        let broker_ids: Vec<i32> = stack
            .lock()
            .expect("stack lock")
            .nodes
            .iter()
            .map(|n| n.id)
            .collect();
        let cluster_arn = format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/{name}/8f3e2c1a-0000-4000-8000-000000000001-1"
        );
        let cluster = Arc::new(Mutex::new(Cluster {
            arn: cluster_arn.clone(),
            name: name.into(),
            state: "ACTIVE",
            version: 1,
            broker_ids,
            instance_type: instance_type.into(),
            operations: Vec::new(),
            created: timestamp(),
        }));
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let address: SocketAddr = listener.local_addr()?;
        let shared = (cluster.clone(), stack);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    break;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self {
            endpoint: format!("http://{address}"),
            cluster_arn,
            cluster,
        })
    }

    /// The cluster's state (`ACTIVE`, `UPDATING`) as the stand-in reports it.
    pub fn state(&self) -> &'static str {
        self.cluster.lock().expect("cluster lock").state
    }
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

type Shared = (Arc<Mutex<Cluster>>, Arc<Mutex<Stack>>);

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    if let Some(kind) = body.get("__type").and_then(Value::as_str) {
        response.headers_mut().insert(
            "x-amzn-errortype",
            kind.parse().expect("error type is ASCII"),
        );
    }
    response
}

fn error(status: StatusCode, kind: &str, message: String) -> Response<Full<Bytes>> {
    respond(status, json!({"__type": kind, "message": message}))
}

async fn handle(
    shared: Shared,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (cluster, stack) = shared;
    let response = match (method, segments.as_slice()) {
        (Method::GET, ["api", "v2", "clusters", arn]) => {
            with_cluster(&cluster, arn, describe_cluster)
        }
        (Method::GET, ["api", "v2", "clusters", arn, "operations"]) => {
            with_cluster(&cluster, arn, |c| {
                let list: Vec<Value> = c
                    .operations
                    .iter()
                    .rev()
                    .map(|o| operation_json(c, o))
                    .collect();
                respond(StatusCode::OK, json!({"clusterOperationInfoList": list}))
            })
        }
        (Method::GET, ["api", "v2", "operations", operation]) => {
            let c = cluster.lock().expect("cluster lock");
            match c.operations.iter().find(|o| o.arn == *operation) {
                Some(o) => respond(
                    StatusCode::OK,
                    json!({"clusterOperationInfo": operation_json(&c, o)}),
                ),
                None => error(
                    StatusCode::NOT_FOUND,
                    "NotFoundException",
                    format!("no operation {operation}"),
                ),
            }
        }
        (Method::GET, ["v1", "clusters", arn, "nodes"]) => with_cluster(&cluster, arn, list_nodes),
        (Method::GET, ["v1", "clusters", arn, "bootstrap-brokers"]) => {
            let bootstrap = stack.lock().expect("stack lock").bootstrap_servers();
            with_cluster(&cluster, arn, |_| {
                respond(StatusCode::OK, json!({"bootstrapBrokerString": bootstrap}))
            })
        }
        (Method::PUT, ["v1", "clusters", arn, "nodes", "count"]) => {
            update_broker_count(&cluster, &stack, arn, &body)
        }
        (method, _) => error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!("the MSK stand-in does not implement {method} {path}"),
        ),
    };
    Ok(response)
}

fn with_cluster(
    cluster: &Arc<Mutex<Cluster>>,
    arn: &str,
    answer: impl FnOnce(&Cluster) -> Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let c = cluster.lock().expect("cluster lock");
    if c.arn != arn {
        return error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!("no cluster {arn}"),
        );
    }
    answer(&c)
}

fn describe_cluster(c: &Cluster) -> Response<Full<Bytes>> {
    let mut info = json!({
        "clusterArn": c.arn,
        "clusterName": c.name,
        "clusterType": "PROVISIONED",
        "state": c.state,
        "currentVersion": format!("K{}", c.version),
        "creationTime": c.created,
        "provisioned": {
            "brokerNodeGroupInfo": {
                "brokerAZDistribution": "DEFAULT",
                "clientSubnets": SUBNETS,
                "instanceType": c.instance_type,
                "securityGroups": ["sg-local"]
            },
            "numberOfBrokerNodes": c.broker_ids.len(),
            "currentBrokerSoftwareInfo": {"kafkaVersion": "4.3.1"}
        }
    });
    if let Some(active) = c.operations.iter().find(|o| o.end.is_none()) {
        info["activeOperationArn"] = json!(active.arn);
    }
    respond(StatusCode::OK, json!({"clusterInfo": info}))
}

fn operation_json(c: &Cluster, o: &Operation) -> Value {
    let mut value = json!({
        "clusterArn": c.arn,
        "clusterType": "PROVISIONED",
        "operationArn": o.arn,
        "operationType": "INCREASE_BROKER_COUNT",
        "operationState": o.state,
        "startTime": o.start,
    });
    if let Some(end) = &o.end {
        value["endTime"] = json!(end);
    }
    value
}

fn list_nodes(c: &Cluster) -> Response<Full<Bytes>> {
    let nodes: Vec<Value> = c
        .broker_ids
        .iter()
        .map(|id| {
            json!({
                "nodeType": "BROKER",
                "nodeARN": format!("{}/broker/{id}", c.arn.replace(":cluster/", ":broker/")),
                "instanceType": c.instance_type,
                "addedToClusterTime": c.created,
                "brokerNodeInfo": {
                    "brokerId": f64::from(*id),
                    "clientSubnet": SUBNETS[(*id as usize - 1) % SUBNETS.len()],
                    "clientVpcIpAddress": "127.0.0.1",
                    "attachedENIId": format!("eni-{id}"),
                    "endpoints": ["127.0.0.1"]
                }
            })
        })
        .collect();
    respond(StatusCode::OK, json!({"nodeInfoList": nodes}))
}

fn update_broker_count(
    cluster: &Arc<Mutex<Cluster>>,
    stack: &Arc<Mutex<Stack>>,
    arn: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let bad = |message: String| error(StatusCode::BAD_REQUEST, "BadRequestException", message);
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return bad("the request body is not JSON".into());
    };
    let version = request
        .get("currentVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(target) = request
        .get("targetNumberOfBrokerNodes")
        .and_then(Value::as_i64)
    else {
        return bad("targetNumberOfBrokerNodes is required".into());
    };
    let (operation, new_ids) = {
        let mut c = cluster.lock().expect("cluster lock");
        if c.arn != arn {
            return error(
                StatusCode::NOT_FOUND,
                "NotFoundException",
                format!("no cluster {arn}"),
            );
        }
        if c.state != "ACTIVE" {
            return bad(format!(
                "the cluster is {}; only an ACTIVE cluster can be updated",
                c.state
            ));
        }
        if version != format!("K{}", c.version) {
            return bad(format!(
                "The request does not include the latest cluster version: current version is K{}, request has {version:?}",
                c.version
            ));
        }
        let current = c.broker_ids.len() as i64;
        if target <= current || target % SUBNETS.len() as i64 != 0 {
            return bad(format!(
                "targetNumberOfBrokerNodes must be larger than {current} and a multiple of the {} client subnets",
                SUBNETS.len()
            ));
        }
        let operation = Operation {
            arn: format!(
                "arn:aws:kafka:us-east-1:123456789012:cluster-operation/{}/{}",
                c.name,
                c.operations.len() + 1
            ),
            state: "UPDATE_IN_PROGRESS",
            start: timestamp(),
            end: None,
        };
        c.state = "UPDATING";
        c.operations.push(operation.clone());
        let first_new = c.broker_ids.iter().max().copied().unwrap_or(0) + 1;
        (
            operation,
            (first_new..first_new + (target - current) as i32).collect::<Vec<i32>>(),
        )
    };

    let (cluster_for_task, stack_for_task, operation_arn) =
        (cluster.clone(), stack.clone(), operation.arn.clone());
    tokio::spawn(async move {
        let started = tokio::task::spawn_blocking(move || -> Result<Vec<i32>> {
            let mut stack = stack_for_task.lock().expect("stack lock");
            for id in &new_ids {
                let rack = RACKS[(*id as usize - 1) % RACKS.len()];
                if stack.node(*id).is_err() {
                    stack.add_broker(*id, rack)?;
                }
            }
            Ok(new_ids)
        })
        .await;
        let mut c = cluster_for_task.lock().expect("cluster lock");
        let outcome = match started {
            Ok(Ok(ids)) => {
                c.broker_ids.extend(ids);
                c.version += 1;
                "UPDATE_COMPLETE"
            }
            other => {
                eprintln!("msk stand-in: starting brokers failed: {other:?}");
                "UPDATE_FAILED"
            }
        };
        c.state = "ACTIVE";
        if let Some(op) = c.operations.iter_mut().find(|o| o.arn == operation_arn) {
            op.state = outcome;
            op.end = Some(timestamp());
        }
    });
    respond(
        StatusCode::OK,
        json!({"clusterArn": arn, "clusterOperationArn": operation.arn}),
    )
}
