//! Resource usage of a container.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// A snapshot of a container's resource usage. Counters a driver cannot measure stay 0 (or
/// `None` where 0 would be a lie, like the network of a container without a network namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceStats {
    /// When the figures were read.
    pub read_at: SystemTime,
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory use and limit.
    pub memory: MemoryStats,
    /// Processes (wasm: instances).
    pub pids: PidsStats,
    /// Block I/O.
    pub block_io: BlockIoStats,
    /// Network traffic of the container's network namespace, when it has one.
    pub network: Option<NetworkStats>,
    /// Requests of an HTTP server container (the wasm driver's `wasi:http` components).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpStats>,
}

/// Requests of an HTTP server container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpStats {
    /// Requests answered so far (their instance is gone).
    pub requests: u64,
    /// Requests whose instance is running now.
    pub in_flight: u64,
}

impl HttpStats {
    /// The counters.
    pub fn new(requests: u64, in_flight: u64) -> Self {
        Self {
            requests,
            in_flight,
        }
    }
}

impl ResourceStats {
    /// Empty stats read now.
    pub fn new() -> Self {
        Self {
            read_at: SystemTime::now(),
            cpu: CpuStats::default(),
            memory: MemoryStats::default(),
            pids: PidsStats::default(),
            block_io: BlockIoStats::default(),
            network: None,
            http: None,
        }
    }
}

impl Default for ResourceStats {
    fn default() -> Self {
        Self::new()
    }
}

/// CPU usage, in nanoseconds, and CFS throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CpuStats {
    /// Total CPU time.
    pub total_ns: u64,
    /// User-mode CPU time.
    pub user_ns: u64,
    /// Kernel-mode CPU time.
    pub system_ns: u64,
    /// Enforcement periods elapsed.
    pub periods: u64,
    /// Periods in which the container was throttled.
    pub throttled_periods: u64,
    /// Total time throttled.
    pub throttled_ns: u64,
}

/// Memory usage, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Current usage.
    pub usage: u64,
    /// Highest usage seen (0 when the kernel does not report it).
    pub max_usage: u64,
    /// The limit; the host's memory when the container is unlimited.
    pub limit: u64,
    /// Page cache / file-backed memory.
    pub cache: u64,
    /// Anonymous memory (rss).
    pub rss: u64,
    /// Swap in use.
    pub swap: u64,
    /// Times the limit was hit (cgroup v1 failcnt, v2 `max` events).
    pub failcnt: u64,
}

/// Process counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PidsStats {
    /// Processes (wasm: instances) now.
    pub current: u64,
    /// The limit, if any.
    pub limit: Option<u64>,
}

/// Block I/O, in bytes and operations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlockIoStats {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ops: u64,
    /// Write operations.
    pub write_ops: u64,
}

/// Network traffic, summed over the interfaces of the namespace (loopback excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkStats {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
}
