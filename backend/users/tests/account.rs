//! Address books, password reset and the admins' customer search, through
//! a real tonic client, on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use shop_grpc::identity::{Caller, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::users::v1::user_service_client::UserServiceClient;
use shop_proto::users::v1::*;
use shop_storage::sqlx;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, connect, identity, loopback, on_both_backends, sign_as,
};
use tonic::Code;

struct Users {
    url: String,
    db: TestDb,
    _server: Running,
}

async fn start_with(backend: Backend, lifetime: Duration) -> Users {
    let db = TestDb::new(backend, &shop_users::MIGRATIONS).await;
    let (listener, url) = loopback().await;
    let service = shop_users::UserService::new(db.db.clone())
        .with_identity(identity())
        .with_reset_link_lifetime(lifetime)
        .into_server();
    let server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, service, shutdown).await.expect("the user service runs");
    });
    Users { url, db, _server: server }
}

async fn start(backend: Backend) -> Users {
    start_with(backend, shop_users::service::RESET_LINK_LIFETIME).await
}

impl Users {
    async fn as_caller(&self, caller: Caller) -> UserServiceClient<Signed> {
        UserServiceClient::with_interceptor(connect(&self.url).await, sign_as(caller))
    }

    async fn anonymous(&self) -> UserServiceClient<Signed> {
        self.as_caller(Caller::Anonymous).await
    }

    /// Registers a customer and answers a client signed as them.
    async fn customer(&self, email: &str, name: &str) -> (User, UserServiceClient<Signed>) {
        let request =
            RegisterUserRequest { email: email.into(), name: name.into(), password: "correct horse battery".into() };
        let user =
            self.anonymous().await.register_user(request).await.expect("registered").into_inner().user.expect("a user");
        let client = self.as_caller(Caller::User { id: user.id, admin: false }).await;
        (user, client)
    }
}

fn fields(name: &str) -> AddressFields {
    AddressFields {
        name: name.into(),
        line1: "12 rue de Rivoli".into(),
        line2: String::new(),
        postcode: "75004".into(),
        city: "Paris".into(),
        country: "fr".into(),
        phone: "+33 1 23 45 67 89".into(),
    }
}

async fn add(client: &mut UserServiceClient<Signed>, name: &str) -> Address {
    let request = CreateAddressRequest { address: Some(fields(name)) };
    client.create_address(request).await.expect("address added").into_inner().address.expect("an address")
}

fn violations(status: &tonic::Status) -> Vec<String> {
    rich_error::field_violations(status).into_iter().map(|(field, _)| field).collect()
}

async fn addresses_are_kept_checked_and_bounded(backend: Backend) {
    let users = start(backend).await;
    let (ada, mut as_ada) = users.customer("ada@example.com", "Ada").await;
    let home = add(&mut as_ada, "  Ada Lovelace ").await;
    assert_eq!((home.user_id, home.name.as_str(), home.country.as_str()), (ada.id, "Ada Lovelace", "FR"));
    assert!(home.created_at.is_some());

    // Each field is checked, and every wrong one named at once.
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, AddressFields)> = vec![
        ("name", AddressFields { name: String::new(), ..fields("A") }),
        ("name", AddressFields { name: long(101), ..fields("A") }),
        ("line1", AddressFields { line1: " ".into(), ..fields("A") }),
        ("line1", AddressFields { line1: long(201), ..fields("A") }),
        ("line2", AddressFields { line2: long(201), ..fields("A") }),
        ("postcode", AddressFields { postcode: String::new(), ..fields("A") }),
        ("postcode", AddressFields { postcode: "75004; DROP".into(), ..fields("A") }),
        ("postcode", AddressFields { postcode: long(21), ..fields("A") }),
        ("city", AddressFields { city: String::new(), ..fields("A") }),
        ("city", AddressFields { city: long(101), ..fields("A") }),
        ("country", AddressFields { country: "France".into(), ..fields("A") }),
        ("country", AddressFields { country: "XX".into(), ..fields("A") }),
        ("country", AddressFields { country: String::new(), ..fields("A") }),
        ("phone", AddressFields { phone: "call me".into(), ..fields("A") }),
        ("phone", AddressFields { phone: "1".repeat(31), ..fields("A") }),
        ("name", AddressFields { name: "Ada\u{0}".into(), ..fields("A") }),
        ("line2", AddressFields { line2: "a\nb".into(), ..fields("A") }),
    ];
    for (field, address) in cases {
        let refused = as_ada.create_address(CreateAddressRequest { address: Some(address.clone()) }).await;
        let status = assert_refused(refused, Code::InvalidArgument, ErrorReason::FieldInvalid);
        assert_eq!(violations(&status), [field], "{address:?}");
        let refused = as_ada.update_address(UpdateAddressRequest { id: home.id, address: Some(address) }).await;
        assert_eq!(violations(&assert_refused(refused, Code::InvalidArgument, ErrorReason::FieldInvalid)), [field]);
    }
    let all_wrong = AddressFields { name: String::new(), city: String::new(), country: "ZZ".into(), ..fields("A") };
    let refused = as_ada.create_address(CreateAddressRequest { address: Some(all_wrong) }).await;
    assert_eq!(
        violations(&assert_refused(refused, Code::InvalidArgument, ErrorReason::FieldInvalid)),
        ["name", "city", "country"]
    );
    // Optional fields may be blank; every listed country is taken.
    for country in ["de", "GB", "ch", "NO", "us", "CA"] {
        let ok = AddressFields { line2: String::new(), phone: String::new(), country: country.into(), ..fields("B") };
        let added = as_ada.create_address(CreateAddressRequest { address: Some(ok) }).await.expect("a valid address");
        as_ada
            .delete_address(DeleteAddressRequest { id: added.into_inner().address.expect("one").id })
            .await
            .expect("deleted");
    }

    // Changed in place, listed newest change first.
    let office = add(&mut as_ada, "Ada at work").await;
    let moved =
        UpdateAddressRequest { id: home.id, address: Some(AddressFields { city: "Lyon".into(), ..fields("Ada L") }) };
    let moved = as_ada.update_address(moved).await.expect("updated").into_inner().address.expect("one");
    assert_eq!((moved.id, moved.city.as_str(), moved.name.as_str()), (home.id, "Lyon", "Ada L"));
    let listed = as_ada.list_addresses(ListAddressesRequest { user_id: None }).await.expect("listed").into_inner();
    let ids: Vec<i64> = listed.addresses.iter().map(|a| a.id).collect();
    assert_eq!(ids, [home.id, office.id]);

    // At most 20.
    for n in 2..20 {
        add(&mut as_ada, &format!("Address {n}")).await;
    }
    let refused = as_ada.create_address(CreateAddressRequest { address: Some(fields("One too many")) }).await;
    assert_eq!(violations(&assert_refused(refused, Code::InvalidArgument, ErrorReason::FieldInvalid)), ["addresses"]);
    as_ada.delete_address(DeleteAddressRequest { id: office.id }).await.expect("deleted");
    add(&mut as_ada, "Room again").await;

    // Anonymous callers are asked to sign in.
    let refused = users.anonymous().await.list_addresses(ListAddressesRequest { user_id: None }).await;
    assert_refused(refused, Code::Unauthenticated, ErrorReason::SignInRequired);
    let refused = users.anonymous().await.create_address(CreateAddressRequest { address: Some(fields("X")) }).await;
    assert_refused(refused, Code::Unauthenticated, ErrorReason::SignInRequired);
}

async fn another_customers_addresses_are_invisible_and_untouchable(backend: Backend) {
    let users = start(backend).await;
    let (ada, mut as_ada) = users.customer("ada@example.com", "Ada").await;
    let (_, mut as_eve) = users.customer("eve@example.com", "Eve").await;
    let home = add(&mut as_ada, "Ada Lovelace").await;
    let eves = add(&mut as_eve, "Eve").await;
    let missing = home.id.max(eves.id) + 1000;

    // Eve guesses ids: Ada's address and a missing one get the same answer.
    for id in [home.id, missing, 0, -1] {
        let not_found = |result: Result<_, tonic::Status>| {
            let status = assert_refused(result, Code::NotFound, ErrorReason::AddressNotFound);
            assert_eq!(rich_error::metadata(&status, "address_id"), Some(id.to_string()));
            status.message().to_owned()
        };
        let read = not_found(as_eve.get_address(GetAddressRequest { id }).await.map(|_| ()));
        let changed = not_found(
            as_eve.update_address(UpdateAddressRequest { id, address: Some(fields("Eve was here")) }).await.map(|_| ()),
        );
        let deleted = not_found(as_eve.delete_address(DeleteAddressRequest { id }).await.map(|_| ()));
        assert_eq!((read.as_str(), changed.as_str()), (deleted.as_str(), deleted.as_str()));
    }
    // Nor can she list Ada's book by naming her.
    let refused = as_eve.list_addresses(ListAddressesRequest { user_id: Some(ada.id) }).await;
    assert_refused(refused, Code::NotFound, ErrorReason::UserNotFound);
    // Her own book holds only hers; Ada's address is as it was.
    let eve_book = as_eve.list_addresses(ListAddressesRequest { user_id: None }).await.expect("listed").into_inner();
    assert_eq!(eve_book.addresses.iter().map(|a| a.id).collect::<Vec<_>>(), [eves.id]);
    let still = as_ada.get_address(GetAddressRequest { id: home.id }).await.expect("hers").into_inner().address;
    assert_eq!(still.as_ref(), Some(&home));

    // An admin reads any book and address, but changes none but their own.
    let mut as_admin = users.as_caller(admin()).await;
    let book = as_admin.list_addresses(ListAddressesRequest { user_id: Some(ada.id) }).await.expect("listed");
    assert_eq!(book.into_inner().addresses, std::slice::from_ref(&home));
    as_admin.get_address(GetAddressRequest { id: home.id }).await.expect("an admin reads it");
    let refused = as_admin.delete_address(DeleteAddressRequest { id: home.id }).await;
    assert_refused(refused, Code::NotFound, ErrorReason::AddressNotFound);
    // Another service has no address book.
    let mut as_service = users.as_caller(Caller::Service("orders".into())).await;
    let refused = as_service.create_address(CreateAddressRequest { address: Some(fields("X")) }).await;
    assert_refused(refused, Code::PermissionDenied, ErrorReason::PermissionDenied);

    // Deleting the account takes its addresses with it.
    as_ada.delete_user(DeleteUserRequest { id: ada.id }).await.expect("deleted");
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM addresses WHERE user_id = $1")
        .bind(ada.id)
        .fetch_one(&users.db.db.pool)
        .await
        .expect("a count");
    assert_eq!(left, 0);
}

/// The newest reset event's token for `email`, as the outbox holds it.
async fn token_in_outbox(users: &Users, email: &str) -> Option<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM outbox WHERE kind = 'user.password_reset_requested' ORDER BY id DESC")
            .fetch_all(&users.db.db.pool)
            .await
            .expect("the outbox");
    rows.into_iter().find_map(|(payload,)| {
        let token = payload.split("\"token\":\"").nth(1)?.split('"').next()?.to_owned();
        payload.contains(&format!("\"email\":\"{email}\"")).then_some(token)
    })
}

async fn reset_requests(users: &Users) -> i64 {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM password_reset_tokens")
        .fetch_one(&users.db.db.pool)
        .await
        .expect("a count");
    count
}

fn reset(token: &str, password: &str) -> ResetPasswordRequest {
    ResetPasswordRequest { token: token.into(), new_password: password.into() }
}

async fn a_reset_link_works_once_and_reveals_nothing(backend: Backend) {
    let users = start(backend).await;
    let (ada, _) = users.customer("ada@example.com", "Ada").await;
    let mut anyone = users.anonymous().await;

    // A known and an unknown email get the same answer, after similar work.
    let ask = |email: &str| RequestPasswordResetRequest { email: email.into() };
    let mut known = Duration::ZERO;
    let mut unknown = Duration::ZERO;
    for round in 0..5 {
        let started = Instant::now();
        let answer = anyone.request_password_reset(ask("ADA@example.com")).await.expect("answered");
        known += started.elapsed();
        assert_eq!(answer.into_inner(), RequestPasswordResetResponse {});
        let started = Instant::now();
        let answer = anyone.request_password_reset(ask(&format!("nobody{round}@example.com"))).await.expect("answered");
        unknown += started.elapsed();
        assert_eq!(answer.into_inner(), RequestPasswordResetResponse {});
    }
    anyone.request_password_reset(ask("not an email")).await.expect("the same answer for nonsense");
    let (fast, slow) = if known < unknown { (known, unknown) } else { (unknown, known) };
    assert!(slow < fast * 5 + Duration::from_millis(250), "known {known:?}, unknown {unknown:?}");

    // One live token per account: each request superseded the one before.
    assert_eq!(reset_requests(&users).await, 1);
    let token = token_in_outbox(&users, "ada@example.com").await.expect("the event carries the token");
    // The database holds its hash, never the token itself.
    let (stored,): (String,) = sqlx::query_as("SELECT token_hash FROM password_reset_tokens WHERE user_id = $1")
        .bind(ada.id)
        .fetch_one(&users.db.db.pool)
        .await
        .expect("a token row");
    assert_ne!(stored, token);
    assert_eq!(stored, shop_users::reset::hash(&token));
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE kind = 'user.password_reset_requested'")
        .fetch_one(&users.db.db.pool)
        .await
        .expect("a count");
    assert_eq!(events, 5, "one event per request of the known email, none for the others");

    // A superseded token is dead; so is a tampered one.
    let mut tampered = token.clone().into_bytes();
    tampered[10] = if tampered[10] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).expect("hex");
    for bad in [tampered.as_str(), "", "not-a-token", &token.to_uppercase(), &"0".repeat(64)] {
        let refused = anyone.reset_password(reset(bad, "a brand new password")).await;
        assert_refused(refused, Code::InvalidArgument, ErrorReason::ResetLinkInvalid);
    }
    // A bad new password is refused by name and leaves the link usable.
    let refused = anyone.reset_password(reset(&token, "short")).await;
    let status = assert_refused(refused, Code::InvalidArgument, ErrorReason::FieldInvalid);
    assert_eq!(violations(&status), ["new_password"]);

    // The link works once.
    let done = anyone.reset_password(reset(&token, "a brand new password")).await.expect("reset");
    assert_eq!(done.into_inner().user_id, ada.id);
    let again = anyone.reset_password(reset(&token, "yet another password")).await;
    assert_refused(again, Code::InvalidArgument, ErrorReason::ResetLinkInvalid);
    // Recorded with the new password, for every gateway to end older sessions.
    let (resets,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE kind = 'user.password_reset'")
        .fetch_one(&users.db.db.pool)
        .await
        .expect("a count");
    assert_eq!(resets, 1, "one user.password_reset, for the one reset that happened");
    let login = |password: &str| AuthenticateUserRequest { email: "ada@example.com".into(), password: password.into() };
    anyone.authenticate_user(login("a brand new password")).await.expect("the new password works");
    let old = anyone.authenticate_user(login("correct horse battery")).await;
    assert_refused(old, Code::Unauthenticated, ErrorReason::InvalidCredentials);
}

async fn an_expired_reset_link_is_refused(backend: Backend) {
    let users = start_with(backend, Duration::ZERO).await;
    users.customer("ada@example.com", "Ada").await;
    let mut anyone = users.anonymous().await;
    anyone.request_password_reset(RequestPasswordResetRequest { email: "ada@example.com".into() }).await.expect("ok");
    let token = token_in_outbox(&users, "ada@example.com").await.expect("a token");
    let refused = anyone.reset_password(reset(&token, "a brand new password")).await;
    assert_refused(refused, Code::InvalidArgument, ErrorReason::ResetLinkInvalid);
}

async fn admins_search_customers_by_name_or_email(backend: Backend) {
    let users = start(backend).await;
    let (ada, mut as_ada) = users.customer("ada@example.com", "Ada Lovelace").await;
    let (grace, _) = users.customer("grace@navy.example", "Grace Hopper").await;
    let (_, _) = users.customer("alan@example.org", "Alan Turing").await;
    let (percent, _) = users.customer("pct@example.net", "100% Tea_Fan").await;
    let mut as_admin = users.as_caller(admin()).await;
    let search = |query: &str, page: u32, page_size: u32| ListUsersRequest { query: query.into(), page, page_size };
    let names = |answer: ListUsersResponse| answer.users.into_iter().map(|u| u.name).collect::<Vec<_>>();

    let all = as_admin.list_users(search("", 0, 0)).await.expect("listed").into_inner();
    assert_eq!((all.total, all.page, all.page_size), (4, 1, 20));
    let found = as_admin.list_users(search("LOVE", 1, 10)).await.expect("listed").into_inner();
    assert_eq!(found.users.iter().map(|u| u.id).collect::<Vec<_>>(), [ada.id]);
    let found = as_admin.list_users(search("NAVY", 1, 10)).await.expect("listed").into_inner();
    assert_eq!(found.users.iter().map(|u| u.id).collect::<Vec<_>>(), [grace.id]);
    // LIKE's wildcards are plain characters here.
    let found = as_admin.list_users(search("%", 1, 10)).await.expect("listed").into_inner();
    assert_eq!(found.users.iter().map(|u| u.id).collect::<Vec<_>>(), [percent.id]);
    assert_eq!(names(as_admin.list_users(search("_", 1, 10)).await.expect("listed").into_inner()), ["100% Tea_Fan"]);
    // Paged, newest first, with the total.
    let first = as_admin.list_users(search("example", 1, 2)).await.expect("listed").into_inner();
    let second = as_admin.list_users(search("example", 2, 2)).await.expect("listed").into_inner();
    assert_eq!((first.total, second.total), (4, 4));
    assert_eq!(names(first), ["100% Tea_Fan", "Alan Turing"]);
    assert_eq!(names(second), ["Grace Hopper", "Ada Lovelace"]);
    let found = as_admin.list_users(search("example.org", 1, 10)).await.expect("listed").into_inner();
    assert_eq!((found.total, names(found)), (1, vec!["Alan Turing".to_owned()]));
    let refused = as_admin.list_users(search("a", 1, 101)).await;
    assert_eq!(violations(&assert_refused(refused, Code::InvalidArgument, ErrorReason::FieldInvalid)), ["page_size"]);

    // Admins only.
    let refused = as_ada.list_users(search("", 1, 10)).await;
    assert_refused(refused, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let refused = users.anonymous().await.list_users(search("", 1, 10)).await;
    assert_refused(refused, Code::Unauthenticated, ErrorReason::SignInRequired);
}

async fn the_notifications_service_reads_any_profile(backend: Backend) {
    let users = start(backend).await;
    let (ada, _) = users.customer("ada@example.com", "Ada").await;
    let mut notifications = users.as_caller(Caller::Service("notifications".into())).await;
    let profile = notifications.get_user_profile(GetUserProfileRequest { id: ada.id }).await.expect("read");
    assert_eq!(profile.into_inner().user.map(|u| u.email), Some("ada@example.com".into()));
    // Read-only, and only that service.
    let refused = notifications.delete_user(DeleteUserRequest { id: ada.id }).await;
    assert_refused(refused, Code::NotFound, ErrorReason::UserNotFound);
    let mut orders = users.as_caller(Caller::Service("orders".into())).await;
    let refused = orders.get_user_profile(GetUserProfileRequest { id: ada.id }).await;
    assert_refused(refused, Code::NotFound, ErrorReason::UserNotFound);
}

on_both_backends!(
    addresses_are_kept_checked_and_bounded,
    another_customers_addresses_are_invisible_and_untouchable,
    a_reset_link_works_once_and_reveals_nothing,
    an_expired_reset_link_is_refused,
    admins_search_customers_by_name_or_email,
    the_notifications_service_reads_any_profile,
);
