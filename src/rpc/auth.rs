//! HTTP Basic authentication as Supervisor's medusa `auth_handler` does it (4.1).

use crate::config::Credentials;
use crate::rpc::sha1::sha1_hex;

/// What to answer a request, given its `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    Allowed,
    /// 401 with `WWW-Authenticate: Basic realm="default"`: no usable credentials.
    Unauthorized,
    /// 401 as well, for credentials that do not match: a failed login, logged with the user
    /// name given (never the password).
    WrongCredentials {
        user: String,
    },
    /// 400: the Basic cookie is not valid base64 (or not UTF-8).
    Malformed,
}

/// Checks an `Authorization` header value against the section's credentials.
///
/// Medusa splits the header at the first space (`([^ ]+) (.*)`), compares the scheme without
/// case, base64-decodes the rest leniently (Python's `decodebytes`), and splits at the first `:`.
pub fn check(header: Option<&str>, creds: &Credentials) -> AuthOutcome {
    let Some(value) = header else {
        return AuthOutcome::Unauthorized;
    };
    let Some((scheme, cookie)) = value.split_once(' ') else {
        return AuthOutcome::Unauthorized;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return AuthOutcome::Unauthorized;
    }
    let Some(decoded) = decode_base64(cookie.as_bytes()) else {
        return AuthOutcome::Malformed;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return AuthOutcome::Malformed;
    };
    // Supervisor answers a cookie without ':' with a 500 (a Python unpacking error); a plain
    // refusal is what it means.
    let Some((user, password)) = decoded.split_once(':') else {
        return AuthOutcome::Unauthorized;
    };
    if password_matches(user, password, creds) {
        AuthOutcome::Allowed
    } else {
        AuthOutcome::WrongCredentials { user: user.to_string() }
    }
}

/// Supervisor's `encrypted_dictionary_authorizer`: a stored `{SHA}<hex>` is compared with the
/// SHA-1 hex digest of the given password, anything else with the password itself.
fn password_matches(user: &str, password: &str, creds: &Credentials) -> bool {
    let user_ok = constant_time_eq(user.as_bytes(), creds.username.as_bytes());
    let pass_ok = match creds.password.strip_prefix("{SHA}") {
        Some(hex) => constant_time_eq(sha1_hex(password.as_bytes()).as_bytes(), hex.as_bytes()),
        None => constant_time_eq(password.as_bytes(), creds.password.as_bytes()),
    };
    user_ok & pass_ok
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0);
    }
    diff == 0
}

/// Python's non-strict `binascii.a2b_base64`: characters outside the alphabet are skipped, a
/// complete padding ends the data, and a data length that does not fit quads is an error.
pub fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut quad_pos = 0u32;
    let mut pads = 0u32;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pads += 1;
                if quad_pos >= 2 && quad_pos + pads >= 4 {
                    return Some(out);
                }
                continue;
            }
            _ => continue,
        };
        pads = 0;
        acc = (acc << 6) | u32::from(v);
        quad_pos += 1;
        match quad_pos {
            2 => out.push((acc >> 4) as u8),
            3 => out.push((acc >> 2) as u8),
            4 => {
                out.push(acc as u8);
                quad_pos = 0;
                acc = 0;
            }
            _ => {}
        }
    }
    (quad_pos == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials { username: user.into(), password: password.into() }
    }

    #[test]
    fn base64_decodes_like_python() {
        assert_eq!(decode_base64(b"Ym9iOnNlY3JldA==").as_deref(), Some(&b"bob:secret"[..]));
        assert_eq!(decode_base64(b"").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64(b"YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_base64(b"YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(decode_base64(b"YWJj").as_deref(), Some(&b"abc"[..]));
        // Non-alphabet characters are skipped; data after complete padding is ignored.
        assert_eq!(decode_base64(b"Y W\nJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode_base64(b"YQ==garbage").as_deref(), Some(&b"a"[..]));
        // Incorrect padding and a lone extra character are errors.
        assert_eq!(decode_base64(b"YQ"), None);
        assert_eq!(decode_base64(b"YWJjZ"), None);
        assert_eq!(decode_base64(b"YQ="), None);
    }

    #[test]
    fn plain_password() {
        let c = creds("bob", "secret");
        assert_eq!(check(Some("Basic Ym9iOnNlY3JldA=="), &c), AuthOutcome::Allowed);
        assert_eq!(check(Some("basic Ym9iOnNlY3JldA=="), &c), AuthOutcome::Allowed);
        // bob:wrong
        assert_eq!(check(Some("Basic Ym9iOndyb25n"), &c), AuthOutcome::WrongCredentials { user: "bob".into() });
        // alice:secret
        assert_eq!(check(Some("Basic YWxpY2U6c2VjcmV0"), &c), AuthOutcome::WrongCredentials { user: "alice".into() });
        assert_eq!(check(None, &c), AuthOutcome::Unauthorized);
        assert_eq!(check(Some("Digest abc"), &c), AuthOutcome::Unauthorized);
        assert_eq!(check(Some("Basic"), &c), AuthOutcome::Unauthorized);
        assert_eq!(check(Some("Basic YQ"), &c), AuthOutcome::Malformed);
        // "bob" without a colon.
        assert_eq!(check(Some("Basic Ym9i"), &c), AuthOutcome::Unauthorized);
    }

    #[test]
    fn sha_password_accepts_the_password_not_the_hash() {
        // sha1("pw") = 1a91d62f7ca67399625a4368a6ab5d4a3baa6073
        let c = creds("bob", "{SHA}1a91d62f7ca67399625a4368a6ab5d4a3baa6073");
        // bob:pw
        assert_eq!(check(Some("Basic Ym9iOnB3"), &c), AuthOutcome::Allowed);
        let hash_as_password = format!("Basic {}", "Ym9iOjFhOTFkNjJmN2NhNjczOTk2MjVhNDM2OGE2YWI1ZDRhM2JhYTYwNzM=");
        assert!(matches!(check(Some(&hash_as_password), &c), AuthOutcome::WrongCredentials { .. }));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(b"a", b""));
    }
}
