//! What a child process has used, read from `/proc` (Linux): resident memory and CPU time.

/// A `/proc/<pid>/status` field in kB (`"VmRSS:"`, `"VmHWM:"`); 0 if unreadable.
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time the process has used so far, user + system, over all its threads (`utime` + `stime`
/// of `/proc/<pid>/stat`, in clock ticks of 1/100 s: Linux's `USER_HZ` is 100 to user space).
pub fn cpu_seconds(pid: u32) -> f64 {
    let t = cpu_times(pid);
    t.user + t.system
}

/// A process's CPU time so far, in seconds, split as the kernel counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// In the program itself (`utime`).
    pub user: f64,
    /// In the kernel on its behalf: system calls, the loopback TCP stack (`stime`).
    pub system: f64,
}

impl std::ops::Sub for CpuTimes {
    type Output = CpuTimes;
    fn sub(self, o: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user - o.user,
            system: self.system - o.system,
        }
    }
}

/// `utime` and `stime` of `/proc/<pid>/stat`, all threads; zero if unreadable.
pub fn cpu_times(pid: u32) -> CpuTimes {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its closing ')' are fixed.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let seconds = |k: usize| {
        fields
            .get(k - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0) as f64
            / 100.0
    };
    CpuTimes {
        user: seconds(14),
        system: seconds(15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(status_kb(pid, "VmRSS:") > 0);
        let start = cpu_seconds(pid);
        // Spin until 50 ms of CPU show, or 20 s of wall time pass: on a loaded machine (three
        // builds on two cores) 150 ms of wall time gave this thread less than 50 ms of CPU.
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while cpu_seconds(pid) - start < 0.05 && t.elapsed() < std::time::Duration::from_secs(20) {
            for _ in 0..1_000_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
        }
        assert!(x > 0);
        assert!(
            cpu_seconds(pid) - start >= 0.05,
            "spinning shows as CPU time"
        );
    }
}
