//! cgroup v2 device rules: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from the rules.
//!
//! The program reads the request (`struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }`, access in the high 16 bits, type in the low ones) and checks the rules from
//! the last to the first, as cgroup v1 applies them in order: the first match from the end
//! decides — an allow rule matches when it grants every requested access, a deny rule when it
//! denies any of them. No match allows (a v1 cgroup starts allowing everything; rule lists
//! begin with "deny all" to change that).

/// One rule: `allow`, device type (`a`, `c`, `b`), major and minor (`None` = any), and the
/// access bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    pub typ: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

/// Access bits of the BPF context.
pub(crate) const ACC_MKNOD: u32 = 1;
pub(crate) const ACC_READ: u32 = 2;
pub(crate) const ACC_WRITE: u32 = 4;
/// Device types of the BPF context.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// Parses v1 rule lines ("c 1:3 rwm", "a *:* rwm").
pub(crate) fn parse_rules(lines: &[(bool, String)]) -> Vec<Rule> {
    lines
        .iter()
        .filter_map(|(allow, line)| {
            let mut f = line.split_whitespace();
            let typ = f.next()?.chars().next()?;
            let (maj, min) = f.next()?.split_once(':')?;
            let access = f.next()?.chars().fold(0, |a, c| {
                a | match c {
                    'm' => ACC_MKNOD,
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    _ => 0,
                }
            });
            Some(Rule {
                allow: *allow,
                typ,
                major: maj.parse().ok(),
                minor: min.parse().ok(),
                access,
            })
        })
        .collect()
}

/// One eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    /// The 8-byte encoding the kernel takes.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcodes.
const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const AND_K: u8 = 0x57; // dst &= imm
const RSH_K: u8 = 0x77; // dst >>= imm
const MOV_K: u8 = 0xb7; // dst = imm
const MOV_X: u8 = 0xbf; // dst = src
const JNE_K: u8 = 0x55; // if dst != imm goto +off
const JEQ_K: u8 = 0x15; // if dst == imm goto +off
const EXIT: u8 = 0x95;

/// The program for `rules`.
pub(crate) fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(LDX_W, 2, 1, 0, 0),
        Insn::new(AND_K, 2, 0, 0, 0xffff), // r2 = type
        Insn::new(LDX_W, 3, 1, 0, 0),
        Insn::new(RSH_K, 3, 0, 0, 16), // r3 = access
        Insn::new(LDX_W, 4, 1, 4, 0),  // r4 = major
        Insn::new(LDX_W, 5, 1, 8, 0),  // r5 = minor
    ];
    for r in rules.iter().rev() {
        // Jumps are filled with the distance to the end of the block.
        let mut block: Vec<(Insn, bool)> = Vec::new();
        match r.typ {
            'c' => block.push((Insn::new(JNE_K, 2, 0, 0, DEV_CHAR), true)),
            'b' => block.push((Insn::new(JNE_K, 2, 0, 0, DEV_BLOCK), true)),
            _ => {}
        }
        if let Some(m) = r.major {
            block.push((Insn::new(JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = r.minor {
            block.push((Insn::new(JNE_K, 5, 0, 0, m as i32), true));
        }
        block.push((Insn::new(MOV_X, 6, 3, 0, 0), false));
        if r.allow {
            // Skip unless every requested access is granted: (access & !granted) == 0.
            block.push((
                Insn::new(AND_K, 6, 0, 0, (!r.access & 0xffff) as i32),
                false,
            ));
            block.push((Insn::new(JNE_K, 6, 0, 0, 0), true));
        } else {
            // Skip unless some requested access is denied.
            block.push((Insn::new(AND_K, 6, 0, 0, r.access as i32), false));
            block.push((Insn::new(JEQ_K, 6, 0, 0, 0), true));
        }
        block.push((Insn::new(MOV_K, 0, 0, 0, i32::from(r.allow)), false));
        block.push((Insn::new(EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut insn, jump)) in block.into_iter().enumerate() {
            if jump {
                insn.off = (len - i - 1) as i16;
            }
            p.push(insn);
        }
    }
    p.push(Insn::new(MOV_K, 0, 0, 0, 1));
    p.push(Insn::new(EXIT, 0, 0, 0, 0));
    p
}

/// Runs `program` on a request, as the kernel would: a tiny interpreter of the opcodes above,
/// for tests.
#[cfg(test)]
pub(crate) fn eval(program: &[Insn], typ: i32, access: u32, major: u32, minor: u32) -> bool {
    let ctx = [
        ((access << 16) | typ as u32) as u64,
        u64::from(major),
        u64::from(minor),
    ];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    while pc < program.len() {
        let i = program[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let imm = i.imm as u32 as u64;
        pc += 1;
        match i.code {
            LDX_W => r[dst] = ctx[(i.off / 4) as usize],
            AND_K => r[dst] &= imm,
            RSH_K => r[dst] >>= imm,
            MOV_K => r[dst] = imm,
            MOV_X => r[dst] = r[src],
            JNE_K => {
                if r[dst] != imm {
                    pc += i.off as usize;
                }
            }
            JEQ_K => {
                if r[dst] == imm {
                    pc += i.off as usize;
                }
            }
            EXIT => return r[0] == 1,
            other => panic!("unknown opcode {other:#x}"),
        }
    }
    panic!("fell off the end")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::resources::device_rules;

    const C: i32 = DEV_CHAR;
    const B: i32 = DEV_BLOCK;
    const RW: u32 = ACC_READ | ACC_WRITE;

    fn prog(json: &str) -> Vec<Insn> {
        let rules: Vec<execdriver_api::oci_spec::runtime::LinuxDeviceCgroup> =
            serde_json::from_str(json).unwrap();
        program(&parse_rules(
            &device_rules(&rules, &[('c', 10, 200)]).unwrap(),
        ))
    }

    #[test]
    fn deny_all_then_defaults() {
        let p = prog(r#"[{"allow": false, "access": "rwm"}]"#);
        assert!(eval(&p, C, RW, 1, 3), "/dev/null");
        assert!(eval(&p, C, RW, 136, 7), "a pty");
        assert!(eval(&p, C, RW, 10, 200), "a created node");
        assert!(eval(&p, C, ACC_MKNOD, 250, 1), "mknod of anything");
        assert!(!eval(&p, C, RW, 1, 1), "/dev/mem");
        assert!(!eval(&p, B, ACC_READ, 8, 0), "a disk");
        assert!(!eval(&p, C, ACC_READ, 10, 229), "fuse");
    }

    #[test]
    fn later_rules_win_and_access_must_be_covered() {
        let p = prog(
            r#"[{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"}]"#,
        );
        assert!(eval(&p, C, ACC_READ, 10, 229));
        assert!(!eval(&p, C, RW, 10, 229), "write is not granted");
        let p = prog(
            r#"[{"allow": true, "type": "b", "major": 8, "access": "rwm"}, {"allow": false, "type": "b", "major": 8, "minor": 1, "access": "w"}]"#,
        );
        assert!(eval(&p, B, RW, 8, 0));
        assert!(eval(&p, B, ACC_READ, 8, 1));
        assert!(
            !eval(&p, B, RW, 8, 1),
            "write to 8:1 denied by the later rule"
        );
    }

    #[test]
    fn no_rules_allow_everything() {
        let p = program(&[]);
        assert!(eval(&p, B, RW | ACC_MKNOD, 8, 0));
        assert_eq!(
            Insn::new(MOV_K, 0, 0, 0, 1).to_bytes(),
            [0xb7, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(
            Insn::new(LDX_W, 4, 1, 4, 0).to_bytes(),
            [0x61, 0x14, 4, 0, 0, 0, 0, 0]
        );
    }
}
