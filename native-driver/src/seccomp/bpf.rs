//! Classic BPF for seccomp: one program that dispatches on the architecture of the call, as
//! libseccomp does — the native ABI always, plus i386 (`int 0x80`) and x32 (x86_64 calls with
//! bit 30 set) when the profile lists them. A call of any other ABI, or an x32 call when x32 is
//! not listed, gets the bad-architecture action (libseccomp's default: kill).

use std::collections::BTreeMap;

use super::{compat_syscalls, syscalls};

/// The kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// What a filter answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Errno(u16),
    Trap,
    Log,
    KillThread,
    KillProcess,
    /// `SECCOMP_RET_USER_NOTIF`: the call waits for the listener's answer (ENOSYS when no
    /// listener is left).
    Notify,
}

impl Action {
    /// The `SECCOMP_RET_*` value.
    pub fn ret(self) -> u32 {
        match self {
            Self::Allow => 0x7fff_0000,
            Self::Log => 0x7ffc_0000,
            Self::Errno(e) => 0x0005_0000 | u32::from(e),
            Self::Trap => 0x0003_0000,
            Self::KillThread => 0,
            Self::KillProcess => 0x8000_0000,
            Self::Notify => 0x7fc0_0000,
        }
    }
}

/// A comparison of one argument (64-bit, unsigned, as libseccomp compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// One condition of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cond {
    /// The argument, 0..=5.
    pub arg: u8,
    pub op: Op,
    pub value: u64,
}

/// A rule matches when all its conditions hold.
pub(crate) type Rule = Vec<Cond>;

/// Rules by system call name. An empty list matches the call unconditionally; otherwise the
/// call matches when any of its rules does.
pub(crate) type Rules = BTreeMap<String, Vec<Rule>>;

/// An ABI the filter handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    X86_64,
    /// x86_64 calls with `__X32_SYSCALL_BIT`; part of the x86_64 section.
    X32,
    I386,
    Aarch64,
}

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

impl Arch {
    /// The native ABI of this build.
    pub const NATIVE: Self = if cfg!(target_arch = "aarch64") {
        Self::Aarch64
    } else {
        Self::X86_64
    };

    /// The number of `name` in this ABI (for x32, with the x32 bit).
    pub fn number(self, name: &str) -> Option<u32> {
        let find = |t: &[(&str, u32)]| t.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr);
        match self {
            Self::X86_64 | Self::Aarch64 => syscalls::number(name).map(|n| n as u32),
            Self::X32 => find(compat_syscalls::X32).map(|n| n | X32_SYSCALL_BIT),
            Self::I386 => find(compat_syscalls::I386),
        }
    }
}

const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, …)`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: u8) -> u32 {
    16 + 8 * i as u32
}
/// The kernel's limit (`BPF_MAXINSNS`).
pub(crate) const MAX_INSNS: usize = 4096;

struct Emitter {
    p: Vec<SockFilter>,
}

impl Emitter {
    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> usize {
        self.p.push(SockFilter { code, jt, jf, k });
        self.p.len() - 1
    }
    fn ld(&mut self, off: u32) {
        self.push(LD_W_ABS, 0, 0, off);
    }
    fn ret(&mut self, a: Action) {
        self.push(RET_K, 0, 0, a.ret());
    }
    /// A `ja` to be patched with [`Self::land`].
    fn ja(&mut self) -> usize {
        self.push(JMP_JA, 0, 0, 0)
    }
    /// Makes the `ja` at `at` jump to the next instruction emitted.
    fn land(&mut self, at: usize) {
        self.p[at].k = (self.p.len() - at - 1) as u32;
    }

    /// One condition; a failing one jumps through the `ja`s returned.
    fn cond(&mut self, c: &Cond) -> Vec<usize> {
        let lo = off_arg_lo(c.arg);
        let hi = lo + 4;
        let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
        let mut fails = Vec::new();
        match c.op {
            Op::Eq | Op::MaskedEq(_) => {
                let mask = match c.op {
                    Op::MaskedEq(m) => Some(((m >> 32) as u32, m as u32)),
                    _ => None,
                };
                for (off, v, m) in [(hi, vhi, mask.map(|m| m.0)), (lo, vlo, mask.map(|m| m.1))] {
                    self.ld(off);
                    if let Some(m) = m {
                        self.push(ALU_AND_K, 0, 0, m);
                    }
                    self.push(JMP_JEQ_K, 1, 0, v);
                    fails.push(self.ja());
                }
            }
            Op::Ne => {
                self.ld(hi);
                self.push(JMP_JEQ_K, 0, 3, vhi);
                self.ld(lo);
                self.push(JMP_JEQ_K, 0, 1, vlo);
                fails.push(self.ja());
            }
            Op::Gt | Op::Ge => {
                self.ld(hi);
                self.push(JMP_JGT_K, 5, 0, vhi);
                self.push(JMP_JEQ_K, 1, 0, vhi);
                fails.push(self.ja());
                self.ld(lo);
                let code = if c.op == Op::Gt { JMP_JGT_K } else { JMP_JGE_K };
                self.push(code, 1, 0, vlo);
                fails.push(self.ja());
            }
            Op::Lt | Op::Le => {
                self.ld(hi);
                self.push(JMP_JGE_K, 0, 5, vhi);
                self.push(JMP_JEQ_K, 1, 0, vhi);
                fails.push(self.ja());
                self.ld(lo);
                // Lt: pass when !(lo >= v); Le: pass when !(lo > v).
                let code = if c.op == Op::Lt { JMP_JGE_K } else { JMP_JGT_K };
                self.push(code, 0, 1, vlo);
                fails.push(self.ja());
            }
        }
        fails
    }

    /// One call's conditional rules: `jeq nr`, then each rule's conditions ending in `ret
    /// matched`. When no rule matches, `after_nomatch` runs (a `ret`, or reloading the number
    /// to go on); a different call skips the block with `A` unchanged.
    fn rule_block(
        &mut self,
        nr: u32,
        rules: &[Rule],
        matched: Action,
        after_nomatch: impl FnOnce(&mut Self),
    ) {
        self.push(JMP_JEQ_K, 1, 0, nr);
        let skip = self.ja();
        for rule in rules {
            let fails: Vec<usize> = rule.iter().flat_map(|c| self.cond(c)).collect();
            self.ret(matched);
            for f in fails {
                self.land(f);
            }
        }
        after_nomatch(self);
        self.land(skip);
    }

    /// Calls allowed before any rule (`A` holding the call number; left holding it).
    fn exempt(&mut self, nrs: &[(u32, &Vec<Rule>)]) {
        for (nr, rules) in nrs {
            self.rule_block(*nr, rules, Action::Allow, |e| e.ld(OFF_NR));
        }
    }

    /// The calls of one ABI, `A` holding the call number on entry. Ends in `mismatch`.
    fn calls(&mut self, nrs: &[(u32, &Vec<Rule>)], matched: Action, mismatch: Action) {
        // Unconditional calls: runs of `jeq nr → ret matched`, the jumps short enough for
        // 8-bit offsets.
        let plain: Vec<u32> = nrs
            .iter()
            .filter(|(_, r)| r.is_empty())
            .map(|(n, _)| *n)
            .collect();
        for run in plain.chunks(200) {
            let n = run.len();
            for (j, nr) in run.iter().enumerate() {
                self.push(JMP_JEQ_K, (n - j) as u8, 0, *nr);
            }
            self.push(JMP_JA, 0, 0, 1);
            self.ret(matched);
        }
        for (nr, rules) in nrs.iter().filter(|(_, r)| !r.is_empty()) {
            self.rule_block(*nr, rules, matched, |e| e.ret(mismatch));
        }
        self.ret(mismatch);
    }
}

/// The calls of `rules` that `a` has, by number.
fn numbers_of(rules: &Rules, a: Arch) -> Vec<(u32, &Vec<Rule>)> {
    let mut v: Vec<_> = rules
        .iter()
        .filter_map(|(name, r)| a.number(name).map(|nr| (nr, r)))
        .collect();
    v.sort_by_key(|(nr, _)| *nr);
    v.dedup_by_key(|(nr, _)| *nr);
    v
}

/// The program: `matched` for the calls in `rules`, `mismatch` for the other calls of the
/// ABIs in `arches` (the native one is always included), `bad_arch` for every other ABI.
/// Names an ABI does not have are skipped for it, as libseccomp does. Native calls matching
/// `exempt` are allowed before any rule.
///
/// # Errors
/// The program would exceed the kernel's 4096 instructions.
#[cfg(test)]
pub(crate) fn program(
    arches: &[Arch],
    rules: &Rules,
    exempt: &Rules,
    matched: Action,
    mismatch: Action,
    bad_arch: Action,
) -> Result<Vec<SockFilter>, String> {
    program_with(arches, rules, exempt, matched, mismatch, bad_arch, &[])
}

/// [`program`], and for each `(ABI, highest call number of the profile)` in `enosys_above`, a
/// call of that ABI numbered above it gets `ENOSYS` rather than `mismatch`: a system call newer
/// than the profile looks absent, so that libc falls back to an older one — runc's stub
/// (libcontainer/seccomp/patchbpf).
pub(crate) fn program_with(
    arches: &[Arch],
    rules: &Rules,
    exempt: &Rules,
    matched: Action,
    mismatch: Action,
    bad_arch: Action,
    enosys_above: &[(Arch, u32)],
) -> Result<Vec<SockFilter>, String> {
    let has = |a: Arch| a == Arch::NATIVE || arches.contains(&a);
    let stub = |e: &mut Emitter, a: Arch| {
        if let Some((_, max)) = enosys_above.iter().find(|(arch, _)| *arch == a) {
            e.push(JMP_JGT_K, 0, 1, *max);
            e.ret(Action::Errno(libc::ENOSYS as u16));
        }
    };
    let numbers = |a: Arch| numbers_of(rules, a);
    let mut e = Emitter { p: Vec::new() };
    e.ld(OFF_ARCH);
    let mut sections = Vec::new();
    for (arch, audit) in [
        (Arch::X86_64, AUDIT_ARCH_X86_64),
        (Arch::I386, AUDIT_ARCH_I386),
        (Arch::Aarch64, AUDIT_ARCH_AARCH64),
    ] {
        if has(arch) {
            e.push(JMP_JEQ_K, 0, 1, audit);
            sections.push((arch, e.ja()));
        }
    }
    e.ret(bad_arch);
    for (arch, jump) in sections {
        e.land(jump);
        e.ld(OFF_NR);
        if arch == Arch::NATIVE {
            e.exempt(&numbers_of(exempt, arch));
        }
        if arch == Arch::X86_64 {
            e.push(JMP_JGE_K, 0, 1, X32_SYSCALL_BIT);
            let x32 = e.ja();
            stub(&mut e, Arch::X86_64);
            e.calls(&numbers(Arch::X86_64), matched, mismatch);
            e.land(x32);
            if has(Arch::X32) {
                stub(&mut e, Arch::X32);
                e.calls(&numbers(Arch::X32), matched, mismatch);
            } else {
                e.ret(bad_arch);
            }
        } else {
            stub(&mut e, arch);
            e.calls(&numbers(arch), matched, mismatch);
        }
    }
    if e.p.len() > MAX_INSNS {
        return Err(format!(
            "the compiled filter has {} instructions (the kernel takes at most {MAX_INSNS})",
            e.p.len()
        ));
    }
    Ok(e.p)
}

/// Runs `prog` on a call, as the kernel would: a small interpreter of the instructions above,
/// for tests.
#[cfg(test)]
pub(crate) fn run(prog: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            0 => nr,
            4 => arch,
            o if o >= 16 => {
                let i = ((o - 16) / 8) as usize;
                let v = args[i];
                if (o - 16) % 8 == 0 {
                    v as u32
                } else {
                    (v >> 32) as u32
                }
            }
            _ => 0,
        }
    };
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => a = word(i.k),
            ALU_AND_K => a &= i.k,
            RET_K => return i.k,
            JMP_JA => pc += i.k as usize,
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                let t = match i.code {
                    JMP_JEQ_K => a == i.k,
                    JMP_JGT_K => a > i.k,
                    _ => a >= i.k,
                };
                pc += if t { i.jt } else { i.jf } as usize;
            }
            other => panic!("unknown opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPERM: Action = Action::Errno(1);
    /// The native ABI's audit architecture.
    const NATIVE: u32 = if cfg!(target_arch = "aarch64") {
        AUDIT_ARCH_AARCH64
    } else {
        AUDIT_ARCH_X86_64
    };

    fn rules(list: &[(&str, Vec<Rule>)]) -> Rules {
        list.iter()
            .map(|(n, r)| ((*n).to_owned(), r.clone()))
            .collect()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn abis_follow_the_listed_architectures() {
        let r = rules(&[("mkdir", vec![])]);
        let mkdir64 = Arch::X86_64.number("mkdir").unwrap();
        let mkdir_x32 = Arch::X32.number("mkdir").unwrap();
        let mkdir_i386 = Arch::I386.number("mkdir").unwrap();
        assert_eq!(
            (mkdir64, mkdir_x32, mkdir_i386),
            (83, 83 | X32_SYSCALL_BIT, 39)
        );
        let kill = Action::KillProcess.ret();
        // Native only: x32 and i386 calls are killed, whatever the call.
        let p = program(
            &[],
            &r,
            &Rules::new(),
            EPERM,
            Action::Allow,
            Action::KillProcess,
        )
        .unwrap();
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, mkdir64, [0; 6]), EPERM.ret());
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 0, [0; 6]), Action::Allow.ret());
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, mkdir_x32, [0; 6]), kill);
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, [0; 6]), kill);
        assert_eq!(run(&p, AUDIT_ARCH_I386, mkdir_i386, [0; 6]), kill);
        // With x32 and i386 listed, their calls follow the rules by their own numbers.
        let p = program(
            &[Arch::X32, Arch::I386],
            &r,
            &Rules::new(),
            EPERM,
            Action::Allow,
            Action::KillProcess,
        )
        .unwrap();
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, mkdir_x32, [0; 6]), EPERM.ret());
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, [0; 6]),
            Action::Allow.ret()
        );
        assert_eq!(run(&p, AUDIT_ARCH_I386, mkdir_i386, [0; 6]), EPERM.ret());
        assert_eq!(
            run(&p, AUDIT_ARCH_I386, mkdir64, [0; 6]),
            Action::Allow.ret()
        );
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, mkdir64, [0; 6]), kill);
        // x32's own numbers for calls with compat structures (execve is 520 there).
        assert_eq!(Arch::X32.number("execve"), Some(520 | X32_SYSCALL_BIT));
    }

    #[test]
    fn argument_comparisons_are_64_bit_and_unsigned() {
        let nr = Arch::NATIVE.number("write").unwrap();
        let big = 0x1_0000_0005u64;
        for (op, value, cases) in [
            (Op::Eq, big, vec![(big, true), (5, false), (big + 1, false)]),
            (
                Op::Ne,
                big,
                vec![(big, false), (5, true), (0x2_0000_0005, true)],
            ),
            (
                Op::Gt,
                big,
                vec![
                    (big, false),
                    (big + 1, true),
                    (0x2_0000_0000, true),
                    (u32::MAX as u64, false),
                ],
            ),
            (
                Op::Ge,
                big,
                vec![(big, true), (big - 1, false), (u64::MAX, true)],
            ),
            (
                Op::Lt,
                big,
                vec![
                    (big, false),
                    (big - 1, true),
                    (0, true),
                    (0x2_0000_0000, false),
                ],
            ),
            (Op::Le, big, vec![(big, true), (big + 1, false), (5, true)]),
            (
                Op::MaskedEq(0xff_0000_00ff),
                0x12_0000_0034,
                vec![(0x12_ffff_ff34, true), (0x13_0000_0034, false)],
            ),
        ] {
            let r = rules(&[("write", vec![vec![Cond { arg: 2, op, value }]])]);
            let p = program(
                &[],
                &r,
                &Rules::new(),
                EPERM,
                Action::Allow,
                Action::KillProcess,
            )
            .unwrap();
            for (arg, hit) in cases {
                let mut args = [0; 6];
                args[2] = arg;
                let want = if hit {
                    EPERM.ret()
                } else {
                    Action::Allow.ret()
                };
                assert_eq!(
                    run(&p, NATIVE, nr, args),
                    want,
                    "{op:?} {value:#x} vs {arg:#x}"
                );
            }
        }
    }

    #[test]
    fn exempt_calls_pass_every_rule() {
        let nr = Arch::NATIVE.number("execveat").unwrap();
        let c = |arg, value| Cond {
            arg,
            op: Op::Eq,
            value,
        };
        let r = rules(&[("execveat", vec![])]);
        let ex = rules(&[("execveat", vec![vec![c(0, 7), c(4, 0x1000)]])]);
        let p = program(&[], &r, &ex, EPERM, Action::Allow, Action::KillProcess).unwrap();
        assert_eq!(
            run(&p, NATIVE, nr, [7, 0, 0, 0, 0x1000, 0]),
            Action::Allow.ret()
        );
        assert_eq!(run(&p, NATIVE, nr, [8, 0, 0, 0, 0x1000, 0]), EPERM.ret());
        assert_eq!(run(&p, NATIVE, nr, [7, 0, 0, 0, 0, 0]), EPERM.ret());
    }

    #[test]
    fn rules_are_ored_and_conditions_anded() {
        let nr = Arch::NATIVE.number("kill").unwrap();
        let c = |arg, value| Cond {
            arg,
            op: Op::Eq,
            value,
        };
        let r = rules(&[("kill", vec![vec![c(0, 1), c(1, 9)], vec![c(0, 2)]])]);
        let p = program(
            &[],
            &r,
            &Rules::new(),
            EPERM,
            Action::Allow,
            Action::KillProcess,
        )
        .unwrap();
        let at = |a0, a1| run(&p, NATIVE, nr, [a0, a1, 0, 0, 0, 0]);
        assert_eq!(at(1, 9), EPERM.ret());
        assert_eq!(at(1, 15), Action::Allow.ret());
        assert_eq!(at(2, 15), EPERM.ret());
        assert_eq!(at(3, 9), Action::Allow.ret());
    }

    #[test]
    fn long_allow_lists_stay_in_short_jumps_and_the_limit() {
        let names: Vec<&str> = syscalls::SYSCALLS.iter().map(|(n, _)| *n).collect();
        let r: Rules = names.iter().map(|n| ((*n).to_owned(), vec![])).collect();
        let p = program(
            &[Arch::X32, Arch::I386],
            &r,
            &Rules::new(),
            Action::Allow,
            EPERM,
            Action::KillProcess,
        )
        .unwrap();
        assert!(p.len() < MAX_INSNS, "{}", p.len());
        for (name, nr) in syscalls::SYSCALLS {
            assert_eq!(
                run(&p, NATIVE, *nr as u32, [0; 6]),
                Action::Allow.ret(),
                "{name}"
            );
        }
        assert_eq!(run(&p, NATIVE, 4000, [0; 6]), EPERM.ret());
    }
}
