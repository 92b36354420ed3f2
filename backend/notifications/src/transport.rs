//! Where emails go: an SMTP server (`SHOP_SMTP_URL`), or, embedded, one
//! `.eml` file per email under the data directory.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// A failure to hand an email over.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// Worth trying again later (the server is down, busy, or said 4xx);
    /// otherwise it refused this email for good (5xx: no such mailbox).
    pub transient: bool,
    pub message: String,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self { transient: true, message: message.into() }
    }
}

/// An email ready to go, and the event that caused it.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub event_id: &'a str,
    pub kind: &'static str,
    pub message: &'a Message,
}

/// Hands emails over to whatever delivers them.
pub trait Transport: Send + Sync {
    fn send(&self, email: &Outgoing<'_>) -> impl Future<Output = Result<(), SendError>> + Send;
    /// Where emails go, for the start-up log (no credentials).
    fn describe(&self) -> String;
}

/// The transport the configuration asks for.
pub enum Configured {
    Smtp(Smtp),
    Files(Files),
}

impl Transport for Configured {
    async fn send(&self, email: &Outgoing<'_>) -> Result<(), SendError> {
        match self {
            Self::Smtp(smtp) => smtp.send(email).await,
            Self::Files(files) => files.send(email).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Smtp(smtp) => smtp.describe(),
            Self::Files(files) => files.describe(),
        }
    }
}

/// SMTP through lettre: `smtp://host:port` (plain; add `?tls=required` for
/// STARTTLS), `smtps://user:pass@host` (TLS from the start). One connection
/// per email, each step bounded by `timeout`.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
    server: String,
}

impl Smtp {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, lettre::transport::smtp::Error> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.timeout(Some(timeout)).build();
        Ok(Self { transport, timeout, server: without_credentials(url) })
    }
}

impl Transport for Smtp {
    async fn send(&self, email: &Outgoing<'_>) -> Result<(), SendError> {
        // lettre bounds each read and write; this bounds the whole exchange.
        let whole = self.timeout.saturating_mul(3);
        match tokio::time::timeout(whole, self.transport.send(email.message.clone())).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(error)) => Err(SendError { transient: !error.is_permanent(), message: format!("SMTP: {error}") }),
            Err(_) => Err(SendError::transient(format!("SMTP: no answer within {} s", whole.as_secs()))),
        }
    }

    fn describe(&self) -> String {
        self.server.clone()
    }
}

/// The URL with any user and password taken out, for logs.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "smtp".to_owned() };
    let (authority, path) = rest.split_once(['/', '?']).map_or((rest, ""), |(a, _)| (a, &rest[a.len()..]));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{}", if path.is_empty() { "" } else { " (with options)" })
}

/// Each email written as `<dir>/<kind>-<event id>.eml` (RFC 5322, what mail
/// clients open), readable by its owner only: a reset email holds a secret.
/// Sending the same event again rewrites the same file.
pub struct Files {
    dir: PathBuf,
}

impl Files {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&self.dir)?;
        // Written whole under a temporary name, then renamed: a reader never
        // sees half an email.
        let partial = self.dir.join(format!(".{name}.partial"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&partial, self.dir.join(name))
    }
}

impl Transport for Files {
    async fn send(&self, email: &Outgoing<'_>) -> Result<(), SendError> {
        // The event id is a UUID of our own; keep the name safe anyway.
        let id: String = email.event_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        let name = format!("{}-{id}.eml", email.kind);
        let bytes = email.message.formatted();
        let files = Self { dir: self.dir.clone() };
        tokio::task::spawn_blocking(move || files.write(&name, &bytes))
            .await
            .map_err(|error| SendError::transient(format!("writing the email: {error}")))?
            .map_err(|error| SendError::transient(format!("writing the email under {}: {error}", self.dir.display())))
    }

    fn describe(&self) -> String {
        format!(".eml files in {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message::builder()
            .from("Shop <shop@localhost>".parse().expect("an address"))
            .to("ada@example.com".parse().expect("an address"))
            .subject("Your order #1 is confirmed")
            .body("Hello".to_owned())
            .expect("a message")
    }

    #[tokio::test]
    async fn files_are_private_and_named_by_event() {
        let dir = tempfile::tempdir().expect("a directory");
        let files = Files::new(dir.path().join("mail"));
        let message = message();
        let email = Outgoing { event_id: "e1", kind: "order_confirmed", message: &message };
        files.send(&email).await.expect("written");
        files.send(&email).await.expect("written again");
        let written: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
            .expect("the mail directory")
            .map(|entry| entry.expect("an entry").file_name().into_string().expect("UTF-8"))
            .collect();
        assert_eq!(written, ["order_confirmed-e1.eml"], "one file per event, nothing partial left");
        let path = dir.path().join("mail/order_confirmed-e1.eml");
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(text.contains("Subject: Your order #1 is confirmed"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn logged_smtp_urls_carry_no_password() {
        assert_eq!(without_credentials("smtps://me:s3cret@mail.example.com:465"), "smtps://mail.example.com:465");
        assert_eq!(without_credentials("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        assert_eq!(without_credentials("smtp://u:pw@h:25?tls=required"), "smtp://h:25 (with options)");
    }

    #[tokio::test]
    async fn an_smtp_server_that_is_down_is_a_transient_failure() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr").port();
        let smtp = Smtp::new(&format!("smtp://127.0.0.1:{port}"), Duration::from_secs(2)).expect("a transport");
        let message = message();
        let failed = smtp.send(&Outgoing { event_id: "e1", kind: "order_confirmed", message: &message }).await;
        assert!(matches!(failed, Err(SendError { transient: true, .. })), "{failed:?}");
    }
}
