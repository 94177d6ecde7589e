//! Signed, expiring desktop tokens: `<expires ms>.<hex HMAC-SHA256>` over the
//! sandbox id, the VNC port the URL names and the expiry, under a key made at
//! start (so a restart of the server ends every desktop URL it gave out). The
//! port is signed because the desktop's socket is a TCP tunnel into the
//! sandbox: a token good for any port would reach every server in it, the
//! agent's own API among them.
//!
//! The same key signs the console's PTY WebSocket tickets ([`DesktopTokens::issue_pty_ticket`]),
//! under another domain string: a desktop token is never a ticket, nor the reverse.

use alcove_wire::time::now_millis;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long a desktop URL stays valid.
pub const TOKEN_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// How long a PTY WebSocket ticket stays valid: only long enough to open the socket (which
/// then stays open); a reconnect asks for a new one.
pub const PTY_TICKET_LIFETIME_MS: i64 = 30 * 1000;

/// What a signature authorizes; its own domain string goes into the MAC.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// The desktop page and its socket.
    Desktop,
    /// Opening a PTY WebSocket through the proxy (the console's terminal).
    PtySocket,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Desktop => b"alcove-desktop\0",
            Purpose::PtySocket => b"alcove-pty-ticket\0",
        }
    }
}

/// Makes and checks desktop tokens.
pub struct DesktopTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for DesktopTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DesktopTokens(..)")
    }
}

impl DesktopTokens {
    /// Tokens under a fresh random key.
    pub fn random() -> Self {
        use chacha20poly1305::aead::rand_core::RngCore;
        let mut key = [0u8; 32];
        chacha20poly1305::aead::OsRng.fill_bytes(&mut key);
        Self { key }
    }

    /// A desktop token for the VNC server at `port` of `sandbox_id` that expires at `expires_ms`.
    pub fn issue(&self, sandbox_id: &str, port: u16, expires_ms: i64) -> String {
        self.sign(
            Purpose::Desktop,
            sandbox_id,
            &port.to_be_bytes(),
            expires_ms,
        )
    }

    /// Whether `token` is a desktop token issued for `port` of `sandbox_id` and has not expired.
    pub fn verify(&self, sandbox_id: &str, port: u16, token: &str) -> bool {
        self.check(Purpose::Desktop, sandbox_id, &port.to_be_bytes(), token)
    }

    /// A ticket that opens PTY WebSockets of `sandbox_id` through the proxy until `expires_ms`.
    pub fn issue_pty_ticket(&self, sandbox_id: &str, expires_ms: i64) -> String {
        self.sign(Purpose::PtySocket, sandbox_id, &[], expires_ms)
    }

    /// Whether `ticket` is a PTY ticket issued for `sandbox_id` and has not expired.
    pub fn verify_pty_ticket(&self, sandbox_id: &str, ticket: &str) -> bool {
        self.check(Purpose::PtySocket, sandbox_id, &[], ticket)
    }

    fn sign(&self, purpose: Purpose, sandbox_id: &str, scope: &[u8], expires_ms: i64) -> String {
        format!(
            "{expires_ms}.{}",
            hex::encode(
                self.mac(purpose, sandbox_id, scope, expires_ms)
                    .finalize()
                    .into_bytes()
            )
        )
    }

    fn check(&self, purpose: Purpose, sandbox_id: &str, scope: &[u8], token: &str) -> bool {
        let Some((expires, sig)) = token.split_once('.') else {
            return false;
        };
        let (Ok(expires_ms), Ok(sig)) = (expires.parse::<i64>(), hex::decode(sig)) else {
            return false;
        };
        // verify_slice compares in constant time.
        expires_ms > now_millis()
            && self
                .mac(purpose, sandbox_id, scope, expires_ms)
                .verify_slice(&sig)
                .is_ok()
    }

    /// The MAC of a token: `scope` is what else it is bound to (a desktop's port; nothing for
    /// a ticket), of a fixed length per purpose, so no two inputs run into each other.
    fn mac(&self, purpose: Purpose, sandbox_id: &str, scope: &[u8], expires_ms: i64) -> HmacSha256 {
        // new_from_slice only fails for key lengths HMAC cannot take; 32 bytes it can.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a 32-byte key"));
        mac.update(purpose.domain());
        mac.update(sandbox_id.as_bytes());
        mac.update(b"\0");
        mac.update(scope);
        mac.update(&expires_ms.to_be_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_own_sandbox_until_it_expires() {
        let tokens = DesktopTokens::random();
        let later = now_millis() + 60_000;
        let t = tokens.issue("a", 5901, later);
        assert!(tokens.verify("a", 5901, &t));
        assert!(!tokens.verify("b", 5901, &t), "another sandbox");
        for port in [5900, 9501, 1, u16::MAX] {
            assert!(!tokens.verify("a", port, &t), "another port: {port}");
        }
        assert!(
            !tokens.verify("a", 5901, &tokens.issue("a", 5901, now_millis() - 1)),
            "expired"
        );
        let (_, sig) = t.split_once('.').expect("two parts");
        assert!(
            !tokens.verify("a", 5901, &format!("{}.{sig}", later + 1)),
            "moved expiry"
        );
        assert!(
            !DesktopTokens::random().verify("a", 5901, &t),
            "another server"
        );
        for bad in ["", ".", "x.y", "1.zz", &format!("{later}")] {
            assert!(!tokens.verify("a", 5901, bad), "{bad:?}");
        }
    }

    #[test]
    fn a_pty_ticket_is_no_desktop_token_and_the_reverse() {
        let tokens = DesktopTokens::random();
        let later = now_millis() + 60_000;
        let ticket = tokens.issue_pty_ticket("a", later);
        assert!(tokens.verify_pty_ticket("a", &ticket));
        assert!(!tokens.verify_pty_ticket("b", &ticket), "another sandbox");
        assert!(
            !tokens.verify("a", 5901, &ticket),
            "a ticket opens no desktop"
        );
        assert!(
            !tokens.verify_pty_ticket("a", &tokens.issue("a", 5901, later)),
            "a desktop token opens no terminal"
        );
        assert!(
            !tokens.verify_pty_ticket("a", &tokens.issue_pty_ticket("a", now_millis() - 1)),
            "expired"
        );
    }
}
