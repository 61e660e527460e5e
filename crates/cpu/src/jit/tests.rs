use super::code::CodeCache;
use super::*;

/// The permissions of the mapping holding `addr`, from /proc/self/maps ("rwxp" style).
fn permissions(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let perms = fields.next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) =
            (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
        if (lo..hi).contains(&addr) {
            return perms.to_string();
        }
    }
    panic!("{addr:#x} is not mapped");
}

#[test]
fn code_is_never_writable_and_executable_at_once() {
    let mut cache = CodeCache::new(1 << 20).unwrap();
    let at = cache.push(&[0xc3; 64]).unwrap();
    let perms = permissions(at);
    assert!(perms.starts_with("r-x"), "the code's view is {perms}");
    // Every mapping of this process: none both writable and executable.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let perms = line.split_whitespace().nth(1).unwrap();
        assert!(!(perms.contains('w') && perms.contains('x')), "W+X mapping: {line}");
    }
}

#[test]
fn a_full_cache_refuses_code_and_a_reset_makes_room() {
    let mut cache = CodeCache::new(1 << 20).unwrap();
    let mark = cache.used();
    let block = vec![0x90; 100_000];
    let mut placed = 0;
    while cache.push(&block).is_some() {
        placed += 1;
    }
    assert_eq!(placed, 10, "1 MiB holds ten 100 kB blocks, 16-byte aligned");
    cache.reset_to(mark);
    assert!(cache.push(&block).is_some());
}

#[test]
fn patched_jumps_land_on_their_target() {
    let mut cache = CodeCache::new(1 << 20).unwrap();
    // jmp rel32 (to the next instruction), then two returns.
    let at = cache.push(&[0xe9, 0, 0, 0, 0, 0xc3, 0xc3]).unwrap();
    cache.patch_rel32(at + 1, at + 6);
    // SAFETY: reading back bytes this test placed in the cache's executable view.
    let rel = unsafe { std::ptr::read_unaligned((at + 1) as *const i32) };
    assert_eq!(rel, 1, "from the end of the jump (at + 5) to at + 6");
}

#[test]
fn stop_codes_carry_the_position() {
    let code = stop_code(0xffe, 63);
    assert_eq!(code & 0xff, EXIT_STOP);
    assert_eq!((code >> 8) & 0xff, 63);
    assert_eq!(code >> 16, 0xffe);
}

#[test]
fn a_cache_below_the_minimum_is_refused() {
    let config = JitConfig { cache_bytes: 4096, ..JitConfig::default() };
    assert!(matches!(Jit::new(config), Err(JitError::CacheTooSmall(0))));
}
