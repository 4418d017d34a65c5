//! A seccomp filter in classic BPF, assembled by hand (chapter 7). The kernel runs it on every
//! syscall with `struct seccomp_data` as input: `nr` (offset 0), `arch` (4), the instruction pointer
//! (8) and the six arguments (16 + 8·i, 64 bits each, low word first on little-endian machines).
//!
//! The syscall numbers are searched as a balanced binary tree of ranges: a handful of comparisons
//! for any syscall instead of walking a list of 300, in a program of a few hundred instructions.
//! That matters twice: on every syscall the container makes, and when the filter is installed —
//! the kernel checks and translates the program, and runs it once per syscall number to find those
//! it can cache as "always allowed"; a linear 1,500-instruction list (what a simple generator
//! emits) made that take most of a millisecond.
//!
//! Conditional jumps have 8-bit offsets: a tree node skips its lower half directly when that half
//! is shorter than 256 instructions, and through an unconditional `ja` (32-bit offset) otherwise.
//! Inside the argument checks every conditional jump skips one instruction, a `ja`.

use super::profile::{Action, Arg, Op};
use super::seccomp::{Alt, Plan};
use anyhow::{bail, Result};

pub type Program = Vec<libc::sock_filter>;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// The `SECCOMP_RET_*` value of an action.
pub fn ret_value(a: Action) -> u32 {
    match a {
        Action::Allow => 0x7fff_0000,
        Action::Errno(e) => 0x0005_0000 | (e & 0xffff),
        Action::KillThread => 0,
        Action::KillProcess => 0x8000_0000,
        Action::Trap => 0x0003_0000,
        Action::Log => 0x7ffc_0000,
        Action::Trace(n) => 0x7ff0_0000 | (n & 0xffff),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Label(usize);

/// Instructions with symbolic jump targets, resolved at the end.
#[derive(Default)]
struct Asm {
    code: Vec<(libc::sock_filter, Option<Label>)>,
    labels: Vec<Option<usize>>,
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn place(&mut self, l: Label) {
        self.labels[l.0] = Some(self.code.len());
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((insn(code, 0, 0, k), None));
    }
    /// An instruction whose jumps stay inside the code being emitted (offsets already final).
    fn raw(&mut self, i: libc::sock_filter) {
        self.code.push((i, None));
    }
    fn goto(&mut self, l: Label) {
        self.code.push((insn(JA, 0, 0, 0), Some(l)));
    }
    /// `if (A <op> k) goto l` (else fall through).
    fn jump_if(&mut self, op: u16, k: u32, l: Label) {
        self.code.push((insn(op, 0, 1, k), None));
        self.goto(l);
    }
    /// `if !(A <op> k) goto l` (else fall through).
    fn jump_unless(&mut self, op: u16, k: u32, l: Label) {
        self.code.push((insn(op, 1, 0, k), None));
        self.goto(l);
    }
    fn finish(self) -> Result<Program> {
        let mut out = Vec::with_capacity(self.code.len());
        for (pc, (mut i, target)) in self.code.into_iter().enumerate() {
            if let Some(l) = target {
                let Some(at) = self.labels[l.0] else {
                    bail!("internal error: a BPF label was never placed")
                };
                if at <= pc {
                    bail!("internal error: a backward BPF jump");
                }
                i.k = (at - pc - 1) as u32;
            }
            out.push(i);
        }
        Ok(out)
    }
}

/// Load the high or low 32 bits of argument `i` into A.
fn load_arg(asm: &mut Asm, i: u8, high: bool) {
    asm.op(LD_W_ABS, OFF_ARGS + 8 * i as u32 + if high { 4 } else { 0 });
}

// ANCHOR: condition
/// Fall through when condition `c` holds for the 64-bit argument; jump to `fail` when it does not.
/// Each comparison is done on the high word first, then the low word.
fn condition(asm: &mut Asm, c: &Arg, fail: Label) {
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    let ok = asm.label();
    load_arg(asm, c.index, true);
    match c.op {
        Op::Eq => {
            asm.jump_unless(JEQ, hi, fail);
            load_arg(asm, c.index, false);
            asm.jump_unless(JEQ, lo, fail);
        }
        Op::Ne => {
            asm.jump_unless(JEQ, hi, ok);
            load_arg(asm, c.index, false);
            asm.jump_if(JEQ, lo, fail);
        }
        Op::MaskedEq => {
            let (vhi, vlo) = ((c.value_two >> 32) as u32, c.value_two as u32);
            asm.op(ALU_AND_K, hi);
            asm.jump_unless(JEQ, vhi, fail);
            load_arg(asm, c.index, false);
            asm.op(ALU_AND_K, lo);
            asm.jump_unless(JEQ, vlo, fail);
        }
        Op::Gt | Op::Ge => {
            asm.jump_if(JGT, hi, ok);
            asm.jump_unless(JEQ, hi, fail);
            load_arg(asm, c.index, false);
            asm.jump_unless(if c.op == Op::Gt { JGT } else { JGE }, lo, fail);
        }
        Op::Lt | Op::Le => {
            asm.jump_unless(JGE, hi, ok);
            asm.jump_unless(JEQ, hi, fail);
            load_arg(asm, c.index, false);
            asm.jump_if(if c.op == Op::Lt { JGE } else { JGT }, lo, fail);
        }
    }
    asm.place(ok);
}
// ANCHOR_END: condition

// ANCHOR: compile
/// Where a range of syscall numbers leads.
#[derive(Clone, Copy)]
enum Leaf<'a> {
    Return(Action),
    /// A syscall whose answer depends on its arguments: its alternatives.
    Block(&'a [Alt]),
}

/// The plan as one program: check the architecture, load the syscall number, find its range in a
/// binary tree, then return — or, for a syscall with argument conditions, test them first.
pub fn compile<'p>(plan: &'p Plan, audit_arch: u32) -> Result<Program> {
    // Syscall numbers as ranges: [start, next start) → leaf. Neighbouring numbers with the same
    // unconditional answer share one range, so ~300 allowed syscalls make only ~70 ranges.
    let mut ranges: Vec<(u32, Leaf<'p>)> = Vec::new();
    let mut push = |start: u32, leaf: Leaf<'p>| match (ranges.last(), leaf) {
        (Some((_, Leaf::Return(last))), Leaf::Return(a)) if *last == a => {}
        _ => ranges.push((start, leaf)),
    };
    let mut next_free = 0u32;
    for (nr, alts) in &plan.rules {
        let nr = *nr as u32;
        if nr > next_free {
            push(next_free, Leaf::Return(plan.default));
        }
        match alts.as_slice() {
            [only] if only.args.is_empty() => push(nr, Leaf::Return(only.action)),
            alts => push(nr, Leaf::Block(alts)),
        }
        next_free = nr + 1;
    }
    push(next_free, Leaf::Return(plan.default));

    let mut prog = vec![
        // A syscall of another ABI (32-bit x86 on x86_64, …) has other numbers: never guess, kill.
        insn(LD_W_ABS, 0, 0, OFF_ARCH),
        insn(JEQ, 1, 0, audit_arch),
        insn(RET_K, 0, 0, ret_value(Action::KillProcess)),
        insn(LD_W_ABS, 0, 0, OFF_NR),
    ];
    prog.extend(tree(&ranges, plan.default)?);
    if prog.len() > libc::BPF_MAXINSNS as usize {
        bail!(
            "the seccomp filter has {} instructions, more than the kernel's {}",
            prog.len(),
            libc::BPF_MAXINSNS
        );
    }
    Ok(prog)
}
// ANCHOR_END: compile

// ANCHOR: tree
/// Binary search over the ranges (A holds the syscall number). Every path ends in a `ret`, so a
/// subtree is self-contained code: `if (A >= start of the upper half) skip the lower half`.
fn tree(ranges: &[(u32, Leaf)], default: Action) -> Result<Program> {
    let mid = ranges.len() / 2;
    let (lower, upper) = match ranges {
        [(_, Leaf::Return(a))] => return Ok(vec![insn(RET_K, 0, 0, ret_value(*a))]),
        [(_, Leaf::Block(alts))] => return block(alts, default),
        _ => (
            tree(&ranges[..mid], default)?,
            tree(&ranges[mid..], default)?,
        ),
    };
    let mut out = Vec::with_capacity(lower.len() + upper.len() + 2);
    match u8::try_from(lower.len()) {
        Ok(skip) => out.push(insn(JGE, skip, 0, ranges[mid].0)),
        Err(_) => {
            out.push(insn(JGE, 0, 1, ranges[mid].0));
            out.push(insn(JA, 0, 0, lower.len() as u32));
        }
    }
    out.extend(lower);
    out.extend(upper);
    Ok(out)
}

/// The alternatives of one syscall, tried in order; the conditions of one must all hold.
fn block(alts: &[Alt], default: Action) -> Result<Program> {
    let mut asm = Asm::default();
    let mut rest = alts;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|a| same_test(first, a))
            .count()
            .max(1);
        if n > 1 {
            value_list(&mut asm, &rest[..n]);
        } else {
            let next = asm.label();
            for c in &first.args {
                condition(&mut asm, c, next);
            }
            asm.op(RET_K, ret_value(first.action));
            asm.place(next);
        }
        rest = &rest[n..];
    }
    asm.op(RET_K, ret_value(default));
    asm.finish()
}
// ANCHOR_END: tree

// ANCHOR: value_list
/// Alternatives that test one argument against a list of values (personality's 5 personas,
/// mknod's 4 file types): same action, one `Eq` or `MaskedEq` condition on the same argument with
/// the same mask and the same high word.
fn same_test(a: &Alt, b: &Alt) -> bool {
    match (a.args.as_slice(), b.args.as_slice()) {
        ([x], [y]) => {
            a.action == b.action
                && x.index == y.index
                && x.op == y.op
                && match x.op {
                    Op::Eq => x.value >> 32 == y.value >> 32,
                    Op::MaskedEq => x.value == y.value && x.value_two >> 32 == y.value_two >> 32,
                    _ => false,
                }
        }
        _ => false,
    }
}

/// `if ((arg & mask) == v1 || … == vn) return action;` — the high word once (skipped when the mask
/// clears it), then one `jeq` per value, all jumping to one shared `ret`.
fn value_list(asm: &mut Asm, alts: &[Alt]) {
    let c = alts[0].args[0];
    let masked = c.op == Op::MaskedEq;
    let (mask_hi, mask_lo) = if masked {
        ((c.value >> 32) as u32, c.value as u32)
    } else {
        (u32::MAX, u32::MAX)
    };
    let want = |a: &Alt| {
        if masked {
            a.args[0].value_two
        } else {
            a.args[0].value
        }
    };
    let n = alts.len() as u8; // callers pass a handful; a block never holds 256 alternatives
    let lo_part = if masked { 2 } else { 1 } + n as usize + 1; // ld (+and), n jeq, ret
    if mask_hi != 0 {
        load_arg(asm, c.index, true);
        if masked {
            asm.op(ALU_AND_K, mask_hi);
        }
        // wrong high word: skip the whole list
        asm.raw(insn(
            JEQ,
            0,
            lo_part as u8,
            (want(&alts[0]) >> 32) as u32 & mask_hi,
        ));
    }
    load_arg(asm, c.index, false);
    if masked {
        asm.op(ALU_AND_K, mask_lo);
    }
    for (i, a) in alts.iter().enumerate() {
        let last = i + 1 == alts.len();
        // equal: jump to the ret after the list; not equal: next jeq, or past the ret
        asm.raw(insn(JEQ, n - 1 - i as u8, u8::from(last), want(a) as u32));
    }
    asm.op(RET_K, ret_value(alts[0].action));
}
// ANCHOR_END: value_list

/// A classic-BPF interpreter for exactly the instructions [`compile`] emits, so unit tests can run
/// the real program on `seccomp_data` without a kernel.
#[cfg(test)]
pub fn run(prog: &[libc::sock_filter], nr: u32, arch: u32, args: &[u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let o = i.k as usize;
                a = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
            }
            ALU_AND_K => a &= i.k,
            JA => pc += i.k as usize,
            JEQ | JGT | JGE => {
                let t = match i.code {
                    JEQ => a == i.k,
                    JGT => a > i.k,
                    _ => a >= i.k,
                };
                pc += if t { i.jt } else { i.jf } as usize;
            }
            RET_K => return i.k,
            other => panic!("unexpected BPF opcode {other:#x}"),
        }
    }
}
