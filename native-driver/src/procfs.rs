//! What `/proc/<pid>/stat` says about a process.

/// The fields of `/proc/<pid>/stat` the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// R, S, D, Z, T, ...
    pub state: u8,
    pub ppid: i32,
    /// Clock ticks after boot when the process started: with the pid, an identity that
    /// survives pid reuse.
    pub start_time: u64,
}

/// Parses the text of `/proc/<pid>/stat`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // rest begins with field 3 (state); field N is at index N - 3.
    Some(ProcStat {
        state: *f.first()?.as_bytes().first()?,
        ppid: f.get(1)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` is the process that started at `start_time` and has not exited (a zombie
/// has exited).
pub(crate) fn is_alive(pid: i32, start_time: u64) -> bool {
    pid > 0
        && stat(pid)
            .is_some_and(|s| s.start_time == start_time && s.state != b'Z' && s.state != b'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let text = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 98765);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(is_alive(me, s.start_time));
        assert!(!is_alive(me, s.start_time + 1));
        assert!(!is_alive(0, 0));
    }
}
