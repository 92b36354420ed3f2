//! `shop.users.v1.UserService` over the store: parse the request, do the
//! work, map the answer. Conversions to protobuf live at the bottom.

use shop_events::Wake;
use shop_grpc::identity::{Caller, Identity};
use shop_proto::time::from_unix_ms;
use shop_proto::users::v1 as pb;
use shop_proto::users::v1::user_service_server::{self, UserServiceServer};
use shop_storage::Db;
use tonic::{Request, Response, Status};

use crate::domain::{Email, Password, Role, User, UserName, parse_id};
use crate::password::Hasher;
use crate::{UserError, store};

#[derive(Clone)]
pub struct UserService {
    db: Db,
    hasher: Hasher,
    outbox: Wake,
    identity: Identity,
}

impl UserService {
    pub fn new(db: Db) -> Self {
        Self { db, hasher: Hasher::default(), outbox: Wake::default(), identity: Identity::random() }
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
        reachable(&caller, id)?;
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

    async fn list_users(&self, _: Request<pb::ListUsersRequest>) -> Result<Response<pb::ListUsersResponse>, Status> {
        Err(Status::unimplemented("ListUsers is coming"))
    }

    async fn list_addresses(
        &self,
        _: Request<pb::ListAddressesRequest>,
    ) -> Result<Response<pb::ListAddressesResponse>, Status> {
        Err(Status::unimplemented("ListAddresses is coming"))
    }

    async fn get_address(&self, _: Request<pb::GetAddressRequest>) -> Result<Response<pb::GetAddressResponse>, Status> {
        Err(Status::unimplemented("GetAddress is coming"))
    }

    async fn create_address(
        &self,
        _: Request<pb::CreateAddressRequest>,
    ) -> Result<Response<pb::CreateAddressResponse>, Status> {
        Err(Status::unimplemented("CreateAddress is coming"))
    }

    async fn update_address(
        &self,
        _: Request<pb::UpdateAddressRequest>,
    ) -> Result<Response<pb::UpdateAddressResponse>, Status> {
        Err(Status::unimplemented("UpdateAddress is coming"))
    }

    async fn delete_address(
        &self,
        _: Request<pb::DeleteAddressRequest>,
    ) -> Result<Response<pb::DeleteAddressResponse>, Status> {
        Err(Status::unimplemented("DeleteAddress is coming"))
    }

    async fn request_password_reset(
        &self,
        _: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        Err(Status::unimplemented("RequestPasswordReset is coming"))
    }

    async fn reset_password(
        &self,
        _: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        Err(Status::unimplemented("ResetPassword is coming"))
    }
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
