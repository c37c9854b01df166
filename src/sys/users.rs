//! User, group and host name lookups (the reentrant `*_r` libc calls).
//!
//! Everything here runs in the parent when the config is loaded, never after fork.

use std::ffi::{CStr, CString};

/// A passwd entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

const INITIAL_BUF: usize = 1024;
const MAX_BUF: usize = 1 << 20;

fn cstr_field(ptr: *const libc::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: `ptr` points into the buffer filled by getpw*_r, which NUL-terminates every field
    // and outlives this call.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

/// Runs a `getpw*_r`-style lookup, growing the buffer on ERANGE.
fn lookup_passwd(
    call: impl Fn(*mut libc::passwd, *mut libc::c_char, usize, *mut *mut libc::passwd) -> i32,
) -> Option<Passwd> {
    let mut size = INITIAL_BUF;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: an all-zero `passwd` is a valid value (null pointers, zero ids); it is only
        // read after the libc call filled it in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == libc::ERANGE && size < MAX_BUF {
            size *= 2;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some(Passwd {
            name: cstr_field(pwd.pw_name),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home: cstr_field(pwd.pw_dir),
            shell: cstr_field(pwd.pw_shell),
        });
    }
}

/// Looks a user up by name.
pub fn user_by_name(name: &str) -> Option<Passwd> {
    let cname = CString::new(name).ok()?;
    lookup_passwd(|pwd, buf, len, result| {
        // SAFETY: `cname` is a valid C string; `pwd`, `buf` (of `len` bytes) and `result` are
        // valid writable pointers owned by `lookup_passwd` for the duration of the call.
        unsafe { libc::getpwnam_r(cname.as_ptr(), pwd, buf, len, result) }
    })
}

/// Looks a user up by uid.
pub fn user_by_uid(uid: u32) -> Option<Passwd> {
    lookup_passwd(|pwd, buf, len, result| {
        // SAFETY: `pwd`, `buf` (of `len` bytes) and `result` are valid writable pointers owned by
        // `lookup_passwd` for the duration of the call.
        unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) }
    })
}

fn lookup_group(
    call: impl Fn(*mut libc::group, *mut libc::c_char, usize, *mut *mut libc::group) -> i32,
) -> Option<u32> {
    let mut size = INITIAL_BUF;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: an all-zero `group` is a valid value; it is only read after libc filled it.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = call(&mut grp, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == libc::ERANGE && size < MAX_BUF {
            size *= 2;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some(grp.gr_gid);
    }
}

/// Looks a group up by name and returns its gid.
pub fn group_by_name(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    lookup_group(|grp, buf, len, result| {
        // SAFETY: `cname` is a valid C string; the other pointers are valid and writable for
        // the duration of the call (owned by `lookup_group`).
        unsafe { libc::getgrnam_r(cname.as_ptr(), grp, buf, len, result) }
    })
}

/// Whether a group with this gid exists.
pub fn group_exists(gid: u32) -> bool {
    lookup_group(|grp, buf, len, result| {
        // SAFETY: the pointers are valid and writable for the duration of the call (owned by
        // `lookup_group`).
        unsafe { libc::getgrgid_r(gid, grp, buf, len, result) }
    })
    .is_some()
}

/// The groups `initgroups(name, gid)` would set: `gid` first, then every group listing the user.
pub fn group_list(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else {
        return vec![gid];
    };
    let mut capacity: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; capacity as usize];
        let mut count = capacity;
        // SAFETY: `cname` is a valid C string, `groups` has room for `count` entries and
        // `count` is a valid pointer; getgrouplist writes at most `count` entries.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            let mut out = vec![gid];
            for g in groups {
                if !out.contains(&g) {
                    out.push(g);
                }
            }
            return out;
        }
        if count <= capacity {
            capacity *= 2;
        } else {
            capacity = count;
        }
        if capacity > 65536 {
            return vec![gid];
        }
    }
}

/// The real uid of this process.
pub fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

/// The host name (`platform.node()` in Python), empty if it cannot be read.
pub fn hostname() -> String {
    let mut buf = vec![0u8; 256];
    // SAFETY: `buf` is writable for `buf.len()` bytes; gethostname NUL-terminates on success
    // when the name fits (we also stop at the buffer end below).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_by_name_and_uid() {
        let root = user_by_name("root").expect("root exists");
        assert_eq!(root.uid, 0);
        assert_eq!(user_by_uid(0).map(|p| p.name), Some("root".to_string()));
        assert!(group_list("root", root.gid).starts_with(&[root.gid]));
    }

    #[test]
    fn unknown_user_is_none() {
        assert_eq!(user_by_name("no-such-user-minisv"), None);
        assert_eq!(user_by_name("nul\0byte"), None);
    }
}
