//! Prometheus text metrics: requests and latencies by device and status, plus gauges the node
//! registers (store size, live processes…), served by `hyperbuddy@1.0` at
//! `/~hyperbuddy@1.0/metrics`, where HyperBEAM operators look for them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Error, Message, Result, Value};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct DeviceStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

type Gauge = Box<dyn Fn() -> f64 + Send + Sync>;

/// The node's metrics.
#[derive(Default)]
pub struct Metrics {
    devices: Mutex<BTreeMap<String, DeviceStats>>,
    gauges: RwLock<Vec<(String, String, Gauge)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one answered request.
    pub fn record(&self, device: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Ok(mut d) = self.devices.lock() {
            let s = d.entry(device.to_owned()).or_default();
            *s.by_status.entry(status).or_default() += 1;
            s.count += 1;
            s.sum_seconds += secs;
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    s.buckets[i] += 1;
                }
            }
        }
    }

    /// Registers a gauge read at every scrape.
    pub fn gauge(&self, name: &str, help: &str, read: impl Fn() -> f64 + Send + Sync + 'static) {
        if let Ok(mut g) = self.gauges.write() {
            g.push((name.to_owned(), help.to_owned(), Box::new(read)));
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP ao_http_requests_total HTTP requests answered, by device and status.\n",
        );
        out.push_str("# TYPE ao_http_requests_total counter\n");
        let devices = self.devices.lock().map(|d| {
            d.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.by_status.clone(),
                        v.buckets,
                        v.count,
                        v.sum_seconds,
                    )
                })
                .collect::<Vec<_>>()
        });
        let devices = devices.unwrap_or_default();
        for (dev, by_status, ..) in &devices {
            for (status, n) in by_status {
                let _ = writeln!(
                    out,
                    "ao_http_requests_total{{device=\"{dev}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP ao_http_request_duration_seconds Time to answer a request, by device.\n",
        );
        out.push_str("# TYPE ao_http_request_duration_seconds histogram\n");
        for (dev, _, buckets, count, sum) in &devices {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ao_http_request_duration_seconds_bucket{{device=\"{dev}\",le=\"{b}\"}} {}",
                    buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "ao_http_request_duration_seconds_bucket{{device=\"{dev}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "ao_http_request_duration_seconds_sum{{device=\"{dev}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "ao_http_request_duration_seconds_count{{device=\"{dev}\"}} {count}"
            );
        }
        if let Ok(gauges) = self.gauges.read() {
            for (name, help, read) in gauges.iter() {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                    read()
                );
            }
        }
        out
    }
}

/// `hyperbuddy@1.0`: the node's operator pages; here, `metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HyperbuddyDevice;

impl Device for HyperbuddyDevice {
    fn id(&self) -> &str {
        "hyperbuddy@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["metrics"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        _: &'a Message,
        _: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        if key != "metrics" {
            return None;
        }
        let out = match ctx.extension::<Metrics>() {
            Some(m) => Ok(Value::Message(
                Message::new()
                    .with("content-type", "text/plain; version=0.0.4")
                    .with("body", m.render()),
            )),
            None => Err(Error::Internal(
                "hyperbuddy@1.0 needs the node metrics".into(),
            )),
        };
        Some(Box::pin(async move { out }))
    }
}

/// The device a request path addresses (its first `~device`), for metrics labels.
pub fn device_label(target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    match path.find('~') {
        Some(i) => {
            let rest = &path[i + 1..];
            let end = rest.find(['/', '&', '?']).unwrap_or(rest.len());
            let label = &rest[..end];
            if label.len() <= 64
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b))
            {
                label.to_owned()
            } else {
                "invalid".to_owned()
            }
        }
        None => "message@1.0".to_owned(),
    }
}

/// Shared handle type.
pub type SharedMetrics = Arc<Metrics>;
