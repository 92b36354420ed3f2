//! `shop.users.v1.UserService` over the store: parse the request, do the
//! work, map the answer. Conversions to protobuf live at the bottom.

use shop_events::Wake;
use shop_grpc::identity::{Caller, Identity};
use shop_proto::time::from_unix_ms;
use shop_proto::users::v1 as pb;
use shop_proto::users::v1::user_service_server::{self, UserServiceServer};
use shop_storage::Db;
use tonic::{Request, Response, Status};

use std::time::Duration;

use crate::address::{Address, AddressFields, RawAddress};
use crate::domain::{Email, Password, Role, User, UserName, parse_id};
use crate::password::Hasher;
use crate::{UserError, reset, store};

/// How long a password reset link works.
pub const RESET_LINK_LIFETIME: Duration = Duration::from_secs(30 * 60);

#[derive(Clone)]
pub struct UserService {
    db: Db,
    hasher: Hasher,
    outbox: Wake,
    identity: Identity,
    reset_link_lifetime: Duration,
}

impl UserService {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            hasher: Hasher::default(),
            outbox: Wake::default(),
            identity: Identity::random(),
            reset_link_lifetime: RESET_LINK_LIFETIME,
        }
    }

    /// Checks callers' signed identities with the shop's shared secret.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Wakes this relay when an event is written.
    pub fn with_outbox(mut self, wake: Wake) -> Self {
        self.outbox = wake;
        self
    }

    /// How long reset links work (30 minutes; tests shorten it to see one
    /// expire).
    pub fn with_reset_link_lifetime(mut self, lifetime: Duration) -> Self {
        self.reset_link_lifetime = lifetime;
        self
    }

    pub fn into_server(self) -> UserServiceServer<Self> {
        UserServiceServer::new(self)
    }

    async fn register(&self, request: pb::RegisterUserRequest) -> Result<User, UserError> {
        let email = Email::parse(&request.email)?;
        let name = UserName::parse(&request.name)?;
        let password = Password::parse(&request.password)?;
        let hash = self.hasher.hash(&password).await?;
        let user = store::insert(&self.db, &email, &name, &hash).await?;
        self.outbox.wake();
        tracing::info!(user_id = user.id, "user registered");
        Ok(user)
    }

    async fn authenticate(&self, request: pb::AuthenticateUserRequest) -> Result<User, UserError> {
        // A malformed email cannot belong to anyone: same answer as a wrong
        // password, after the same amount of work.
        let found = match Email::parse(&request.email) {
            Ok(email) => store::find_credentials(&self.db, &email).await?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        match (self.hasher.verify(&request.password, hash).await?, user) {
            (true, Some(user)) => Ok(user),
            _ => Err(UserError::BadCredentials),
        }
    }

    /// Stores a reset token for the account with this email, if any. The
    /// same work is done either way (a token made and hashed, a transaction
    /// run) and nothing tells the caller which it was.
    async fn request_reset(&self, email: &str) -> Result<(), UserError> {
        let user = match Email::parse(email) {
            Ok(email) => store::find_credentials(&self.db, &email).await?.map(|(user, _)| user),
            Err(_) => None,
        };
        let (token, token_hash) = reset::new_token();
        let now = shop_storage::now_ms();
        let lifetime = i64::try_from(self.reset_link_lifetime.as_millis()).unwrap_or(i64::MAX);
        store::request_password_reset(&self.db, user.as_ref(), &token, &token_hash, now, now.saturating_add(lifetime))
            .await?;
        if let Some(user) = user {
            self.outbox.wake();
            tracing::info!(user_id = user.id, "password reset requested");
        }
        Ok(())
    }

    /// Sets a new password with a reset token; answers the account's id.
    async fn reset(&self, token: &str, new_password: &str) -> Result<i64, UserError> {
        if !reset::looks_like_token(token) {
            return Err(UserError::ResetLinkInvalid);
        }
        let token_hash = reset::hash(token);
        // A cheap look first, so a dead link costs no password hashing.
        store::reset_token_user(&self.db, &token_hash, shop_storage::now_ms()).await?;
        let password = Password::parse(new_password)
            .map_err(|_| UserError::invalid("new_password", "must be 8 to 128 characters"))?;
        let hash = self.hasher.hash(&password).await?;
        let user_id = store::reset_password(&self.db, &token_hash, &hash, shop_storage::now_ms()).await?;
        tracing::info!(user_id, "password reset");
        Ok(user_id)
    }

    async fn update(&self, request: pb::UpdateUserRequest) -> Result<User, UserError> {
        let id = parse_id(request.id)?;
        let password = request.password.as_deref().map(Password::parse).transpose()?;
        let changes = store::Changes {
            email: request.email.as_deref().map(Email::parse).transpose()?,
            name: request.name.as_deref().map(UserName::parse).transpose()?,
            password_hash: match password {
                Some(password) => Some(self.hasher.hash(&password).await?),
                None => None,
            },
        };
        store::update(&self.db, id, &changes).await
    }
}

#[tonic::async_trait]
impl user_service_server::UserService for UserService {
    async fn register_user(
        &self,
        request: Request<pb::RegisterUserRequest>,
    ) -> Result<Response<pb::RegisterUserResponse>, Status> {
        let user = self.register(request.into_inner()).await?;
        Ok(Response::new(pb::RegisterUserResponse { user: Some(user.into()) }))
    }

    async fn authenticate_user(
        &self,
        request: Request<pb::AuthenticateUserRequest>,
    ) -> Result<Response<pb::AuthenticateUserResponse>, Status> {
        let user = self.authenticate(request.into_inner()).await?;
        Ok(Response::new(pb::AuthenticateUserResponse { user: Some(user.into()) }))
    }

    async fn get_user_profile(
        &self,
        request: Request<pb::GetUserProfileRequest>,
    ) -> Result<Response<pb::GetUserProfileResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let id = parse_id(request.into_inner().id)?;
        // The notifications service addresses emails to any account.
        if !matches!(&caller, Caller::Service(name) if name == "notifications") {
            reachable(&caller, id)?;
        }
        let user = store::get(&self.db, id).await?;
        Ok(Response::new(pb::GetUserProfileResponse { user: Some(user.into()) }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let request = request.into_inner();
        reachable(&caller, parse_id(request.id)?)?;
        let user = self.update(request).await?;
        Ok(Response::new(pb::UpdateUserResponse { user: Some(user.into()) }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let id = parse_id(request.into_inner().id)?;
        reachable(&caller, id)?;
        store::delete(&self.db, id).await?;
        self.outbox.wake();
        tracing::info!(user_id = id, "user deleted");
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        caller.require(caller.is_admin())?;
        let request = request.into_inner();
        let query = request.query.trim();
        if query.chars().count() > 100 || query.chars().any(char::is_control) {
            return Err(
                UserError::invalid("query", "must be at most 100 characters, without control characters").into()
            );
        }
        let page = request.page.max(1);
        let page_size = match request.page_size {
            0 => 20,
            size @ 1..=100 => size,
            _ => return Err(UserError::invalid("page_size", "must be between 1 and 100").into()),
        };
        let offset = (i64::from(page) - 1) * i64::from(page_size);
        let (users, total) = store::list_customers(&self.db, query, i64::from(page_size), offset).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(Into::into).collect(),
            total: u64::try_from(total).unwrap_or_default(),
            page,
            page_size,
        }))
    }

    async fn list_addresses(
        &self,
        request: Request<pb::ListAddressesRequest>,
    ) -> Result<Response<pb::ListAddressesResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let owner = match request.into_inner().user_id {
            Some(user_id) => {
                let user_id = parse_id(user_id)?;
                reachable(&caller, user_id)?;
                user_id
            }
            None => signed_in_user(&caller)?,
        };
        let addresses = store::list_addresses(&self.db, owner).await?;
        Ok(Response::new(pb::ListAddressesResponse { addresses: addresses.into_iter().map(Into::into).collect() }))
    }

    async fn get_address(
        &self,
        request: Request<pb::GetAddressRequest>,
    ) -> Result<Response<pb::GetAddressResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let owner = signed_in_user(&caller)?;
        let id = parse_address_id(request.into_inner().id)?;
        let owner = if caller.is_admin() { None } else { Some(owner) };
        let address = store::get_address(&self.db, id, owner).await?;
        Ok(Response::new(pb::GetAddressResponse { address: Some(address.into()) }))
    }

    async fn create_address(
        &self,
        request: Request<pb::CreateAddressRequest>,
    ) -> Result<Response<pb::CreateAddressResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let owner = signed_in_user(&caller)?;
        let fields = parse_address(request.into_inner().address)?;
        let address = store::insert_address(&self.db, owner, &fields).await?;
        tracing::info!(user_id = owner, address_id = address.id, "address added");
        Ok(Response::new(pb::CreateAddressResponse { address: Some(address.into()) }))
    }

    async fn update_address(
        &self,
        request: Request<pb::UpdateAddressRequest>,
    ) -> Result<Response<pb::UpdateAddressResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let owner = signed_in_user(&caller)?;
        let request = request.into_inner();
        let id = parse_address_id(request.id)?;
        let fields = parse_address(request.address)?;
        let address = store::update_address(&self.db, id, owner, &fields).await?;
        Ok(Response::new(pb::UpdateAddressResponse { address: Some(address.into()) }))
    }

    async fn delete_address(
        &self,
        request: Request<pb::DeleteAddressRequest>,
    ) -> Result<Response<pb::DeleteAddressResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let owner = signed_in_user(&caller)?;
        let id = parse_address_id(request.into_inner().id)?;
        store::delete_address(&self.db, id, owner).await?;
        tracing::info!(user_id = owner, address_id = id, "address deleted");
        Ok(Response::new(pb::DeleteAddressResponse {}))
    }

    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        self.request_reset(&request.into_inner().email).await?;
        Ok(Response::new(pb::RequestPasswordResetResponse {}))
    }

    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        let request = request.into_inner();
        let user_id = self.reset(&request.token, &request.new_password).await?;
        Ok(Response::new(pb::ResetPasswordResponse { user_id }))
    }
}

/// The signed-in user's id: address books belong to people, not services.
fn signed_in_user(caller: &Caller) -> Result<i64, Status> {
    match caller {
        Caller::User { id, .. } => Ok(*id),
        _ => {
            // Always refuses: anonymous callers are asked to sign in,
            // services are told they may not.
            caller.require(false)?;
            Err(UserError::AddressNotFound(0).into())
        }
    }
}

/// A malformed address id is no address of the caller's: the same NOT_FOUND.
fn parse_address_id(id: i64) -> Result<i64, UserError> {
    if id > 0 { Ok(id) } else { Err(UserError::AddressNotFound(id)) }
}

fn parse_address(fields: Option<pb::AddressFields>) -> Result<AddressFields, UserError> {
    let fields = fields.unwrap_or_default();
    AddressFields::parse(&RawAddress {
        name: &fields.name,
        line1: &fields.line1,
        line2: &fields.line2,
        postcode: &fields.postcode,
        city: &fields.city,
        country: &fields.country,
        phone: &fields.phone,
    })
}

/// An account is reachable by its owner and by admins. Anyone else signed in
/// is told it is not found, as if it did not exist, so whether it exists is
/// not revealed; anonymous callers are asked to sign in, before any lookup.
fn reachable(caller: &Caller, user_id: i64) -> Result<(), Status> {
    caller.require_signed_in()?;
    if caller.may_act_for(user_id) { Ok(()) } else { Err(UserError::NotFound.into()) }
}

impl From<Role> for pb::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Customer => Self::Customer,
            Role::Admin => Self::Admin,
        }
    }
}

impl From<User> for pb::User {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            role: pb::Role::from(user.role).into(),
            created_at: Some(from_unix_ms(user.created_at_ms)),
            updated_at: Some(from_unix_ms(user.updated_at_ms)),
        }
    }
}

impl From<Address> for pb::Address {
    fn from(address: Address) -> Self {
        let AddressFields { name, line1, line2, postcode, city, country, phone } = address.fields;
        Self {
            id: address.id,
            user_id: address.user_id,
            name,
            line1,
            line2,
            postcode,
            city,
            country,
            phone,
            created_at: Some(from_unix_ms(address.created_at_ms)),
            updated_at: Some(from_unix_ms(address.updated_at_ms)),
        }
    }
}
