//! Functions generated code calls: the slow paths of loads and stores, and any instruction
//! the translator leaves to the interpreter. They never chain into other code and never
//! unwind: each returns a status the generated code tests, and an exception is left in
//! `hart.stop` exactly as the interpreter leaves it.

use crate::hart::Hart;
use crate::interp::op::Op;
use crate::mmu::Bits;

/// A load's result: `ok` is 0 when it raised an exception (recorded in the hart).
#[repr(C)]
pub(crate) struct Loaded {
    pub value: u64,
    pub ok: u64,
}

fn load<T: Bits>(hart: *mut Hart, vaddr: u64) -> Loaded {
    // SAFETY: generated code passes the hart pointer it was entered with (`rbx`), which the
    // run loop borrowed exclusively for the whole native run; nothing else holds a reference
    // to the hart while a helper runs.
    let hart = unsafe { &mut *hart };
    match hart.load_slow::<T>(vaddr) {
        Some(v) => Loaded { value: v.to_u64(), ok: 1 },
        None => Loaded { value: 0, ok: 0 },
    }
}

fn store<T: Bits>(hart: *mut Hart, vaddr: u64, value: u64) -> u32 {
    // SAFETY: as in `load`.
    let hart = unsafe { &mut *hart };
    hart.store_slow::<T>(vaddr, T::from_u64(value)) as u32
}

pub(crate) extern "sysv64" fn load_u8(hart: *mut Hart, vaddr: u64) -> Loaded {
    load::<u8>(hart, vaddr)
}
pub(crate) extern "sysv64" fn load_u16(hart: *mut Hart, vaddr: u64) -> Loaded {
    load::<u16>(hart, vaddr)
}
pub(crate) extern "sysv64" fn load_u32(hart: *mut Hart, vaddr: u64) -> Loaded {
    load::<u32>(hart, vaddr)
}
pub(crate) extern "sysv64" fn load_u64(hart: *mut Hart, vaddr: u64) -> Loaded {
    load::<u64>(hart, vaddr)
}
pub(crate) extern "sysv64" fn store_u8(hart: *mut Hart, vaddr: u64, value: u64) -> u32 {
    store::<u8>(hart, vaddr, value)
}
pub(crate) extern "sysv64" fn store_u16(hart: *mut Hart, vaddr: u64, value: u64) -> u32 {
    store::<u16>(hart, vaddr, value)
}
pub(crate) extern "sysv64" fn store_u32(hart: *mut Hart, vaddr: u64, value: u64) -> u32 {
    store::<u32>(hart, vaddr, value)
}
pub(crate) extern "sysv64" fn store_u64(hart: *mut Hart, vaddr: u64, value: u64) -> u32 {
    store::<u64>(hart, vaddr, value)
}

/// Runs one instruction in the interpreter. `op` points at a pair of ops in the block's
/// `Native`: the instruction, then [`end_of_op`], which its handler's `next` reaches.
/// Returns 0 when the instruction did not complete (the reason is in `hart.stop`).
pub(crate) extern "sysv64" fn run_op(hart: *mut Hart, op: *const Op) -> u32 {
    // SAFETY: as in `load` for the hart. `op` points into the boxed slice of the block's
    // `Native`, which outlives its code (see `Native`), and is followed by a second op, so
    // the handler's `next` stays inside the slice.
    let (hart, op) = unsafe { (&mut *hart, &*op) };
    (op.handler)(hart, op) as u32
}

/// The op after an instruction run by [`run_op`]: the instruction completed.
pub(crate) fn end_of_op(_: &mut Hart, _: &Op) -> bool {
    true
}
