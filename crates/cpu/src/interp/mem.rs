//! Loads, stores and atomics (unprivileged spec ch. 2.6 and ch. 8, "A").

use std::sync::atomic::Ordering;

use super::op::{next, stopped, Op};
use crate::consts::cause;
use crate::hart::Hart;
use crate::mmu::{fast_load, fast_store, Access, Bits};

/// Loads: the fast path inline, everything else in `load_slowly` (a tail call, so the fast
/// path needs no stack frame).
macro_rules! loads {
    ($($name:ident: $t:ty => |$v:ident| $e:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            fn extend($v: $t) -> u64 {
                $e
            }
            let addr = h.rs1(op).wrapping_add(op.imm as u64);
            match fast_load::<$t>(h, addr) {
                Some(v) => {
                    h.set_rd(op, extend(v));
                    next(h, op)
                }
                None => load_slowly::<$t>(h, op, addr, extend),
            }
        }
    )*};
}

#[inline(never)]
fn load_slowly<T: Bits>(h: &mut Hart, op: &Op, addr: u64, extend: fn(T) -> u64) -> bool {
    match h.load_slow::<T>(addr) {
        Some(v) => {
            h.set_rd(op, extend(v));
            next(h, op)
        }
        None => stopped(h, op),
    }
}

/// Stores, split the same way as loads.
macro_rules! stores {
    ($($name:ident: $t:ty;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let addr = h.rs1(op).wrapping_add(op.imm as u64);
            let v = h.rs2(op) as $t;
            if fast_store::<$t>(h, addr, v) {
                next(h, op)
            } else {
                store_slowly::<$t>(h, op, addr, v)
            }
        }
    )*};
}

#[inline(never)]
fn store_slowly<T: Bits>(h: &mut Hart, op: &Op, addr: u64, value: T) -> bool {
    if h.store_slow::<T>(addr, value) {
        next(h, op)
    } else {
        stopped(h, op)
    }
}

loads! {
    lb: u8 => |v| v as i8 as i64 as u64;
    lh: u16 => |v| v as i16 as i64 as u64;
    lw: u32 => |v| v as i32 as i64 as u64;
    ld: u64 => |v| v;
    lbu: u8 => |v| v as u64;
    lhu: u16 => |v| v as u64;
    lwu: u32 => |v| v as u64;
}

stores! {
    sb: u8;
    sh: u16;
    sw: u32;
    sd: u64;
}

/// The physical address of an atomic access, or the exception it raises. AMOs and LR/SC must
/// be naturally aligned (§8.2, §8.4) and keel only performs them on RAM (also on RAM pages the
/// bus watches: atomics are not how programs talk to HTIF).
fn atomic_target(h: &mut Hart, vaddr: u64, size: u64, access: Access) -> Result<u64, (u64, u64)> {
    let misaligned =
        if access == Access::Load { cause::LOAD_MISALIGNED } else { cause::STORE_MISALIGNED };
    if vaddr & (size - 1) != 0 {
        return Err((misaligned, vaddr));
    }
    let mode = h.data_mode as usize;
    let paddr = h.translate(vaddr, access, mode).map_err(|c| (c, vaddr))?;
    if !h.ram.contains(paddr, size) {
        return Err((access.access_fault(), vaddr));
    }
    Ok(paddr)
}

/// AMO handlers. Every AMO is performed as a host atomic on guest RAM, so it stays atomic
/// against other harts running on other host threads.
macro_rules! amos {
    ($($name:ident: $atomic:ident, $t:ty, $sext:expr => |$old:ident, $src:ident| $new:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let vaddr = h.rs1(op);
            let paddr = match atomic_target(h, vaddr, std::mem::size_of::<$t>() as u64, Access::Store) {
                Ok(p) => p,
                Err((c, tval)) => {
                    h.raise(c, tval);
                    return stopped(h, op);
                }
            };
            let $src = h.rs2(op) as $t;
            let word = h.ram.$atomic(paddr).expect("checked by atomic_target");
            let prev = word
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |$old| Some($new))
                .unwrap_or_else(|v| v);
            h.note_code_write(paddr, std::mem::size_of::<$t>() as u64);
            let sext: fn($t) -> u64 = $sext;
            h.set_rd(op, sext(prev));
            next(h, op)
        }
    )*};
}

fn w(v: u32) -> u64 {
    v as i32 as i64 as u64
}
fn d(v: u64) -> u64 {
    v
}

amos! {
    amoswap_w: atomic_u32, u32, w => |_old, s| s;
    amoadd_w: atomic_u32, u32, w => |old, s| old.wrapping_add(s);
    amoxor_w: atomic_u32, u32, w => |old, s| old ^ s;
    amoand_w: atomic_u32, u32, w => |old, s| old & s;
    amoor_w: atomic_u32, u32, w => |old, s| old | s;
    amomin_w: atomic_u32, u32, w => |old, s| (old as i32).min(s as i32) as u32;
    amomax_w: atomic_u32, u32, w => |old, s| (old as i32).max(s as i32) as u32;
    amominu_w: atomic_u32, u32, w => |old, s| old.min(s);
    amomaxu_w: atomic_u32, u32, w => |old, s| old.max(s);
    amoswap_d: atomic_u64, u64, d => |_old, s| s;
    amoadd_d: atomic_u64, u64, d => |old, s| old.wrapping_add(s);
    amoxor_d: atomic_u64, u64, d => |old, s| old ^ s;
    amoand_d: atomic_u64, u64, d => |old, s| old & s;
    amoor_d: atomic_u64, u64, d => |old, s| old | s;
    amomin_d: atomic_u64, u64, d => |old, s| (old as i64).min(s as i64) as u64;
    amomax_d: atomic_u64, u64, d => |old, s| (old as i64).max(s as i64) as u64;
    amominu_d: atomic_u64, u64, d => |old, s| old.min(s);
    amomaxu_d: atomic_u64, u64, d => |old, s| old.max(s);
}

/// LR: load and remember the address and the value seen. SC succeeds only if memory still
/// holds that value, checked and written in one host compare-and-swap, so a store by another
/// hart in between makes it fail (§8.2).
macro_rules! lr_sc {
    ($lr:ident, $sc:ident, $atomic:ident, $t:ty, $sext:expr) => {
        pub(crate) fn $lr(h: &mut Hart, op: &Op) -> bool {
            let vaddr = h.rs1(op);
            let paddr =
                match atomic_target(h, vaddr, std::mem::size_of::<$t>() as u64, Access::Load) {
                    Ok(p) => p,
                    Err((c, tval)) => {
                        h.raise(c, tval);
                        return stopped(h, op);
                    }
                };
            let v = h.ram.$atomic(paddr).expect("checked").load(Ordering::SeqCst);
            h.reservation.set(Some((paddr, v as u64)));
            let sext: fn($t) -> u64 = $sext;
            h.set_rd(op, sext(v));
            next(h, op)
        }

        pub(crate) fn $sc(h: &mut Hart, op: &Op) -> bool {
            let vaddr = h.rs1(op);
            let paddr =
                match atomic_target(h, vaddr, std::mem::size_of::<$t>() as u64, Access::Store) {
                    Ok(p) => p,
                    Err((c, tval)) => {
                        h.raise(c, tval);
                        return stopped(h, op);
                    }
                };
            let ok = match h.reservation.take() {
                Some((addr, seen)) if addr == paddr => h
                    .ram
                    .$atomic(paddr)
                    .expect("checked")
                    .compare_exchange(
                        seen as $t,
                        h.rs2(op) as $t,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_ok(),
                _ => false,
            };
            if ok {
                h.note_code_write(paddr, std::mem::size_of::<$t>() as u64);
            }
            h.set_rd(op, if ok { 0 } else { 1 });
            next(h, op)
        }
    };
}

lr_sc!(lr_w, sc_w, atomic_u32, u32, w);
lr_sc!(lr_d, sc_d, atomic_u64, u64, d);
