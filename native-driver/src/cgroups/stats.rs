//! Reading a container's resource usage from cgroup v1 and v2 files.

use std::path::Path;

use execdriver_api::{BlockIoStats, CpuStats, MemoryStats, NetworkStats, PidsStats};

use super::{Cgroup, CgroupFs};

/// `key value` lines as pairs.
pub(crate) fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        Some((it.next()?, it.next()?.parse().ok()?))
    })
}

fn key(text: &str, k: &str) -> u64 {
    flat_keyed(text)
        .find(|(n, _)| *n == k)
        .map_or(0, |(_, v)| v)
}

fn single(fs: &dyn CgroupFs, dir: &Path, file: &str) -> Option<u64> {
    let t = fs.read(&dir.join(file)).ok()?;
    let t = t.trim();
    if t == "max" {
        Some(u64::MAX)
    } else {
        t.parse().ok()
    }
}

fn text(fs: &dyn CgroupFs, dir: &Path, file: &str) -> String {
    fs.read(&dir.join(file)).unwrap_or_default()
}

/// A limit that means "none" (v1 writes a huge page-aligned number, v2 "max").
fn unlimited(v: u64) -> bool {
    v >= (1 << 62)
}

/// Total memory of the host, from `/proc/meminfo`.
pub(crate) fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// USER_HZ, the unit of cpuacct.stat.
const USER_HZ_NS: u64 = 10_000_000;

pub(crate) fn cpu(cg: &Cgroup, fs: &dyn CgroupFs) -> CpuStats {
    let mut c = CpuStats::default();
    if cg.v2 {
        let Some(d) = cg.dirs.first() else { return c };
        let t = text(fs, &d.path, "cpu.stat");
        c.total_ns = key(&t, "usage_usec") * 1000;
        c.user_ns = key(&t, "user_usec") * 1000;
        c.system_ns = key(&t, "system_usec") * 1000;
        c.periods = key(&t, "nr_periods");
        c.throttled_periods = key(&t, "nr_throttled");
        c.throttled_ns = key(&t, "throttled_usec") * 1000;
        return c;
    }
    if let Some(d) = cg.dir_of("cpuacct") {
        c.total_ns = single(fs, &d.path, "cpuacct.usage").unwrap_or(0);
        let t = text(fs, &d.path, "cpuacct.stat");
        c.user_ns = key(&t, "user") * USER_HZ_NS;
        c.system_ns = key(&t, "system") * USER_HZ_NS;
    }
    if let Some(d) = cg.dir_of("cpu") {
        let t = text(fs, &d.path, "cpu.stat");
        c.periods = key(&t, "nr_periods");
        c.throttled_periods = key(&t, "nr_throttled");
        c.throttled_ns = key(&t, "throttled_time");
    }
    c
}

pub(crate) fn memory(cg: &Cgroup, fs: &dyn CgroupFs, host: u64) -> MemoryStats {
    let mut m = MemoryStats::default();
    let Some(d) = cg.dir_of("memory") else {
        return m;
    };
    let p = &d.path;
    if cg.v2 {
        m.usage = single(fs, p, "memory.current").unwrap_or(0);
        m.max_usage = single(fs, p, "memory.peak").unwrap_or(0);
        m.limit = single(fs, p, "memory.max").unwrap_or(u64::MAX);
        let t = text(fs, p, "memory.stat");
        m.rss = key(&t, "anon");
        m.cache = key(&t, "file");
        m.swap = single(fs, p, "memory.swap.current").unwrap_or(0);
        m.failcnt = key(&text(fs, p, "memory.events"), "max");
    } else {
        m.usage = single(fs, p, "memory.usage_in_bytes").unwrap_or(0);
        m.max_usage = single(fs, p, "memory.max_usage_in_bytes").unwrap_or(0);
        m.limit = single(fs, p, "memory.limit_in_bytes").unwrap_or(u64::MAX);
        let t = text(fs, p, "memory.stat");
        m.rss = key(&t, "total_rss");
        m.cache = key(&t, "total_cache");
        m.swap = key(&t, "total_swap");
        m.failcnt = single(fs, p, "memory.failcnt").unwrap_or(0);
    }
    if unlimited(m.limit) || (host > 0 && m.limit > host) {
        m.limit = host;
    }
    m
}

pub(crate) fn pids(cg: &Cgroup, fs: &dyn CgroupFs) -> PidsStats {
    let mut s = PidsStats::default();
    if let Some(d) = cg.dir_of("pids") {
        s.current = single(fs, &d.path, "pids.current").unwrap_or(0);
        s.limit = single(fs, &d.path, "pids.max").filter(|v| !unlimited(*v));
    }
    s
}

pub(crate) fn block_io(cg: &Cgroup, fs: &dyn CgroupFs) -> BlockIoStats {
    let mut b = BlockIoStats::default();
    if cg.v2 {
        let Some(d) = cg.dirs.first() else { return b };
        // "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0"
        for line in text(fs, &d.path, "io.stat").lines() {
            for kv in line.split_whitespace().skip(1) {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v: u64 = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => b.read_bytes += v,
                    "wbytes" => b.write_bytes += v,
                    "rios" => b.read_ops += v,
                    "wios" => b.write_ops += v,
                    _ => {}
                }
            }
        }
        return b;
    }
    let Some(d) = cg.dir_of("blkio") else {
        return b;
    };
    // "8:0 Read 4096" ... "Total 8192"; prefer the throttle files, which every kernel fills.
    let sum = |file: &str, op: &str| -> u64 {
        text(fs, &d.path, file)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[1] == op).then(|| f[2].parse::<u64>().unwrap_or(0))
            })
            .sum()
    };
    b.read_bytes = sum("blkio.throttle.io_service_bytes_recursive", "Read");
    b.write_bytes = sum("blkio.throttle.io_service_bytes_recursive", "Write");
    b.read_ops = sum("blkio.throttle.io_serviced_recursive", "Read");
    b.write_ops = sum("blkio.throttle.io_serviced_recursive", "Write");
    b
}

/// Network counters of the namespace of `pid`, loopback excluded, from `/proc/<pid>/net/dev`.
pub(crate) fn network(pid: i32) -> Option<NetworkStats> {
    parse_net_dev(&std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?)
}

pub(crate) fn parse_net_dev(text: &str) -> Option<NetworkStats> {
    let mut n = NetworkStats::default();
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 10 {
            continue;
        }
        n.rx_bytes += f[0];
        n.rx_packets += f[1];
        n.tx_bytes += f[8];
        n.tx_packets += f[9];
    }
    Some(n)
}

/// The OOM-kill counter of the cgroup: v1 `oom_kill` in `memory.oom_control`, v2 `oom_kill` in
/// `memory.events`. `None` when the kernel does not count them.
pub(crate) fn oom_kills(cg: &Cgroup, fs: &dyn CgroupFs) -> Option<u64> {
    let d = cg.dir_of("memory")?;
    let file = if cg.v2 {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    let t = fs.read(&d.path.join(file)).ok()?;
    flat_keyed(&t)
        .find(|(k, _)| *k == "oom_kill")
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::CgroupDir;
    use super::super::fs::fake::FakeFs;
    use super::*;

    fn v2(dir: &Path) -> Cgroup {
        Cgroup {
            v2: true,
            dirs: vec![CgroupDir {
                name: String::new(),
                controllers: vec![],
                path: dir.to_owned(),
                stop: dir.parent().unwrap().to_owned(),
                joined: false,
            }],
        }
    }

    fn put(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (f, t) in files {
            std::fs::write(dir.join(f), t).unwrap();
        }
    }

    #[test]
    fn v2_files_parse() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("c");
        put(
            &d,
            &[
                (
                    "cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 2000\n",
                ),
                ("memory.current", "4096\n"),
                ("memory.peak", "8192\n"),
                ("memory.max", "max\n"),
                ("memory.stat", "anon 1000\nfile 2000\nkernel 5\n"),
                ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n"),
                ("pids.current", "3\n"),
                ("pids.max", "8\n"),
                (
                    "io.stat",
                    "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=3 wios=4\n",
                ),
            ],
        );
        let cg = v2(&d);
        let fs = FakeFs::default();
        let c = cpu(&cg, &fs);
        assert_eq!(
            (c.total_ns, c.user_ns, c.system_ns),
            (1_500_000, 1_000_000, 500_000)
        );
        assert_eq!(
            (c.periods, c.throttled_periods, c.throttled_ns),
            (10, 4, 2_000_000)
        );
        let m = memory(&cg, &fs, 1 << 30);
        assert_eq!(
            (m.usage, m.max_usage, m.limit, m.rss, m.cache, m.failcnt),
            (4096, 8192, 1 << 30, 1000, 2000, 3)
        );
        let p = pids(&cg, &fs);
        assert_eq!((p.current, p.limit), (3, Some(8)));
        let b = block_io(&cg, &fs);
        assert_eq!(
            (b.read_bytes, b.write_bytes, b.read_ops, b.write_ops),
            (101, 202, 4, 6)
        );
        assert_eq!(oom_kills(&cg, &fs), Some(2));
    }

    #[test]
    fn v1_files_parse() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |c: &str| tmp.path().join(c).join("x");
        put(
            &dir("cpuacct"),
            &[
                ("cpuacct.usage", "123456\n"),
                ("cpuacct.stat", "user 3\nsystem 2\n"),
            ],
        );
        put(
            &dir("cpu"),
            &[(
                "cpu.stat",
                "nr_periods 5\nnr_throttled 2\nthrottled_time 999\n",
            )],
        );
        put(
            &dir("memory"),
            &[
                ("memory.usage_in_bytes", "1000\n"),
                ("memory.max_usage_in_bytes", "2000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory.stat",
                    "cache 1\nrss 2\ntotal_cache 10\ntotal_rss 20\ntotal_swap 0\n",
                ),
                ("memory.failcnt", "7\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
                ),
            ],
        );
        put(
            &dir("pids"),
            &[("pids.current", "2\n"), ("pids.max", "max\n")],
        );
        put(
            &dir("blkio"),
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
                ),
            ],
        );
        let mk = |c: &str| CgroupDir {
            name: c.into(),
            controllers: vec![c.into()],
            path: dir(c),
            stop: PathBuf::from("/"),
            joined: false,
        };
        let cg = Cgroup {
            v2: false,
            dirs: ["cpuacct", "cpu", "memory", "pids", "blkio"]
                .iter()
                .map(|c| mk(c))
                .collect(),
        };
        let fs = FakeFs::default();
        let c = cpu(&cg, &fs);
        assert_eq!(
            (c.total_ns, c.user_ns, c.system_ns, c.throttled_periods),
            (123_456, 30_000_000, 20_000_000, 2)
        );
        let m = memory(&cg, &fs, 4 << 30);
        assert_eq!(
            (m.usage, m.limit, m.rss, m.cache, m.failcnt),
            (1000, 4 << 30, 20, 10, 7)
        );
        assert_eq!(pids(&cg, &fs).limit, None);
        let b = block_io(&cg, &fs);
        assert_eq!(
            (b.read_bytes, b.write_bytes, b.read_ops, b.write_ops),
            (4096, 8192, 1, 2)
        );
        assert_eq!(oom_kills(&cg, &fs), Some(1));
    }

    #[test]
    fn net_dev_sums_everything_but_loopback() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0\n";
        let n = parse_net_dev(t).unwrap();
        assert_eq!(
            (n.rx_bytes, n.rx_packets, n.tx_bytes, n.tx_packets),
            (1000, 10, 2000, 20)
        );
    }
}
