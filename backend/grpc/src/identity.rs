//! Who is calling a service, carried in gRPC metadata and signed, so that a
//! service decides for itself what the caller may do. A port reached
//! directly gives nothing more than the gateway does: without a valid
//! signature a caller is anonymous, and anonymous callers may only register,
//! sign in and read the catalogue.
//!
//! The token is `v1|<kind>|<who>|<admin>|<expiry ms>|<HMAC-SHA256 hex>`,
//! signed with a secret every process of one shop shares
//! (`SHOP_INTERNAL_SECRET`); it lives for a minute.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};

use crate::rich_error::{ErrorReason, refuse};

pub const HEADER: &str = "x-shop-caller";
const LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User {
        id: i64,
        admin: bool,
    },
    /// Another service of the shop (the order service reserving stock).
    Service(String),
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::User { admin: true, .. })
    }

    /// Whether this caller may see and change what belongs to `user_id`.
    pub fn may_act_for(&self, user_id: i64) -> bool {
        match self {
            Self::User { id, admin } => *admin || *id == user_id,
            _ => false,
        }
    }

    /// How history records this caller.
    pub fn actor(&self) -> String {
        match self {
            Self::User { id, .. } => format!("user:{id}"),
            Self::Service(name) => format!("service:{name}"),
            Self::Anonymous => "anonymous".to_owned(),
        }
    }

    /// Refused unless `allowed`: anonymous callers are asked to sign in,
    /// others are told they may not.
    pub fn require(&self, allowed: bool) -> Result<(), Status> {
        match (allowed, self) {
            (true, _) => Ok(()),
            (false, Self::Anonymous) => Err(sign_in_required()),
            (false, _) => {
                Err(refuse(Code::PermissionDenied, ErrorReason::PermissionDenied, "you are not allowed to do this")
                    .into())
            }
        }
    }

    pub fn require_admin(&self) -> Result<(), Status> {
        self.require(self.is_admin())
    }

    /// Refused unless signed in (as a person or a service). A service asks
    /// this before looking anything up, so an anonymous caller learns
    /// nothing, not even whether a thing exists.
    pub fn require_signed_in(&self) -> Result<(), Status> {
        match self {
            Self::Anonymous => Err(sign_in_required()),
            _ => Ok(()),
        }
    }
}

fn sign_in_required() -> Status {
    refuse(Code::Unauthenticated, ErrorReason::SignInRequired, "sign in to do this").into()
}

fn unverified(message: &str) -> Status {
    refuse(Code::Unauthenticated, ErrorReason::CallerUnverified, message).into()
}

/// Signs and checks caller tokens with the shop's shared secret.
#[derive(Clone)]
pub struct Identity {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(***)")
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Identity {
    pub fn new(secret: &[u8]) -> Self {
        Self { key: Arc::from(secret) }
    }

    /// A secret of this process alone: enough when every service runs in it.
    pub fn random() -> Self {
        let secret: Vec<u8> = (0..2).flat_map(|_| uuid::Uuid::new_v4().into_bytes()).collect();
        Self::new(&secret)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(payload.as_bytes());
        mac
    }

    /// The token naming `caller`, valid for a minute; `None` for anonymous.
    pub fn token(&self, caller: &Caller) -> Option<String> {
        let expiry = now_ms().saturating_add(i64::try_from(LIFETIME.as_millis()).unwrap_or(60_000));
        let payload = match caller {
            Caller::Anonymous => return None,
            Caller::User { id, admin } => format!("v1|u|{id}|{}|{expiry}", u8::from(*admin)),
            Caller::Service(name) => format!("v1|s|{name}|0|{expiry}"),
        };
        let signature = hex::encode(self.mac(&payload).finalize().into_bytes());
        Some(format!("{payload}|{signature}"))
    }

    /// Adds `caller`'s token to a request's metadata.
    pub fn sign<T>(&self, caller: &Caller, request: &mut Request<T>) {
        if let Some(token) = self.token(caller)
            && let Ok(value) = MetadataValue::try_from(token)
        {
            request.metadata_mut().insert(HEADER, value);
        }
    }

    /// Who sent `request`: anonymous without a token; refused with a token
    /// that is forged, malformed or expired.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let Some(token) = request.metadata().get(HEADER) else { return Ok(Caller::Anonymous) };
        let invalid = || unverified("the caller identity is invalid");
        let token = token.to_str().map_err(|_| invalid())?;
        let (payload, signature) = token.rsplit_once('|').ok_or_else(invalid)?;
        let signature = hex::decode(signature).map_err(|_| invalid())?;
        self.mac(payload).verify_slice(&signature).map_err(|_| invalid())?;
        let fields: Vec<&str> = payload.split('|').collect();
        let [version, kind, who, admin, expiry] = fields.as_slice() else { return Err(invalid()) };
        let expiry: i64 = expiry.parse().map_err(|_| invalid())?;
        if *version != "v1" {
            return Err(invalid());
        }
        if expiry < now_ms() {
            return Err(unverified("the caller identity has expired"));
        }
        match *kind {
            "u" => Ok(Caller::User { id: who.parse().map_err(|_| invalid())?, admin: *admin == "1" }),
            "s" => Ok(Caller::Service((*who).to_owned())),
            _ => Err(invalid()),
        }
    }
}

/// A client interceptor that signs every call as one caller (a person the
/// gateway acts for, a service, a test). There is no unsigned or ambient
/// variant: a client is made for someone, so a call cannot go out as
/// "whoever happens to be current" by accident.
#[derive(Clone, Debug)]
pub struct SignAs {
    identity: Identity,
    caller: Caller,
}

impl SignAs {
    pub fn fixed(identity: Identity, caller: Caller) -> Self {
        Self { identity, caller }
    }
}

impl tonic::service::Interceptor for SignAs {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        self.identity.sign(&self.caller, &mut request);
        Ok(request)
    }
}

/// A channel whose calls carry a signed caller and the trace they are part of.
pub type Signed =
    tonic::service::interceptor::InterceptedService<crate::observe::Observed<tonic::transport::Channel>, SignAs>;

/// [`Signed`], behind a circuit breaker ([`crate::breaker`]): what the
/// shop's own processes call each other through.
pub type Guarded = tonic::service::interceptor::InterceptedService<
    crate::observe::Observed<crate::breaker::Breaker<tonic::transport::Channel>>,
    SignAs,
>;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(identity: &Identity, caller: &Caller) -> Result<Caller, Status> {
        let mut request = Request::new(());
        identity.sign(caller, &mut request);
        identity.caller(&request)
    }

    #[test]
    fn signed_callers_round_trip_and_forgeries_do_not() {
        let identity = Identity::random();
        for caller in [
            Caller::User { id: 7, admin: false },
            Caller::User { id: 1, admin: true },
            Caller::Service("orders".into()),
        ] {
            assert_eq!(round_trip(&identity, &caller).ok(), Some(caller));
        }
        assert_eq!(identity.caller(&Request::new(())).ok(), Some(Caller::Anonymous));

        // Signed by another shop, or edited on the way: refused.
        let other = Identity::random();
        assert!(round_trip(&other, &Caller::User { id: 1, admin: true }).is_ok());
        let mut forged = Request::new(());
        other.sign(&Caller::User { id: 1, admin: true }, &mut forged);
        assert_eq!(identity.caller(&forged).map_err(|s| s.code()), Err(tonic::Code::Unauthenticated));
        let token = identity.token(&Caller::User { id: 7, admin: false }).unwrap_or_default();
        let promoted = token.replacen("|7|0|", "|7|1|", 1);
        let mut tampered = Request::new(());
        tampered.metadata_mut().insert(HEADER, MetadataValue::try_from(promoted).unwrap_or_else(|_| unreachable!()));
        assert_eq!(identity.caller(&tampered).map_err(|s| s.code()), Err(tonic::Code::Unauthenticated));
        let reason = identity.caller(&tampered).err().and_then(|s| crate::rich_error::reason(&s));
        assert_eq!(reason, Some(ErrorReason::CallerUnverified));
        let mut garbage = Request::new(());
        garbage.metadata_mut().insert(HEADER, MetadataValue::from_static("v1|u|1|1|9999999999999"));
        assert!(identity.caller(&garbage).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let identity = Identity::new(b"secret");
        let payload = "v1|u|1|1|1000";
        let signature = hex::encode(identity.mac(payload).finalize().into_bytes());
        let mut old = Request::new(());
        old.metadata_mut().insert(
            HEADER,
            MetadataValue::try_from(format!("{payload}|{signature}")).unwrap_or_else(|_| unreachable!()),
        );
        let refused = identity.caller(&old);
        assert!(
            matches!(refused, Err(status) if crate::rich_error::reason(&status) == Some(ErrorReason::CallerUnverified))
        );
    }

    #[test]
    fn rights_follow_the_caller() {
        let customer = Caller::User { id: 7, admin: false };
        assert!(customer.may_act_for(7) && !customer.may_act_for(8));
        assert!(Caller::User { id: 1, admin: true }.may_act_for(8));
        let refusal = |result: Result<(), Status>| result.map_err(|s| (s.code(), crate::rich_error::reason(&s)));
        assert_eq!(
            refusal(Caller::Anonymous.require_admin()),
            Err((Code::Unauthenticated, Some(ErrorReason::SignInRequired)))
        );
        assert_eq!(
            refusal(customer.require_admin()),
            Err((Code::PermissionDenied, Some(ErrorReason::PermissionDenied)))
        );
        assert_eq!(
            refusal(Caller::Anonymous.require_signed_in()),
            Err((Code::Unauthenticated, Some(ErrorReason::SignInRequired)))
        );
        assert!(customer.require_signed_in().is_ok() && Caller::Service("orders".into()).require_signed_in().is_ok());
        assert!(!Caller::Service("orders".into()).may_act_for(7));
    }
}
