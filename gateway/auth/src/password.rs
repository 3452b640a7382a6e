//! EMQX-compatible password hashing: the `password_hash_algorithm` of EMQX 5's password-based
//! authenticators (`emqx_authn_password_hashing`, `emqx_passwd`), plus argon2id.
//!
//! What is stored, as EMQX stores it (so that EMQX exports import unchanged):
//!
//! | algorithm | stored `password_hash` | `salt` |
//! |---|---|---|
//! | `plain` | the password itself, with the salt before/after it per `salt_position` | empty for new users |
//! | `md5`, `sha`, `sha256`, `sha512` | lowercase hex of hash(salt ++ password) (`prefix`), hash(password ++ salt) (`suffix`) or hash(password) (`disable`) | 32 hex characters, used as ASCII bytes; empty with `disable` |
//! | `pbkdf2` | lowercase hex of PBKDF2-HMAC(`mac_fun`, password, salt, `iterations`, `dk_length`) | 32 hex characters, used as ASCII bytes |
//! | `bcrypt` | the modular-crypt string `$2b$10$...` (salt inside; only the first 72 bytes of a password count, as everywhere) | unused |
//! | `argon2` | the PHC string `$argon2id$v=19$m=...,t=...,p=...$salt$hash` (salt and parameters inside) | unused |
//!
//! Hex hashes are compared case-insensitively, as EMQX documents. Every comparison of a computed
//! hash with a stored one is constant-time (for bcrypt and argon2 the crates compare).
//!
//! # Which algorithm by default
//!
//! EMQX's schema default for a password-based authenticator is `sha256` with the salt as prefix
//! ([`HashAlgorithm::EMQX_DEFAULT`]; the EMQX docs' example uses `suffix`). One round of SHA-256
//! is fast to brute-force once a database leaks, so Portico's own default
//! ([`HashAlgorithm::default`]) is argon2id with the OWASP parameters (19 MiB, 2 passes, 1
//! lane): new users get a memory-hard hash unless the operator asks for an EMQX algorithm,
//! e.g. to share users with an EMQX cluster or import its hashes. Changing the algorithm does
//! not rehash stored users: hashes made with another algorithm stop verifying, as in EMQX.

use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params, PasswordHash};
use rand::RngCore;
use sha2::Digest;
use subtle::ConstantTimeEq;

/// Where the salt goes for the simple algorithms (EMQX `salt_position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaltPosition {
    /// No salt: hash(password).
    Disable,
    /// hash(salt ++ password); EMQX's default.
    #[default]
    Prefix,
    /// hash(password ++ salt).
    Suffix,
}

impl SaltPosition {
    /// The configuration spelling (`disable`, `prefix`, `suffix`).
    pub fn as_str(self) -> &'static str {
        match self {
            SaltPosition::Disable => "disable",
            SaltPosition::Prefix => "prefix",
            SaltPosition::Suffix => "suffix",
        }
    }

    /// Parses the configuration spelling.
    pub fn from_name(name: &str) -> Option<SaltPosition> {
        match name {
            "disable" => Some(SaltPosition::Disable),
            "prefix" => Some(SaltPosition::Prefix),
            "suffix" => Some(SaltPosition::Suffix),
            _ => None,
        }
    }
}

/// The HMAC hash of PBKDF2 (EMQX `mac_fun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacFun {
    /// MD4 (only for importing old hashes).
    Md4,
    /// MD5.
    Md5,
    /// RIPEMD-160.
    Ripemd160,
    /// SHA-1 (EMQX calls it `sha`).
    Sha,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl MacFun {
    /// Every `mac_fun`, in EMQX's order.
    pub const ALL: [MacFun; 8] = [
        MacFun::Md4,
        MacFun::Md5,
        MacFun::Ripemd160,
        MacFun::Sha,
        MacFun::Sha224,
        MacFun::Sha256,
        MacFun::Sha384,
        MacFun::Sha512,
    ];

    /// The configuration spelling (`md4`, `md5`, `ripemd160`, `sha`, `sha224`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MacFun::Md4 => "md4",
            MacFun::Md5 => "md5",
            MacFun::Ripemd160 => "ripemd160",
            MacFun::Sha => "sha",
            MacFun::Sha224 => "sha224",
            MacFun::Sha256 => "sha256",
            MacFun::Sha384 => "sha384",
            MacFun::Sha512 => "sha512",
        }
    }

    /// Parses the configuration spelling.
    pub fn from_name(name: &str) -> Option<MacFun> {
        MacFun::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Output length of the hash in bytes: PBKDF2's `dk_length` when none is configured.
    pub fn output_len(self) -> usize {
        match self {
            MacFun::Md4 | MacFun::Md5 => 16,
            MacFun::Ripemd160 | MacFun::Sha => 20,
            MacFun::Sha224 => 28,
            MacFun::Sha256 => 32,
            MacFun::Sha384 => 48,
            MacFun::Sha512 => 64,
        }
    }

    fn derive(self, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
        use pbkdf2::pbkdf2_hmac;
        match self {
            MacFun::Md4 => pbkdf2_hmac::<md4::Md4>(password, salt, iterations, out),
            MacFun::Md5 => pbkdf2_hmac::<md5::Md5>(password, salt, iterations, out),
            MacFun::Ripemd160 => pbkdf2_hmac::<ripemd::Ripemd160>(password, salt, iterations, out),
            MacFun::Sha => pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
            MacFun::Sha224 => pbkdf2_hmac::<sha2::Sha224>(password, salt, iterations, out),
            MacFun::Sha256 => pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out),
            MacFun::Sha384 => pbkdf2_hmac::<sha2::Sha384>(password, salt, iterations, out),
            MacFun::Sha512 => pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out),
        }
    }
}

/// Longest PBKDF2 output accepted (`dk_length`), in bytes.
pub const MAX_DK_LENGTH: u32 = 1024;
/// bcrypt work factors accepted for new hashes (EMQX clamps `salt_rounds` to 5..=10; the bcrypt
/// format allows 4..=31).
pub const BCRYPT_ROUNDS: std::ops::RangeInclusive<u32> = 4..=31;
/// Highest bcrypt cost a stored hash may have to be verified: one CONNECT must not cost minutes
/// of CPU because an imported hash says `$2b$31$`.
pub const MAX_BCRYPT_VERIFY_COST: u32 = 16;
/// Most memory (KiB) a stored argon2 hash may ask for to be verified (256 MiB).
pub const MAX_ARGON2_VERIFY_MEMORY_KIB: u32 = 256 * 1024;
/// Most passes a stored argon2 hash may ask for to be verified.
pub const MAX_ARGON2_VERIFY_PASSES: u32 = 64;
/// Most lanes a stored argon2 hash may ask for to be verified.
pub const MAX_ARGON2_VERIFY_LANES: u32 = 16;

/// How passwords are hashed and checked: EMQX's `password_hash_algorithm` (`name` plus its
/// options), and argon2id. See the module docs for the stored formats and the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// The password itself (EMQX `plain`): for migrations only.
    Plain {
        /// Where a stored salt goes (new users get none, as in EMQX).
        salt_position: SaltPosition,
    },
    /// MD5, hex.
    Md5 {
        /// Where the salt goes.
        salt_position: SaltPosition,
    },
    /// SHA-1 (EMQX `sha`), hex.
    Sha {
        /// Where the salt goes.
        salt_position: SaltPosition,
    },
    /// SHA-256, hex.
    Sha256 {
        /// Where the salt goes.
        salt_position: SaltPosition,
    },
    /// SHA-512, hex.
    Sha512 {
        /// Where the salt goes.
        salt_position: SaltPosition,
    },
    /// PBKDF2 with HMAC-`mac_fun`, hex.
    Pbkdf2 {
        /// The HMAC hash.
        mac_fun: MacFun,
        /// Iterations (≥ 1).
        iterations: u32,
        /// Derived key length in bytes; `None` = the hash's output length.
        dk_length: Option<u32>,
    },
    /// bcrypt; the salt is inside the stored hash.
    Bcrypt {
        /// Work factor for new hashes (EMQX default 10).
        salt_rounds: u32,
    },
    /// argon2id (PHC string); salt and parameters are inside the stored hash, so changing them
    /// here only affects new hashes.
    Argon2 {
        /// Memory in KiB (`m`).
        memory_kib: u32,
        /// Passes (`t`).
        iterations: u32,
        /// Lanes (`p`).
        parallelism: u32,
    },
}

impl Default for HashAlgorithm {
    /// argon2id with the OWASP parameters: Portico's recommendation (see the module docs).
    fn default() -> Self {
        HashAlgorithm::ARGON2_DEFAULT
    }
}

/// Why a password could not be hashed, or an algorithm is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// `plain` stores the password as text: it must be UTF-8.
    #[error("the plain algorithm stores passwords as text; this password is not UTF-8")]
    NotUtf8,
    /// The algorithm's options are out of range.
    #[error("invalid {algorithm} options: {why}")]
    InvalidOptions {
        /// Algorithm name.
        algorithm: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The hashing library failed.
    #[error("{algorithm} hashing failed: {why}")]
    Failed {
        /// Algorithm name.
        algorithm: &'static str,
        /// The library's message.
        why: String,
    },
}

impl HashAlgorithm {
    /// EMQX 5's schema default: `sha256` with `salt_position = prefix`.
    pub const EMQX_DEFAULT: HashAlgorithm = HashAlgorithm::Sha256 {
        salt_position: SaltPosition::Prefix,
    };

    /// argon2id with the OWASP parameters (19 MiB, 2 passes, 1 lane).
    pub const ARGON2_DEFAULT: HashAlgorithm = HashAlgorithm::Argon2 {
        memory_kib: Params::DEFAULT_M_COST,
        iterations: Params::DEFAULT_T_COST,
        parallelism: Params::DEFAULT_P_COST,
    };

    /// bcrypt with EMQX's default work factor (10).
    pub const BCRYPT_DEFAULT: HashAlgorithm = HashAlgorithm::Bcrypt { salt_rounds: 10 };

    /// The configuration name (`plain`, `md5`, `sha`, `sha256`, `sha512`, `pbkdf2`, `bcrypt`,
    /// `argon2`).
    pub fn name(&self) -> &'static str {
        match self {
            HashAlgorithm::Plain { .. } => "plain",
            HashAlgorithm::Md5 { .. } => "md5",
            HashAlgorithm::Sha { .. } => "sha",
            HashAlgorithm::Sha256 { .. } => "sha256",
            HashAlgorithm::Sha512 { .. } => "sha512",
            HashAlgorithm::Pbkdf2 { .. } => "pbkdf2",
            HashAlgorithm::Bcrypt { .. } => "bcrypt",
            HashAlgorithm::Argon2 { .. } => "argon2",
        }
    }

    /// Builds a simple algorithm (`plain`, `md5`, `sha`, `sha256`, `sha512`) from its name.
    pub fn simple(name: &str, salt_position: SaltPosition) -> Option<HashAlgorithm> {
        Some(match name {
            "plain" => HashAlgorithm::Plain { salt_position },
            "md5" => HashAlgorithm::Md5 { salt_position },
            "sha" => HashAlgorithm::Sha { salt_position },
            "sha256" => HashAlgorithm::Sha256 { salt_position },
            "sha512" => HashAlgorithm::Sha512 { salt_position },
            _ => return None,
        })
    }

    /// Checks the options: PBKDF2 iterations ≥ 1 and `dk_length` in 1..=[`MAX_DK_LENGTH`],
    /// bcrypt rounds in [`BCRYPT_ROUNDS`], argon2 parameters accepted by argon2.
    pub fn validate(&self) -> Result<(), HashError> {
        let invalid = |why: String| HashError::InvalidOptions {
            algorithm: self.name(),
            why,
        };
        match *self {
            HashAlgorithm::Pbkdf2 {
                iterations, dk_length, ..
            } => {
                if iterations == 0 {
                    return Err(invalid("iterations must be at least 1".into()));
                }
                if let Some(len) = dk_length
                    && !(1..=MAX_DK_LENGTH).contains(&len)
                {
                    return Err(invalid(format!("dk_length {len} is not in 1..={MAX_DK_LENGTH}")));
                }
            }
            HashAlgorithm::Bcrypt { salt_rounds } if !BCRYPT_ROUNDS.contains(&salt_rounds) => {
                return Err(invalid(format!(
                    "salt_rounds {salt_rounds} is not in {}..={}",
                    BCRYPT_ROUNDS.start(),
                    BCRYPT_ROUNDS.end()
                )));
            }
            HashAlgorithm::Argon2 {
                memory_kib,
                iterations,
                parallelism,
            } => {
                Params::new(memory_kib, iterations, parallelism, None).map_err(|e| invalid(e.to_string()))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// True when new users get a separate random salt ([`gen_salt`](Self::gen_salt)): the
    /// hex digests with a salt position and pbkdf2. `plain` never gets one (as in EMQX),
    /// bcrypt and argon2 keep theirs inside the hash.
    pub fn uses_salt(&self) -> bool {
        match self {
            HashAlgorithm::Md5 { salt_position }
            | HashAlgorithm::Sha { salt_position }
            | HashAlgorithm::Sha256 { salt_position }
            | HashAlgorithm::Sha512 { salt_position } => *salt_position != SaltPosition::Disable,
            HashAlgorithm::Pbkdf2 { .. } => true,
            HashAlgorithm::Plain { .. } | HashAlgorithm::Bcrypt { .. } | HashAlgorithm::Argon2 { .. } => false,
        }
    }

    /// A fresh random salt as EMQX makes them: 16 random bytes as 32 lowercase hex characters
    /// (the hex text, not the bytes, is what gets hashed).
    pub fn gen_salt() -> String {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    /// Hashes a new password: a fresh salt when the algorithm uses one, then
    /// [`hash`](Self::hash). Returns (password_hash, salt) as stored.
    pub fn hash_new(&self, password: &[u8]) -> Result<(String, String), HashError> {
        let salt = if self.uses_salt() {
            Self::gen_salt()
        } else {
            String::new()
        };
        let hash = self.hash(password, salt.as_bytes())?;
        Ok((hash, salt))
    }

    /// The stored form of `password` with `salt` (see the module docs). bcrypt and argon2
    /// ignore `salt` and make their own random one, kept inside the result.
    pub fn hash(&self, password: &[u8], salt: &[u8]) -> Result<String, HashError> {
        self.validate()?;
        let (digest, salt_position) = match *self {
            HashAlgorithm::Pbkdf2 {
                mac_fun,
                iterations,
                dk_length,
            } => return Ok(hex::encode(pbkdf2(mac_fun, iterations, dk_length, password, salt))),
            HashAlgorithm::Bcrypt { salt_rounds } => {
                return bcrypt::hash(password, salt_rounds).map_err(|e| HashError::Failed {
                    algorithm: "bcrypt",
                    why: e.to_string(),
                });
            }
            HashAlgorithm::Argon2 {
                memory_kib,
                iterations,
                parallelism,
            } => return hash_argon2(password, memory_kib, iterations, parallelism),
            _ => self.simple_parts(),
        };
        let data = salted(salt_position, password, salt);
        match digest {
            None => String::from_utf8(data).map_err(|_| HashError::NotUtf8),
            Some(digest) => Ok(hex::encode(digest.digest(&data))),
        }
    }

    /// True for the algorithms built to be slow (pbkdf2, bcrypt, argon2): checks with them
    /// take milliseconds and run off the connection threads.
    pub fn is_slow(&self) -> bool {
        matches!(
            self,
            HashAlgorithm::Pbkdf2 { .. } | HashAlgorithm::Bcrypt { .. } | HashAlgorithm::Argon2 { .. }
        )
    }

    /// True when `password` with `salt` matches `stored`. Never panics: a stored hash that is
    /// not of this algorithm's form, or asks for more work than the `MAX_*_VERIFY_*` bounds,
    /// does not match.
    pub fn verify(&self, password: &[u8], salt: &[u8], stored: &str) -> bool {
        let (digest, salt_position) = match *self {
            HashAlgorithm::Pbkdf2 {
                mac_fun,
                iterations,
                dk_length,
            } => {
                if self.validate().is_err() {
                    return false;
                }
                let computed = hex::encode(pbkdf2(mac_fun, iterations, dk_length, password, salt));
                return ct_eq_hex(&computed, stored);
            }
            HashAlgorithm::Bcrypt { .. } => return verify_bcrypt(password, stored),
            HashAlgorithm::Argon2 { .. } => return verify_argon2(password, stored),
            _ => self.simple_parts(),
        };
        let data = salted(salt_position, password, salt);
        match digest {
            None => ct_eq(&data, stored.as_bytes()),
            Some(digest) => ct_eq_hex(&hex::encode(digest.digest(&data)), stored),
        }
    }

    /// The digest (`None` for plain) and salt position of a simple algorithm; pbkdf2, bcrypt
    /// and argon2 (never asked) count as plain without salt.
    fn simple_parts(&self) -> (Option<SimpleDigest>, SaltPosition) {
        match *self {
            HashAlgorithm::Plain { salt_position } => (None, salt_position),
            HashAlgorithm::Md5 { salt_position } => (Some(SimpleDigest::Md5), salt_position),
            HashAlgorithm::Sha { salt_position } => (Some(SimpleDigest::Sha1), salt_position),
            HashAlgorithm::Sha256 { salt_position } => (Some(SimpleDigest::Sha256), salt_position),
            HashAlgorithm::Sha512 { salt_position } => (Some(SimpleDigest::Sha512), salt_position),
            HashAlgorithm::Pbkdf2 { .. } | HashAlgorithm::Bcrypt { .. } | HashAlgorithm::Argon2 { .. } => {
                (None, SaltPosition::Disable)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum SimpleDigest {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl SimpleDigest {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            SimpleDigest::Md5 => md5::Md5::digest(data).to_vec(),
            SimpleDigest::Sha1 => sha1::Sha1::digest(data).to_vec(),
            SimpleDigest::Sha256 => sha2::Sha256::digest(data).to_vec(),
            SimpleDigest::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

fn hash_argon2(password: &[u8], memory_kib: u32, iterations: u32, parallelism: u32) -> Result<String, HashError> {
    let failed = |e: &dyn fmt::Display| HashError::Failed {
        algorithm: "argon2",
        why: e.to_string(),
    };
    let params = Params::new(memory_kib, iterations, parallelism, None).map_err(|e| failed(&e))?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    Argon2::from(params)
        .hash_password_with_salt(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| failed(&e))
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HashAlgorithm::Plain { salt_position }
            | HashAlgorithm::Md5 { salt_position }
            | HashAlgorithm::Sha { salt_position }
            | HashAlgorithm::Sha256 { salt_position }
            | HashAlgorithm::Sha512 { salt_position } => {
                write!(f, "{} (salt {})", self.name(), salt_position.as_str())
            }
            HashAlgorithm::Pbkdf2 {
                mac_fun,
                iterations,
                dk_length,
            } => {
                write!(f, "pbkdf2 (hmac-{}, {iterations} iterations", mac_fun.as_str())?;
                match dk_length {
                    Some(len) => write!(f, ", {len} bytes)"),
                    None => write!(f, ")"),
                }
            }
            HashAlgorithm::Bcrypt { salt_rounds } => write!(f, "bcrypt ({salt_rounds} rounds)"),
            HashAlgorithm::Argon2 {
                memory_kib,
                iterations,
                parallelism,
            } => write!(f, "argon2id (m={memory_kib}, t={iterations}, p={parallelism})"),
        }
    }
}

fn salted(position: SaltPosition, password: &[u8], salt: &[u8]) -> Vec<u8> {
    match position {
        SaltPosition::Disable => password.to_vec(),
        SaltPosition::Prefix => [salt, password].concat(),
        SaltPosition::Suffix => [password, salt].concat(),
    }
}

fn pbkdf2(mac_fun: MacFun, iterations: u32, dk_length: Option<u32>, password: &[u8], salt: &[u8]) -> Vec<u8> {
    let len = dk_length.map_or(mac_fun.output_len(), |len| len as usize);
    let mut out = vec![0u8; len];
    mac_fun.derive(password, salt, iterations, &mut out);
    out
}

/// Constant-time equality of two byte strings (the length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Constant-time, ASCII-case-insensitive equality of a computed lowercase hex string with a
/// stored one.
fn ct_eq_hex(computed: &str, stored: &str) -> bool {
    ct_eq(computed.as_bytes(), stored.to_ascii_lowercase().as_bytes())
}

fn verify_bcrypt(password: &[u8], stored: &str) -> bool {
    let Ok(parts) = stored.parse::<bcrypt::HashParts>() else {
        return false;
    };
    if parts.get_cost() > MAX_BCRYPT_VERIFY_COST {
        tracing::warn!(
            cost = parts.get_cost(),
            "bcrypt hash with a cost above {MAX_BCRYPT_VERIFY_COST} refused"
        );
        return false;
    }
    bcrypt::verify(password, stored).unwrap_or(false)
}

fn verify_argon2(password: &[u8], stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_ARGON2_VERIFY_MEMORY_KIB
        || params.t_cost() > MAX_ARGON2_VERIFY_PASSES
        || params.p_cost() > MAX_ARGON2_VERIFY_LANES
    {
        tracing::warn!(
            m = params.m_cost(),
            t = params.t_cost(),
            p = params.p_cost(),
            "argon2 hash asking for more than the verification bounds refused"
        );
        return false;
    }
    Argon2::default().verify_password(password, &hash).is_ok()
}
