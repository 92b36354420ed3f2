//! The user service through a real tonic client, on a random port, against
//! SQLite and PostgreSQL.

use shop_grpc::identity::{Caller, Identity, SignAs, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::users::v1::user_service_client::UserServiceClient;
use shop_proto::users::v1::*;
use shop_storage::sqlx;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, assert_status, connect, identity, loopback, on_both_backends,
    sign_as,
};
use tonic::Code;

struct Users {
    /// Signed as an admin; `as_caller` makes clients for others.
    client: UserServiceClient<Signed>,
    url: String,
    db: TestDb,
    _server: Running,
}

async fn start(backend: Backend) -> Users {
    let db = TestDb::new(backend, &shop_users::MIGRATIONS).await;
    let (listener, url) = loopback().await;
    let service = shop_users::UserService::new(db.db.clone()).with_identity(identity()).into_server();
    let server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, service, shutdown).await.expect("the user service runs");
    });
    let client = UserServiceClient::with_interceptor(connect(&url).await, sign_as(admin()));
    Users { client, url, db, _server: server }
}

fn registration(email: &str, name: &str, password: &str) -> RegisterUserRequest {
    RegisterUserRequest { email: email.into(), name: name.into(), password: password.into() }
}

fn login(email: &str, password: &str) -> AuthenticateUserRequest {
    AuthenticateUserRequest { email: email.into(), password: password.into() }
}

async fn user_count(users: &Users) -> i64 {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(&users.db.db.pool).await.expect("a count");
    count
}

async fn register(users: &mut Users, email: &str) -> User {
    users
        .client
        .register_user(registration(email, "Ada Lovelace", "correct horse battery"))
        .await
        .expect("registration succeeds")
        .into_inner()
        .user
        .expect("a user")
}

async fn a_user_registers_logs_in_changes_and_leaves(backend: Backend) {
    let mut users = start(backend).await;
    let user = register(&mut users, "  Ada@Example.com ").await;
    assert!(user.id > 0);
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.name, "Ada Lovelace");
    assert_eq!(user.role(), Role::Customer);
    assert!(user.created_at.is_some());

    let authenticated = users.client.authenticate_user(login("ADA@example.COM", "correct horse battery")).await;
    assert_eq!(authenticated.expect("login").into_inner().user.map(|u| u.id), Some(user.id));

    let profile = users.client.get_user_profile(GetUserProfileRequest { id: user.id }).await.expect("profile");
    assert_eq!(profile.into_inner().user.as_ref(), Some(&user));

    let update = UpdateUserRequest {
        id: user.id,
        email: Some("ada@lovelace.org".into()),
        name: Some("Countess Ada".into()),
        password: Some("analytical engine".into()),
    };
    let updated = users.client.update_user(update).await.expect("update").into_inner().user.expect("a user");
    assert_eq!((updated.email.as_str(), updated.name.as_str()), ("ada@lovelace.org", "Countess Ada"));
    assert!(users.client.authenticate_user(login("ada@lovelace.org", "analytical engine")).await.is_ok());
    assert_status(
        users.client.authenticate_user(login("ada@lovelace.org", "correct horse battery")).await,
        Code::Unauthenticated,
        "invalid email or password",
    );

    // An update naming no field changes nothing.
    let same = users.client.update_user(UpdateUserRequest { id: user.id, ..Default::default() }).await;
    assert_eq!(same.expect("no-op update").into_inner().user.map(|u| u.name), Some("Countess Ada".into()));

    users.client.delete_user(DeleteUserRequest { id: user.id }).await.expect("delete");
    assert_status(
        users.client.get_user_profile(GetUserProfileRequest { id: user.id }).await,
        Code::NotFound,
        "not found",
    );
    assert_status(users.client.delete_user(DeleteUserRequest { id: user.id }).await, Code::NotFound, "not found");
    assert_eq!(user_count(&users).await, 0);
}

async fn passwords_are_stored_only_as_argon2id_hashes(backend: Backend) {
    let mut users = start(backend).await;
    register(&mut users, "ada@example.com").await;
    let (hash,): (String,) =
        sqlx::query_as("SELECT password_hash FROM users").fetch_one(&users.db.db.pool).await.expect("a hash");
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(!hash.contains("correct horse"));
}

async fn bad_registrations_are_refused_and_write_nothing(backend: Backend) {
    let mut users = start(backend).await;
    let long_email = format!("{}@example.com", "a".repeat(300));
    let long_name = "n".repeat(101);
    let long_password = "p".repeat(129);
    let cases = [
        (registration("", "Ada", "correct horse"), "email"),
        (registration("not-an-email", "Ada", "correct horse"), "email"),
        (registration("ada@localhost", "Ada", "correct horse"), "email"),
        (registration(&long_email, "Ada", "correct horse"), "email"),
        (registration("ada@example.com", "", "correct horse"), "name"),
        (registration("ada@example.com", "   ", "correct horse"), "name"),
        (registration("ada@example.com", &long_name, "correct horse"), "name"),
        (registration("ada@example.com", "Ada", "short"), "password"),
        (registration("ada@example.com", "Ada", &long_password), "password"),
    ];
    for (request, field) in cases {
        assert_status(users.client.register_user(request).await, Code::InvalidArgument, field);
    }
    assert_eq!(user_count(&users).await, 0);

    register(&mut users, "ada@example.com").await;
    assert_status(
        users.client.register_user(registration("ADA@EXAMPLE.COM", "Other", "another password")).await,
        Code::AlreadyExists,
        "already exists",
    );
    assert_eq!(user_count(&users).await, 1);
}

async fn wrong_credentials_do_not_say_which_part_was_wrong(backend: Backend) {
    let mut users = start(backend).await;
    register(&mut users, "ada@example.com").await;
    for request in [
        login("ada@example.com", "wrong password"),
        login("nobody@example.com", "correct horse battery"),
        login("not an email", "correct horse battery"),
        login("ada@example.com", ""),
    ] {
        assert_status(
            users.client.authenticate_user(request).await,
            Code::Unauthenticated,
            "invalid email or password",
        );
    }
}

async fn lookups_and_changes_check_their_input(backend: Backend) {
    let mut users = start(backend).await;
    let ada = register(&mut users, "ada@example.com").await;
    let grace = register(&mut users, "grace@example.com").await;

    for id in [0, -1, i64::MIN] {
        assert_status(users.client.get_user_profile(GetUserProfileRequest { id }).await, Code::InvalidArgument, "id");
        assert_status(users.client.delete_user(DeleteUserRequest { id }).await, Code::InvalidArgument, "id");
        let rename = UpdateUserRequest { id, name: Some("X".into()), ..Default::default() };
        assert_status(users.client.update_user(rename).await, Code::InvalidArgument, "id");
    }
    let missing = GetUserProfileRequest { id: 999_999 };
    assert_status(users.client.get_user_profile(missing).await, Code::NotFound, "not found");
    let rename_missing = UpdateUserRequest { id: 999_999, name: Some("X".into()), ..Default::default() };
    assert_status(users.client.update_user(rename_missing).await, Code::NotFound, "not found");

    // Taking someone else's email, or a malformed change, leaves the user as it was.
    let steal = UpdateUserRequest { id: grace.id, email: Some("Ada@example.com".into()), ..Default::default() };
    assert_status(users.client.update_user(steal).await, Code::AlreadyExists, "already exists");
    for (request, field) in [
        (UpdateUserRequest { id: ada.id, name: Some(String::new()), ..Default::default() }, "name"),
        (UpdateUserRequest { id: ada.id, email: Some("nope".into()), ..Default::default() }, "email"),
        (
            UpdateUserRequest {
                id: ada.id,
                name: Some("Ok".into()),
                password: Some("short".into()),
                ..Default::default()
            },
            "password",
        ),
    ] {
        assert_status(users.client.update_user(request).await, Code::InvalidArgument, field);
    }
    let unchanged = users.client.get_user_profile(GetUserProfileRequest { id: ada.id }).await.expect("profile");
    assert_eq!(unchanged.into_inner().user, Some(ada));
    let grace_now = users.client.get_user_profile(GetUserProfileRequest { id: grace.id }).await.expect("profile");
    assert_eq!(grace_now.into_inner().user.map(|u| u.email), Some("grace@example.com".into()));
}

async fn an_admin_is_made_only_by_the_store(backend: Backend) {
    use shop_users::domain::{Email, Role as DomainRole};
    let mut users = start(backend).await;
    let ada = register(&mut users, "ada@example.com").await;
    let email = Email::parse("ADA@example.com").expect("an email");
    let admin = shop_users::store::set_role(&users.db.db, &email, DomainRole::Admin).await.expect("promoted");
    assert_eq!(admin.id, ada.id);
    let profile = users.client.get_user_profile(GetUserProfileRequest { id: ada.id }).await.expect("profile");
    assert_eq!(profile.into_inner().user.map(|u| u.role()), Some(Role::Admin));
    let nobody = Email::parse("nobody@example.com").expect("an email");
    assert!(matches!(
        shop_users::store::set_role(&users.db.db, &nobody, DomainRole::Admin).await,
        Err(shop_users::UserError::NotFound)
    ));
}

impl Users {
    /// A client that calls as `caller`.
    async fn as_caller(&self, caller: Caller) -> UserServiceClient<Signed> {
        UserServiceClient::with_interceptor(connect(&self.url).await, sign_as(caller))
    }
}

/// Code, reason and message: everything a client can tell apart.
fn answer<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, Option<ErrorReason>, String) {
    let status = result.expect_err("a refusal");
    (status.code(), rich_error::reason(&status), status.message().to_owned())
}

async fn only_the_user_or_an_admin_reaches_an_account(backend: Backend) {
    let mut users = start(backend).await;
    let ada = register(&mut users, "ada@example.com").await;
    let grace = register(&mut users, "grace@example.com").await;
    let mut as_grace = users.as_caller(Caller::User { id: grace.id, admin: false }).await;
    let mut anonymous = UserServiceClient::new(connect(&users.url).await);
    let forger = SignAs::fixed(Identity::new(b"a secret that is not the shop's"), admin());
    let mut forged = UserServiceClient::with_interceptor(connect(&users.url).await, forger);

    // Registering and signing in are open to anyone.
    let open = anonymous.authenticate_user(login("ada@example.com", "correct horse battery")).await;
    assert!(open.is_ok());
    // Someone else's account is not for Grace: to her it does not exist, the
    // very answer an account that does not exist gets.
    let read = || GetUserProfileRequest { id: ada.id };
    let missing = answer(as_grace.get_user_profile(GetUserProfileRequest { id: 999_999 }).await);
    assert_eq!(missing, (Code::NotFound, Some(ErrorReason::UserNotFound), "user not found".to_owned()));
    assert_eq!(answer(as_grace.get_user_profile(read()).await), missing);
    let rename = |id| UpdateUserRequest { id, name: Some("Pwned".into()), ..Default::default() };
    assert_eq!(answer(as_grace.update_user(rename(ada.id)).await), missing);
    assert_eq!(answer(as_grace.update_user(rename(999_999)).await), missing);
    assert_eq!(answer(as_grace.delete_user(DeleteUserRequest { id: ada.id }).await), missing);
    assert_eq!(answer(as_grace.delete_user(DeleteUserRequest { id: 999_999 }).await), missing);
    // An anonymous caller is asked to sign in, before anything is looked up.
    for id in [ada.id, 999_999] {
        let refused = anonymous.get_user_profile(GetUserProfileRequest { id }).await;
        assert_refused(refused, Code::Unauthenticated, ErrorReason::SignInRequired);
        assert_refused(anonymous.update_user(rename(id)).await, Code::Unauthenticated, ErrorReason::SignInRequired);
    }
    // A forger is not believed.
    assert_refused(forged.get_user_profile(read()).await, Code::Unauthenticated, ErrorReason::CallerUnverified);
    let refused = forged.delete_user(DeleteUserRequest { id: ada.id }).await;
    assert_refused(refused, Code::Unauthenticated, ErrorReason::CallerUnverified);
    let still = users.client.get_user_profile(read()).await.expect("the admin reads it");
    assert_eq!(still.into_inner().user, Some(ada));
    // Her own account is hers.
    let own = as_grace.get_user_profile(GetUserProfileRequest { id: grace.id }).await;
    assert_eq!(own.expect("her own profile").into_inner().user.map(|u| u.id), Some(grace.id));
}

async fn every_refusal_carries_its_reason(backend: Backend) {
    let mut users = start(backend).await;
    register(&mut users, "ada@example.com").await;

    let taken = users.client.register_user(registration("ADA@example.com", "Ada", "correct horse")).await;
    let taken = assert_refused(taken, Code::AlreadyExists, ErrorReason::EmailTaken);
    assert_eq!(rich_error::field_violations(&taken), vec![("email".to_owned(), "is taken".to_owned())]);
    let grace = register(&mut users, "grace@example.com").await;
    let steal = UpdateUserRequest { email: Some("ada@example.com".into()), ..rename_of(grace.id) };
    assert_refused(users.client.update_user(steal).await, Code::AlreadyExists, ErrorReason::EmailTaken);

    let wrong = users.client.authenticate_user(login("ada@example.com", "wrong password")).await;
    assert_refused(wrong, Code::Unauthenticated, ErrorReason::InvalidCredentials);
    let unknown = users.client.authenticate_user(login("nobody@example.com", "correct horse")).await;
    assert_refused(unknown, Code::Unauthenticated, ErrorReason::InvalidCredentials);

    let missing = users.client.get_user_profile(GetUserProfileRequest { id: 999_999 }).await;
    assert_refused(missing, Code::NotFound, ErrorReason::UserNotFound);
    assert_refused(users.client.update_user(rename_of(999_999)).await, Code::NotFound, ErrorReason::UserNotFound);
    let gone = users.client.delete_user(DeleteUserRequest { id: 999_999 }).await;
    assert_refused(gone, Code::NotFound, ErrorReason::UserNotFound);

    // Invalid input names each field in a BadRequest, whatever the message says.
    for (request, field) in [
        (registration("nope", "Ada", "correct horse"), "email"),
        (registration("ada2@example.com", " ", "correct horse"), "name"),
        (registration("ada2@example.com", "Ada", "short"), "password"),
    ] {
        let refused =
            assert_refused(users.client.register_user(request).await, Code::InvalidArgument, ErrorReason::FieldInvalid);
        let violations = rich_error::field_violations(&refused);
        assert_eq!(violations.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), vec![field], "{refused:?}");
        assert!(!violations[0].1.is_empty());
    }
    let bad_id = users.client.get_user_profile(GetUserProfileRequest { id: 0 }).await;
    let bad_id = assert_refused(bad_id, Code::InvalidArgument, ErrorReason::FieldInvalid);
    assert_eq!(rich_error::field_violations(&bad_id)[0].0, "id");
}

fn rename_of(id: i64) -> UpdateUserRequest {
    UpdateUserRequest { id, name: Some("Renamed".into()), ..Default::default() }
}

on_both_backends!(
    only_the_user_or_an_admin_reaches_an_account,
    every_refusal_carries_its_reason,
    a_user_registers_logs_in_changes_and_leaves,
    passwords_are_stored_only_as_argon2id_hashes,
    bad_registrations_are_refused_and_write_nothing,
    wrong_credentials_do_not_say_which_part_was_wrong,
    lookups_and_changes_check_their_input,
    an_admin_is_made_only_by_the_store,
);
