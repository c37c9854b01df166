//! System calls made without libc, for the child between clone and exec: it runs on the
//! daemon thread's thread-local storage while that thread goes on, so it must not write errno
//! as libc's wrappers do. Each architecture has two pieces of assembly (a system call, and a
//! clone that calls a function on a new stack); the rest is shared. Elsewhere libc's wrappers
//! are used, and children start with CLONE_VFORK (the daemon's thread stopped meanwhile).

/// Whether these calls leave errno alone here. Only then may a child run while the daemon
/// does.
pub const AVAILABLE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// The kernel's signal set, as rt_sigprocmask takes it (it refuses any other size): 128 signals
/// on MIPS, 64 elsewhere.
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
pub type KernelSigset = u128;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
pub type KernelSigset = u64;

/// The function a cloned child runs, given `arg`; it must not return.
pub type ChildMain = extern "C" fn(*mut libc::c_void) -> libc::c_int;

/// A system call: its result, or the error number.
///
/// # Safety
/// The system call's own contract, for `n` with the arguments `a`.
pub unsafe fn syscall(n: libc::c_long, a: [usize; 6]) -> Result<usize, i32> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        // SAFETY: the caller's.
        result(unsafe { syscall6(n, a) })
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // SAFETY: the caller's.
        let r = unsafe { libc::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if r == -1 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL))
        } else {
            Ok(r as usize)
        }
    }
}

/// clone(2) with `main(arg)` run on the stack below `top`; the child's pid, or the error
/// number. libc's wrapper will not do where there is an alternative: musl's refuses
/// CLONE_CHILD_CLEARTID (it takes it for a thread without its own thread structure).
/// `clear_tid`: the word the kernel zeroes when the child execs or exits (CLONE_CHILD_CLEARTID).
///
/// # Safety
/// `top` is the 16-byte aligned top of a stack that nothing else uses until the child execs or
/// exits; `main` never returns and may rely on `arg` until then.
pub unsafe fn clone(
    top: usize,
    flags: libc::c_int,
    main: ChildMain,
    arg: *mut libc::c_void,
    clear_tid: *mut libc::pid_t,
) -> Result<libc::pid_t, i32> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        // SAFETY: the caller's.
        result(unsafe { clone_on(top, flags as libc::c_long as usize, main, arg, clear_tid) })
            .map(|pid| pid as libc::pid_t)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: the caller's.
        let pid = unsafe { libc::clone(main, top as *mut libc::c_void, flags, arg, null, null, clear_tid) };
        if pid == -1 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL))
        } else {
            Ok(pid)
        }
    }
}

/// The kernel's return value: -4095..-1 is an error number.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn result(r: isize) -> Result<usize, i32> {
    if (-4095..0).contains(&r) {
        Err(-r as i32)
    } else {
        Ok(r as usize)
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn syscall6(n: libc::c_long, a: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: the caller's; `syscall` clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => r,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    r
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall6(n: libc::c_long, a: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: the caller's; `svc 0` changes x0 only.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] as isize => r,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    r
}

/// The child starts with the parent's registers except its stack pointer, the return value
/// (0) and the registers the system call clobbers: it calls `main(arg)` from the two
/// callee-saved registers that hold them; the exit after it is a guard.
#[cfg(target_arch = "x86_64")]
unsafe fn clone_on(
    top: usize,
    flags: usize,
    main: ChildMain,
    arg: *mut libc::c_void,
    clear_tid: *mut libc::pid_t,
) -> isize {
    let r: isize;
    // SAFETY: the caller's. The parent's side is a plain system call.
    unsafe {
        std::arch::asm!(
            // clone(flags, stack, parent_tid, child_tid, tls)
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone as isize => r,
            in("rdi") flags, in("rsi") top, in("rdx") 0usize, in("r10") clear_tid, in("r8") 0usize,
            in("r12") main, in("r13") arg,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    r
}

#[cfg(target_arch = "aarch64")]
unsafe fn clone_on(
    top: usize,
    flags: usize,
    main: ChildMain,
    arg: *mut libc::c_void,
    clear_tid: *mut libc::pid_t,
) -> isize {
    let r: isize;
    // SAFETY: the caller's. The parent's side is a plain system call.
    unsafe {
        std::arch::asm!(
            // clone(flags, stack, parent_tid, tls, child_tid)
            "svc 0",
            "cbnz x0, 2f",
            "mov x0, x21",
            "blr x20",
            "mov x8, #{exit}",
            "svc 0",
            "udf #0",
            "2:",
            exit = const libc::SYS_exit,
            in("x8") libc::SYS_clone,
            inlateout("x0") flags as isize => r,
            in("x1") top, in("x2") 0usize, in("x3") 0usize, in("x4") clear_tid,
            in("x20") main, in("x21") arg,
            options(nostack),
        );
    }
    r
}
